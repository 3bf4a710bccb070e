//! `xinyi-testnet chaos`: crash and pause validators at random moments under write load, then
//! check that every write a client saw acknowledged is on every node and that all nodes hold
//! the same block (same header, so same state root) at a common height. Seeded RNG; the seed is
//! printed so a run can be replayed (timing still varies).

use super::http::{self, WriteError};
use super::manifest::{Manifest, NodeEntry};
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

/// What a chaos cycle does to the validators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// kill -9 one random validator, restart it after a random delay.
    Kill,
    /// SIGSTOP one random validator for a random time, then SIGCONT.
    Pause,
    /// kill -9 + restart, every `pause_every`-th cycle a pause instead (the default).
    Mixed,
    /// Stop as many validators as it takes to break the quorum (2 of 4; SIGSTOP on odd cycles,
    /// kill -9 on even ones), check that the chain makes no progress and the live nodes do not
    /// diverge, restore them and check that progress resumes and every node converges.
    QuorumLoss,
}

impl Fault {
    /// `kill`, `pause`, `mixed`, `quorum-loss` (alias `two-of-four`).
    pub fn parse(s: &str) -> Result<Fault> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "kill" => Fault::Kill,
            "pause" => Fault::Pause,
            "mixed" => Fault::Mixed,
            "quorum-loss" | "two-of-four" => Fault::QuorumLoss,
            _ => bail!("unknown fault {s:?}: use kill, pause, mixed or quorum-loss"),
        })
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Mixed => "mixed",
            Fault::QuorumLoss => "quorum-loss",
        }
    }
}

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
    /// What each cycle does.
    pub fault: Fault,
    /// With [`Fault::Mixed`]: every n-th cycle pauses (SIGSTOP/SIGCONT) instead of killing
    /// (0 = never).
    pub pause_every: u32,
    /// Longest time a node stays killed or paused in the one-node modes (ms, at least 101; the
    /// time is drawn from 100..max).
    pub max_down_ms: u64,
    /// [`Fault::QuorumLoss`]: how long to watch for (forbidden) progress while the quorum is
    /// lost, after a 2 s settling time.
    pub stall: Duration,
    /// Per-step timeout (restart, convergence).
    pub timeout: Duration,
}

/// What a run saw.
#[derive(Debug, Default, Serialize)]
pub struct ChaosReport {
    /// Seed.
    pub seed: u64,
    /// Fault mode (`kill`, `pause`, `mixed`, `quorum-loss`).
    pub fault: String,
    /// Cycles completed.
    pub cycles: u32,
    /// One-node kill -9 + restart.
    pub kills: u32,
    /// One-node SIGSTOP + SIGCONT.
    pub pauses: u32,
    /// Quorum-loss cycles (each: no progress verified, then recovery and convergence verified).
    pub quorum_losses: u32,
    /// Of those, cycles that kill -9'd the validators (the others SIGSTOPped them).
    pub quorum_loss_kills: u32,
    /// Quorum-loss cycles in which no live node passed the height it had when the quorum was
    /// lost and no write was acknowledged in a block above it.
    pub no_progress_verified: u32,
    /// Quorum-loss cycles after which progress resumed and every node held the same block at a
    /// common height.
    pub recoveries_verified: u32,
    /// Longest time from restoring the validators to every node agreeing on a common block
    /// above the stalled height (ms; indicative only).
    pub max_recovery_ms: u64,
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

/// An acknowledged write: entry id, log position, block height.
type Ack = (String, u64, u64);

fn write_one(
    agent: &ureq::Agent,
    url: &str,
    chain: &Digest,
    key: &xinyi_ledger::KeyPair,
    firm: xinyi_ledger::FirmTag,
    rng: &mut StdRng,
) -> std::result::Result<Ack, WriteError> {
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
    let num = |k: &str| v.get(k).and_then(|p| p.as_u64());
    let (Some(pos), Some(height)) = (num("position"), num("height")) else {
        return Err(WriteError::Transport(
            "answer without position or height".into(),
        ));
    };
    Ok((e.id.to_hex(), pos, height))
}

/// Shared state of the writer threads.
#[derive(Clone, Default)]
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    failed: Arc<AtomicU64>,
}

