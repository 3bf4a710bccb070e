//! `xinyi watch`: follow a bank's monitoring alerts, each verified before it is printed
//! (`xinyi_client::watch` does the checks; this module is the command line).

use crate::cmd::args::org_arg;
use crate::cmd::ctx::Ctx;
use crate::cmd::output::out;
use anyhow::Result;
use clap::Args;
use std::time::Duration;

/// `xinyi watch` flags.
#[derive(Args)]
pub struct WatchArgs {
    /// The bank (default: the signer).
    #[arg(long)]
    bank: Option<String>,
    /// Start after this alert sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Exit after this many alerts.
    #[arg(long)]
    count: Option<u64>,
    /// Exit when no alert came for this many milliseconds.
    #[arg(long, value_name = "MS")]
    idle_exit_ms: Option<u64>,
}

/// Runs `xinyi watch`: one line per verified alert (`--json`: one JSON object per line).
pub fn run(ctx: &Ctx, a: WatchArgs) -> Result<()> {
    let signer = ctx.signer()?;
    let bank = match a.bank {
        Some(b) => org_arg("--bank", &b)?,
        None => signer.org("watching alerts")?,
    };
    let opts = xinyi_client::watch::WatchOptions {
        bank,
        after: a.after,
        count: a.count,
        idle: a.idle_exit_ms.map(Duration::from_millis),
        poll: Duration::from_secs(5),
        wait: ctx.wait,
    };
    let json = ctx.json;
    xinyi_client::watch::watch(&ctx.api, &signer, &ctx.trust(None)?, &opts, |v| {
        if json {
            out(&v.to_string());
        } else {
            out(&xinyi_client::watch::human_line(v));
        }
    })?;
    Ok(())
}
