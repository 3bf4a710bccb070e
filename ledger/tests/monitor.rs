//! Monitoring rules (`specs/state.md` §4.19–§4.20): a consent's monitoring scope, the trigger
//! records of monitored firms, and `alerts_delivered` batches checked against both, through the
//! real block path (and the offline verifier).

mod common;
use common::*;
use xinyi_ledger::codec;
use xinyi_ledger::entry::{Consent, EntryKind};
use xinyi_ledger::hash::{self, Domain};
use xinyi_ledger::monitor::{alert_id, Alert, AlertBatch, MonitorCategory, Monitoring};
use xinyi_ledger::types::Category::*;
use xinyi_ledger::types::{Severity, DAY_MS};
use xinyi_ledger::verify::verify_bundle;
use xinyi_ledger::{Digest, Entry, OrgId, Uscc};

fn one(d: &mut Driver, e: Entry) -> Option<&'static str> {
    d.block(vec![e]).first().map(|x| x.reason.code())
}

fn monitoring_consent(
    d: &mut Driver,
    f: Uscc,
    bank: &str,
    scope: Option<&[MonitorCategory]>,
    days: u64,
) -> Digest {
    let now = d.now;
    let e = d.firm_e(
        f,
        EntryKind::ConsentGranted(Consent {
            bank: OrgId::new(bank).unwrap(),
            purpose: Consent::purpose_digest(&[0x5a; 32], "post-loan monitoring"),
            categories: vec![Registration],
            not_before: now - 1000,
            not_after: now + days * DAY_MS,
            max_uses: 1,
            monitoring: scope.map(|c| Monitoring {
                categories: c.to_vec(),
            }),
        }),
    );
    let id = e.id;
    assert_eq!(one(d, e), None, "consent refused");
    id
}

/// Publishes a penalty about `f`; returns the entry id and its log position.
fn penalty(d: &mut Driver, f: Uscc) -> (Digest, u64) {
    let (e, _) = d.penalty(f, Severity::Minor, 0);
    let id = e.id;
    let pos = d.chain.log().size();
    assert_eq!(one(d, e), None, "record refused");
    (id, pos)
}

fn alert(consent: Digest, trigger: Digest, position: u64, cat: MonitorCategory) -> Alert {
    Alert {
        alert: alert_id(&consent, &trigger),
        consent,
        trigger,
        position,
        category: cat,
        content: hash::tagged(Domain::Data, &[b"alert content"]),
    }
}

fn batch(d: &mut Driver, author: &str, bank: &str, f: Uscc, alerts: Vec<Alert>) -> Entry {
    let firm = d.c.tag(&f);
    d.org(
        author,
        EntryKind::AlertsDelivered(AlertBatch {
            bank: OrgId::new(bank).unwrap(),
            firm,
            alerts,
        }),
    )
}

fn setup() -> (Driver, Uscc) {
    let mut d = Driver::new();
    let f = firm(7);
    let reg = d.register_firm(f);
    assert!(d.block(vec![reg]).is_empty());
    (d, f)
}

fn access_count(d: &Driver, f: Uscc) -> u64 {
    let tag = d.c.tag(&f);
    d.chain
        .state()
        .access_proof(&tag)
        .unwrap()
        .and_then(|p| p.value)
        .map_or(0, |v| v.count)
}

