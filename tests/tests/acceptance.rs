//! The acceptance scenario of issue 4, end to end with the real binaries: a `xinyi-node --dev`
//! child process and the `xinyi` client, talking HTTP on loopback.
//!
//! consent → verified query → wrong bank, out-of-scope, exhausted and revoked refusals (each a
//! logged denial) → the firm's access log in order → a repair applied by both registries and one
//! overdue after the node clock is advanced (no sleeping) → export → offline audit passes and a
//! flipped byte is named → kill -9 and restart: same head, state root and access log.

use serde_json::Value;
use std::time::Duration;
use xinyi_ledger::sample::sample_firm;
use xinyi_ledger::types::DAY_MS;
use xinyi_tests::cli::{fails, grant_args, ok, ok_json, query_args};
use xinyi_tests::DevNode;

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("not a string: {v}"))
}

fn step(what: &str) {
    eprintln!("== {what}");
}

/// What must survive a crash: head, roots, checkpoint, access log.
#[derive(Debug, PartialEq)]
struct Snapshot {
    chain_id: Value,
    height: u64,
    log_size: u64,
    head_hash: Value,
    state_root: Value,
    checkpoint_body: String,
    access_log: Value,
}

fn snapshot(node: &DevNode, firm: &str) -> Snapshot {
    let api = node.api();
    let h: Value = api.get("/health").expect("health");
    let height = h["height"].as_u64().expect("height");
    let block: Value = api
        .get(&format!("/v1/blocks/{height}"))
        .expect("head block");
    let cp = api.get_text("/v1/checkpoint").expect("checkpoint");
    let body = cp.split("\n\n").next().unwrap_or_default().to_string();
    let log = ok_json(&node.xinyi(Some("auditor"), &["--json", "access-log", "--firm", firm]));
    Snapshot {
        chain_id: h["chain_id"].clone(),
        height,
        log_size: h["log_size"].as_u64().expect("log_size"),
        head_hash: block["header_hash"].clone(),
        state_root: block["header"]["state_root"].clone(),
        checkpoint_body: body,
        access_log: log,
    }
}

