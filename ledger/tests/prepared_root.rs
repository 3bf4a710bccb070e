//! `State::pending_root` computes the open block's write set, access map and root; `end_block`
//! reuses them instead of computing them again — but only if the state did not change in
//! between. These tests fail if a stale computation were ever reused.

mod common;
use common::*;
use xinyi_ledger::merkle::MerkleTree;
use xinyi_ledger::types::Category::*;
use xinyi_ledger::{Entry, State};

/// Entries for one block on the driver's chain: a firm, its consent, two queries.
fn entries(d: &mut Driver) -> Vec<Entry> {
    let f = firm(3);
    let cid = d.consented_firm(f, "bank-a", &[Registration, Tax], 5);
    d.advance(5);
    let q1 = d.served("bank-a", f, cid, &[Tax]);
    let q2 = d.served("bank-a", f, cid, &[Registration]);
    vec![q1, q2]
}

/// Applies `es` to a copy of `base` as block `height`, calling `pending_root` after the entries
/// given in `probe_after` (indexes), and returns (write set, root after end_block, last pending).
fn run(
    base: &State,
    log: &MerkleTree,
    height: u64,
    time: u64,
    es: &[Entry],
    probe_after: &[usize],
) -> (
    xinyi_ledger::state::WriteSet,
    xinyi_ledger::Digest,
    Option<xinyi_ledger::Digest>,
) {
    let mut s = base.clone();
    s.begin_block(height, time).unwrap();
    let mut last = None;
    if probe_after.contains(&usize::MAX) {
        last = Some(s.pending_root(height).unwrap());
    }
    for (i, e) in es.iter().enumerate() {
        s.apply_entry(e, log).unwrap();
        if probe_after.contains(&i) {
            last = Some(s.pending_root(height).unwrap());
        }
    }
    let ws = s.end_block(height, time).unwrap();
    (ws, s.head().root, last)
}

#[test]
fn end_block_reuses_a_pending_root_only_while_the_open_block_is_unchanged() {
    let mut d = Driver::new();
    let es = entries(&mut d);
    let base = d.chain.state().clone();
    let log = d.chain.log().clone();
    let height = base.head().height + 1;
    let time = d.now + 10;

    let (ws_plain, root_plain, _) = run(&base, &log, height, time, &es, &[]);
    assert!(
        ws_plain.len() >= 3,
        "the block changes consent, access head and replay index"
    );

    // Probed after the last entry: the reused computation is the one end_block would make.
    let (ws, root, pending) = run(&base, &log, height, time, &es, &[es.len() - 1]);
    assert_eq!(ws, ws_plain);
    assert_eq!(root, root_plain);
    assert_eq!(pending, Some(root_plain));

    // Probed before entries that change the state afterwards (at block start, after the first
    // entry): a stale write set or root would differ from the plain run.
    for probe in [usize::MAX, 0] {
        let (ws, root, pending) = run(&base, &log, height, time, &es, &[probe]);
        assert_eq!(ws, ws_plain, "probe {probe}");
        assert_eq!(root, root_plain, "probe {probe}");
        assert_ne!(
            pending,
            Some(root_plain),
            "probe {probe}: the block changed after it"
        );
    }

    // A refused entry after the probe (applied and rolled back inside apply_entry) leaves the
    // open block as it was: still the same result.
    let mut s = base.clone();
    s.begin_block(height, time).unwrap();
    for e in &es {
        s.apply_entry(e, &log).unwrap();
    }
    let pending = s.pending_root(height).unwrap();
    assert!(s.apply_entry(&es[0], &log).is_err(), "a replay is refused");
    assert_eq!(s.end_block(height, time).unwrap(), ws_plain);
    assert_eq!(s.head().root, pending);

    // A probe for another height is not reused.
    let mut s = base.clone();
    s.begin_block(height, time).unwrap();
    for e in &es {
        s.apply_entry(e, &log).unwrap();
    }
    let _ = s.pending_root(height + 1).unwrap();
    assert_eq!(s.end_block(height, time).unwrap(), ws_plain);
    assert_eq!(s.head().root, root_plain);
}
