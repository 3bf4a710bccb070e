//! `xinyi-bench cluster`: authorized queries, open loop, against a local multi-validator
//! testnet of real processes; with `--app noop|both`, the no-op peer beside it
//! (`xinyi_testnet::noop`): the same engine and transport ordering opaque payloads of the
//! same size without ledger work, and xinyi's rate as a ratio of the no-op's.

use crate::ceilings::{ceiling_rows, ceilings, Ceilings};
use crate::ledger::{mean_msg_len, query_entries, T0};
use crate::report::{emit, loadavg, wall_row, Row};
use anyhow::{bail, ensure, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xinyi_ledger::sample::SampleConsortium;
use xinyi_ledger::Digest;
use xinyi_testnet::cluster::{NodeSample, StepResult, Via};
use xinyi_testnet::noop::{NoopNet, NoopStep};

/// What the validators run (`--app`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum App {
    /// xinyi: the ledger (queries through the HTTP API).
    Ledger,
    /// The no-op peer only.
    Noop,
    /// The ledger, then the no-op peer with payloads of the ledger's mean block, in one run.
    Both,
}

/// Query records per no-op payload when neither `--payload-queries` nor a ledger step says.
pub(crate) const DEFAULT_PAYLOAD_QUERIES: usize = 256;

#[derive(Args)]
pub(crate) struct ClusterArgs {
    /// Validators of the testnet it starts.
    #[arg(long, default_value_t = 4)]
    pub(crate) validators: usize,
    /// Followers of the testnet it starts (bank-a first; needed for --via bank).
    #[arg(long, default_value_t = 0)]
    pub(crate) followers: usize,
    /// Offered queries/s (open loop).
    #[arg(long, default_value_t = 2_000.0)]
    pub(crate) rate: f64,
    /// Seconds of load (per step with --max).
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Find the sustainable rate: raise the rate by 1.5x from --rate until a step does not
    /// keep up (served < 97% of sent, < 90% of the rate, or p99 >= 2 s), then bisect once.
    #[arg(long)]
    pub(crate) max: bool,
    /// Concurrent HTTP connections (client threads).
    #[arg(long, default_value_t = 512)]
    pub(crate) connections: usize,
    /// Requests per HTTP request: above 1, queries go `--batch` at a time to
    /// `POST /v1/queries/batch` (at most 256).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) batch: u16,
    /// Where queries enter: `agency` (gz-credit's node) or `bank` (bank-a's follower).
    #[arg(long, default_value = "agency")]
    pub(crate) via: String,
    /// Use (attach to, or create) the testnet in this directory instead of a temporary one.
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// First port of a testnet it creates (default: a random free range).
    #[arg(long)]
    pub(crate) base_port: Option<u16>,
    /// Leave a testnet it started running.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the JSON array to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Also write a markdown table to this file.
    #[arg(long)]
    pub(crate) md: Option<PathBuf>,
    /// Short ceiling runs (CI smoke).
    #[arg(long)]
    pub(crate) quick: bool,
    /// What the validators run: `ledger` (xinyi), `noop` (the same Commonware engine and libp2p
    /// transport ordering opaque payloads without ledger work; every leader proposes at once,
    /// there is no load generator), or `both`: the ledger step(s), then one no-op step of
    /// --duration with payloads of the ledger's mean block, and xinyi's committed rate as a
    /// ratio of the no-op's ordered rate.
    #[arg(long, value_enum, default_value = "ledger")]
    pub(crate) app: App,
    /// Query records per no-op payload (payload bytes = this x the encoded size of a query
    /// record). Default: with `both`, the mean entries per block of the reported ledger step;
    /// with `noop`, 256.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) payload_queries: Option<u64>,
}

/// The ledger part of a run.
struct LedgerRun {
    steps: Vec<StepResult>,
    best: Option<usize>,
    entry_bytes: f64,
    log_size: u64,
    final_nodes: Vec<NodeSample>,
    validators: usize,
}

