//! `xinyi audit verify`: run the ledger's streaming verifier over an audit bundle (a file, or
//! `GET /v1/export` streamed from a node) and report the result.
//!
//! All checking is `xinyi_ledger::verify::verify_bundle` (which names the block and entry of
//! the first failure); this module adds only the progress bar, the timing and the
//! report/failure formats. It never trusts anything the bundle or node says about itself beyond
//! what the verifier recomputes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::Read;
use std::time::Instant;
use xinyi_ledger::genesis::Genesis;
use xinyi_ledger::verify::{verify_bundle, VerifyError, VerifyReport};

/// A successful audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditSummary {
    /// `ok`.
    pub result: &'static str,
    /// The ledger verifier's report (chain id, blocks, entries by kind, head, roots).
    #[serde(flatten)]
    pub report: VerifyReport,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Entries verified per second.
    pub entries_per_second: f64,
    /// Organisations, consents, queries, repairs with SLA status, checkpoints and anchors.
    pub ledger: Option<crate::report::AuditStats>,
    /// The node's latest checkpoint and who cosigned it (online audits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<serde_json::Value>,
}

/// Copies what the verifier reads to the statistics thread.
struct Tee<R> {
    inner: R,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(tx) = &self.tx {
                if tx.send(buf[..n].to_vec()).is_err() {
                    self.tx = None;
                }
            }
        }
        Ok(n)
    }
}

/// Reads the chunks the [`Tee`] sends.
struct ChanReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A failed audit, located.
#[derive(Debug, Clone, Serialize)]
pub struct AuditFailure {
    /// `failed`.
    pub result: &'static str,
    /// Stable code.
    pub code: String,
    /// Failing block height, if a block is at fault.
    pub height: Option<u64>,
    /// Failing entry index in that block, if an entry is at fault.
    pub entry: Option<usize>,
    /// Reason.
    pub reason: String,
}

impl AuditFailure {
    /// The one-line form: `audit failed at block H, entry I: reason (code)`.
    pub fn line(&self) -> String {
        let at = match (self.height, self.entry) {
            (Some(h), Some(i)) => format!(" at block {h}, entry {i}"),
            (Some(h), None) => format!(" at block {h}"),
            _ => String::new(),
        };
        crate::api::one_line(&format!(
            "audit failed{at}: {} ({})",
            self.reason, self.code
        ))
    }
}

fn failure(e: &VerifyError) -> AuditFailure {
    let reason = match e {
        VerifyError::Chain(c) => c.kind.to_string(),
        VerifyError::Decode { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    AuditFailure {
        result: "failed",
        code: e.code().to_string(),
        height: e.height(),
        entry: e.entry(),
        reason,
    }
}

/// Verifies the bundle read from `input` against `genesis`. `expected_blocks` sizes the progress
/// bar (0 = unknown); `show_progress` draws it on stderr.
pub fn run(
    genesis: &Genesis,
    input: impl Read,
    expected_blocks: u64,
    show_progress: bool,
) -> Result<AuditSummary, AuditFailure> {
    let bar = if show_progress {
        let b = if expected_blocks > 0 {
            ProgressBar::new(expected_blocks)
        } else {
            ProgressBar::new_spinner()
        };
        b.set_draw_target(ProgressDrawTarget::stderr());
        let style = if expected_blocks > 0 {
            ProgressStyle::with_template(
                "verifying {bar:40} block {pos}/{len} · {msg} · {elapsed_precise}",
            )
        } else {
            ProgressStyle::with_template(
                "verifying {spinner} block {pos} · {msg} · {elapsed_precise}",
            )
        };
        if let Ok(s) = style {
            b.set_style(s);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
    let g = genesis.clone();
    let stats = std::thread::spawn(move || {
        crate::report::collect(
            &g,
            std::io::BufReader::with_capacity(
                1 << 20,
                ChanReader {
                    rx,
                    buf: vec![],
                    pos: 0,
                },
            ),
        )
    });
    let reader = std::io::BufReader::with_capacity(
        1 << 20,
        Tee {
            inner: input,
            tx: Some(tx),
        },
    );
    let result = verify_bundle(genesis, reader, |height, entries| {
        bar.set_position(height);
        if height % 16 == 0 {
            bar.set_message(format!("{entries} entries"));
        }
    })
    .map_err(|e| failure(&e));
    // The tee (and its sender) is dropped with the reader inside verify_bundle.
    let ledger = stats.join().ok().flatten();
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    result.map(|r| {
        let mut s = summary(r, seconds);
        s.ledger = ledger;
        s
    })
}

fn summary(r: VerifyReport, seconds: f64) -> AuditSummary {
    let entries_per_second = if seconds > 0.0 {
        r.entries as f64 / seconds
    } else {
        0.0
    };
    AuditSummary {
        result: "ok",
        report: r,
        seconds,
        entries_per_second,
        ledger: None,
        checkpoint: None,
    }
}

impl AuditSummary {
    /// The human report.
    pub fn text(&self) -> String {
        let r = &self.report;
        let mut s = String::from("audit verify: OK\n");
        s += &format!("  chain id      {}\n", r.chain_id);
        s += &format!("  blocks        {}\n", r.blocks);
        s += &format!("  entries       {}\n", r.entries);
        for (k, n) in &r.entries_by_kind {
            s += &format!("    {k:<24}{n}\n");
        }
        s += &format!("  head hash     {}\n", r.head_hash);
        s += &format!("  log           size {} root {}\n", r.log_size, r.log_root);
        s += &format!("  state root    {}\n", r.state_root);
        s += &format!(
            "  time          {:.3} s ({:.0} entries/s)\n",
            self.seconds, self.entries_per_second
        );
        if let Some(l) = &self.ledger {
            for line in l.text().lines() {
                s += &format!("  {line}\n");
            }
        }
        if let Some(c) = &self.checkpoint {
            s += &format!(
                "  latest checkpoint size {} signed by validators of power {} of {}, {} witness cosignature(s)\n",
                c["size"], c["validator_power"], c["total_power"],
                c["witnesses"].as_array().map_or(0, Vec::len)
            );
        }
        s
    }
}
