//! Cluster mode: `xinyi-node start` with a `[p2p]` section, the node as one member of a
//! multi-node consortium.
//!
//! What it is: the wiring of the pieces, in one place. The ledger replica and its sled store
//! ([`Engine::open_cluster`]), the libp2p network ([`crate::p2p`]), the consensus glue
//! ([`crate::consensus`]: simplex engine on validators, the ledger channel on every member),
//! transaction forwarding (entries submitted to any node reach every validator's pool) and the
//! HTTP API, all on Commonware's tokio runtime, whose storage directory holds the consensus
//! WAL (`DATA/consensus`). A node validates if the ledger gives its organisation voting power
//! and follows otherwise (it tracks committed blocks with their certificates, serves reads and
//! proofs, and forwards writes). What it is not: consensus or ledger logic (those live in
//! `consensus` and the ledger crate), or validator-set epochs (not implemented: a committed
//! change of the validator set is logged; the engine keeps its start-up set).
//!
//! With `[bench] app = "noop"` the same network and engine start-up run the benchmark's no-op
//! replica instead of the ledger (`run_noop`; `consensus::noop`).

use crate::clock::Clock;
use crate::config::{BenchApp, Config};
use crate::consensus::noop::NoopReplica;
use crate::consensus::{
    engine_key, lock, namespace, start_validator, Activity, Application, Core, EngineParams, Peers,
    Replica, Scheme,
};
use crate::datastore::AgencyData;
use crate::engine::{Engine, EngineConfig, SubmitError};
use crate::metrics::Metrics;
use crate::node::{api_config, serve_config, Node};
use crate::p2p::{engine_public_key, Network, NetworkConfig, P2pReceiver, P2pSender};
use anyhow::Context as _;
use commonware_actor::Feedback;
use commonware_consensus::Reporter;
use commonware_p2p::{Receiver as _, Recipients, Sender as _};
use commonware_runtime::{Handle, Runner as _, Supervisor as _};
use commonware_utils::ordered::Set;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use xinyi_ledger::entry::Equivocation;
use xinyi_ledger::{ChainErrorKind, Digest, Entry, EntryKind, Genesis, OrgId, PublicKey};

/// Channel ids on the p2p network.
pub mod channel {
    /// Simplex votes.
    pub const VOTES: u64 = 0;
    /// Simplex certificates.
    pub const CERTIFICATES: u64 = 1;
    /// Simplex resolver (fetching missing certificates).
    pub const RESOLVER: u64 = 2;
    /// Ledger channel: block bodies, commit votes, catch-up.
    pub const LEDGER: u64 = 3;
    /// Forwarded transactions.
    pub const TRANSACTIONS: u64 = 4;
}

/// Most entries in one forwarding message.
pub const FORWARD_BATCH: usize = 1_024;
/// Queue bound of each p2p channel receiver.
const CHANNEL_CAPACITY: usize = 4_096;
/// How often equivocation evidence found by the consensus core is collected.
const EVIDENCE_EVERY: Duration = Duration::from_millis(500);

/// What `/health` shows about the network, refreshed every second.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NetView {
    /// Other members: organisation, connected now.
    pub peers: Vec<PeerRow>,
    /// Address libp2p listens on.
    pub listen: Option<SocketAddr>,
    /// Transport counters.
    pub stats: Option<crate::p2p::P2pStats>,
    /// First height of the running epoch (its validator set).
    pub epoch: Option<u64>,
}

/// One member in [`NetView`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerRow {
    /// Organisation id.
    pub org: String,
    /// A connection is established.
    pub connected: bool,
    /// The transport blocked it.
    pub blocked: bool,
}

/// Shared network view.
pub type SharedNetView = Arc<RwLock<NetView>>;

/// The simplex reporter of a production validator: the application already gets every
/// finalization; nothing else listens.
#[derive(Clone, Copy, Default)]
struct NoReport;

impl Reporter for NoReport {
    type Activity = Activity;
    fn report(&mut self, _activity: Activity) -> Feedback {
        Feedback::Ok
    }
}

