//! The replay set (`specs/state.md` §3 step 4, §4 step 2): derived in memory from the per-block
//! `n` values, never stored per id. These tests check that it is exactly as strict as the rule
//! says — an id is refused while it could still be replayed, also after the state is restored
//! from a store — that it is forgotten exactly when the window has passed, that a restored
//! replica keeps computing the same roots as the chain that never stopped, and that copies of a
//! `State` (structurally shared) are independent.

mod common;
use common::*;
use xinyi_ledger::chain::Chain;
use xinyi_ledger::codec;
use xinyi_ledger::entry::{EntryKind, QueryRecord, QueryRequest};
use xinyi_ledger::hash::{self, Digest, Domain};
use xinyi_ledger::store::Store;
use xinyi_ledger::types::Category::*;
use xinyi_ledger::{Entry, State};

/// `params.entry_time_window_ms` of the sample genesis.
const W: u64 = 10 * 60 * 1000;

fn request_id(req: &QueryRequest) -> Digest {
    hash::tagged(
        Domain::Entry,
        &[b"query-request", &codec::encode(req).unwrap()],
    )
}

/// A replica opened from a store holding `d`'s blocks (what a node restarts with).
fn restored(d: &Driver) -> Chain {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open_or_create(dir.path(), &d.c.genesis).unwrap();
        for b in &d.blocks {
            store.append(b).unwrap();
        }
        store.close().unwrap();
    }
    let (store, chain) = Store::open(dir.path()).unwrap();
    store.close().unwrap();
    chain
}

/// A driver at the same point as `d` whose chain is `chain`.
fn driver_on(d: &Driver, chain: Chain) -> Driver {
    let mut x = Driver::new();
    x.chain = chain;
    x.now = d.now;
    x.nonce = d.nonce;
    x
}

fn kv(s: &State) -> Vec<(Vec<u8>, Vec<u8>)> {
    s.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn replay_key(time: u64, height: u64) -> Vec<u8> {
    [&b"n"[..], &time.to_be_bytes(), &height.to_be_bytes()].concat()
}

fn served_with(d: &mut Driver, req: &QueryRequest) -> Entry {
    let signed = d.c.signed_query("bank-a", req.clone()).unwrap();
    d.org(
        "gz-credit",
        EntryKind::QueryServed(QueryRecord {
            request: signed,
            response: Digest([5; 32]),
            records: vec![],
        }),
    )
}

fn codes(dropped: &[xinyi_ledger::chain::Dropped]) -> Vec<&'static str> {
    dropped.iter().map(|x| x.reason.code()).collect()
}

#[test]
fn replayed_ids_are_refused_inside_the_window_after_restore_and_forgotten_after_it() {
    let mut d = Driver::new();
    let f = firm(7);
    let cid = d.consented_firm(f, "bank-a", &[Tax], 10);

    // Block at time b records an entry and a request whose own times are b + W, the latest the
    // window allows: they stay replayable longest.
    let b = d.now + 10;
    d.now = b + W;
    let req = d.request("bank-a", f, cid, &[Tax]);
    let e = served_with(&mut d, &req);
    d.now = b - 10;
    assert!(d.block(vec![e.clone()]).is_empty());
    let height = d.chain.height();
    assert_eq!(d.blocks.last().unwrap().block.header.time, b);
    let rid = request_id(&req);

    // Only the block's `n` value is stored: both ids, ascending; no per-id keys.
    let mut ids = [e.id.0, rid.0];
    ids.sort();
    let state = kv(d.chain.state());
    let n: Vec<_> = state.iter().filter(|(k, _)| k[0] == b'n').collect();
    assert_eq!(n.len(), 3, "one n value per block that recorded ids");
    assert_eq!(n[2].0, replay_key(b, height));
    assert_eq!(n[2].1, ids.concat());
    assert!(state.iter().all(|(k, _)| k[0] != b'N'), "no per-id keys");
    let ws = &d.blocks.last().unwrap().write_set;
    assert!(ws.iter().all(|(k, _)| k[0] != b'N'));
    assert!(d.chain.state().is_replay(&e.id) && d.chain.state().is_replay(&rid));
    assert_eq!(
        d.chain.state().replay_ids_len(),
        4,
        "2 setup entries + entry + request"
    );

    // A replica restored from the store rebuilds the same replay set.
    let r = restored(&d);
    assert_eq!(r.state_head(), d.chain.state_head());
    assert_eq!(kv(r.state()), state);
    assert!(r.state().is_replay(&e.id) && r.state().is_replay(&rid));
    assert_eq!(r.state().replay_ids_len(), 4);
    let mut replica = driver_on(&d, r);

    for x in [&mut d, &mut replica] {
        // At block time b + 2W the entry time b + W is exactly now − W: still inside the
        // window, so the same entry and a new record of the same signed request are replays.
        x.now = b + 2 * W - 10;
        let again = served_with(x, &req);
        let dropped = x.block(vec![e.clone(), again]);
        assert_eq!(codes(&dropped), ["state.replay", "state.replay"]);
        assert!(x.chain.state().is_replay(&e.id) && x.chain.state().is_replay(&rid));

        // One millisecond later the block at b is pruned: its n value is deleted and its ids
        // are forgotten — and can no longer pass the time check.
        x.now = b + 2 * W + 1 - 10;
        let late = served_with(x, &req);
        let dropped = x.block(vec![e.clone(), late]);
        assert_eq!(
            codes(&dropped),
            ["state.stale_or_future", "state.stale_or_future"]
        );
        let s = x.chain.state();
        assert!(!s.is_replay(&e.id) && !s.is_replay(&rid));
        assert!(s.iter().all(|(k, _)| k != &replay_key(b, height)));
        let last = x.blocks.last().unwrap();
        assert!(
            last.write_set
                .iter()
                .any(|(k, v)| k == &replay_key(b, height) && v.is_none()),
            "the pruning is in the block's write set"
        );
    }
    // The restored replica and the chain that never stopped agree on every byte.
    assert_eq!(replica.chain.state_head(), d.chain.state_head());
    assert_eq!(kv(replica.chain.state()), kv(d.chain.state()));
    assert_eq!(
        replica.chain.state().replay_ids_len(),
        d.chain.state().replay_ids_len()
    );
}

