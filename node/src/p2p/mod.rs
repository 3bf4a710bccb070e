//! The consortium network: libp2p 0.57 (TCP + Noise + Yamux) under Commonware's p2p traits.
//!
//! What it is: a [`Network`] that authenticates peers by their organisation's ed25519 ledger key
//! (the libp2p identity is derived from the same secret), admits only keys of the current
//! membership, keeps connections to known addresses (reconnecting with backoff), and carries
//! numbered channels of opaque messages over one long-lived length-prefixed stream per peer and
//! direction (protocol `/xinyi/p2p/1`, specs/p2p.md). Each channel is a
//! [`P2pSender`]/[`P2pReceiver`] pair implementing `commonware_p2p::{Sender, Receiver}`, so
//! Commonware's simplex engine and the node's ledger channels run over it unchanged; a
//! [`P2pBlocker`] implements `commonware_p2p::Blocker`. Every queue is bounded; message sizes and
//! per-peer message rates are limited; a peer sending an oversized or malformed frame is
//! disconnected and blocked.
//!
//! What it is not: peer discovery (addresses come from configuration), gossip or relaying (a
//! message goes only to directly connected members), reliable delivery (a full queue or a
//! broken connection drops messages, as the Commonware traits allow; consensus retransmits), or
//! a decision on who is a member (the ledger decides; the node calls [`Network::set_members`]).

mod channels;
pub mod codec;
mod gate;
mod swarm;

pub use self::channels::{P2pBlocker, P2pReceiver, P2pSender};
pub use self::gate::{MAX_CONNECTIONS_PER_PEER, MAX_PENDING_INBOUND};

use commonware_codec::DecodeExt as _;
use commonware_cryptography::ed25519;
use commonware_runtime::IoBuf;
use commonware_utils::channel::ring;
use commonware_utils::ordered::Set;
use libp2p::PeerId;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;
use tokio::sync::{mpsc, watch, Notify};

/// The stream protocol name (version 1).
pub const PROTOCOL: &str = "/xinyi/p2p/1";
/// Inbound `/xinyi/p2p/1` streams a peer may hold open at once (one per connection).
pub const MAX_INBOUND_STREAMS_PER_PEER: usize = gate::MAX_CONNECTIONS_PER_PEER;

/// How long a block requested by the consensus engine (`Blocker::block`) lasts. The engine
/// blocks for protocol faults it cannot tell from honest lag — around an epoch switch a
/// member that has not switched yet still sends the old epoch's messages ("epoch mismatch") —
/// so its blocks expire; a peer that keeps misbehaving is blocked again at its next fault.
/// Blocks for transport faults (malformed or oversized frames) last until the process restarts
/// or an operator lifts them.
pub const ENGINE_BLOCK: std::time::Duration = std::time::Duration::from_secs(5);

/// The engine's public key type, used by the Commonware traits.
pub type EngineKey = ed25519::PublicKey;

/// Configuration of a [`Network`].
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Node identity = the organisation's ledger key; the libp2p identity uses the same secret.
    pub key: xinyi_ledger::KeyPair,
    /// TCP listen address (port 0: any free port, see [`Network::local_addr`]).
    pub listen: SocketAddr,
    /// Keys allowed to connect (the ledger's registered organisations; may include our own).
    pub members: Vec<xinyi_ledger::PublicKey>,
    /// Known addresses to dial and keep connected (reconnect with backoff). Entries whose key
    /// is not in `members` are ignored.
    pub dial: Vec<(xinyi_ledger::PublicKey, SocketAddr)>,
    /// Largest payload accepted or sent (bytes, at most `u32::MAX`). A peer announcing a larger
    /// frame is disconnected and blocked; a larger local send is rejected.
    pub max_message_bytes: usize,
    /// Messages per second accepted from one peer (token bucket, burst = one second's worth);
    /// the excess is dropped and counted.
    pub peer_rate_limit_per_sec: u32,
    /// Bound of every internal queue (per-peer outbound queues; control queues).
    pub queue_capacity: usize,
}

/// Errors of the network.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// A configuration value is out of range.
    #[error("invalid p2p configuration: {0}")]
    Config(String),
    /// The node key cannot be used as a libp2p/engine identity.
    #[error("invalid key: {0}")]
    Key(String),
    /// The libp2p transport could not be built.
    #[error("transport: {0}")]
    Transport(String),
    /// Listening failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// Requested address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// `start` was called outside a tokio runtime.
    #[error("Network::start must run inside a tokio runtime")]
    NoRuntime,
    /// The network has shut down.
    #[error("network closed")]
    Closed,
}

