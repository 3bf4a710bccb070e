//! `xinyi watch`: a bank follows its monitoring alerts (贷后监测) and verifies each one.
//!
//! The stream is `GET /v1/banks/{org}/alerts` (long poll, signed by the bank). An alert is
//! accepted only if its content matches the salted digest the ledger holds, the logged
//! `alerts_delivered` entry names this bank and exactly this alert (id, consent, trigger,
//! category, digest), and that entry is included in a final checkpoint (validator quorum). So a
//! bank can show that every alert it acted on was logged before it was released. Not here: the
//! alert rules (the ledger) or producing alerts (the agency node).

use crate::api::Api;
use crate::proof::{self, Trust};
use crate::signer::Signer;
use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::monitor::{MonitorCategory, Monitoring};
use xinyi_ledger::{Entry, EntryKind, OrgId};

/// Parses `--monitor penalties,grades,...` into a monitoring scope (sorted, deduplicated).
pub fn monitoring_arg(s: &str) -> Result<Monitoring> {
    let mut categories = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        categories.push(MonitorCategory::parse(part).map_err(|e| anyhow!("--monitor: {e}"))?);
    }
    if categories.is_empty() {
        bail!("--monitor: at least one category is required");
    }
    categories.sort();
    categories.dedup();
    Ok(Monitoring { categories })
}

/// What checking one alert established.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Sequence number in the bank's stream.
    pub seq: u64,
    /// Log position of the `alerts_delivered` entry.
    pub position: u64,
    /// Size of the final checkpoint it was verified in.
    pub checkpoint_size: u64,
}

fn digest(v: &Value, k: &str) -> Result<Digest> {
    v.get(k)
        .and_then(Value::as_str)
        .and_then(|s| Digest::from_hex(s).ok())
        .ok_or_else(|| anyhow!("alert.malformed: field {k} is missing or not a digest"))
}

