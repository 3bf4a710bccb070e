//! `xinyi-bench dev-node`: authorized queries end to end over HTTP against a real
//! `xinyi-node --dev` process.

use crate::ceilings::{ceilings, service_rows};
use crate::ledger::{mean_msg_len, T0};
use crate::report::{emit, Row};
use anyhow::{ensure, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xinyi_ledger::sample::SampleConsortium;

#[derive(Args)]
pub(crate) struct DevNodeArgs {
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Concurrent clients (closed loop).
    #[arg(long, default_value_t = 64)]
    pub(crate) clients: usize,
    /// Measurement duration in seconds (2 with --quick).
    #[arg(long)]
    pub(crate) seconds: Option<u64>,
    /// Attach to a running dev node instead of starting one (needs --data).
    #[arg(long, requires = "data")]
    pub(crate) node: Option<String>,
    /// Data directory of the attached node (for its genesis and dev keys).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Also write the JSON array to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Short run for CI smoke tests.
    #[arg(long)]
    pub(crate) quick: bool,
}

pub(crate) fn dev_node(a: DevNodeArgs) -> Result<()> {
    ensure!(a.clients > 0, "--clients must be positive");
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let d = Duration::from_millis(if a.quick { 200 } else { 1_000 });
    let started = Instant::now();
    let probe = SampleConsortium::new(b"xinyi-bench", 1, T0);
    let msg_len = mean_msg_len(&probe)?;
    let before = ceilings(d, threads, msg_len, 256)?;
    let r = xinyi_testnet::devnode::run(&xinyi_testnet::devnode::DevNodeOptions {
        node: a.node.clone(),
        data: a.data.clone(),
        clients: a.clients,
        duration: Duration::from_secs(a.seconds.unwrap_or(if a.quick { 2 } else { 10 })),
    })?;
    let c = before.max(&ceilings(d, threads, msg_len, 256)?);
    // A served query needs at least two signature verifications (the bank's request and the
    // agency's record); the node also verifies the request once on admission and signs once.
    let per_query = c.batch_all / 2.0;
    let [p50, p90, p99, max] = r.latency_ms;
    let mut rows = vec![
        Row::against(
            "dev_node.queries_per_sec",
            r.queries_per_sec,
            "queries/s",
            "ceiling.ed25519.verify_batch.all_cores",
            per_query,
            format!(
                "authorized queries answered with data after their QueryServed record was \
                 committed and flushed, {} concurrent HTTP clients on loopback, {} served, {} \
                 errors; ceiling = batch verify/s on all cores / 2 signatures per query \
                 (client and node share the machine)",
                a.clients, r.served, r.errors
            ),
        )
        .target(">= 5000 queries/s", r.queries_per_sec >= 5_000.0),
        Row::raw(
            "dev_node.latency_ms.p50",
            p50,
            "ms",
            "submit to answer, end to end",
        ),
        Row::raw(
            "dev_node.latency_ms.p90",
            p90,
            "ms",
            "submit to answer, end to end",
        ),
        Row::raw(
            "dev_node.latency_ms.p99",
            p99,
            "ms",
            "submit to answer, end to end",
        )
        .target("< 50 ms", p99 < 50.0),
        Row::raw(
            "dev_node.latency_ms.max",
            max,
            "ms",
            "submit to answer, end to end",
        ),
        Row::raw(
            "ceiling.ed25519.verify_strict.all_cores",
            c.strict_all,
            "sig/s",
            format!("verify_strict, {threads} threads; higher of two runs"),
        ),
    ];
    rows.extend(service_rows(
        &c,
        threads,
        started,
        "whole run including node start-up",
    ));
    emit(&rows, a.json, a.out.as_ref(), None)
}
