//! API abuse against a real `xinyi-node --dev` process, filling the gaps of `node/tests/api.rs`
//! (which covers, in-process: malformed/unknown-field/wrong-kind bodies, bad entry signature,
//! key not the firm's, unregistered signer, wrong role, replayed entry, stale entry time, bad
//! query signature, non-bank query, oversized body, replayed query, unknown consent, per-IP
//! rate limit, request timeout, full mempool). Here, over a real socket: a firm signing for
//! another firm, an entry from the future, an organisation unknown to the ledger, a forged
//! agency attestation (credit record published by a bank), signed-read abuse (unknown org,
//! wrong key, replayed, stale and future headers), a consent refused as out of scope, revoked
//! and exhausted (each writes exactly one QueryDenied), non-JSON and oversized bodies, a slow
//! client, and a request flood against a node with a low rate limit. Every refusal is checked
//! for its status, `{code, message}` shape, and the log size before/after.
//! docs/reliability.md lists every case.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;
use xinyi_client::signer::Signer;
use xinyi_ledger::entry::{Consent, CreditRecord, EntryKind, QueryRequest};
use xinyi_ledger::sample::sample_firm;
use xinyi_ledger::types::{Category, Severity, DAY_MS};
use xinyi_ledger::{Digest, Entry, FirmTag, Genesis, OrgId};
use xinyi_tests::DevNode;

