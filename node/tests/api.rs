//! In-process API tests over a temp-dir dev node: the consent → query → denial flow with proof
//! verification, bad input that must write nothing, the repair workflow with an injected clock,
//! access-log authorization, rate limiting, restart, and one real-socket request.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use xinyi_ledger::entry::Author;
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::merkle::{leaf_hash, verify_inclusion, Hash};
use xinyi_ledger::note::{open_checkpoint, VerifierKey};
use xinyi_ledger::Category::{self, *};
use xinyi_ledger::EntryKind;

fn proof(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

/// Verifies a write answer: the checkpoint is signed by the node key and the entry at
/// `position` (fetched separately) is included under the checkpoint's root.
async fn verify_record(t: &T, rec: &Value) {
    let vk = VerifierKey::new(
        xinyi_node::dev::DEV_NAME,
        t.setup.node_key.public().verifying_key().unwrap(),
    )
    .unwrap();
    let (cp, _) = open_checkpoint(rec["checkpoint"].as_str().unwrap(), &[vk]).unwrap();
    let pos = rec["position"].as_u64().unwrap();
    let e = t.get_audited(&format!("/v1/entries/{pos}")).await;
    assert_eq!(e.status, 200, "{}", e.text);
    assert_eq!(e.body["id"], rec["id"]);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(e.body["entry"].as_str().unwrap())
        .unwrap();
    let leaf = leaf_hash(&bytes);
    verify_inclusion(
        &leaf,
        pos,
        cp.size,
        &proof(&rec["inclusion_proof"]),
        &cp.root,
    )
    .expect("inclusion proof verifies against the signed checkpoint");
    // A wrong leaf must not verify (the check can fail).
    let mut bad = leaf;
    bad[0] ^= 1;
    assert!(verify_inclusion(
        &bad,
        pos,
        cp.size,
        &proof(&rec["inclusion_proof"]),
        &cp.root
    )
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_query_denials_and_access_log() {
    let t = start();
    let (firm, firm_key) = t.firm(0);
    let grant = t.consent_entry(0, "bank-a", &[Registration, Tax], 2);
    let r = t.post("/v1/consents", &write_body(&grant)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["kind"], "consent_granted");
    verify_record(&t, &r.body).await;
    let c = t.get_audited(&format!("/v1/consents/{cid}")).await;
    assert_eq!(c.body["used"], 0);
    assert_eq!(c.body["bank"], "bank-a");
    assert_eq!(c.body["categories"], json!(["registration", "tax"]));

    // 1. bank A, in scope: served with data, digest and proof.
    let q = t
        .post("/v1/queries", &t.query("bank-a", 0, &cid, &[Tax]))
        .await;
    assert_eq!(q.status, 200, "{}", q.text);
    assert!(q.body["data"]["tax"].is_object());
    assert!(q.body["data"].get("registration").is_none());
    let salt: [u8; 32] = hex::decode(q.body["salt"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let digest = hash::salted(&salt, &serde_json::to_vec(&q.body["data"]).unwrap());
    assert_eq!(q.body["response_digest"], json!(digest.to_hex()));
    assert_eq!(q.body["record"]["kind"], "query_served");
    verify_record(&t, &q.body["record"]).await;
    // The committed record carries that digest.
    let e = t
        .get_audited(&format!("/v1/entries/{}", q.body["record"]["position"]))
        .await;
    assert_eq!(
        e.body["body"]["kind"]["query_served"]["response"],
        json!(digest.to_hex())
    );

    // 2. bank B under A's consent: 403 and a committed denial.
    let before = t.log_size().await;
    let d = t
        .post("/v1/queries", &t.query("bank-b", 0, &cid, &[Tax]))
        .await;
    assert_eq!(d.status, 403, "{}", d.text);
    assert_eq!(d.body["code"], "consent.wrong_bank");
    assert_eq!(d.body["denial"]["kind"], "query_denied");
    verify_record(&t, &d.body["denial"]).await;
    assert_eq!(t.log_size().await, before + 1);

    // 3. out of scope.
    let d = t
        .post("/v1/queries", &t.query("bank-a", 0, &cid, &[Licences]))
        .await;
    assert_eq!(d.status, 403);
    assert_eq!(d.body["code"], "consent.category_not_covered");

    // 4. second use, then exhausted.
    let q = t
        .post(
            "/v1/queries",
            &t.query("bank-a", 0, &cid, &[Registration, Tax]),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.text);
    let d = t
        .post("/v1/queries", &t.query("bank-a", 0, &cid, &[Tax]))
        .await;
    assert_eq!(d.status, 403);
    assert_eq!(d.body["code"], "consent.exhausted");
    assert_eq!(
        t.get_audited(&format!("/v1/consents/{cid}")).await.body["used"],
        2
    );

    // 5. revoked consent.
    let g2 = t
        .post(
            "/v1/consents",
            &write_body(&t.consent_entry(0, "bank-a", &[Tax], 5)),
        )
        .await;
    let cid2 = g2.body["id"].as_str().unwrap().to_string();
    let rv = t.firm_entry(
        0,
        EntryKind::ConsentRevoked {
            consent: Digest::from_hex(&cid2).unwrap(),
        },
    );
    // Wrong id in the path is refused before anything is written.
    let r = t
        .post(&format!("/v1/consents/{cid}/revoke"), &write_body(&rv))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "api.id_mismatch");
    let r = t
        .post(&format!("/v1/consents/{cid2}/revoke"), &write_body(&rv))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        t.get_audited(&format!("/v1/consents/{cid2}")).await.body["revoked"],
        true
    );
    let d = t
        .post("/v1/queries", &t.query("bank-a", 0, &cid2, &[Tax]))
        .await;
    assert_eq!(d.status, 403);
    assert_eq!(d.body["code"], "consent.revoked");

    // Access log: the firm sees everything, in order.
    let path = format!("/v1/firms/{firm}/access-log");
    let h = t.auth_header(&format!("firm:{firm}"), &firm_key, "GET", &path);
    let log = t.req("GET", &path, None, std::slice::from_ref(&h)).await;
    assert_eq!(log.status, 200, "{}", log.text);
    let kinds: Vec<(String, Option<String>)> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["reason"].as_str().map(String::from),
            )
        })
        .collect();
    let want = [
        ("query_served", None),
        ("query_denied", Some("consent.wrong_bank")),
        ("query_denied", Some("consent.category_not_covered")),
        ("query_served", None),
        ("query_denied", Some("consent.exhausted")),
        ("query_denied", Some("consent.revoked")),
    ];
    let want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(k, r)| (k.to_string(), r.map(String::from)))
        .collect();
    assert_eq!(kinds, want);
    let positions: Vec<u64> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    // Replaying the same signed header is refused.
    let again = t.req("GET", &path, None, &[h]).await;
    assert_eq!(again.status, 401);
    assert_eq!(again.body["code"], "api.replay");
    // The auditor may read it; a bank and another firm may not; no header is 401.
    let ha = t.auth_header("org:auditor", &t.org_key("auditor"), "GET", &path);
    assert_eq!(t.req("GET", &path, None, &[ha]).await.status, 200);
    let hb = t.auth_header("org:bank-a", &t.org_key("bank-a"), "GET", &path);
    let r = t.req("GET", &path, None, &[hb]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["code"], "api.forbidden");
    let (f1, k1) = t.firm(1);
    let hf = t.auth_header(&format!("firm:{f1}"), &k1, "GET", &path);
    assert_eq!(t.req("GET", &path, None, &[hf]).await.status, 403);
    // Signed by a key that is not the claimed firm's.
    let hx = t.auth_header(&format!("firm:{firm}"), &k1, "GET", &path);
    let r = t.req("GET", &path, None, &[hx]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["code"], "api.bad_signature");
    let r = t.get(&path).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["code"], "api.missing_auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_writes_nothing() {
    let t = start();
    let (firm, _) = t.firm(0);
    let grant = t.consent_entry(0, "bank-a", &[Tax], 3);
    let cid = t.post("/v1/consents", &write_body(&grant)).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let size = t.log_size().await;

    let raw = |b: &str| Some(b.as_bytes().to_vec());
    type Case<'a> = (&'a str, &'a str, Option<Vec<u8>>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/consents",
            raw("{\"entry\": "),
            400,
            "api.bad_json",
        ),
        ("POST", "/v1/consents", raw("not json"), 400, "api.bad_json"),
        (
            "POST",
            "/v1/consents",
            raw("{\"entry\": 5}"),
            400,
            "api.bad_field",
        ),
        (
            "POST",
            "/v1/consents",
            raw("{\"entry\": \"AAAA\", \"extra\": 1}"),
            400,
            "api.unknown_field",
        ),
        (
            "POST",
            "/v1/consents",
            raw("{\"entry\": \"!!!\"}"),
            400,
            "api.bad_base64",
        ),
        (
            "POST",
            "/v1/consents",
            raw("{\"entry\": \"AAAA\"}"),
            400,
            "codec.malformed",
        ),
        ("POST", "/v1/entries", raw("{}"), 400, "api.bad_field"),
        ("POST", "/v1/queries", raw("[1,2]"), 400, "api.bad_field"),
        (
            "GET",
            "/v1/firms/914401030000000000/records",
            None,
            400,
            "uscc.check_char",
        ),
        ("GET", "/v1/firms/ABC/access-log", None, 400, "uscc.length"),
        ("GET", "/v1/consents/zz", None, 400, "api.bad_id"),
        ("GET", "/v1/blocks/x", None, 400, "api.bad_param"),
        ("GET", "/v1/blocks/999", None, 404, "api.not_found"),
        ("GET", "/v1/entries/99999", None, 404, "api.not_found"),
        (
            "GET",
            "/v1/consistency?from=5&to=2",
            None,
            400,
            "api.bad_range",
        ),
        ("GET", "/v1/consistency?from=1", None, 400, "api.bad_param"),
        ("GET", "/v1/nothing-here", None, 404, "api.not_found"),
        (
            "DELETE",
            "/v1/consents",
            None,
            405,
            "api.method_not_allowed",
        ),
        (
            "POST",
            "/v1/dev/clock",
            raw("{\"advance_ms\": -5}"),
            400,
            "api.bad_field",
        ),
    ];
    for (m, p, b, status, code) in cases {
        let r = t.req(m, p, b, &[]).await;
        assert_eq!(r.status.as_u16(), status, "{m} {p}: {}", r.text);
        assert_eq!(r.body["code"], code, "{m} {p}: {}", r.text);
        assert!(
            r.body["message"].as_str().is_some_and(|s| !s.is_empty()),
            "{m} {p}"
        );
    }

    // Wrong entry kind for the route.
    let rv = t.firm_entry(
        0,
        EntryKind::ConsentRevoked {
            consent: Digest::from_hex(&cid).unwrap(),
        },
    );
    let r = t.post("/v1/consents", &write_body(&rv)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (400, Some("api.wrong_kind"))
    );

    // Unknown field nested inside a ledger type.
    let mut q = t.query("bank-a", 0, &cid, &[Tax]);
    q["request"]["request"]["sneaky"] = json!(1);
    let r = t.post("/v1/queries", &q).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (400, Some("api.unknown_field")),
        "{}",
        r.text
    );
    // Invalid USCC inside a body.
    let mut q = t.query("bank-a", 0, &cid, &[Tax]);
    q["request"]["request"]["firm"] = json!("91440103000000000X");
    let r = t.post("/v1/queries", &q).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Categories out of canonical order.
    let mut q = t.query("bank-a", 0, &cid, &[Tax]);
    q["request"]["request"]["categories"] = json!(["tax", "registration"]);
    let r = t.post("/v1/queries", &q).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (400, Some("entry.field"))
    );

    // Bad entry signature: flip a bit of the signature inside the stored bytes.
    let mut e = t.consent_entry(0, "bank-a", &[Tax], 1);
    let n = e.bytes.len();
    e.bytes[n - 3] ^= 0x01;
    let r = t.post("/v1/consents", &write_body(&e)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (401, Some("entry.bad_signature")),
        "{}",
        r.text
    );
    // Signed by a key that is not the firm's.

    let (_, k0) = t.firm(0);
    let imposter = t.sign(
        Author::Firm(t.tag(1)),
        &k0,
        EntryKind::ConsentRevoked {
            consent: Digest::from_hex(&cid).unwrap(),
        },
    );
    let r = t
        .post(
            &format!("/v1/consents/{cid}/revoke"),
            &write_body(&imposter),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    // Unregistered signer.
    let stranger = xinyi_ledger::KeyPair::generate();
    let f9 = xinyi_ledger::sample::sample_firm(900).unwrap();
    let e = t.sign(
        Author::Firm(t.setup.firm_key.tag(&f9)),
        &stranger,
        EntryKind::ConsentRevoked {
            consent: Digest::from_hex(&cid).unwrap(),
        },
    );
    let r = t.post("/v1/entries", &write_body(&e)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (401, Some("state.unknown_author"))
    );
    // Role not allowed: a bank cannot publish a grade.
    let g = t.org_entry(
        "bank-a",
        EntryKind::GradeAssigned {
            firm: t.setup.firm_key.tag(&firm),
            domain: "food-drug".into(),
            grade: xinyi_ledger::types::Grade::A,
        },
    );
    let r = t.post("/v1/grades", &write_body(&g)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (403, Some("state.forbidden"))
    );
    // Replay of an already committed entry.
    let r = t.post("/v1/consents", &write_body(&grant)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (401, Some("state.replay")),
        "{}",
        r.text
    );
    // Stale entry time.
    let stale = xinyi_ledger::Entry::sign(
        &t.chain(),
        xinyi_ledger::entry::EntryBody {
            author: Author::Firm(t.setup.firm_key.tag(&firm)),
            time: t.now() - 3_600_000,
            nonce: 1,
            kind: EntryKind::ConsentRevoked {
                consent: Digest::from_hex(&cid).unwrap(),
            },
        },
        &k0,
    )
    .unwrap();
    let r = t.post("/v1/entries", &write_body(&stale)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (401, Some("state.stale_or_future"))
    );
    // Query with a bad bank signature: 401, and no denial is recorded.
    let q = t.query_signed_by("bank-b", "bank-a", 0, &cid, &[Tax]);
    let r = t.post("/v1/queries", &q).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (401, Some("api.bad_signature"))
    );
    // A non-bank cannot query.
    let q = t.query("auditor", 0, &cid, &[Tax]);
    let r = t.post("/v1/queries", &q).await;
    assert_eq!(r.status, 403);
    // Oversized body.
    let big = vec![b' '; 2 * 1024 * 1024];
    let r = t.req("POST", "/v1/consents", Some(big), &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (413, Some("api.body_too_large")),
        "{}",
        r.text
    );

    assert_eq!(t.log_size().await, size, "refused requests wrote nothing");

    // Replayed query request: served once, then 401 without a second record.
    let q = t.query("bank-a", 0, &cid, &[Tax]);
    assert_eq!(t.post("/v1/queries", &q).await.status, 200);
    let size = t.log_size().await;
    let r = t.post("/v1/queries", &q).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (401, Some("api.replay"))
    );
    assert_eq!(t.log_size().await, size);

    // Unknown consent: a refused query, recorded as a denial (the only write allowed here).
    let unknown = Digest([7u8; 32]).to_hex();
    let r = t
        .post("/v1/queries", &t.query("bank-a", 0, &unknown, &[Tax]))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (403, Some("consent.unknown"))
    );
    assert_eq!(t.log_size().await, size + 1);
}

