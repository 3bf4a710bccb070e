//! Deterministic simulation of the consensus glue: 4 validators running Commonware simplex
//! with the ledger glue on Commonware's deterministic runtime and simulated network.
//!
//! Scenarios (each over many seeds): healthy; crash and restart of one validator (engine WAL
//! replay, chain rebuilt from its store); 2|2 partition then heal; message loss; one
//! equivocating validator (Commonware's `Equivocator` mock). After each run an independent
//! checker re-verifies every honest replica's stored blocks and certificates from genesis with
//! the ledger alone and compares them across replicas.
//!
//! Seeds: `XINYI_SIM_SEEDS` (total over the five scenarios, default below); replay one seed
//! exactly with `XINYI_SIM_SEED=<seed>` (the failing seed and command are printed).

use commonware_actor::Feedback;
use commonware_consensus::simplex::{elector::RoundRobin, mocks};
use commonware_consensus::types::Epoch;
use commonware_consensus::Reporter;
use commonware_cryptography::{ed25519, Sha256, Signer as _};
use commonware_p2p::simulated::{Config as NetCfg, Link, Network, Oracle, Receiver, Sender};
use commonware_runtime::{
    deterministic, Clock, Handle, Quota, Runner as _, Spawner, Supervisor as _,
};
use commonware_utils::{ordered::Set, probability, TryCollect as _};
use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};
use xinyi_ledger::entry::{Consent, EntryKind, QueryRecord, QueryRequest};
use xinyi_ledger::hash::{self, Domain};
use xinyi_ledger::sample::SampleConsortium;
use xinyi_ledger::types::DAY_MS;
use xinyi_ledger::{Category, Chain, Digest, Entry, OrgId, TimeMs};
use xinyi_node::consensus::{
    engine_key, namespace, start_validator, Activity, Application, Core, EngineDigest,
    EngineParams, MemStore, MemStoreData, Mempool, Peers, Scheme,
};

const T0: TimeMs = 1_795_000_000_000;
const N: usize = 4;
/// Default number of seeds over all scenarios (see the report in the module docs).
const DEFAULT_SEEDS: u64 = 1_000;

type Ctx = deterministic::Context;
type PK = ed25519::PublicKey;
type Ch = (Sender<PK, Ctx>, Receiver<PK>);

// ---------------------------------------------------------------- sample mempool

/// A deterministic stream of entries: round `r` registers sample firm `r`, records its consent
/// for bank-a and a served query under that consent. Every block carries whole rounds, so the
/// next round is `log size / 3` of the parent state.
struct SampleMempool {
    c: Arc<SampleConsortium>,
    rounds: u64,
}

impl Mempool for SampleMempool {
    fn candidates(&mut self, parent: &Chain, time: TimeMs) -> Vec<Entry> {
        let r0 = parent.log().size() / 3;
        let mut out = Vec::new();
        for r in r0..r0 + self.rounds {
            let Ok(firm) = SampleConsortium::firm(r as u32) else {
                continue;
            };
            let reg = self.c.registration("gz-credit", &firm, time, 3 * r);
            let consent = self.c.firm_entry(
                firm,
                time,
                3 * r + 1,
                EntryKind::ConsentGranted(Consent {
                    bank: OrgId::new("bank-a").unwrap(),
                    purpose: Consent::purpose_digest(&[0x5a; 32], "loan application"),
                    categories: vec![Category::Registration],
                    not_before: time - 1000,
                    not_after: time + 30 * DAY_MS,
                    max_uses: 3,
                    monitoring: None,
                }),
            );
            let (Ok(reg), Ok(consent)) = (reg, consent) else {
                continue;
            };
            let req = QueryRequest {
                bank: OrgId::new("bank-a").unwrap(),
                firm: self.c.tag(&firm),
                consent: consent.id,
                categories: vec![Category::Registration],
                nonce: r,
                time,
            };
            let Ok(signed) = self.c.signed_query("bank-a", req) else {
                continue;
            };
            let Ok(served) = self.c.org_entry(
                "gz-credit",
                time,
                3 * r + 2,
                EntryKind::QueryServed(QueryRecord {
                    request: signed,
                    response: hash::tagged(Domain::Data, &[b"response"]),
                    records: vec![],
                }),
            ) else {
                continue;
            };
            out.extend([reg, consent, served]);
        }
        out
    }
}

