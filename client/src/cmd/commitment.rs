//! `xinyi commitment make|broken|show`: credit commitments (信用承诺) of a firm to an agency.

use crate::cmd::args::{digest_arg, org_arg, salted_random};
use crate::cmd::ctx::Ctx;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};
use xinyi_ledger::entry::EntryKind;
use xinyi_ledger::types::DAY_MS;

#[derive(Subcommand)]
pub enum CommitmentCmd {
    /// Make a commitment to an agency (firm).
    Make {
        /// Agency org id.
        #[arg(long)]
        agency: String,
        /// Commitment text (only its salted digest is logged).
        #[arg(long)]
        text: String,
        /// Due in this many days.
        #[arg(long)]
        due_days: u32,
    },
    /// Record a commitment as broken (agency).
    Broken {
        /// Commitment id.
        id: String,
        /// Finding text (only its salted digest is logged).
        #[arg(long)]
        finding: String,
    },
    /// Show a commitment.
    Show {
        /// Commitment id.
        id: String,
    },
}

/// Runs one `commitment` subcommand.
pub fn run(ctx: &Ctx, cmd: CommitmentCmd) -> Result<()> {
    match cmd {
        CommitmentCmd::Make {
            agency,
            text,
            due_days,
        } => {
            let agency = org_arg("--agency", &agency)?;
            let signer = ctx.signer()?;
            signer.firm("a commitment")?;
            let now = ctx.health()?.time_ms;
            let (content, salt) = salted_random(text.as_bytes());
            let (_, ans, inc) = ctx.submit(
                &signer,
                "/v1/commitments",
                EntryKind::CommitmentMade {
                    agency,
                    content,
                    due: now + u64::from(due_days) * DAY_MS,
                },
            )?;
            ctx.report_write("commitment made", &ans, &inc, json!({"content_salt": salt}));
        }
        CommitmentCmd::Broken { id, finding } => {
            let commitment = digest_arg("commitment id", &id)?;
            let signer = ctx.signer()?;
            signer.org("a broken-commitment finding")?;
            let (fd, salt) = salted_random(finding.as_bytes());
            let (_, ans, inc) = ctx.submit(
                &signer,
                &format!("/v1/commitments/{commitment}/broken"),
                EntryKind::CommitmentBroken {
                    commitment,
                    finding: fd,
                },
            )?;
            ctx.report_write(
                "commitment broken",
                &ans,
                &inc,
                json!({"finding_salt": salt}),
            );
        }
        CommitmentCmd::Show { id } => {
            let id = digest_arg("commitment id", &id)?;
            let v: Value = ctx.api.get(&format!("/v1/commitments/{id}"))?;
            ctx.show(&v);
        }
    }
    Ok(())
}