#[test]
fn restore_then_apply_gives_the_roots_of_continuous_apply() {
    let mut d = Driver::new();
    let firms: Vec<_> = (1..=3).map(firm).collect();
    let regs: Vec<_> = firms.iter().map(|f| d.register_firm(*f)).collect();
    assert!(d.block(regs).is_empty());
    let mut consents = vec![];
    for f in &firms {
        let c = d.consent(*f, "bank-a", &[Tax], 1000);
        consents.push((*f, c.id));
        assert!(d.block(vec![c]).is_empty());
    }
    // 24 blocks a third of a window apart: ids are recorded and pruned all along.
    for i in 0..24 {
        d.advance(W / 3);
        let mut entries = vec![];
        for (f, cid) in consents.iter().take(1 + i % 3) {
            entries.push(d.served("bank-a", *f, *cid, &[Tax]));
        }
        assert!(d.block(entries).is_empty());
    }
    let (mut plain, _) = Chain::from_genesis(&d.c.genesis).unwrap();
    for cut in [3, 9, 17] {
        let mut prefix = Driver::new();
        prefix.blocks = d.blocks[..cut].to_vec();
        let (mut replica, _) = Chain::from_genesis(&d.c.genesis).unwrap();
        for b in &prefix.blocks {
            replica
                .apply_block(b.block.clone(), b.certificate.clone())
                .unwrap();
        }
        let mut r = restored(&prefix);
        assert_eq!(r.state_head(), replica.state_head());
        assert_eq!(r.state().replay_ids_len(), replica.state().replay_ids_len());
        for b in &d.blocks[cut..] {
            r.apply_block(b.block.clone(), b.certificate.clone())
                .unwrap();
            assert_eq!(r.state_head().root, b.block.header.state_root);
        }
        assert_eq!(r.state_head(), d.chain.state_head());
        assert_eq!(kv(r.state()), kv(d.chain.state()));
    }
    for b in &d.blocks {
        plain
            .apply_block(b.block.clone(), b.certificate.clone())
            .unwrap();
    }
    assert_eq!(plain.state_head(), d.chain.state_head());
    assert_eq!(
        plain.state().replay_ids_len(),
        d.chain.state().replay_ids_len()
    );
    // With blocks W/3 apart, only the blocks of the last two windows are remembered.
    let n_keys = kv(d.chain.state())
        .iter()
        .filter(|(k, _)| k[0] == b'n')
        .count();
    assert!((6..=7).contains(&n_keys), "{n_keys} n values");
}