// ---------------------------------------------------------------- scenarios

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Healthy,
    CrashRestart,
    Partition,
    Lossy,
    Byzantine,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario::Healthy,
    Scenario::CrashRestart,
    Scenario::Partition,
    Scenario::Lossy,
    Scenario::Byzantine,
];

/// SplitMix64: the test's own choices (victim, partition, loss rate) derived from the seed.
fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a run leaves for comparison: the runtime's audit digest and each store's head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    audit: String,
    heads: Vec<(u64, Digest)>,
}

struct Sim {
    ctx: Ctx,
    oracle: Oracle<PK, Ctx>,
    c: Arc<SampleConsortium>,
    orgs: Vec<OrgId>,
    pks: Vec<PK>,
    schemes: Vec<Scheme>,
    peers: Peers,
    stores: Vec<MemStore>,
    cores: Vec<Option<Arc<Mutex<Core>>>>,
    handles: Vec<Option<Handle<()>>>,
    reporters: Vec<FinalizationLog>,
    honest: Vec<usize>,
    link: Link,
}

/// Engine-level observer: the payload of every finalization the engine reports, by view, and
/// any view finalized twice with different payloads. (Commonware's `mocks::reporter` does the
/// same but re-verifies every vote and certificate, which doubles the simulation's CPU time.)
#[derive(Clone, Default)]
struct FinalizationLog(Arc<Mutex<(BTreeMap<u64, EngineDigest>, u64)>>);

impl Reporter for FinalizationLog {
    type Activity = Activity;
    fn report(&mut self, activity: Activity) -> Feedback {
        if let Activity::Finalization(f) = &activity {
            let mut g = self.0.lock().unwrap();
            let view = f.proposal.round.view().get();
            if let Some(prev) = g.0.insert(view, f.proposal.payload) {
                if prev != f.proposal.payload {
                    g.1 += 1;
                }
            }
        }
        Feedback::Ok
    }
}

async fn register(oracle: &mut Oracle<PK, Ctx>, v: PK) -> (Ch, Ch, Ch, Ch) {
    let q = Quota::per_second(NonZeroU32::new(10_000).unwrap());
    let c = oracle.control(v);
    (
        c.register(0, q).await.unwrap(),
        c.register(1, q).await.unwrap(),
        c.register(2, q).await.unwrap(),
        c.register(3, q).await.unwrap(),
    )
}

impl Sim {
    async fn new(ctx: Ctx, success_tenths: u64) -> Sim {
        let c = Arc::new(SampleConsortium::new(b"xinyi-sim", N, T0));
        let orgs = c.validators.clone();
        let privs: Vec<ed25519::PrivateKey> = orgs
            .iter()
            .map(|o| engine_key(&c.keys[o]).unwrap())
            .collect();
        let pks: Vec<PK> = privs.iter().map(|k| k.public_key()).collect();
        let participants: Set<PK> = pks.clone().into_iter().try_collect().unwrap();
        let ns = namespace(&c.chain);
        let schemes: Vec<Scheme> = privs
            .iter()
            .map(|k| Scheme::signer(&ns, participants.clone(), k.clone()).unwrap())
            .collect();
        let (network, oracle) = Network::new_with_peers(
            ctx.child("network"),
            NetCfg {
                max_size: 4 * 1024 * 1024,
                max_peers_per_set: NonZeroUsize::new(8).unwrap(),
                disconnect_on_block: true,
                tracked_peer_sets: NonZeroUsize::new(1).unwrap(),
            },
            pks.clone(),
        )
        .await;
        network.start();
        let link = Link {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(3),
            success_rate: probability!(success_tenths, 10u64),
        };
        for a in &pks {
            for b in &pks {
                if a != b {
                    oracle
                        .add_link(a.clone(), b.clone(), link.clone())
                        .await
                        .unwrap();
                }
            }
        }
        let peers = Peers::new(orgs.iter().cloned().zip(pks.iter().cloned()));
        Sim {
            ctx,
            oracle,
            c,
            orgs,
            pks,
            schemes,
            peers,
            stores: (0..N).map(|_| MemStore::default()).collect(),
            cores: (0..N).map(|_| None).collect(),
            handles: (0..N).map(|_| None).collect(),
            reporters: (0..N).map(|_| FinalizationLog::default()).collect(),
            honest: (0..N).collect(),
            link,
        }
    }

