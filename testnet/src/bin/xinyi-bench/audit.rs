//! `xinyi-bench audit`: full offline verification (`ledger::verify`) of a chain of N entries,
//! optionally with a sled store whose open time and memory a child process reports
//! (`store-open`).

use crate::ceilings::{ceiling_rows, ceilings};
use crate::ledger::{
    cpu_since, mean_msg_len, prepare_gen, process_cpu, query_entries_parallel, AGENCY,
};
use crate::report::{emit, loadavg, wall_row, Row};
use anyhow::{ensure, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xinyi_ledger::bundle::BundleWriter;
use xinyi_ledger::chain::Chain;
use xinyi_ledger::store::Store;
use xinyi_ledger::types::{OrgId, TimeMs};
use xinyi_ledger::{verify, Entry};

#[derive(Args)]
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct AuditArgs {
    /// Also append every block to a sled store (timed separately) and report its disk bytes
    /// per entry, and the open time and memory of a process that opens it.
    #[arg(long)]
    pub(crate) store: bool,
    /// Query records in the chain (plus setup entries).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) entries: usize,
    /// Entries per block.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) block_size: usize,
    /// Timed verification runs; the fastest is reported.
    #[arg(long, default_value_t = 1)]
    pub(crate) repeat: usize,
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
}

#[derive(Args)]
pub(crate) struct StoreOpenArgs {
    /// The store directory.
    #[arg(long)]
    pub(crate) dir: PathBuf,
}

pub(crate) fn audit(a: AuditArgs) -> Result<()> {
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
    rows.push(wall_row(
        started,
        "building the chain",
        threads,
        load_before,
        load_after,
    ));
    emit(&rows, a.json, a.out.as_ref(), a.md.as_ref())
}

pub(crate) fn store_open(a: StoreOpenArgs) -> Result<()> {
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
