//! `xinyi access-log`: every query and denial on a firm's data; with `--verify`, each listed
//! entry is checked against the stored entry and its inclusion proof, and the list against the
//! firm's access index committed in the certified state root (complete, not only correct).

use crate::cmd::args::entry_bytes;
use crate::cmd::ctx::Ctx;
use crate::cmd::fmt_time;
use crate::cmd::output::{out, out_json, scalar};
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use xinyi_client::api::EntryAnswer;
use xinyi_client::proof::{self, Trust};
use xinyi_client::signer::{parse_uscc, Signer};
use xinyi_ledger::entry::{Entry, EntryKind};
use xinyi_ledger::hash::Digest;
use xinyi_ledger::state::AccessHead;
use xinyi_ledger::FirmTag;

/// Checks one access-log item against the entry stored at its position and that entry's
/// inclusion proof; returns the checkpoint size it was verified in and the entry id.
fn verify_access_item(
    ctx: &Ctx,
    signer: &Signer,
    trust: &Trust,
    firm: &FirmTag,
    item: &Value,
) -> Result<(u64, Digest)> {
    let pos = item
        .get("position")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("an access-log item has no position"))?;
    let ea: EntryAnswer = ctx.get_signed(signer, &format!("/v1/entries/{pos}"))?;
    let bytes = entry_bytes(&ea)?;
    let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    let (req, reason) = match &entry.body.kind {
        EntryKind::QueryServed(q) => (&q.request.request, None),
        EntryKind::QueryDenied { request, reason } => (&request.request, Some(reason.code())),
        EntryKind::AlertsDelivered(b) => {
            xinyi_client::watch::check_access_item(b, item, firm, pos)?;
            let inc = ctx.verify_entry(trust, &bytes, pos, &ea.inclusion_proof, &ea.checkpoint)?;
            return Ok((inc.size, entry.id));
        }
        other => bail!(
            "access_log.mismatch: entry {pos} is a {} entry",
            other.name()
        ),
    };
    let listed = (
        item.get("kind").and_then(Value::as_str),
        item.get("bank").and_then(Value::as_str),
        item.get("consent").and_then(Value::as_str),
        item.get("reason").and_then(Value::as_str),
    );
    let consent = req.consent.to_hex();
    let stored = (
        Some(entry.body.kind.name()),
        Some(req.bank.as_str()),
        Some(consent.as_str()),
        reason,
    );
    if req.firm != *firm || listed != stored {
        bail!("access_log.mismatch: the access log's item at position {pos} does not match the stored entry");
    }
    let inc = ctx.verify_entry(trust, &bytes, pos, &ea.inclusion_proof, &ea.checkpoint)?;
    Ok((inc.size, entry.id))
}

pub fn access_log(ctx: &Ctx, firm: &str, verify: bool) -> Result<()> {
    let firm = parse_uscc(firm)?;
    let signer = ctx.signer()?;
    let h = ctx.health()?;
    // The firm's tag: checked against its own registration when the firm asks (`signer`);
    // an auditor takes the node's.
    let tag = match signer.tag {
        Some(t) => t,
        None => ctx.firm_tag_as(&signer, &firm)?,
    };
    // The proof first: the list fetched afterwards covers at least the proven block.
    let commitment = if verify {
        let ppath = format!("/v1/firms/{firm}/access-proof");
        let pauth = signer.auth_header(&h.chain_id, "GET", &ppath, h.time_ms);
        let pv: Value = ctx.api.get_auth(&ppath, &pauth)?;
        let (g, _) = ctx.genesis()?;
        Some(proof::verify_access_proof(&g, &tag, &pv)?)
    } else {
        None
    };
    let path = format!("/v1/firms/{firm}/access-log");
    let auth = signer.auth_header(&h.chain_id, "GET", &path, h.time_ms);
    let mut v: Value = ctx.api.get_auth(&path, &auth)?;
    let mut verified = None;
    if let Some(c) = commitment {
        let trust = ctx.trust(Some(&h))?;
        let items = v
            .get("entries")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut size = 0;
        let mut chain = AccessHead {
            head: Digest([0; 32]),
            count: 0,
        };
        let mut last = None;
        for item in &items {
            let pos = item
                .get("position")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if last.is_some_and(|l| pos <= l) {
                bail!("access_log.order: the access log is not in log order at position {pos}");
            }
            last = Some(pos);
            let (s, id) = verify_access_item(ctx, &signer, &trust, &tag, item)?;
            size = size.max(s);
            if pos < c.log_size {
                chain = chain.next(&id);
            }
        }
        let want = c.value.unwrap_or(AccessHead {
            head: Digest([0; 32]),
            count: 0,
        });
        if chain != want {
            bail!(
                "access_log.incomplete: the node listed {} access entries before log size {} but the ledger's access index of {firm} at block {} commits to {} (or the list differs from the committed chain)",
                chain.count,
                c.log_size,
                c.height,
                want.count
            );
        }
        verified = Some((items.len(), size, c.clone()));
        if let Value::Object(m) = &mut v {
            m.insert(
                "verified".into(),
                json!({"entries": items.len(), "checkpoint_size": size, "complete": true,
                       "complete_up_to_log_size": c.log_size, "block": c.height,
                       "access_count": want.count}),
            );
        }
    }
    if ctx.json {
        out_json(&v);
        return Ok(());
    }
    let entries = v
        .get("entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut s = format!("access log of {firm}: {} entries\n", entries.len());
    for e in &entries {
        let g = |k: &str| e.get(k).map(scalar).unwrap_or_else(|| "-".into());
        let time = e
            .get("time")
            .and_then(Value::as_u64)
            .map(fmt_time)
            .unwrap_or_default();
        s += &format!(
            "  #{:<6} {} {:<13} bank {:<10} consent {} [{}]{}\n",
            g("position"),
            time,
            g("kind"),
            g("bank"),
            g("consent"),
            g("categories"),
            e.get("reason")
                .filter(|r| !r.is_null())
                .map(|r| format!(" reason {}", scalar(r)))
                .unwrap_or_default()
        );
    }
    if let Some((n, size, c)) = verified {
        s += &format!("verified: all {n} entries match the ledger and are included in checkpoints up to size {size}\n");
        s += &format!(
            "verified: the list is complete up to log size {} (block {}, {} accesses, certified state root)\n",
            c.log_size,
            c.height,
            c.value.map_or(0, |a| a.count)
        );
    }
    out(&s);
    Ok(())
}