    /// Starts (or restarts) honest validator `i` from its store and WAL partition.
    async fn start(&mut self, i: usize) {
        let (votes, certs, resolver, ledger) =
            register(&mut self.oracle, self.pks[i].clone()).await;
        let core = Core::open(
            &self.c.genesis,
            self.orgs[i].clone(),
            self.c.keys[&self.orgs[i]].clone(),
            Box::new(self.stores[i].clone()),
            Box::new(SampleMempool {
                c: self.c.clone(),
                rounds: 2,
            }),
        )
        .unwrap();
        let core = Arc::new(Mutex::new(core));
        // One log per validator across restarts: a restarted engine must not finalize another
        // payload at a view it finalized before the crash.
        let reporter = self.reporters[i].clone();
        self.cores[i] = Some(core.clone());
        let peers = self.peers.clone();
        let scheme = self.schemes[i].clone();
        let chain_id = self.c.chain;
        let blocker = self.oracle.control(self.pks[i].clone());
        let partition = format!("validator-{i}");
        let handle = self
            .ctx
            .child("validator")
            .with_attribute("index", i)
            .spawn(move |ctx| async move {
                let (ls, lr) = ledger;
                let app = Application::new(ctx.child("app"), core, peers, ls);
                let _loops = app.start(lr);
                let _engine = start_validator(
                    ctx.child("engine"),
                    &EngineParams {
                        mailbox_size: 64,
                        ..EngineParams::default()
                    },
                    scheme,
                    chain_id,
                    1,
                    partition,
                    blocker,
                    app,
                    reporter,
                    votes,
                    certs,
                    resolver,
                )
                .unwrap();
                futures::future::pending::<()>().await;
            });
        self.handles[i] = Some(handle);
    }

    async fn start_equivocator(&mut self, i: usize) {
        let (votes, certs, _resolver, _ledger) =
            register(&mut self.oracle, self.pks[i].clone()).await;
        let e = mocks::equivocator::Equivocator::new(
            self.ctx.child("byzantine"),
            mocks::equivocator::Config::<_, _, Sha256> {
                scheme: self.schemes[i].clone(),
                epoch: Epoch::new(1),
                relay: Arc::new(mocks::relay::Relay::new()),
                elector: RoundRobin::<Sha256>::default(),
            },
        );
        self.handles[i] = Some(e.start(votes, certs));
        self.honest.retain(|h| *h != i);
    }

    fn crash(&mut self, i: usize) {
        if let Some(h) = self.handles[i].take() {
            h.abort();
        }
        self.cores[i] = None;
    }

    fn height(&self, i: usize) -> u64 {
        self.stores[i].snapshot().blocks.len() as u64
    }

    /// Waits (simulated time) until every node in `nodes` has committed `height`.
    async fn wait_height(
        &self,
        nodes: &[usize],
        height: u64,
        limit: Duration,
        what: &str,
    ) -> Result<(), String> {
        let start = self.ctx.current();
        loop {
            if nodes.iter().all(|i| self.height(*i) >= height) {
                return Ok(());
            }
            if self.ctx.current().duration_since(start).unwrap() > limit {
                let hs: Vec<u64> = (0..N).map(|i| self.height(i)).collect();
                return Err(format!(
                    "{what}: no progress to height {height} within {limit:?} (heights {hs:?})"
                ));
            }
            self.ctx.sleep(Duration::from_millis(100)).await;
        }
    }

    async fn set_links(&mut self, cut: impl Fn(usize, usize) -> bool, connect: bool) {
        for a in 0..N {
            for b in 0..N {
                if a != b && cut(a, b) {
                    let (pa, pb) = (self.pks[a].clone(), self.pks[b].clone());
                    if connect {
                        self.oracle
                            .add_link(pa, pb, self.link.clone())
                            .await
                            .unwrap();
                    } else {
                        self.oracle.remove_link(pa, pb).await.unwrap();
                    }
                }
            }
        }
    }

    fn max_height(&self) -> u64 {
        self.honest
            .iter()
            .map(|i| self.height(*i))
            .max()
            .unwrap_or(0)
    }
}

