//! End-to-end behaviour of block building, verification, storage and audit bundles.

mod common;
use common::*;
use xinyi_ledger::chain::{Chain, ChainErrorKind};
use xinyi_ledger::store::Store;
use xinyi_ledger::types::Category::*;
use xinyi_ledger::verify::{verify_bundle, VerifyError};

fn scenario() -> Driver {
    let mut d = Driver::new();
    let f = firm(1);
    let reg = d.register_firm(f);
    assert!(d.block(vec![reg]).is_empty());
    let c = d.consent(f, "bank-a", &[Registration, Tax], 2);
    let cid = c.id;
    assert!(d.block(vec![c]).is_empty());
    let q1 = d.served("bank-a", f, cid, &[Tax]);
    let q2 = d.served("bank-a", f, cid, &[Registration]);
    let q3 = d.served("bank-a", f, cid, &[Tax]);
    let dropped = d.block(vec![q1, q2, q3]);
    assert_eq!(dropped.len(), 1, "third query exceeds max_uses");
    assert_eq!(dropped[0].reason.code(), "consent.exhausted");
    d
}

#[test]
fn replica_applying_the_blocks_reaches_the_same_roots() {
    let d = scenario();
    let (mut replica, _) = Chain::from_genesis(&d.c.genesis).unwrap();
    for b in &d.blocks {
        replica
            .apply_block(b.block.clone(), b.certificate.clone())
            .unwrap();
    }
    assert_eq!(replica.state_head(), d.chain.state_head());
    assert_eq!(replica.log().root(), d.chain.log().root());
    assert_eq!(replica.head_hash(), d.chain.head_hash());
}

#[test]
fn block_with_a_flipped_entry_byte_is_rejected_and_nothing_changes() {
    let d = scenario();
    let (mut replica, _) = Chain::from_genesis(&d.c.genesis).unwrap();
    for b in &d.blocks[..2] {
        replica
            .apply_block(b.block.clone(), b.certificate.clone())
            .unwrap();
    }
    let before = replica.state_head();
    let mut bad = d.blocks[2].block.clone();
    let last = bad.entries[1].len() - 3;
    bad.entries[1][last] ^= 0x01;
    let err = replica
        .apply_block(bad, d.blocks[2].certificate.clone())
        .unwrap_err();
    // The flipped byte is named against its entry, not only as a root mismatch.
    assert_eq!((err.height, err.entry), (3, Some(1)), "{err}");
    assert!(
        matches!(
            err.kind,
            ChainErrorKind::Signature | ChainErrorKind::Entry(_)
        ),
        "{err}"
    );
    assert_eq!(replica.state_head(), before);
    // The untouched block still applies afterwards.
    replica
        .apply_block(d.blocks[2].block.clone(), d.blocks[2].certificate.clone())
        .unwrap();
}

#[test]
fn certificate_below_quorum_or_wrong_signer_is_rejected() {
    let d = scenario();
    let (mut replica, _) = Chain::from_genesis(&d.c.genesis).unwrap();
    let b = &d.blocks[0];
    let mut empty = b.certificate.clone();
    empty.votes.clear();
    let err = replica.apply_block(b.block.clone(), empty).unwrap_err();
    assert_eq!(err.kind.code(), "cert.below_quorum");
    let mut forged = b.certificate.clone();
    forged.votes[0].signature.0[10] ^= 1;
    let err = replica.apply_block(b.block.clone(), forged).unwrap_err();
    assert_eq!(err.kind.code(), "cert.bad_signature");
    let mut stranger = b.certificate.clone();
    stranger.votes[0].validator = xinyi_ledger::OrgId::new("bank-a").unwrap();
    let err = replica.apply_block(b.block.clone(), stranger).unwrap_err();
    assert_eq!(err.kind.code(), "cert.unknown_signer");
}

