//! Erasure and retention rules: which `data_erased` entries the ledger keeps (the reason checked
//! against the consent or record it names, with the typed `erasure.*` refusals), the erasure
//! index, and records that stop being shown when their category's retention ends, at block time.

mod common;
use common::*;
use xinyi_ledger::entry::{EntryKind, Erasure, ErasureReason};
use xinyi_ledger::genesis::{Params, Retention};
use xinyi_ledger::sample::SampleConsortium;
use xinyi_ledger::types::Category::{self, *};
use xinyi_ledger::types::{Severity, DAY_MS};
use xinyi_ledger::{Digest, Uscc};

fn one(d: &mut Driver, e: xinyi_ledger::Entry) -> Option<&'static str> {
    d.block(vec![e]).first().map(|x| x.reason.code())
}

/// Applies an erasure in a block of its own: `None` if kept, else the refusal's code.
fn outcome(
    d: &mut Driver,
    agency: &str,
    f: Uscc,
    categories: &[Category],
    reason: ErasureReason,
    reference: Option<Digest>,
) -> Option<&'static str> {
    let e = erase(d, agency, f, categories, reason, reference);
    one(d, e)
}

fn erase(
    d: &mut Driver,
    agency: &str,
    f: Uscc,
    categories: &[Category],
    reason: ErasureReason,
    reference: Option<Digest>,
) -> xinyi_ledger::Entry {
    let firm = d.c.tag(&f);
    d.org(
        agency,
        EntryKind::DataErased(Erasure {
            firm,
            categories: categories.to_vec(),
            reason,
            reference,
        }),
    )
}

#[test]
fn an_agency_erases_and_the_index_names_each_category() {
    let mut d = Driver::new();
    let f = firm(3);
    let reg = d.register_firm(f);
    assert!(d.block(vec![reg]).is_empty());
    let e = erase(
        &mut d,
        "gz-credit",
        f,
        &[Registration, Tax],
        ErasureReason::SubjectRequest,
        None,
    );
    let id = e.id;
    assert_eq!(one(&mut d, e), None);
    let idx = d.chain.state().erasures(&d.c.tag(&f));
    let got: Vec<_> = idx
        .iter()
        .map(|x| (x.category, x.agency.as_str().to_string(), x.entry))
        .collect();
    assert_eq!(
        got,
        vec![
            (Registration, "gz-credit".to_string(), id),
            (Tax, "gz-credit".to_string(), id)
        ]
    );
    assert!(d.chain.state().erasures(&d.c.tag(&firm(4))).is_empty());
    // Only an agency may erase.
    assert_eq!(
        outcome(&mut d, "bank-a", f, &[Tax], ErasureReason::LegalOrder, None),
        Some("state.forbidden")
    );
    d.assert_replica_agrees();
}

#[test]
fn a_reason_that_needs_a_reference_is_refused_without_one() {
    let d = Driver::new();
    let f = firm(3);
    let firm = d.c.tag(&f);
    for reason in [
        ErasureReason::ConsentWithdrawn,
        ErasureReason::PurposeEnded,
        ErasureReason::RecordRepaired,
    ] {
        let err =
            d.c.org_entry(
                "gz-credit",
                d.now,
                1,
                EntryKind::DataErased(Erasure {
                    firm,
                    categories: vec![Tax],
                    reason,
                    reference: None,
                }),
            )
            .unwrap_err();
        assert!(err.to_string().contains("reference"), "{reason:?}: {err}");
    }
    // Categories must be canonical, like a consent's.
    let err =
        d.c.org_entry(
            "gz-credit",
            d.now,
            1,
            EntryKind::DataErased(Erasure {
                firm,
                categories: vec![Tax, Registration],
                reason: ErasureReason::LegalOrder,
                reference: None,
            }),
        )
        .unwrap_err();
    assert!(err.to_string().contains("canonical"), "{err}");
}

#[test]
fn consent_reasons_are_checked_against_the_consent() {
    let mut d = Driver::new();
    let f = firm(7);
    let cid = d.consented_firm(f, "bank-a", &[Registration, Tax], 1);
    // Withdrawn: only once the firm revoked it.
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Tax],
            ErasureReason::ConsentWithdrawn,
            Some(cid)
        ),
        Some("erasure.consent_not_revoked")
    );
    // Purpose ended: not while the consent has uses left inside its window.
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Tax],
            ErasureReason::PurposeEnded,
            Some(cid)
        ),
        Some("erasure.consent_in_force")
    );
    // Another firm's erasure cannot lean on this consent.
    let other = d.register_firm(firm(8));
    assert!(d.block(vec![other]).is_empty());
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            firm(8),
            &[Tax],
            ErasureReason::PurposeEnded,
            Some(cid)
        ),
        Some("erasure.other_firm")
    );
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Tax],
            ErasureReason::PurposeEnded,
            Some(Digest([9; 32]))
        ),
        Some("erasure.reference_unknown")
    );
    // Its only use spent: the purpose has ended.
    let q = d.served("bank-a", f, cid, &[Tax]);
    assert_eq!(one(&mut d, q), None);
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Tax],
            ErasureReason::PurposeEnded,
            Some(cid)
        ),
        None
    );
    // Revoked: withdrawn now holds.
    let revoke = d.firm_e(f, EntryKind::ConsentRevoked { consent: cid });
    assert_eq!(one(&mut d, revoke), None);
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Registration, Tax],
            ErasureReason::ConsentWithdrawn,
            Some(cid)
        ),
        None
    );
    d.assert_replica_agrees();
}

