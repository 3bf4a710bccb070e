//! `xinyi-bench ledger`: durable append of signed query records through `Chain` and `Store`
//! and verifier throughput over the same chain; also the chain builders the `audit` benchmark
//! reuses.

use crate::ceilings::ceilings;
use crate::report::{emit, Row};
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
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

#[derive(Args)]
pub(crate) struct LedgerArgs {
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Signed query records to append (default 50,000; 5,000 with --quick).
    #[arg(long)]
    pub(crate) entries: Option<usize>,
    /// Entries per block.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) block_size: usize,
    /// Also write the JSON array to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Small, fast run for CI smoke tests (5,000 entries, short ceiling runs).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Timed runs of append and of verify; the fastest of each is reported (default 2, 1 with
    /// --quick). Ceilings are likewise the higher of two measurements.
    #[arg(long)]
    pub(crate) repeat: Option<usize>,
    /// Firms (one consent each) the queries are spread over (default entries/50, 1..=1000).
    #[arg(long)]
    pub(crate) firms: Option<usize>,
}

pub(crate) const T0: TimeMs = 1_795_000_000_000;
pub(crate) const AGENCY: &str = "gz-credit";
pub(crate) const BANK: &str = "bank-a";

#[derive(Default)]
pub(crate) struct Phases {
    pub(crate) build: Duration,
    pub(crate) certify: Duration,
    pub(crate) commit: Duration,
    pub(crate) append: Duration,
}

impl Phases {
    pub(crate) fn total(&self) -> Duration {
        self.build + self.certify + self.commit + self.append
    }
}

pub(crate) struct LedgerRun {
    pub(crate) queries: usize,
    pub(crate) blocks: usize,
    pub(crate) phases: Phases,
    pub(crate) bundle: Vec<u8>,
    pub(crate) bundle_entries: u64,
    pub(crate) bundle_blocks: u64,
    pub(crate) bundle_signatures: u64,
    pub(crate) mean_msg_len: usize,
    pub(crate) store_bytes: u64,
    pub(crate) entry_bytes: u64,
    pub(crate) append_cpu: Option<Duration>,
    pub(crate) store_keys: Option<usize>,
}

/// Keys in the sled database at `dir`, reopened after the store closed it. sled releases its
/// file lock when its background threads let go of the database, so opening is retried for a
/// while; `None` if it never succeeds (the figure is then left out, not the run).
pub(crate) fn count_keys(dir: &std::path::Path) -> Option<usize> {
    for _ in 0..100 {
        match sled::open(dir) {
            Ok(db) => return Some(db.len()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

/// CPU time of this process so far, all threads (Linux `/proc/self/stat`, 10 ms ticks).
pub(crate) fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

pub(crate) fn cpu_since(start: Option<Duration>) -> Option<Duration> {
    Some(process_cpu()?.saturating_sub(start?))
}

/// Builds, certifies, commits and stores one block; returns the phase times.
pub(crate) fn commit_block(
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
pub(crate) fn query_entries(
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
pub(crate) fn query_entries_parallel(
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
pub(crate) fn signed_lengths(c: &SampleConsortium, e: &Entry) -> Result<usize> {
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
pub(crate) fn mean_msg_len(c: &SampleConsortium) -> Result<usize> {
    let firm = SampleConsortium::firm(0)?;
    let e = query_entries(c, &[(firm, Digest::ZERO)], 0..1, T0)?;
    match e.first() {
        Some(e) => signed_lengths(c, e),
        None => Ok(200),
    }
}

/// Everything the timed runs consume, generated once.
pub(crate) struct Prepared {
    pub(crate) c: SampleConsortium,
    /// (firm, consent id) the queries use.
    pub(crate) consents: Vec<(xinyi_ledger::Uscc, Digest)>,
    /// Setup blocks (firm registrations, consents) with their times.
    pub(crate) setup: Vec<(TimeMs, Vec<Entry>)>,
    pub(crate) setup_entries: u64,
    pub(crate) setup_sigs: u64,
    /// Query-record blocks.
    pub(crate) chunks: Vec<Vec<Entry>>,
    /// Time of the first query block.
    pub(crate) tq: TimeMs,
    pub(crate) n: usize,
    pub(crate) mean_msg_len: usize,
    pub(crate) entry_bytes: u64,
}

/// Signs the setup entries and the `n` query records (on all cores); nothing is timed.
pub(crate) fn prepare(
    n: usize,
    block_size: usize,
    firms: usize,
    threads: usize,
) -> Result<Prepared> {
    prepare_gen(n, n, block_size, firms, threads)
}

/// Like [`prepare`], with consents for `n` queries but only the first `gen` generated.
pub(crate) fn prepare_gen(
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
            c.registration(AGENCY, f, now, nonce)
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
pub(crate) fn append_run(p: &Prepared) -> Result<LedgerRun> {
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

pub(crate) fn ledger(a: LedgerArgs) -> Result<()> {
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
    emit(&rows, a.json, a.out.as_ref(), None)
}