impl LedgerRun {
    /// The reported step: the best sustained one, else the last.
    fn reported(&self) -> Result<&StepResult> {
        match self.best {
            Some(i) => Ok(&self.steps[i]),
            None => self
                .steps
                .last()
                .ok_or_else(|| anyhow::anyhow!("no step ran")),
        }
    }
}

/// Encoded bytes of one signed `QueryServed` record (the benchmark's sample consortium).
fn query_record_bytes(c: &SampleConsortium) -> Result<usize> {
    let firm = SampleConsortium::firm(0)?;
    let e = query_entries(c, &[(firm, Digest::ZERO)], 0..1, T0)?;
    Ok(e.first().map_or(0, |e| e.bytes.len()))
}

pub(crate) fn cluster(a: ClusterArgs) -> Result<()> {
    let via = match a.via.as_str() {
        "agency" => Via::Agency,
        "bank" => Via::Bank,
        other => bail!("--via must be agency or bank, not {other}"),
    };
    ensure!(a.validators >= 1, "--validators must be at least 1");
    ensure!(a.duration >= 1, "--duration must be at least 1 s");
    ensure!(
        a.app != App::Noop || !a.max,
        "--max drives the ledger; the no-op peer has no offered rate (use --app both)"
    );
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let d = Duration::from_millis(if a.quick { 150 } else { 1_000 });
    let started = Instant::now();
    let load_before = loadavg();
    let probe = SampleConsortium::new(b"xinyi-bench", 1, T0);
    let msg_len = mean_msg_len(&probe)?;
    let record_bytes = query_record_bytes(&probe)?;
    let before = ceilings(d, threads, msg_len, 256)?;
    let ledger = match a.app {
        App::Noop => None,
        App::Ledger | App::Both => Some(run_ledger(&a, via)?),
    };
    let noop = match a.app {
        App::Ledger => None,
        App::Noop | App::Both => {
            // The payload: the ledger step's mean block (entries per block x the size of the
            // query record it committed), unless --payload-queries says otherwise.
            let (queries, rec) = match &ledger {
                Some(l) => {
                    let r = l.reported()?;
                    let per_block = (r.log_growth as f64 / r.blocks.max(1) as f64).round() as u64;
                    let rec = if l.entry_bytes > 0.0 {
                        l.entry_bytes as usize
                    } else {
                        record_bytes
                    };
                    (a.payload_queries.unwrap_or(per_block.max(1)), rec)
                }
                None => (
                    a.payload_queries.unwrap_or(DEFAULT_PAYLOAD_QUERIES as u64),
                    record_bytes,
                ),
            };
            let bytes = usize::try_from(queries)? * rec.max(1);
            eprintln!(
                "xinyi-bench cluster: starting the no-op peer ({} validators, payloads of {bytes} bytes = {queries} query record(s) of {rec} bytes)",
                a.validators
            );
            let net = NoopNet::start(a.validators, bytes, !a.json)?;
            let step = net.measure(Duration::from_secs(a.duration))?;
            drop(net);
            Some((step, queries, rec))
        }
    };
    let c = before.max(&ceilings(d, threads, msg_len, 256)?);
    let load_after = loadavg();
    let validators = ledger.as_ref().map_or(a.validators, |l| l.validators);
    // The unavoidable signature work of one query on this machine: every validator verifies
    // the bank's request and the agency's record signature (2 per validator, batched); the
    // agency node verifies the request on admission (strict) and signs the record once. With
    // all nodes sharing the machine's cores, the crypto ceiling is cores / that cost.
    let per_query_core_s = 2.0 * validators as f64 / c.batch_1 + 1.0 / c.strict_1 + 1.0 / c.sign_1;
    let crypto_ceiling = threads as f64 / per_query_core_s;

    let mut rows = Vec::new();
    if let Some(l) = &ledger {
        rows.extend(ledger_rows(&a, via, l, &c, threads, crypto_ceiling)?);
    }
    if let Some((step, queries, rec)) = &noop {
        let n = noop_rows(step, *queries, *rec, threads);
        rows.extend(n.rows);
        if let Some(l) = &ledger {
            let q = l.reported()?.served_per_sec;
            rows.push(Row::against(
                "cluster.queries_per_sec_vs_noop",
                q.max(f64::MIN_POSITIVE),
                "queries/s",
                "cluster.noop.query_equivalents_per_sec",
                n.query_equivalents_per_sec.max(f64::MIN_POSITIVE),
                format!(
                    "xinyi's committed queries/s (cluster.queries_per_sec) as a fraction of what the \
                     same engine and transport order without ledger work, in query records of \
                     {rec} bytes, payloads of {queries} records (the ledger step's mean block), \
                     in the same run"
                ),
            ));
        }
    }
    rows.push(Row::raw(
        "ceiling.cluster.crypto_queries_per_sec",
        crypto_ceiling,
        "queries/s",
        format!(
            "{threads} cores / ({} validators x 2 / verify_batch.1core + 1 / verify_strict.1core \
             + 1 / sign.1core) = the queries/s this machine could serve doing nothing but the \
             signature work every query needs; the client's own signing is done before the run",
            validators
        ),
    ));
    rows.extend(ceiling_rows(&c, threads, msg_len));
    rows.push(wall_row(
        started,
        "testnet start-up",
        threads,
        load_before,
        load_after,
    ));
    if let (true, Some(l)) = (a.max, &ledger) {
        for (i, st) in l.steps.iter().enumerate() {
            rows.push(Row::raw(
                &format!("cluster.max.step{i}.served_per_sec"),
                st.served_per_sec.max(f64::MIN_POSITIVE),
                "queries/s",
                format!(
                    "offered {:.0}/s: {} of {} served, {} errors, p50 {:.1} ms, p99 {:.1} ms{}",
                    st.rate,
                    st.served,
                    st.sent,
                    st.errors,
                    st.latency_ms[0],
                    st.latency_ms[2],
                    if xinyi_testnet::cluster::sustained(st) {
                        ""
                    } else {
                        " (not sustained)"
                    }
                ),
            ));
        }
    }
    emit(&rows, a.json, a.out.as_ref(), a.md.as_ref())
}

