//! Anchoring final checkpoints to external sinks and recording each on the ledger as an
//! `anchor_receipt` entry (`specs/checkpoints.md` §6).
//!
//! An [`AnchorSink`] takes a final checkpoint and returns a transaction id on its "chain". Two
//! sinks exist: [`FileSink`] (append-only JSON lines, fsynced) and [`HttpSink`] (POSTs JSON and
//! reads `{"tx"}` back). An EVM-compatible JSON-RPC sink fits the same trait later: `chain` would
//! be e.g. `evm:<chain id>` and `anchor` would send a transaction carrying the checkpoint and
//! return its hash. The task anchors every `interval_ms` when the final checkpoint has grown by
//! more than the node's own last receipt, then submits the receipt signed by this node's
//! organisation (an agency or auditor, which the ledger rules require).

use crate::engine::Engine;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use xinyi_ledger::note::Checkpoint;
use xinyi_ledger::{Digest, EntryKind};

/// `[anchor]` configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorConfig {
    /// File sink: append-only JSON lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// HTTP sink: POST URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How often to anchor, in milliseconds.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// EVM sink (`[anchor.evm]`, `specs/anchoring.md`): its own task, see [`crate::anchor_evm`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm: Option<crate::anchor_evm::EvmConfig>,
}

fn default_interval() -> u64 {
    60_000
}

/// Why anchoring failed.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// I/O with the sink failed.
    #[error("anchor sink {sink}: {reason}")]
    Sink {
        /// Sink name.
        sink: String,
        /// What happened.
        reason: String,
    },
}

/// A checkpoint to anchor.
#[derive(Debug, Clone, Serialize)]
pub struct Anchor {
    /// Log origin.
    pub origin: String,
    /// Log size.
    pub size: u64,
    /// Log root, hex.
    pub root: String,
    /// The final signed note.
    pub note: String,
}

/// Somewhere checkpoints are anchored.
pub trait AnchorSink: Send {
    /// The `chain` name recorded in receipts (≤ 64 characters).
    fn chain(&self) -> String;
    /// Anchors `a` durably and returns the transaction id (≤ 256 characters).
    fn anchor(&mut self, a: &Anchor) -> Result<String, AnchorError>;
}

/// Append-only JSON lines file; the transaction id is `line:<n>` (1-based).
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    /// A sink appending to `path`.
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path }
    }
}

impl AnchorSink for FileSink {
    fn chain(&self) -> String {
        "file".into()
    }

    fn anchor(&mut self, a: &Anchor) -> Result<String, AnchorError> {
        let err = |e: std::io::Error| AnchorError::Sink {
            sink: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let lines = match std::fs::read_to_string(&self.path) {
            Ok(t) => t.lines().count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(err(e)),
        };
        let line = serde_json::to_string(a).map_err(|e| AnchorError::Sink {
            sink: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        f.write_all(format!("{line}\n").as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        Ok(format!("line:{}", lines + 1))
    }
}

/// POSTs the anchor as JSON to a URL, which answers `{"tx": "<id>"}`.
pub struct HttpSink {
    url: String,
    agent: ureq::Agent,
}

impl HttpSink {
    /// A sink posting to `url`.
    pub fn new(url: String) -> HttpSink {
        HttpSink {
            url,
            agent: crate::tls::peer_agent_builder()
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }
}

impl AnchorSink for HttpSink {
    fn chain(&self) -> String {
        "http".into()
    }

    fn anchor(&mut self, a: &Anchor) -> Result<String, AnchorError> {
        let err = |reason: String| AnchorError::Sink {
            sink: self.url.clone(),
            reason,
        };
        let v: serde_json::Value = self
            .agent
            .post(&self.url)
            .send_json(serde_json::to_value(a).map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?
            .into_json()
            .map_err(|e| err(e.to_string()))?;
        let tx = v
            .get("tx")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| err("answer has no \"tx\" string".into()))?;
        Ok(tx.to_string())
    }
}

/// The sinks of a configuration.
pub fn sinks(cfg: &AnchorConfig) -> Vec<Box<dyn AnchorSink>> {
    let mut v: Vec<Box<dyn AnchorSink>> = Vec::new();
    if let Some(f) = &cfg.file {
        v.push(Box::new(FileSink::new(f.clone())));
    }
    if let Some(u) = &cfg.url {
        v.push(Box::new(HttpSink::new(u.clone())));
    }
    v
}

impl AnchorConfig {
    /// With the EVM sink's state file defaulting to `data_dir/anchor-evm.json`.
    pub fn with_data_dir(mut self, data_dir: &std::path::Path) -> AnchorConfig {
        if let Some(e) = self.evm.as_mut() {
            e.state_file
                .get_or_insert_with(|| data_dir.join("anchor-evm.json"));
        }
        self
    }
}

/// Starts the anchoring tasks (no-op without sinks). Fails only for an unusable EVM key or
/// contract address.
pub fn spawn(engine: Engine, cfg: AnchorConfig) -> Result<(), crate::anchor_evm::EvmError> {
    if let Some(evm) = cfg.evm.clone() {
        crate::anchor_evm::spawn(engine.clone(), evm)?;
    }
    let mut sinks = sinks(&cfg);
    if sinks.is_empty() {
        return Ok(());
    }
    let interval = Duration::from_millis(cfg.interval_ms.max(50));
    tokio::spawn(async move {
        // Size after our last receipt: a log that grew only by it is not anchored again.
        let mut last_anchored = 0u64;
        let mut own_receipt_size = 0u64;
        loop {
            tokio::time::sleep(interval).await;
            let Some((note, cp)) = crate::witness_client::final_checkpoint(&engine) else {
                continue;
            };
            if cp.size == 0 || cp.size <= last_anchored || cp.size == own_receipt_size {
                continue;
            }
            let e = engine.clone();
            let done = anchor_all(&e, &mut sinks, &note, &cp).await;
            if let Some(size) = done {
                last_anchored = cp.size;
                own_receipt_size = size;
            }
        }
    });
    Ok(())
}

/// Anchors `cp` in every sink and submits one receipt per sink; returns the log size after the
/// last receipt committed.
async fn anchor_all(
    engine: &Engine,
    sinks: &mut [Box<dyn AnchorSink>],
    note: &str,
    cp: &Checkpoint,
) -> Option<u64> {
    let a = Anchor {
        origin: cp.origin.clone(),
        size: cp.size,
        root: hex::encode(cp.root),
        note: note.to_string(),
    };
    let mut after = None;
    for s in sinks.iter_mut() {
        let tx = match tokio::task::block_in_place(|| s.anchor(&a)) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        let kind = EntryKind::AnchorReceipt {
            size: cp.size,
            root: Digest(cp.root),
            chain: s.chain(),
            tx,
        };
        let entry = match engine.sign_own(kind) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("anchor receipt: {e}");
                continue;
            }
        };
        match engine.submit(entry).await {
            Ok(c) => after = Some(c.position + 1),
            Err(e) => tracing::warn!("anchor receipt not committed: {e}"),
        }
    }
    after
}