#[test]
fn blocks_out_of_order_are_rejected() {
    let d = scenario();
    let (mut replica, _) = Chain::from_genesis(&d.c.genesis).unwrap();
    let err = replica
        .apply_block(d.blocks[1].block.clone(), d.blocks[1].certificate.clone())
        .unwrap_err();
    assert_eq!(err.kind.code(), "block.header");
}

#[test]
fn store_reopens_to_the_same_head_and_serves_indexes() {
    let d = scenario();
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open_or_create(dir.path(), &d.c.genesis).unwrap();
        for b in &d.blocks {
            store.append(b).unwrap();
        }
        // Appending the same block twice is refused.
        assert_eq!(
            store.append(&d.blocks[0]).unwrap_err().code(),
            "store.out_of_order"
        );
    }
    let (store, chain) = Store::open(dir.path()).unwrap();
    assert_eq!(chain.state_head(), d.chain.state_head());
    assert_eq!(chain.log().root(), d.chain.log().root());
    assert_eq!(store.height().unwrap(), 3);
    let (b3, c3) = store.block(3).unwrap().unwrap();
    assert_eq!(b3, d.blocks[2].block);
    assert_eq!(c3, d.blocks[2].certificate);
    let f = d.c.tag(&firm(1));
    // firm registration, consent, two served queries
    assert_eq!(
        store.firm_positions(&f, None, 100).unwrap(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(store.firm_positions(&f, Some(1), 100).unwrap(), vec![2, 3]);
    assert_eq!(store.height_of_position(2).unwrap(), Some(3));
    let id = d.blocks[1].entries[0].id;
    assert_eq!(store.position_of(&id).unwrap(), Some(1));
}

#[test]
fn damaged_store_value_is_reported_with_its_location() {
    let d = scenario();
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open_or_create(dir.path(), &d.c.genesis).unwrap();
        for b in &d.blocks {
            store.append(b).unwrap();
        }
    }
    {
        // No background flusher; sled's other threads may hold the dropped store's file lock
        // for a moment, so a lock refusal is retried (bounded).
        let db = (0..2_500)
            .find_map(|_| {
                match sled::Config::new()
                    .path(dir.path())
                    .flush_every_ms(None)
                    .open()
                {
                    Err(e) if e.to_string().contains("could not acquire lock") => {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        None
                    }
                    r => Some(r.unwrap()),
                }
            })
            .expect("the store's lock was released");
        // The entries of block 3 (log positions 2 and 3) are one value.
        let mut key = vec![b'E'];
        key.extend_from_slice(&3u64.to_be_bytes());
        let mut v = db.get(&key).unwrap().unwrap().to_vec();
        v[12] ^= 0x40;
        db.insert(key, v).unwrap();
        db.flush().unwrap();
    }
    // Opening rebuilds the log from the log index values, not from the entries: the damage is
    // found, by name, by the first read of that block (and never served).
    let (store, _) = Store::open(dir.path()).unwrap();
    let err = store.entry(2).unwrap_err();
    assert_eq!(err.code(), "store.corrupt");
    assert!(err.to_string().contains("entries of block 3"), "{err}");
    assert!(store.block(3).is_err());
    assert!(store.entry(1).unwrap().is_some());
}

#[test]
fn bundle_verifies_and_any_flipped_byte_is_detected() {
    let d = scenario();
    let bundle = d.bundle();
    let report = verify_bundle(&d.c.genesis, bundle.as_slice(), |_, _| {}).unwrap();
    assert_eq!(report.blocks, 3);
    assert_eq!(report.entries, 4);
    assert_eq!(report.state_root, d.chain.state_head().root);
    // Flip bytes at a spread of positions: every one must be detected.
    let step = (bundle.len() / 97).max(1);
    for pos in (0..bundle.len()).step_by(step) {
        let mut b = bundle.clone();
        b[pos] ^= 0x01;
        assert!(
            verify_bundle(&d.c.genesis, b.as_slice(), |_, _| {}).is_err(),
            "flip at byte {pos} of {} went undetected",
            bundle.len()
        );
    }
    // Truncation and a dropped block are detected.
    let err = verify_bundle(&d.c.genesis, &bundle[..bundle.len() - 9], |_, _| {}).unwrap_err();
    assert_eq!(err.code(), "bundle.truncated");
}

