//! The swarm task and the per-peer I/O tasks of the [`Network`](super::Network).
//!
//! What it is: one task owning the libp2p `Swarm` (admission [`Gate`] + `libp2p-stream`),
//! applying membership and block changes, redialling known addresses with exponential backoff,
//! and accepting inbound `/xinyi/p2p/1` streams; per connected peer one *writer* task (opens our
//! outbound stream, drains the peer's two bounded queues — priority first — batching small
//! frames) and per inbound stream one *reader* task (decodes frames with the size limit, applies
//! the peer's rate limit, routes payloads to channel queues, and blocks the peer on an oversized
//! or malformed frame). What it is not: message semantics (payloads are opaque) or membership
//! policy (pushed in by the node).

use super::codec::{self, FrameError};
use super::gate::Gate;
use super::{
    bump, lock, peer_id, read, write, EngineKey, Link, Member, Membership, NetworkConfig, Outbound,
    P2pError, PeerIn, Shared, MAX_INBOUND_STREAMS_PER_PEER, PROTOCOL,
};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// First redial delay after a failed dial or a lost connection.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Largest redial delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often due redials are checked.
const DIAL_TICK: Duration = Duration::from_millis(100);
/// A dial with no outcome after this long is considered finished.
const DIAL_STALE: Duration = Duration::from_secs(30);
/// Opening our outbound stream on an established connection.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames up to this size are copied into a batch buffer; larger payloads are written directly.
const SMALL_FRAME: usize = 16 * 1024;
/// A batch is written once it holds this many bytes.
const BATCH_BYTES: usize = 64 * 1024;
/// Reader buffer.
const READ_BUFFER: usize = 64 * 1024;
/// Yamux streams per connection (we use one per direction).
const MAX_YAMUX_STREAMS: usize = 16;
/// Connections with nothing open are closed after this long (members stay connected: our
/// streams are long-lived).
const IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Liveness pings on every connection (`/ipfs/ping/1.0.0`); a failed ping closes the connection,
/// so a silently dead TCP connection is replaced by a fresh dial.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A ping not answered within this closes the connection.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for the listener to report its address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    gate: Gate,
    ping: libp2p::ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

fn multiaddr(a: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::from(a.ip()))
        .with(Protocol::Tcp(a.port()))
}

