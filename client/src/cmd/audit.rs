//! `xinyi audit verify` (the whole chain from the genesis, from the node's export or an offline
//! bundle, via `xinyi_client::audit`) and `xinyi audit consistency` (one checkpoint extends
//! another).

use crate::cmd::args::{read_genesis, read_note};
use crate::cmd::ctx::Ctx;
use crate::cmd::output::{checkpoint_json, out, out_json, warn};
use anyhow::{anyhow, Context as _, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use xinyi_client::audit;
use xinyi_client::proof::{self, Trust};
use xinyi_ledger::genesis::Genesis;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verify every block, certificate, signature and state transition from the genesis.
    Verify {
        /// Offline: an audit bundle file (needs --genesis).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Also check the ledger's EVM anchor receipts against the chain at this JSON-RPC URL.
        #[arg(long, value_name = "URL")]
        rpc: Option<String>,
    },
    /// Check that checkpoint NEW extends checkpoint OLD (both signed notes, each final), with a
    /// consistency proof from the node or from --proof.
    Consistency {
        /// Older signed checkpoint note (file).
        old: PathBuf,
        /// Newer signed checkpoint note (file).
        new: PathBuf,
        /// Offline: JSON {"proof": [hex...]} instead of asking the node.
        #[arg(long)]
        proof: Option<PathBuf>,
    },
}

/// Runs one `audit` subcommand. Returns Ok(false) when the chain fails verification (already
/// reported).
pub fn run(ctx: &Ctx, cmd: AuditCmd) -> Result<bool> {
    match cmd {
        AuditCmd::Verify { bundle, rpc } => audit_verify(ctx, bundle.as_deref(), rpc.as_deref()),
        AuditCmd::Consistency { old, new, proof } => {
            audit_consistency(ctx, &old, &new, proof.as_deref())?;
            Ok(true)
        }
    }
}

/// Runs `audit verify`. Returns Ok(false) when the chain fails verification (already reported).
fn audit_verify(ctx: &Ctx, bundle: Option<&Path>, rpc: Option<&str>) -> Result<bool> {
    let show = !ctx.json && std::io::stderr().is_terminal();
    let result = match bundle {
        Some(b) => {
            let gpath = ctx.genesis.as_deref().ok_or_else(|| {
                anyhow!("audit verify --bundle needs --genesis FILE (the trusted genesis)")
            })?;
            let genesis = read_genesis(gpath)?;
            let f = std::fs::File::open(b)
                .with_context(|| format!("cannot open bundle {}", b.display()))?;
            audit::run(&genesis, f, 0, show)
        }
        None => {
            let h = ctx.health()?;
            let (genesis, fetched) = ctx.genesis()?;
            if fetched {
                warn(&format!(
                    "using the genesis fetched from {}: a fetched genesis is only as trustworthy as the node; pass --genesis FILE to audit against a genesis you trust",
                    ctx.api.base()
                ));
            }
            let stream = ctx.get_stream_read("/v1/export")?;
            let mut r = audit::run(&genesis, stream, h.height, show);
            if let Ok(sum) = &mut r {
                sum.checkpoint = Some(latest_checkpoint_report(ctx, &genesis)?);
            }
            r
        }
    };
    match result {
        Ok(s) => {
            // With --rpc: the audited receipts against the chain (the audit passed first).
            if let (Some(url), Some(stats)) = (rpc, &s.ledger) {
                let line = xinyi_client::anchor::audit_check(url, &s, stats)?;
                if !ctx.json {
                    out(&line);
                }
            }
            if ctx.json {
                out_json(&serde_json::to_value(&s).unwrap_or(Value::Null));
            } else {
                out(&s.text());
            }
            Ok(true)
        }
        Err(f) => {
            if ctx.json {
                out_json(&serde_json::to_value(&f).unwrap_or(Value::Null));
            }
            let _ = writeln!(std::io::stderr(), "error: {}", f.line());
            Ok(false)
        }
    }
}

/// The node's latest checkpoint for the audit report: verified, final, consistent with the
/// client's state; who signed and cosigned it.
fn latest_checkpoint_report(ctx: &Ctx, genesis: &Genesis) -> Result<Value> {
    let trust = ctx.trust_in(genesis)?;
    let (_, o) = ctx.latest_checkpoint(&trust)?;
    Ok(checkpoint_json(&o))
}

fn offline_trust(ctx: &Ctx, what: &str) -> Result<Trust> {
    let gpath = ctx
        .genesis
        .as_deref()
        .ok_or_else(|| anyhow!("{what} needs --genesis FILE (the trusted validator keys)"))?;
    ctx.trust_in(&read_genesis(gpath)?)
}

fn audit_consistency(ctx: &Ctx, old: &Path, new: &Path, proof_file: Option<&Path>) -> Result<()> {
    let trust = match proof_file {
        Some(_) => offline_trust(ctx, "audit consistency --proof")?,
        None => ctx.trust(Some(&ctx.health()?))?,
    };
    let o = trust.open(&read_note(old)?)?;
    let n = trust.open(&read_note(new)?)?;
    let (a, b) = if o.size <= n.size { (&o, &n) } else { (&n, &o) };
    let p = match proof_file {
        Some(f) => {
            let v: Value = serde_json::from_slice(
                &std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
            )
            .map_err(|e| anyhow!("{}: {e}", f.display()))?;
            proof::hex_list(
                v.get("proof")
                    .ok_or_else(|| anyhow!("{}: expected {{\"proof\": [hex...]}}", f.display()))?,
            )
        }
        None => ctx.consistency_proof(a.size, b.size)?,
    };
    proof::verify_consistency(a, b, &p)?;
    if ctx.json {
        out_json(&json!({"consistent": true, "old_size": a.size, "new_size": b.size}));
    } else {
        out(&format!(
            "verified: the checkpoint of size {} extends the checkpoint of size {}",
            b.size, a.size
        ));
    }
    Ok(())
}