/// The independent checker: re-verifies every honest store from genesis with the ledger alone
/// (certificates, entries, roots) and compares replicas height by height.
fn check(sim: &Sim) -> Result<(), String> {
    let stores: Vec<(usize, MemStoreData)> = sim
        .honest
        .iter()
        .map(|i| (*i, sim.stores[*i].snapshot()))
        .collect();
    let mut by_height: Vec<Option<(usize, Digest, Digest)>> = Vec::new();
    for (i, s) in &stores {
        let (mut chain, _) = Chain::from_genesis(&sim.c.genesis).unwrap();
        for (k, (b, c)) in s.blocks.iter().enumerate() {
            let height = k as u64 + 1;
            let hh = b.header.hash().unwrap();
            chain
                .apply_block(b.clone(), c.clone())
                .map_err(|e| format!("node {i}: stored block {height} does not re-verify: {e}"))?;
            let root = chain.state_head().root;
            if root != s.state_roots[k] {
                return Err(format!(
                    "node {i}: state root at {height} differs from replay"
                ));
            }
            if by_height.len() < k + 1 {
                by_height.push(Some((*i, hh, root)));
            } else if let Some((j, h2, r2)) = by_height[k] {
                if h2 != hh {
                    return Err(format!(
                        "SAFETY: nodes {j} and {i} committed different blocks at height {height}"
                    ));
                }
                if r2 != root {
                    return Err(format!(
                        "nodes {j} and {i} have different state roots at height {height}"
                    ));
                }
            }
        }
    }
    // Engine level: no two different finalized payloads for one view among honest replicas.
    let mut views = std::collections::BTreeMap::new();
    for i in &sim.honest {
        let log = sim.reporters[*i].0.lock().unwrap();
        if log.1 > 0 {
            return Err(format!(
                "SAFETY: node {i} finalized two payloads at one view"
            ));
        }
        for (view, payload) in log.0.iter() {
            if let Some(prev) = views.insert(*view, *payload) {
                if prev != *payload {
                    return Err(format!(
                        "SAFETY: conflicting engine finalizations at view {view}"
                    ));
                }
            }
        }
        drop(log);
        if let Some(core) = &sim.cores[*i] {
            let st = core.lock().unwrap().stats.clone();
            if st.conflicts > 0 {
                return Err(format!("node {i}: two final digests at one height"));
            }
        }
    }
    Ok(())
}

fn run(seed: u64, scenario: Scenario) -> Result<Outcome, String> {
    let cfg = deterministic::Config::new()
        .with_seed(seed)
        .with_start_time(UNIX_EPOCH + Duration::from_millis(T0 + 1_000))
        .with_timeout(Some(Duration::from_secs(1_800)));
    deterministic::Runner::new(cfg).start(|ctx| async move {
        let loss = match scenario {
            Scenario::Lossy => 7 + mix(seed, 1) % 3,
            _ => 10,
        };
        let mut sim = Sim::new(ctx.child("sim"), loss).await;
        let byz = (mix(seed, 2) % N as u64) as usize;
        for i in 0..N {
            if scenario == Scenario::Byzantine && i == byz {
                sim.start_equivocator(i).await;
            } else {
                sim.start(i).await;
            }
        }
        let honest = sim.honest.clone();
        let limit = Duration::from_secs(if scenario == Scenario::Lossy { 120 } else { 60 });
        sim.wait_height(&honest, 3, limit, "warm-up").await?;
        match scenario {
            Scenario::Healthy | Scenario::Lossy | Scenario::Byzantine => {
                sim.wait_height(&honest, 8, limit, "steady").await?;
            }
            Scenario::CrashRestart => {
                let victim = (mix(seed, 3) % N as u64) as usize;
                // Crash at a seed-chosen moment (often between a finalization and its commit).
                sim.ctx
                    .sleep(Duration::from_millis(mix(seed, 4) % 1_500))
                    .await;
                sim.crash(victim);
                // The abort reaches the node's child tasks when the runtime next polls them.
                sim.ctx.sleep(Duration::from_millis(1)).await;
                let at = sim.height(victim);
                let others: Vec<usize> = honest.iter().copied().filter(|i| *i != victim).collect();
                let target = sim.max_height() + 4;
                sim.wait_height(&others, target, limit, "3 of 4 after crash")
                    .await?;
                if sim.height(victim) != at {
                    return Err("crashed node kept committing".into());
                }
                sim.start(victim).await;
                let target = sim.max_height() + 4;
                sim.wait_height(&honest, target, limit, "after restart")
                    .await?;
            }
            Scenario::Partition => {
                let other = 1 + (mix(seed, 5) % 3) as usize;
                let side = move |x: usize| x == 0 || x == other;
                sim.set_links(|a, b| side(a) != side(b), false).await;
                sim.ctx.sleep(Duration::from_secs(2)).await;
                let during = sim.max_height();
                sim.ctx
                    .sleep(Duration::from_secs(3 + mix(seed, 6) % 5))
                    .await;
                if sim.max_height() != during {
                    return Err(format!(
                        "progress without a quorum during the 2|2 partition ({during} -> {})",
                        sim.max_height()
                    ));
                }
                sim.set_links(|a, b| side(a) != side(b), true).await;
                sim.wait_height(&honest, during + 4, limit, "after heal")
                    .await?;
            }
        }
        check(&sim)?;
        if std::env::var("XINYI_SIM_VERBOSE").is_ok() {
            for i in 0..N {
                let st = sim.cores[i]
                    .as_ref()
                    .map(|c| c.lock().unwrap().stats.clone());
                eprintln!(
                    "{scenario:?} seed {seed} node {i}: height {} at {:?}, {st:?}",
                    sim.height(i),
                    sim.ctx
                        .current()
                        .duration_since(UNIX_EPOCH + Duration::from_millis(T0))
                        .unwrap()
                );
            }
        }
        let heads = (0..N)
            .map(|i| {
                let s = sim.stores[i].snapshot();
                (
                    s.blocks.len() as u64,
                    s.blocks
                        .last()
                        .map(|(b, _)| b.header.hash().unwrap())
                        .unwrap_or(Digest::ZERO),
                )
            })
            .collect();
        Ok(Outcome {
            audit: sim.ctx.auditor().state(),
            heads,
        })
    })
}