#[test]
fn acceptance_scenario() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    step("start a dev node");
    let mut node = DevNode::start(
        &data,
        &tmp.path().join("node-1.log"),
        Duration::from_secs(60),
    );
    let firm = sample_firm(0).expect("sample firm").to_string();
    let fk = format!("firm-{firm}");
    let fk = fk.as_str();

    step("the firm grants bank-a a consent for two categories and two uses");
    let grant = ok_json(
        &node.xinyi(
            Some(fk),
            &[
                grant_args(&firm, "bank-a", "registration,tax", "2", "30"),
                vec!["--purpose", "loan application 2026-118"],
            ]
            .concat(),
        ),
    );
    let c1 = s(&grant["id"]);
    assert_eq!(grant["kind"], "consent_granted");
    assert!(grant["verified"]["checkpoint_size"].as_u64().unwrap() > 0);
    let shown = ok_json(&node.xinyi(Some("bank-a"), &["--json", "consent", "show", &c1]));
    assert_eq!(shown["bank"], "bank-a");
    assert_eq!(shown["used"], 0);

    let query = |bank: &str, consent: &str, cats: &str, json: bool| {
        let args = query_args(consent, &firm, cats);
        // Without `--json`: the human output.
        node.xinyi(Some(bank), if json { &args } else { &args[1..] })
    };

    step("bank-a queries: data + proof, verified by the client");
    let out = ok(&query("bank-a", &c1, "registration,tax", false));
    assert!(out.contains("verified: response digest matches"), "{out}");
    assert!(
        out.contains("verified: entry ") && out.contains(" included in checkpoint of size "),
        "{out}"
    );
    assert!(out.contains("registration") && out.contains("tax"), "{out}");

    step("bank-b queries under bank-a's consent: 403, denial recorded");
    let e = fails(
        &query("bank-b", &c1, "registration", false),
        "consent.wrong_bank",
    );
    assert!(
        e.contains("HTTP 403") && e.contains("denial recorded"),
        "{e}"
    );

    step("bank-a asks a category outside the consent: 403");
    let e = fails(
        &query("bank-a", &c1, "penalties", false),
        "consent.category_not_covered",
    );
    assert!(e.contains("denial recorded"), "{e}");

    step("bank-a's second use, then its third query: exhausted, 403");
    let q2 = ok_json(&query("bank-a", &c1, "tax", true));
    assert_eq!(q2["verified"]["response_digest"], true);
    assert!(q2["data"].get("tax").is_some(), "{q2}");
    fails(
        &query("bank-a", &c1, "registration", false),
        "consent.exhausted",
    );
    let shown = ok_json(&node.xinyi(Some("bank-a"), &["--json", "consent", "show", &c1]));
    assert_eq!(shown["used"], 2);

    step("the firm revokes a second consent; a query under it: 403");
    let c2 = s(&ok_json(&node.xinyi(
        Some(fk),
        &grant_args(&firm, "bank-a", "registration", "3", "10"),
    ))["id"]);
    let rev = ok_json(&node.xinyi(Some(fk), &["--json", "consent", "revoke", &c2]));
    assert_eq!(rev["kind"], "consent_revoked");
    fails(
        &query("bank-a", &c2, "registration", false),
        "consent.revoked",
    );

    step("the firm's access log shows all of the above, in order");
    let log = ok_json(&node.xinyi(Some(fk), &["--json", "access-log", "--firm", &firm]));
    let entries = log["entries"].as_array().expect("entries");
    let got: Vec<(String, String, String, Option<String>)> = entries
        .iter()
        .map(|e| {
            (
                s(&e["kind"]),
                s(&e["bank"]),
                s(&e["consent"]),
                e.get("reason").and_then(Value::as_str).map(str::to_string),
            )
        })
        .collect();
    let want = |k: &str, b: &str, c: &str, r: Option<&str>| {
        (
            k.to_string(),
            b.to_string(),
            c.to_string(),
            r.map(str::to_string),
        )
    };
    assert_eq!(
        got,
        vec![
            want("query_served", "bank-a", &c1, None),
            want("query_denied", "bank-b", &c1, Some("consent.wrong_bank")),
            want(
                "query_denied",
                "bank-a",
                &c1,
                Some("consent.category_not_covered")
            ),
            want("query_served", "bank-a", &c1, None),
            want("query_denied", "bank-a", &c1, Some("consent.exhausted")),
            want("query_denied", "bank-a", &c2, Some("consent.revoked")),
        ]
    );
    let positions: Vec<u64> = entries
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    // Every item matches the stored entry and is in a signed checkpoint.
    let checked = ok_json(&node.xinyi(
        Some(fk),
        &["--json", "access-log", "--firm", &firm, "--verify"],
    ));
    assert_eq!(checked["verified"]["entries"], 6, "{checked}");
    // The human form works too; a bank may not read it.
    let human = ok(&node.xinyi(Some(fk), &["access-log", "--firm", &firm]));
    assert!(human.contains("6 entries"), "{human}");
    fails(
        &node.xinyi(Some("bank-a"), &["access-log", "--firm", &firm]),
        "api.forbidden",
    );

    step("repairs: pick two repairable records of the firm");
    let recs = ok_json(&node.xinyi(None, &["--json", "records", "--firm", &firm]));
    let recs: Vec<&Value> = recs["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| {
            r["severity"] == "minor" && r["open_repair"].is_null() && r["repaired"] == false
        })
        .collect();
    assert!(
        recs.len() >= 2,
        "need two repairable minor records: {recs:?}"
    );
    let (r1, r2) = (s(&recs[0]["id"]), s(&recs[1]["id"]));
    // Let the minimum publicity periods pass on the node clock (injected, not slept).
    let api = node.api();
    let now = api.health().expect("health").time_ms;
    let ready_at = recs[..2]
        .iter()
        .map(|r| {
            r["published_at"].as_u64().unwrap() + r["min_publicity_days"].as_u64().unwrap() * DAY_MS
        })
        .max()
        .unwrap();
    if ready_at >= now {
        let advance = ready_at - now + 60_000;
        let _: Value = api
            .post(
                "/v1/dev/clock",
                &serde_json::json!({ "advance_ms": advance }),
            )
            .expect("advance the dev clock");
    }

    step("repair 1: requested, approved, applied by both registries");
    let p1 = s(
        &ok_json(&node.xinyi(Some(fk), &["--json", "repair", "request", "--record", &r1]))["id"],
    );
    let dec = ok_json(&node.xinyi(
        Some("gz-credit"),
        &[
            "--json",
            "repair",
            "decide",
            &p1,
            "--approve",
            "--reason",
            "obligations fulfilled",
        ],
    ));
    // The decision names the repair only; the firm it concerns may still read it, a bank not.
    let dpath = format!(
        "/v1/entries/{}",
        dec["position"].as_u64().expect("position")
    );
    let (code, d) = node.get_as(fk, &dpath);
    assert_eq!(
        (code, d["kind"].as_str()),
        (200, Some("repair_decided")),
        "{d}"
    );
    assert_eq!(node.get_as("bank-a", &dpath).1["redacted"], true);
    ok(&node.xinyi(Some("credit-china"), &["repair", "apply", &p1]));
    ok(&node.xinyi(Some("gsxt"), &["repair", "apply", &p1]));
    let st = ok_json(&node.xinyi(None, &["--json", "repair", "status", &p1]));
    assert_eq!(st["status"], "applied", "{st}");
    assert!(st["credit_china_applied_at"].is_u64(), "{st}");
    assert!(st["gsxt_applied_at"].is_u64(), "{st}");
    assert_eq!(st["overdue"], false, "{st}");

    step("repair 2: applied by one registry only; overdue once the deadline passes");
    let p2 = s(
        &ok_json(&node.xinyi(Some(fk), &["--json", "repair", "request", "--record", &r2]))["id"],
    );
    ok(&node.xinyi(
        Some("gz-credit"),
        &[
            "repair",
            "decide",
            &p2,
            "--approve",
            "--reason",
            "obligations fulfilled",
        ],
    ));
    ok(&node.xinyi(Some("credit-china"), &["repair", "apply", &p2]));
    let st = ok_json(&node.xinyi(None, &["--json", "repair", "status", &p2]));
    assert_eq!(st["status"], "approved", "{st}");
    assert_eq!(st["overdue"], false, "{st}");
    assert!(st["gsxt_applied_at"].is_null(), "{st}");
    let deadline = st["deadline"].as_u64().expect("deadline");
    let now = api.health().expect("health").time_ms;
    let _: Value = api
        .post(
            "/v1/dev/clock",
            &serde_json::json!({ "advance_ms": deadline.saturating_sub(now) + 60_000 }),
        )
        .expect("advance the dev clock");
    let st = ok_json(&node.xinyi(None, &["--json", "repair", "status", &p2]));
    assert_eq!(st["overdue"], true, "{st}");
    let human = ok(&node.xinyi(None, &["repair", "status", &p2]));
    assert!(human.contains("overdue: true"), "{human}");

    step("single-entry proof, online and saved for offline use");
    let pos = entries[0]["position"].as_u64().unwrap();
    let proof_dir = tmp.path().join("proof");
    // The firm is a party to its access entries (others would get a redacted answer).
    let out = ok(&node.xinyi(
        Some(fk),
        &[
            "proof",
            "verify",
            "--entry-position",
            &pos.to_string(),
            "--save",
            proof_dir.to_str().unwrap(),
        ],
    ));
    assert!(
        out.contains(&format!("verified: entry {pos} included")),
        "{out}"
    );
    let out = ok(&node.xinyi(
        None,
        &[
            "proof",
            "verify",
            "--entry",
            proof_dir.join("entry.bin").to_str().unwrap(),
            "--proof",
            proof_dir.join("proof.json").to_str().unwrap(),
            "--checkpoint",
            proof_dir.join("checkpoint.txt").to_str().unwrap(),
        ],
    ));
    assert!(
        out.contains(&format!("verified: entry {pos} included")),
        "{out}"
    );

    step("export a bundle; audit verify --bundle passes");
    let bundle = tmp.path().join("chain.bundle");
    // The export is for auditors and validators (role-gated reads, specs/privacy.md §4).
    fails(
        &node.xinyi(
            Some("bank-a"),
            &["export", "--out", bundle.to_str().unwrap()],
        ),
        "api.forbidden",
    );
    let report = node.export_and_audit(&bundle);
    let genesis = node.genesis();
    let h = api.health().expect("health");
    assert_eq!(report["result"], "ok");
    assert_eq!(report["blocks"].as_u64(), Some(h.height), "{report}");
    assert_eq!(report["log_size"].as_u64(), Some(h.log_size), "{report}");
    assert_eq!(report["entries_by_kind"]["query_served"], 2, "{report}");
    assert_eq!(report["entries_by_kind"]["query_denied"], 4, "{report}");
    assert_eq!(report["entries_by_kind"]["repair_applied"], 3, "{report}");
    let human = ok(&node.xinyi(
        None,
        &[
            "audit",
            "verify",
            "--bundle",
            bundle.to_str().unwrap(),
            "--genesis",
            genesis.to_str().unwrap(),
        ],
    ));
    assert!(
        human.contains("audit verify: OK") && human.contains("entries/s"),
        "{human}"
    );
    // Against the node directly (streamed export) as well.
    let online = ok_json(&node.xinyi(Some("auditor"), &["--json", "audit", "verify"]));
    assert_eq!(online["state_root"], report["state_root"]);

    step("flip one byte of the first query record in the bundle: audit names it");
    let (code, ea) = node.get_as("auditor", &format!("/v1/entries/{pos}"));
    assert_eq!(code, 200, "{ea}");
    use base64::Engine as _;
    let entry_bytes = base64::engine::general_purpose::STANDARD
        .decode(s(&ea["entry"]))
        .expect("base64 entry");
    let height = ea["height"].as_u64().expect("height");
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    let at = bytes
        .windows(entry_bytes.len())
        .position(|w| w == entry_bytes.as_slice())
        .expect("entry bytes in the bundle")
        + entry_bytes.len() / 2;
    bytes[at] ^= 0x01;
    let bad = tmp.path().join("bad.bundle");
    std::fs::write(&bad, &bytes).expect("write bad bundle");
    let e = fails(
        &node.xinyi(
            None,
            &[
                "audit",
                "verify",
                "--bundle",
                bad.to_str().unwrap(),
                "--genesis",
                genesis.to_str().unwrap(),
            ],
        ),
        &format!("audit failed at block {height}, entry "),
    );
    eprintln!("   {}", e.trim());

    step("kill -9 the node and restart it on the same directory");
    let before = snapshot(&node, &firm);
    node.kill9();
    let node = DevNode::start(
        &data,
        &tmp.path().join("node-2.log"),
        Duration::from_secs(60),
    );
    let after = snapshot(&node, &firm);
    assert_eq!(before, after);
    assert_eq!(after.access_log, log);
    // And the restarted node still works.
    let st = ok_json(&node.xinyi(None, &["--json", "repair", "status", &p1]));
    assert_eq!(st["status"], "applied");
}