#[test]
fn an_alert_under_a_monitoring_consent_is_logged_once_and_is_an_access() {
    let (mut d, f) = setup();
    let cid = monitoring_consent(&mut d, f, "bank-a", Some(&[MonitorCategory::Penalties]), 30);
    assert_eq!(d.chain.state().monitoring_consents(&d.c.tag(&f)), vec![cid]);
    let (trigger, pos) = penalty(&mut d, f);
    let t = d
        .chain
        .state()
        .trigger(&trigger)
        .unwrap()
        .expect("trigger recorded");
    assert_eq!((t.position, t.category), (pos, MonitorCategory::Penalties));
    assert_eq!(access_count(&d, f), 0);
    let a = alert(cid, trigger, pos, MonitorCategory::Penalties);
    let aid = a.alert;
    let e = batch(&mut d, "gz-credit", "bank-a", f, vec![a.clone()]);
    let eid = e.id;
    assert_eq!(one(&mut d, e), None);
    assert_eq!(d.chain.state().alert_delivery(&aid), Some(eid));
    assert_eq!(
        access_count(&d, f),
        1,
        "a delivery joins the firm's access chain"
    );
    // The same alert again (another entry): refused.
    let again = batch(&mut d, "gz-credit", "bank-a", f, vec![a]);
    assert_eq!(one(&mut d, again), Some("monitor.already_delivered"));
    // A bank cannot log deliveries; only agencies.
    let (t2, p2) = penalty(&mut d, f);
    let by_bank = batch(
        &mut d,
        "bank-a",
        "bank-a",
        f,
        vec![alert(cid, t2, p2, MonitorCategory::Penalties)],
    );
    assert_eq!(one(&mut d, by_bank), Some("state.forbidden"));
    // The offline verifier replays the same rules.
    let bundle = d.bundle();
    verify_bundle(&d.c.genesis, bundle.as_slice(), |_, _| {}).unwrap();
}

#[test]
fn revoked_consent_stops_alerts_and_later_records_are_not_triggers() {
    let (mut d, f) = setup();
    let cid = monitoring_consent(&mut d, f, "bank-a", Some(&[MonitorCategory::Penalties]), 30);
    let (trigger, pos) = penalty(&mut d, f);
    let revoke = d.firm_e(f, EntryKind::ConsentRevoked { consent: cid });
    assert_eq!(one(&mut d, revoke), None);
    assert!(d.chain.state().monitoring_consents(&d.c.tag(&f)).is_empty());
    let late = batch(
        &mut d,
        "gz-credit",
        "bank-a",
        f,
        vec![alert(cid, trigger, pos, MonitorCategory::Penalties)],
    );
    assert_eq!(one(&mut d, late), Some("monitor.revoked"));
    let (t2, p2) = penalty(&mut d, f);
    assert!(
        d.chain.state().trigger(&t2).unwrap().is_none(),
        "no monitoring consent left: the record is no trigger"
    );
    let e = batch(
        &mut d,
        "gz-credit",
        "bank-a",
        f,
        vec![alert(cid, t2, p2, MonitorCategory::Penalties)],
    );
    assert_eq!(one(&mut d, e), Some("monitor.revoked"));
    assert_eq!(access_count(&d, f), 0);
}

#[test]
fn expired_out_of_scope_wrong_bank_and_forged_alerts_are_refused() {
    let (mut d, f) = setup();
    let short = monitoring_consent(&mut d, f, "bank-a", Some(&[MonitorCategory::Penalties]), 1);
    let grades_only = monitoring_consent(&mut d, f, "bank-a", Some(&[MonitorCategory::Grades]), 30);
    let plain = monitoring_consent(&mut d, f, "bank-b", None, 30);
    let (trigger, pos) = penalty(&mut d, f);
    let refused = |d: &mut Driver, bank: &str, a: Alert| {
        let e = batch(d, "gz-credit", bank, f, vec![a]);
        one(d, e)
    };
    use MonitorCategory::*;
    // Out of scope: the consent watches grades only; the other has no monitoring at all.
    assert_eq!(
        refused(
            &mut d,
            "bank-a",
            alert(grades_only, trigger, pos, Penalties)
        ),
        Some("monitor.not_monitored")
    );
    assert_eq!(
        refused(&mut d, "bank-b", alert(plain, trigger, pos, Penalties)),
        Some("monitor.not_monitored")
    );
    // Wrong bank: bank-b names bank-a's consent.
    assert_eq!(
        refused(&mut d, "bank-b", alert(short, trigger, pos, Penalties)),
        Some("monitor.wrong_bank")
    );
    // A trigger that is not what the alert says, or no trigger at all.
    assert_eq!(
        refused(&mut d, "bank-a", alert(short, trigger, pos + 1, Penalties)),
        Some("monitor.trigger_mismatch")
    );
    assert_eq!(
        refused(
            &mut d,
            "bank-a",
            alert(short, Digest([9; 32]), pos, Penalties)
        ),
        Some("monitor.trigger_mismatch")
    );
    let mut forged = alert(short, trigger, pos, Penalties);
    forged.alert = Digest([3; 32]);
    assert_eq!(
        refused(&mut d, "bank-a", forged),
        Some("monitor.bad_alert_id")
    );
    assert_eq!(
        refused(
            &mut d,
            "bank-a",
            alert(Digest([4; 32]), trigger, pos, Penalties)
        ),
        Some("monitor.consent_unknown")
    );
    // Another firm's consent.
    let g = firm(8);
    let reg = d.register_firm(g);
    assert_eq!(one(&mut d, reg), None);
    let e = batch(
        &mut d,
        "gz-credit",
        "bank-a",
        g,
        vec![alert(short, trigger, pos, Penalties)],
    );
    assert_eq!(one(&mut d, e), Some("monitor.wrong_firm"));
    // A trigger from before the consent: a new consent does not reach back.
    let newer = monitoring_consent(&mut d, f, "bank-a", Some(&[Penalties]), 30);
    assert_eq!(
        refused(&mut d, "bank-a", alert(newer, trigger, pos, Penalties)),
        Some("monitor.trigger_before_consent")
    );
    // Expired: after the one-day window the alert is refused at that block time.
    d.advance(DAY_MS);
    assert_eq!(
        refused(&mut d, "bank-a", alert(short, trigger, pos, Penalties)),
        Some("monitor.expired")
    );
    assert_eq!(access_count(&d, f), 0, "no refused delivery is an access");
    // Static rules: empty batch, unsorted alerts.
    let empty = AlertBatch {
        bank: OrgId::new("bank-a").unwrap(),
        firm: d.c.tag(&f),
        alerts: vec![],
    };
    let n = d.nonce();
    assert!(d
        .c
        .org_entry("gz-credit", d.now, n, EntryKind::AlertsDelivered(empty))
        .is_err());
}

