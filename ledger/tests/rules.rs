//! State-machine rules: each test commits entries through the real block path and checks the
//! ledger's verdict (kept or dropped, with the typed reason).

mod common;
use common::*;
use xinyi_ledger::entry::{
    Approval, DenialReason, EntryKind, MemberChange, MembershipChange, MembershipProposal,
};
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::state::RepairStatus;
use xinyi_ledger::types::Category::*;
use xinyi_ledger::types::{Role, Severity, DAY_MS};
use xinyi_ledger::{Digest, OrgId};

fn setup() -> (Driver, xinyi_ledger::Uscc) {
    let mut d = Driver::new();
    let f = firm(7);
    let reg = d.register_firm(f);
    assert!(d.block(vec![reg]).is_empty());
    (d, f)
}

fn one(d: &mut Driver, e: xinyi_ledger::Entry) -> Option<&'static str> {
    d.block(vec![e]).first().map(|x| x.reason.code())
}

#[test]
fn query_authorization_rules_give_each_denial_reason() {
    let (mut d, f) = setup();
    let c = d.consent(f, "bank-a", &[Registration, Tax], 1);
    let cid = c.id;
    assert_eq!(one(&mut d, c), None);
    let now = d.now;
    let req = |d: &mut Driver, bank: &str, firm, consent, cats: &[_]| {
        d.request(bank, firm, consent, cats)
    };
    let r = req(&mut d, "bank-b", f, cid, &[Tax]);
    assert_eq!(state_check(&d, &r, now), Err(DenialReason::WrongBank));
    let r = req(&mut d, "bank-a", firm(8), cid, &[Tax]);
    assert_eq!(state_check(&d, &r, now), Err(DenialReason::WrongFirm));
    let r = req(&mut d, "bank-a", f, Digest([9; 32]), &[Tax]);
    assert_eq!(state_check(&d, &r, now), Err(DenialReason::ConsentUnknown));
    let r = req(&mut d, "bank-a", f, cid, &[Tax, Utilities]);
    assert_eq!(
        state_check(&d, &r, now),
        Err(DenialReason::CategoryNotCovered)
    );
    let r = req(&mut d, "bank-a", f, cid, &[Tax]);
    assert_eq!(
        state_check(&d, &r, now - 2000),
        Err(DenialReason::ConsentNotYetValid)
    );
    assert_eq!(
        state_check(&d, &r, now + 31 * DAY_MS),
        Err(DenialReason::ConsentExpired)
    );
    assert_eq!(state_check(&d, &r, now), Ok(()));
    // Serving consumes the only use; the next is exhausted.
    let q = d.served("bank-a", f, cid, &[Tax]);
    assert_eq!(one(&mut d, q), None);
    let q = d.served("bank-a", f, cid, &[Tax]);
    assert_eq!(one(&mut d, q), Some("consent.exhausted"));
    assert_eq!(d.chain.state().consent(&cid).unwrap().unwrap().used, 1);
}

fn state_check(
    d: &Driver,
    r: &xinyi_ledger::entry::QueryRequest,
    now: u64,
) -> Result<(), DenialReason> {
    d.chain.state().check_query(r, now)
}

