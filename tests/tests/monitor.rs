//! Post-loan monitoring end to end with the real binaries: a consent with a monitoring scope,
//! a penalty published about the firm (`xinyi record publish`), the bank's `xinyi watch`
//! receiving the alert with a verified proof, the firm's access log showing the delivery; a
//! revoked consent producing nothing; a bank without a monitoring scope getting nothing; and a
//! webhook receiver (a real HTTP server in this test) that is down for a while receiving every
//! alert once it is back, each one logged in a committed entry before it was sent.

use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xinyi_ledger::sample::sample_firm;
use xinyi_tests::cli::{grant_args, ok, ok_json};
use xinyi_tests::{binaries, free_port, DevNode};

const DEADLINE: Duration = Duration::from_secs(90);

fn start(tmp: &std::path::Path, extra: &[&str]) -> DevNode {
    DevNode::start_with(
        &tmp.join("data"),
        &tmp.join("node.log"),
        Duration::from_secs(120),
        extra,
    )
}

/// `consent grant` by firm `i` for `bank`; returns the consent id.
fn grant(node: &DevNode, firm: &str, bank: &str, monitor: Option<&str>) -> String {
    let key = format!("firm-{firm}");
    let mut args = grant_args(firm, bank, "registration", "1", "30");
    if let Some(m) = monitor {
        args.extend(["--monitor", m]);
    }
    let v = ok_json(&node.xinyi(Some(&key), &args));
    v["id"].as_str().expect("consent id").to_string()
}

/// `record publish` by the agency; returns the record entry's log position.
fn publish(node: &DevNode, firm: &str) -> u64 {
    let v = ok_json(&node.xinyi(
        Some("gz-credit"),
        &[
            "--json",
            "record",
            "publish",
            "--firm",
            firm,
            "--category",
            "penalties",
        ],
    ));
    v["position"].as_u64().expect("position")
}

/// `xinyi watch --bank BANK --json --after AFTER --count N` as a child; its JSON lines.
fn watch(node: &DevNode, bank: &str, after: u64, count: u64) -> std::process::Child {
    Command::new(&binaries().client)
        .arg("--node")
        .arg(&node.url)
        .arg("--genesis")
        .arg(node.genesis())
        .arg("--key")
        .arg(node.key(bank))
        .arg("--no-state")
        .args(["--json", "watch", "--bank", bank])
        .args(["--after", &after.to_string(), "--count", &count.to_string()])
        .args(["--idle-exit-ms", "80000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xinyi watch")
}

fn lines(child: std::process::Child) -> Vec<Value> {
    let out = child.wait_with_output().expect("watch output");
    let s = ok(&out);
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn alerts_of(node: &DevNode, bank: &str, after: u64) -> Value {
    let (code, v) = node.get_as(bank, &format!("/v1/banks/{bank}/alerts?after={after}"));
    assert_eq!(code, 200, "{v}");
    v
}

fn alert_entries(log: &Value) -> Vec<Value> {
    log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "alerts_delivered")
        .cloned()
        .collect()
}

#[test]
fn watch_gets_a_verified_logged_alert_revocation_stops_it_and_no_scope_gets_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = start(tmp.path(), &[]);
    let firm = sample_firm(1).expect("firm").to_string();
    let cid = grant(&node, &firm, "bank-a", Some("penalties,repairs"));
    // bank-b holds a consent of the same firm without a monitoring scope.
    grant(&node, &firm, "bank-b", None);

    let w = watch(&node, "bank-a", 0, 1);
    let pos = publish(&node, &firm);
    let got = lines(w);
    assert_eq!(got.len(), 1, "{got:?}");
    let a = &got[0];
    assert_eq!(a["seq"], 1);
    assert_eq!(a["consent"], cid.as_str());
    assert_eq!(a["category"], "penalties");
    assert_eq!(a["trigger"]["position"], pos);
    assert_eq!(a["content"]["firm"], firm.as_str());
    assert_eq!(a["content"]["trigger"]["kind"], "credit_record_published");
    assert_eq!(a["verified"]["logged_before_release"], true, "{a}");
    let logged_at = a["entry"]["position"].as_u64().expect("entry position");
    assert!(logged_at > pos, "the delivery is logged after its trigger");

    // The firm's access log lists the delivery, and its completeness proof covers it.
    let log = ok_json(&node.xinyi(
        Some(&format!("firm-{firm}")),
        &["--json", "access-log", "--firm", &firm, "--verify"],
    ));
    assert_eq!(log["verified"]["complete"], true, "{log}");
    let deliveries = alert_entries(&log);
    assert_eq!(deliveries.len(), 1, "{log}");
    assert_eq!(deliveries[0]["bank"], "bank-a");
    assert_eq!(deliveries[0]["position"], logged_at);
    // And the bank's query list.
    let q = ok_json(&node.xinyi(Some("bank-a"), &["--json", "queries"]));
    assert_eq!(alert_entries(&q).len(), 1, "{q}");

    // A bank without a monitoring scope gets nothing; nobody reads another bank's alerts.
    assert_eq!(
        alerts_of(&node, "bank-b", 0)["alerts"],
        serde_json::json!([])
    );
    node.assert_forbidden("bank-b", "/v1/banks/bank-a/alerts");
    node.assert_needs_auth("/v1/banks/bank-a/alerts");
    let (code, v) = node.get_as("bank-a", "/v1/banks/bank-a/alerts?after=x");
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("api.bad_param")),
        "{v}"
    );

    // Revoke: the next record produces no alert and no access. A later consent's alert
    // (for a later record) shows the monitor did scan past the unmonitored one.
    ok_json(&node.xinyi(
        Some(&format!("firm-{firm}")),
        &["--json", "consent", "revoke", &cid],
    ));
    let silent = publish(&node, &firm);
    let cid2 = grant(&node, &firm, "bank-a", Some("penalties"));
    let w = watch(&node, "bank-a", 1, 1);
    let loud = publish(&node, &firm);
    let got = lines(w);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["seq"], 2);
    assert_eq!(got[0]["consent"], cid2.as_str());
    assert_eq!(got[0]["trigger"]["position"], loud);
    assert!(silent < loud);
    let v = alerts_of(&node, "bank-a", 0);
    let triggers: Vec<u64> = v["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["trigger"]["position"].as_u64().expect("trigger"))
        .collect();
    assert_eq!(
        triggers,
        vec![pos, loud],
        "no alert for the record after revocation"
    );
    let log = ok_json(&node.xinyi(
        Some(&format!("firm-{firm}")),
        &["--json", "access-log", "--firm", &firm, "--verify"],
    ));
    assert_eq!(log["verified"]["complete"], true, "{log}");
    assert_eq!(alert_entries(&log).len(), 2, "{log}");
    assert_eq!(alerts_of(&node, "bank-b", 0)["last_seq"], 0);

    // Metrics count the deliveries.
    let m = ureq::get(&format!("{}/metrics", node.url))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    assert!(m.contains("xinyi_alerts_delivered_total 2"), "{m}");
}

