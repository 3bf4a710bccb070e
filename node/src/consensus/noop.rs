//! The benchmark's no-op replica: the peer `xinyi-bench cluster --app noop` runs through the same
//! Commonware engine, the same libp2p transport and the same [`Application`](super::Application)
//! glue as the ledger, so that the ledger's committed rate can be read as a fraction of what
//! ordering alone reaches on the same machine.
//!
//! What it is: a [`Replica`] whose proposer makes a payload of `payload_bytes` opaque bytes
//! (deterministic filler) on the engine's parent, whose relay sends that body on the application
//! channel, whose validator votes yes on any well-formed payload it holds the body of (proposed
//! by the view's leader on the view's parent), and which counts finalized payloads and their
//! bytes. Bodies it lacks are asked for (`Want`), as the ledger does. Synchronous and sans-IO:
//! every output is a message in its outbox.
//!
//! What it is not: a ledger. No entries, no execution, no state, no sled, no commit votes or
//! certificates, no signatures beyond the engine's own; nothing it orders is ever applied or
//! stored. It is not used outside benchmarks (`[bench] app = "noop"` in a node's config).
//!
//! Wire format (its own, on the application channel; one tag byte):
//!
//! | tag | message | fields |
//! |---|---|---|
//! | 0 | `Payload` | parent (32) ‖ BE64 seq ‖ u8 proposer length ‖ proposer id ‖ body |
//! | 1 | `Want` | digest (32) — ask for a payload's body |
//!
//! The payload digest (what the engine orders) is
//! `SHA-256("xinyi/bench/noop/v1" ‖ parent ‖ seq ‖ proposer ‖ body)`.

use super::app::Replica;
use super::core::{To, Verdict};
use super::ledger_digest;
use commonware_cryptography::{Hasher as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use xinyi_ledger::{Digest, OrgId, TimeMs};

/// Largest message accepted (the ledger channel's bound).
pub const MAX_MESSAGE_BYTES: usize = super::wire::MAX_MESSAGE_BYTES;
/// Fixed bytes of a `Payload` message besides the proposer id and the body.
const PAYLOAD_HEADER: usize = 1 + 32 + 8 + 1;
/// At most this many bodies are kept (oldest dropped first).
pub const MAX_BODIES: usize = 64;
/// At most this many finalized digests are remembered (so an ancestor is not counted twice).
pub const MAX_FINALIZED: usize = 1_024;
/// A missing body is asked for this many ticks, then given up.
pub const MAX_WANT_TRIES: u32 = 40;
/// At most this many finalized digests wait for their body.
pub const MAX_PENDING_FINAL: usize = 1_024;
/// Hash domain of the payload digest.
const DOMAIN: &[u8] = b"xinyi/bench/noop/v1";

/// An opaque payload: what the no-op proposer proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The engine's parent payload (the genesis digest for the first).
    pub parent: Digest,
    /// The proposer's sequence number (makes each of its payloads distinct).
    pub seq: u64,
    /// The proposing organisation.
    pub proposer: OrgId,
    /// Opaque bytes.
    pub body: Vec<u8>,
}

impl Payload {
    /// The digest the engine orders.
    pub fn digest(&self) -> Digest {
        let len = [self.proposer.as_str().len() as u8];
        ledger_digest(&Sha256::hash(&[
            DOMAIN,
            self.parent.as_bytes(),
            &self.seq.to_be_bytes(),
            &len,
            self.proposer.as_str().as_bytes(),
            &self.body,
        ]))
    }
}

/// A message on the application channel of a no-op validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoopMsg {
    /// A payload's body (relayed by its proposer, or sent on request).
    Payload(Arc<Payload>),
    /// Request for the body of a payload.
    Want(Digest),
}

