//! `xinyi-testnet chaos`: crash and pause validators at random moments under write load, then
//! check that every write a client saw acknowledged is on every node and that all nodes hold
//! the same block (same header, so same state root) at a common height. Seeded RNG; the seed is
//! printed so a run can be replayed (timing still varies).

use super::http::{self, WriteError};
use super::manifest::Manifest;
use super::ops::{self, UpOptions};
use super::process::{self, Sig};
use anyhow::{anyhow, bail, Context as _, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xinyi_ledger::entry::{CreditRecord, EntryBody};
use xinyi_ledger::types::{Category, Severity};
use xinyi_ledger::{Digest, Entry, EntryKind, Genesis, OrgId, Uscc};
use xinyi_node::dev::read_key;

/// Options of `chaos`.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Testnet directory (a new testnet is brought up there unless it holds one).
    pub dir: PathBuf,
    /// Validators of a new testnet.
    pub validators: usize,
    /// Fault cycles.
    pub cycles: u32,
    /// RNG seed.
    pub seed: u64,
    /// The xinyi-node binary.
    pub node_bin: PathBuf,
    /// xinyi-testnet itself (for `up`).
    pub self_exe: PathBuf,
    /// Every n-th cycle pauses (SIGSTOP/SIGCONT) instead of killing (0 = never).
    pub pause_every: u32,
    /// Per-step timeout (restart, convergence).
    pub timeout: Duration,
}

/// What a run saw.
#[derive(Debug, Default, Serialize)]
pub struct ChaosReport {
    /// Seed.
    pub seed: u64,
    /// Cycles completed.
    pub cycles: u32,
    /// kill -9 + restart.
    pub kills: u32,
    /// SIGSTOP + SIGCONT.
    pub pauses: u32,
    /// Writes acknowledged (200 with a position).
    pub acknowledged: u64,
    /// Writes refused or unanswered (retried by nobody: they are simply not counted).
    pub failed_writes: u64,
    /// Acknowledged writes missing on some node afterwards (must be 0).
    pub missing: u64,
    /// Height at which every node's block was compared.
    pub common_height: u64,
    /// Its header hash.
    pub common_head: String,
}

fn write_one(
    agent: &ureq::Agent,
    url: &str,
    chain: &Digest,
    key: &xinyi_ledger::KeyPair,
    firm: xinyi_ledger::FirmTag,
    rng: &mut StdRng,
) -> std::result::Result<(String, u64), WriteError> {
    let time = http::health(agent, url)
        .map(|h| h.time_ms)
        .map_err(|e| WriteError::Transport(e.to_string()))?;
    let e = Entry::sign(
        chain,
        EntryBody {
            author: xinyi_ledger::entry::Author::Org(
                OrgId::new("gz-credit").map_err(|e| WriteError::Transport(e.to_string()))?,
            ),
            time,
            nonce: rng.gen(),
            kind: EntryKind::CreditRecordPublished(CreditRecord {
                record: Digest(rng.gen()),
                firm,
                category: Category::Penalties,
                severity: Severity::Minor,
                min_publicity_days: 30,
            }),
        },
        key,
    )
    .map_err(|e| WriteError::Transport(e.to_string()))?;
    let v = http::post_entry(agent, url, &e.bytes)?;
    let pos = v
        .get("position")
        .and_then(|p| p.as_u64())
        .ok_or_else(|| WriteError::Transport("answer without position".into()))?;
    Ok((e.id.to_hex(), pos))
}

