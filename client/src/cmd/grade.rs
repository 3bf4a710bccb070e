//! `xinyi grade assign|show`: an agency's supervision grades of firms.

use crate::cmd::args::parse_grade;
use crate::cmd::ctx::Ctx;
use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use xinyi_client::signer::parse_uscc;
use xinyi_ledger::entry::EntryKind;

#[derive(Subcommand)]
pub enum GradeCmd {
    /// Assign a supervision grade (agency).
    Assign {
        /// Firm USCC.
        #[arg(long)]
        firm: String,
        /// Supervision domain, e.g. food-drug.
        #[arg(long)]
        domain: String,
        /// a|b|c|d|green|blue|yellow|red.
        #[arg(long)]
        grade: String,
    },
    /// Show a firm's grade in a domain.
    Show {
        /// Firm USCC.
        #[arg(long)]
        firm: String,
        /// Domain.
        #[arg(long)]
        domain: String,
    },
}

/// Runs one `grade` subcommand.
pub fn run(ctx: &Ctx, cmd: GradeCmd) -> Result<()> {
    match cmd {
        GradeCmd::Assign {
            firm,
            domain,
            grade,
        } => {
            let firm = parse_uscc(&firm)?;
            let grade = parse_grade(&grade)?;
            let signer = ctx.signer()?;
            signer.org("a grade")?;
            let firm = ctx.firm_tag_as(&signer, &firm)?;
            let (_, ans, inc) = ctx.submit(
                &signer,
                "/v1/grades",
                EntryKind::GradeAssigned {
                    firm,
                    domain,
                    grade,
                },
            )?;
            ctx.report_write("grade assigned", &ans, &inc, json!({}));
        }
        GradeCmd::Show { firm, domain } => {
            let firm = parse_uscc(&firm)?;
            if domain.is_empty() || domain.contains('/') {
                bail!("--domain must be a non-empty name without '/'");
            }
            let v: Value = ctx.api.get(&format!("/v1/firms/{firm}/grades/{domain}"))?;
            ctx.show(&v);
        }
    }
    Ok(())
}