fn tcp_port(a: &Multiaddr) -> Option<u16> {
    a.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

/// Builds the swarm, binds, and spawns the driver. Returns the task and the bound address.
pub(super) async fn spawn(
    cfg: &NetworkConfig,
    shared: Arc<Shared>,
    membership: watch::Receiver<Membership>,
    shutdown: oneshot::Receiver<()>,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr), P2pError> {
    let identity = libp2p::identity::Keypair::ed25519_from_bytes(cfg.key.seed())
        .map_err(|e| P2pError::Key(e.to_string()))?;
    let local_peer = identity.public().to_peer_id();
    if Some(local_peer) != peer_id(&cfg.key.public()) {
        return Err(P2pError::Key(
            "libp2p identity does not match the ledger key".into(),
        ));
    }
    let counters = shared.counters.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            || {
                let mut c = libp2p::yamux::Config::default();
                c.set_max_num_streams(MAX_YAMUX_STREAMS);
                c
            },
        )
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_behaviour(|_| Behaviour {
            gate: Gate::new(counters),
            ping: libp2p::ping::Behaviour::new(
                libp2p::ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(IDLE_TIMEOUT)
                .with_max_negotiating_inbound_streams(MAX_YAMUX_STREAMS)
        })
        .build();

    swarm
        .listen_on(multiaddr(cfg.listen))
        .map_err(|e| P2pError::Listen {
            addr: cfg.listen,
            reason: e.to_string(),
        })?;
    let port = tokio::time::timeout(LISTEN_TIMEOUT, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => return tcp_port(&address),
                SwarmEvent::ListenerClosed { .. } | SwarmEvent::ListenerError { .. } => {
                    return None
                }
                _ => {}
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| P2pError::Listen {
        addr: cfg.listen,
        reason: "listener did not start".into(),
    })?;
    let local_addr = SocketAddr::new(cfg.listen.ip(), port);

    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control
        .accept(StreamProtocol::new(PROTOCOL))
        .map_err(|e| P2pError::Transport(e.to_string()))?;
    tracing::info!(%local_addr, peer = %local_peer, "p2p: listening");

    let driver = Driver {
        swarm,
        shared,
        control,
        members: HashMap::new(),
        dial: HashMap::new(),
        blocked: HashSet::new(),
        cancels: HashMap::new(),
        linked: HashMap::new(),
    };
    let task = tokio::spawn(driver.run(incoming, membership, shutdown));
    Ok((task, local_addr))
}

/// A dial address and its backoff state.
struct DialTarget {
    addr: Multiaddr,
    backoff: Duration,
    next: Instant,
    dialing: Option<Instant>,
}

struct Driver {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    control: libp2p_stream::Control,
    members: HashMap<PeerId, Member>,
    dial: HashMap<PeerId, DialTarget>,
    blocked: HashSet<PeerId>,
    /// Dropping the sender stops the peer's writer task.
    cancels: HashMap<PeerId, oneshot::Sender<()>>,
    /// Engine key of every peer with a link.
    linked: HashMap<PeerId, EngineKey>,
}

impl Driver {
    async fn run(
        mut self,
        incoming: libp2p_stream::IncomingStreams,
        mut membership: watch::Receiver<Membership>,
        mut shutdown: oneshot::Receiver<()>,
    ) {
        let m = membership.borrow_and_update().clone();
        self.apply_membership(m);
        self.sync_blocked();
        // Inbound streams are accepted by their own task so that a busy swarm loop does not
        // delay them (libp2p-stream drops an inbound stream if the acceptor is not ready; the
        // opener then sees no acknowledgement and retries).
        let acceptor = tokio::spawn(accept_task(self.shared.clone(), incoming));
        let mut tick = tokio::time::interval(DIAL_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                changed = membership.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let m = membership.borrow_and_update().clone();
                    self.apply_membership(m);
                }
                _ = self.shared.blocked_changed.notified() => self.sync_blocked(),
                ev = self.swarm.select_next_some() => self.on_event(ev),
                _ = tick.tick() => {
                    self.shared.expire_blocks(Instant::now());
                    self.dial_due();
                }
            }
        }
        acceptor.abort();
        self.shared.closed.store(true, Ordering::Relaxed);
        write(&self.shared.links).clear();
        self.cancels.clear();
        write(&self.shared.routes).clear();
        tracing::info!("p2p: network stopped");
    }

    fn apply_membership(&mut self, m: Membership) {
        let me = self.shared.me.clone();
        let mut members = HashMap::new();
        for key in &m.members {
            let (Some(engine), Some(peer)) = (super::engine_public_key(key), peer_id(key)) else {
                tracing::warn!(key = %key, "p2p: member key is not a valid ed25519 key, ignored");
                continue;
            };
            if engine == me {
                continue;
            }
            members.insert(
                peer,
                Member {
                    ledger: *key,
                    engine,
                },
            );
        }
        // Peers no longer members: disconnect (the gate refuses them from now on).
        let removed: Vec<PeerId> = self
            .members
            .keys()
            .filter(|p| !members.contains_key(p))
            .copied()
            .collect();
        self.swarm
            .behaviour_mut()
            .gate
            .set_members(members.keys().copied().collect());
        *write(&self.shared.members) = members.clone();
        self.members = members;
        for p in removed {
            if self.swarm.is_connected(&p) {
                tracing::info!(peer = %p, "p2p: no longer a member, disconnecting");
                let _ = self.swarm.disconnect_peer_id(p);
            }
            self.drop_link(&p);
        }
        // Dial targets.
        let mut targets = HashMap::new();
        let mut addresses = HashMap::new();
        for (key, addr) in &m.dial {
            let Some(peer) = peer_id(key) else {
                continue;
            };
            let Some(member) = self.members.get(&peer) else {
                if super::engine_public_key(key).as_ref() != Some(&me) {
                    tracing::warn!(key = %key, %addr, "p2p: dial address of a non-member ignored");
                }
                continue;
            };
            addresses.insert(member.engine.clone(), *addr);
            let ma = multiaddr(*addr);
            let t = match self.dial.remove(&peer) {
                Some(t) if t.addr == ma => t,
                _ => DialTarget {
                    addr: ma,
                    backoff: INITIAL_BACKOFF,
                    next: Instant::now(),
                    dialing: None,
                },
            };
            targets.insert(peer, t);
        }
        self.dial = targets;
        *write(&self.shared.addresses) = addresses;
        self.dial_due();
    }

    fn sync_blocked(&mut self) {
        let keys: Vec<EngineKey> = lock(&self.shared.blocked).set.iter().cloned().collect();
        let blocked: HashSet<PeerId> = keys
            .iter()
            .filter_map(|k| peer_id(&super::ledger_public_key(k)))
            .collect();
        let newly: Vec<PeerId> = blocked.difference(&self.blocked).copied().collect();
        self.swarm.behaviour_mut().gate.set_blocked(blocked.clone());
        self.blocked = blocked;
        for p in newly {
            if self.swarm.is_connected(&p) {
                tracing::info!(peer = %p, "p2p: disconnecting blocked peer");
                let _ = self.swarm.disconnect_peer_id(p);
            }
            self.drop_link(&p);
        }
    }

    fn drop_link(&mut self, peer: &PeerId) {
        self.cancels.remove(peer);
        if let Some(key) = self.linked.remove(peer) {
            write(&self.shared.links).remove(&key);
        }
    }

    fn dial_due(&mut self) {
        let now = Instant::now();
        for (peer, t) in self.dial.iter_mut() {
            if let Some(since) = t.dialing {
                if now.saturating_duration_since(since) < DIAL_STALE {
                    continue;
                }
                t.dialing = None;
            }
            if self.blocked.contains(peer) || self.swarm.is_connected(peer) || now < t.next {
                continue;
            }
            let opts = DialOpts::peer_id(*peer)
                .addresses(vec![t.addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    tracing::debug!(%peer, addr = %t.addr, "p2p: dialling");
                    t.dialing = Some(now);
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "p2p: dial not started");
                    t.next = now + t.backoff;
                    t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                if let Some(t) = self.dial.get_mut(&peer_id) {
                    t.dialing = None;
                    t.backoff = INITIAL_BACKOFF;
                }
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, addr = %endpoint.get_remote_address(), "p2p: connected");
                    self.start_link(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                tracing::info!(peer = %peer_id, cause = ?cause.map(|c| c.to_string()), "p2p: disconnected");
                self.drop_link(&peer_id);
                if let Some(t) = self.dial.get_mut(&peer_id) {
                    t.dialing = None;
                    t.next = Instant::now() + INITIAL_BACKOFF;
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let Some(t) = peer_id.and_then(|p| self.dial.get_mut(&p)) {
                    tracing::debug!(peer = ?peer_id, %error, retry_in = ?t.backoff, "p2p: dial failed");
                    t.dialing = None;
                    t.next = Instant::now() + t.backoff;
                    t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                result: Err(libp2p::ping::Failure::Unsupported),
                ..
            })) => {
                // Ping is optional for peers (specs/p2p.md §2).
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(e),
            })) => {
                tracing::info!(%peer, error = %e, "p2p: ping failed, closing connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(remote = %send_back_addr, %error, "p2p: inbound connection failed");
            }
            _ => {}
        }
    }

    fn start_link(&mut self, peer: PeerId) {
        let Some(member) = self.members.get(&peer) else {
            // Admitted by the gate, so a member; membership may have changed since.
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        };
        let cap = self.shared.queue_capacity;
        let (high_tx, high_rx) = mpsc::channel(cap);
        let (low_tx, low_rx) = mpsc::channel(cap);
        let (cancel_tx, cancel_rx) = oneshot::channel();
        write(&self.shared.links).insert(
            member.engine.clone(),
            Link {
                high: high_tx,
                low: low_tx,
            },
        );
        self.cancels.insert(peer, cancel_tx);
        self.linked.insert(peer, member.engine.clone());
        tokio::spawn(writer_task(
            self.shared.clone(),
            self.control.clone(),
            peer,
            member.engine.clone(),
            Queues {
                high: high_rx,
                low: low_rx,
            },
            cancel_rx,
        ));
    }
}

