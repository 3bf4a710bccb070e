//! `xinyi-bench`: benchmarks that print each figure beside the ceiling it is measured against,
//! with the ceiling measured in the same run (DESIGN.md, "Targets").
//!
//! `xinyi-bench ledger` measures, on this machine:
//!
//! 1. durable append of signed query records: pre-generated `QueryServed` entries (each carries
//!    the bank's signed request and the agency's entry signature: two signatures) go through
//!    `Chain::build_block` (state rules and batched signature verification), certification,
//!    `Chain::commit_built` and `Store::append` (one sled batch, flushed) in a temporary
//!    directory;
//! 2. verifier throughput: the same chain exported as an audit bundle in memory and checked
//!    with `verify::verify_bundle`;
//! 3. the ceilings: ed25519 `verify_strict` and `verify_batch` on one core and on all cores,
//!    SHA-256 over 1 MiB buffers, and sled insert+flush round trips.
//!
//! A per-entry figure is compared with the batch-verify ceiling expressed per entry: with `V`
//! signatures/s and `s` signatures per entry the ceiling is `V / s` entries/s.

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Parser, Subcommand};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::{RngCore as _, SeedableRng as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xinyi_ledger::bundle::BundleWriter;
use xinyi_ledger::chain::Chain;
use xinyi_ledger::entry::{query_signing_payload, Consent, EntryKind, QueryRecord, QueryRequest};
use xinyi_ledger::hash::{self, Digest, Domain};
use xinyi_ledger::keys::{signing_message, SigDomain};
use xinyi_ledger::sample::SampleConsortium;
use xinyi_ledger::store::Store;
use xinyi_ledger::types::{Category, OrgId, TimeMs, DAY_MS};
use xinyi_ledger::{verify, Entry};

#[derive(Parser)]
#[command(
    name = "xinyi-bench",
    about = "xinyi benchmarks: each figure beside a ceiling measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Durable append and verifier throughput of the ledger core, with crypto/storage ceilings.
    Ledger(LedgerArgs),
    /// Authorized queries end to end over HTTP against a real `xinyi-node --dev` process.
    DevNode(DevNodeArgs),
    /// Authorized queries, open loop, against a local multi-validator testnet (real processes).
    Cluster(ClusterArgs),
    /// Full offline verification (`ledger::verify`) of a chain of N entries.
    Audit(AuditArgs),
    /// Post-loan monitoring alerts delivered (logged first) against a real dev node, beside
    /// the query figure on the same node (`testnet/src/monitor.rs`).
    Monitor(MonitorArgs),
    /// Opens a ledger store and reports open time and memory as JSON (used by `audit --store`
    /// in a child process, so the figures are those of a process holding just the ledger).
    #[command(hide = true)]
    StoreOpen(StoreOpenArgs),
}