impl NoopMsg {
    /// Wire bytes; `None` if the proposer id or the message is too long.
    pub fn encode(&self) -> Option<Vec<u8>> {
        match self {
            NoopMsg::Payload(p) => {
                let id = p.proposer.as_str().as_bytes();
                let len = u8::try_from(id.len()).ok()?;
                let n = PAYLOAD_HEADER + id.len() + p.body.len();
                if n > MAX_MESSAGE_BYTES {
                    return None;
                }
                let mut out = Vec::with_capacity(n);
                out.push(0);
                out.extend_from_slice(p.parent.as_bytes());
                out.extend_from_slice(&p.seq.to_be_bytes());
                out.push(len);
                out.extend_from_slice(id);
                out.extend_from_slice(&p.body);
                Some(out)
            }
            NoopMsg::Want(d) => {
                let mut out = Vec::with_capacity(33);
                out.push(1);
                out.extend_from_slice(d.as_bytes());
                Some(out)
            }
        }
    }

    /// From wire bytes; `None` if malformed (empty, unknown tag, truncated, oversized, a
    /// proposer that is not an organisation id, trailing bytes after a `Want`).
    pub fn decode(bytes: &[u8]) -> Option<NoopMsg> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return None;
        }
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            0 => {
                if rest.len() < PAYLOAD_HEADER - 1 {
                    return None;
                }
                let parent = Digest::from_slice(&rest[..32]).ok()?;
                let seq = u64::from_be_bytes(rest[32..40].try_into().ok()?);
                let len = usize::from(rest[40]);
                let id = rest.get(41..41 + len)?;
                let proposer = OrgId::new(std::str::from_utf8(id).ok()?).ok()?;
                Some(NoopMsg::Payload(Arc::new(Payload {
                    parent,
                    seq,
                    proposer,
                    body: rest[41 + len..].to_vec(),
                })))
            }
            1 => Some(NoopMsg::Want(Digest::from_slice(rest).ok()?)),
            _ => None,
        }
    }
}

/// Counters of a no-op replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NoopStats {
    /// Payloads this replica proposed.
    pub proposed: u64,
    /// Verify verdicts valid.
    pub verified: u64,
    /// Verify verdicts invalid (wrong parent or proposer for the view).
    pub rejected: u64,
    /// Payloads finalized (each counted once, ancestors included).
    pub finalized_payloads: u64,
    /// Body bytes of the finalized payloads.
    pub finalized_bytes: u64,
    /// Messages refused (malformed).
    pub refused: u64,
}

/// The no-op replica's state.
pub struct NoopReplica {
    me: OrgId,
    payload_bytes: usize,
    seq: u64,
    bodies: HashMap<Digest, Arc<Payload>>,
    order: VecDeque<Digest>,
    finalized: HashSet<Digest>,
    final_order: VecDeque<Digest>,
    /// Finalized digests whose body (or an ancestor's) has not arrived yet.
    pending_final: BTreeSet<Digest>,
    missing: BTreeMap<Digest, u32>,
    outbox: Vec<(To, NoopMsg)>,
    /// Counters.
    pub stats: NoopStats,
}

impl NoopReplica {
    /// A replica of `me` proposing bodies of `payload_bytes` bytes (capped so that a message
    /// fits [`MAX_MESSAGE_BYTES`]) on a chain whose engine starts after `genesis`.
    pub fn new(me: OrgId, genesis: Digest, payload_bytes: usize) -> NoopReplica {
        let cap = MAX_MESSAGE_BYTES - PAYLOAD_HEADER - OrgId::MAX_LEN;
        let mut r = NoopReplica {
            me,
            payload_bytes: payload_bytes.min(cap),
            seq: 0,
            bodies: HashMap::new(),
            order: VecDeque::new(),
            finalized: HashSet::new(),
            final_order: VecDeque::new(),
            pending_final: BTreeSet::new(),
            missing: BTreeMap::new(),
            outbox: Vec::new(),
            stats: NoopStats::default(),
        };
        r.mark_finalized(genesis);
        r
    }