/// Accepts inbound `/xinyi/p2p/1` streams and starts a reader for each admissible one.
async fn accept_task(shared: Arc<Shared>, mut incoming: libp2p_stream::IncomingStreams) {
    let mut next_id: u64 = 0;
    while let Some((peer, stream)) = incoming.next().await {
        let Some(key) = read(&shared.members).get(&peer).map(|m| m.engine.clone()) else {
            tracing::debug!(%peer, "p2p: stream from a non-member dropped");
            continue;
        };
        let state = shared.peer_in(&key);
        if state.blocked.load(Ordering::Relaxed) {
            continue;
        }
        // At most MAX_INBOUND_STREAMS_PER_PEER readers per peer: the newest stream wins (an old
        // one may sit on a connection that died silently).
        let mut streams = lock(&state.streams);
        while streams.len() >= MAX_INBOUND_STREAMS_PER_PEER {
            let (_, oldest) = streams.remove(0);
            tracing::debug!(%peer, "p2p: inbound stream limit, closing the oldest");
            oldest.abort();
        }
        next_id += 1;
        let id = next_id;
        let task = tokio::spawn(reader_task(shared.clone(), key, state.clone(), id, stream));
        streams.push((id, task.abort_handle()));
    }
}

/// The two outbound queues of a peer.
struct Queues {
    high: mpsc::Receiver<Outbound>,
    low: mpsc::Receiver<Outbound>,
}

