//! `xinyi proof verify`: an entry's inclusion in a final checkpoint, online by log position
//! (optionally saving entry, proof and checkpoint) or offline from those three files.

use crate::cmd::args::{entry_bytes, read_genesis};
use crate::cmd::ctx::Ctx;
use crate::cmd::output::{out, out_json};
use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use clap::Subcommand;
use serde::Deserialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use xinyi_client::api::EntryAnswer;
use xinyi_client::proof::{self, Included, Trust};
use xinyi_ledger::entry::Entry;

#[derive(Subcommand)]
pub enum ProofCmd {
    /// Verify an entry's inclusion in a signed checkpoint (online by position, or offline).
    Verify {
        /// Fetch this log position from the node.
        #[arg(long, conflicts_with_all = ["entry", "proof", "checkpoint"])]
        entry_position: Option<u64>,
        /// With --entry-position: save entry.bin, proof.json and checkpoint.txt here.
        #[arg(long, requires = "entry_position")]
        save: Option<PathBuf>,
        /// Offline: stored entry bytes (raw or base64).
        #[arg(long, requires_all = ["proof", "checkpoint"])]
        entry: Option<PathBuf>,
        /// Offline: JSON with "position" and "inclusion_proof".
        #[arg(long, requires = "entry")]
        proof: Option<PathBuf>,
        /// Offline: signed checkpoint note.
        #[arg(long, requires = "entry")]
        checkpoint: Option<PathBuf>,
    },
}

/// Runs one `proof` subcommand.
pub fn run(ctx: &Ctx, cmd: ProofCmd) -> Result<()> {
    let ProofCmd::Verify {
        entry_position,
        save,
        entry,
        proof,
        checkpoint,
    } = cmd;
    match (entry_position, entry, proof, checkpoint) {
        (Some(n), None, None, None) => proof_verify_online(ctx, n, save.as_deref()),
        (None, Some(e), Some(p), Some(c)) => proof_verify_offline(ctx, &e, &p, &c),
        _ => bail!(
            "proof verify needs --entry-position N, or --entry FILE --proof FILE --checkpoint FILE"
        ),
    }
}

fn proof_verify_online(ctx: &Ctx, position: u64, save: Option<&Path>) -> Result<()> {
    let h = ctx.health()?;
    let ea: EntryAnswer = ctx.get_read(&format!("/v1/entries/{position}"))?;
    if ea.position != position {
        bail!(
            "the node answered with position {} for {position}",
            ea.position
        );
    }
    let bytes = entry_bytes(&ea)?;
    let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    let trust = ctx.trust(Some(&h))?;
    let inc = ctx.verify_entry(
        &trust,
        &bytes,
        position,
        &ea.inclusion_proof,
        &ea.checkpoint,
    )?;
    if let Some(dir) = save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let w = |name: &str, data: &[u8]| {
            std::fs::write(dir.join(name), data)
                .with_context(|| format!("writing {}", dir.join(name).display()))
        };
        w("entry.bin", &bytes)?;
        w(
            "proof.json",
            serde_json::to_string_pretty(
                &json!({"position": position, "inclusion_proof": ea.inclusion_proof}),
            )
            .unwrap_or_default()
            .as_bytes(),
        )?;
        w("checkpoint.txt", ea.checkpoint.as_bytes())?;
    }
    report_proof(ctx, &entry, &inc);
    Ok(())
}

fn report_proof(ctx: &Ctx, entry: &Entry, inc: &Included) {
    if ctx.json {
        out_json(&json!({
            "id": entry.id,
            "kind": entry.body.kind.name(),
            "position": inc.position,
            "checkpoint_size": inc.size,
            "verified": true,
        }));
    } else {
        out(&format!(
            "{} entry {}\n{inc}",
            entry.body.kind.name(),
            entry.id
        ));
    }
}

#[derive(Deserialize)]
struct ProofFile {
    position: u64,
    inclusion_proof: Vec<String>,
}

fn proof_verify_offline(
    ctx: &Ctx,
    entry: &Path,
    proof_file: &Path,
    checkpoint: &Path,
) -> Result<()> {
    let gpath = ctx.genesis.as_deref().ok_or_else(|| {
        anyhow!("offline proof verification needs --genesis FILE (the trusted validator keys)")
    })?;
    let trust = Trust::from_genesis(&read_genesis(gpath)?)?;
    let raw = std::fs::read(entry).with_context(|| format!("cannot read {}", entry.display()))?;
    let bytes = match Entry::decode(&raw) {
        Ok(_) => raw,
        Err(_) => base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8_lossy(&raw).trim())
            .map_err(|_| anyhow!("{} holds neither entry bytes nor base64", entry.display()))?,
    };
    let e = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    let pf: ProofFile = serde_json::from_slice(
        &std::fs::read(proof_file)
            .with_context(|| format!("cannot read {}", proof_file.display()))?,
    )
    .map_err(|e| {
        anyhow!(
            "{}: expected {{\"position\", \"inclusion_proof\"}}: {e}",
            proof_file.display()
        )
    })?;
    let note = std::fs::read_to_string(checkpoint)
        .with_context(|| format!("cannot read {}", checkpoint.display()))?;
    let inc = proof::verify_inclusion(&trust, &bytes, pf.position, &pf.inclusion_proof, &note)?;
    report_proof(ctx, &e, &inc);
    Ok(())
}