/// One member (other than us) as seen by this node, for `/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// The organisation's ledger key.
    pub key: xinyi_ledger::PublicKey,
    /// Configured dial address, if any.
    pub address: Option<SocketAddr>,
    /// At least one connection is established now.
    pub connected: bool,
    /// Blocked: for a transport fault until unblocked or the process restarts, for an
    /// engine-reported fault for [`ENGINE_BLOCK`].
    pub blocked: bool,
}

/// Counters since start (monotonic except `blocked_peers` and `connected_peers`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct P2pStats {
    /// Connections refused at establishment (non-member, blocked, too many).
    pub refused_connections: u64,
    /// Frames with an invalid header (peer blocked).
    pub malformed: u64,
    /// Frames announcing more than `max_message_bytes` (peer blocked).
    pub oversized: u64,
    /// Inbound messages dropped by the per-peer rate limit.
    pub rate_limited: u64,
    /// Peers blocked now.
    pub blocked_peers: u64,
    /// Messages delivered to a channel receiver.
    pub messages_in: u64,
    /// Messages written to a peer's stream.
    pub messages_out: u64,
    /// Inbound messages dropped: receiver queue full, or channel not registered.
    pub dropped_in: u64,
    /// Outbound messages dropped: peer queue full, or the stream broke.
    pub dropped_out: u64,
    /// Members connected now.
    pub connected_peers: u64,
}

/// Atomic counters shared by all tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) refused: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) dropped_in: AtomicU64,
    pub(crate) dropped_out: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A message queued for a peer's writer.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) channel: u64,
    pub(crate) payload: IoBuf,
}

/// The outbound queues of a connected peer (high priority first).
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) high: mpsc::Sender<Outbound>,
    pub(crate) low: mpsc::Sender<Outbound>,
}

/// Inbound state of one peer shared by its reader tasks.
#[derive(Debug)]
pub(crate) struct PeerIn {
    pub(crate) blocked: AtomicBool,
    /// Live reader tasks (id, abort handle), oldest first.
    pub(crate) streams: Mutex<Vec<(u64, tokio::task::AbortHandle)>>,
    bucket: Mutex<Bucket>,
}