#[test]
fn verifier_names_the_entry_with_a_bad_signature() {
    let mut d = scenario();
    // Re-sign block 3 with a tampered signature in entry 1 but valid roots and certificate:
    // only the signature check can catch it.
    let mut committed = d.blocks.pop().unwrap();
    let mut wire: xinyi_ledger::entry::EntryWire =
        xinyi_ledger::codec::decode("entry", &committed.block.entries[1], 1 << 16).unwrap();
    wire.signature.0[0] ^= 1;
    committed.block.entries[1] =
        serde_bytes::ByteBuf::from(xinyi_ledger::codec::encode(&wire).unwrap());
    // Recompute the header roots as a malicious proposer would.
    let mut replica_tree = xinyi_ledger::merkle::MerkleTree::new();
    for e in &committed.block.entries {
        replica_tree.append(e);
    }
    committed.block.header.entries_root = xinyi_ledger::Digest(replica_tree.root());
    let mut log = d.chain.log().clone();
    log.truncate(committed.first_position);
    for e in &committed.block.entries {
        log.append(e);
    }
    committed.block.header.log_root = xinyi_ledger::Digest(log.root());
    // The state root changes because the entry id changed; a malicious proposer would
    // recompute it too, but the signature check runs first and must name the entry.
    let cert = d.c.certify(&committed.block).unwrap();
    let mut w =
        xinyi_ledger::bundle::BundleWriter::new(Vec::new(), d.c.genesis.to_json().as_bytes())
            .unwrap();
    for b in &d.blocks {
        w.committed(b).unwrap();
    }
    w.block(&committed.block.encode().unwrap(), &cert.encode().unwrap())
        .unwrap();
    let bundle = w.finish().unwrap();
    let err = verify_bundle(&d.c.genesis, bundle.as_slice(), |_, _| {}).unwrap_err();
    assert!(matches!(err, VerifyError::Chain(_)));
    assert_eq!((err.height(), err.entry()), (Some(3), Some(1)), "{err}");
    assert_eq!(err.code(), "entry.bad_signature");
}

mod header_mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        #[test]
        fn arbitrary_header_values_are_rejected_without_panic(
            field in 0usize..6, value in any::<u64>()
        ) {
            let d = scenario();
            let (mut replica, _) = Chain::from_genesis(&d.c.genesis).unwrap();
            let b = &d.blocks[0];
            let mut block = b.block.clone();
            let h = &mut block.header;
            match field {
                0 => h.time = value,
                1 => h.height = value,
                2 => h.log_size = value,
                3 => h.entry_count = value as u32,
                4 => h.version = value as u32,
                _ => h.prev.0[(value % 32) as usize] ^= 1,
            }
            prop_assume!(block != b.block);
            // The certificate no longer matches, or a field is inconsistent: rejected either way.
            prop_assert!(replica.apply_block(block.clone(), b.certificate.clone()).is_err());
            // Even with a certificate re-signed over the mutated header.
            let cert = d.c.certify(&block).unwrap();
            prop_assert!(replica.apply_block(block, cert).is_err());
            prop_assert_eq!(replica.height(), 0);
        }
    }

    #[test]
    fn unknown_header_version_is_named() {
        let d = scenario();
        let (mut replica, _) = Chain::from_genesis(&d.c.genesis).unwrap();
        let mut block = d.blocks[0].block.clone();
        block.header.version = 2;
        let cert = d.c.certify(&block).unwrap();
        let err = replica.apply_block(block, cert).unwrap_err();
        assert!(
            err.to_string().contains("unknown header version 2"),
            "{err}"
        );
    }
}