#[test]
fn revoked_consent_refuses_queries_and_denial_must_state_the_true_reason() {
    let (mut d, f) = setup();
    let c = d.consent(f, "bank-a", &[Tax], 5);
    let cid = c.id;
    assert_eq!(one(&mut d, c), None);
    let rev = d.firm_e(f, EntryKind::ConsentRevoked { consent: cid });
    assert_eq!(one(&mut d, rev), None);
    assert!(d.chain.state().consent(&cid).unwrap().unwrap().revoked);
    let q = d.served("bank-a", f, cid, &[Tax]);
    assert_eq!(one(&mut d, q), Some("consent.revoked"));
    // A denial with the wrong reason is refused; with the true reason it is kept.
    let req = d.request("bank-a", f, cid, &[Tax]);
    let signed = d.c.signed_query("bank-a", req).unwrap();
    let wrong = d.org(
        "gz-credit",
        EntryKind::QueryDenied {
            request: signed.clone(),
            reason: DenialReason::UsesExhausted,
        },
    );
    assert_eq!(one(&mut d, wrong), Some("state.wrong_denial"));
    let right = d.org(
        "gz-credit",
        EntryKind::QueryDenied {
            request: signed,
            reason: DenialReason::ConsentRevoked,
        },
    );
    assert_eq!(one(&mut d, right), None);
    // Revoking twice, or revoking another firm's consent, is refused.
    let again = d.firm_e(f, EntryKind::ConsentRevoked { consent: cid });
    assert_eq!(one(&mut d, again), Some("state.invalid"));
    let other = firm(9);
    let reg = d.register_firm(other);
    assert_eq!(one(&mut d, reg), None);
    let steal = d.firm_e(other, EntryKind::ConsentRevoked { consent: cid });
    assert_eq!(one(&mut d, steal), Some("state.not_owner"));
}

#[test]
fn a_bank_cannot_sign_agency_statements_and_unknown_authors_are_refused() {
    let (mut d, f) = setup();
    let e = d.org(
        "bank-a",
        EntryKind::FirmRegistered {
            firm: d.c.tag(&firm(3)),
            key: d.c.firm_key(&firm(3)).public(),
        },
    );
    assert_eq!(one(&mut d, e), Some("state.forbidden"));
    let stranger = firm(99);
    let e = d.consent(stranger, "bank-a", &[Tax], 1);
    assert_eq!(one(&mut d, e), Some("state.unknown_author"));
    // Consent naming a non-bank.
    let e = d.consent(f, "auditor", &[Tax], 1);
    assert_eq!(one(&mut d, e), Some("state.invalid"));
}

#[test]
fn replayed_and_stale_entries_are_refused() {
    let (mut d, f) = setup();
    let c = d.consent(f, "bank-a", &[Tax], 1);
    assert_eq!(one(&mut d, c.clone()), None);
    assert_eq!(one(&mut d, c), Some("state.replay"));
    let old = d.consent(f, "bank-a", &[Tax], 1);
    d.advance(11 * 60 * 1000);
    assert_eq!(one(&mut d, old), Some("state.stale_or_future"));
}

#[test]
fn bad_entry_signature_is_dropped_by_the_proposer() {
    let (mut d, f) = setup();
    let mut c = d.consent(f, "bank-a", &[Tax], 1);
    // Re-encode with a flipped signature bit: statically valid, cryptographically not.
    let mut wire: xinyi_ledger::entry::EntryWire =
        xinyi_ledger::codec::decode("entry", &c.bytes, 1 << 16).unwrap();
    wire.signature.0[3] ^= 4;
    c = xinyi_ledger::Entry::decode(&xinyi_ledger::codec::encode(&wire).unwrap()).unwrap();
    let dropped = d.block(vec![c]);
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        d.chain.log().size(),
        1,
        "nothing but the registration is in the log"
    );
}

fn publish(d: &mut Driver, f: xinyi_ledger::Uscc, sev: Severity, days: u16) -> Digest {
    let (e, record) = d.penalty(f, sev, days);
    assert_eq!(one(d, e), None);
    record
}

fn request_repair(
    d: &mut Driver,
    f: xinyi_ledger::Uscc,
    record: Digest,
) -> (xinyi_ledger::Entry, Digest) {
    let e = d.firm_e(
        f,
        EntryKind::RepairRequested {
            record,
            fulfilment: Digest([1; 32]),
            commitment_letter: Digest([2; 32]),
        },
    );
    let id = e.id;
    (e, id)
}

