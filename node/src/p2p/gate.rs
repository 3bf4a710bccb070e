//! Admission control: a connection-less `NetworkBehaviour` that decides which authenticated
//! peers may hold a connection (specs/p2p.md §4).
//!
//! What it is: the first behaviour of the swarm. It refuses, once the Noise handshake has proven
//! the remote's peer id, every connection whose peer is not a current member or is blocked
//! (counted, logged with the reason), caps connections per peer and unauthenticated inbound
//! handshakes in progress. What it is not: a protocol — it opens no streams (its handler is
//! libp2p's dummy handler); the membership itself is decided by the ledger and pushed in by the
//! swarm task.

use super::Counters;
use libp2p::core::{transport::PortUse, Endpoint, Multiaddr};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::PeerId;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Established connections allowed per peer (a simultaneous dial from both sides makes two).
pub const MAX_CONNECTIONS_PER_PEER: usize = 2;
/// Inbound connections still in the transport handshake (not yet authenticated).
pub const MAX_PENDING_INBOUND: usize = 64;

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The authenticated key is not in the current membership.
    #[error("peer {0} is not a member")]
    NotMember(PeerId),
    /// The peer is blocked (misbehaviour or the engine's `Blocker::block`).
    #[error("peer {0} is blocked")]
    Blocked(PeerId),
    /// The peer already holds the maximum number of connections.
    #[error("peer {0} already has {MAX_CONNECTIONS_PER_PEER} connections")]
    TooManyConnections(PeerId),
    /// Too many unauthenticated inbound handshakes in progress.
    #[error("more than {MAX_PENDING_INBOUND} inbound handshakes in progress")]
    TooManyPending,
}

/// The admission behaviour.
pub struct Gate {
    members: HashSet<PeerId>,
    blocked: HashSet<PeerId>,
    established: HashMap<PeerId, usize>,
    pending_inbound: HashSet<ConnectionId>,
    counters: Arc<Counters>,
    /// Peers whose refusal was logged at info level (later ones go to debug; bounded).
    logged: HashSet<PeerId>,
}

/// Most peers remembered for refusal logging.
const MAX_LOGGED_REFUSALS: usize = 1_024;

impl Gate {
    /// A gate admitting nobody until [`Gate::set_members`].
    pub fn new(counters: Arc<Counters>) -> Gate {
        Gate {
            members: HashSet::new(),
            blocked: HashSet::new(),
            established: HashMap::new(),
            pending_inbound: HashSet::new(),
            counters,
            logged: HashSet::new(),
        }
    }

    /// Replaces the set of admitted peers.
    pub fn set_members(&mut self, members: HashSet<PeerId>) {
        self.members = members;
    }

    /// Replaces the set of blocked peers.
    pub fn set_blocked(&mut self, blocked: HashSet<PeerId>) {
        self.blocked = blocked;
    }

    fn admit(&mut self, peer: PeerId, direction: &'static str) -> Result<(), ConnectionDenied> {
        let refused = if !self.members.contains(&peer) {
            Some(Refused::NotMember(peer))
        } else if self.blocked.contains(&peer) {
            Some(Refused::Blocked(peer))
        } else if self.established.get(&peer).copied().unwrap_or(0) >= MAX_CONNECTIONS_PER_PEER {
            Some(Refused::TooManyConnections(peer))
        } else {
            None
        };
        match refused {
            None => Ok(()),
            Some(r) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                if self.logged.len() < MAX_LOGGED_REFUSALS && self.logged.insert(peer) {
                    tracing::info!(%peer, direction, reason = %r, "p2p: connection refused (further refusals of this peer are logged at debug level)");
                } else {
                    tracing::debug!(%peer, direction, reason = %r, "p2p: connection refused");
                }
                Err(ConnectionDenied::new(r))
            }
        }
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending_inbound.len() >= MAX_PENDING_INBOUND {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%remote_addr, reason = %Refused::TooManyPending, "p2p: connection refused");
            return Err(ConnectionDenied::new(Refused::TooManyPending));
        }
        self.pending_inbound.insert(connection_id);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_inbound.remove(&connection_id);
        self.admit(peer, "inbound")?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        // Do not even dial a peer we would refuse (no counter: nothing remote happened).
        if let Some(peer) = maybe_peer {
            if !self.members.contains(&peer) {
                return Err(ConnectionDenied::new(Refused::NotMember(peer)));
            }
            if self.blocked.contains(&peer) {
                return Err(ConnectionDenied::new(Refused::Blocked(peer)));
            }
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, "outbound")?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                *self.established.entry(e.peer_id).or_insert(0) += 1;
            }
            FromSwarm::ConnectionClosed(e) => {
                if e.remaining_established == 0 {
                    self.established.remove(&e.peer_id);
                } else {
                    self.established.insert(e.peer_id, e.remaining_established);
                }
            }
            FromSwarm::ListenFailure(e) => {
                self.pending_inbound.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