#[test]
fn a_state_copy_is_independent_of_the_original() {
    let mut d = Driver::new();
    let f = firm(7);
    let cid = d.consented_firm(f, "bank-a", &[Tax], 10);
    let original = d.chain.state().clone();
    let before = kv(&original);
    let head = original.head();
    let log = d.chain.log().clone();

    // A copy executes and closes a block far in the future: it prunes every recorded id,
    // writes a consent use and an access head, and records two new ids.
    let mut copy = original.clone();
    let t = head.time + 3 * W;
    d.now = t;
    let e = d.served("bank-a", f, cid, &[Tax]);
    copy.begin_block(head.height + 1, t).unwrap();
    copy.apply_entry(&e, &log).unwrap();
    copy.end_block(head.height + 1, t).unwrap();
    assert_ne!(kv(&copy), before);
    assert!(copy.is_replay(&e.id) && !copy.is_replay(&cid));
    assert_eq!(copy.consent(&cid).unwrap().unwrap().used, 1);

    // The original has not moved.
    assert_eq!(kv(&original), before);
    assert_eq!(original.head(), head);
    assert!(original.is_replay(&cid) && !original.is_replay(&e.id));
    assert_eq!(original.consent(&cid).unwrap().unwrap().used, 0);
    assert_eq!(kv(d.chain.state()), before);

    // A rolled-back block leaves a copy as it was, replay set included (the pruning at block
    // start and the ids its entries recorded are undone).
    let mut rolled = original.clone();
    rolled.begin_block(head.height + 1, t).unwrap();
    assert!(!rolled.is_replay(&cid));
    rolled.apply_entry(&e, &log).unwrap();
    assert!(rolled.is_replay(&e.id));
    rolled.rollback_block();
    assert_eq!(kv(&rolled), before);
    assert!(rolled.is_replay(&cid) && !rolled.is_replay(&e.id));
    assert_eq!(rolled.replay_ids_len(), original.replay_ids_len());
    // ... and executes the block again to the same result as the first copy.
    rolled.begin_block(head.height + 1, t).unwrap();
    rolled.apply_entry(&e, &log).unwrap();
    rolled.end_block(head.height + 1, t).unwrap();
    assert_eq!(rolled.head(), copy.head());
    assert_eq!(kv(&rolled), kv(&copy));

    // A refused entry records nothing: the same entry twice in one block.
    let mut twice = original.clone();
    twice.begin_block(head.height + 1, t).unwrap();
    twice.apply_entry(&e, &log).unwrap();
    let err = twice.apply_entry(&e, &log).unwrap_err();
    assert_eq!(err.code(), "state.replay");
    twice.end_block(head.height + 1, t).unwrap();
    assert_eq!(twice.head(), copy.head());
}

#[test]
fn the_replay_set_is_the_union_of_the_n_values_a_restored_state_holds() {
    let mut d = Driver::new();
    let f = firm(7);
    let reg = d.register_firm(f);
    let reg_id = reg.id;
    assert!(d.block(vec![reg]).is_empty());
    let g = d.c.genesis.clone();
    let head = d.chain.state_head();
    let stored = kv(d.chain.state());
    let (first_key, _) = stored
        .iter()
        .find(|(k, v)| k[0] == b'n' && v.as_slice() == reg_id.0.as_slice())
        .cloned()
        .expect("the block's n value lists the registration");
    let first_time = u64::from_be_bytes(first_key[1..9].try_into().unwrap());

    // A second n value, one window later, listing the same id (no chain of these rules writes
    // that; a restored state must still hold exactly the union of what its n values list).
    let mut dup = stored.clone();
    dup.push((replay_key(first_time + W, head.height), reg_id.0.to_vec()));
    dup.sort();
    let mut s = State::restore(&g, head, dup).unwrap();
    assert!(s.is_replay(&reg_id));
    assert_eq!(
        s.replay_ids_len(),
        stored.iter().filter(|(k, _)| k[0] == b'n').count()
    );
    // Pruning the first n value leaves the id listed by the second.
    s.begin_block(head.height + 1, first_time + 2 * W + 1)
        .unwrap();
    assert!(s.is_replay(&reg_id));
    s.end_block(head.height + 1, first_time + 2 * W + 1)
        .unwrap();
    assert!(s.is_replay(&reg_id));
    // Pruning the second forgets it.
    s.begin_block(head.height + 2, first_time + 3 * W + 1)
        .unwrap();
    assert!(!s.is_replay(&reg_id));

    // An n value that is not a whole number of ids is refused when the state is restored.
    let mut bad = stored.clone();
    for (k, v) in bad.iter_mut() {
        if k == &first_key {
            v.push(0);
        }
    }
    assert!(State::restore(&g, head, bad).is_err());
}