/// Token bucket: `rate` tokens per second, at most `rate` stored.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl PeerIn {
    fn new(rate: u32) -> PeerIn {
        PeerIn {
            blocked: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(rate),
                last: Instant::now(),
            }),
        }
    }

    /// Takes one token; `false` if the peer is over its rate.
    pub(crate) fn take(&self, rate: u32) -> bool {
        let mut b = lock(&self.bucket);
        let now = Instant::now();
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Membership as pushed by [`Network::set_members`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Membership {
    pub(crate) members: Vec<xinyi_ledger::PublicKey>,
    pub(crate) dial: Vec<(xinyi_ledger::PublicKey, SocketAddr)>,
}

/// A member other than us, with both key forms.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) ledger: xinyi_ledger::PublicKey,
    pub(crate) engine: EngineKey,
}

/// State shared between the handle, the senders/receivers/blocker and the tasks.
pub(crate) struct Shared {
    pub(crate) me: EngineKey,
    pub(crate) max_message_bytes: usize,
    pub(crate) rate: u32,
    pub(crate) queue_capacity: usize,
    pub(crate) counters: Arc<Counters>,
    /// Outbound queues of connected peers.
    pub(crate) links: RwLock<HashMap<EngineKey, Link>>,
    /// Inbound route of every registered channel.
    pub(crate) routes: RwLock<HashMap<u64, mpsc::Sender<(EngineKey, IoBuf)>>>,
    /// Current members (other than us) by peer id.
    pub(crate) members: RwLock<HashMap<PeerId, Member>>,
    /// Dial addresses by engine key (for `peers()`).
    pub(crate) addresses: RwLock<HashMap<EngineKey, SocketAddr>>,
    /// Inbound state per peer.
    pub(crate) inbound: Mutex<HashMap<EngineKey, Arc<PeerIn>>>,
    /// Blocked peers and subscribers to that set.
    pub(crate) blocked: Mutex<BlockedState>,
    /// Wakes the swarm task after `blocked` changed.
    pub(crate) blocked_changed: Notify,
    pub(crate) closed: AtomicBool,
}

/// The blocked set and its subscribers.
#[derive(Default)]
pub(crate) struct BlockedState {
    pub(crate) set: BTreeSet<EngineKey>,
    /// Members of `set` whose block lifts at the given instant (engine blocks); the others are
    /// blocked until unblocked.
    expires: std::collections::BTreeMap<EngineKey, Instant>,
    subscribers: Vec<ring::Sender<Set<EngineKey>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Inbound state of `pk` (created on first use).
    pub(crate) fn peer_in(&self, pk: &EngineKey) -> Arc<PeerIn> {
        let mut m = lock(&self.inbound);
        let p = m
            .entry(pk.clone())
            .or_insert_with(|| Arc::new(PeerIn::new(self.rate)));
        if lock(&self.blocked).set.contains(pk) {
            p.blocked.store(true, Ordering::Relaxed);
        }
        p.clone()
    }

    /// Blocks `pk` until unblocked: no more deliveries from it, connections closed and refused.
    pub(crate) fn block(&self, pk: EngineKey, reason: &str) {
        self.block_until(pk, reason, None);
    }

    /// Blocks `pk` like [`Shared::block`], but only until `until` (an engine block); a peer
    /// already blocked without an end stays so.
    pub(crate) fn block_until(&self, pk: EngineKey, reason: &str, until: Option<Instant>) {
        if pk == self.me {
            return;
        }
        if let Some(p) = lock(&self.inbound).get(&pk) {
            p.blocked.store(true, Ordering::Relaxed);
        }
        let mut b = lock(&self.blocked);
        let newly = b.set.insert(pk.clone());
        match until {
            Some(t) if newly || b.expires.contains_key(&pk) => {
                b.expires.insert(pk.clone(), t);
            }
            Some(_) => {}
            None => {
                b.expires.remove(&pk);
            }
        }
        if newly {
            match until {
                Some(_) => {
                    tracing::warn!(peer = %pk, reason, secs = ENGINE_BLOCK.as_secs(), "p2p: peer blocked for a while")
                }
                None => tracing::warn!(peer = %pk, reason, "p2p: peer blocked"),
            }
            b.publish();
        }
        drop(b);
        self.blocked_changed.notify_one();
    }

    /// Lifts the blocks whose time is up (called from the swarm task's tick).
    pub(crate) fn expire_blocks(&self, now: Instant) {
        let due: Vec<EngineKey> = {
            let b = lock(&self.blocked);
            b.expires
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(k, _)| k.clone())
                .collect()
        };
        for pk in due {
            self.unblock(&pk);
        }
    }

    /// Unblocks `pk`.
    pub(crate) fn unblock(&self, pk: &EngineKey) {
        if let Some(p) = lock(&self.inbound).get(pk) {
            p.blocked.store(false, Ordering::Relaxed);
        }
        let mut b = lock(&self.blocked);
        b.expires.remove(pk);
        if b.set.remove(pk) {
            tracing::info!(peer = %pk, "p2p: peer unblocked");
            b.publish();
        }
        drop(b);
        self.blocked_changed.notify_one();
    }

    /// Delivers an inbound message to its channel (drops if full or unknown).
    pub(crate) fn deliver(&self, from: &EngineKey, channel: u64, payload: IoBuf) {
        let routes = read(&self.routes);
        match routes.get(&channel) {
            Some(tx) => match tx.try_send((from.clone(), payload)) {
                Ok(()) => bump(&self.counters.messages_in),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    bump(&self.counters.dropped_in);
                    tracing::debug!(peer = %from, channel, "p2p: receiver queue full, message dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    bump(&self.counters.dropped_in);
                    tracing::debug!(peer = %from, channel, "p2p: receiver gone, message dropped");
                }
            },
            None => {
                bump(&self.counters.dropped_in);
                tracing::debug!(peer = %from, channel, "p2p: unregistered channel, message dropped");
            }
        }
    }
}

impl BlockedState {
    fn publish(&mut self) {
        let set = Set::from_iter_dedup(self.set.iter().cloned());
        self.subscribers.retain(|s| !s.is_closed());
        for s in &self.subscribers {
            s.send_lossy(set.clone());
        }
    }

    pub(crate) fn subscribe(&mut self) -> ring::Receiver<Set<EngineKey>> {
        let (tx, rx) = ring::channel(NonZeroUsize::MIN);
        tx.send_lossy(Set::from_iter_dedup(self.set.iter().cloned()));
        self.subscribers.retain(|s| !s.is_closed());
        self.subscribers.push(tx);
        rx
    }
}

/// Ledger key → engine key (`None` if the bytes are not a valid ed25519 point).
pub fn engine_public_key(key: &xinyi_ledger::PublicKey) -> Option<EngineKey> {
    EngineKey::decode(IoBuf::copy_from_slice(&key.0)).ok()
}

/// Engine key → ledger key.
pub fn ledger_public_key(key: &EngineKey) -> xinyi_ledger::PublicKey {
    let mut b = [0u8; 32];
    b.copy_from_slice(key.as_ref());
    xinyi_ledger::PublicKey(b)
}

/// Ledger key → libp2p peer id (`None` if not a valid ed25519 point).
pub fn peer_id(key: &xinyi_ledger::PublicKey) -> Option<PeerId> {
    let k = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
        k,
    )))
}