#[test]
fn repair_runs_requested_decided_applied_in_both_registries() {
    let (mut d, f) = setup();
    let rec = publish(&mut d, f, Severity::General, 90);
    // Too early: the general record's 90-day minimum publicity has not passed.
    let (early, _) = request_repair(&mut d, f, rec);
    assert_eq!(one(&mut d, early), Some("state.publicity_period"));
    d.advance(90 * DAY_MS);
    let (req, rid) = request_repair(&mut d, f, rec);
    assert_eq!(one(&mut d, req), None);
    // Only the publishing agency may decide; a registry cannot apply before approval.
    let early_apply = d.org("credit-china", EntryKind::RepairApplied { repair: rid });
    assert_eq!(one(&mut d, early_apply), Some("state.repair"));
    let decide = d.org(
        "gz-credit",
        EntryKind::RepairDecided {
            repair: rid,
            approved: true,
            reason: "obligations fulfilled".into(),
        },
    );
    assert_eq!(one(&mut d, decide), None);
    let bank_apply = d.org("bank-a", EntryKind::RepairApplied { repair: rid });
    assert_eq!(one(&mut d, bank_apply), Some("state.forbidden"));
    let a1 = d.org("credit-china", EntryKind::RepairApplied { repair: rid });
    assert_eq!(one(&mut d, a1), None);
    let r = d.chain.state().repair(&rid).unwrap().unwrap();
    assert_eq!(r.status, RepairStatus::Approved);
    let dup = d.org("credit-china", EntryKind::RepairApplied { repair: rid });
    assert_eq!(one(&mut d, dup), Some("state.repair"));
    let a2 = d.org("gsxt", EntryKind::RepairApplied { repair: rid });
    assert_eq!(one(&mut d, a2), None);
    let r = d.chain.state().repair(&rid).unwrap().unwrap();
    assert_eq!(r.status, RepairStatus::Applied);
    assert!(!r.overdue);
    assert!(d.chain.state().record(&rec).unwrap().unwrap().repaired);
}

#[test]
fn repair_applied_by_one_registry_is_flagged_overdue_after_the_deadline() {
    let (mut d, f) = setup();
    let rec = publish(&mut d, f, Severity::Minor, 0);
    let (req, rid) = request_repair(&mut d, f, rec);
    assert_eq!(one(&mut d, req), None);
    let decide = d.org(
        "gz-credit",
        EntryKind::RepairDecided {
            repair: rid,
            approved: true,
            reason: "ok".into(),
        },
    );
    assert_eq!(one(&mut d, decide), None);
    let a1 = d.org("gsxt", EntryKind::RepairApplied { repair: rid });
    assert_eq!(one(&mut d, a1), None);
    let r = d.chain.state().repair(&rid).unwrap().unwrap();
    let deadline = r.deadline.unwrap();
    assert!(!r.overdue);
    assert!(!r.overdue_at(deadline - 1));
    assert!(r.overdue_at(deadline));
    // The flag is set by the first block after the deadline.
    d.now = deadline + 1;
    d.block(vec![]);
    assert!(d.chain.state().repair(&rid).unwrap().unwrap().overdue);
}

#[test]
fn rejected_repair_reopens_the_record_for_a_new_request() {
    let (mut d, f) = setup();
    let rec = publish(&mut d, f, Severity::Minor, 0);
    let (req, rid) = request_repair(&mut d, f, rec);
    assert_eq!(one(&mut d, req), None);
    let (dup, _) = request_repair(&mut d, f, rec);
    assert_eq!(one(&mut d, dup), Some("state.already_exists"));
    let reject = d.org(
        "gz-credit",
        EntryKind::RepairDecided {
            repair: rid,
            approved: false,
            reason: "fine unpaid".into(),
        },
    );
    assert_eq!(one(&mut d, reject), None);
    let (again, _) = request_repair(&mut d, f, rec);
    assert_eq!(one(&mut d, again), None);
}