impl Queues {
    async fn next(&mut self) -> Option<Outbound> {
        tokio::select! {
            biased;
            Some(m) = self.high.recv() => Some(m),
            Some(m) = self.low.recv() => Some(m),
            else => None,
        }
    }

    fn try_next(&mut self) -> Option<Outbound> {
        self.high.try_recv().or_else(|_| self.low.try_recv()).ok()
    }
}

/// Opens our outbound stream to `peer` and writes queued frames until cancelled; reopens the
/// stream if it breaks while the peer is still connected.
async fn writer_task(
    shared: Arc<Shared>,
    mut control: libp2p_stream::Control,
    peer: PeerId,
    key: EngineKey,
    mut queues: Queues,
    mut cancel: oneshot::Receiver<()>,
) {
    let protocol = StreamProtocol::new(PROTOCOL);
    let mut retry = INITIAL_BACKOFF;
    loop {
        let session = async {
            let stream = match tokio::time::timeout(
                OPEN_TIMEOUT,
                control.open_stream(peer, protocol.clone()),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("timeout opening stream".to_string()),
            };
            let mut stream = stream;
            let mut ack = [0u8; 1];
            match tokio::time::timeout(OPEN_TIMEOUT, stream.read_exact(&mut ack)).await {
                Ok(Ok(())) if ack[0] == codec::ACK_ACCEPTED => {}
                Ok(Ok(())) => return Err(format!("unexpected acknowledgement {:#04x}", ack[0])),
                Ok(Err(e)) => return Err(format!("stream not accepted: {e}")),
                Err(_) => return Err("timeout waiting for the acknowledgement".to_string()),
            }
            tracing::debug!(%peer, "p2p: outbound stream open");
            write_frames(&shared, stream, &mut queues).await
        };
        tokio::select! {
            _ = &mut cancel => return,
            r = session => match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(%peer, key = %key, error = %e, "p2p: outbound stream failed, reopening");
                }
            },
        }
        tokio::select! {
            _ = &mut cancel => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(MAX_BACKOFF);
    }
}

