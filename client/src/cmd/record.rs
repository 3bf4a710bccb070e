//! `xinyi record publish`: an agency publishes a credit record about a firm (only the record's
//! digest goes on the ledger); the answer's inclusion proof is verified like any write.

use crate::cmd::args::digest_arg;
use crate::cmd::ctx::Ctx;
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use serde_json::json;
use xinyi_client::signer::parse_uscc;
use xinyi_ledger::entry::{CreditRecord, EntryKind};
use xinyi_ledger::hash::Digest;
use xinyi_ledger::types::{Category, Severity};

/// `xinyi record` subcommands.
#[derive(Subcommand)]
pub enum RecordCmd {
    /// Publish a credit record about a firm (agency-signed CreditRecordPublished).
    Publish {
        /// Firm USCC.
        #[arg(long)]
        firm: String,
        /// Category (penalties, abnormal_list, dishonest_list, judgments, ...).
        #[arg(long, default_value = "penalties")]
        category: String,
        /// minor|general|serious.
        #[arg(long, default_value = "minor")]
        severity: String,
        /// Minimum publicity days (minor 0-90, general 90-365, serious 365-1095).
        #[arg(long, default_value_t = 0)]
        days: u16,
        /// Record id (64 hex digits; default: a random digest).
        #[arg(long)]
        record: Option<String>,
    },
}

/// Runs a `xinyi record` subcommand.
pub fn run(ctx: &Ctx, cmd: RecordCmd) -> Result<()> {
    let RecordCmd::Publish {
        firm,
        category,
        severity,
        days,
        record,
    } = cmd;
    let firm = parse_uscc(&firm)?;
    let category = Category::parse(&category).map_err(|e| anyhow!("--category: {e}"))?;
    let severity = match severity.as_str() {
        "minor" => Severity::Minor,
        "general" => Severity::General,
        "serious" => Severity::Serious,
        other => bail!("--severity: {other:?} is not minor, general or serious"),
    };
    let record = match record {
        Some(r) => digest_arg("record id", &r)?,
        None => Digest(rand::random()),
    };
    let signer = ctx.signer()?;
    signer.org("a credit record")?;
    let tag = ctx.firm_tag_as(&signer, &firm)?;
    let kind = EntryKind::CreditRecordPublished(CreditRecord {
        record,
        firm: tag,
        category,
        severity,
        min_publicity_days: days,
    });
    let (_, ans, inc) = ctx.submit(&signer, "/v1/entries", kind)?;
    ctx.report_write("record published", &ans, &inc, json!({"record": record}));
    Ok(())
}
