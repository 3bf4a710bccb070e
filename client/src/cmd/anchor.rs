//! `xinyi anchor verify`: the consortium's anchors on an EVM chain checked against the ledger
//! (the checks are `xinyi_client::anchor`; this module wires them to the command line).

use crate::cmd::ctx::Ctx;
use crate::cmd::output::{out, out_json};
use anyhow::{anyhow, Result};
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub enum AnchorCmd {
    /// Read every anchor of this consortium from the contract (eth_getLogs) and check each
    /// anchored root against the ledger's final checkpoint with consistency proofs; also check
    /// the ledger's receipts against the chain. The first disagreement fails with its code.
    Verify {
        /// JSON-RPC URL of the EVM chain.
        #[arg(long, value_name = "URL")]
        rpc: String,
        /// Anchor contract (default: the one of the ledger's latest receipt on this chain,
        /// read from the node's export).
        #[arg(long, value_name = "ADDR")]
        contract: Option<String>,
    },
}

/// Runs one `anchor` subcommand.
pub fn run(ctx: &Ctx, cmd: AnchorCmd) -> Result<()> {
    match cmd {
        AnchorCmd::Verify { rpc, contract } => {
            let trust = ctx.trust(Some(&ctx.health()?))?;
            let (g, _) = ctx.genesis()?;
            let receipts = || {
                let stats = xinyi_client::report::collect(&g, ctx.get_stream_read("/v1/export")?)
                    .ok_or_else(|| {
                    anyhow!("the node's export does not replay; run `xinyi audit verify`")
                })?;
                Ok(xinyi_client::anchor::receipts_of(&stats))
            };
            let (report, checked) = xinyi_client::anchor::verify_cmd(
                &ctx.api,
                &trust,
                &rpc,
                contract.as_deref(),
                receipts,
            )?;
            if ctx.json {
                out_json(&json!({"result": "ok", "anchors": report, "receipts_checked": checked}));
            } else {
                out(&format!(
                    "{}ledger receipts checked against the chain: {checked}",
                    report.text()
                ));
            }
            Ok(())
        }
    }
}