#[derive(Args)]
struct MonitorArgs {
    /// Monitored firms (each with a monitoring consent for bank-a).
    #[arg(long, default_value_t = 1_000)]
    firms: usize,
    /// Offered credit records/s about those firms (open loop).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of load (3 with --quick).
    #[arg(long)]
    seconds: Option<u64>,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON array to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Short run for CI smoke tests (50 firms, 20 records/s, 3 s, short ceilings).
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct StoreOpenArgs {
    /// The store directory.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Args)]
struct ClusterArgs {
    /// Validators of the testnet it starts.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Followers of the testnet it starts (bank-a first; needed for --via bank).
    #[arg(long, default_value_t = 0)]
    followers: usize,
    /// Offered queries/s (open loop).
    #[arg(long, default_value_t = 2_000.0)]
    rate: f64,
    /// Seconds of load (per step with --max).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Find the sustainable rate: raise the rate by 1.5x from --rate until a step does not
    /// keep up (served < 97% of sent, < 90% of the rate, or p99 >= 2 s), then bisect once.
    #[arg(long)]
    max: bool,
    /// Concurrent HTTP connections (client threads).
    #[arg(long, default_value_t = 512)]
    connections: usize,
    /// Where queries enter: `agency` (gz-credit's node) or `bank` (bank-a's follower).
    #[arg(long, default_value = "agency")]
    via: String,
    /// Use (attach to, or create) the testnet in this directory instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// First port of a testnet it creates (default: a random free range).
    #[arg(long)]
    base_port: Option<u16>,
    /// Leave a testnet it started running.
    #[arg(long)]
    keep: bool,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON array to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a markdown table to this file.
    #[arg(long)]
    md: Option<PathBuf>,
    /// Short ceiling runs (CI smoke).
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
#[allow(clippy::struct_excessive_bools)]
struct AuditArgs {
    /// Also append every block to a sled store (timed separately) and report its disk bytes
    /// per entry, and the open time and memory of a process that opens it.
    #[arg(long)]
    store: bool,
    /// Query records in the chain (plus setup entries).
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Entries per block.
    #[arg(long, default_value_t = 1_000)]
    block_size: usize,
    /// Timed verification runs; the fastest is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON array to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a markdown table to this file.
    #[arg(long)]
    md: Option<PathBuf>,
    /// Short ceiling runs (CI smoke).
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct DevNodeArgs {
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Concurrent clients (closed loop).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measurement duration in seconds (2 with --quick).
    #[arg(long)]
    seconds: Option<u64>,
    /// Attach to a running dev node instead of starting one (needs --data).
    #[arg(long, requires = "data")]
    node: Option<String>,
    /// Data directory of the attached node (for its genesis and dev keys).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also write the JSON array to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Short run for CI smoke tests.
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct LedgerArgs {
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Signed query records to append (default 50,000; 5,000 with --quick).
    #[arg(long)]
    entries: Option<usize>,
    /// Entries per block.
    #[arg(long, default_value_t = 1_000)]
    block_size: usize,
    /// Also write the JSON array to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Small, fast run for CI smoke tests (5,000 entries, short ceiling runs).
    #[arg(long)]
    quick: bool,
    /// Timed runs of append and of verify; the fastest of each is reported (default 2, 1 with
    /// --quick). Ceilings are likewise the higher of two measurements.
    #[arg(long)]
    repeat: Option<usize>,
    /// Firms (one consent each) the queries are spread over (default entries/50, 1..=1000).
    #[arg(long)]
    firms: Option<usize>,
}

/// One result line.
#[derive(Debug, Clone, Serialize)]
struct Row {
    metric: String,
    value: f64,
    unit: String,
    ceiling_metric: Option<String>,
    ceiling: Option<f64>,
    ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meets_target: Option<bool>,
}

impl Row {
    fn raw(metric: &str, value: f64, unit: &str, note: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            value,
            unit: unit.into(),
            ceiling_metric: None,
            ceiling: None,
            ratio: None,
            note: Some(note.into()),
            target: None,
            meets_target: None,
        }
    }

    fn against(
        metric: &str,
        value: f64,
        unit: &str,
        ceiling_metric: &str,
        ceiling: f64,
        note: impl Into<String>,
    ) -> Row {
        Row {
            metric: metric.into(),
            value,
            unit: unit.into(),
            ceiling_metric: Some(ceiling_metric.into()),
            ceiling: Some(ceiling),
            ratio: Some(value / ceiling),
            note: Some(note.into()),
            target: None,
            meets_target: None,
        }
    }

    fn target(mut self, text: &str, met: bool) -> Row {
        self.target = Some(text.into());
        self.meets_target = Some(met);
        self
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ledger(a) => ledger(a),
        Cmd::DevNode(a) => dev_node(a),
        Cmd::Cluster(a) => cluster(a),
        Cmd::Audit(a) => audit(a),
        Cmd::Monitor(a) => monitor(a),
        Cmd::StoreOpen(a) => store_open(a),
    }
}

/// `xinyi-bench monitor`: the run is `xinyi_testnet::monitor`; this is its table.
fn monitor(a: MonitorArgs) -> Result<()> {
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
    rows.extend([
        Row::raw(
            "ceiling.ed25519.verify_batch.all_cores",
            c.batch_all,
            "sig/s",
            format!("verify_batch, batches of 256, {threads} threads; higher of two runs"),
        ),
        Row::raw(
            "ceiling.sha256.1core",
            c.sha256_mb_s,
            "MB/s",
            "SHA-256 over 1 MiB buffers, one core",
        ),
        Row::raw(
            "ceiling.sled.flush",
            c.sled_flushes,
            "flushes/s",
            "sled insert of a 32-byte value + flush",
        ),
        Row::raw(
            "run.wall_seconds",
            started.elapsed().as_secs_f64(),
            "s",
            format!("whole run including node start-up and setup; {threads} cores"),
        ),
    ]);
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

// ---------------------------------------------------------------------------------------------
// Ceilings
// ---------------------------------------------------------------------------------------------

/// Runs `f` (which returns the work units it did) repeatedly for at least `d`.
fn run_for(d: Duration, mut f: impl FnMut() -> u64) -> f64 {
    // One untimed warm-up call.
    black_box(f());
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        n += f();
        let e = start.elapsed();
        if e >= d {
            return n as f64 / e.as_secs_f64();
        }
    }
}

/// Runs `f` on `threads` threads at once for `d`; the summed rate.
fn run_parallel(threads: usize, d: Duration, f: impl Fn(usize) -> u64 + Sync) -> f64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || run_for(d, || f(t)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

/// Distinct keys, messages of the ledger's mean signed-message length, and signatures.
struct SigSet {
    keys: Vec<VerifyingKey>,
    msgs: Vec<Vec<u8>>,
    sigs: Vec<ed25519_dalek::Signature>,
}

fn sig_set(n: usize, msg_len: usize, seed: u64) -> SigSet {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut keys = Vec::with_capacity(n);
    let mut msgs = Vec::with_capacity(n);
    let mut sigs = Vec::with_capacity(n);
    for _ in 0..n {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let sk = SigningKey::from_bytes(&seed);
        let mut m = vec![0u8; msg_len];
        rng.fill_bytes(&mut m);
        sigs.push(sk.sign(&m));
        keys.push(sk.verifying_key());
        msgs.push(m);
    }
    SigSet { keys, msgs, sigs }
}

struct Ceilings {
    sign_1: f64,
    sign_all: f64,
    strict_1: f64,
    strict_all: f64,
    batch_1: f64,
    batch_all: f64,
    batch_size: usize,
    sha256_mb_s: f64,
    sled_flushes: f64,
    sled_inserts: f64,
}

impl Ceilings {
    /// The higher of two measurements, figure by figure.
    fn max(self, o: &Ceilings) -> Ceilings {
        Ceilings {
            sign_1: self.sign_1.max(o.sign_1),
            sign_all: self.sign_all.max(o.sign_all),
            strict_1: self.strict_1.max(o.strict_1),
            strict_all: self.strict_all.max(o.strict_all),
            batch_1: self.batch_1.max(o.batch_1),
            batch_all: self.batch_all.max(o.batch_all),
            batch_size: self.batch_size,
            sha256_mb_s: self.sha256_mb_s.max(o.sha256_mb_s),
            sled_flushes: self.sled_flushes.max(o.sled_flushes),
            sled_inserts: self.sled_inserts.max(o.sled_inserts),
        }
    }
}

fn ceilings(d: Duration, threads: usize, msg_len: usize, batch_size: usize) -> Result<Ceilings> {
    let set: Vec<SigSet> = (0..threads)
        .map(|t| sig_set(batch_size, msg_len, 7 + t as u64))
        .collect();
    let strict = |t: usize| -> u64 {
        let s = &set[t];
        let mut ok = 0u64;
        for i in 0..64.min(s.keys.len()) {
            ok += u64::from(s.keys[i].verify_strict(&s.msgs[i], &s.sigs[i]).is_ok());
        }
        ok
    };
    let batch = |t: usize| -> u64 {
        let s = &set[t];
        let refs: Vec<&[u8]> = s.msgs.iter().map(Vec::as_slice).collect();
        match ed25519_dalek::verify_batch(&refs, &s.sigs, &s.keys) {
            Ok(()) => s.sigs.len() as u64,
            Err(_) => 0,
        }
    };
    ensure!(
        strict(0) > 0 && batch(0) > 0,
        "ceiling signatures do not verify"
    );
    let signers: Vec<SigningKey> = (0..threads)
        .map(|t| SigningKey::from_bytes(&[t as u8 + 1; 32]))
        .collect();
    let sign_msg = vec![0x5au8; msg_len];
    let sign = |t: usize| -> u64 {
        for _ in 0..64 {
            black_box(signers[t].sign(black_box(&sign_msg)));
        }
        64
    };
    let sign_1 = run_for(d, || sign(0));
    let sign_all = run_parallel(threads, d, sign);
    let strict_1 = run_for(d, || strict(0));
    let strict_all = run_parallel(threads, d, strict);
    let batch_1 = run_for(d, || batch(0));
    let batch_all = run_parallel(threads, d, batch);

    let buf = vec![0xa5u8; 1 << 20];
    let sha = run_for(d, || {
        black_box(Sha256::digest(black_box(&buf)));
        buf.len() as u64
    }) / 1e6;

    let dir = tempfile::tempdir().context("temporary directory for the sled ceiling")?;
    let db = sled::open(dir.path()).context("opening sled for the flush ceiling")?;
    let mut i = 0u64;
    let mut failed = None;
    let flushes = run_for(d, || {
        i += 1;
        let r = db
            .insert(i.to_be_bytes(), &[0u8; 32][..])
            .and_then(|_| db.flush());
        match r {
            Ok(_) => 1,
            Err(e) => {
                failed = Some(e);
                0
            }
        }
    });
    if let Some(e) = failed {
        bail!("sled flush ceiling: {e}");
    }
    drop(db);

    // Batched inserts: 1,000 hash-like 32-byte keys with 8-byte values per batch, one flush
    // per batch (the shape of the store's per-entry index keys).
    let dir = tempfile::tempdir().context("temporary directory for the sled ceiling")?;
    let db = sled::open(dir.path()).context("opening sled for the insert ceiling")?;
    let mut i = 0u64;
    let inserts = run_for(d, || {
        let mut batch = sled::Batch::default();
        for _ in 0..1_000 {
            i += 1;
            let k: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
            batch.insert(&k[..], &i.to_be_bytes()[..]);
        }
        match db.apply_batch(batch).and_then(|_| db.flush()) {
            Ok(_) => 1_000,
            Err(e) => {
                failed = Some(e);
                0
            }
        }
    });
    if let Some(e) = failed {
        bail!("sled insert ceiling: {e}");
    }
    drop(db);
    Ok(Ceilings {
        sign_1,
        sign_all,
        strict_1,
        strict_all,
        batch_1,
        batch_all,
        batch_size,
        sha256_mb_s: sha,
        sled_flushes: flushes,
        sled_inserts: inserts,
    })
}

// ---------------------------------------------------------------------------------------------
// Ledger run
// ---------------------------------------------------------------------------------------------

const T0: TimeMs = 1_795_000_000_000;
const AGENCY: &str = "gz-credit";
const BANK: &str = "bank-a";

#[derive(Default)]
struct Phases {
    build: Duration,
    certify: Duration,
    commit: Duration,
    append: Duration,
}

impl Phases {
    fn total(&self) -> Duration {
        self.build + self.certify + self.commit + self.append
    }
}

struct LedgerRun {
    queries: usize,
    blocks: usize,
    phases: Phases,
    bundle: Vec<u8>,
    bundle_entries: u64,
    bundle_blocks: u64,
    bundle_signatures: u64,
    mean_msg_len: usize,
    store_bytes: u64,
    entry_bytes: u64,
    append_cpu: Option<Duration>,
    store_keys: Option<usize>,
}

/// Keys in the sled database at `dir`, reopened after the store closed it. sled releases its
/// file lock when its background threads let go of the database, so opening is retried for a
/// while; `None` if it never succeeds (the figure is then left out, not the run).
fn count_keys(dir: &std::path::Path) -> Option<usize> {
    for _ in 0..100 {
        match sled::open(dir) {
            Ok(db) => return Some(db.len()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

/// CPU time of this process so far, all threads (Linux `/proc/self/stat`, 10 ms ticks).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn cpu_since(start: Option<Duration>) -> Option<Duration> {
    Some(process_cpu()?.saturating_sub(start?))
}

/// Builds, certifies, commits and stores one block; returns the phase times.
fn commit_block(
    c: &SampleConsortium,
    chain: &mut Chain,
    store: &Store,
    bundle: &mut BundleWriter<Vec<u8>>,
    time: TimeMs,
    entries: Vec<Entry>,
) -> Result<Phases> {
    let want = entries.len();
    let proposer = OrgId::new(AGENCY)?;
    let t0 = Instant::now();
    let (block, dropped) = chain.build_block(time, proposer, entries)?;
    let t1 = Instant::now();
    let cert = c.certify(&block)?;
    let t2 = Instant::now();
    let committed = chain.commit_built(cert)?;
    let t3 = Instant::now();
    store.append(&committed)?;
    let t4 = Instant::now();
    if let Some(d) = dropped.first() {
        bail!(
            "block {}: {} of {want} entries dropped, first {}: {}",
            block.header.height,
            dropped.len(),
            d.id,
            d.reason
        );
    }
    bundle.block(&committed.block.encode()?, &committed.certificate.encode()?)?;
    Ok(Phases {
        build: t1 - t0,
        certify: t2 - t1,
        commit: t3 - t2,
        append: t4 - t3,
    })
}

/// Signed `QueryServed` entries `range` (nonces and response digests differ per entry).
fn query_entries(
    c: &SampleConsortium,
    consents: &[(xinyi_ledger::Uscc, Digest)],
    range: std::ops::Range<usize>,
    time: TimeMs,
) -> Result<Vec<Entry>> {
    let bank = OrgId::new(BANK)?;
    range
        .map(|i| {
            let (firm, consent) = consents[i % consents.len()];
            let nonce = 1_000_000 + i as u64;
            let req = QueryRequest {
                bank: bank.clone(),
                firm: c.tag(&firm),
                consent,
                categories: vec![Category::Registration, Category::Tax],
                nonce,
                time,
            };
            let signed = c.signed_query(BANK, req)?;
            let e = c.org_entry(
                AGENCY,
                time,
                nonce,
                EntryKind::QueryServed(QueryRecord {
                    request: signed,
                    response: hash::tagged(Domain::Data, &[b"response", &nonce.to_be_bytes()]),
                    records: vec![],
                }),
            )?;
            Ok(e)
        })
        .collect()
}

/// [`query_entries`] on `threads` threads.
fn query_entries_parallel(
    c: &SampleConsortium,
    consents: &[(xinyi_ledger::Uscc, Digest)],
    range: std::ops::Range<usize>,
    time: TimeMs,
    threads: usize,
) -> Result<Vec<Entry>> {
    let n = range.len();
    let per = n.div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<Entry>>> = std::thread::scope(|s| {
        let handles: Vec<_> = range
            .clone()
            .step_by(per)
            .map(|lo| {
                let hi = (lo + per).min(range.end);
                s.spawn(move || query_entries(c, consents, lo..hi, time))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("generator panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(n);
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// Mean length of the two signed messages of a query record (the ceiling's message length).
fn signed_lengths(c: &SampleConsortium, e: &Entry) -> Result<usize> {
    let entry_msg = signing_message(SigDomain::Entry, &e.signing_payload(&c.chain)).len();
    let req_msg = match &e.body.kind {
        EntryKind::QueryServed(q) => signing_message(
            SigDomain::QueryRequest,
            &query_signing_payload(&c.chain, &q.request.request)?,
        )
        .len(),
        _ => entry_msg,
    };
    Ok((entry_msg + req_msg) / 2)
}

/// The signed-message length of a representative query record, before any ledger work.
fn mean_msg_len(c: &SampleConsortium) -> Result<usize> {
    let firm = SampleConsortium::firm(0)?;
    let e = query_entries(c, &[(firm, Digest::ZERO)], 0..1, T0)?;
    match e.first() {
        Some(e) => signed_lengths(c, e),
        None => Ok(200),
    }
}

/// Everything the timed runs consume, generated once.
struct Prepared {
    c: SampleConsortium,
    /// (firm, consent id) the queries use.
    consents: Vec<(xinyi_ledger::Uscc, Digest)>,
    /// Setup blocks (firm registrations, consents) with their times.
    setup: Vec<(TimeMs, Vec<Entry>)>,
    setup_entries: u64,
    setup_sigs: u64,
    /// Query-record blocks.
    chunks: Vec<Vec<Entry>>,
    /// Time of the first query block.
    tq: TimeMs,
    n: usize,
    mean_msg_len: usize,
    entry_bytes: u64,
}

/// Signs the setup entries and the `n` query records (on all cores); nothing is timed.
fn prepare(n: usize, block_size: usize, firms: usize, threads: usize) -> Result<Prepared> {
    prepare_gen(n, n, block_size, firms, threads)
}

/// Like [`prepare`], with consents for `n` queries but only the first `gen` generated.
fn prepare_gen(
    n: usize,
    gen: usize,
    block_size: usize,
    firms: usize,
    threads: usize,
) -> Result<Prepared> {
    let c = SampleConsortium::new(b"xinyi-bench", 1, T0);
    let max = c.genesis.params.max_block_entries as usize;
    ensure!(
        (1..=max).contains(&block_size),
        "--block-size must be 1..={max}"
    );
    let mut setup = Vec::new();
    let mut setup_sigs = 0u64;
    let mut setup_entries = 0u64;

    // Setup (not timed): register the firms, then one consent per firm with enough uses.
    let firm_ids: Vec<_> = (0..firms as u32)
        .map(SampleConsortium::firm)
        .collect::<Result<_, _>>()?;
    let mut nonce = 0u64;
    let now = T0 + 1_000;
    let regs: Vec<Entry> = firm_ids
        .iter()
        .map(|f| {
            nonce += 1;
            let key = c.firm_key(f).public();
            c.org_entry(
                AGENCY,
                now,
                nonce,
                EntryKind::FirmRegistered {
                    firm: c.tag(f),
                    key,
                },
            )
        })
        .collect::<Result<_, _>>()?;
    let uses = u32::try_from(n.div_ceil(firms) + 1).context("too many entries per firm")?;
    let now = T0 + 2_000;
    let grants: Vec<Entry> = firm_ids
        .iter()
        .map(|f| {
            nonce += 1;
            c.firm_entry(
                *f,
                now,
                nonce,
                EntryKind::ConsentGranted(Consent {
                    bank: OrgId::new(BANK)?,
                    purpose: Consent::purpose_digest(&[0x5a; 32], "loan application"),
                    categories: vec![Category::Registration, Category::Penalties, Category::Tax],
                    not_before: T0,
                    not_after: T0 + 365 * DAY_MS,
                    max_uses: uses,
                    monitoring: None,
                }),
            )
        })
        .collect::<Result<_, _>>()?;
    let consents: Vec<_> = firm_ids
        .iter()
        .copied()
        .zip(grants.iter().map(|g| g.id))
        .collect();
    let mut time = T0 + 1_010;
    for batch in [regs, grants] {
        for chunk in batch.chunks(max) {
            setup_entries += chunk.len() as u64;
            setup_sigs += chunk.len() as u64; // one author signature each
            setup.push((time, chunk.to_vec()));
            time += 1_000;
        }
    }

    // Pre-generate the signed query records on all cores (not timed).
    let tq = T0 + 10_000;
    let queries = query_entries_parallel(&c, &consents, 0..gen, tq, threads)?;
    let entry_bytes: u64 = queries.iter().map(|e| e.bytes.len() as u64).sum();
    let mean_msg_len = match queries.first() {
        Some(e) => signed_lengths(&c, e)?,
        None => 200,
    };
    let mut chunks: Vec<Vec<Entry>> = Vec::with_capacity(gen.div_ceil(block_size));
    let mut it = queries.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(block_size).collect());
    }
    Ok(Prepared {
        c,
        consents,
        setup,
        setup_entries,
        setup_sigs,
        chunks,
        tq,
        n,
        mean_msg_len,
        entry_bytes,
    })
}

/// One durable-append run into a fresh store: setup blocks untimed, then the query blocks timed.
fn append_run(p: &Prepared) -> Result<LedgerRun> {
    let c = &p.c;
    let dir = tempfile::tempdir().context("temporary store directory")?;
    let (store, mut chain) = Store::open_or_create(dir.path(), &c.genesis)?;
    let mut bundle = BundleWriter::new(Vec::new(), c.genesis.to_json().as_bytes())?;
    for (time, entries) in &p.setup {
        commit_block(c, &mut chain, &store, &mut bundle, *time, entries.clone())?;
    }
    let mut blocks = p.setup.len();

    // Timed: build (state rules + batched signature verification), certify, commit, store.
    let mut phases = Phases::default();
    let query_blocks = p.chunks.len();
    let chunks = p.chunks.clone();
    let cpu0 = process_cpu();
    // Block times 1 ms apart: every entry stays inside the replay window.
    for (time, chunk) in (p.tq + 10..).zip(chunks) {
        let t = commit_block(c, &mut chain, &store, &mut bundle, time, chunk)?;
        phases.build += t.build;
        phases.certify += t.certify;
        phases.commit += t.commit;
        phases.append += t.append;
    }
    // Includes the bundle export between blocks (a few percent); the rates above do not.
    let append_cpu = cpu_since(cpu0);
    blocks += query_blocks;
    let store_bytes = store.size_on_disk()?;
    store.close()?;
    // Count what the store wrote: sled keys per appended entry (setup blocks included).
    let store_keys = count_keys(dir.path());
    let bundle = bundle.finish()?;
    let validators = c.validators.len() as u64;
    Ok(LedgerRun {
        queries: p.n,
        blocks: query_blocks,
        phases,
        bundle,
        bundle_entries: p.setup_entries + p.n as u64,
        bundle_blocks: blocks as u64,
        bundle_signatures: p.setup_sigs + 2 * p.n as u64 + validators * blocks as u64,
        mean_msg_len: p.mean_msg_len,
        store_bytes,
        entry_bytes: p.entry_bytes,
        append_cpu,
        store_keys,
    })
}

fn ledger(a: LedgerArgs) -> Result<()> {
    let n = a.entries.unwrap_or(if a.quick { 5_000 } else { 50_000 });
    ensure!(n > 0, "--entries must be positive");
    let firms = a.firms.unwrap_or((n / 50).clamp(1, 1_000)).max(1);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let d = Duration::from_millis(if a.quick { 200 } else { 1_000 });
    let started = Instant::now();

    // Ceilings are measured before and after the ledger work and the higher figure of each is
    // kept: on a shared machine this makes the reported ratios conservative.
    let batch_size = (2 * a.block_size / threads).clamp(64, 1024);
    let probe = SampleConsortium::new(b"xinyi-bench", 1, T0);
    let before = ceilings(d, threads, mean_msg_len(&probe)?, batch_size)?;

    let repeat = a.repeat.unwrap_or(if a.quick { 1 } else { 2 }).max(1);
    let prepared = prepare(n, a.block_size, firms, threads)?;
    let mut best: Option<LedgerRun> = None;
    for _ in 0..repeat {
        let r = append_run(&prepared)?;
        if best
            .as_ref()
            .is_none_or(|b| r.phases.total() < b.phases.total())
        {
            best = Some(r);
        }
    }
    drop(prepared);
    let run = best.context("no append run")?;

    let genesis = SampleConsortium::new(b"xinyi-bench", 1, T0).genesis;
    let mut fastest: Option<(f64, Option<Duration>, verify::VerifyReport)> = None;
    for _ in 0..repeat {
        let t = Instant::now();
        let cpu0 = process_cpu();
        let report = verify::verify_bundle(&genesis, &run.bundle[..], |_, _| {})?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_since(cpu0);
        if fastest.as_ref().is_none_or(|f| secs < f.0) {
            fastest = Some((secs, cpu, report));
        }
    }
    let (verify_secs, verify_cpu, report) = fastest.context("no verify run")?;
    ensure!(
        report.entries == run.bundle_entries && report.blocks == run.bundle_blocks,
        "verifier saw {} entries in {} blocks, expected {} in {}",
        report.entries,
        report.blocks,
        run.bundle_entries,
        run.bundle_blocks
    );

    let ceil = ceilings(d, threads, run.mean_msg_len, batch_size)?.max(&before);

    let append_secs = run.phases.total().as_secs_f64();
    let append_rate = run.queries as f64 / append_secs;
    let verify_rate = report.entries as f64 / verify_secs;
    let sigs_per_verified_entry = run.bundle_signatures as f64 / report.entries as f64;
    let keys_per_entry = run.store_keys.map(|k| k as f64 / run.bundle_entries as f64);
    let batch_all = "ceiling.ed25519.verify_batch.all_cores";
    let per_entry = |v: f64, s: f64| v / s;

    let mut rows = vec![
        Row::against(
            "ledger.durable_append",
            append_rate,
            "entries/s",
            batch_all,
            per_entry(ceil.batch_all, 2.0),
            format!(
                "{n} signed QueryServed records (2 signatures each) in {} blocks of {}: \
                 build_block (rules + batch verify) + certify + commit_built + Store::append \
                 (sled batch + flush); ceiling = {batch_all} / 2 signatures per entry; fastest of {repeat} runs",
                run.blocks, a.block_size
            ),
        )
        .target(">= 25000 entries/s", append_rate >= 25_000.0),
        Row::against(
            "ledger.durable_append.blocks",
            run.blocks as f64 / append_secs,
            "blocks/s",
            "ceiling.sled.flush",
            ceil.sled_flushes,
            "one flushed sled batch per block",
        ),
        Row::against(
            "ledger.verify",
            verify_rate,
            "entries/s",
            batch_all,
            per_entry(ceil.batch_all, sigs_per_verified_entry),
            format!(
                "verify_bundle over {} entries in {} blocks from an in-memory bundle; \
                 ceiling = {batch_all} / {sigs_per_verified_entry:.3} signatures per entry \
                 (entries, setup entries and certificate votes); fastest of {repeat} runs",
                report.entries, report.blocks
            ),
        ),
        Row::against(
            "ledger.verify.bundle_bytes",
            run.bundle.len() as f64 / 1e6 / verify_secs,
            "MB/s",
            "ceiling.sha256.1core",
            ceil.sha256_mb_s,
            format!("bundle of {} bytes", run.bundle.len()),
        ),
    ];
    if let Some(v) = rows.iter_mut().find(|r| r.metric == "ledger.verify") {
        let met = v.ratio.is_some_and(|r| r >= 0.8);
        *v = v.clone().target(">= 0.8 of the batch-verify ceiling", met);
    }

    let us = |d: Duration| d.as_secs_f64() * 1e6 / run.queries as f64;
    for (name, dur, what) in [
        (
            "build_block",
            run.phases.build,
            "Chain::build_block: state rules, Merkle log, state root, batched signature verification",
        ),
        (
            "certify",
            run.phases.certify,
            "SampleConsortium::certify: validator votes",
        ),
        (
            "commit_built",
            run.phases.commit,
            "Chain::commit_built: certificate check, end_block",
        ),
        (
            "store_append",
            run.phases.append,
            "Store::append: sled batch + flush",
        ),
    ] {
        rows.push(Row::raw(
            &format!("ledger.durable_append.phase.{name}"),
            us(dur),
            "us/entry",
            format!(
                "{what} ({:.1}% of append time)",
                100.0 * dur.as_secs_f64() / append_secs
            ),
        ));
    }
    // CPU cost per entry (all threads): unlike the rates above, barely affected by other load
    // on a shared machine. Compare with the signature cost alone, from the one-core ceiling.
    let sig_us = |sigs: f64| sigs * 1e6 / ceil.batch_1;
    if let Some(cpu) = run.append_cpu {
        rows.push(Row::raw(
            "ledger.durable_append.cpu_per_entry",
            cpu.as_secs_f64() * 1e6 / run.queries as f64,
            "core-us/entry",
            format!(
                "process CPU time (all threads, 10 ms ticks) of the append phase per entry; \
                 the 2 signatures alone cost {:.1} core-us at the one-core batch rate",
                sig_us(2.0)
            ),
        ));
    }
    if let Some(cpu) = verify_cpu {
        rows.push(Row::raw(
            "ledger.verify.cpu_per_entry",
            cpu.as_secs_f64() * 1e6 / report.entries as f64,
            "core-us/entry",
            format!(
                "process CPU time of verify_bundle per entry; its {sigs_per_verified_entry:.3} \
                 signatures alone cost {:.1} core-us at the one-core batch rate",
                sig_us(sigs_per_verified_entry)
            ),
        ));
    }
    if let (Some(kpe), Some(keys)) = (keys_per_entry, run.store_keys) {
        rows.insert(
            2,
            Row::against(
                "ledger.durable_append.vs_sled_inserts",
                append_rate,
                "entries/s",
                "ceiling.sled.batch_insert",
                ceil.sled_inserts / kpe,
                format!(
                    "the same append rate against what sled can insert: ceiling = \
                     ceiling.sled.batch_insert / {kpe:.2} sled keys the store holds per entry \
                     (ledger.store.keys_per_entry)"
                ),
            ),
        );
        rows.push(Row::raw(
            "ledger.store.keys_per_entry",
            kpe,
            "keys/entry",
            format!(
                "{keys} sled keys after the run / {} entries (blocks, entries, indexes, state)",
                run.bundle_entries
            ),
        ));
    }
    rows.push(Row::raw(
        "ledger.store.disk_ratio",
        run.store_bytes as f64 / run.entry_bytes as f64,
        "x",
        format!(
            "sled size on disk {} bytes / encoded query entry bytes {}",
            run.store_bytes, run.entry_bytes
        ),
    ));
    let msg = format!(
        "{}-byte messages; higher of two runs, before and after the ledger work",
        run.mean_msg_len
    );
    rows.extend([
        Row::raw(
            "ceiling.ed25519.verify_strict.1core",
            ceil.strict_1,
            "sig/s",
            format!("verify_strict, one core, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.verify_strict.all_cores",
            ceil.strict_all,
            "sig/s",
            format!("verify_strict, {threads} threads, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.verify_batch.1core",
            ceil.batch_1,
            "sig/s",
            format!(
                "verify_batch, batches of {}, one core, {msg}",
                ceil.batch_size
            ),
        ),
        Row::raw(
            batch_all,
            ceil.batch_all,
            "sig/s",
            format!(
                "verify_batch, batches of {}, {threads} threads, {msg}",
                ceil.batch_size
            ),
        ),
        Row::raw(
            "ceiling.sha256.1core",
            ceil.sha256_mb_s,
            "MB/s",
            "SHA-256 over 1 MiB buffers, one core (MB = 10^6 bytes); higher of two runs",
        ),
        Row::raw(
            "ceiling.sled.flush",
            ceil.sled_flushes,
            "flushes/s",
            "sled insert of a 32-byte value + flush, temporary directory; higher of two runs",
        ),
        Row::raw(
            "ceiling.sled.batch_insert",
            ceil.sled_inserts,
            "keys/s",
            "sled apply_batch of 1,000 hash-like 32-byte keys (8-byte values) + flush per \
             batch, temporary directory; higher of two runs",
        ),
        Row::raw(
            "run.wall_seconds",
            started.elapsed().as_secs_f64(),
            "s",
            format!("whole run including setup; {threads} cores"),
        ),
    ]);

    // With several cores, the all-cores batch figure should be well above the one-core one;
    // if not, other load shared the cores during the ceiling runs and the ratios are inflated.
    let scaling = ceil.batch_all / ceil.batch_1;
    if threads > 1 && scaling < 0.75 * threads as f64 {
        let warning = format!(
            "contended machine: the all-cores batch-verify ceiling is only {scaling:.2}x the \
             one-core figure on {threads} cores; ratios against it are inflated"
        );
        eprintln!("xinyi-bench: warning: {warning}");
        for r in rows
            .iter_mut()
            .filter(|r| r.ceiling_metric.as_deref() == Some(batch_all))
        {
            r.note = Some(format!(
                "{}; WARNING: {warning}",
                r.note.as_deref().unwrap_or("")
            ));
        }
    }
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

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        let s = format!("{:.0}", v);
        // Thousands separators for readability.
        let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        format!("{sign}{out}")
    } else {
        format!("{v:.3}")
    }
}

fn print_table(rows: &[Row]) {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.metric.clone(),
                num(r.value),
                r.unit.clone(),
                r.ceiling.map(num).unwrap_or_default(),
                r.ratio.map(|x| format!("{x:.3}")).unwrap_or_default(),
                match (&r.ceiling_metric, r.meets_target) {
                    (Some(m), Some(ok)) => {
                        format!(
                            "{m}  [target {}: {}]",
                            r.target.as_deref().unwrap_or(""),
                            if ok { "met" } else { "NOT met" }
                        )
                    }
                    (Some(m), None) => m.clone(),
                    (None, _) => String::new(),
                },
            ]
        })
        .collect();
    let head = [
        "metric",
        "value",
        "unit",
        "ceiling",
        "ratio",
        "ceiling metric",
    ];
    let mut w = head.map(str::len);
    for c in &cells {
        for (i, x) in c.iter().enumerate() {
            w[i] = w[i].max(x.chars().count());
        }
    }
    println!(
        "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {}",
        head[0],
        head[1],
        head[2],
        head[3],
        head[4],
        head[5],
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3],
        w4 = w[4]
    );
    for c in &cells {
        println!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        );
    }
    println!();
    for r in rows {
        if let Some(n) = &r.note {
            println!("{}: {n}", r.metric);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dev-node run
// ---------------------------------------------------------------------------------------------

fn dev_node(a: DevNodeArgs) -> Result<()> {
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
    let rows = vec![
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
        Row::raw(
            "ceiling.ed25519.verify_batch.all_cores",
            c.batch_all,
            "sig/s",
            format!("verify_batch, batches of 256, {threads} threads; higher of two runs"),
        ),
        Row::raw(
            "ceiling.sha256.1core",
            c.sha256_mb_s,
            "MB/s",
            "SHA-256 over 1 MiB buffers, one core",
        ),
        Row::raw(
            "ceiling.sled.flush",
            c.sled_flushes,
            "flushes/s",
            "sled insert of a 32-byte value + flush",
        ),
        Row::raw(
            "run.wall_seconds",
            started.elapsed().as_secs_f64(),
            "s",
            format!("whole run including node start-up; {threads} cores"),
        ),
    ];
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

// ---------------------------------------------------------------------------------------------
// Output shared by `cluster` and `audit`
// ---------------------------------------------------------------------------------------------

fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| metric | value | unit | ceiling | ratio | ceiling metric | target |\n|---|---:|---|---:|---:|---|---|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.metric,
            num(r.value),
            r.unit,
            r.ceiling.map(num).unwrap_or_default(),
            r.ratio.map(|x| format!("{x:.3}")).unwrap_or_default(),
            r.ceiling_metric.as_deref().unwrap_or(""),
            match (&r.target, r.meets_target) {
                (Some(t), Some(ok)) => format!("{t}: {}", if ok { "met" } else { "NOT met" }),
                _ => String::new(),
            }
        );
    }
    out
}

fn emit(rows: &[Row], json: bool, out: Option<&PathBuf>, md: Option<&PathBuf>) -> Result<()> {
    let text = serde_json::to_string_pretty(rows)?;
    if let Some(path) = out {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = md {
        std::fs::write(path, markdown(rows))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{text}");
    } else {
        print_table(rows);
    }
    Ok(())
}

/// The ceiling rows every run prints, measured in the same run.
fn ceiling_rows(c: &Ceilings, threads: usize, msg_len: usize) -> Vec<Row> {
    let msg = format!("{msg_len}-byte messages; higher of two runs, before and after the load");
    vec![
        Row::raw(
            "ceiling.ed25519.sign.1core",
            c.sign_1,
            "sig/s",
            format!("ed25519 sign, one core, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.sign.all_cores",
            c.sign_all,
            "sig/s",
            format!("ed25519 sign, {threads} threads, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.verify_strict.1core",
            c.strict_1,
            "sig/s",
            format!("verify_strict, one core, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.verify_strict.all_cores",
            c.strict_all,
            "sig/s",
            format!("verify_strict, {threads} threads, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.verify_batch.1core",
            c.batch_1,
            "sig/s",
            format!("verify_batch, batches of {}, one core, {msg}", c.batch_size),
        ),
        Row::raw(
            "ceiling.ed25519.verify_batch.all_cores",
            c.batch_all,
            "sig/s",
            format!(
                "verify_batch, batches of {}, {threads} threads, {msg}",
                c.batch_size
            ),
        ),
        Row::raw(
            "ceiling.sha256.1core",
            c.sha256_mb_s,
            "MB/s",
            "SHA-256 over 1 MiB buffers, one core (MB = 10^6 bytes)",
        ),
        Row::raw(
            "ceiling.sled.flush",
            c.sled_flushes,
            "flushes/s",
            "sled insert of a 32-byte value + flush, temporary directory",
        ),
    ]
}

/// Load average (1 min) from /proc/loadavg.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Cluster run
// ---------------------------------------------------------------------------------------------

fn cluster(a: ClusterArgs) -> Result<()> {
    use xinyi_testnet::cluster::{self as cl, Via};
    let via = match a.via.as_str() {
        "agency" => Via::Agency,
        "bank" => Via::Bank,
        other => bail!("--via must be agency or bank, not {other}"),
    };
    ensure!(a.validators >= 1, "--validators must be at least 1");
    ensure!(a.duration >= 1, "--duration must be at least 1 s");
    let followers = if via == Via::Bank {
        a.followers.max(1)
    } else {
        a.followers
    };
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let d = Duration::from_millis(if a.quick { 150 } else { 1_000 });
    let started = Instant::now();
    let load_before = loadavg();
    let probe = SampleConsortium::new(b"xinyi-bench", 1, T0);
    let msg_len = mean_msg_len(&probe)?;
    let before = ceilings(d, threads, msg_len, 256)?;
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
    let (steps, best) = if a.max {
        cl::find_max(&net, via, a.rate, duration, a.connections, |r| {
            eprintln!(
                "  offered {:>8.0}/s: served {:>8.0}/s ({} of {} sent, {} errors), p50 {:.1} ms, p99 {:.1} ms",
                r.rate, r.served_per_sec, r.served, r.sent, r.errors, r.latency_ms[0], r.latency_ms[2]
            );
        })?
    } else {
        let r = cl::open_loop(&net, via, a.rate, duration, a.connections)?;
        (vec![r], Some(0))
    };
    let entry_bytes = net.last_entry_bytes()?.unwrap_or(0) as f64;
    let (log_size, _) = net.log_size()?;
    let final_nodes = net.sample_nodes();
    drop(net);
    let c = before.max(&ceilings(d, threads, msg_len, 256)?);
    let load_after = loadavg();

    let r = match best {
        Some(i) => steps[i].clone(),
        None => steps
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no step ran"))?,
    };
    // The unavoidable signature work of one query on this machine: every validator verifies
    // the bank's request and the agency's record signature (2 per validator, batched); the
    // agency node verifies the request on admission (strict) and signs the record once. With
    // all nodes sharing the machine's cores, the crypto ceiling is cores / that cost.
    let per_query_core_s = 2.0 * validators as f64 / c.batch_1 + 1.0 / c.strict_1 + 1.0 / c.sign_1;
    let crypto_ceiling = threads as f64 / per_query_core_s;
    let [p50, p90, p99, max] = r.latency_ms;
    let mode = if a.max {
        format!(
            "best sustained step of --max ({} steps of {} s)",
            steps.len(),
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
                 commit, {} errors of {} sent{}; {} connections, open loop",
                a.via,
                r.served,
                r.errors,
                r.sent,
                r.first_error
                    .as_deref()
                    .map(|e| format!(" (first: {})", e.chars().take(160).collect::<String>()))
                    .unwrap_or_default(),
                a.connections
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
    for n in &r.nodes {
        if let Some(cpu) = n.cpu_percent {
            rows.push(Row::raw(
                &format!("cluster.node.{}.cpu_percent", n.org),
                cpu.max(f64::MIN_POSITIVE),
                "% of one core",
                format!(
                    "{} CPU time over the step / wall time; {threads} cores in the machine",
                    if n.validator { "validator" } else { "follower" }
                ),
            ));
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
    rows.push(Row::raw(
        "run.wall_seconds",
        started.elapsed().as_secs_f64(),
        "s",
        format!(
            "whole run including testnet start-up; {threads} cores; load average {} before, {} after",
            load_before.map(|l| format!("{l:.2}")).unwrap_or_default(),
            load_after.map(|l| format!("{l:.2}")).unwrap_or_default()
        ),
    ));
    if a.max {
        for (i, st) in steps.iter().enumerate() {
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
                    if cl::sustained(st) {
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

// ---------------------------------------------------------------------------------------------
// Audit run
// ---------------------------------------------------------------------------------------------

fn audit(a: AuditArgs) -> Result<()> {
    ensure!(a.entries >= 1, "--entries must be positive");
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let d = Duration::from_millis(if a.quick { 150 } else { 1_000 });
    let started = Instant::now();
    let load_before = loadavg();
    let firms = (a.entries / 50).clamp(1, 1_000);
    // Consents for all entries; the query records are generated block by block below.
    let p = prepare_gen(a.entries, 0, a.block_size, firms, threads)?;
    let c = &p.c;
    let probe_len = mean_msg_len(c)?;
    let before = ceilings(d, threads, probe_len, 256)?;

    // Build the chain (not timed): setup blocks, then query blocks generated on all cores.
    let build_started = Instant::now();
    let (mut chain, _) = Chain::from_genesis(&c.genesis)?;
    let mut bundle = BundleWriter::new(Vec::new(), c.genesis.to_json().as_bytes())?;
    let proposer = OrgId::new(AGENCY)?;
    let store_dir = tempfile::tempdir().context("temporary store directory")?;
    let store = if a.store {
        Some(Store::open_or_create(store_dir.path(), &c.genesis)?.0)
    } else {
        None
    };
    let mut append_time = Duration::ZERO;
    let mut add = |chain: &mut Chain, time: TimeMs, entries: Vec<Entry>| -> Result<()> {
        let want = entries.len();
        let (block, dropped) = chain.build_block(time, proposer.clone(), entries)?;
        ensure!(
            dropped.is_empty(),
            "block {}: {} of {want} entries dropped",
            block.header.height,
            dropped.len()
        );
        let cert = c.certify(&block)?;
        let committed = chain.commit_built(cert)?;
        if let Some(s) = &store {
            let t = Instant::now();
            s.append(&committed)?;
            append_time += t.elapsed();
        }
        bundle.block(&committed.block.encode()?, &committed.certificate.encode()?)?;
        Ok(())
    };
    for (time, entries) in &p.setup {
        add(&mut chain, *time, entries.clone())?;
    }
    let mut entry_bytes = 0u64;
    let mut time = p.tq + 10;
    let mut done = 0usize;
    while done < a.entries {
        let hi = (done + a.block_size).min(a.entries);
        let chunk = query_entries_parallel(c, &p.consents, done..hi, p.tq, threads)?;
        entry_bytes += chunk.iter().map(|e| e.bytes.len() as u64).sum::<u64>();
        add(&mut chain, time, chunk)?;
        time += 1;
        done = hi;
    }
    let built_height = chain.height();
    let log_size = chain.log().size();
    // What a validator pays to build a proposal on the head of a chain of this size: a
    // speculative copy, and an (empty) block executed on it, which copies the state.
    let t = Instant::now();
    let mut spec = chain.speculate();
    spec.build(time, proposer.clone(), Vec::new())?;
    let speculate_ms = t.elapsed().as_secs_f64() * 1e3;
    let state_keys = spec.chain().state().len();
    drop(spec);
    drop(chain);
    let bundle = bundle.finish()?;
    let build_secs = build_started.elapsed().as_secs_f64();
    let mut store_rows = Vec::new();
    if let Some(s) = store {
        s.close()?;
        let disk = xinyi_testnet::cluster::dir_bytes(store_dir.path());
        let out = std::process::Command::new(std::env::current_exe()?)
            .arg("store-open")
            .arg("--dir")
            .arg(store_dir.path())
            .output()
            .context("running xinyi-bench store-open")?;
        ensure!(
            out.status.success(),
            "store-open failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        let per_entry = disk as f64 / log_size.max(1) as f64;
        let mean_entry = entry_bytes as f64 / a.entries as f64;
        store_rows.push(Row::raw(
            "audit.store.append_us_per_entry",
            append_time.as_secs_f64() * 1e6 / log_size.max(1) as f64,
            "us/entry",
            format!(
                "Store::append (one sled batch + flush per block of {})",
                a.block_size
            ),
        ));
        store_rows.push(Row::raw(
            "audit.store.disk_bytes_per_entry",
            per_entry,
            "bytes/entry",
            format!("sled directory {disk} bytes / {log_size} entries"),
        ));
        store_rows.push(
            Row::raw(
                "audit.store.disk_ratio",
                per_entry / mean_entry,
                "x",
                format!("disk bytes per entry / mean encoded query entry ({mean_entry:.0} bytes)"),
            )
            .target("< 2.5x", per_entry / mean_entry < 2.5),
        );
        store_rows.push(Row::raw(
            "audit.store.open_seconds",
            f("open_seconds").max(f64::MIN_POSITIVE),
            "s",
            "Store::open in a fresh process: state, log and indexes rebuilt and checked",
        ));
        store_rows.push(
            Row::raw(
                "audit.store.open_rss_mib",
                f("rss_mib").max(f64::MIN_POSITIVE),
                "MiB",
                format!(
                    "VmRSS of a fresh process after Store::open of {log_size} entries (peak {:.1} \
                     MiB): what a node holds for its ledger replica",
                    f("hwm_mib")
                ),
            )
            .target("< 300 MiB", f("rss_mib") < 300.0),
        );
    }

    // Timed: full offline verification from the in-memory bundle.
    let mut best: Option<(Duration, Option<Duration>, verify::VerifyReport)> = None;
    for _ in 0..a.repeat.max(1) {
        let cpu0 = process_cpu();
        let t0 = Instant::now();
        let report = verify::verify_bundle(&c.genesis, bundle.as_slice(), |_, _| {})?;
        let dt = t0.elapsed();
        let cpu = cpu_since(cpu0);
        if best.as_ref().is_none_or(|b| dt < b.0) {
            best = Some((dt, cpu, report));
        }
    }
    let (dt, cpu, report) = best.ok_or_else(|| anyhow::anyhow!("no verification ran"))?;
    ensure!(
        report.blocks == built_height,
        "verified {} blocks of {built_height}",
        report.blocks
    );
    let c2 = before.max(&ceilings(d, threads, probe_len, 256)?);
    let load_after = loadavg();
    let secs = dt.as_secs_f64();
    let rate = report.entries as f64 / secs;
    // Signatures per verified entry: 2 per query record, 1 per setup entry, and each block's
    // certificate votes (one validator here).
    let sigs = (2 * a.entries as u64 + p.setup_entries + report.blocks) as f64;
    let spe = sigs / report.entries as f64;
    let batch_all = "ceiling.ed25519.verify_batch.all_cores";
    let mut rows = vec![
        Row::against(
            "audit.verify",
            rate,
            "entries/s",
            batch_all,
            c2.batch_all / spe,
            format!(
                "ledger::verify::verify_bundle over {} entries in {} blocks of {} from an in-memory \
                 bundle of {} bytes; ceiling = {batch_all} / {spe:.3} signatures per entry; \
                 fastest of {}",
                report.entries,
                report.blocks,
                a.block_size,
                bundle.len(),
                a.repeat.max(1)
            ),
        ),
        Row::raw(
            "audit.verify.seconds",
            secs,
            "s",
            format!("wall time of the verification of {} entries", report.entries),
        ),
        Row::against(
            "audit.verify.1core_equivalent",
            rate,
            "entries/s",
            "ceiling.ed25519.verify_batch.1core",
            c2.batch_1 / spe,
            "the same rate against one core's batch-verify ceiling",
        ),
        Row::against(
            "audit.verify.bundle_bytes",
            bundle.len() as f64 / 1e6 / secs,
            "MB/s",
            "ceiling.sha256.1core",
            c2.sha256_mb_s,
            format!(
                "bundle of {} bytes ({} bytes of query entries)",
                bundle.len(),
                entry_bytes
            ),
        ),
        Row::raw(
            "audit.speculate_build_ms",
            speculate_ms.max(f64::MIN_POSITIVE),
            "ms",
            format!(
                "Chain::speculate + Speculative::build of an empty block on the built chain \
                 ({state_keys} state keys): the state copy a validator makes per block it \
                 proposes or verifies"
            ),
        ),
        Row::raw(
            "audit.build.seconds",
            build_secs,
            "s",
            "building the chain (signing, build_block, certify, commit; not timed above)",
        ),
    ];
    if let Some(v) = rows.first_mut() {
        let met = v.ratio.is_some_and(|r| r >= 0.8);
        *v = v.clone().target(">= 0.8 of the batch-verify ceiling", met);
    }
    if let Some(cpu) = cpu {
        rows.push(Row::raw(
            "audit.verify.cpu_per_entry",
            cpu.as_secs_f64() * 1e6 / report.entries as f64,
            "core-us/entry",
            format!(
                "process CPU time of the verification per entry; {spe:.3} signatures cost {:.1} \
                 core-us at the one-core batch rate",
                spe * 1e6 / c2.batch_1
            ),
        ));
    }
    rows.extend(store_rows);
    rows.extend(ceiling_rows(&c2, threads, probe_len));
    rows.push(Row::raw(
        "run.wall_seconds",
        started.elapsed().as_secs_f64(),
        "s",
        format!(
            "whole run including building the chain; {threads} cores; load average {} before, {} after",
            load_before.map(|l| format!("{l:.2}")).unwrap_or_default(),
            load_after.map(|l| format!("{l:.2}")).unwrap_or_default()
        ),
    ));
    emit(&rows, a.json, a.out.as_ref(), a.md.as_ref())
}

fn store_open(a: StoreOpenArgs) -> Result<()> {
    let t = Instant::now();
    let (store, chain) = Store::open(&a.dir)?;
    let secs = t.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mib = |field: &str| {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "open_seconds": secs,
            "entries": chain.log().size(),
            "height": store.height()?,
            "rss_mib": mib("VmRSS:"),
            "hwm_mib": mib("VmHWM:"),
        })
    );
    Ok(())
}