/// One received webhook POST.
#[derive(Debug, Clone)]
struct Hook {
    idempotency_key: String,
    signature: String,
    body: String,
}

/// A minimal HTTP/1.1 server answering 200 to every POST and recording it.
fn receiver(listener: std::net::TcpListener, got: Arc<Mutex<Vec<Hook>>>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let (mut len, mut key, mut sig) = (0usize, String::new(), String::new());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    let v = v.trim().to_string();
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.parse().unwrap_or(0),
                        "idempotency-key" => key = v,
                        "x-xinyi-signature" => sig = v,
                        _ => {}
                    }
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            got.lock().expect("lock").push(Hook {
                idempotency_key: key,
                signature: sig,
                body: String::from_utf8_lossy(&body).to_string(),
            });
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
}

#[test]
fn a_webhook_down_for_a_while_gets_every_alert_once_back_each_logged_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Nothing listens on the webhook's port yet: the receiver is down.
    let port = free_port();
    let hook = format!("bank-a=http://127.0.0.1:{port}/hook");
    let node = start(
        tmp.path(),
        &["--webhook", &hook, "--webhook-max-backoff-ms", "300"],
    );
    let firm = sample_firm(2).expect("firm").to_string();
    grant(&node, &firm, "bank-a", Some("penalties"));
    let n = 3;
    for _ in 0..n {
        publish(&node, &firm);
    }
    // All three are logged and in the pull stream while the webhook still fails.
    let start_t = Instant::now();
    while alerts_of(&node, "bank-a", 0)["last_seq"] != n {
        assert!(start_t.elapsed() < DEADLINE, "alerts not released");
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = ureq::get(&format!("{}/metrics", node.url))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    assert!(
        m.lines()
            .any(|l| l.starts_with("xinyi_webhook_failures_total ") && !l.ends_with(" 0")),
        "the webhook should have failed while down: {m}"
    );
    // The receiver comes up.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind webhook port");
    let got = Arc::new(Mutex::new(Vec::new()));
    receiver(listener, got.clone());
    let start_t = Instant::now();
    let hooks = loop {
        let h = got.lock().expect("lock").clone();
        let mut ids: Vec<&str> = h.iter().map(|x| x.idempotency_key.as_str()).collect();
        ids.sort();
        ids.dedup();
        if ids.len() as u64 >= n {
            break h;
        }
        assert!(
            start_t.elapsed() < DEADLINE,
            "webhook got {} of {n}",
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Each POST is signed by the agency node, its idempotency key is the alert id, and the
    // alert verifies: content digest, logged entry, inclusion in a final checkpoint.
    let genesis =
        xinyi_ledger::Genesis::from_json(&std::fs::read(node.genesis()).expect("genesis"))
            .expect("genesis");
    let chain = genesis.chain_id().expect("chain id");
    let agency = genesis
        .orgs
        .iter()
        .find(|o| o.id.as_str() == "gz-credit")
        .expect("agency")
        .key;
    let trust = xinyi_client::proof::Trust::from_genesis(&genesis).expect("trust");
    let bank = xinyi_ledger::OrgId::new("bank-a").expect("org");
    let mut seqs = Vec::new();
    for h in &hooks {
        let (who, sig) = h.signature.split_once(';').expect("org;sig");
        assert_eq!(who, "gz-credit");
        let sig: [u8; 64] = hex_decode(sig).try_into().expect("64 bytes");
        let mut msg = b"xinyi/v1/sig/webhook\0".to_vec();
        msg.extend_from_slice(chain.as_bytes());
        msg.extend_from_slice(h.body.as_bytes());
        xinyi_ledger::keys::verify_message(
            &agency.verifying_key().expect("key"),
            &msg,
            &xinyi_ledger::Signature(sig),
        )
        .expect("webhook signature");
        let a: Value = serde_json::from_str(&h.body).expect("JSON body");
        assert_eq!(a["id"], h.idempotency_key.as_str());
        let v = xinyi_client::watch::verify_alert(
            &node.api(),
            &trust,
            &bank,
            &a,
            Duration::from_secs(20),
        )
        .expect("the alert was logged before it was sent");
        seqs.push(v.seq);
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "none lost");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