#[test]
fn membership_change_needs_quorum_and_takes_effect_at_its_height() {
    let mut d = Driver::new();
    let newkey = xinyi_ledger::KeyPair::from_seed([42; 32]);
    let proposal = MembershipProposal {
        change: MemberChange::RegisterOrg {
            org: OrgId::new("bank-c").unwrap(),
            name: "Bank C".into(),
            role: Role::Bank,
            key: newkey.public(),
            power: 0,
        },
        effective_height: 3,
    };
    let payload = xinyi_ledger::entry::membership_signing_payload(&d.c.chain, &proposal).unwrap();
    let approve = |who: &str, d: &Driver| Approval {
        validator: OrgId::new(who).unwrap(),
        signature: d.c.key(who).unwrap().sign(SigDomain::Membership, &payload),
    };
    // An approval by a non-validator does not count.
    let bad = d.org(
        "gz-credit",
        EntryKind::Membership(MembershipChange {
            proposal: proposal.clone(),
            approvals: vec![approve("bank-a", &d)],
        }),
    );
    assert_eq!(one(&mut d, bad), Some("state.membership"));
    let good = d.org(
        "gz-credit",
        EntryKind::Membership(MembershipChange {
            proposal: proposal.clone(),
            approvals: vec![approve("gz-credit", &d)],
        }),
    );
    assert_eq!(d.chain.height(), 1);
    // Block 2 includes it; it is not yet in force.
    assert_eq!(one(&mut d, good), None);
    assert!(d
        .chain
        .state()
        .org(&OrgId::new("bank-c").unwrap())
        .unwrap()
        .is_none());
    d.block(vec![]);
    assert_eq!(d.chain.height(), 3);
    let rec = d
        .chain
        .state()
        .org(&OrgId::new("bank-c").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rec.key, newkey.public());
    // A replica verifying the same blocks agrees.
    d.assert_replica_agrees();
}

#[test]
fn checkpoint_cosignature_must_match_the_log() {
    let (mut d, _f) = setup();
    let size = d.chain.log().size();
    let root = Digest(d.chain.log().root());
    let text = xinyi_ledger::state::checkpoint_text(&d.c.genesis.name, size, &root);
    let key = d.c.key("gz-credit").unwrap().clone();
    let sig = xinyi_ledger::Signature(
        ed25519_dalek::Signer::sign(key.signing_key(), text.as_bytes()).to_bytes(),
    );
    let wrong_root = d.org(
        "gz-credit",
        EntryKind::CheckpointCosigned {
            size,
            root: Digest([0; 32]),
            signature: sig,
        },
    );
    assert_eq!(one(&mut d, wrong_root), Some("state.checkpoint"));
    let good = d.org(
        "gz-credit",
        EntryKind::CheckpointCosigned {
            size,
            root,
            signature: sig,
        },
    );
    assert_eq!(one(&mut d, good), None);
    // The cosignature is a valid C2SP note signature over the checkpoint text.
    let signer =
        xinyi_ledger::note::NoteSigner::new(d.c.genesis.name.clone(), key.signing_key().clone())
            .unwrap();
    let note = xinyi_ledger::note::sign_checkpoint(
        &xinyi_ledger::note::Checkpoint::parse_text(&text).unwrap(),
        &[&signer],
    )
    .unwrap();
    let (cp, _) = xinyi_ledger::note::open_checkpoint(&note, &[signer.verifier_key()]).unwrap();
    assert_eq!((cp.size, cp.root), (size, root.0));
}

#[test]
fn same_blocks_give_byte_identical_state_everywhere() {
    let (mut d, f) = setup();
    let c = d.consent(f, "bank-a", &[Tax], 3);
    let cid = c.id;
    let q = d.served("bank-a", f, cid, &[Tax]);
    d.block(vec![c]);
    d.block(vec![q]);
    let (mut a, _) = xinyi_ledger::Chain::from_genesis(&d.c.genesis).unwrap();
    let (mut b, _) = xinyi_ledger::Chain::from_genesis(&d.c.genesis).unwrap();
    for blk in &d.blocks {
        a.apply_block(blk.block.clone(), blk.certificate.clone())
            .unwrap();
        b.apply_block(blk.block.clone(), blk.certificate.clone())
            .unwrap();
    }
    let kv_a: Vec<_> = a.state().iter().collect();
    let kv_b: Vec<_> = b.state().iter().collect();
    assert_eq!(kv_a, kv_b);
    assert_eq!(a.state_head().root, d.chain.state_head().root);
}