#[test]
fn record_reasons_are_checked_against_the_record() {
    let mut d = Driver::with(SampleConsortium::new(b"test", 2, T0));
    let f = firm(7);
    let reg = d.register_firm(f);
    assert!(d.block(vec![reg]).is_empty());
    let (p, rec) = d.penalty(f, Severity::Minor, 0);
    assert_eq!(one(&mut d, p), None);
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Penalties],
            ErasureReason::RecordRepaired,
            Some(rec)
        ),
        Some("erasure.record_not_repaired")
    );
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Penalties],
            ErasureReason::RetentionEnded,
            Some(rec)
        ),
        Some("erasure.record_still_shown")
    );
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Tax],
            ErasureReason::RecordRepaired,
            Some(rec)
        ),
        Some("erasure.category_not_erased")
    );
    assert_eq!(
        outcome(
            &mut d,
            "agency-2",
            f,
            &[Penalties],
            ErasureReason::RecordRepaired,
            Some(rec)
        ),
        Some("erasure.not_publisher")
    );
    // Repair it in both registries; then the publisher may erase it.
    let req = d.firm_e(
        f,
        EntryKind::RepairRequested {
            record: rec,
            fulfilment: Digest([1; 32]),
            commitment_letter: Digest([2; 32]),
        },
    );
    let rid = req.id;
    assert_eq!(one(&mut d, req), None);
    let decide = d.org(
        "gz-credit",
        EntryKind::RepairDecided {
            repair: rid,
            approved: true,
            reason: "obligations fulfilled".into(),
        },
    );
    assert_eq!(one(&mut d, decide), None);
    for registry in ["credit-china", "gsxt"] {
        let a = d.org(registry, EntryKind::RepairApplied { repair: rid });
        assert_eq!(one(&mut d, a), None);
    }
    let record = d.chain.state().record(&rec).unwrap().unwrap();
    assert!(!record.shown(), "a repaired record is not shown");
    assert_eq!(
        outcome(
            &mut d,
            "gz-credit",
            f,
            &[Penalties],
            ErasureReason::RecordRepaired,
            Some(rec)
        ),
        None
    );
    d.assert_replica_agrees();
}

fn retention_params(days: u32) -> Params {
    Params {
        retention: vec![Retention {
            category: Penalties,
            days,
        }],
        ..Params::default()
    }
}

#[test]
fn a_record_stops_being_shown_when_its_retention_ends_at_block_time() {
    let c = SampleConsortium::new(b"test", 1, T0).with_params(retention_params(30));
    let mut d = Driver::with(c);
    let f = firm(7);
    let reg = d.register_firm(f);
    assert!(d.block(vec![reg]).is_empty());
    let (p, rec) = d.penalty(f, Severity::Minor, 0);
    assert_eq!(one(&mut d, p), None);
    let published_at = d.chain.state().record(&rec).unwrap().unwrap().published_at;
    // One millisecond before the end: still shown (the block time decides, nothing else).
    d.now = published_at + 30 * DAY_MS - 11;
    assert!(d.block(vec![]).is_empty());
    let r = d.chain.state().record(&rec).unwrap().unwrap();
    assert!(r.shown() && r.expired_at.is_none());
    let early = erase(
        &mut d,
        "gz-credit",
        f,
        &[Penalties],
        ErasureReason::RetentionEnded,
        Some(rec),
    );
    // This block's time is past the end: the record expires at its start, then the erasure
    // holds.
    assert_eq!(one(&mut d, early), None);
    let r = d.chain.state().record(&rec).unwrap().unwrap();
    assert!(d.now >= published_at + 30 * DAY_MS);
    assert_eq!(r.expired_at, Some(d.now));
    assert!(!r.shown());
    d.assert_replica_agrees();
}

#[test]
fn retention_changes_the_chain_id_only_when_set_and_is_validated() {
    let plain = SampleConsortium::new(b"test", 1, T0);
    // No retention: the genesis encodes as before (the vectors' chain id is unchanged).
    let json = plain.genesis.to_json();
    assert!(!json.contains("retention"), "{json}");
    let with = SampleConsortium::new(b"test", 1, T0).with_params(retention_params(30));
    assert_ne!(plain.chain, with.chain);
    let mut g = with.genesis.clone();
    g.params.retention[0].days = 0;
    assert!(g.validate().unwrap_err().to_string().contains("1-36500"));
    let mut g = with.genesis.clone();
    g.params.retention = vec![
        Retention {
            category: Tax,
            days: 5,
        },
        Retention {
            category: Penalties,
            days: 5,
        },
    ];
    assert!(g.validate().unwrap_err().to_string().contains("sorted"));
    // The JSON form round-trips through the file parser.
    let back = xinyi_ledger::Genesis::from_json(with.genesis.to_json().as_bytes()).unwrap();
    assert_eq!(back.chain_id().unwrap(), with.chain);
}