impl Load {
    fn acks(&self) -> Vec<Ack> {
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Validators to stop so that the rest hold no quorum: the set's power is one per validator,
/// a quorum is more than two thirds of it, so stop `n - quorum + 1` (2 of 4, 1 of 3).
pub fn quorum_breakers(n: usize) -> usize {
    let quorum = n * 2 / 3 + 1;
    n + 1 - quorum.min(n)
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
            anchor_chain: false,
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
    if opts.fault == Fault::QuorumLoss && validators.len() < 2 {
        bail!("--fault quorum-loss needs at least 2 validators (the stopped ones and a live one)");
    }

    let load = Load::default();
    // Two writers, each to a random node (a write reaching a dead node simply fails).
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (load, urls, key) = (load.clone(), urls.clone(), key.clone());
            let seed = opts.seed ^ (w + 1);
            std::thread::spawn(move || {
                let agent = http::agent_short();
                let mut rng = StdRng::seed_from_u64(seed);
                while !load.stop.load(Ordering::Relaxed) {
                    let url = &urls[rng.gen_range(0..urls.len())];
                    match write_one(&agent, url, &chain, &key, firm, &mut rng) {
                        Ok(a) => load.acked.lock().unwrap_or_else(|p| p.into_inner()).push(a),
                        Err(_) => {
                            load.failed.fetch_add(1, Ordering::Relaxed);
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
        fault: opts.fault.name().into(),
        ..ChaosReport::default()
    };
    let max_down = opts.max_down_ms.max(101);
    let result = (|| -> Result<()> {
        for c in 1..=opts.cycles {
            std::thread::sleep(Duration::from_millis(rng.gen_range(200..1500)));
            if opts.fault == Fault::QuorumLoss {
                quorum_loss_cycle(opts, c, &validators, &load, &mut rng, &mut r, &say)?;
                r.cycles = c;
                continue;
            }
            let victim = &validators[rng.gen_range(0..validators.len())];
            let down_ms = rng.gen_range(100..max_down);
            let pause = match opts.fault {
                Fault::Pause => true,
                Fault::Kill => false,
                _ => opts.pause_every > 0 && c % opts.pause_every == 0,
            };
            if pause {
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
    load.stop.store(true, Ordering::Relaxed);
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
    let acked = load.acks();
    r.acknowledged = acked.len() as u64;
    r.failed_writes = load.failed.load(Ordering::Relaxed);
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
        for (id, pos, _) in &acked {
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

/// Heights of `nodes` (None where a node does not answer).
fn heights(agent: &ureq::Agent, nodes: &[&NodeEntry]) -> Vec<Option<u64>> {
    nodes
        .iter()
        .map(|n| http::health(agent, &n.url).ok().map(|h| h.height))
        .collect()
}

/// One quorum-loss cycle: stop `quorum_breakers(n)` random validators (SIGSTOP on odd cycles,
/// kill -9 on even ones), let in-flight blocks settle, take the live nodes' highest height,
/// watch for `opts.stall`: no live node may pass it, no write may be acknowledged in a block
/// above it, and the live nodes must hold the same block at their common height. Then restore
/// the validators (SIGCONT / restart) and wait until every node holds the same block at a
/// common height above the stalled one.
fn quorum_loss_cycle(
    opts: &ChaosOptions,
    c: u32,
    validators: &[String],
    load: &Load,
    rng: &mut StdRng,
    r: &mut ChaosReport,
    say: &impl Fn(&str),
) -> Result<()> {
    let k = quorum_breakers(validators.len());
    let mut pool: Vec<&String> = validators.iter().collect();
    let mut victims: Vec<String> = Vec::new();
    for _ in 0..k {
        let i = rng.gen_range(0..pool.len());
        victims.push(pool.remove(i).clone());
    }
    let by_kill = c.is_multiple_of(2);
    let sig = if by_kill { Sig::Kill } else { Sig::Stop };
    let mut pids = Vec::new();
    for v in &victims {
        pids.push(ops::kill(&opts.dir, v, sig).with_context(|| format!("cycle {c}: {v}"))?);
    }
    let m = Manifest::load(&opts.dir)?;
    let live: Vec<&NodeEntry> = m
        .nodes
        .iter()
        .filter(|n| !victims.contains(&n.org))
        .collect();
    let agent = http::agent_short();
    // Anything certified before the stop reaches the live nodes within this time.
    std::thread::sleep(Duration::from_secs(2));
    let before = heights(&agent, &live);
    let verdict = (|| -> Result<u64> {
        if before.iter().any(Option::is_none) {
            bail!("a live node does not answer while {victims:?} are stopped");
        }
        let high = before.iter().flatten().max().copied().unwrap_or(0);
        let acks_from = load.acks().len();
        std::thread::sleep(opts.stall);
        let after = heights(&agent, &live);
        for (n, h) in live.iter().zip(&after) {
            match h {
                Some(h) if *h > high => bail!(
                    "PROGRESS WITHOUT QUORUM: {} reached height {h} > {high} with {victims:?} stopped",
                    n.org
                ),
                Some(_) => {}
                None => bail!("{} stopped answering while {victims:?} are stopped", n.org),
            }
        }
        if let Some(a) = load.acks()[acks_from..].iter().find(|a| a.2 > high) {
            bail!(
                "ACKNOWLEDGED WITHOUT QUORUM: entry {} in block {} > {high} with {victims:?} stopped",
                a.0,
                a.2
            );
        }
        // No divergence: same block at the live nodes' common height (a header names its
        // parent, so the same hash there means the same chain below).
        let common = after.iter().flatten().min().copied().unwrap_or(0);
        if common > 0 {
            let hashes: Vec<Option<String>> = live
                .iter()
                .map(|n| http::block_hash(&agent, &n.url, common))
                .collect();
            if hashes.iter().any(|h| h.is_none() || *h != hashes[0]) {
                bail!("DIVERGENCE at height {common} among the live nodes: {hashes:?}");
            }
        }
        Ok(high)
    })();
    // Restore whatever the verdict, so that the nodes are left running for inspection.
    let restored = Instant::now();
    for (v, pid) in victims.iter().zip(&pids) {
        if by_kill {
            ops::start(&opts.dir, v, None, opts.timeout)
                .with_context(|| format!("cycle {c}: restarting {v}"))?;
        } else {
            process::signal(*pid, Sig::Cont)?;
        }
    }
    let high = verdict.with_context(|| format!("cycle {c} (seed {})", opts.seed))?;
    r.no_progress_verified += 1;
    let deadline = restored + opts.timeout;
    loop {
        let now = heights(&agent, &live);
        if now.iter().flatten().any(|h| *h > high) {
            break;
        }
        if Instant::now() > deadline {
            bail!("cycle {c}: no progress past height {high} after restoring {victims:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = Manifest::load(&opts.dir)?;
    let common = ops::wait_same_height(&m, deadline)
        .with_context(|| format!("cycle {c}: convergence after restoring {victims:?}"))?;
    if common <= high {
        bail!("cycle {c}: the nodes agree only at height {common}, not above the stalled {high}");
    }
    let ms = restored.elapsed().as_millis() as u64;
    r.max_recovery_ms = r.max_recovery_ms.max(ms);
    r.recoveries_verified += 1;
    r.quorum_losses += 1;
    r.quorum_loss_kills += u32::from(by_kill);
    say(&format!(
        "cycle {c}: {} {} ({} of {}): no progress past height {high} for {} ms, live nodes agree; restored, all nodes agree at height {common} after {ms} ms",
        if by_kill { "killed -9" } else { "paused" },
        victims.join(" and "),
        victims.len(),
        validators.len(),
        opts.stall.as_millis()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_breakers_break_the_quorum() {
        assert_eq!(quorum_breakers(4), 2);
        assert_eq!(quorum_breakers(3), 1);
        assert_eq!(quorum_breakers(7), 3);
        assert_eq!(quorum_breakers(2), 1);
        for n in 2..20 {
            let k = quorum_breakers(n);
            let quorum = n * 2 / 3 + 1;
            assert!(n - k < quorum, "{n}: {k}");
            assert!(n - k + 1 >= quorum, "{n}: {k} is more than needed");
        }
    }

    #[test]
    fn faults_parse() {
        assert_eq!(Fault::parse("pause").unwrap(), Fault::Pause);
        assert_eq!(Fault::parse("two-of-four").unwrap(), Fault::QuorumLoss);
        assert_eq!(Fault::parse("QUORUM-LOSS").unwrap(), Fault::QuorumLoss);
        assert!(Fault::parse("split").is_err());
        for f in [Fault::Kill, Fault::Pause, Fault::Mixed, Fault::QuorumLoss] {
            assert_eq!(Fault::parse(f.name()).unwrap(), f);
        }
    }
}
