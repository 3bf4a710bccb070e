//! `xinyi witness serve|vkey`: run an independent C2SP tlog-witness
//! (`xinyi_client::witness`) or print its verifier key.

use crate::cmd::args::read_genesis;
use crate::cmd::ctx::Ctx;
use crate::cmd::output::out;
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use std::path::PathBuf;
use xinyi_client::proof::Trust;
use xinyi_client::witness::Witness;
use xinyi_ledger::note::Cosigner;

#[derive(Subcommand)]
pub enum WitnessCmd {
    /// Serve the tlog-witness protocol (POST /add-checkpoint, GET /<origin hash>/checkpoint).
    Serve {
        /// Listen address (e.g. 127.0.0.1:7900).
        #[arg(long)]
        listen: String,
        /// Witness name (key name of its cosignatures), e.g. auditor.example/w1.
        #[arg(long)]
        name: String,
        /// Genesis file of a log to witness (repeatable; default --genesis).
        #[arg(long = "log", value_name = "GENESIS")]
        logs: Vec<PathBuf>,
        /// State file (the latest cosigned checkpoint per log).
        #[arg(long)]
        state_file: PathBuf,
    },
    /// Print the witness's verifier key (`name+keyid+base64(0x04 ‖ key)`).
    Vkey {
        /// Witness name.
        #[arg(long)]
        name: String,
    },
}

/// Runs one `witness` subcommand.
pub fn run(ctx: &Ctx, cmd: WitnessCmd) -> Result<()> {
    let signer = ctx.signer_key()?;
    match cmd {
        WitnessCmd::Vkey { name } => {
            let c =
                Cosigner::new(name, signer.signing_key().clone()).map_err(|e| anyhow!("{e}"))?;
            out(&c.key().to_string());
        }
        WitnessCmd::Serve {
            listen,
            name,
            logs,
            state_file,
        } => {
            let c =
                Cosigner::new(name, signer.signing_key().clone()).map_err(|e| anyhow!("{e}"))?;
            let mut paths = logs;
            if paths.is_empty() {
                paths.extend(ctx.genesis.clone());
            }
            if paths.is_empty() {
                bail!("witness serve needs --log GENESIS (or --genesis) for each log it witnesses");
            }
            let trusts = paths
                .iter()
                .map(|p| Trust::from_genesis(&read_genesis(p)?))
                .collect::<Result<Vec<_>>>()?;
            let origins: Vec<String> = trusts.iter().map(|t| t.origin.clone()).collect();
            let w = Witness::open(c, trusts, &state_file)?;
            let server = tiny_http::Server::http(&listen)
                .map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
            out(&format!(
                "witness {} listening on http://{}\nvkey {}\nlogs: {}",
                w.cosigner().key().name,
                server.server_addr(),
                w.cosigner().key(),
                origins.join(", ")
            ));
            w.serve(server)?;
        }
    }
    Ok(())
}
