//! Commonware's `Sender`/`Receiver`/`Blocker` traits over the [`Network`](super::Network).
//!
//! What it is: the engine-facing endpoints of one channel. A send looks up the recipients'
//! outbound queues (connected members only) and enqueues the payload with `try_send` — never
//! waiting — sharing one reference-counted buffer between recipients. A receive takes from the
//! channel's bounded queue. What it is not: a transport — bytes are written and read by the
//! swarm's per-peer tasks (`swarm.rs`); and no outbound rate limit is applied (`check` never
//! returns `Err`), the limit is enforced by receivers.

use super::{bump, read, EngineKey, Link, Outbound, P2pError, Shared};
use commonware_actor::{Feedback, Unreliable};
use commonware_p2p::{
    BlockedSubscription, Blocker, CheckedSender, LimitedSender, Message, Receiver, Recipients,
};
use commonware_runtime::{IoBuf, IoBufs};
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Sending half of one channel (`commonware_p2p::Sender`). Cheap to clone.
#[derive(Clone)]
pub struct P2pSender {
    shared: Arc<Shared>,
    channel: u64,
}

impl std::fmt::Debug for P2pSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pSender")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl P2pSender {
    pub(crate) fn new(shared: Arc<Shared>, channel: u64) -> P2pSender {
        P2pSender { shared, channel }
    }

    /// The channel id.
    pub fn channel(&self) -> u64 {
        self.channel
    }
}

/// A send with its recipients resolved to connected peers' queues.
pub struct P2pChecked<'a> {
    sender: &'a mut P2pSender,
    to: Vec<(EngineKey, Link)>,
}

impl LimitedSender for P2pSender {
    type PublicKey = EngineKey;
    type Checked<'a> = P2pChecked<'a>;

    fn check(&mut self, recipients: Recipients<EngineKey>) -> Result<P2pChecked<'_>, SystemTime> {
        let links = read(&self.shared.links);
        let me = &self.shared.me;
        let mut to: Vec<(EngineKey, Link)> = match recipients {
            Recipients::All => links
                .iter()
                .filter(|(k, _)| *k != me)
                .map(|(k, l)| (k.clone(), l.clone()))
                .collect(),
            Recipients::Some(keys) => keys
                .into_iter()
                .filter_map(|k| links.get(&k).map(|l| (k, l.clone())))
                .collect(),
            Recipients::One(k) => links
                .get(&k)
                .map(|l| vec![(k, l.clone())])
                .unwrap_or_default(),
        };
        drop(links);
        to.sort_by(|a, b| a.0.cmp(&b.0));
        to.dedup_by(|a, b| a.0 == b.0);
        Ok(P2pChecked { sender: self, to })
    }
}

impl CheckedSender for P2pChecked<'_> {
    type PublicKey = EngineKey;

    fn recipients(&self) -> Vec<EngineKey> {
        self.to.iter().map(|(k, _)| k.clone()).collect()
    }

    /// Enqueues for every recipient. `Ok`: all queued; `Backoff`: some queues were full and the
    /// message was dropped for those; `Rejected`: every queue was full, or the message exceeds
    /// `max_message_bytes`; `Closed`: the network has shut down.
    fn send(self, message: impl Into<IoBufs> + Send, priority: bool) -> Unreliable<Feedback> {
        let shared = &self.sender.shared;
        if shared.closed.load(Ordering::Relaxed) {
            return Unreliable::Outcome(Feedback::Closed);
        }
        let payload: IoBuf = message.into().coalesce();
        if payload.len() > shared.max_message_bytes {
            tracing::warn!(
                channel = self.sender.channel,
                len = payload.len(),
                max = shared.max_message_bytes,
                "p2p: outbound message over the size limit rejected"
            );
            bump(&shared.counters.dropped_out);
            return Unreliable::Rejected;
        }
        if self.to.is_empty() {
            return Unreliable::Outcome(Feedback::Ok);
        }
        let mut full = 0usize;
        for (key, link) in &self.to {
            let q = if priority { &link.high } else { &link.low };
            let item = Outbound {
                channel: self.sender.channel,
                payload: payload.clone(),
            };
            match q.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    full += 1;
                    bump(&shared.counters.dropped_out);
                    tracing::debug!(peer = %key, channel = self.sender.channel, "p2p: peer queue full, message dropped");
                }
                // The peer disconnected after `check`: dropped like any message to an offline peer.
                Err(mpsc::error::TrySendError::Closed(_)) => bump(&shared.counters.dropped_out),
            }
        }
        if full == 0 {
            Unreliable::Outcome(Feedback::Ok)
        } else if full < self.to.len() {
            Unreliable::Outcome(Feedback::Backoff)
        } else {
            Unreliable::Rejected
        }
    }
}

/// Receiving half of one channel (`commonware_p2p::Receiver`).
pub struct P2pReceiver {
    rx: mpsc::Receiver<(EngineKey, IoBuf)>,
    capacity: NonZeroUsize,
}

impl std::fmt::Debug for P2pReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pReceiver")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl P2pReceiver {
    pub(crate) fn new(rx: mpsc::Receiver<(EngineKey, IoBuf)>, capacity: NonZeroUsize) -> Self {
        P2pReceiver { rx, capacity }
    }
}

impl Receiver for P2pReceiver {
    type Error = P2pError;
    type PublicKey = EngineKey;

    async fn recv(&mut self) -> Result<Message<EngineKey>, P2pError> {
        self.rx.recv().await.ok_or(P2pError::Closed)
    }

    fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }
}

/// `commonware_p2p::Blocker`: blocking disconnects the peer and refuses it for
/// [`ENGINE_BLOCK`](super::ENGINE_BLOCK).
#[derive(Clone)]
pub struct P2pBlocker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for P2pBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pBlocker").finish_non_exhaustive()
    }
}

impl P2pBlocker {
    pub(crate) fn new(shared: Arc<Shared>) -> P2pBlocker {
        P2pBlocker { shared }
    }
}

impl Blocker for P2pBlocker {
    type PublicKey = EngineKey;

    fn block(&mut self, peer: EngineKey) -> Feedback {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Feedback::Closed;
        }
        self.shared.block_until(
            peer,
            "blocked by the engine",
            Some(std::time::Instant::now() + super::ENGINE_BLOCK),
        );
        Feedback::Ok
    }

    fn blocked(&mut self) -> BlockedSubscription<EngineKey> {
        super::lock(&self.shared.blocked).subscribe()
    }
}