/// Starts (or attaches to) the ledger testnet and runs the open-loop step(s).
fn run_ledger(a: &ClusterArgs, via: Via) -> Result<LedgerRun> {
    use xinyi_testnet::cluster as cl;
    let followers = if via == Via::Bank {
        a.followers.max(1)
    } else {
        a.followers
    };
    eprintln!("xinyi-bench cluster: starting the testnet");
    let net = cl::Testnet::open(&cl::ClusterSetup {
        dir: a.dir.clone(),
        validators: a.validators,
        followers,
        base_port: a.base_port,
        keep: a.keep,
        verbose: !a.json,
    })?;
    let validators = net.manifest.validators;
    let duration = Duration::from_secs(a.duration);
    let batch = usize::from(a.batch);
    let (steps, best) = if a.max {
        cl::find_max(&net, via, a.rate, duration, a.connections, batch, |r| {
            eprintln!(
                "  offered {:>8.0}/s: served {:>8.0}/s ({} of {} sent, {} errors), p50 {:.1} ms, p99 {:.1} ms",
                r.rate, r.served_per_sec, r.served, r.sent, r.errors, r.latency_ms[0], r.latency_ms[2]
            );
        })?
    } else {
        let r = cl::open_loop(&net, via, a.rate, duration, a.connections, batch)?;
        (vec![r], Some(0))
    };
    let entry_bytes = net.last_entry_bytes()?.unwrap_or(0) as f64;
    let (log_size, _) = net.log_size()?;
    let final_nodes = net.sample_nodes();
    drop(net);
    Ok(LedgerRun {
        steps,
        best,
        entry_bytes,
        log_size,
        final_nodes,
        validators,
    })
}