/// Writes frames from the queues until they close (`Ok`) or the stream fails (`Err`).
async fn write_frames(
    shared: &Shared,
    mut stream: libp2p::Stream,
    queues: &mut Queues,
) -> Result<(), String> {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES + SMALL_FRAME + codec::HEADER_LEN);
    let mut pending: u64 = 0;
    let fail = |pending: u64, e: std::io::Error| {
        shared
            .counters
            .dropped_out
            .fetch_add(pending, Ordering::Relaxed);
        e.to_string()
    };
    loop {
        let Some(first) = queues.next().await else {
            return Ok(());
        };
        let mut next = Some(first);
        while let Some(m) = next.take() {
            // Lengths were checked against max_message_bytes (<= u32::MAX) on send.
            let len = u32::try_from(m.payload.len()).unwrap_or(u32::MAX);
            let header = codec::encode_header(m.channel, len);
            pending += 1;
            if m.payload.len() <= SMALL_FRAME {
                batch.extend_from_slice(&header);
                batch.extend_from_slice(m.payload.as_ref());
            } else {
                batch.extend_from_slice(&header);
                stream
                    .write_all(&batch)
                    .await
                    .map_err(|e| fail(pending, e))?;
                batch.clear();
                stream
                    .write_all(m.payload.as_ref())
                    .await
                    .map_err(|e| fail(pending, e))?;
            }
            if batch.len() >= BATCH_BYTES {
                stream
                    .write_all(&batch)
                    .await
                    .map_err(|e| fail(pending, e))?;
                batch.clear();
            }
            next = queues.try_next();
        }
        if !batch.is_empty() {
            stream
                .write_all(&batch)
                .await
                .map_err(|e| fail(pending, e))?;
            batch.clear();
        }
        stream.flush().await.map_err(|e| fail(pending, e))?;
        shared
            .counters
            .messages_out
            .fetch_add(pending, Ordering::Relaxed);
        pending = 0;
    }
}

/// Reads frames from one inbound stream of `key` until it ends or misbehaves.
async fn reader_task(
    shared: Arc<Shared>,
    key: EngineKey,
    state: Arc<PeerIn>,
    id: u64,
    mut stream: libp2p::Stream,
) {
    let _slot = StreamSlot(state.clone(), id);
    let acked = async {
        stream.write_all(&[codec::ACK_ACCEPTED]).await?;
        stream.flush().await
    };
    if let Err(e) = tokio::time::timeout(OPEN_TIMEOUT, acked)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        tracing::debug!(peer = %key, error = %e, "p2p: inbound stream not acknowledged");
        return;
    }
    let mut r = futures::io::BufReader::with_capacity(READ_BUFFER, stream);
    loop {
        match codec::read_frame(&mut r, shared.max_message_bytes).await {
            Ok(f) => {
                if state.blocked.load(Ordering::Relaxed) {
                    break;
                }
                if !state.take(shared.rate) {
                    bump(&shared.counters.rate_limited);
                    continue;
                }
                shared.deliver(&key, f.channel, f.payload);
            }
            Err(FrameError::Eof) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(peer = %key, error = %e, "p2p: inbound stream ended");
                break;
            }
            Err(e @ FrameError::Oversized { .. }) => {
                bump(&shared.counters.oversized);
                shared.block(key.clone(), &e.to_string());
                break;
            }
            Err(e @ FrameError::BadTag(_)) => {
                bump(&shared.counters.malformed);
                shared.block(key.clone(), &e.to_string());
                break;
            }
        }
    }
}

/// Frees the peer's inbound stream slot when its reader ends (or is aborted).
struct StreamSlot(Arc<PeerIn>, u64);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        lock(&self.0.streams).retain(|(id, _)| *id != self.1);
    }
}