/// Runs a consortium member until SIGTERM / Ctrl-C.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    let p2p = cfg
        .p2p
        .clone()
        .context("cluster mode needs a [p2p] section in the configuration")?;
    // TLS files are read before anything starts, so a bad certificate stops the node at once.
    let tls = cfg.api.clone().unwrap_or_default().server_tls()?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new()
            .with_storage_directory(cfg.data_dir.join("consensus"))
            .with_worker_threads(2)
            .with_catch_panics(false),
    );
    match cfg.bench_app()? {
        BenchApp::Ledger => runner.start(|ctx| async move { run_member(ctx, cfg, p2p, tls).await }),
        BenchApp::Noop => {
            let bytes = cfg.bench.as_ref().map_or(0, |b| b.payload_bytes);
            runner.start(|ctx| async move { run_noop(ctx, cfg, p2p, bytes).await })
        }
    }
}

fn org_keys(engine: &Engine) -> anyhow::Result<BTreeMap<OrgId, PublicKey>> {
    let g = engine.lock();
    let orgs = g
        .chain
        .state()
        .orgs()
        .map_err(|e| anyhow::anyhow!("reading organisations: {e}"))?;
    Ok(orgs.into_iter().map(|(id, r)| (id, r.key)).collect())
}

fn dial_list(
    orgs: &BTreeMap<OrgId, PublicKey>,
    peers: &BTreeMap<String, SocketAddr>,
    me: &OrgId,
) -> Vec<(PublicKey, SocketAddr)> {
    peers
        .iter()
        .filter(|(o, _)| o.as_str() != me.as_str())
        .filter_map(|(o, a)| {
            let id = OrgId::new(o).ok()?;
            orgs.get(&id).map(|k| (*k, *a))
        })
        .collect()
}

async fn run_member(
    ctx: commonware_runtime::tokio::Context,
    cfg: Config,
    p2p: crate::config::P2pSection,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let genesis = Genesis::from_json(
        &std::fs::read(&cfg.genesis)
            .with_context(|| format!("reading genesis {}", cfg.genesis.display()))?,
    )
    .with_context(|| format!("genesis {}", cfg.genesis.display()))?;
    let key = crate::dev::read_key(&cfg.key_file)?;
    let org = OrgId::new(&cfg.org)?;
    for o in p2p.peers.keys() {
        OrgId::new(o).with_context(|| format!("[p2p] peers: {o:?} is not an organisation id"))?;
    }
    let metrics = Arc::new(Metrics::default());
    let (engine, forwarded) = Engine::open_cluster(
        &cfg.data_dir.join("ledger"),
        &genesis,
        org.clone(),
        key.clone(),
        Arc::new(Clock::system()),
        metrics,
        EngineConfig {
            mempool_capacity: cfg.mempool_capacity,
            ..EngineConfig::default()
        },
    )?;
    let data = AgencyData::open(&cfg.data_dir.join("agency-data"))?;
    if let Some(sample) = &cfg.sample {
        if !data.is_complete()? {
            let firms = (0..sample.firms)
                .map(|i| {
                    xinyi_ledger::sample::sample_firm(i)
                        .map_err(|e| anyhow::anyhow!("sample firm {i}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            data.generate_sample(&firms, crate::dev::KEYED_FIRMS as usize)?;
            tracing::info!("generated sample data for {} firms", sample.firms);
        }
    }

    // The network: every registered organisation may connect.
    let orgs = org_keys(&engine)?;
    let mut network = start_network(&key, &p2p, &orgs, &org).await?;
    let (ledger_tx, ledger_rx) = network.register(channel::LEDGER, CHANNEL_CAPACITY);
    let (tx_out, tx_in) = network.register(channel::TRANSACTIONS, CHANNEL_CAPACITY);
    tracing::info!(
        "p2p listening on {} as {org} ({})",
        network.local_addr(),
        engine.role()
    );

    // Consensus: the ledger channel on every member, the engine on validators (per epoch).
    let pool = engine.proposer_pool();
    let arrivals = pool.as_ref().map(|p| p.arrivals()).unwrap_or_default();
    let mempool: Box<dyn crate::consensus::Mempool> = match pool {
        Some(p) => Box::new(p),
        None => Box::new(NoPool),
    };
    let core = Arc::new(Mutex::new(Core::new(
        org.clone(),
        key.clone(),
        engine.ledger(),
        mempool,
    )));
    let leader_timeout = engine_params(&p2p).leader_timeout;
    let app = Application::new(ctx.child("app"), core.clone(), peers_of(&orgs), ledger_tx)
        .with_empty_block_after(leader_timeout / 2)
        .with_wake(arrivals);
    let _loops = app.start(ledger_rx);
    tokio::spawn(evidence_loop(engine.clone(), core.clone()));

    // Transactions: forward what this node admits, pool what peers forward.
    tokio::spawn(forward_loop(forwarded, tx_out));
    tokio::spawn(pool_loop(engine.clone(), tx_in));

    // Epochs, membership and the status view.
    let view: SharedNetView = Arc::default();
    let mut members = Members {
        ctx: ctx.child("epochs"),
        engine: engine.clone(),
        network,
        app,
        core,
        key: key.clone(),
        me: org.clone(),
        addrs: p2p.peers.clone(),
        params: engine_params(&p2p),
        view: view.clone(),
        orgs,
        epoch: None,
        last_height: 0,
        still_since: std::time::Instant::now(),
    };
    members.step().await?;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Err(e) = members.step().await {
                tracing::error!("epoch manager: {e:#}");
            }
        }
    });

    let node = Node::from_parts(engine, data, api_config(&cfg, Some(view))?);
    node.start_services(&cfg)?;
    serve_config(&cfg, node.router(), tls).await
}

/// A follower proposes nothing.
struct NoPool;

impl crate::consensus::Mempool for NoPool {
    fn candidates(&mut self, _parent: &xinyi_ledger::Chain, _time: u64) -> Vec<Entry> {
        Vec::new()
    }
}

/// Encodes a batch of entries for the transaction channel.
pub fn encode_batch(entries: &[Entry]) -> Vec<u8> {
    let v: Vec<ByteBuf> = entries
        .iter()
        .map(|e| ByteBuf::from(e.bytes.clone()))
        .collect();
    serde_cbor::to_vec(&v).unwrap_or_default()
}

/// Decodes a transaction-channel message; `None` if it is not a batch of valid entries.
pub fn decode_batch(bytes: &[u8]) -> Option<Vec<Entry>> {
    let v: Vec<ByteBuf> = serde_cbor::from_slice(bytes).ok()?;
    if v.len() > FORWARD_BATCH {
        return None;
    }
    v.iter().map(|b| Entry::decode(b).ok()).collect()
}

async fn forward_loop(mut rx: tokio::sync::mpsc::Receiver<Entry>, mut out: P2pSender) {
    let mut batch = Vec::with_capacity(FORWARD_BATCH);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.push(first);
        while batch.len() < FORWARD_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let bytes = encode_batch(&batch);
        let _ = out.send(Recipients::All, bytes, false);
    }
}