#[test]
fn a_batch_with_one_refused_alert_is_refused_whole() {
    let (mut d, f) = setup();
    let a = monitoring_consent(&mut d, f, "bank-a", Some(&[MonitorCategory::Penalties]), 30);
    let (t1, p1) = penalty(&mut d, f);
    let (t2, p2) = penalty(&mut d, f);
    let mut alerts = vec![
        alert(a, t1, p1, MonitorCategory::Penalties),
        alert(a, t2, p2 + 5, MonitorCategory::Penalties),
    ];
    alerts.sort_by_key(|x| x.alert);
    let e = batch(&mut d, "gz-credit", "bank-a", f, alerts);
    assert_eq!(one(&mut d, e), Some("monitor.trigger_mismatch"));
    let first = alert(a, t1, p1, MonitorCategory::Penalties).alert;
    assert_eq!(d.chain.state().alert_delivery(&first), None);
}

#[test]
fn consents_without_monitoring_keep_their_old_encoding() {
    #[derive(serde::Serialize)]
    struct OldConsent {
        bank: OrgId,
        purpose: Digest,
        categories: Vec<xinyi_ledger::Category>,
        not_before: u64,
        not_after: u64,
        max_uses: u32,
    }
    let old = OldConsent {
        bank: OrgId::new("bank-a").unwrap(),
        purpose: Digest([7; 32]),
        categories: vec![Tax],
        not_before: 1,
        not_after: 2,
        max_uses: 3,
    };
    let old_bytes = codec::encode(&old).unwrap();
    let c: Consent = codec::decode("consent", &old_bytes, 1024).unwrap();
    assert_eq!(c.monitoring, None);
    assert_eq!(codec::encode(&c).unwrap(), old_bytes);
    // With a scope the map gains key 6; an explicit null there is not canonical.
    let mut with = c.clone();
    with.monitoring = Some(Monitoring {
        categories: vec![MonitorCategory::Penalties, MonitorCategory::Repairs],
    });
    let bytes = codec::encode(&with).unwrap();
    assert_eq!(bytes[0], 0xa7, "a 7-entry map");
    assert_eq!(
        codec::decode::<Consent>("consent", &bytes, 1024).unwrap(),
        with
    );
    let mut null = old_bytes.clone();
    null[0] = 0xa7;
    null.extend_from_slice(&[0x06, 0xf6]);
    assert_eq!(
        codec::decode::<Consent>("consent", &null, 1024)
            .unwrap_err()
            .code(),
        "codec.non_canonical"
    );
}
