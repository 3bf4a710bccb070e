//! Submitting checkpoints to external witnesses (C2SP tlog-witness, `specs/witness.md`) and
//! keeping their cosignatures, which `GET /v1/checkpoint` attaches to the note it serves.
//!
//! A background task looks at the node's checkpoint every `interval_ms`; once it is final (signed
//! by more than two thirds of the validator power at the committed head) and larger than what a
//! witness last cosigned, it POSTs `old <size>`, the RFC 9162 consistency proof and the note to
//! `<url>/add-checkpoint`. A 409 answer tells the witness's size (the next round uses it); a
//! 200 answer's signature lines are checked against the witness's vkey when one is configured
//! and kept for that checkpoint text. Nothing here changes the ledger.

use crate::engine::Engine;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xinyi_ledger::note::{Checkpoint, CosignerKey, Note, NoteSignature, VerifierKey};

/// `[witness]` configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Witness submission prefixes (`<url>/add-checkpoint` is called).
    #[serde(default)]
    pub urls: Vec<String>,
    /// Witness verifier keys (`name+keyid+base64(0x04 ‖ key)`); cosignatures of a witness whose
    /// key is listed are verified before they are attached, others are attached only if they
    /// parse (clients ignore cosignatures of keys they do not trust).
    #[serde(default)]
    pub vkeys: Vec<String>,
    /// How often the checkpoint is looked at, in milliseconds.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
}

fn default_interval() -> u64 {
    1_000
}

/// Most checkpoint texts whose witness cosignatures are kept.
const KEEP: usize = 16;

/// Witness cosignatures by checkpoint text (bounded).
#[derive(Debug, Default)]
pub struct Cosignatures {
    by_size: Mutex<BTreeMap<u64, (String, Vec<NoteSignature>)>>,
}

impl Cosignatures {
    /// Adds cosignatures for checkpoint text `text` of size `size`.
    pub fn add(&self, size: u64, text: &str, sigs: Vec<NoteSignature>) {
        let mut m = self.by_size.lock().unwrap_or_else(|e| e.into_inner());
        let slot = m
            .entry(size)
            .or_insert_with(|| (text.to_string(), Vec::new()));
        if slot.0 != text {
            *slot = (text.to_string(), Vec::new());
        }
        for s in sigs {
            if !slot.1.contains(&s) {
                slot.1.push(s);
            }
        }
        while m.len() > KEEP {
            m.pop_first();
        }
    }

    /// `note` with the witness cosignatures kept for its text appended (unchanged if none).
    pub fn attach(&self, note: &str) -> String {
        let Ok(mut n) = Note::parse(note) else {
            return note.to_string();
        };
        let Ok(cp) = Checkpoint::parse_text(&n.text) else {
            return note.to_string();
        };
        let m = self.by_size.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(&cp.size) {
            Some((text, sigs)) if *text == n.text && !sigs.is_empty() => {
                if n.merge_signatures(sigs.iter().cloned()).is_err() {
                    return note.to_string();
                }
                n.to_string()
            }
            _ => note.to_string(),
        }
    }
}

/// The node's checkpoint if it is final: signed by validators holding more than two thirds of
/// the power at the committed head. Returns the note and its body.
pub fn final_checkpoint(engine: &Engine) -> Option<(String, Checkpoint)> {
    let core = engine.lock();
    let note_text = core.checkpoint.clone();
    let set = core.chain.state().validators().ok()?;
    drop(core);
    let origin = engine.genesis().name.clone();
    let note = Note::parse(&note_text).ok()?;
    let cp = Checkpoint::parse_text(&note.text).ok()?;
    let keys: Vec<(VerifierKey, u64)> = set
        .validators
        .iter()
        .filter(|v| v.power > 0)
        .filter_map(|v| {
            Some((
                VerifierKey::new(origin.clone(), v.key.verifying_key().ok()?).ok()?,
                v.power,
            ))
        })
        .collect();
    let only: Vec<VerifierKey> = keys.iter().map(|(k, _)| k.clone()).collect();
    let verified = note.verify(&only).ok()?;
    let power: u128 = keys
        .iter()
        .filter(|(k, _)| verified.contains(k))
        .map(|(_, p)| u128::from(*p))
        .sum();
    let total: u128 = keys.iter().map(|(_, p)| u128::from(*p)).sum();
    (power * 3 > total * 2).then_some((note_text, cp))
}

