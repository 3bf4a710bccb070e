//! Audit and transparency end to end (issue 7), with the real `xinyi-node --dev` and `xinyi`
//! binaries on loopback:
//!
//! - quorum-cosigned checkpoints: the client verifies them, an altered one is refused;
//! - split view / rewritten history: two dev nodes forked from one data directory (same genesis
//!   and keys) diverge; a client that verified one refuses the other (state file), and
//!   `xinyi audit consistency` names the fork;
//! - witnesses: `xinyi witness serve` cosigns the node's checkpoints (the node submits them and
//!   serves the cosignature), and refuses a forked node's inconsistent checkpoint;
//! - anchoring: checkpoints go to a JSON-lines file sink and come back as `anchor_receipt`
//!   entries.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use xinyi_ledger::sample::sample_firm;
use xinyi_tests::cli::{fails, grant_args, ok, ok_json};
use xinyi_tests::{binaries, free_port, DevNode};

fn step(what: &str) {
    eprintln!("== {what}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

/// Runs `xinyi` against `node` with extra global flags before the command.
fn xinyi(node: &DevNode, key: Option<&str>, args: &[&str]) -> Output {
    node.xinyi(key, args)
}

fn grant(node: &DevNode, firm: &str, extra: &[&str]) -> Output {
    let fk = format!("firm-{firm}");
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(grant_args(firm, "bank-a", "tax", "1", "10"));
    xinyi(node, Some(&fk), &args)
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_witness(dir: &Path, genesis: &Path, key: &Path, port: u16) -> Proc {
    let log = std::fs::File::create(dir.join("witness.log")).expect("log");
    let child = Command::new(&binaries().client)
        .args(["--key"])
        .arg(key)
        .args([
            "witness",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            "auditor.example/w1",
            "--log",
        ])
        .arg(genesis)
        .arg("--state-file")
        .arg(dir.join("witness-state.json"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn witness");
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("http://127.0.0.1:{port}/health"))
        .call()
        .is_err()
    {
        assert!(Instant::now() < deadline, "witness did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

/// Two dev nodes from one data directory: `a` keeps running on `dir/a`, `b` on a copy.
fn forked_pair(tmp: &Path, extra_b: &[&str]) -> (DevNode, DevNode) {
    let a_dir = tmp.join("a");
    let mut a = DevNode::start(&a_dir, &tmp.join("a.log"), Duration::from_secs(60));
    let firm = sample_firm(0).expect("firm").to_string();
    ok(&grant(&a, &firm, &["--no-state"]));
    a.kill9();
    copy_dir(&a_dir, &tmp.join("b"));
    let a = DevNode::start(&a_dir, &tmp.join("a2.log"), Duration::from_secs(60));
    let b = DevNode::start_with(
        &tmp.join("b"),
        &tmp.join("b.log"),
        Duration::from_secs(60),
        extra_b,
    );
    (a, b)
}

#[test]
fn quorum_checkpoints_and_split_view_detection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("client-state.json");
    let st = state.to_str().expect("utf-8").to_string();
    let firm = sample_firm(0).expect("firm").to_string();
    let (a, b) = forked_pair(tmp.path(), &[]);

    step("a write on node A is verified against a quorum-cosigned checkpoint and remembered");
    let g = ok_json(&grant(&a, &firm, &["--state", &st]));
    let size_a = g["verified"]["checkpoint_size"].as_u64().expect("size");
    let saved = std::fs::read_to_string(&state).expect("state file written");
    assert!(saved.contains(&format!("\"size\": {size_a}")), "{saved}");
    let cp = ok_json(&xinyi(&a, None, &["--state", &st, "--json", "checkpoint"]));
    assert_eq!(cp["size"].as_u64(), Some(size_a));
    assert_eq!(cp["validator_power"], cp["total_power"]);

    step("an altered checkpoint is refused");
    let cp_a = tmp.path().join("cp-a.txt");
    ok(&xinyi(
        &a,
        None,
        &[
            "--state",
            &st,
            "checkpoint",
            "--save",
            cp_a.to_str().expect("utf-8"),
        ],
    ));
    let note = std::fs::read_to_string(&cp_a).expect("note");
    let altered = note.replacen(&format!("\n{size_a}\n"), &format!("\n{}\n", size_a + 1), 1);
    assert_ne!(note, altered);
    let cp_x = tmp.path().join("cp-x.txt");
    std::fs::write(&cp_x, altered).expect("write");
    fails(
        &xinyi(
            &a,
            None,
            &[
                "audit",
                "consistency",
                cp_a.to_str().expect("utf-8"),
                cp_x.to_str().expect("utf-8"),
            ],
        ),
        "checkpoint.invalid",
    );

    step("node B (same genesis and keys, forked history) shows a different log: caught");
    let gb = ok_json(&grant(&b, &firm, &["--no-state"]));
    assert_eq!(
        gb["verified"]["checkpoint_size"].as_u64(),
        Some(size_a),
        "the fork has the same size, another root"
    );
    fails(
        &xinyi(&b, None, &["--state", &st, "checkpoint"]),
        "split_view",
    );
    // A write through B is refused by a client that saw A.
    fails(&grant(&b, &firm, &["--state", &st]), "split_view");

    step("audit consistency names the fork between the two signed checkpoints");
    let cp_b = tmp.path().join("cp-b.txt");
    ok(&xinyi(
        &b,
        None,
        &[
            "--no-state",
            "checkpoint",
            "--save",
            cp_b.to_str().expect("utf-8"),
        ],
    ));
    // Asked for the proof, B can only give one for its own log, which does not extend A's.
    fails(
        &xinyi(
            &b,
            None,
            &[
                "--no-state",
                "audit",
                "consistency",
                cp_a.to_str().expect("utf-8"),
                cp_b.to_str().expect("utf-8"),
            ],
        ),
        "consistency.fork",
    );

    step("A grows honestly: consistent with what the client saw");
    ok(&grant(&a, &firm, &["--state", &st]));
    let cp_a2 = tmp.path().join("cp-a2.txt");
    ok(&xinyi(
        &a,
        None,
        &[
            "--state",
            &st,
            "checkpoint",
            "--save",
            cp_a2.to_str().expect("utf-8"),
        ],
    ));
    let out = ok(&xinyi(
        &a,
        None,
        &[
            "audit",
            "consistency",
            cp_a.to_str().expect("utf-8"),
            cp_a2.to_str().expect("utf-8"),
        ],
    ));
    assert!(out.contains("verified: the checkpoint of size"), "{out}");

    step("B rewrites history to a longer log: still caught against the client's memory");
    ok(&grant(&b, &firm, &["--no-state"]));
    ok(&grant(&b, &firm, &["--no-state"]));
    fails(
        &xinyi(&b, None, &["--state", &st, "checkpoint"]),
        "split_view",
    );
}

fn post(url: &str, body: &str) -> (u16, String) {
    match ureq::post(url).send_string(body) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

#[test]
fn witness_cosigns_consistent_checkpoints_and_refuses_a_fork() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let firm = sample_firm(0).expect("firm").to_string();
    let wkey = tmp.path().join("witness.key");
    let o = Command::new(&binaries().client)
        .args(["keygen", "--out"])
        .arg(&wkey)
        .output()
        .expect("keygen");
    ok(&o);
    let o = Command::new(&binaries().client)
        .arg("--key")
        .arg(&wkey)
        .args(["witness", "vkey", "--name", "auditor.example/w1"])
        .output()
        .expect("vkey");
    let vkey = ok(&o).trim().to_string();
    assert!(vkey.starts_with("auditor.example/w1+"), "{vkey}");

    // The node's genesis exists once it has started: start, stop, then start with the witness.
    let a_dir = tmp.path().join("a");
    let mut a = DevNode::start(&a_dir, &tmp.path().join("a0.log"), Duration::from_secs(60));
    ok(&grant(&a, &firm, &["--no-state"]));
    a.kill9();
    copy_dir(&a_dir, &tmp.path().join("b"));
    let port = free_port();
    let wurl = format!("http://127.0.0.1:{port}");
    let _w = start_witness(tmp.path(), &a_dir.join("genesis.json"), &wkey, port);
    let wflags = ["--witness", wurl.as_str(), "--witness-vkey", vkey.as_str()];
    let a = DevNode::start_with(
        &a_dir,
        &tmp.path().join("a.log"),
        Duration::from_secs(60),
        &wflags,
    );

    step("a client requiring the witness gets a write verified once the witness cosigned");
    let g = ok_json(&grant(&a, &firm, &["--no-state", "--witness", &vkey]));
    let size = g["verified"]["checkpoint_size"].as_u64().expect("size");
    let cp = ok_json(&xinyi(
        &a,
        None,
        &["--no-state", "--witness", &vkey, "--json", "checkpoint"],
    ));
    assert_eq!(cp["witnesses"][0]["name"], "auditor.example/w1", "{cp}");
    assert!(cp["size"].as_u64().expect("size") >= size);

    step("the forked node B submits an inconsistent checkpoint: the witness refuses");
    let b = DevNode::start_with(
        &tmp.path().join("b"),
        &tmp.path().join("b.log"),
        Duration::from_secs(60),
        &wflags,
    );
    ok(&grant(&b, &firm, &["--no-state"]));
    ok(&grant(&b, &firm, &["--no-state"]));
    fails(
        &xinyi(
            &b,
            None,
            &[
                "--no-state",
                "--witness",
                &vkey,
                "--wait-ms",
                "3000",
                "checkpoint",
            ],
        ),
        "checkpoint.witnesses",
    );
    // The same, submitted by hand: 409 tells the witness's size, then 422 for the fork.
    let note_b = b.api().get_text("/v1/checkpoint").expect("checkpoint");
    let (code, body) = post(
        &format!("{wurl}/add-checkpoint"),
        &format!("old 0\n\n{note_b}"),
    );
    assert_eq!(code, 409, "{body}");
    let wsize: u64 = body.trim().parse().expect("size");
    let proof: Value = b
        .api()
        .get(&format!(
            "/v1/consistency?from={wsize}&to={}",
            note_b.lines().nth(1).expect("size line")
        ))
        .expect("proof");
    let mut req = format!("old {wsize}\n");
    for h in proof["proof"].as_array().expect("proof") {
        let raw = hex_to_bytes(h.as_str().expect("hex"));
        req += &format!("{}\n", b64(&raw));
    }
    req += "\n";
    req += &note_b;
    let (code, body) = post(&format!("{wurl}/add-checkpoint"), &req);
    assert_eq!(code, 422, "{body}");
    // Node A keeps being cosigned.
    ok(&grant(&a, &firm, &["--no-state", "--witness", &vkey]));
}

fn hex_to_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn checkpoints_are_anchored_and_receipts_recorded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let firm = sample_firm(0).expect("firm").to_string();
    let sink: PathBuf = tmp.path().join("anchors.jsonl");
    let node = DevNode::start_with(
        &tmp.path().join("n"),
        &tmp.path().join("n.log"),
        Duration::from_secs(60),
        &[
            "--anchor-file",
            sink.to_str().expect("utf-8"),
            "--anchor-interval-ms",
            "200",
        ],
    );
    ok(&grant(&node, &firm, &["--no-state"]));
    step("the file sink gets a line and the ledger an anchor_receipt for it");
    let deadline = Instant::now() + Duration::from_secs(60);
    let receipt = loop {
        let h: Value = node.api().get("/health").expect("health");
        let size = h["log_size"].as_u64().expect("log size");
        let mut found = None;
        for pos in (0..size).rev().take(20) {
            // Entries are role-gated: the auditor reads them all.
            let (code, e) = node.get_as("auditor", &format!("/v1/entries/{pos}"));
            assert_eq!(code, 200, "{e}");
            if e["kind"] == "anchor_receipt" {
                found = Some(e);
                break;
            }
        }
        if let Some(e) = found {
            break e;
        }
        assert!(Instant::now() < deadline, "no anchor receipt was committed");
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines = std::fs::read_to_string(&sink).expect("sink file");
    let first: Value = serde_json::from_str(lines.lines().next().expect("a line")).expect("JSON");
    let body = &receipt["body"]["kind"]["anchor_receipt"];
    let body = if body.is_null() {
        &receipt["body"]
    } else {
        body
    };
    let rendered = body.to_string();
    assert!(rendered.contains("line:1"), "{rendered}");
    assert!(
        rendered.contains(first["root"].as_str().expect("root")),
        "{rendered} vs {first}"
    );
    // The anchored checkpoint is a final one the client accepts.
    let note_path = tmp.path().join("anchored.txt");
    std::fs::write(&note_path, first["note"].as_str().expect("note")).expect("write");
    ok(&xinyi(
        &node,
        None,
        &[
            "audit",
            "consistency",
            note_path.to_str().expect("utf-8"),
            note_path.to_str().expect("utf-8"),
        ],
    ));
    step("audit verify reports entries, organisations, consents, queries, repairs, anchors");
    let fk = format!("firm-{firm}");
    let c = ok_json(&grant(&node, &firm, &["--no-state"]));
    let cid = c["id"].as_str().expect("id").to_string();
    ok(&xinyi(
        &node,
        Some("bank-a"),
        &[
            "query",
            "--consent",
            &cid,
            "--firm",
            &firm,
            "--categories",
            "tax",
        ],
    ));
    let _ = xinyi(
        &node,
        Some("bank-b"),
        &[
            "query",
            "--consent",
            &cid,
            "--firm",
            &firm,
            "--categories",
            "tax",
        ],
    );
    let _ = fk;
    // The export is for auditors and validators: unsigned it is refused, with the option to use.
    let e = fails(
        &xinyi(&node, None, &["audit", "verify"]),
        "api.missing_auth",
    );
    assert!(e.contains("sign the request with --key"), "{e}");
    let rep = ok_json(&xinyi(
        &node,
        Some("auditor"),
        &["--json", "audit", "verify"],
    ));
    assert_eq!(rep["result"], "ok", "{rep}");
    assert!(
        rep["entries_by_kind"]["anchor_receipt"]
            .as_u64()
            .expect("anchors")
            >= 1,
        "{rep}"
    );
    let l = &rep["ledger"];
    assert!(
        !l["anchors"].as_array().expect("anchors").is_empty(),
        "{rep}"
    );
    assert!(l["consents"].as_u64().expect("consents") >= 2, "{rep}");
    assert!(l["queries_served"].as_u64().expect("served") >= 1, "{rep}");
    assert!(
        l["queries_denied"]["consent.wrong_bank"]
            .as_u64()
            .expect("denied")
            >= 1,
        "{rep}"
    );
    assert!(
        l["organisations"]["agency"].as_u64().expect("agencies") >= 1,
        "{rep}"
    );
    assert!(l["repairs"].is_object(), "{rep}");
    assert_eq!(
        rep["checkpoint"]["validator_power"],
        rep["checkpoint"]["total_power"]
    );
    let human = ok(&xinyi(&node, Some("auditor"), &["audit", "verify"]));
    assert!(
        human.contains("queries: ") && human.contains("anchor receipts: "),
        "{human}"
    );

    step("a flipped byte in an exported bundle: the first failure is named with its location");
    let bundle = tmp.path().join("chain.bundle");
    ok(&xinyi(
        &node,
        Some("auditor"),
        &["export", "--out", bundle.to_str().expect("utf-8")],
    ));
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    let at = bytes.len() - 200;
    bytes[at] ^= 0x01;
    std::fs::write(&bundle, bytes).expect("write");
    let e = fails(
        &xinyi(
            &node,
            None,
            &[
                "audit",
                "verify",
                "--bundle",
                bundle.to_str().expect("utf-8"),
            ],
        ),
        "audit failed at block",
    );
    assert!(!e.contains("panicked"), "{e}");
}

#[path = "common/mod.rs"]
mod common;

/// Four validators: the served checkpoint gathers a quorum of cosignatures and is accepted;
/// the same checkpoint with fewer than a quorum of them is refused.
#[test]
fn four_validators_a_checkpoint_needs_more_than_two_thirds() {
    let tn = common::Testnet::up(4, 1, 23900);
    let (org, url) = tn.nodes().into_iter().next().expect("a node");
    let genesis = tn.genesis();
    let g = genesis.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        Command::new(&binaries().client)
            .args(["--node", &url, "--genesis", g, "--no-state"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run xinyi")
    };
    step(&format!("the checkpoint served by {org} carries a quorum"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let note = loop {
        let n = ureq::get(&format!("{url}/v1/checkpoint"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        if n.lines().filter(|l| l.starts_with('\u{2014}')).count() >= 3 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no quorum-cosigned checkpoint: {n}\n{}",
            tn.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let cp = ok_json(&run(&["--json", "checkpoint"]));
    assert_eq!(cp["total_power"].as_u64(), Some(4), "{cp}");
    assert!(cp["validator_power"].as_u64().expect("power") >= 3, "{cp}");

    step("the same checkpoint with two of four signatures is refused");
    let dir = tn.tmp.path();
    let full = dir.join("full.txt");
    std::fs::write(&full, &note).expect("write");
    let (text, sigs) = note.split_once("\n\n").expect("note");
    let two: Vec<&str> = sigs.lines().take(2).collect();
    let stripped = dir.join("two.txt");
    std::fs::write(&stripped, format!("{text}\n\n{}\n", two.join("\n"))).expect("write");
    let empty = dir.join("proof.json");
    std::fs::write(&empty, r#"{"proof": []}"#).expect("write");
    let (f, s, p) = (
        full.to_str().expect("utf-8"),
        stripped.to_str().expect("utf-8"),
        empty.to_str().expect("utf-8"),
    );
    ok(&run(&["audit", "consistency", f, f, "--proof", p]));
    fails(
        &run(&["audit", "consistency", s, f, "--proof", p]),
        "checkpoint.no_quorum",
    );
}

/// A loopback HTTP proxy in front of `upstream` that forwards GET requests (with their
/// X-Xinyi-Auth header) and, when `hide` is set, drops the first item of every access-log
/// answer: a node hiding one access from the firm.
fn hiding_proxy(upstream: String, hide: bool) -> String {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            let mut auth = None;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("x-xinyi-auth") {
                        auth = Some(v.trim().to_string());
                    }
                }
            }
            let mut req = ureq::get(&format!("{upstream}{path}"));
            if let Some(a) = &auth {
                req = req.set("X-Xinyi-Auth", a);
            }
            let (status, ctype, mut body) = match req.call() {
                Ok(resp) => (
                    resp.status(),
                    resp.content_type().to_string(),
                    resp.into_string().unwrap_or_default(),
                ),
                Err(ureq::Error::Status(c, resp)) => (
                    c,
                    resp.content_type().to_string(),
                    resp.into_string().unwrap_or_default(),
                ),
                Err(_) => (502, "text/plain".into(), "bad gateway".into()),
            };
            if hide && status == 200 && path.ends_with("/access-log") {
                let mut v: Value = serde_json::from_str(&body).expect("JSON");
                if let Some(a) = v["entries"].as_array_mut() {
                    if !a.is_empty() {
                        a.remove(0);
                    }
                }
                body = v.to_string();
            }
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_firms_access_history_is_provably_complete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let firm = sample_firm(0).expect("firm").to_string();
    let fk = format!("firm-{firm}");
    let node = DevNode::start(
        &tmp.path().join("n"),
        &tmp.path().join("n.log"),
        Duration::from_secs(60),
    );
    let c = ok_json(&grant(&node, &firm, &["--no-state"]));
    let cid = c["id"].as_str().expect("id").to_string();
    let q = |bank: &str| {
        xinyi(
            &node,
            Some(bank),
            &[
                "--no-state",
                "query",
                "--consent",
                &cid,
                "--firm",
                &firm,
                "--categories",
                "tax",
            ],
        )
    };
    ok(&q("bank-a"));
    let _ = q("bank-b");
    let _ = q("bank-a");

    step("the firm's access log verifies as complete against the certified state root");
    let log = ok_json(&xinyi(
        &node,
        Some(&fk),
        &[
            "--no-state",
            "--json",
            "access-log",
            "--firm",
            &firm,
            "--verify",
        ],
    ));
    assert_eq!(log["verified"]["complete"], true, "{log}");
    assert_eq!(log["verified"]["access_count"], 3, "{log}");
    let human = ok(&xinyi(
        &node,
        Some("auditor"),
        &["--no-state", "access-log", "--firm", &firm, "--verify"],
    ));
    assert!(
        human.contains("the list is complete up to log size"),
        "{human}"
    );

    step("through an honest proxy it still verifies; a proxy hiding one access is caught");
    let honest = hiding_proxy(node.url.clone(), false);
    let run_via = |url: &str| {
        Command::new(&binaries().client)
            .args(["--node", url, "--genesis"])
            .arg(node.genesis())
            .arg("--key")
            .arg(node.key(&fk))
            .args(["--no-state", "access-log", "--firm", &firm, "--verify"])
            .stdin(Stdio::null())
            .output()
            .expect("run xinyi")
    };
    ok(&run_via(&honest));
    let hiding = hiding_proxy(node.url.clone(), true);
    fails(&run_via(&hiding), "access_log.incomplete");
    // Without --verify the hidden entry goes unnoticed: the proof is what catches it.
    let o = Command::new(&binaries().client)
        .args(["--node", &hiding, "--genesis"])
        .arg(node.genesis())
        .arg("--key")
        .arg(node.key(&fk))
        .args(["--no-state", "--json", "access-log", "--firm", &firm])
        .stdin(Stdio::null())
        .output()
        .expect("run xinyi");
    assert_eq!(ok_json(&o)["entries"].as_array().expect("entries").len(), 2);

    step("a firm without any access gets a verified absence");
    let other = sample_firm(1).expect("firm").to_string();
    let out = ok_json(&xinyi(
        &node,
        Some("auditor"),
        &[
            "--no-state",
            "--json",
            "access-log",
            "--firm",
            &other,
            "--verify",
        ],
    ));
    assert_eq!(out["verified"]["access_count"], 0, "{out}");
}

/// Every file under `dir`, recursively, as (path, bytes).
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).expect("read")));
        }
    }
    out
}

/// A dev node that served and denied queries, with a consent granted by sample firm 0 to bank-a:
/// (tempdir, node, firm USCC, consent id, position of the served query record).
fn node_with_queries() -> (tempfile::TempDir, DevNode, String, String, u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let firm = sample_firm(0).expect("firm").to_string();
    let node = DevNode::start(
        &tmp.path().join("n"),
        &tmp.path().join("n.log"),
        Duration::from_secs(60),
    );
    let c = ok_json(&xinyi(
        &node,
        Some(&format!("firm-{firm}")),
        &[
            vec!["--no-state"],
            grant_args(&firm, "bank-a", "registration,tax", "3", "10"),
        ]
        .concat(),
    ));
    let cid = c["id"].as_str().expect("id").to_string();
    let q = ok_json(&xinyi(
        &node,
        Some("bank-a"),
        &[
            "--no-state",
            "--json",
            "query",
            "--consent",
            &cid,
            "--categories",
            "tax",
        ],
    ));
    let pos = q["record"]["position"].as_u64().expect("position");
    fails(
        &xinyi(
            &node,
            Some("bank-b"),
            &[
                "--no-state",
                "query",
                "--consent",
                &cid,
                "--categories",
                "tax",
            ],
        ),
        "HTTP 403",
    );
    (tmp, node, firm, cid, pos)
}

/// Issue #7 item 7: a leaked copy of the chain (an exported bundle, the node's ledger sled files)
/// holds firm tags, never a USCC, and still verifies offline from the genesis alone.
#[test]
fn a_leaked_chain_copy_holds_tags_not_usccs() {
    let (tmp, mut node, firm, _cid, _pos) = node_with_queries();
    step("the chain names the firm by tag; the firm's tag is the keyed HMAC of its USCC");
    let (code, t) = node.get_as(&format!("firm-{firm}"), &format!("/v1/firms/{firm}/tag"));
    assert_eq!(code, 200, "{t}");
    let key = xinyi_ledger::FirmKey::from_hex(
        &std::fs::read_to_string(node.key("firm")).expect("dev-keys/firm.key"),
    )
    .expect("firm key");
    let uscc = xinyi_ledger::Uscc::parse(&firm).expect("uscc");
    assert_eq!(t["tag"].as_str(), Some(key.tag(&uscc).to_hex().as_str()));
    assert!(t["registration"].as_u64().is_some(), "{t}");

    step("export the bundle (auditor) and stop the node");
    let bundle = tmp.path().join("leak.bundle");
    ok(&xinyi(
        &node,
        Some("auditor"),
        &["export", "--out", bundle.to_str().expect("utf-8")],
    ));
    node.kill9();
    let mut leaked = vec![(bundle.clone(), std::fs::read(&bundle).expect("bundle"))];
    leaked.extend(files_under(&tmp.path().join("n").join("ledger")));
    let total: usize = leaked.iter().map(|(_, b)| b.len()).sum();
    assert!(total > 10_000, "the copy holds the chain ({total} bytes)");

    step("no sample firm's USCC occurs in the bundle or the ledger's sled files");
    // The keyed firms (registered, consented, queried) and the firms with published records.
    let firms: Vec<String> = (0..100)
        .map(|i| sample_firm(i).expect("firm").to_string())
        .collect();
    for (path, bytes) in &leaked {
        for f in &firms {
            assert!(
                !bytes.windows(f.len()).any(|w| w == f.as_bytes()),
                "{} contains the USCC {f}",
                path.display()
            );
        }
    }
    // Nor the consent's purpose text (the ledger holds its salted digest).
    for (path, bytes) in &leaked {
        let purpose = b"loan application";
        assert!(
            !bytes.windows(purpose.len()).any(|w| w == purpose),
            "{} contains the consent purpose text",
            path.display()
        );
    }
    // The tag is there instead (it is what the rules key on).
    let tag = key.tag(&uscc);
    assert!(
        leaked[0].1.windows(32).any(|w| w == tag.as_bytes()),
        "the bundle names the firm by its tag"
    );

    step("the leaked bundle verifies offline from the genesis alone (no firm key)");
    let rep = ok_json(&xinyi(
        &node,
        None,
        &[
            "--json",
            "audit",
            "verify",
            "--bundle",
            bundle.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(rep["result"], "ok", "{rep}");
    assert!(
        rep["ledger"]["firms"].as_u64().expect("firms") >= 1,
        "{rep}"
    );
    assert_eq!(rep["entries_by_kind"]["query_served"], 1, "{rep}");
    assert_eq!(rep["entries_by_kind"]["query_denied"], 1, "{rep}");
}

/// Issue #7 item 7: API reads are role-gated — a bank sees its own queries, a firm its own
/// history, an auditor everything; others get inclusion data or 401/403 with a stable code.
#[test]
fn reads_are_role_gated() {
    let (_tmp, node, firm, cid, pos) = node_with_queries();
    let other = sample_firm(1).expect("firm").to_string();
    let fk = format!("firm-{firm}");
    let other_fk = format!("firm-{other}");
    let entry = format!("/v1/entries/{pos}");

    step("the query record: its bank, its firm and the auditor read it");
    for who in ["bank-a", fk.as_str(), "auditor", "gz-credit"] {
        let (code, e) = node.get_as(who, &entry);
        assert_eq!(code, 200, "{who}: {e}");
        assert_eq!(e["kind"], "query_served", "{who}: {e}");
        assert!(e["entry"].as_str().is_some_and(|s| !s.is_empty()), "{who}");
    }
    step("another bank, another firm, an unsigned reader: id, leaf hash and proof only");
    let full = node.get_as("auditor", &entry).1;
    let mut views = vec![
        ("bank-b", node.get_as("bank-b", &entry).1),
        ("other firm", node.get_as(&other_fk, &entry).1),
    ];
    views.push(("unsigned", node.get_raw(&entry, None).1));
    for (who, e) in &views {
        assert_eq!(e["redacted"], true, "{who}: {e}");
        assert!(
            e.get("entry").is_none() && e.get("body").is_none(),
            "{who}: {e}"
        );
        assert!(e.get("kind").is_none(), "{who}: {e}");
        assert_eq!(e["id"], full["id"], "{who}");
        assert_eq!(e["inclusion_proof"], full["inclusion_proof"], "{who}");
        assert!(e["leaf_hash"].as_str().is_some(), "{who}: {e}");
    }

    step("a bank cannot read another firm's history nor another bank's consents or queries");
    let log = format!("/v1/firms/{firm}/access-log");
    for who in ["bank-a", "bank-b", other_fk.as_str()] {
        node.assert_forbidden(who, &log);
    }
    node.assert_needs_auth(&log);
    let (code, e) = node.get_as(&fk, &log);
    assert_eq!(code, 200, "{e}");
    assert_eq!(e["entries"].as_array().expect("entries").len(), 2, "{e}");
    // A consent id is a capability the firm hands to a bank: another firm or an unsigned
    // reader is refused.
    let consent = format!("/v1/consents/{cid}");
    node.assert_forbidden(&other_fk, &consent);
    node.assert_needs_auth(&consent);
    for who in ["bank-a", "bank-b", fk.as_str(), "auditor"] {
        assert_eq!(node.get_as(who, &consent).0, 200, "{who}");
    }
    let queries = "/v1/banks/bank-a/queries";
    node.assert_forbidden("bank-b", queries);
    let (code, e) = node.get_as("bank-a", queries);
    assert_eq!(code, 200, "{e}");
    let mine = e["entries"].as_array().expect("entries");
    assert_eq!(
        mine.len(),
        1,
        "bank-a's own query, not bank-b's denial: {e}"
    );
    assert_eq!(mine[0]["position"].as_u64(), Some(pos), "{e}");
    let (code, e) = node.get_as("auditor", "/v1/banks/bank-b/queries");
    assert_eq!(code, 200, "{e}");
    assert_eq!(e["entries"][0]["kind"], "query_denied", "{e}");

    // The same through the client.
    let mine = ok_json(&xinyi(&node, Some("bank-a"), &["--json", "queries"]));
    assert_eq!(mine["entries"].as_array().map(Vec::len), Some(1), "{mine}");
    fails(
        &xinyi(&node, Some("bank-b"), &["queries", "--bank", "bank-a"]),
        "api.forbidden",
    );

    step("the firm's tag: the firm and the auditor, not a bank");
    let tagp = format!("/v1/firms/{firm}/tag");
    node.assert_forbidden("bank-a", &tagp);
    assert_eq!(node.get_as("auditor", &tagp).0, 200);

    step("blocks: entries for auditors and validators, leaf hashes for others; export likewise");
    let h = node.get_as("auditor", &entry).1["height"]
        .as_u64()
        .expect("height");
    let block = format!("/v1/blocks/{h}");
    let (code, b) = node.get_raw(&block, None);
    assert_eq!(code, 200, "{b}");
    assert!(b.get("entries").is_none() && b["redacted"] == true, "{b}");
    assert!(b["header_hash"].as_str().is_some(), "{b}");
    let (_, b) = node.get_as("bank-a", &block);
    assert!(b.get("entries").is_none(), "{b}");
    let (_, b) = node.get_as("auditor", &block);
    assert!(!b["entries"].as_array().expect("entries").is_empty(), "{b}");
    node.assert_forbidden("bank-a", "/v1/export");
    node.assert_needs_auth("/v1/export");

    step("an invalid USCC is refused at the edge with a stable code");
    let (code, e) = node.get_as("auditor", "/v1/firms/91350100M000100Y44/access-log");
    assert_eq!(code, 400, "{e}");
    assert!(
        e["code"].as_str().is_some_and(|c| c.starts_with("uscc.")),
        "{e}"
    );
}
