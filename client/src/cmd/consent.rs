//! `xinyi consent grant|revoke|show`: a firm's consents to banks (signed by the firm).

use crate::cmd::args::{categories_arg, digest_arg, org_arg, salted_random};
use crate::cmd::ctx::Ctx;
use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use xinyi_client::signer::parse_uscc;
use xinyi_ledger::entry::{Consent, EntryKind};
use xinyi_ledger::types::DAY_MS;
use xinyi_ledger::FirmTag;

#[derive(Subcommand)]
pub enum ConsentCmd {
    /// Grant a bank a consent (signed by the firm).
    Grant {
        /// Firm USCC (must be the signer).
        #[arg(long)]
        firm: String,
        /// Bank org id.
        #[arg(long)]
        bank: String,
        /// Categories, comma-separated.
        #[arg(long)]
        categories: String,
        /// Number of queries allowed.
        #[arg(long)]
        uses: u32,
        /// Validity in days from now.
        #[arg(long)]
        days: u32,
        /// Purpose. Only its salted digest goes on the ledger; the salt is printed
        /// (`purpose_salt`) for the firm and the bank to keep.
        #[arg(long, default_value = "loan application")]
        purpose: String,
        /// Post-loan monitoring: the bank is alerted about these changes while the consent is in
        /// force (penalties, abnormal_list, dishonest_list, judgments, other_records, grades,
        /// commitments_broken, repairs; comma-separated).
        #[arg(long, value_name = "CATEGORIES")]
        monitor: Option<String>,
    },
    /// Revoke a consent (signed by the firm).
    Revoke {
        /// Consent id.
        id: String,
    },
    /// Show a consent.
    Show {
        /// Consent id.
        id: String,
    },
}

/// Runs one `consent` subcommand.
pub fn run(ctx: &Ctx, cmd: ConsentCmd) -> Result<()> {
    match cmd {
        ConsentCmd::Grant {
            firm,
            bank,
            categories,
            uses,
            days,
            purpose,
            monitor,
        } => {
            let monitoring = monitor
                .as_deref()
                .map(xinyi_client::watch::monitoring_arg)
                .transpose()?;
            let firm = parse_uscc(&firm)?;
            let bank = org_arg("--bank", &bank)?;
            let categories = categories_arg(&categories)?;
            if uses == 0 {
                bail!("--uses must be at least 1");
            }
            if days == 0 {
                bail!("--days must be at least 1");
            }
            let signer = ctx.signer()?;
            let me = signer.firm("a consent")?;
            if me != firm {
                bail!("the key signs as firm {me} but --firm is {firm}: a consent is granted by the firm itself");
            }
            if purpose.trim().is_empty() || purpose.len() > 512 {
                bail!("--purpose must be 1-512 bytes of text");
            }
            let now = ctx.health()?.time_ms;
            // Salted digest (Consent::purpose_digest): the ledger never holds the text.
            let (purpose_digest, purpose_salt) = salted_random(purpose.as_bytes());
            let kind = EntryKind::ConsentGranted(Consent {
                bank,
                purpose: purpose_digest,
                categories,
                not_before: now.saturating_sub(60_000),
                not_after: now + u64::from(days) * DAY_MS,
                max_uses: uses,
                monitoring,
            });
            let (_, ans, inc) = ctx.submit(&signer, "/v1/consents", kind)?;
            ctx.report_write(
                "consent granted",
                &ans,
                &inc,
                json!({"purpose": purpose, "purpose_salt": purpose_salt}),
            );
        }
        ConsentCmd::Revoke { id } => {
            let consent = digest_arg("consent id", &id)?;
            let signer = ctx.signer()?;
            signer.firm("a revocation")?;
            // Signed under the tag the consent was granted under: a consent granted before a
            // firm-key rotation names the firm's older tag (privacy.md §8).
            let under = || {
                let v: Value = ctx
                    .get_signed(&signer, &format!("/v1/consents/{consent}"))
                    .ok()?;
                FirmTag::from_hex(v.get("firm")?.as_str()?).ok()
            };
            let (_, ans, inc) = ctx.submit_under(
                &signer,
                &under,
                &format!("/v1/consents/{consent}/revoke"),
                EntryKind::ConsentRevoked { consent },
            )?;
            ctx.report_write("consent revoked", &ans, &inc, json!({"consent": consent}));
        }
        ConsentCmd::Show { id } => {
            let id = digest_arg("consent id", &id)?;
            let v: Value = ctx.get_read(&format!("/v1/consents/{id}"))?;
            ctx.show(&v);
        }
    }
    Ok(())
}