/// One witness as the task sees it.
struct Target {
    url: String,
    key: Option<CosignerKey>,
    /// Size the witness last cosigned (as far as we know).
    size: u64,
}

/// Starts the submission task on the current tokio runtime (no-op without URLs).
pub fn spawn(engine: Engine, cosigs: Arc<Cosignatures>, cfg: WitnessConfig) {
    if cfg.urls.is_empty() {
        return;
    }
    let keys: Vec<CosignerKey> = cfg
        .vkeys
        .iter()
        .filter_map(|k| match CosignerKey::parse(k) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!("witness vkey {k:?} ignored: {e}");
                None
            }
        })
        .collect();
    let mut targets: Vec<Target> = cfg
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| Target {
            url: u.trim_end_matches('/').to_string(),
            key: keys.get(i).cloned(),
            size: 0,
        })
        .collect();
    let interval = Duration::from_millis(cfg.interval_ms.max(50));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let e = engine.clone();
            let c = cosigs.clone();
            let t = std::mem::take(&mut targets);
            targets = match tokio::task::spawn_blocking(move || round(&e, &c, t)).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("witness task: {e}");
                    return;
                }
            };
        }
    });
}

/// Submits the current final checkpoint to every witness that has not cosigned it.
fn round(engine: &Engine, cosigs: &Cosignatures, mut targets: Vec<Target>) -> Vec<Target> {
    let Some((note, cp)) = final_checkpoint(engine) else {
        return targets;
    };
    let agent = crate::tls::peer_agent_builder()
        .timeout(Duration::from_secs(5))
        .build();
    for t in targets.iter_mut() {
        if cp.size <= t.size && t.size != 0 {
            continue;
        }
        // Up to two tries: the first may teach us the witness's size (409).
        for _ in 0..2 {
            match submit(engine, &agent, t, &note, &cp) {
                Ok(Some(sigs)) => {
                    let text = cp.to_text();
                    cosigs.add(cp.size, &text, sigs);
                    t.size = cp.size;
                    break;
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("witness {}: {e}", t.url);
                    break;
                }
            }
        }
    }
    targets
}

/// One add-checkpoint call. `Ok(None)` after a 409 (the target's size was updated).
fn submit(
    engine: &Engine,
    agent: &ureq::Agent,
    t: &mut Target,
    note: &str,
    cp: &Checkpoint,
) -> Result<Option<Vec<NoteSignature>>, String> {
    if t.size > cp.size {
        return Err(format!(
            "the witness has cosigned size {} beyond our checkpoint {}",
            t.size, cp.size
        ));
    }
    let proof = if t.size == 0 || t.size == cp.size {
        vec![]
    } else {
        engine
            .lock()
            .chain
            .log()
            .consistency_proof(t.size, cp.size)
            .map_err(|e| e.to_string())?
    };
    let mut body = format!("old {}\n", t.size);
    for h in &proof {
        body += &STANDARD.encode(h);
        body.push('\n');
    }
    body.push('\n');
    body += note;
    match agent
        .post(&format!("{}/add-checkpoint", t.url))
        .set("Content-Type", "text/plain; charset=utf-8")
        .send_string(&body)
    {
        Ok(r) => {
            let lines = r.into_string().map_err(|e| e.to_string())?;
            let with = format!("{}\n{lines}", cp.to_text());
            let n = Note::parse(&with).map_err(|e| format!("bad cosignature lines: {e}"))?;
            if let Some(k) = &t.key {
                let ok = n
                    .verify_cosignatures(std::slice::from_ref(k))
                    .map_err(|e| e.to_string())?;
                if ok.is_empty() {
                    return Err("the answer carries no cosignature by the witness key".into());
                }
            }
            Ok(Some(n.signatures))
        }
        Err(ureq::Error::Status(409, r)) => {
            let s = r.into_string().unwrap_or_default();
            t.size = s
                .trim()
                .parse()
                .map_err(|_| format!("409 without a size: {s:?}"))?;
            Ok(None)
        }
        Err(ureq::Error::Status(code, r)) => Err(format!(
            "refused with {code}: {}",
            r.into_string().unwrap_or_default().trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}