/// A final checkpoint at least `min_size` large (polls for up to `wait`).
fn final_checkpoint(
    api: &Api,
    trust: &Trust,
    min_size: u64,
    wait: Duration,
) -> Result<proof::Opened> {
    let deadline = Instant::now() + wait;
    loop {
        let note = api.get_text("/v1/checkpoint")?;
        let o = trust.open_any(&note)?;
        match trust.check_final(&o) {
            Ok(()) if o.cp.size >= min_size => return Ok(o),
            Err(e) if Instant::now() >= deadline => return Err(e),
            _ if Instant::now() >= deadline => {
                bail!("checkpoint.stale: no final checkpoint of size {min_size} within {wait:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Verifies one alert of the stream for `bank` (see the module doc).
pub fn verify_alert(
    api: &Api,
    trust: &Trust,
    bank: &OrgId,
    a: &Value,
    wait: Duration,
) -> Result<Verified> {
    let seq = a
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("alert.malformed: no seq"))?;
    let id = digest(a, "id")?;
    let consent = digest(a, "consent")?;
    let content_digest = digest(a, "content_digest")?;
    let content = a
        .get("content")
        .ok_or_else(|| anyhow!("alert.malformed: no content"))?;
    let salt: [u8; 32] = a
        .get("salt")
        .and_then(Value::as_str)
        .and_then(|s| hex::decode(s).ok())
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| anyhow!("alert.malformed: the salt is not 32 bytes of hex"))?;
    let canonical = serde_json::to_vec(content).map_err(|e| anyhow!("{e}"))?;
    if hash::salted(&salt, &canonical) != content_digest {
        bail!("alert.digest_mismatch: alert {id}: the content does not match its digest");
    }
    let trigger = a.get("trigger").cloned().unwrap_or(Value::Null);
    let trigger_id = digest(&trigger, "id")?;
    let trigger_pos = trigger
        .get("position")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("alert.malformed: no trigger position"))?;
    let e = a
        .get("entry")
        .ok_or_else(|| anyhow!("alert.malformed: no entry"))?;
    let position = e
        .get("position")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("alert.malformed: no entry position"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(e.get("entry").and_then(Value::as_str).unwrap_or_default())
        .map_err(|e| anyhow!("alert.malformed: entry is not base64: {e}"))?;
    let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    if Some(entry.id)
        != e.get("id")
            .and_then(Value::as_str)
            .and_then(|s| Digest::from_hex(s).ok())
    {
        bail!("alert.record_mismatch: alert {id}: the entry is not the one named");
    }
    let EntryKind::AlertsDelivered(batch) = &entry.body.kind else {
        bail!(
            "alert.record_mismatch: alert {id}: the logged entry is a {}",
            entry.body.kind.name()
        );
    };
    let logged = batch.alerts.iter().find(|x| x.alert == id);
    let category = a
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ok = batch.bank == *bank
        && logged.is_some_and(|x| {
            x.consent == consent
                && x.trigger == trigger_id
                && x.position == trigger_pos
                && x.content == content_digest
                && x.category.name() == category
        })
        && content.get("alert").and_then(Value::as_str) == Some(id.to_hex().as_str());
    if !ok {
        bail!("alert.record_mismatch: alert {id} is not logged as delivered to {bank} with this content");
    }
    let proof_hex = proof::hex_list(e.get("inclusion_proof").unwrap_or(&Value::Null));
    let note = e
        .get("checkpoint")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let o = trust.open_any(note)?;
    proof::verify_inclusion_in(&o.cp, &entry.bytes, position, &proof_hex)?;
    let size = if trust.check_final(&o).is_ok() {
        o.cp.size
    } else {
        let f = final_checkpoint(api, trust, o.cp.size, wait)?;
        let p = api.consistency_proof(o.cp.size, f.cp.size)?;
        proof::verify_consistency(&o.cp, &f.cp, &p)?;
        f.cp.size
    };
    Ok(Verified {
        seq,
        position,
        checkpoint_size: size,
    })
}

/// Options of [`watch`].
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The bank.
    pub bank: OrgId,
    /// Start after this sequence number.
    pub after: u64,
    /// Stop after this many alerts.
    pub count: Option<u64>,
    /// Stop when no alert came for this long.
    pub idle: Option<Duration>,
    /// Long-poll wait per request.
    pub poll: Duration,
    /// Longest wait for a final checkpoint.
    pub wait: Duration,
}

/// Follows the stream, verifying every alert before handing it to `emit` (the alert JSON with a
/// `verified` object added). Returns the number of alerts emitted.
pub fn watch(
    api: &Api,
    signer: &Signer,
    trust: &Trust,
    opts: &WatchOptions,
    mut emit: impl FnMut(&Value),
) -> Result<u64> {
    let mut after = opts.after;
    let mut n = 0u64;
    let mut last = Instant::now();
    loop {
        if opts.count.is_some_and(|c| n >= c) {
            return Ok(n);
        }
        if opts.idle.is_some_and(|i| last.elapsed() >= i) {
            return Ok(n);
        }
        let h = api.health()?;
        let path = format!(
            "/v1/banks/{}/alerts?after={after}&wait_ms={}",
            opts.bank,
            opts.poll.as_millis()
        );
        let auth = signer.auth_header(&h.chain_id, "GET", &path, h.time_ms);
        let v: Value = api.get_auth(&path, &auth)?;
        let alerts = v
            .get("alerts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for a in alerts {
            let ver = verify_alert(api, trust, &opts.bank, &a, opts.wait)?;
            if ver.seq <= after {
                bail!(
                    "alert.order: the stream repeated or reordered sequence {}",
                    ver.seq
                );
            }
            after = ver.seq;
            let mut out = a.clone();
            if let Value::Object(m) = &mut out {
                m.insert(
                    "verified".into(),
                    json!({"position": ver.position, "checkpoint_size": ver.checkpoint_size,
                           "content_digest": true, "logged_before_release": true}),
                );
            }
            emit(&out);
            n += 1;
            last = Instant::now();
            if opts.count.is_some_and(|c| n >= c) {
                return Ok(n);
            }
        }
    }
}

/// One human-readable line for a verified alert.
pub fn human_line(a: &Value) -> String {
    let g = |p: &[&str]| {
        let mut v = a;
        for k in p {
            v = v.get(k).unwrap_or(&Value::Null);
        }
        match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            x => x.to_string(),
        }
    };
    format!(
        "alert #{} {} firm {} ({}) consent {} trigger {} at {} | logged at position {} ✓ verified in checkpoint {}",
        g(&["seq"]),
        g(&["category"]),
        g(&["content", "firm"]),
        g(&["content", "trigger", "kind"]),
        g(&["consent"]),
        g(&["trigger", "id"]),
        g(&["trigger", "position"]),
        g(&["entry", "position"]),
        g(&["verified", "checkpoint_size"]),
    )
}

/// `xinyi access-log --verify`: an `alerts_delivered` item listed in a firm's access log must
/// match the stored entry (kind, bank, firm, consents).
pub fn check_access_item(
    b: &xinyi_ledger::monitor::AlertBatch,
    item: &Value,
    firm: &xinyi_ledger::FirmTag,
    pos: u64,
) -> Result<()> {
    let mut consents: Vec<String> = b.alerts.iter().map(|a| a.consent.to_hex()).collect();
    consents.sort();
    consents.dedup();
    let listed: Vec<String> = item
        .get("consents")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let ok = b.firm == *firm
        && item.get("kind").and_then(Value::as_str) == Some("alerts_delivered")
        && item.get("bank").and_then(Value::as_str) == Some(b.bank.as_str())
        && listed == consents;
    if !ok {
        bail!("access_log.mismatch: the access log's item at position {pos} does not match the stored entry");
    }
    Ok(())
}