async fn pool_loop(engine: Engine, mut rx: P2pReceiver) {
    while let Ok((from, buf)) = rx.recv().await {
        let Some(entries) = decode_batch(buf.as_ref()) else {
            tracing::warn!("dropping a malformed transaction batch from {from}");
            continue;
        };
        let refused = engine.pool_forwarded(entries);
        if refused > 0 {
            tracing::debug!("{refused} forwarded entries from {from} did not fit the pool");
        }
    }
}

/// Collects the equivocation evidence the consensus core found and, while this node
/// validates, signs each into a `misbehaviour` entry and submits it like any locally made
/// entry (admission, pool, forwarding to the other validators). A follower only logs it: the
/// ledger rule wants a validator as the author (`specs/state.md` §4.17).
async fn evidence_loop(engine: Engine, core: Arc<Mutex<Core>>) {
    loop {
        tokio::time::sleep(EVIDENCE_EVERY).await;
        let c = core.clone();
        let Ok(found) = tokio::task::spawn_blocking(move || lock(&c).take_evidence()).await else {
            continue;
        };
        for ev in found {
            submit_evidence(&engine, ev);
        }
    }
}

fn submit_evidence(engine: &Engine, ev: Equivocation) {
    let who = format!("{} at height {}", ev.validator, ev.height);
    if engine.role() != "validator" {
        tracing::warn!(
            "equivocation by {who}: not submitted, this node does not validate (evidence needs a validator as author)"
        );
        return;
    }
    let entry = match engine.sign_own(EntryKind::Misbehaviour(ev)) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("equivocation by {who}: evidence entry: {e}");
            return;
        }
    };
    let engine = engine.clone();
    tokio::spawn(async move {
        match engine.submit(entry).await {
            Ok(c) => tracing::info!(
                "equivocation by {who}: evidence committed at log position {}",
                c.position
            ),
            // Another validator's evidence of the same equivocation came first.
            Err(e) if already_recorded(&e) => {
                tracing::debug!("equivocation by {who}: evidence already on the ledger")
            }
            Err(e) => tracing::warn!("equivocation by {who}: evidence not committed: {e}"),
        }
    });
}