    /// Body bytes of each payload this replica proposes.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    fn insert(&mut self, d: Digest, p: Arc<Payload>) -> bool {
        if self.bodies.insert(d, p).is_some() {
            return false;
        }
        self.order.push_back(d);
        while self.order.len() > MAX_BODIES {
            if let Some(old) = self.order.pop_front() {
                self.bodies.remove(&old);
            }
        }
        true
    }

    fn mark_finalized(&mut self, d: Digest) {
        if self.finalized.insert(d) {
            self.final_order.push_back(d);
            while self.final_order.len() > MAX_FINALIZED {
                if let Some(old) = self.final_order.pop_front() {
                    self.finalized.remove(&old);
                }
            }
        }
    }

    fn want(&mut self, d: Digest) {
        if self.missing.insert(d, 0).is_none() {
            self.outbox.push((To::All, NoopMsg::Want(d)));
        }
    }

    /// Counts `d` and every ancestor not counted yet, back to the last finalized payload; a
    /// missing body is asked for and the walk resumes when it arrives.
    fn finalize_from(&mut self, d: Digest) {
        let mut cur = d;
        while !self.finalized.contains(&cur) {
            let Some(p) = self.bodies.get(&cur).cloned() else {
                if self.pending_final.len() < MAX_PENDING_FINAL {
                    self.pending_final.insert(cur);
                }
                self.want(cur);
                return;
            };
            self.mark_finalized(cur);
            self.stats.finalized_payloads += 1;
            self.stats.finalized_bytes += p.body.len() as u64;
            cur = p.parent;
        }
    }

    fn filler(&self) -> Vec<u8> {
        // Deterministic, cheap, not all one byte.
        let s = self.seq;
        (0..self.payload_bytes)
            .map(|i| (s as usize).wrapping_add(i.wrapping_mul(31)) as u8)
            .collect()
    }
}

impl Replica for NoopReplica {
    type Message = NoopMsg;

    fn propose(&mut self, parent: Digest, _now: TimeMs, _allow_empty: bool) -> Option<Digest> {
        let p = Arc::new(Payload {
            parent,
            seq: self.seq,
            proposer: self.me.clone(),
            body: self.filler(),
        });
        self.seq += 1;
        let d = p.digest();
        self.insert(d, p);
        self.stats.proposed += 1;
        Some(d)
    }

    fn verify(&mut self, parent: Digest, leader: &OrgId, d: Digest, _now: TimeMs) -> Verdict {
        let Some(p) = self.bodies.get(&d) else {
            self.want(d);
            return Verdict::Pending;
        };
        if p.parent != parent || &p.proposer != leader {
            self.stats.rejected += 1;
            return Verdict::Invalid;
        }
        self.stats.verified += 1;
        Verdict::Valid
    }

    fn body(&self, d: &Digest) -> Option<NoopMsg> {
        self.bodies.get(d).cloned().map(NoopMsg::Payload)
    }

    fn on_finalized(&mut self, d: Digest) {
        self.finalize_from(d);
    }

    fn on_message(&mut self, from: &OrgId, m: NoopMsg) {
        match m {
            NoopMsg::Payload(p) => {
                let d = p.digest();
                self.missing.remove(&d);
                if self.insert(d, p) && self.pending_final.remove(&d) {
                    self.finalize_from(d);
                }
            }
            NoopMsg::Want(d) => {
                if let Some(p) = self.bodies.get(&d).cloned() {
                    self.outbox
                        .push((To::One(from.clone()), NoopMsg::Payload(p)));
                }
            }
        }
    }

    fn refused(&mut self) {
        self.stats.refused += 1;
    }

    fn tick(&mut self) {
        self.missing.retain(|_, tries| *tries < MAX_WANT_TRIES);
        let again: Vec<Digest> = self.missing.keys().take(8).copied().collect();
        for d in again {
            if let Some(t) = self.missing.get_mut(&d) {
                *t += 1;
            }
            self.outbox.push((To::All, NoopMsg::Want(d)));
        }
        // Finalized digests given up on are forgotten with their want.
        let missing = &self.missing;
        self.pending_final.retain(|d| missing.contains_key(d));
    }

