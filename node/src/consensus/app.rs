//! The engine-facing side: `Automaton`, `CertifiableAutomaton`, `Relay` and `Reporter` over a
//! shared [`Replica`] (the ledger's [`Core`]; the bench peer's no-op replica,
//! [`NoopReplica`](super::noop::NoopReplica)), the application channel's receive and tick loops,
//! and the engine start-up.

use super::core::{Core, To, Verdict};
use super::{engine_digest, ledger_digest, Activity, EngineDigest, EnginePublicKey, Scheme};
use commonware_actor::Feedback;
use commonware_consensus::simplex::{
    config::{self, ForwardPolicy, SkipBudget, SkipPolicy},
    elector::RoundRobin,
    types::Context,
    Engine, Plan,
};
use commonware_consensus::types::{Epoch, ViewDelta};
use commonware_consensus::{Automaton, CertifiableAutomaton, Relay, Reporter, Reporters};
use commonware_cryptography::Sha256;
use commonware_p2p::{Blocker, Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{buffer::paged::CacheRef, Clock, Handle, Metrics, Spawner, Storage};
use commonware_utils::channel::oneshot;
use std::collections::BTreeMap;
use std::num::{NonZeroU16, NonZeroUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};
use xinyi_ledger::{Digest, OrgId, TimeMs};

/// How often, at the latest, a pending propose/verify re-checks for missing data (it is woken
/// earlier when a ledger message or pooled entries arrive).
const POLL: Duration = Duration::from_millis(20);
/// How often the ledger channel's periodic work runs (re-requests, vote re-sends).
const TICK: Duration = Duration::from_millis(250);

/// Organisations ↔ engine keys.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    by_org: BTreeMap<OrgId, EnginePublicKey>,
    by_key: BTreeMap<EnginePublicKey, OrgId>,
}