#[test]
fn validator_set_change_and_key_rotation_take_effect_at_their_height() {
    let mut d = Driver::new();
    let k2 = xinyi_ledger::KeyPair::from_seed([7; 32]);
    let sign_all = |d: &Driver, p: &MembershipProposal| {
        let payload = xinyi_ledger::entry::membership_signing_payload(&d.c.chain, p).unwrap();
        vec![Approval {
            validator: OrgId::new("gz-credit").unwrap(),
            signature: d
                .c
                .key("gz-credit")
                .unwrap()
                .sign(SigDomain::Membership, &payload),
        }]
    };
    let p = MembershipProposal {
        change: MemberChange::RegisterOrg {
            org: OrgId::new("agency-2").unwrap(),
            name: "Second agency".into(),
            role: Role::Agency,
            key: k2.public(),
            power: 1,
        },
        effective_height: 3,
    };
    let approvals = sign_all(&d, &p);
    let e = d.org(
        "gz-credit",
        EntryKind::Membership(MembershipChange {
            proposal: p,
            approvals,
        }),
    );
    assert_eq!(one(&mut d, e), None); // height 1
    d.block(vec![]); // height 2, still one validator
    assert_eq!(d.chain.state().validators().unwrap().validators.len(), 1);
    // Height 3: two validators of power 1 each; quorum is 2, so gz-credit alone cannot certify.
    let (block, _) = d
        .chain
        .build_block(d.now + 10, OrgId::new("gz-credit").unwrap(), vec![])
        .unwrap();
    let set = d.chain.pending_validators().unwrap();
    assert_eq!(set.validators.len(), 2);
    assert_eq!(set.quorum(), 2);
    let alone = d.c.certify(&block).unwrap();
    assert_eq!(
        d.chain.commit_built(alone.clone()).unwrap_err().kind.code(),
        "cert.below_quorum"
    );
    let hh = block.header.hash().unwrap();
    let mut both = alone;
    both.votes.insert(
        0,
        xinyi_ledger::block::sign_commit(&k2, OrgId::new("agency-2").unwrap(), &d.c.chain, 3, &hh),
    );
    let committed = d.chain.commit_built(both).unwrap();
    d.blocks.push(committed);
    // Rotate agency-2's key from height 5 on (approved by both validators).
    let k2b = xinyi_ledger::KeyPair::from_seed([8; 32]);
    let p = MembershipProposal {
        change: MemberChange::RotateKey {
            org: OrgId::new("agency-2").unwrap(),
            key: k2b.public(),
        },
        effective_height: 5,
    };
    let payload = xinyi_ledger::entry::membership_signing_payload(&d.c.chain, &p).unwrap();
    let approvals = vec![
        Approval {
            validator: OrgId::new("agency-2").unwrap(),
            signature: k2.sign(SigDomain::Membership, &payload),
        },
        Approval {
            validator: OrgId::new("gz-credit").unwrap(),
            signature: d
                .c
                .key("gz-credit")
                .unwrap()
                .sign(SigDomain::Membership, &payload),
        },
    ];
    let e = d.org(
        "gz-credit",
        EntryKind::Membership(MembershipChange {
            proposal: p,
            approvals,
        }),
    );
    for (h, key) in [(4u64, &k2), (5, &k2b)] {
        d.now += 10;
        let entries = if h == 4 { vec![e.clone()] } else { vec![] };
        let (block, dropped) = d
            .chain
            .build_block(d.now, OrgId::new("gz-credit").unwrap(), entries)
            .unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        let hh = block.header.hash().unwrap();
        let mut cert = d.c.certify(&block).unwrap();
        cert.votes.insert(
            0,
            xinyi_ledger::block::sign_commit(
                key,
                OrgId::new("agency-2").unwrap(),
                &d.c.chain,
                h,
                &hh,
            ),
        );
        let committed = d.chain.commit_built(cert).unwrap();
        d.blocks.push(committed);
    }
    // A replica accepts exactly these certificates.
    d.assert_replica_agrees();
}