fn seeds_per_scenario() -> Vec<u64> {
    if let Ok(s) = std::env::var("XINYI_SIM_SEED") {
        return vec![s.parse().expect("XINYI_SIM_SEED must be a u64")];
    }
    let total: u64 = std::env::var("XINYI_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (0..total.div_ceil(SCENARIOS.len() as u64).max(1)).collect()
}

/// Runs this scenario's seeds; `part`/`parts` split them between test functions so that the
/// slow scenario spreads over the test threads.
fn run_many(scenario: Scenario, part: u64, parts: u64) {
    let name = format!("{scenario:?}").to_lowercase();
    let mut seeds = seeds_per_scenario();
    if seeds.len() > 1 {
        seeds.retain(|s| s % parts == part);
    }
    let t = Instant::now();
    let mut failures = Vec::new();
    for seed in &seeds {
        let r = std::panic::catch_unwind(|| run(*seed, scenario));
        let err = match r {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e,
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        };
        let test = match scenario {
            Scenario::CrashRestart => "crash_restart".to_string(),
            _ => name.clone(),
        };
        eprintln!(
            "FAILED scenario {name} seed {seed}: {err}\n  replay: XINYI_SIM_SEED={seed} cargo test -p xinyi-node --test simulation {test}"
        );
        failures.push(*seed);
    }
    eprintln!(
        "scenario {name}: {} seeds in {:?}",
        seeds.len(),
        t.elapsed()
    );
    assert!(
        failures.is_empty(),
        "scenario {name} failed for seeds {failures:?}"
    );
}

#[test]
fn healthy() {
    run_many(Scenario::Healthy, 0, 1);
}

#[test]
fn crash_restart() {
    run_many(Scenario::CrashRestart, 0, 2);
}

#[test]
fn crash_restart_odd_seeds() {
    run_many(Scenario::CrashRestart, 1, 2);
}

#[test]
fn partition() {
    run_many(Scenario::Partition, 0, 1);
}

#[test]
fn lossy() {
    run_many(Scenario::Lossy, 0, 1);
}

#[test]
fn byzantine() {
    run_many(Scenario::Byzantine, 0, 1);
}

/// The same seed gives the same run, bit for bit (runtime audit digest and stored heads).
#[test]
fn same_seed_replays_exactly() {
    for scenario in [Scenario::CrashRestart, Scenario::Partition] {
        let a = run(7, scenario).unwrap();
        let b = run(7, scenario).unwrap();
        assert_eq!(a, b, "{scenario:?} seed 7 did not replay exactly");
    }
}