struct Resp {
    status: u16,
    body: Value,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

fn send(req: ureq::Request, body: Option<&str>) -> Resp {
    let r = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// POSTs `len` bytes of body (write errors ignored: the node may close once over the limit)
/// and reads the answer.
fn raw_post(url: &str, path: &str, len: usize) -> Resp {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let _ = s.write_all(&vec![b' '; len]);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    Resp {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::String(text.clone())),
    }
}

struct T {
    node: DevNode,
    chain: Digest,
}

impl T {
    fn post(&self, path: &str, body: &str) -> Resp {
        send(
            agent().post(&format!("{}{path}", self.node.url)),
            Some(body),
        )
    }
    fn get(&self, path: &str, auth: Option<&str>) -> Resp {
        let mut r = agent().get(&format!("{}{path}", self.node.url));
        if let Some(a) = auth {
            r = r.set("X-Xinyi-Auth", a);
        }
        send(r, None)
    }
    fn now(&self) -> u64 {
        self.get("/health", None).body["time_ms"].as_u64().unwrap()
    }
    fn log_size(&self) -> u64 {
        self.get("/health", None).body["log_size"].as_u64().unwrap()
    }
    fn signer(&self, key: &str, as_: Option<&str>) -> Signer {
        let mut s = Signer::load(Some(&self.node.key(key)), as_).unwrap();
        if let xinyi_client::signer::Identity::Firm(u) = s.identity {
            s.tag = Some(self.tag(&u));
        }
        s
    }
    /// A firm's ledger tag under the dev node's firm key.
    fn tag(&self, u: &xinyi_ledger::Uscc) -> xinyi_ledger::FirmTag {
        let text = std::fs::read_to_string(self.node.key("firm")).unwrap();
        xinyi_ledger::FirmKey::from_hex(&text).unwrap().tag(u)
    }
    fn entry(&self, s: &Signer, time: u64, kind: EntryKind) -> Entry {
        s.entry(&self.chain, time, kind).unwrap()
    }
}

fn write_body(e: &Entry) -> String {
    use base64::Engine as _;
    json!({ "entry": base64::engine::general_purpose::STANDARD.encode(&e.bytes) }).to_string()
}

/// A refusal: the status, the `{code, message}` shape, the code's prefix, and (when `writes`
/// is 0) an unchanged log.
#[track_caller]
fn refused(t: &T, before: u64, r: &Resp, status: u16, code_prefix: &str, writes: u64) {
    assert_eq!(r.status, status, "{}", r.body);
    let code = r.body["code"].as_str().unwrap_or_default();
    assert!(code.starts_with(code_prefix), "code {code}: {}", r.body);
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
    assert_eq!(t.log_size(), before + writes, "log size after {code}");
}

fn start(dir: &Path, extra: &[&str]) -> T {
    let node = DevNode::start_with(
        &dir.join("node"),
        &dir.join("node.log"),
        Duration::from_secs(60),
        extra,
    );
    let g = Genesis::from_json(&std::fs::read(node.genesis()).unwrap()).unwrap();
    T {
        chain: g.chain_id().unwrap(),
        node,
    }
}

fn consent(t: &T, firm_i: u32, cats: &[Category], max_uses: u32) -> String {
    let firm = sample_firm(firm_i).unwrap();
    let s = t.signer(&format!("firm-{firm}"), None);
    let now = t.now();
    let e = t.entry(
        &s,
        now,
        EntryKind::ConsentGranted(Consent {
            bank: OrgId::new("bank-a").unwrap(),
            purpose: Consent::purpose_digest(&[0x5a; 32], "abuse test"),
            categories: cats.to_vec(),
            not_before: now - DAY_MS,
            not_after: now + 30 * DAY_MS,
            max_uses,
            monitoring: None,
        }),
    );
    let r = t.post("/v1/consents", &write_body(&e));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

fn query(t: &T, firm_i: u32, consent: &str, cats: &[Category]) -> String {
    let bank = t.signer("bank-a", None);
    let req = QueryRequest {
        bank: OrgId::new("bank-a").unwrap(),
        firm: t.tag(&sample_firm(firm_i).unwrap()),
        consent: Digest::from_hex(consent).unwrap(),
        categories: cats.to_vec(),
        nonce: xinyi_tests::nonce(),
        time: t.now(),
    };
    json!({ "request": bank.query(&t.chain, req).unwrap() }).to_string()
}

/// A minor penalty on `firm` (record digest `[n; 32]`), as only an agency may publish it.
fn penalty(n: u8, firm: FirmTag) -> EntryKind {
    EntryKind::CreditRecordPublished(CreditRecord {
        record: Digest([n; 32]),
        firm,
        category: Category::Penalties,
        severity: Severity::Minor,
        min_publicity_days: 30,
    })
}

#[test]
fn forged_and_misdirected_writes_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = start(dir.path(), &[]);
    let now = t.now();
    let (f0, f1) = (sample_firm(0).unwrap(), sample_firm(1).unwrap());
    let grant = |author_firm: &str, key_firm: &str, time: u64| {
        let s = t.signer(
            &format!("firm-{key_firm}"),
            Some(&format!("firm:{author_firm}")),
        );
        t.entry(
            &s,
            time,
            EntryKind::ConsentGranted(Consent {
                bank: OrgId::new("bank-a").unwrap(),
                purpose: Consent::purpose_digest(&[0x5a; 32], "p"),
                categories: vec![Category::Registration],
                not_before: now,
                not_after: now + DAY_MS,
                max_uses: 1,
                monitoring: None,
            }),
        )
    };

    // A firm signing a consent in another firm's name.
    let before = t.log_size();
    let r = t.post(
        "/v1/consents",
        &write_body(&grant(f0.as_str(), f1.as_str(), now)),
    );
    refused(&t, before, &r, 401, "entry.", 0);

    // An entry from the future (1 hour ahead of the node clock; the window is 10 min).
    let r = t.post(
        "/v1/consents",
        &write_body(&grant(f0.as_str(), f0.as_str(), now + 3_600_000)),
    );
    assert!(r.status == 401 || r.status == 409, "{}", r.body);
    refused(&t, before, &r, r.status, "state.", 0);

    // An organisation the ledger does not know (its own fresh key).
    let stranger_key = dir.path().join("nobody.key");
    std::fs::write(
        &stranger_key,
        xinyi_ledger::KeyPair::generate().to_file_text(),
    )
    .unwrap();
    let s = Signer::load(Some(&stranger_key), Some("org:nobody")).unwrap();
    let e = t.entry(&s, now, penalty(1, t.tag(&f0)));
    let r = t.post("/v1/entries", &write_body(&e));
    refused(&t, before, &r, 401, "state.unknown_author", 0);

    // A forged agency attestation: a credit record "published" by a bank with its own key.
    let bank = t.signer("bank-a", None);
    let e = t.entry(&bank, now, penalty(2, t.tag(&f0)));
    let r = t.post("/v1/entries", &write_body(&e));
    refused(&t, before, &r, 403, "state.", 0);
    // ... and the same attestation claiming to be the agency but signed by the bank's key.
    let forged = t.signer("bank-a", Some("org:gz-credit"));
    let e = t.entry(&forged, now, penalty(3, t.tag(&f0)));
    let r = t.post("/v1/entries", &write_body(&e));
    refused(&t, before, &r, 401, "entry.bad_signature", 0);

    // Bodies that are not JSON, JSON of the wrong shape, and over the size limit.
    for (body, status) in [
        ("not json", 400),
        ("{\"entry\": 5}", 400),
        ("{\"entry\": \"!!!\"}", 400),
        ("[]", 400),
    ] {
        let r = t.post("/v1/entries", body);
        refused(&t, before, &r, status, "", 0);
    }
    // One byte over the 1 MiB limit (just over, so the node has read everything when it
    // answers: a larger body would race its close against our write — a broken pipe).
    let r = raw_post(&t.node.url, "/v1/entries", (1 << 20) + 1);
    refused(&t, before, &r, 413, "api.", 0);
}

#[test]
fn refused_queries_write_exactly_one_denial_and_signed_reads_resist_abuse() {
    let dir = tempfile::tempdir().unwrap();
    let t = start(dir.path(), &[]);
    let c1 = consent(&t, 0, &[Category::Registration], 1);

    // Out of scope: a category the consent does not cover → 403 + one QueryDenied.
    let before = t.log_size();
    let r = t.post("/v1/queries", &query(&t, 0, &c1, &[Category::Tax]));
    refused(&t, before, &r, 403, "consent.", 1);
    assert_eq!(r.body["denial"]["kind"], "query_denied", "{}", r.body);

    // In scope: served; then exhausted (max_uses 1) → 403 + one denial.
    let r = t.post("/v1/queries", &query(&t, 0, &c1, &[Category::Registration]));
    assert_eq!(r.status, 200, "{}", r.body);
    let before = t.log_size();
    let r = t.post("/v1/queries", &query(&t, 0, &c1, &[Category::Registration]));
    refused(&t, before, &r, 403, "consent.", 1);
    assert_eq!(r.body["denial"]["kind"], "query_denied");

    // Revoked → 403 + one denial.
    let c2 = consent(&t, 0, &[Category::Registration], 5);
    let firm = sample_firm(0).unwrap();
    let s = t.signer(&format!("firm-{firm}"), None);
    let rev = t.entry(
        &s,
        t.now(),
        EntryKind::ConsentRevoked {
            consent: Digest::from_hex(&c2).unwrap(),
        },
    );
    let r = t.post(&format!("/v1/consents/{c2}/revoke"), &write_body(&rev));
    assert_eq!(r.status, 200, "{}", r.body);
    let before = t.log_size();
    let r = t.post("/v1/queries", &query(&t, 0, &c2, &[Category::Registration]));
    refused(&t, before, &r, 403, "consent.", 1);

    // Another firm's consent invoked for this firm → 403 + one denial.
    let before = t.log_size();
    let c3 = consent(&t, 1, &[Category::Registration], 5);
    let before = before + 1;
    let r = t.post("/v1/queries", &query(&t, 0, &c3, &[Category::Registration]));
    refused(&t, before, &r, 403, "consent.", 1);

    // Signed reads of the access log.
    let path = format!("/v1/firms/{firm}/access-log");
    let before = t.log_size();
    let ok = s.auth_header(&t.chain, "GET", &path, t.now());
    assert_eq!(t.get(&path, Some(&ok)).status, 200);
    // Replayed header.
    refused(&t, before, &t.get(&path, Some(&ok)), 401, "api.", 0);
    // Stale and future headers (window ±5 min).
    let stale = s.auth_header(&t.chain, "GET", &path, t.now() - 600_000);
    refused(&t, before, &t.get(&path, Some(&stale)), 401, "api.", 0);
    let future = s.auth_header(&t.chain, "GET", &path, t.now() + 600_000);
    refused(&t, before, &t.get(&path, Some(&future)), 401, "api.", 0);
    // Another firm's key, signing as this firm.
    let other = t.signer(
        &format!("firm-{}", sample_firm(1).unwrap()),
        Some(&format!("firm:{firm}")),
    );
    let h = other.auth_header(&t.chain, "GET", &path, t.now());
    refused(&t, before, &t.get(&path, Some(&h)), 401, "api.", 0);
    // Another firm reading this firm's log with its own key.
    let other = t.signer(&format!("firm-{}", sample_firm(1).unwrap()), None);
    let h = other.auth_header(&t.chain, "GET", &path, t.now());
    refused(&t, before, &t.get(&path, Some(&h)), 403, "api.", 0);
    // An organisation unknown to the ledger.
    let k = dir.path().join("nobody.key");
    std::fs::write(&k, xinyi_ledger::KeyPair::generate().to_file_text()).unwrap();
    let nobody = Signer::load(Some(&k), Some("org:nobody")).unwrap();
    let h = nobody.auth_header(&t.chain, "GET", &path, t.now());
    refused(&t, before, &t.get(&path, Some(&h)), 401, "api.", 0);
    // Garbage header.
    refused(&t, before, &t.get(&path, Some("x;y;z")), 401, "api.", 0);
}

#[test]
fn slow_clients_are_cut_off_and_floods_get_429() {
    let dir = tempfile::tempdir().unwrap();
    let t = start(dir.path(), &["--rate-limit", "5"]);
    let before = t.log_size();

    // A client announcing a body it never sends: the node answers (timeout) or closes the
    // connection; either way it does not hold the connection open forever. Bounded by our
    // read timeout.
    let addr = t.node.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(
        b"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"entry\":",
    )
    .unwrap();
    let mut buf = Vec::new();
    let r = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        r.is_ok(),
        "the node kept a stalled request open past 60 s: {r:?}"
    );
    // The stalled body is cut off by the request timeout (10 s) and answered 408
    // `api.body_timeout` in the error shape: the client stalled, not the node.
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"api.body_timeout\""), "{text}");

    // A flood of signed reads from one signer: at 5 requests/s per signer, a burst of 200
    // gets 429s in the error shape.
    let firm = sample_firm(0).unwrap();
    let signer = t.signer(&format!("firm-{firm}"), None);
    let path = format!("/v1/firms/{firm}/access-log");
    let now = t.now();
    let mut limited = None;
    for _ in 0..200 {
        let h = signer.auth_header(&t.chain, "GET", &path, now);
        let r = t.get(&path, Some(&h));
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("no 429 in a burst of 200 requests at a limit of 5/s");
    assert!(r.body["code"]
        .as_str()
        .is_some_and(|c| c.starts_with("api.")));
    assert!(r.body["message"].is_string());
    // Nothing written by any of it (/health may itself be limited: retry briefly).
    let mut size = None;
    for _ in 0..50 {
        let r = t.get("/health", None);
        if r.status == 200 {
            size = r.body["log_size"].as_u64();
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(size, Some(before));
}

/// Key files: written 0600; with XINYI_KEY_PASSPHRASE set they are written encrypted
/// (argon2id + ChaCha20-Poly1305, `ledger/src/keyfile.rs`); the node restarts from them only with
/// the passphrase, and the client signs with them only with the passphrase.
#[test]
fn encrypted_key_files_need_the_passphrase() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let bins = xinyi_tests::binaries();
    let spawn = |pass: Option<&str>, log: &str| {
        let port = xinyi_tests::free_port();
        let mut c = Command::new(&bins.node);
        c.args(["--dev", "--data"])
            .arg(&data)
            .args(["--http", &format!("127.0.0.1:{port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(dir.path().join(log)).unwrap())
            .stderr(std::fs::File::create(dir.path().join(format!("{log}.err"))).unwrap())
            .env_remove("XINYI_KEY_PASSPHRASE");
        if let Some(p) = pass {
            c.env("XINYI_KEY_PASSPHRASE", p);
        }
        (c.spawn().unwrap(), format!("http://127.0.0.1:{port}"))
    };
    let wait_health = |url: &str, child: &mut std::process::Child| -> bool {
        for _ in 0..300 {
            if agent().get(&format!("{url}/health")).call().is_ok() {
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    let (mut node, url) = spawn(Some("s3cret pass"), "a.log");
    assert!(wait_health(&url, &mut node), "node did not start");
    let keys: Vec<_> = std::fs::read_dir(data.join("dev-keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    assert!(!keys.is_empty());
    for k in &keys {
        let mode = std::fs::metadata(k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", k.display());
        let text = std::fs::read_to_string(k).unwrap();
        assert!(
            text.starts_with("xinyi-encrypted-key/v1 argon2id "),
            "{}",
            k.display()
        );
    }
    // The client signs a read with an encrypted key only given the passphrase.
    let firm = sample_firm(0).unwrap();
    let client = |pass: Option<&str>| {
        let mut c = Command::new(&bins.client);
        c.arg("--node")
            .arg(&url)
            .arg("--genesis")
            .arg(data.join("genesis.json"))
            .arg("--key")
            .arg(data.join("dev-keys").join(format!("firm-{firm}.key")))
            .args(["--json", "access-log", "--firm", firm.as_str()])
            .env_remove("XINYI_KEY")
            .env_remove("XINYI_NODE")
            .env_remove("XINYI_GENESIS")
            .env("XINYI_STATE", dir.path().join("client-state.json"))
            .env_remove("XINYI_KEY_PASSPHRASE");
        if let Some(p) = pass {
            c.env("XINYI_KEY_PASSPHRASE", p);
        }
        c.output().unwrap()
    };
    let ok = client(Some("s3cret pass"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let no = client(None);
    assert!(!no.status.success());
    assert!(String::from_utf8_lossy(&no.stderr).contains("XINYI_KEY_PASSPHRASE"));
    let wrong = client(Some("guess"));
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));
    let _ = node.kill();
    let _ = node.wait();

    // Restart without the passphrase: refused, naming the variable; with it: starts.
    let (mut node, url) = spawn(None, "b.log");
    assert!(
        !wait_health(&url, &mut node),
        "started without the passphrase"
    );
    let _ = node.kill();
    let _ = node.wait();
    let err = std::fs::read_to_string(dir.path().join("b.log")).unwrap()
        + &std::fs::read_to_string(dir.path().join("b.log.err")).unwrap();
    assert!(err.contains("XINYI_KEY_PASSPHRASE"), "{err}");
    let (mut node, url) = spawn(Some("s3cret pass"), "c.log");
    assert!(
        wait_health(&url, &mut node),
        "restart with the passphrase failed"
    );
    let _ = node.kill();
    let _ = node.wait();
}
