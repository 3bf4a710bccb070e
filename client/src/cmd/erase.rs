//! `xinyi erase`: an agency erases its off-ledger data on a firm (a `data_erased` entry; the
//! node holding the data destroys the data keys once it commits, `specs/privacy.md` §7).

use crate::cmd::args::{categories_arg, digest_arg};
use crate::cmd::ctx::Ctx;
use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde_json::json;
use xinyi_client::signer::parse_uscc;
use xinyi_ledger::entry::{EntryKind, Erasure, ErasureReason};
use xinyi_ledger::types::Category;

/// Erase a firm's off-ledger data (agency). The ledger keeps its digests and checks the reason:
/// consent-withdrawn and purpose-ended name the consent (--reference), record-repaired and
/// retention-ended the record. Once committed, the data cannot be read back from any store or
/// backup; queries for it answer 410 data.erased.
#[derive(Args)]
pub struct EraseArgs {
    /// Firm USCC.
    #[arg(long)]
    firm: String,
    /// Categories to erase, comma-separated (e.g. penalties,tax).
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    categories: Option<String>,
    /// Erase every category.
    #[arg(long)]
    all: bool,
    /// consent-withdrawn | purpose-ended | record-repaired | retention-ended |
    /// subject-request | legal-order.
    #[arg(long)]
    reason: String,
    /// The consent or record id the reason refers to (64 hex digits); for subject-request and
    /// legal-order, optionally the salted digest of the request or order.
    #[arg(long)]
    reference: Option<String>,
}

/// Runs `xinyi erase`.
pub fn run(ctx: &Ctx, a: EraseArgs) -> Result<()> {
    let firm = parse_uscc(&a.firm)?;
    let reason = ErasureReason::parse(&a.reason).ok_or_else(|| {
        anyhow!(
            "--reason {:?}: expected one of {}",
            a.reason,
            ErasureReason::ALL
                .iter()
                .map(|r| r.name().replace('_', "-"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let reference = a
        .reference
        .as_deref()
        .map(|r| digest_arg("--reference", r))
        .transpose()?;
    if reason.needs_reference() && reference.is_none() {
        bail!(
            "--reason {}: --reference must name the {} it refers to",
            a.reason,
            if reason == ErasureReason::RecordRepaired {
                "record"
            } else {
                "consent"
            }
        );
    }
    let categories = match &a.categories {
        Some(c) => categories_arg(c)?,
        None => Category::ALL.to_vec(),
    };
    let signer = ctx.signer()?;
    signer.org("an erasure")?;
    let tag = ctx.firm_tag_as(&signer, &firm)?;
    let (_, ans, inc) = ctx.submit(
        &signer,
        "/v1/erasures",
        EntryKind::DataErased(Erasure {
            firm: tag,
            categories: categories.clone(),
            reason,
            reference,
        }),
    )?;
    ctx.report_write(
        "data erased",
        &ans,
        &inc,
        json!({
            "firm": firm.as_str(),
            "categories": categories.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "reason": reason.name(),
        }),
    );
    Ok(())
}