fn already_recorded(e: &SubmitError) -> bool {
    match e {
        SubmitError::Rejected(ChainErrorKind::State(s)) | SubmitError::Dropped(s) => {
            s.code() == "state.already_exists"
        }
        _ => false,
    }
}

fn peers_of(orgs: &BTreeMap<OrgId, PublicKey>) -> Peers {
    Peers::new(
        orgs.iter()
            .filter_map(|(o, k)| Some((o.clone(), engine_public_key(k)?))),
    )
}

/// The running engine of one epoch.
struct Epoch {
    /// First height under this validator set (the engine's epoch number).
    start: u64,
    /// Hash of the validator set.
    set: Digest,
    /// The engine, if this node is in the set.
    handle: Option<Handle<()>>,
}

/// Keeps the node's consensus engine, p2p admission and status in step with the ledger:
/// every half second it refreshes membership (new or rotated organisation keys), and when the
/// validator set for the next height differs from the running engine's — the old engine stops
/// by itself at the last block of its epoch, see `Core::set_engine_set` — it stops that engine
/// and starts the next epoch's (if this node is in the new set).
struct Members {
    ctx: commonware_runtime::tokio::Context,
    engine: Engine,
    network: Network,
    app: Application<commonware_runtime::tokio::Context, P2pSender>,
    core: Arc<Mutex<Core>>,
    key: xinyi_ledger::KeyPair,
    me: OrgId,
    addrs: BTreeMap<String, SocketAddr>,
    params: EngineParams,
    view: SharedNetView,
    orgs: BTreeMap<OrgId, PublicKey>,
    epoch: Option<Epoch>,
    last_height: u64,
    still_since: std::time::Instant,
}

impl Members {
    async fn step(&mut self) -> anyhow::Result<()> {
        // Membership: admission and the org ↔ key map.
        let e = self.engine.clone();
        let orgs = tokio::task::spawn_blocking(move || org_keys(&e)).await??;
        if orgs != self.orgs {
            tracing::info!("membership changed: {} organisations", orgs.len());
            self.network.set_members(
                orgs.values().copied().collect(),
                dial_list(&orgs, &self.addrs, &self.me),
            );
            self.app.set_peers(peers_of(&orgs));
            self.orgs = orgs;
        }
        // Epochs: checked at start, and when the chain has not moved for a while (the old
        // engine stops at its last block; an idle chain still makes empty blocks).
        let height = self
            .engine
            .metrics()
            .height
            .load(std::sync::atomic::Ordering::Relaxed);
        if height != self.last_height {
            self.last_height = height;
            self.still_since = std::time::Instant::now();
        }
        let stalled = self.still_since.elapsed() >= self.params.leader_timeout * 3;
        // A follower has no engine to stop at its epoch's end: it notices a new set in the
        // headers it applies (and starts validating if the set names it).
        let set_moved = match &self.epoch {
            Some(ep) if ep.handle.is_none() => {
                matches!(self.engine.store().header(height), Ok(Some(h)) if h.validator_set != ep.set)
            }
            _ => false,
        };
        if self.epoch.is_none() || stalled || set_moved {
            let e = self.engine.clone();
            let next = tokio::task::spawn_blocking(move || next_epoch(&e)).await??;
            if self.epoch.as_ref().map(|x| x.set) != Some(next.set_hash) {
                self.switch(next)?;
            }
            self.still_since = std::time::Instant::now();
        }
        self.refresh_view();
        Ok(())
    }

    fn switch(&mut self, next: NextEpoch) -> anyhow::Result<()> {
        if let Some(old) = self.epoch.take() {
            if let Some(h) = old.handle {
                h.abort();
            }
            tracing::info!(
                "epoch {} ended; starting epoch {} ({} validators)",
                old.start,
                next.start,
                next.validators.len()
            );
        }
        lock(&self.core).set_engine_set(Some(next.set_hash));
        // By key as well as by organisation: a node restarted with the key of its own pending
        // rotation follows until the set names that key (`Engine::open_cluster`).
        let me = self.key.public();
        let mine = next
            .validators
            .iter()
            .any(|(o, k)| *o == self.me && *k == me);
        self.engine.set_validator(mine);
        let handle = if mine {
            Some(start_engine(
                self.ctx.child("engine"),
                &mut self.network,
                &self.params,
                &self.key,
                self.engine.chain_id(),
                &next.validators,
                next.start,
                next.after,
                self.app.clone(),
            )?)
        } else {
            None
        };
        tracing::info!(
            "epoch {}: {} validators, this node {}",
            next.start,
            next.validators.len(),
            if mine { "validates" } else { "follows" }
        );
        self.epoch = Some(Epoch {
            start: next.start,
            set: next.set_hash,
            handle,
        });
        Ok(())
    }