/// Runs the chaos loop; `say` gets one line per event.
pub fn run(opts: &ChaosOptions, say: impl Fn(&str)) -> Result<ChaosReport> {
    if Manifest::load(&opts.dir).is_err() {
        say(&format!(
            "bringing up {} validators in {}",
            opts.validators,
            opts.dir.display()
        ));
        ops::up(&UpOptions {
            dir: opts.dir.clone(),
            validators: Some(opts.validators),
            followers: Some(0),
            base_port: None,
            node_bin: opts.node_bin.clone(),
            self_exe: opts.self_exe.clone(),
            timeout: opts.timeout,
            verbose: false,
        })?;
    }
    let m = Manifest::load(&opts.dir)?;
    let genesis = Genesis::from_json(&std::fs::read(&m.genesis)?)?;
    let chain = genesis.chain_id()?;
    let key = read_key(&m.org_key("gz-credit"))?;
    let firm = Uscc::parse(
        &m.firms
            .first()
            .ok_or_else(|| anyhow!("testnet without keyed firms"))?
            .uscc,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let firm = xinyi_node::dev::read_firm_key(&m.keys.join("firm.key"))?.tag(&firm);
    let urls: Vec<String> = m.nodes.iter().map(|n| n.url.clone()).collect();
    let validators: Vec<String> = m
        .nodes
        .iter()
        .filter(|n| n.validator)
        .map(|n| n.org.clone())
        .collect();
    if validators.is_empty() {
        bail!("no validators");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    // Two writers, each to a random node (a write reaching a dead node simply fails).
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (stop, acked, failed, urls, key) = (
                stop.clone(),
                acked.clone(),
                failed.clone(),
                urls.clone(),
                key.clone(),
            );
            let seed = opts.seed ^ (w + 1);
            std::thread::spawn(move || {
                let agent = http::agent_short();
                let mut rng = StdRng::seed_from_u64(seed);
                while !stop.load(Ordering::Relaxed) {
                    let url = &urls[rng.gen_range(0..urls.len())];
                    match write_one(&agent, url, &chain, &key, firm, &mut rng) {
                        Ok(a) => acked.lock().unwrap_or_else(|p| p.into_inner()).push(a),
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut r = ChaosReport {
        seed: opts.seed,
        ..ChaosReport::default()
    };
    let result = (|| -> Result<()> {
        for c in 1..=opts.cycles {
            std::thread::sleep(Duration::from_millis(rng.gen_range(200..1500)));
            let victim = &validators[rng.gen_range(0..validators.len())];
            let down_ms = rng.gen_range(100..1500);
            if opts.pause_every > 0 && c % opts.pause_every == 0 {
                let pid = ops::kill(&opts.dir, victim, Sig::Stop)?;
                std::thread::sleep(Duration::from_millis(down_ms));
                process::signal(pid, Sig::Cont)?;
                r.pauses += 1;
                say(&format!("cycle {c}: paused {victim} for {down_ms} ms"));
            } else {
                ops::kill(&opts.dir, victim, Sig::Kill)?;
                std::thread::sleep(Duration::from_millis(down_ms));
                ops::start(&opts.dir, victim, None, opts.timeout)
                    .with_context(|| format!("cycle {c}: restarting {victim}"))?;
                r.kills += 1;
                say(&format!(
                    "cycle {c}: killed -9 {victim}, restarted after {down_ms} ms"
                ));
            }
            r.cycles = c;
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    result?;

    let m = Manifest::load(&opts.dir)?;
    let h = ops::wait_same_height(&m, Instant::now() + opts.timeout)?;
    let agent = http::agent();
    r.common_height = h;
    r.common_head = m
        .nodes
        .first()
        .and_then(|n| http::block_hash(&agent, &n.url, h))
        .unwrap_or_default();
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    r.acknowledged = acked.len() as u64;
    r.failed_writes = failed.load(Ordering::Relaxed);
    // Every node must reach the last acknowledged position, then hold each acknowledged entry.
    let last = acked.iter().map(|a| a.1).max().unwrap_or(0);
    let deadline = Instant::now() + opts.timeout;
    for n in &m.nodes {
        while http::health(&agent, &n.url)
            .map(|h| h.log_size)
            .unwrap_or(0)
            <= last
            && !acked.is_empty()
        {
            if Instant::now() > deadline {
                bail!("{} did not reach log position {last} in time", n.org);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for (id, pos) in &acked {
            let got: Option<String> = agent
                .get(&format!("{}/v1/entries/{pos}", n.url))
                .call()
                .ok()
                .and_then(|r| r.into_json::<serde_json::Value>().ok())
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
            if got.as_deref() != Some(id.as_str()) {
                r.missing += 1;
                say(&format!(
                    "MISSING on {}: acknowledged entry {id} at position {pos} (found {got:?})",
                    n.org
                ));
            }
        }
    }
    if r.missing > 0 {
        bail!(
            "{} acknowledged writes missing after {} cycles (seed {})",
            r.missing,
            r.cycles,
            r.seed
        );
    }
    Ok(r)
}