fn minor_records(v: &Value) -> Vec<String> {
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["severity"] == "minor" && r["min_publicity_days"] == 0)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_applied_by_both_and_overdue_with_one() {
    let t = start();
    let (firm, _) = t.firm(0);
    let recs = t.get(&format!("/v1/firms/{firm}/records")).await;
    assert_eq!(recs.status, 200, "{}", recs.text);
    let minor = minor_records(&recs.body);
    assert!(
        minor.len() >= 2,
        "dev data gives each keyed firm two repairable records"
    );
    let d = |s: &str| Digest::from_hex(s).unwrap();

    let request = |rec: &str| {
        t.firm_entry(
            0,
            EntryKind::RepairRequested {
                record: d(rec),
                fulfilment: Digest([1; 32]),
                commitment_letter: Digest([2; 32]),
            },
        )
    };
    let r = t
        .post("/v1/repairs", &write_body(&request(&minor[0])))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        t.get(&format!("/v1/repairs/{rid}")).await.body["status"],
        "requested"
    );
    // Only the penalising agency decides.
    let by_bank = t.org_entry(
        "bank-a",
        EntryKind::RepairDecided {
            repair: d(&rid),
            approved: true,
            reason: "ok".into(),
        },
    );
    assert_eq!(
        t.post(
            &format!("/v1/repairs/{rid}/decision"),
            &write_body(&by_bank)
        )
        .await
        .status,
        403
    );
    let dec = t.org_entry(
        "gz-credit",
        EntryKind::RepairDecided {
            repair: d(&rid),
            approved: true,
            reason: "obligations fulfilled".into(),
        },
    );
    let r = t
        .post(&format!("/v1/repairs/{rid}/decision"), &write_body(&dec))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for reg in ["credit-china", "gsxt"] {
        let a = t.org_entry(reg, EntryKind::RepairApplied { repair: d(&rid) });
        let r = t
            .post(&format!("/v1/repairs/{rid}/applications"), &write_body(&a))
            .await;
        assert_eq!(r.status, 200, "{reg}: {}", r.text);
    }
    // Applying twice is a conflict.
    let a = t.org_entry("gsxt", EntryKind::RepairApplied { repair: d(&rid) });
    let r = t
        .post(&format!("/v1/repairs/{rid}/applications"), &write_body(&a))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let st = t.get(&format!("/v1/repairs/{rid}")).await;
    assert_eq!(st.body["status"], "applied");
    assert_eq!(st.body["overdue"], false);
    assert_eq!(st.body["id"], json!(rid));

    // Second repair: applied by one registry only, then the deadline passes.
    let r = t
        .post("/v1/repairs", &write_body(&request(&minor[1])))
        .await;
    let rid2 = r.body["id"].as_str().unwrap().to_string();
    let dec = t.org_entry(
        "gz-credit",
        EntryKind::RepairDecided {
            repair: d(&rid2),
            approved: true,
            reason: "ok".into(),
        },
    );
    assert_eq!(
        t.post(&format!("/v1/repairs/{rid2}/decision"), &write_body(&dec))
            .await
            .status,
        200
    );
    let a = t.org_entry(
        "credit-china",
        EntryKind::RepairApplied { repair: d(&rid2) },
    );
    assert_eq!(
        t.post(&format!("/v1/repairs/{rid2}/applications"), &write_body(&a))
            .await
            .status,
        200
    );
    let st = t.get(&format!("/v1/repairs/{rid2}")).await;
    assert_eq!(
        (st.body["status"].as_str(), st.body["overdue"].as_bool()),
        (Some("approved"), Some(false))
    );
    // Three working days (CST) end at most 6 calendar days later; advance 7.
    let before = t.now();
    let c = t
        .post("/v1/dev/clock", &json!({"advance_ms": 7 * 86_400_000u64}))
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert!(t.now() >= before + 7 * 86_400_000);
    let st = t.get(&format!("/v1/repairs/{rid2}")).await;
    assert_eq!(st.body["overdue"], true, "{}", st.text);
    // The ledger also flags it at the next block; entries signed at the advanced clock commit.
    let g = t.org_entry(
        "gz-credit",
        EntryKind::GradeAssigned {
            firm: t.setup.firm_key.tag(&firm),
            domain: "food-drug".into(),
            grade: xinyi_ledger::types::Grade::B,
        },
    );
    assert_eq!(t.post("/v1/grades", &write_body(&g)).await.status, 200);
    let gr = t.get(&format!("/v1/firms/{firm}/grades/food-drug")).await;
    assert_eq!(gr.body["grade"], "b");
    let st = t.get(&format!("/v1/repairs/{rid2}")).await;
    assert_eq!(st.body["overdue"], true);
    // The offset survives in the data dir.
    let saved = std::fs::read_to_string(&t.setup.paths.clock).unwrap();
    assert_eq!(saved.trim(), (7 * 86_400_000u64).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reads_export_and_service_endpoints() {
    let t = start();
    let h = t.get("/health").await;
    assert_eq!(h.body["status"], "ok");
    assert_eq!(h.body["dev"], true);
    assert!(h.body["height"].as_u64().unwrap() >= 1);
    let size = h.body["log_size"].as_u64().unwrap();
    assert!(size > 5);
    let b = t.get("/v1/blocks/1").await;
    assert_eq!(b.status, 200);
    assert_eq!(b.body["certificate"]["votes"][0]["validator"], "gz-credit");
    let cp = t.get("/v1/checkpoint").await;
    assert!(
        cp.text
            .starts_with(&format!("{}\n{size}\n", xinyi_node::dev::DEV_NAME)),
        "{}",
        cp.text
    );
    let c = t.get(&format!("/v1/consistency?from=1&to={size}")).await;
    assert_eq!(c.status, 200, "{}", c.text);
    let g = t.get("/v1/genesis").await;
    assert_eq!(g.body["name"], xinyi_node::dev::DEV_NAME);
    let m = t.get("/metrics").await;
    assert!(m.text.contains("xinyi_height "), "{}", m.text);
    assert!(m.text.contains("xinyi_http_requests_total{status=\"200\"}"));
    // Export (auditors and validators only): a bundle the ledger verifier accepts.
    assert_eq!(t.get("/v1/export").await.status, 401);
    let auth = t.auth_header("org:auditor", &t.org_key("auditor"), "GET", "/v1/export");
    let bytes = {
        use tower::ServiceExt as _;
        let r = t
            .app
            .clone()
            .oneshot(
                axum::http::Request::get("/v1/export")
                    .header(auth.0, auth.1)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        axum::body::to_bytes(r.into_body(), 1 << 30).await.unwrap()
    };
    assert!(bytes.starts_with(xinyi_ledger::bundle::MAGIC));
    let report = xinyi_ledger::verify::verify_bundle(&t.setup.genesis, &bytes[..], |_, _| {})
        .expect("exported bundle verifies");
    assert_eq!(report.log_size, size);
    // One flipped byte is detected.
    let mut bad = bytes.to_vec();
    let n = bad.len();
    bad[n / 2] ^= 0x40;
    assert!(xinyi_ledger::verify::verify_bundle(&t.setup.genesis, &bad[..], |_, _| {}).is_err());
    // OpenAPI lists every route, and every listed route is routed.
    let doc = t.get("/openapi.json").await;
    let paths = doc.body["paths"].as_object().unwrap();
    for r in xinyi_node::api::openapi::ROUTES {
        assert!(
            paths[r.path][r.method].is_object(),
            "{} {}",
            r.method,
            r.path
        );
        let concrete = r
            .path
            .replace("{uscc}", "9144010300003FYB45")
            .replace("{position}", "0")
            .replace("{height}", "1")
            .replace(['{', '}'], "");
        let resp = t
            .req(
                &r.method.to_uppercase(),
                &concrete,
                Some(b"{}".to_vec()),
                &[],
            )
            .await;
        assert!(
            !(resp.status == 404
                && resp.body["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no such endpoint")),
            "{} {concrete} not routed",
            r.method
        );
        assert_ne!(resp.status, 405, "{} {concrete}", r.method);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429() {
    let t = start_with(xinyi_node::api::ApiConfig {
        rate_limit_per_sec: 1,
        ..Default::default()
    });
    let cid = Digest([9; 32]).to_hex();
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(
            t.post("/v1/queries", &t.query("bank-b", 0, &cid, &[Tax]))
                .await,
        );
    }
    let last = statuses.last().unwrap();
    assert_eq!(last.status, 429, "{}", last.text);
    assert_eq!(last.body["code"], "api.rate_limited");
    let _: &[Category] = &[];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_clock_is_404_outside_dev() {
    let t = start();
    let mut s = t.node.state.clone();
    s.cfg = std::sync::Arc::new(xinyi_node::api::ApiConfig {
        dev: false,
        ..Default::default()
    });
    let app = xinyi_node::api::router(s);
    use tower::ServiceExt as _;
    let r = app
        .oneshot(
            axum::http::Request::post("/v1/dev/clock")
                .body(axum::body::Body::from("{\"advance_ms\":1}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn restart_resumes_without_regenerating() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (key_text, genesis_text, head, cid) = {
        let (node, setup) =
            xinyi_node::node::Node::open_dev(dir.path(), Default::default(), Default::default())
                .unwrap();
        let t = T {
            dir: tempfile::tempdir().unwrap(),
            app: node.router(),
            node,
            setup,
        };
        let r = rt.block_on(t.post(
            "/v1/consents",
            &write_body(&t.consent_entry(1, "bank-b", &[Tax], 2)),
        ));
        assert_eq!(r.status, 200);
        let q = t.query("bank-b", 1, r.body["id"].as_str().unwrap(), &[Tax]);
        assert_eq!(rt.block_on(t.post("/v1/queries", &q)).status, 200);
        std::fs::write(
            dir.path().join("replay.json"),
            serde_json::to_vec(&q).unwrap(),
        )
        .unwrap();
        let head = rt.block_on(t.get("/health")).body;
        (
            std::fs::read_to_string(t.setup.paths.org_key("bank-a")).unwrap(),
            std::fs::read_to_string(&t.setup.paths.genesis).unwrap(),
            head,
            r.body["id"].as_str().unwrap().to_string(),
        )
    };
    // The producer thread releases the store once every handle is gone.
    let mut reopened = None;
    for _ in 0..100 {
        match xinyi_node::node::Node::open_dev(dir.path(), Default::default(), Default::default()) {
            Ok(x) => {
                reopened = Some(x);
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    let (node, setup) = reopened.expect("reopens");
    assert!(!setup.created);
    assert_eq!(
        std::fs::read_to_string(setup.paths.org_key("bank-a")).unwrap(),
        key_text
    );
    assert_eq!(
        std::fs::read_to_string(&setup.paths.genesis).unwrap(),
        genesis_text
    );
    let t = T {
        dir: tempfile::tempdir().unwrap(),
        app: node.router(),
        node,
        setup,
    };
    let h = rt.block_on(t.get("/health")).body;
    assert_eq!(h["height"], head["height"]);
    assert_eq!(h["log_size"], head["log_size"]);
    assert_eq!(
        rt.block_on(t.get_audited(&format!("/v1/consents/{cid}")))
            .status,
        200
    );
    // A signed query answered before the restart is still recognised as a replay.
    let q: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("replay.json")).unwrap()).unwrap();
    let r = rt.block_on(t.post("/v1/queries", &q));
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (401, Some("api.replay"))
    );
    assert_eq!(
        rt.block_on(t.get("/health")).body["log_size"],
        head["log_size"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_socket_health_and_per_ip_limit() {
    use std::io::{Read, Write};
    let t = start_with(xinyi_node::api::ApiConfig {
        rate_limit_per_sec: 1,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = t.app.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let get = move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let texts = tokio::task::spawn_blocking(move || (0..3).map(|_| get()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(texts[0].starts_with("HTTP/1.1 200"), "{}", texts[0]);
    assert!(texts[0].contains("\"status\":\"ok\""), "{}", texts[0]);
    // Rate 1/s, burst 2: the third unsigned read from this IP is refused.
    assert!(texts[2].starts_with("HTTP/1.1 429"), "{}", texts[2]);
    assert!(texts[2].contains("api.rate_limited"), "{}", texts[2]);
}

#[test]
fn init_then_start_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = xinyi_node::config::init(
        dir.path(),
        "gz-credit",
        "xinyi/test",
        "127.0.0.1:7999".parse().unwrap(),
        None,
    )
    .unwrap();
    assert!(out.firm_key.exists(), "init writes a consortium firm key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        xinyi_node::config::init(
            dir.path(),
            "gz-credit",
            "xinyi/test",
            "127.0.0.1:7999".parse().unwrap(),
            None,
        )
        .is_err(),
        "refuses to overwrite"
    );
    let mut cfg = xinyi_node::config::Config::load(&out.config).unwrap();
    assert_eq!(cfg.data_dir, dir.path().join("data"));
    cfg.apply_env(|k| (k == "XINYI_HTTP").then(|| "127.0.0.1:8111".to_string()))
        .unwrap();
    assert_eq!(cfg.http.port(), 8111);
    assert!(cfg
        .apply_env(|k| (k == "XINYI_HTTP").then(|| "nope".to_string()))
        .is_err());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt
        .block_on(async { xinyi_node::node::Node::open_config(&cfg) })
        .unwrap();
    assert!(!node.state.cfg.dev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_never_exceed_max_uses() {
    let t = std::sync::Arc::new(start());
    let r = t
        .post(
            "/v1/consents",
            &write_body(&t.consent_entry(2, "bank-a", &[Tax], 3)),
        )
        .await;
    let cid = r.body["id"].as_str().unwrap().to_string();
    let size = t.log_size().await;
    let bodies: Vec<Value> = (0..20)
        .map(|_| t.query("bank-a", 2, &cid, &[Tax]))
        .collect();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let t = t.clone();
            tokio::spawn(async move { t.post("/v1/queries", &b).await })
        })
        .collect();
    let mut served = 0;
    let mut exhausted = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status.as_u16() {
            200 => served += 1,
            403 if r.body["code"] == "consent.exhausted" => {
                assert_eq!(r.body["denial"]["kind"], "query_denied");
                exhausted += 1
            }
            _ => panic!("unexpected answer: {}", r.text),
        }
    }
    assert_eq!((served, exhausted), (3, 17));
    assert_eq!(
        t.get_audited(&format!("/v1/consents/{cid}")).await.body["used"],
        3
    );
    assert_eq!(
        t.log_size().await,
        size + 20,
        "every attempt is on the ledger"
    );
    let m = t.get("/metrics").await.text;
    assert!(m.contains("xinyi_queries_served_total 3"), "{m}");
    assert!(m.contains("xinyi_queries_denied_total 17"), "{m}");
}

// The ledger core is held across the request on purpose (the handler's blocking thread waits
// for it; no runtime thread does).
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_requests_get_the_error_shape() {
    let t = start_with(xinyi_node::api::ApiConfig {
        request_timeout: std::time::Duration::from_nanos(1),
        ..Default::default()
    });
    let grant = t.consent_entry(0, "bank-a", &[Tax], 1);
    // Holding the ledger core keeps the write's admission waiting, so the answer cannot come
    // before the timeout whatever the machine's speed (without it a fast commit could win the
    // race against the timer's 1 ms tick).
    let core = t.node.state.engine.lock();
    let r = t.post("/v1/consents", &write_body(&grant)).await;
    drop(core);
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["code"], "api.timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mempool_is_429_and_the_request_can_be_retried() {
    let t = std::sync::Arc::new(start_full(
        Default::default(),
        xinyi_node::engine::EngineConfig {
            mempool_capacity: 1,
            max_batch: 1,
        },
    ));
    let r = t
        .post(
            "/v1/consents",
            &write_body(&t.consent_entry(3, "bank-a", &[Tax], 1000)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cid = r.body["id"].as_str().unwrap().to_string();
    let size = t.log_size().await;
    let bodies: Vec<Value> = (0..40)
        .map(|_| t.query("bank-a", 3, &cid, &[Tax]))
        .collect();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let t = t.clone();
            tokio::spawn(async move { (t.post("/v1/queries", &b).await, b) })
        })
        .collect();
    let (mut ok, mut full) = (0u64, vec![]);
    for task in tasks {
        let (r, b) = task.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(r.body["code"], "api.mempool_full");
                full.push(b);
            }
            _ => panic!("{}", r.text),
        }
    }
    assert!(
        !full.is_empty(),
        "a mempool of one entry overflows under 40 concurrent queries"
    );
    assert_eq!(
        t.log_size().await,
        size + ok,
        "refused queries wrote nothing"
    );
    // The same signed request can be sent again once there is room.
    let r = t.post("/v1/queries", &full[0]).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_batch_answers_each_request_on_its_own() {
    let t = start();
    let r = t
        .post(
            "/v1/consents",
            &write_body(&t.consent_entry(3, "bank-a", &[Tax], 2)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cid = r.body["id"].as_str().unwrap().to_string();
    let size = t.log_size().await;
    // Two uses, one repeated request, one wrong bank, one forged signature, one stale request.
    let q = |bank: &str| t.query(bank, 3, &cid, &[Tax])["request"].clone();
    let first = q("bank-a");
    let mut forged = q("bank-a");
    forged["signature"] = q("bank-b")["signature"].clone();
    let mut stale = q("bank-a");
    stale["request"]["time"] = json!(0);
    let requests = vec![
        first.clone(),
        q("bank-a"),
        q("bank-a"),
        first,
        q("bank-b"),
        forged,
        stale,
    ];
    let b = t
        .post("/v1/queries/batch", &json!({ "requests": requests }))
        .await;
    assert_eq!(b.status, 200, "{}", b.text);
    let res = b.body["results"].as_array().expect("results");
    assert_eq!(res.len(), 7, "one result per request, in order");
    let statuses: Vec<u64> = res.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    let codes: Vec<&str> = res
        .iter()
        .map(|r| r["code"].as_str().unwrap_or(""))
        .collect();
    // Requests 0-2 race for two uses: two are served, one is a logged exhaustion.
    let served = statuses[..3].iter().filter(|s| **s == 200).count();
    assert_eq!(served, 2, "{res:?}");
    assert!(codes[..3].contains(&"consent.exhausted"), "{codes:?}");
    assert_eq!(
        &codes[3..],
        &[
            "api.replay",
            "consent.wrong_bank",
            "api.bad_signature",
            "api.stale"
        ]
    );
    assert_eq!(&statuses[3..], &[401, 403, 401, 401]);
    // Every served result carries data whose digest its committed record holds, and a record
    // that is included in the node's signed checkpoint.
    for r in res.iter().filter(|r| r["status"] == 200) {
        let salt: [u8; 32] = hex::decode(r["salt"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let digest = hash::salted(&salt, &serde_json::to_vec(&r["data"]).unwrap());
        assert_eq!(r["response_digest"], json!(digest.to_hex()));
        assert_eq!(r["record"]["kind"], "query_served");
        verify_record(&t, &r["record"]).await;
    }
    for r in res
        .iter()
        .filter(|r| r["code"] == "consent.exhausted" || r["code"] == "consent.wrong_bank")
    {
        assert_eq!(r["denial"]["kind"], "query_denied", "{r}");
        verify_record(&t, &r["denial"]).await;
    }
    // Two served + two denials on the ledger; the replay, forgery and stale request wrote nothing.
    assert_eq!(t.log_size().await, size + 4);
    assert_eq!(
        t.get_audited(&format!("/v1/consents/{cid}")).await.body["used"],
        2
    );

    // An empty or oversized batch is one 400, and writes nothing.
    for n in [0, xinyi_node::api::handlers::MAX_QUERY_BATCH + 1] {
        let requests: Vec<Value> = (0..n).map(|_| q("bank-a")).collect();
        let b = t
            .post("/v1/queries/batch", &json!({ "requests": requests }))
            .await;
        assert_eq!(b.status, 400, "{}", b.text);
        assert_eq!(b.body["code"], "batch.size");
    }
    assert_eq!(t.log_size().await, size + 4);
}