/// The ledger's rows (before the ceilings).
fn ledger_rows(
    a: &ClusterArgs,
    via: Via,
    l: &LedgerRun,
    c: &Ceilings,
    threads: usize,
    crypto_ceiling: f64,
) -> Result<Vec<Row>> {
    let r = l.reported()?.clone();
    let validators = l.validators;
    let batch = usize::from(a.batch);
    let entry_bytes = l.entry_bytes;
    let log_size = l.log_size;
    let final_nodes = &l.final_nodes;
    let [p50, p90, p99, max] = r.latency_ms;
    let mode = if a.max {
        format!(
            "best sustained step of --max ({} steps of {} s)",
            l.steps.len(),
            a.duration
        )
    } else {
        format!("offered {} q/s for {} s", r.rate, a.duration)
    };
    let mut rows = vec![
        Row::against(
            "cluster.queries_per_sec",
            r.served_per_sec,
            "queries/s",
            "ceiling.cluster.crypto_queries_per_sec",
            crypto_ceiling,
            format!(
                "{mode}; {validators} validators on loopback, via {}; {} answered with data after \
                 commit, {} errors of {} sent{}; {} connections, open loop{}",
                a.via,
                r.served,
                r.errors,
                r.sent,
                r.first_error
                    .as_deref()
                    .map(|e| format!(" (first: {})", e.chars().take(160).collect::<String>()))
                    .unwrap_or_default(),
                a.connections,
                if batch > 1 {
                    format!(", {batch} requests per POST /v1/queries/batch")
                } else {
                    String::new()
                }
            ),
        )
        .target(">= 10000 queries/s", r.served_per_sec >= 10_000.0),
        Row::raw(
            "cluster.offered_per_sec",
            r.rate,
            "queries/s",
            "open-loop offered rate of the reported step",
        ),
    ];
    for (name, v, tgt) in [
        ("p50", p50, Some(("< 30 ms at 2000 q/s", 30.0))),
        ("p90", p90, None),
        ("p99", p99, Some(("< 100 ms at 2000 q/s", 100.0))),
        ("max", max, None),
    ] {
        let row = Row::raw(
            &format!("cluster.latency_ms.{name}"),
            v.max(f64::MIN_POSITIVE),
            "ms",
            "from the request's due time (open loop) to the answer with data, after commit",
        );
        rows.push(match tgt {
            Some((t, lim)) if (r.rate - 2_000.0).abs() < 1.0 => row.target(t, v < lim),
            _ => row,
        });
    }
    let secs = r.elapsed.max(a.duration as f64);
    rows.push(Row::against(
        "cluster.blocks_per_sec",
        (r.blocks as f64 / secs).max(f64::MIN_POSITIVE),
        "blocks/s",
        "ceiling.sled.flush",
        c.sled_flushes,
        format!(
            "blocks committed during the step ({} blocks, {:.0} entries per block); each node \
             flushes each block once",
            r.blocks,
            r.log_growth as f64 / (r.blocks.max(1)) as f64
        ),
    ));
    rows.push(Row::against(
        "cluster.node_signatures_per_sec",
        (r.served_per_sec).max(f64::MIN_POSITIVE),
        "sig/s",
        "ceiling.ed25519.sign.1core",
        c.sign_1,
        "the agency node signs one QueryServed record per query",
    ));
    rows.push(Row::against(
        "cluster.verifications_per_sec",
        (r.served_per_sec * (2.0 * validators as f64 + 1.0)).max(f64::MIN_POSITIVE),
        "sig/s",
        "ceiling.ed25519.verify_batch.all_cores",
        c.batch_all,
        format!(
            "at least 2 signatures per query per validator ({validators}) plus the agency's \
             admission check, all on this machine's cores"
        ),
    ));
    if entry_bytes > 0.0 {
        rows.push(Row::against(
            "cluster.hashed_mb_per_sec",
            (r.served_per_sec * entry_bytes * validators as f64 / 1e6).max(f64::MIN_POSITIVE),
            "MB/s",
            "ceiling.sha256.1core",
            c.sha256_mb_s,
            "lower bound: each validator hashes each entry's bytes at least once (leaf hash)",
        ));
    }
    let mut system_cpu = 0.0;
    for n in &r.nodes {
        if let Some(cpu) = n.cpu_percent {
            system_cpu += cpu;
            rows.push(Row::raw(
                &format!("cluster.node.{}.cpu_percent", n.org),
                cpu.max(f64::MIN_POSITIVE),
                "% of one core",
                format!(
                    "{} CPU time over the step / wall time; {threads} cores in the machine",
                    if n.validator { "validator" } else { "follower" }
                ),
            ));
            if r.served_per_sec > 0.0 {
                // Core-µs per query: the per-node cost targets (#16).
                let us = cpu / 100.0 * 1e6 / r.served_per_sec;
                let agency = n.org == "gz-credit";
                let (target, limit) = if agency {
                    ("<= 80 core-us (entry node)", 80.0)
                } else {
                    ("<= 35 core-us (other validator)", 35.0)
                };
                let row = Row::raw(
                    &format!("cluster.node.{}.core_us_per_query", n.org),
                    us.max(f64::MIN_POSITIVE),
                    "core-us/query",
                    format!(
                        "CPU over the step / queries served{}",
                        if agency {
                            "; the node queries enter at"
                        } else {
                            ""
                        }
                    ),
                );
                rows.push(if n.validator && via == Via::Agency {
                    row.target(target, us <= limit)
                } else {
                    row
                });
            }
        }
        if let Some(rss) = n.rss_bytes {
            rows.push(
                Row::raw(
                    &format!("cluster.node.{}.rss_mib", n.org),
                    rss as f64 / (1 << 20) as f64,
                    "MiB",
                    format!(
                        "VmRSS at the end of the step (peak VmHWM {:.1} MiB)",
                        n.hwm_bytes.unwrap_or(0) as f64 / (1 << 20) as f64
                    ),
                )
                .target("< 300 MiB", rss < 300 << 20),
            );
        }
    }
    if let Some(lg) = r.loadgen_cpu_percent {
        rows.push(Row::raw(
            "cluster.loadgen.cpu_percent",
            lg.max(f64::MIN_POSITIVE),
            "% of one core",
            format!(
                "the load generator's own CPU over the step ({} HTTP client threads, requests \
                 signed beforehand); the nodes used {system_cpu:.0} %, together {:.0} % of the \
                 {threads} cores' {} %",
                a.connections,
                system_cpu + lg,
                threads * 100
            ),
        ));
    }
    if log_size > 0 && entry_bytes > 0.0 {
        let disks: Vec<u64> = final_nodes.iter().map(|n| n.disk_bytes).collect();
        let disk = disks.iter().copied().max().unwrap_or(0) as f64;
        let per_entry = disk / log_size as f64;
        rows.push(Row::raw(
            "cluster.disk_bytes_per_entry",
            per_entry.max(f64::MIN_POSITIVE),
            "bytes/entry",
            format!(
                "largest node ledger store, DIR/<org>/data/ledger ({} bytes) / log size {log_size}",
                disk as u64
            ),
        ));
        rows.push(
            Row::raw(
                "cluster.disk_ratio",
                (per_entry / entry_bytes).max(f64::MIN_POSITIVE),
                "x",
                format!(
                    "disk bytes per entry / encoded size of the last entry ({entry_bytes} bytes)"
                ),
            )
            .target("< 2.5x", per_entry / entry_bytes < 2.5),
        );
    }
    Ok(rows)
}