impl Peers {
    /// From (organisation, engine key) pairs.
    pub fn new(pairs: impl IntoIterator<Item = (OrgId, EnginePublicKey)>) -> Peers {
        let mut p = Peers::default();
        for (o, k) in pairs {
            p.by_key.insert(k.clone(), o.clone());
            p.by_org.insert(o, k);
        }
        p
    }
    /// The organisation of an engine key.
    pub fn org(&self, k: &EnginePublicKey) -> Option<&OrgId> {
        self.by_key.get(k)
    }
    /// The engine key of an organisation.
    pub fn key(&self, o: &OrgId) -> Option<&EnginePublicKey> {
        self.by_org.get(o)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms(c: &impl Clock) -> TimeMs {
    c.current()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The replica state the engine-facing side drives: synchronous, no I/O (every output is a
/// message in its outbox). [`Core`] is the ledger's: blocks executed with every ledger rule,
/// commit votes and certificates. [`NoopReplica`](super::noop::NoopReplica) orders opaque
/// payloads through the same engine and transport without ledger work (the benchmark's peer,
/// `xinyi-bench cluster --app noop`).
pub trait Replica: Send + 'static {
    /// A message on the application channel (decoded; encoded outside the replica's lock).
    type Message: Send;
    /// Proposer: a payload on `parent` at `now`, or `None` while it cannot (parent missing,
    /// nothing to propose unless `allow_empty`).
    fn propose(&mut self, parent: Digest, now: TimeMs, allow_empty: bool) -> Option<Digest>;
    /// Validator: may the payload `d`, proposed by `leader` on `parent`, be voted for?
    fn verify(&mut self, parent: Digest, leader: &OrgId, d: Digest, now: TimeMs) -> Verdict;
    /// Relay: the message carrying the body of `d`, if known.
    fn body(&self, d: &Digest) -> Option<Self::Message>;
    /// The engine finalized `d` (and so every ancestor of it).
    fn on_finalized(&mut self, d: Digest);
    /// A decoded message from peer `from`.
    fn on_message(&mut self, from: &OrgId, m: Self::Message);
    /// A message from a peer did not decode.
    fn refused(&mut self);
    /// Periodic work (re-requests, re-sends), every `TICK`.
    fn tick(&mut self);
    /// Takes the messages to send.
    fn take_outbox(&mut self) -> Vec<(To, Self::Message)>;
    /// Wire bytes of a message (`None`: not encodable, dropped).
    fn encode(m: &Self::Message) -> Option<Vec<u8>>;
    /// A message from wire bytes (`None`: malformed).
    fn decode(bytes: &[u8]) -> Option<Self::Message>;
}

/// The application the engine drives: one per validator process.
pub struct Application<E, S, R = Core> {
    empty_block_after: Duration,
    /// Raised when something a waiting propose or verify may need arrives (a ledger message,
    /// pooled entries): they re-check at once instead of at their next poll.
    wake: Arc<tokio::sync::Notify>,
    core: Arc<Mutex<R>>,
    ctx: Arc<Mutex<E>>,
    net: Arc<Mutex<S>>,
    peers: Arc<std::sync::RwLock<Arc<Peers>>>,
}

impl<E, S, R> Clone for Application<E, S, R> {
    fn clone(&self) -> Self {
        Application {
            empty_block_after: self.empty_block_after,
            wake: self.wake.clone(),
            core: self.core.clone(),
            ctx: self.ctx.clone(),
            net: self.net.clone(),
            peers: self.peers.clone(),
        }
    }
}

impl<E, S, R> Application<E, S, R>
where
    E: Spawner + Clock,
    S: Sender<PublicKey = EnginePublicKey>,
    R: Replica,
{
    /// Wraps `core`; `sender` is the application (ledger) channel.
    pub fn new(ctx: E, core: Arc<Mutex<R>>, peers: Peers, sender: S) -> Self {
        Application {
            empty_block_after: Duration::ZERO,
            wake: Arc::default(),
            core,
            ctx: Arc::new(Mutex::new(ctx)),
            net: Arc::new(Mutex::new(sender)),
            peers: Arc::new(std::sync::RwLock::new(Arc::new(peers))),
        }
    }

    /// A leader with nothing to propose waits up to `d` for entries before proposing an empty
    /// block (default zero: always propose at once). Keep it well under the leader timeout.
    pub fn with_empty_block_after(mut self, d: Duration) -> Self {
        self.empty_block_after = d;
        self
    }

    /// Uses `wake` (e.g. the mempool's arrival signal) as the signal that re-checks a waiting
    /// propose or verify; ledger messages raise it too.
    pub fn with_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Waits until [`wake`](Self::with_wake) is raised after `armed` was created, or `POLL`.
    async fn wait(ctx: &E, armed: tokio::sync::futures::Notified<'_>) {
        let sleep = ctx.sleep(POLL);
        futures::pin_mut!(armed, sleep);
        futures::future::select(armed, sleep).await;
    }

    /// Replaces the organisation ↔ key map (membership changed on the ledger).
    pub fn set_peers(&self, peers: Peers) {
        *self.peers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(peers);
    }

    fn peers(&self) -> Arc<Peers> {
        self.peers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The shared core (for tests and status).
    pub fn core(&self) -> Arc<Mutex<R>> {
        self.core.clone()
    }

    fn spawn<F, Fut>(&self, label: &'static str, f: F) -> Handle<()>
    where
        F: FnOnce(E) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let ctx = lock(&self.ctx).child(label);
        ctx.spawn(f)
    }

    /// Sends what the core queued.
    fn flush(&self) {
        let out = lock(&self.core).take_outbox();
        if out.is_empty() {
            return;
        }
        let peers = self.peers();
        let mut net = lock(&self.net);
        for (to, w) in out {
            let Some(bytes) = R::encode(&w) else { continue };
            let r = match to {
                To::All => Recipients::All,
                To::One(o) => match peers.key(&o) {
                    Some(k) => Recipients::One(k.clone()),
                    None => continue,
                },
            };
            let _ = net.send(r, bytes, false);
        }
    }

    fn send_block(&self, d: &EngineDigest, r: Recipients<EnginePublicKey>) {
        let body = lock(&self.core).body(&ledger_digest(d));
        if let Some(bytes) = body.as_ref().and_then(R::encode) {
            let _ = lock(&self.net).send(r, bytes, false);
        }
    }

    /// Starts the application channel's receive loop and periodic work.
    pub fn start<Rx>(&self, mut receiver: Rx) -> Vec<Handle<()>>
    where
        Rx: Receiver<PublicKey = EnginePublicKey>,
    {
        let app = self.clone();
        let rx = self.spawn("ledger_rx", move |_| async move {
            while let Ok((from, buf)) = receiver.recv().await {
                let Some(org) = app.peers().org(&from).cloned() else {
                    continue;
                };
                let m = R::decode(buf.as_ref());
                {
                    let mut core = lock(&app.core);
                    match m {
                        Some(m) => core.on_message(&org, m),
                        None => core.refused(),
                    }
                }
                app.flush();
                app.wake.notify_waiters();
            }
        });
        let app = self.clone();
        let tick = self.spawn("ledger_tick", move |ctx| async move {
            loop {
                ctx.sleep(TICK).await;
                lock(&app.core).tick();
                app.flush();
            }
        });
        vec![rx, tick]
    }
}

impl<E, S, R> Automaton for Application<E, S, R>
where
    E: Spawner + Clock,
    S: Sender<PublicKey = EnginePublicKey>,
    R: Replica,
{
    type Context = Context<EngineDigest, EnginePublicKey>;
    type Digest = EngineDigest;

    async fn propose(&mut self, context: Self::Context) -> oneshot::Receiver<EngineDigest> {
        let (tx, rx) = oneshot::channel();
        let app = self.clone();
        let parent = ledger_digest(&context.parent.1);
        let idle = self.empty_block_after;
        self.spawn("propose", move |ctx| async move {
            let start = ctx.current();
            loop {
                if tx.is_closed() {
                    return;
                }
                let allow_empty = ctx
                    .current()
                    .duration_since(start)
                    .map_or(true, |waited| waited >= idle);
                // Armed before the check, so an arrival during it is not missed.
                let armed = app.wake.notified();
                let d = lock(&app.core).propose(parent, now_ms(&ctx), allow_empty);
                app.flush();
                if let Some(d) = d {
                    let _ = tx.send(engine_digest(&d));
                    return;
                }
                Self::wait(&ctx, armed).await;
            }
        });
        rx
    }

    async fn verify(
        &mut self,
        context: Self::Context,
        payload: EngineDigest,
    ) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let app = self.clone();
        let parent = ledger_digest(&context.parent.1);
        let leader = self.peers().org(&context.leader).cloned();
        let d = ledger_digest(&payload);
        self.spawn("verify", move |ctx| async move {
            let Some(leader) = leader else {
                let _ = tx.send(false);
                return;
            };
            loop {
                if tx.is_closed() {
                    return;
                }
                let armed = app.wake.notified();
                let v = lock(&app.core).verify(parent, &leader, d, now_ms(&ctx));
                app.flush();
                match v {
                    Verdict::Valid => {
                        let _ = tx.send(true);
                        return;
                    }
                    Verdict::Invalid => {
                        let _ = tx.send(false);
                        return;
                    }
                    Verdict::Pending => Self::wait(&ctx, armed).await,
                }
            }
        });
        rx
    }
}

impl<E, S, R> CertifiableAutomaton for Application<E, S, R>
where
    E: Spawner + Clock,
    S: Sender<PublicKey = EnginePublicKey>,
    R: Replica,
{
}

impl<E, S, R> Relay for Application<E, S, R>
where
    E: Spawner + Clock,
    S: Sender<PublicKey = EnginePublicKey>,
    R: Replica,
{
    type Digest = EngineDigest;
    type PublicKey = EnginePublicKey;
    type Plan = Plan<EnginePublicKey>;

    fn broadcast(&mut self, payload: EngineDigest, plan: Self::Plan) -> Feedback {
        match plan {
            Plan::Prepare { .. } | Plan::Propose { .. } => {
                self.send_block(&payload, Recipients::All)
            }
            Plan::Forward { recipients, .. } => self.send_block(&payload, recipients),
        }
        Feedback::Ok
    }
}

impl<E, S, R> Reporter for Application<E, S, R>
where
    E: Spawner + Clock,
    S: Sender<PublicKey = EnginePublicKey>,
    R: Replica,
{
    type Activity = Activity;

    fn report(&mut self, activity: Activity) -> Feedback {
        if let Activity::Finalization(f) = &activity {
            lock(&self.core).on_finalized(ledger_digest(&f.proposal.payload));
            self.flush();
        }
        Feedback::Ok
    }
}

/// Engine timing and storage parameters.
#[derive(Debug, Clone)]
pub struct EngineParams {
    /// Wait for a leader's proposal.
    pub leader_timeout: Duration,
    /// Wait for certification after notarization.
    pub certification_timeout: Duration,
    /// Re-broadcast of timeout votes.
    pub timeout_retry: Duration,
    /// Wait for a fetch response.
    pub fetch_timeout: Duration,
    /// Views kept after finalization.
    pub view_retention: u64,
    /// Engine mailbox size.
    pub mailbox_size: usize,
}

impl Default for EngineParams {
    fn default() -> Self {
        EngineParams {
            leader_timeout: Duration::from_secs(1),
            certification_timeout: Duration::from_secs(2),
            timeout_retry: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(1),
            view_retention: 10,
            mailbox_size: 1024,
        }
    }
}

type Channel<S, R> = (S, R);

/// Starts the simplex engine for one validator with `app` as automaton, relay and (together
/// with `extra`, e.g. a test observer) reporter, for `epoch` (one per validator set) starting
/// after the block `genesis` (the chain id for the first epoch). The engine's WAL lives in
/// storage partition `partition`; restarting with the same partition replays it.
#[allow(clippy::too_many_arguments)]
pub fn start_validator<E, A, S, R, B, X, S1, R1, S2, R2, S3, R3>(
    ctx: E,
    params: &EngineParams,
    scheme: Scheme,
    genesis: Digest,
    epoch: u64,
    partition: String,
    blocker: B,
    app: Application<A, S, R>,
    extra: X,
    votes: Channel<S1, R1>,
    certificates: Channel<S2, R2>,
    resolver: Channel<S3, R3>,
) -> Option<Handle<()>>
where
    E: Clock + rand_core::CryptoRng + Spawner + Storage + Metrics,
    A: Spawner + Clock,
    S: Sender<PublicKey = EnginePublicKey>,
    R: Replica,
    B: Blocker<PublicKey = EnginePublicKey>,
    X: Reporter<Activity = Activity>,
    S1: Sender<PublicKey = EnginePublicKey>,
    R1: Receiver<PublicKey = EnginePublicKey>,
    S2: Sender<PublicKey = EnginePublicKey>,
    R2: Receiver<PublicKey = EnginePublicKey>,
    S3: Sender<PublicKey = EnginePublicKey>,
    R3: Receiver<PublicKey = EnginePublicKey>,
{
    if params.leader_timeout.is_zero()
        || params.certification_timeout <= params.leader_timeout
        || params.timeout_retry.is_zero()
        || params.view_retention == 0
    {
        return None;
    }
    let cfg = config::Config {
        scheme,
        elector: RoundRobin::<Sha256>::default(),
        blocker,
        automaton: app.clone(),
        relay: app.clone(),
        reporter: Reporters::from((app, extra)),
        strategy: Sequential,
        partition,
        mailbox_size: NonZeroUsize::new(params.mailbox_size)?,
        epoch: Epoch::new(epoch),
        floor: config::Floor::Genesis(engine_digest(&genesis)),
        leader_timeout: params.leader_timeout,
        certification_timeout: params.certification_timeout,
        timeout_retry: params.timeout_retry,
        fetch_timeout: commonware_utils::NonZeroDuration::new(params.fetch_timeout)?,
        fetch_retry_delay: Duration::from_millis(100),
        view_retention: ViewDelta::new(params.view_retention),
        skip: SkipPolicy::Enabled {
            // The engine requires skip > certification timeout and > timeout retry.
            timeout: (params.leader_timeout * 8)
                .max(params.certification_timeout * 2)
                .max(params.timeout_retry * 2),
            budget: SkipBudget::Participants,
        },
        replay_buffer: NonZeroUsize::new(1024 * 1024)?,
        write_buffer: NonZeroUsize::new(1024 * 1024)?,
        page_cache: CacheRef::new(NonZeroU16::new(1024)?, NonZeroUsize::new(10)?),
        forward: ForwardPolicy::Disabled,
        track_historical_votes: false,
    };
    Some(Engine::new(ctx, cfg).start(votes, certificates, resolver))
}