/// A running network. Dropping it stops the swarm task (connections close, the port is freed).
pub struct Network {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    membership: watch::Sender<Membership>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("me", &self.shared.me)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Binds `cfg.listen`, starts the swarm task and dials `cfg.dial`. Must be called inside a
    /// tokio runtime. Channels are registered afterwards with [`Network::register`]; messages
    /// arriving on a channel before it is registered are dropped (counted in `dropped_in`).
    pub async fn start(cfg: NetworkConfig) -> Result<Network, P2pError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(P2pError::NoRuntime);
        }
        if cfg.max_message_bytes == 0 || u32::try_from(cfg.max_message_bytes).is_err() {
            return Err(P2pError::Config(format!(
                "max_message_bytes must be in 1..={}",
                u32::MAX
            )));
        }
        if cfg.peer_rate_limit_per_sec == 0 {
            return Err(P2pError::Config(
                "peer_rate_limit_per_sec must be > 0".into(),
            ));
        }
        if cfg.queue_capacity == 0 {
            return Err(P2pError::Config("queue_capacity must be > 0".into()));
        }
        let me = engine_public_key(&cfg.key.public())
            .ok_or_else(|| P2pError::Key("node key is not a valid ed25519 key".into()))?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            me,
            max_message_bytes: cfg.max_message_bytes,
            rate: cfg.peer_rate_limit_per_sec,
            queue_capacity: cfg.queue_capacity,
            counters,
            links: RwLock::new(HashMap::new()),
            routes: RwLock::new(HashMap::new()),
            members: RwLock::new(HashMap::new()),
            addresses: RwLock::new(HashMap::new()),
            inbound: Mutex::new(HashMap::new()),
            blocked: Mutex::new(BlockedState::default()),
            blocked_changed: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let membership = Membership {
            members: cfg.members.clone(),
            dial: cfg.dial.clone(),
        };
        let (membership_tx, membership_rx) = watch::channel(membership);
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let (task, local_addr) =
            swarm::spawn(&cfg, shared.clone(), membership_rx, shutdown_rx).await?;
        Ok(Network {
            shared,
            local_addr,
            membership: membership_tx,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The bound listen address (the configured IP with the actual port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Our engine key.
    pub fn public_key(&self) -> EngineKey {
        self.shared.me.clone()
    }

    /// Registers channel `channel` (after [`Network::start`]; any time). `capacity` bounds the
    /// receiver's queue (0 is treated as 1); when it is full, arrivals are dropped. Registering
    /// an id again replaces the previous route: the old receiver ends.
    pub fn register(&mut self, channel: u64, capacity: usize) -> (P2pSender, P2pReceiver) {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        let (tx, rx) = mpsc::channel(cap.get());
        write(&self.shared.routes).insert(channel, tx);
        (
            P2pSender::new(self.shared.clone(), channel),
            P2pReceiver::new(rx, cap),
        )
    }

    /// The blocker (shared with every clone).
    pub fn blocker(&self) -> P2pBlocker {
        P2pBlocker::new(self.shared.clone())
    }

    /// Replaces the membership: keys no longer present are disconnected (and refused from now
    /// on); new or changed dial addresses are dialled. Never blocks.
    pub fn set_members(
        &self,
        members: Vec<xinyi_ledger::PublicKey>,
        dial: Vec<(xinyi_ledger::PublicKey, SocketAddr)>,
    ) {
        self.membership.send_replace(Membership { members, dial });
    }

    /// Lifts a block (operator action; transport-fault blocks otherwise last until the process
    /// restarts, engine blocks for [`ENGINE_BLOCK`]).
    pub fn unblock(&self, key: &xinyi_ledger::PublicKey) {
        if let Some(pk) = engine_public_key(key) {
            self.shared.unblock(&pk);
        }
    }

    /// One row per member key other than ours, sorted by key.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let links = read(&self.shared.links);
        let addrs = read(&self.shared.addresses);
        let blocked = lock(&self.shared.blocked);
        let mut rows: Vec<PeerStatus> = read(&self.shared.members)
            .values()
            .map(|m| PeerStatus {
                key: m.ledger,
                address: addrs.get(&m.engine).copied(),
                connected: links.contains_key(&m.engine),
                blocked: blocked.set.contains(&m.engine),
            })
            .collect();
        rows.sort_by_key(|r| r.key.0);
        rows
    }

    /// Counters.
    pub fn stats(&self) -> P2pStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        P2pStats {
            refused_connections: get(&c.refused),
            malformed: get(&c.malformed),
            oversized: get(&c.oversized),
            rate_limited: get(&c.rate_limited),
            blocked_peers: lock(&self.shared.blocked).set.len() as u64,
            messages_in: get(&c.messages_in),
            messages_out: get(&c.messages_out),
            dropped_in: get(&c.dropped_in),
            dropped_out: get(&c.dropped_out),
            connected_peers: read(&self.shared.links).len() as u64,
        }
    }

    /// Stops the swarm task and waits for it (connections closed, listener released).
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    fn stop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop();
    }
}
