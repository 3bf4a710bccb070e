//! `xinyi repair request|decide|apply|status`: credit repair (信用修复) — a firm asks, the
//! penalising agency decides, each registry records that it applied the decision.

use crate::cmd::args::{digest_arg, entry_bytes, file_or, salted_random};
use crate::cmd::ctx::Ctx;
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use xinyi_client::api::EntryAnswer;
use xinyi_client::signer::Signer;
use xinyi_ledger::entry::{Entry, EntryKind};
use xinyi_ledger::hash::Digest;
use xinyi_ledger::FirmTag;

#[derive(Subcommand)]
pub enum RepairCmd {
    /// Ask for a record to be repaired (firm).
    Request {
        /// Record id.
        #[arg(long)]
        record: String,
        /// File proving obligations were fulfilled (only its salted digest is logged).
        #[arg(long)]
        fulfilment: Option<PathBuf>,
        /// Signed commitment letter file (only its salted digest is logged).
        #[arg(long)]
        letter: Option<PathBuf>,
    },
    /// Approve or reject a repair (the penalising agency).
    Decide {
        /// Repair id.
        id: String,
        #[command(flatten)]
        verdict: Verdict,
        /// Reason.
        #[arg(long)]
        reason: String,
    },
    /// Record that this registry applied an approved repair.
    Apply {
        /// Repair id.
        id: String,
    },
    /// Show a repair's status (overdue evaluated at the node clock).
    Status {
        /// Repair id.
        id: String,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Verdict {
    /// Approve.
    #[arg(long)]
    approve: bool,
    /// Reject.
    #[arg(long)]
    reject: bool,
}

/// The tag record `record` names, from the firm's public record list and the record's entry
/// (`None` if the node does not list it; the ledger then answers the request).
fn record_tag(ctx: &Ctx, signer: &Signer, record: &Digest) -> Option<FirmTag> {
    let u = signer.firm("a repair request").ok()?;
    let v: Value = ctx.api.get(&format!("/v1/firms/{u}/records")).ok()?;
    let pos = v
        .get("records")?
        .as_array()?
        .iter()
        .find(|r| r.get("id").and_then(Value::as_str) == Some(record.to_hex().as_str()))?
        .get("position")?
        .as_u64()?;
    let ea: EntryAnswer = ctx.get_signed(signer, &format!("/v1/entries/{pos}")).ok()?;
    let entry = Entry::decode(&entry_bytes(&ea).ok()?).ok()?;
    match entry.body.kind {
        EntryKind::CreditRecordPublished(r) if r.record == *record => Some(r.firm),
        _ => None,
    }
}

/// Runs one `repair` subcommand.
pub fn run(ctx: &Ctx, cmd: RepairCmd) -> Result<()> {
    match cmd {
        RepairCmd::Request {
            record,
            fulfilment,
            letter,
        } => {
            let record = digest_arg("record id", &record)?;
            let signer = ctx.signer()?;
            signer.firm("a repair request")?;
            let f = file_or(fulfilment.as_deref(), format!("fulfilment of {record}"))?;
            let l = file_or(letter.as_deref(), format!("commitment letter for {record}"))?;
            let (fd, fs) = salted_random(&f);
            let (ld, ls) = salted_random(&l);
            // Signed under the tag the record names (a record published before a firm-key
            // rotation names the firm's older tag, privacy.md §8).
            let under = || record_tag(ctx, &signer, &record);
            let (_, ans, inc) = ctx.submit_under(
                &signer,
                &under,
                "/v1/repairs",
                EntryKind::RepairRequested {
                    record,
                    fulfilment: fd,
                    commitment_letter: ld,
                },
            )?;
            ctx.report_write(
                "repair requested",
                &ans,
                &inc,
                json!({"fulfilment_salt": fs, "commitment_letter_salt": ls}),
            );
        }
        RepairCmd::Decide {
            id,
            verdict,
            reason,
        } => {
            let repair = digest_arg("repair id", &id)?;
            let signer = ctx.signer()?;
            signer.org("a repair decision")?;
            let approved = verdict.approve && !verdict.reject;
            let (_, ans, inc) = ctx.submit(
                &signer,
                &format!("/v1/repairs/{repair}/decision"),
                EntryKind::RepairDecided {
                    repair,
                    approved,
                    reason,
                },
            )?;
            let what = if approved {
                "repair approved"
            } else {
                "repair rejected"
            };
            ctx.report_write(what, &ans, &inc, json!({}));
        }
        RepairCmd::Apply { id } => {
            let repair = digest_arg("repair id", &id)?;
            let signer = ctx.signer()?;
            signer.org("a repair application")?;
            let (_, ans, inc) = ctx.submit(
                &signer,
                &format!("/v1/repairs/{repair}/applications"),
                EntryKind::RepairApplied { repair },
            )?;
            ctx.report_write("repair applied", &ans, &inc, json!({}));
        }
        RepairCmd::Status { id } => {
            let id = digest_arg("repair id", &id)?;
            let v: Value = ctx.api.get(&format!("/v1/repairs/{id}"))?;
            ctx.show(&v);
        }
    }
    Ok(())
}