    fn refresh_view(&self) {
        let by_key: BTreeMap<PublicKey, &OrgId> = self.orgs.iter().map(|(o, k)| (*k, o)).collect();
        let peers = self
            .network
            .peers()
            .into_iter()
            .filter_map(|p| {
                Some(PeerRow {
                    org: by_key.get(&p.key)?.to_string(),
                    connected: p.connected,
                    blocked: p.blocked,
                })
            })
            .collect();
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = NetView {
            peers,
            listen: Some(self.network.local_addr()),
            stats: Some(self.network.stats()),
            epoch: self.epoch.as_ref().map(|e| e.start),
        };
    }
}

/// Starts the simplex engine of one epoch (first height `start`, after the block `after`) for
/// `validators` on `network`, with `app` as the application: the one engine start-up of both the
/// ledger validator ([`Members::switch`]) and the benchmark's no-op peer ([`run_noop`]), so the
/// two differ only in the replica behind `app`.
#[allow(clippy::too_many_arguments)]
fn start_engine<R: Replica>(
    ctx: commonware_runtime::tokio::Context,
    network: &mut Network,
    params: &EngineParams,
    key: &xinyi_ledger::KeyPair,
    chain_id: &Digest,
    validators: &[(OrgId, PublicKey)],
    start: u64,
    after: Digest,
    app: Application<commonware_runtime::tokio::Context, P2pSender, R>,
) -> anyhow::Result<Handle<()>> {
    let participants: Set<crate::p2p::EngineKey> =
        Set::from_iter_dedup(validators.iter().filter_map(|(_, k)| engine_public_key(k)));
    let signer = engine_key(key).context("the node key is not a valid engine key")?;
    let scheme = Scheme::signer(&namespace(chain_id), participants, signer)
        .context("this node's key is not in the validator set")?;
    let votes = network.register(channel::VOTES, CHANNEL_CAPACITY);
    let certificates = network.register(channel::CERTIFICATES, CHANNEL_CAPACITY);
    let resolver = network.register(channel::RESOLVER, CHANNEL_CAPACITY);
    start_validator(
        ctx,
        params,
        scheme,
        after,
        start,
        format!("xinyi-consensus-e{start}"),
        network.blocker(),
        app,
        NoReport,
        votes,
        certificates,
        resolver,
    )
    .context("starting the consensus engine")
}

/// The engine parameters of a member, from its `[p2p]` section (ledger and no-op alike).
fn engine_params(p2p: &crate::config::P2pSection) -> EngineParams {
    let leader_timeout = Duration::from_millis(p2p.leader_timeout_ms.max(50));
    EngineParams {
        leader_timeout,
        certification_timeout: leader_timeout * 2,
        ..EngineParams::default()
    }
}

/// The network of a member: every organisation of `orgs` may connect, the `[p2p]` peers are
/// dialled (ledger and no-op alike).
async fn start_network(
    key: &xinyi_ledger::KeyPair,
    p2p: &crate::config::P2pSection,
    orgs: &BTreeMap<OrgId, PublicKey>,
    me: &OrgId,
) -> anyhow::Result<Network> {
    Network::start(NetworkConfig {
        key: key.clone(),
        listen: p2p.listen,
        members: orgs.values().copied().collect(),
        dial: dial_list(orgs, &p2p.peers, me),
        max_message_bytes: p2p.max_message_bytes,
        peer_rate_limit_per_sec: p2p.peer_rate_limit_per_sec,
        queue_capacity: CHANNEL_CAPACITY,
    })
    .await
    .context("starting the p2p network")
}

