//! `xinyi-bench monitor`: post-loan monitoring alerts delivered (logged first) against a real
//! dev node, beside the query figure on the same node and the ceilings; the run itself is
//! `xinyi_testnet::monitor`.

use crate::ceilings::{ceilings, service_rows};
use crate::ledger::{mean_msg_len, T0};
use crate::report::{print_table, Row};
use anyhow::{ensure, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xinyi_ledger::sample::SampleConsortium;

#[derive(Args)]
pub(crate) struct MonitorArgs {
    /// Monitored firms (each with a monitoring consent for bank-a).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) firms: usize,
    /// Offered credit records/s about those firms (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub(crate) rate: f64,
    /// Seconds of load (3 with --quick).
    #[arg(long)]
    pub(crate) seconds: Option<u64>,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the JSON array to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Short run for CI smoke tests (50 firms, 20 records/s, 3 s, short ceilings).
    #[arg(long)]
    pub(crate) quick: bool,
}

/// `xinyi-bench monitor`: the run is `xinyi_testnet::monitor`; this is its table.
pub(crate) fn monitor(a: MonitorArgs) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let d = Duration::from_millis(if a.quick { 200 } else { 1_000 });
    let started = Instant::now();
    let msg_len = mean_msg_len(&SampleConsortium::new(b"xinyi-bench", 1, T0))?;
    let before = ceilings(d, threads, msg_len, 256)?;
    let (firms, rate) = if a.quick {
        (50, 20.0)
    } else {
        (a.firms.max(1), a.rate)
    };
    ensure!(rate > 0.0, "--rate must be positive");
    let (m, guard) = xinyi_testnet::monitor::run(&xinyi_testnet::monitor::MonitorOptions {
        firms,
        rate,
        duration: Duration::from_secs(a.seconds.unwrap_or(if a.quick { 3 } else { 10 })),
        data: None,
    })?;
    // The query figure on the same node, right after (closed loop, as `dev-node`).
    let q = xinyi_testnet::devnode::run(&xinyi_testnet::devnode::DevNodeOptions {
        node: Some(m.url.clone()),
        data: Some(m.data.clone()),
        clients: if a.quick { 8 } else { 64 },
        duration: Duration::from_secs(if a.quick { 2 } else { 5 }),
    })?;
    drop(guard);
    let c = before.max(&ceilings(d, threads, msg_len, 256)?);
    let [p50, p90, p99, max] = m.latency_ms;
    let note = |what: &str| format!("{what}; {firms} monitored firms, {rate} records/s offered");
    let mut rows = vec![
        Row::against(
            "monitor.alerts_per_sec",
            m.alerts_per_sec,
            "alerts/s",
            "ceiling.ed25519.verify_batch.all_cores",
            c.batch_all,
            format!(
                "alerts received by the bank's long poll, each logged in a committed \
                 alerts_delivered entry first; {} records committed, {} alerts, {} errors; \
                 {firms} monitored firms at {rate} records/s offered; ceiling = batch verify/s \
                 (one agency signature per delivery entry)",
                m.records, m.alerts, m.errors
            ),
        )
        .target(">= offered rate (every record alerted)", m.alerts >= m.records && m.records > 0),
        Row::raw("monitor.records_per_sec", m.records_per_sec, "records/s", note("records committed")),
        Row::raw("monitor.latency_ms.p50", p50, "ms", note("record commit (write answered) to alert received")),
        Row::raw("monitor.latency_ms.p90", p90, "ms", note("record commit to alert received")),
        Row::raw("monitor.latency_ms.p99", p99, "ms", note("record commit to alert received")),
        Row::raw("monitor.latency_ms.max", max, "ms", note("record commit to alert received")),
        Row::against(
            "dev_node.queries_per_sec",
            q.queries_per_sec,
            "queries/s",
            "ceiling.ed25519.verify_batch.all_cores",
            c.batch_all / 2.0,
            format!("the query benchmark on the same node after the monitor load, {} served, {} errors; ceiling = batch verify/s / 2", q.served, q.errors),
        ),
        Row::raw("dev_node.latency_ms.p50", q.latency_ms[0], "ms", "query submit to answer, same node"),
        Row::raw("dev_node.latency_ms.p99", q.latency_ms[2], "ms", "query submit to answer, same node"),
    ];
    rows.extend(service_rows(
        &c,
        threads,
        started,
        "whole run including node start-up and setup",
    ));
    let json = serde_json::to_string_pretty(&rows)?;
    if let Some(path) = &a.out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print_table(&rows);
    }
    Ok(())
}