/// The no-op peer's rows and its ordered rate in query records per second.
struct NoopRows {
    rows: Vec<Row>,
    query_equivalents_per_sec: f64,
}

/// Rows of a no-op step with payloads of `queries` query records of `rec` bytes each.
fn noop_rows(s: &NoopStep, queries: u64, rec: usize, threads: usize) -> NoopRows {
    let secs = s.wall.max(f64::MIN_POSITIVE);
    let payloads = s.payloads();
    let per_sec = payloads as f64 / secs;
    let bytes_per_sec = s.bytes() as f64 / secs;
    let qe = bytes_per_sec / rec.max(1) as f64;
    let validators = s.nodes.len();
    let mut rows = vec![
        Row::raw(
            "cluster.noop.payloads_per_sec",
            per_sec.max(f64::MIN_POSITIVE),
            "payloads/s",
            format!(
                "the no-op peer: {validators} validator processes on loopback, the same Commonware \
                 engine, libp2p transport and engine start-up as the ledger, NoopReplica behind \
                 it (every leader proposes {} opaque bytes at once; no ledger, no sled, no \
                 signatures but the engine's); payloads every validator finalized over {secs:.1} s",
                s.payload_bytes
            ),
        ),
        Row::raw(
            "cluster.noop.query_equivalents_per_sec",
            qe.max(f64::MIN_POSITIVE),
            "queries/s",
            format!(
                "finalized payload bytes/s / {rec} bytes (one signed QueryServed record): the \
                 query records/s ordering alone carries at this payload size ({queries} records \
                 per payload)"
            ),
        ),
        Row::raw(
            "cluster.noop.payloads",
            (payloads as f64).max(f64::MIN_POSITIVE),
            "payloads",
            format!(
                "finalized during the step by every validator (lowest count; per validator: {})",
                s.nodes
                    .iter()
                    .map(|n| format!("{} {}", n.org, n.payloads))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Row::raw(
            "cluster.noop.payload_bytes",
            s.payload_bytes as f64,
            "bytes",
            format!("body bytes of each payload = {queries} x {rec}"),
        ),
        Row::raw(
            "cluster.noop.mb_per_sec",
            (bytes_per_sec / 1e6).max(f64::MIN_POSITIVE),
            "MB/s",
            "payload bytes finalized per second (each sent by its proposer to every other validator)",
        ),
    ];
    let mut system_cpu = 0.0;
    for n in &s.nodes {
        if let Some(cpu) = n.cpu_percent {
            system_cpu += cpu;
            rows.push(Row::raw(
                &format!("cluster.noop.node.{}.cpu_percent", n.org),
                cpu.max(f64::MIN_POSITIVE),
                "% of one core",
                format!(
                    "no-op validator CPU time over the step / wall time (RSS {:.0} MiB at the end); \
                     {threads} cores in the machine",
                    n.rss_bytes.unwrap_or(0) as f64 / (1 << 20) as f64
                ),
            ));
            if qe > 0.0 {
                rows.push(Row::raw(
                    &format!("cluster.noop.node.{}.core_us_per_query_equivalent", n.org),
                    (cpu / 100.0 * 1e6 / qe).max(f64::MIN_POSITIVE),
                    "core-us/query",
                    "CPU over the step / query equivalents ordered: the engine's and transport's \
                     share of a query at this payload size",
                ));
            }
        }
    }
    if let Some(own) = s.own_cpu_percent {
        rows.push(Row::raw(
            "cluster.noop.loadgen.cpu_percent",
            own.max(f64::MIN_POSITIVE),
            "% of one core",
            format!(
                "the benchmark process's own CPU over the no-op step (there is no load generator: \
                 the proposers make their payloads; it only reads /health); the no-op validators \
                 used {system_cpu:.0} %, together {:.0} % of the {threads} cores' {} %",
                system_cpu + own,
                threads * 100
            ),
        ));
    }
    NoopRows {
        rows,
        query_equivalents_per_sec: qe,
    }
}