    fn take_outbox(&mut self) -> Vec<(To, NoopMsg)> {
        std::mem::take(&mut self.outbox)
    }

    fn encode(m: &NoopMsg) -> Option<Vec<u8>> {
        m.encode()
    }

    fn decode(bytes: &[u8]) -> Option<NoopMsg> {
        NoopMsg::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Digest = Digest([7; 32]);
    const BYTES: usize = 1_000;

    fn org(i: usize) -> OrgId {
        OrgId::new(&format!("org-{i}")).unwrap()
    }

    fn replicas() -> Vec<NoopReplica> {
        (0..4).map(|i| NoopReplica::new(org(i), G, BYTES)).collect()
    }

    /// Delivers every queued message, through the wire bytes, until none are left.
    fn settle(rs: &mut [NoopReplica]) {
        for _ in 0..20 {
            let mut any = false;
            for i in 0..rs.len() {
                for (to, m) in rs[i].take_outbox() {
                    any = true;
                    let bytes = NoopReplica::encode(&m).expect("encodes");
                    for j in (0..rs.len()).filter(|j| *j != i) {
                        if matches!(&to, To::One(o) if *o != org(j)) {
                            continue;
                        }
                        match NoopReplica::decode(&bytes) {
                            Some(m) => rs[j].on_message(&org(i), m),
                            None => rs[j].refused(),
                        }
                    }
                }
            }
            if !any {
                return;
            }
        }
    }

    /// The engine's relay: the proposer broadcasts the body of `d`.
    fn relay(rs: &mut [NoopReplica], p: usize, d: Digest) {
        let m = rs[p].body(&d).expect("the proposer has the body");
        rs[p].outbox.push((To::All, m));
        settle(rs);
    }

    #[test]
    fn propose_verify_finalize_counts_each_payload_once() {
        let mut rs = replicas();
        let d1 = rs[0].propose(G, 0, false).unwrap();
        relay(&mut rs, 0, d1);
        for r in rs.iter_mut() {
            assert_eq!(r.verify(G, &org(0), d1, 0), Verdict::Valid);
        }
        let d2 = rs[1].propose(d1, 0, false).unwrap();
        assert_ne!(d1, d2);
        relay(&mut rs, 1, d2);
        let d3 = rs[2].propose(d2, 0, true).unwrap();
        relay(&mut rs, 2, d3);
        for r in rs.iter_mut() {
            assert_eq!(r.verify(d1, &org(1), d2, 0), Verdict::Valid);
            assert_eq!(r.verify(d2, &org(2), d3, 0), Verdict::Valid);
            // The engine reports d1, then only d3 (d2 finalized with it), then d3 again.
            r.on_finalized(d1);
            r.on_finalized(d3);
            r.on_finalized(d3);
            assert_eq!(r.stats.finalized_payloads, 3);
            assert_eq!(r.stats.finalized_bytes, 3 * BYTES as u64);
            assert_eq!(r.stats.refused, 0);
            assert!(r.take_outbox().is_empty(), "nothing was missing");
        }
        assert_eq!(rs[0].stats.proposed, 1);
        assert_eq!(rs[3].stats.proposed, 0);
    }

    #[test]
    fn a_payload_in_the_wrong_context_is_refused_and_a_missing_one_waits() {
        let mut rs = replicas();
        let d = rs[0].propose(G, 0, false).unwrap();
        // Not relayed yet: the others wait and ask for it.
        assert_eq!(rs[1].verify(G, &org(0), d, 0), Verdict::Pending);
        assert!(matches!(
            rs[1].take_outbox().as_slice(),
            [(To::All, NoopMsg::Want(w))] if *w == d
        ));
        rs[1].want(d); // asked once only
        assert!(rs[1].take_outbox().is_empty());
        rs[1].outbox.push((To::All, NoopMsg::Want(d)));
        settle(&mut rs); // the proposer answers the want
        assert_eq!(rs[1].verify(G, &org(0), d, 0), Verdict::Valid);
        assert_eq!(rs[1].verify(d, &org(0), d, 0), Verdict::Invalid, "parent");
        assert_eq!(rs[1].verify(G, &org(2), d, 0), Verdict::Invalid, "leader");
        assert_eq!(rs[1].stats.rejected, 2);
    }

    #[test]
    fn a_payload_finalized_before_its_body_arrives_is_counted_when_it_does() {
        let mut rs = replicas();
        let d1 = rs[0].propose(G, 0, false).unwrap();
        let d2 = rs[0].propose(d1, 0, false).unwrap();
        rs[3].on_finalized(d2);
        assert_eq!(rs[3].stats.finalized_payloads, 0);
        assert!(
            rs[0].take_outbox().is_empty(),
            "proposing sends nothing by itself"
        );
        // rs[3]'s want for d2 is answered, then the want for its parent d1 it then sends.
        settle(&mut rs);
        assert_eq!(rs[3].stats.finalized_payloads, 2);
        assert_eq!(rs[3].stats.finalized_bytes, 2 * BYTES as u64);
        rs[3].tick();
        assert!(
            rs[3].take_outbox().is_empty(),
            "nothing is missing any more"
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        let mut rs = replicas();
        assert!(rs[2].take_outbox().is_empty());
        let d = rs[0].propose(G, 0, false).unwrap();
        let good = NoopReplica::encode(&rs[0].body(&d).unwrap()).unwrap();
        assert_eq!(good.len(), PAYLOAD_HEADER + "org-0".len() + BYTES);
        let back = NoopReplica::decode(&good).unwrap();
        assert_eq!(Some(back), rs[0].body(&d));
        let want = NoopReplica::encode(&NoopMsg::Want(d)).unwrap();
        assert_eq!(NoopReplica::decode(&want), Some(NoopMsg::Want(d)));

        let mut bad_org = good.clone();
        bad_org[PAYLOAD_HEADER] = b'A'; // organisation ids are lower case
        let mut long_org = good[..PAYLOAD_HEADER].to_vec();
        long_org[PAYLOAD_HEADER - 1] = 200; // longer than the message
        let mut unknown = want.clone();
        unknown[0] = 9;
        let oversized = vec![0u8; MAX_MESSAGE_BYTES + 1];
        for (what, b) in [
            ("empty", vec![]),
            ("truncated header", good[..20].to_vec()),
            ("bad proposer", bad_org),
            ("proposer past the end", long_org),
            ("unknown tag", unknown),
            (
                "want with a trailing byte",
                [want.clone(), vec![0]].concat(),
            ),
            ("short want", want[..32].to_vec()),
            ("oversized", oversized),
        ] {
            assert_eq!(NoopReplica::decode(&b), None, "{what}");
        }
        // A body that was tampered with in transit is another payload (another digest): the
        // replica never holds it under the proposed digest.
        let mut tampered = good.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let m = NoopReplica::decode(&tampered).unwrap();
        rs[2].on_message(&org(0), m);
        assert_eq!(rs[2].verify(G, &org(0), d, 0), Verdict::Pending);
    }

    #[test]
    fn proposals_are_deterministic_and_sized() {
        let mut a = NoopReplica::new(org(0), G, 300);
        let mut b = NoopReplica::new(org(0), G, 300);
        let (da, db) = (a.propose(G, 0, false), b.propose(G, 5, true));
        assert_eq!(da, db);
        let NoopMsg::Payload(p) = a.body(&da.unwrap()).unwrap() else {
            panic!("a payload")
        };
        assert_eq!(p.body.len(), 300);
        assert_ne!(a.propose(G, 0, false), da, "the next one differs");
        let huge = NoopReplica::new(org(0), G, usize::MAX);
        assert!(huge.payload_bytes() + PAYLOAD_HEADER + OrgId::MAX_LEN <= MAX_MESSAGE_BYTES);
    }
}
