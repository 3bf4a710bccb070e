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
    tags: &[FirmTag],
    item: &Value,
) -> Result<(u64, Digest, FirmTag)> {
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
            let firm = tags
                .iter()
                .find(|t| **t == b.firm)
                .ok_or_else(|| anyhow!("access_log.mismatch: entry {pos} is about another firm"))?;
            xinyi_client::watch::check_access_item(b, item, firm, pos)?;
            let inc = ctx.verify_entry(trust, &bytes, pos, &ea.inclusion_proof, &ea.checkpoint)?;
            return Ok((inc.size, entry.id, b.firm));
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
    if !tags.contains(&req.firm) || listed != stored {
        bail!("access_log.mismatch: the access log's item at position {pos} does not match the stored entry");
    }
    let inc = ctx.verify_entry(trust, &bytes, pos, &ea.inclusion_proof, &ea.checkpoint)?;
    Ok((inc.size, entry.id, req.firm))
}

pub fn access_log(ctx: &Ctx, firm: &str, verify: bool) -> Result<()> {
    let firm = parse_uscc(firm)?;
    let signer = ctx.signer()?;
    let h = ctx.health()?;
    // The firm's tags, one per firm-key epoch (privacy.md §8): checked against its own
    // registrations when the firm asks (`signer`); an auditor takes the node's.
    let tags: Vec<FirmTag> = ctx
        .firm_tags_as(&signer, &firm)?
        .tags
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    // The proofs first: the list fetched afterwards covers at least the proven block.
    let commitments = if verify {
        let ppath = format!("/v1/firms/{firm}/access-proof");
        let pauth = ctx.auth_header(&signer, &ppath, &h);
        let pv: Value = ctx.api.get_auth(&ppath, &pauth)?;
        let (g, _) = ctx.genesis()?;
        Some(proof::verify_access_proofs(&g, &tags, &pv)?)
    } else {
        None
    };
    let path = format!("/v1/firms/{firm}/access-log");
    let auth = ctx.auth_header(&signer, &path, &h);
    let mut v: Value = ctx.api.get_auth(&path, &auth)?;
    let mut verified = None;
    if let Some(cs) = commitments {
        let trust = ctx.trust(Some(&h))?;
        let items = v
            .get("entries")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut size = 0;
        let zero = AccessHead {
            head: Digest([0; 32]),
            count: 0,
        };
        // One hash chain per tag, rebuilt from the list and compared with its committed head.
        let mut chains: Vec<AccessHead> = vec![zero; cs.len()];
        // Every proof is of the same block (the node answers them under one lock).
        let c = cs[0].1.clone();
        if cs.iter().any(|(_, x)| x.height != c.height) {
            bail!("access_log.proof: the access proofs are of different blocks");
        }
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
            let (s, id, t) = verify_access_item(ctx, &signer, &trust, &tags, item)?;
            size = size.max(s);
            if pos < c.log_size {
                if let Some(i) = cs.iter().position(|(x, _)| *x == t) {
                    chains[i] = chains[i].next(&id);
                }
            }
        }
        let mut total = 0;
        for ((t, ci), chain) in cs.iter().zip(&chains) {
            let want = ci.value.unwrap_or(zero);
            if *chain != want {
                bail!(
                    "access_log.incomplete: the node listed {} access entries of tag {t} before log size {} but the ledger's access index of {firm} at block {} commits to {} (or the list differs from the committed chain)",
                    chain.count,
                    c.log_size,
                    c.height,
                    want.count
                );
            }
            total += want.count;
        }
        let want = AccessHead {
            head: chains.last().map_or(zero.head, |h| h.head),
            count: total,
        };
        verified = Some((items.len(), size, c.clone(), want.count));
        if let Value::Object(m) = &mut v {
            m.insert(
                "verified".into(),
                json!({"entries": items.len(), "checkpoint_size": size, "complete": true,
                       "complete_up_to_log_size": c.log_size, "block": c.height,
                       "access_count": want.count, "tags": tags.len()}),
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
    if let Some((n, size, c, accesses)) = verified {
        s += &format!("verified: all {n} entries match the ledger and are included in checkpoints up to size {size}\n");
        s += &format!(
            "verified: the list is complete up to log size {} (block {}, {} accesses, certified state root{})\n",
            c.log_size,
            c.height,
            accesses,
            if tags.len() > 1 {
                format!(", {} firm-key epochs", tags.len())
            } else {
                String::new()
            }
        );
    }
    out(&s);
    Ok(())
}
