//! Hostile bytes from peers, decoder level (the transport-level cases — non-member refused,
//! oversized and malformed frames disconnect and block the sender — are in `p2p.rs`): mutated
//! ledger-channel messages (`Wire::decode`), frame headers (`codec::decode_header`) and
//! transaction batches (`cluster::decode_batch`) never panic, and whatever is accepted is
//! canonical and within the limits. Seeded loops (CI-sized); `xinyi-reliability fuzz` runs the
//! same targets for millions of executions (docs/reliability.md).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xinyi_ledger::block::{Block, CommitCertificate};
use xinyi_ledger::bundle::BundleReader;
use xinyi_ledger::Entry;
use xinyi_node::cluster::{decode_batch, encode_batch};
use xinyi_node::consensus::wire::{Wire, MAX_MESSAGE_BYTES};
use xinyi_node::p2p::codec::{decode_header, encode_header, FrameError, HEADER_LEN, TAG_DATA};

const BUNDLE: &[u8] = include_bytes!("../../specs/vectors/chain.bundle");

fn vectors() -> (Vec<Block>, Vec<CommitCertificate>, Vec<Entry>) {
    let (mut bs, mut cs, mut es) = (vec![], vec![], vec![]);
    for item in BundleReader::new(BUNDLE).unwrap() {
        let (b, c) = item.unwrap();
        let b = Block::decode(&b).unwrap();
        for e in &b.entries {
            es.push(Entry::decode(e).unwrap());
        }
        bs.push(b);
        cs.push(CommitCertificate::decode(&c).unwrap());
    }
    (bs, cs, es)
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.gen_range(1..=3) {
        if b.is_empty() {
            b.push(rng.gen());
            continue;
        }
        let p = rng.gen_range(0..b.len());
        match rng.gen_range(0..5) {
            0 => b[p] ^= rng.gen_range(1..=255u8),
            1 => {
                b.remove(p);
            }
            2 => b.insert(p, rng.gen()),
            3 => b.truncate(p),
            _ => {
                if b.len() >= p + 4 {
                    let v: u32 = [0, 1, u32::MAX, 1 << 24][rng.gen_range(0..4)];
                    b[p..p + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
    }
    b
}

#[test]
fn mutated_ledger_channel_messages_never_panic_and_accepted_ones_are_canonical() {
    let (bs, cs, _) = vectors();
    let seeds: Vec<Vec<u8>> = [
        Wire::Block(bs[1].clone()),
        Wire::Certified(bs[2].clone(), cs[2].clone()),
        Wire::Vote {
            height: 3,
            header_hash: cs[2].header_hash,
            vote: cs[2].votes[0].clone(),
        },
        Wire::Want(cs[0].header_hash),
        Wire::Sync(5),
        Wire::Checkpoint("xinyi.dev/x\n1\nAAAA\n".into()),
    ]
    .iter()
    .map(|w| w.encode().unwrap())
    .collect();
    for s in &seeds {
        assert!(Wire::decode(s).is_ok());
    }
    let mut rng = StdRng::seed_from_u64(11);
    let mut accepted = 0;
    for i in 0..6000 {
        let m = mutate(&mut rng, &seeds[i % seeds.len()]);
        if let Ok(w) = Wire::decode(&m) {
            accepted += 1;
            if !matches!(w, Wire::Checkpoint(_)) {
                assert_eq!(w.encode().unwrap(), m, "non-canonical message accepted");
            }
        }
    }
    // Some mutations (hash or height bytes) are still well-formed messages.
    assert!(accepted > 0);
    // Empty, unknown tag and oversized are refused.
    assert!(Wire::decode(&[]).is_err());
    assert!(Wire::decode(&[9, 0, 0]).is_err());
    assert!(Wire::decode(&vec![0u8; MAX_MESSAGE_BYTES + 1]).is_err());
}

#[test]
fn frame_headers_with_a_bad_tag_or_length_over_the_limit_are_refused() {
    let mut rng = StdRng::seed_from_u64(12);
    let max = 1 << 20;
    for _ in 0..20000 {
        let mut h = [0u8; HEADER_LEN];
        rng.fill(&mut h[..]);
        if rng.gen_bool(0.5) {
            h[0] = TAG_DATA;
        }
        let len = u32::from_be_bytes([h[9], h[10], h[11], h[12]]) as usize;
        match decode_header(&h, max) {
            Ok((_, n)) => {
                assert_eq!(h[0], TAG_DATA);
                assert!(n <= max && n == len);
            }
            Err(FrameError::BadTag(t)) => assert_ne!(t, TAG_DATA),
            Err(FrameError::Oversized { len: l, .. }) => assert!(l as usize > max),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(decode_header(&encode_header(3, 1 << 20), max).is_ok());
    assert!(decode_header(&encode_header(3, (1 << 20) + 1), max).is_err());
}

#[test]
fn mutated_transaction_batches_never_panic_and_hold_only_valid_entries() {
    let (_, _, es) = vectors();
    let seeds = [
        encode_batch(&es[..4]),
        encode_batch(&es[..1]),
        encode_batch(&[]),
    ];
    let mut rng = StdRng::seed_from_u64(13);
    for i in 0..6000 {
        let m = mutate(&mut rng, &seeds[i % seeds.len()]);
        if let Some(batch) = decode_batch(&m) {
            for e in batch {
                assert_eq!(Entry::decode(&e.bytes).unwrap().id, e.id);
            }
        }
    }
    // A batch with an undecodable entry is refused as a whole.
    let mut bad = es[..2].to_vec();
    bad[1].bytes[3] ^= 0xff;
    assert!(decode_batch(&encode_batch(&bad)).is_none() || Entry::decode(&bad[1].bytes).is_ok());
}