#[test]
fn one_signed_request_is_answered_only_once() {
    let (mut d, f) = setup();
    let c = d.consent(f, "bank-a", &[Tax], 5);
    let cid = c.id;
    assert_eq!(one(&mut d, c), None);
    let req = d.request("bank-a", f, cid, &[Tax]);
    let signed = d.c.signed_query("bank-a", req).unwrap();
    let serve = |d: &mut Driver| {
        d.org(
            "gz-credit",
            EntryKind::QueryServed(xinyi_ledger::entry::QueryRecord {
                request: signed.clone(),
                response: Digest([5; 32]),
                records: vec![],
            }),
        )
    };
    let first = serve(&mut d);
    assert_eq!(one(&mut d, first), None);
    // A second record of the same bank request (new agency nonce) is a replay.
    let second = serve(&mut d);
    assert_eq!(one(&mut d, second), Some("state.replay"));
    assert_eq!(d.chain.state().consent(&cid).unwrap().unwrap().used, 1);
    // A request signed long ago is stale.
    let mut old = d.request("bank-a", f, cid, &[Tax]);
    old.time -= 11 * 60 * 1000;
    let signed_old = d.c.signed_query("bank-a", old).unwrap();
    let e = d.org(
        "gz-credit",
        EntryKind::QueryServed(xinyi_ledger::entry::QueryRecord {
            request: signed_old,
            response: Digest([5; 32]),
            records: vec![],
        }),
    );
    assert_eq!(one(&mut d, e), Some("state.stale_or_future"));
}

#[test]
fn only_the_registering_agency_may_rotate_a_firms_key() {
    let c = xinyi_ledger::sample::SampleConsortium::new(b"test", 2, T0);
    let (chain, _) = xinyi_ledger::Chain::from_genesis(&c.genesis).unwrap();
    let mut d = Driver {
        c,
        chain,
        blocks: vec![],
        now: T0 + 1000,
        nonce: 0,
    };
    let f = firm(4);
    let reg = d.register_firm(f);
    // Two validators: certify() signs with both.
    assert_eq!(one(&mut d, reg), None);
    let thief = xinyi_ledger::KeyPair::from_seed([66; 32]);
    let e = d.org(
        "agency-2",
        EntryKind::FirmRegistered {
            firm: d.c.tag(&f),
            key: thief.public(),
        },
    );
    assert_eq!(one(&mut d, e), Some("state.not_owner"));
    let rotate = d.org(
        "gz-credit",
        EntryKind::FirmRegistered {
            firm: d.c.tag(&f),
            key: thief.public(),
        },
    );
    assert_eq!(one(&mut d, rotate), None);
    assert_eq!(
        d.chain.state().firm(&d.c.tag(&f)).unwrap().unwrap().key,
        thief.public()
    );
}

#[test]
fn excessive_voting_power_is_rejected_statically() {
    let d = Driver::new();
    let p = MembershipProposal {
        change: MemberChange::SetPower {
            org: OrgId::new("gz-credit").unwrap(),
            power: u64::MAX,
        },
        effective_height: 5,
    };
    let e = d.c.org_entry(
        "gz-credit",
        d.now,
        1,
        EntryKind::Membership(MembershipChange {
            proposal: p,
            approvals: vec![Approval {
                validator: OrgId::new("gz-credit").unwrap(),
                signature: xinyi_ledger::Signature([0; 64]),
            }],
        }),
    );
    assert_eq!(e.unwrap_err().code(), "entry.field");
}