/// `[bench] app = "noop"`: a validator of the benchmark's no-op peer. The network, the engine
/// parameters and the engine start-up are the ledger member's ([`start_network`],
/// [`engine_params`], [`start_engine`]); behind the engine runs a [`NoopReplica`] proposing
/// `payload_bytes` of opaque bytes, on the genesis validator set (one epoch). No ledger is
/// opened; the HTTP API is `/health` only, with the replica's counters.
async fn run_noop(
    ctx: commonware_runtime::tokio::Context,
    cfg: Config,
    p2p: crate::config::P2pSection,
    payload_bytes: usize,
) -> anyhow::Result<()> {
    let genesis = Genesis::from_json(
        &std::fs::read(&cfg.genesis)
            .with_context(|| format!("reading genesis {}", cfg.genesis.display()))?,
    )
    .with_context(|| format!("genesis {}", cfg.genesis.display()))?;
    let chain_id = genesis.chain_id()?;
    let key = crate::dev::read_key(&cfg.key_file)?;
    let org = OrgId::new(&cfg.org)?;
    let orgs: BTreeMap<OrgId, PublicKey> =
        genesis.orgs.iter().map(|o| (o.id.clone(), o.key)).collect();
    let validators: Vec<(OrgId, PublicKey)> = genesis
        .orgs
        .iter()
        .filter(|o| o.power > 0)
        .map(|o| (o.id.clone(), o.key))
        .collect();
    anyhow::ensure!(
        validators.iter().any(|(o, k)| *o == org && *k == key.public()),
        "[bench] app = \"noop\": {org} with this key is not a validator of the genesis (a no-op peer only validates)"
    );
    let mut network = start_network(&key, &p2p, &orgs, &org).await?;
    let (app_tx, app_rx) = network.register(channel::LEDGER, CHANNEL_CAPACITY);
    let replica = Arc::new(Mutex::new(NoopReplica::new(
        org.clone(),
        chain_id,
        payload_bytes,
    )));
    let app = Application::new(ctx.child("app"), replica.clone(), peers_of(&orgs), app_tx);
    let _loops = app.start(app_rx);
    let _engine = start_engine(
        ctx.child("engine"),
        &mut network,
        &engine_params(&p2p),
        &key,
        &chain_id,
        &validators,
        1,
        chain_id,
        app,
    )?;
    tracing::info!(
        "no-op peer: {org} validates with {} others, payloads of {} bytes, p2p on {}",
        validators.len().saturating_sub(1),
        lock(&replica).payload_bytes(),
        network.local_addr()
    );
    let chain_hex = chain_id.to_hex();
    let router = axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let stats = lock(&replica).stats.clone();
            let bytes = lock(&replica).payload_bytes();
            let time_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            async move {
                axum::Json(serde_json::json!({
                    "status": "ok",
                    "app": "noop",
                    "role": "validator",
                    "chain_id": chain_hex,
                    "height": stats.finalized_payloads,
                    "log_size": 0,
                    "time_ms": time_ms,
                    "noop": { "payload_bytes": bytes, "stats": stats },
                }))
            }
        }),
    );
    let served = serve_config(&cfg, router, None).await;
    drop(network);
    served
}

/// The validator set for the next height and where its epoch starts.
struct NextEpoch {
    /// First height under this set.
    start: u64,
    /// The header hash the epoch starts after (the chain id for the first).
    after: Digest,
    /// Validators with power > 0.
    validators: Vec<(OrgId, PublicKey)>,
    /// Hash of the set (as in block headers).
    set_hash: Digest,
}

/// Computes the set in force at the next height (applying membership changes due then, by
/// building an empty block on a speculative copy) and walks back over headers to where that
/// set took effect.
fn next_epoch(engine: &Engine) -> anyhow::Result<NextEpoch> {
    let g = engine.lock();
    let chain = &g.chain;
    let head = chain.height();
    let mut s = chain.speculate();
    let time = chain.state_head().time.saturating_add(1);
    let (block, _) = s
        .build(time, engine.org().clone(), vec![])
        .map_err(|e| anyhow::anyhow!("computing the next validator set: {e}"))?;
    let set = s
        .chain()
        .state()
        .validators()
        .map_err(|e| anyhow::anyhow!("reading the next validator set: {e}"))?;
    let set_hash = block.header.validator_set;
    let mut start = head + 1;
    while start > 1 {
        match g.store.header(start - 1) {
            Ok(Some(h)) if h.validator_set == set_hash => start -= 1,
            _ => break,
        }
    }
    let after = if start == 1 {
        *chain.chain_id()
    } else {
        g.store
            .header(start - 1)
            .ok()
            .flatten()
            .and_then(|h| h.hash().ok())
            .context("reading the header before the epoch")?
    };
    Ok(NextEpoch {
        start,
        after,
        validators: set
            .validators
            .iter()
            .filter(|v| v.power > 0)
            .map(|v| (v.org.clone(), v.key))
            .collect(),
        set_hash,
    })
}