/// A firm-key rotation (privacy.md §8) is approved by a quorum like any membership change, names
/// the next epoch only, takes effect at its height (recorded at once, in force from there), and
/// two rotations must be ordered by height; a replica replaying the blocks agrees.
#[test]
fn firm_key_rotation_is_quorum_approved_numbered_and_in_force_from_its_height() {
    let mut d = Driver::new();
    let change = |epoch: u32, key: u8, at: u64| MembershipProposal {
        change: MemberChange::RotateFirmKey {
            epoch,
            key_id: xinyi_ledger::FirmKey::from_bytes([key; 32]).id(),
        },
        effective_height: at,
    };
    let rotation = |d: &mut Driver, epoch: u32, key: u8, at: u64, signer: &str| {
        let p = change(epoch, key, at);
        let payload = xinyi_ledger::entry::membership_signing_payload(&d.c.chain, &p).unwrap();
        let approvals = vec![Approval {
            validator: OrgId::new(signer).unwrap(),
            signature: d
                .c
                .key(signer)
                .unwrap()
                .sign(SigDomain::Membership, &payload),
        }];
        d.org(
            "gz-credit",
            EntryKind::Membership(MembershipChange {
                proposal: p,
                approvals,
            }),
        )
    };
    // Epoch 2 before epoch 1, and an approval by a non-validator, are refused.
    let skip = rotation(&mut d, 2, 2, 5, "gz-credit");
    assert_eq!(one(&mut d, skip), Some("state.membership"));
    let outsider = rotation(&mut d, 1, 1, 5, "bank-a");
    assert_eq!(one(&mut d, outsider), Some("state.membership"));
    assert_eq!(d.chain.state().firm_key_epochs().unwrap(), vec![]);
    let h = d.chain.state_head().height;
    let e1 = rotation(&mut d, 1, 1, h + 3, "gz-credit");
    assert_eq!(one(&mut d, e1), None);
    let epochs = d.chain.state().firm_key_epochs().unwrap();
    assert_eq!(epochs.len(), 1);
    assert_eq!(epochs[0].epoch, 1);
    assert_eq!(
        epochs[0].key_id,
        xinyi_ledger::FirmKey::from_bytes([1; 32]).id()
    );
    assert_eq!(epochs[0].from_height, h + 3);
    let s = d.chain.state();
    assert_eq!(s.firm_key_epoch_at(h + 2).unwrap(), 0);
    assert_eq!(s.firm_key_epoch_at(h + 3).unwrap(), 1);
    // Epoch 1 again is refused; epoch 2 must take effect above epoch 1's height.
    let again = rotation(&mut d, 1, 3, h + 9, "gz-credit");
    assert_eq!(one(&mut d, again), Some("state.membership"));
    let early = rotation(&mut d, 2, 2, h + 3, "gz-credit");
    assert_eq!(one(&mut d, early), Some("state.membership"));
    let e2 = rotation(&mut d, 2, 2, h + 20, "gz-credit");
    assert_eq!(one(&mut d, e2), None);
    let s = d.chain.state();
    assert_eq!(s.firm_key_epoch_at(h + 19).unwrap(), 1);
    assert_eq!(s.firm_key_epoch_at(h + 20).unwrap(), 2);
    // Epoch 0 is the genesis key: statically refused.
    let zero = EntryKind::Membership(MembershipChange {
        proposal: change(0, 4, h + 40),
        approvals: vec![Approval {
            validator: OrgId::new("gz-credit").unwrap(),
            signature: xinyi_ledger::Signature([0; 64]),
        }],
    });
    assert_eq!(
        d.c.org_entry("gz-credit", d.now, 1, zero)
            .unwrap_err()
            .code(),
        "entry.field"
    );
    d.assert_replica_agrees();
}
