//! Real-process tests of a local multi-node testnet (`xinyi-testnet`): every node is a real
//! `xinyi-node` process on 127.0.0.1 with consensus over libp2p, driven by the real `xinyi`
//! client or plain HTTP. Each test uses its own base port (tests run in parallel) and a guard
//! that takes its testnet down on drop. Time bounds are generous and nothing asserts timing:
//! "no progress" is "no new height over a few seconds", never "within X ms". The short chaos
//! runs of the pause and quorum-loss modes are here; key rotation is `rotation.rs`.

mod common;

use common::{
    agent, converge, get_json, height_head, log_text, ok, refused_connections, text, NodeProcess,
    Testnet,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use xinyi_ledger::entry::{
    query_signing_payload, Author, Consent, EntryBody, EntryKind, QueryRequest, SignedQueryRequest,
};
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::types::{Category, DAY_MS};
use xinyi_ledger::{Digest, Entry, FirmKey, FirmTag, Genesis, KeyPair, OrgId, Uscc};

const CONVERGE: Duration = Duration::from_secs(120);

fn step(what: &str) {
    eprintln!("== {what}");
}

fn read_key(p: &std::path::Path) -> KeyPair {
    KeyPair::from_file_text(&std::fs::read_to_string(p).expect("key file")).expect("key")
}

/// Signs and posts consents and queries the way a firm and bank-a would, over plain HTTP.
struct Load {
    chain: Digest,
    /// Keyed firms by ledger tag (the testnet's firm key is in keys/firm.key).
    firms: Vec<(FirmTag, KeyPair)>,
    bank: KeyPair,
    agent: ureq::Agent,
}

/// A write a node acknowledged as committed: (log position, entry id, which node said so).
type Ack = (u64, String, String);

impl Load {
    fn new(tn: &Testnet) -> Load {
        let g =
            Genesis::from_json(&std::fs::read(tn.genesis()).expect("genesis")).expect("genesis");
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(tn.dir.join("testnet.json")).unwrap())
                .unwrap();
        let tag_key =
            FirmKey::from_hex(&std::fs::read_to_string(tn.key("firm")).expect("firm key"))
                .expect("firm key");
        let firms = m["firms"]
            .as_array()
            .expect("firms")
            .iter()
            .map(|f| {
                let u = f["uscc"].as_str().unwrap();
                (
                    tag_key.tag(&Uscc::parse(u).unwrap()),
                    read_key(&tn.key(&format!("firm-{u}"))),
                )
            })
            .collect();
        Load {
            chain: g.chain_id().unwrap(),
            firms,
            bank: read_key(&tn.key("bank-a")),
            agent: agent(),
        }
    }

    fn now(&self, url: &str) -> Result<u64, String> {
        get_json(&self.agent, &format!("{url}/health"))
            .and_then(|h| h["time_ms"].as_u64())
            .ok_or_else(|| format!("{url}: no health"))
    }

    fn post(&self, url: &str, body: Value) -> Result<Value, String> {
        match self.agent.post(url).send_json(body) {
            Ok(r) => r.into_json().map_err(|e| e.to_string()),
            Err(ureq::Error::Status(403, r)) => {
                // A refusal is itself a committed write (the denial record).
                let v: Value = r.into_json().map_err(|e| e.to_string())?;
                Ok(serde_json::json!({ "record": v["denial"].clone(), "denied": true }))
            }
            Err(ureq::Error::Status(c, r)) => {
                Err(format!("HTTP {c}: {}", r.into_string().unwrap_or_default()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Firm `i` grants bank-a a consent with many uses through `url`: (ack, consent id).
    fn grant(&self, url: &str, i: usize) -> Result<(Ack, Digest, FirmTag), String> {
        let (firm, key) = &self.firms[i % self.firms.len()];
        self.grant_as(url, i, *firm, key)
            .map(|(a, c)| (a, c, *firm))
    }

    /// The firm holding `key` grants bank-a a consent under its ledger tag `firm`.
    fn grant_as(
        &self,
        url: &str,
        i: usize,
        firm: FirmTag,
        key: &KeyPair,
    ) -> Result<(Ack, Digest), String> {
        let now = self.now(url)?;
        let e = Entry::sign(
            &self.chain,
            EntryBody {
                author: Author::Firm(firm),
                time: now,
                nonce: xinyi_tests::nonce(),
                kind: EntryKind::ConsentGranted(Consent {
                    bank: OrgId::new("bank-a").unwrap(),
                    purpose: Consent::purpose_digest(&[0x5a; 32], &format!("testnet load {i}")),
                    categories: vec![Category::Registration, Category::Tax],
                    not_before: now.saturating_sub(60_000),
                    not_after: now + 30 * DAY_MS,
                    max_uses: 1_000,
                    monitoring: None,
                }),
            },
            key,
        )
        .map_err(|e| e.to_string())?;
        use base64::Engine as _;
        let v = self.post(
            &format!("{url}/v1/consents"),
            serde_json::json!({"entry": base64::engine::general_purpose::STANDARD.encode(&e.bytes)}),
        )?;
        let pos = v["position"].as_u64().ok_or(format!("no position: {v}"))?;
        let id = v["id"].as_str().ok_or(format!("no id: {v}"))?.to_string();
        if id != e.id.to_hex() {
            return Err(format!("answer for another entry: {v}"));
        }
        Ok(((pos, id, url.to_string()), e.id))
    }

    /// bank-a queries `firm` under `consent` through `url`.
    fn query(&self, url: &str, firm: FirmTag, consent: Digest) -> Result<Ack, String> {
        let req = QueryRequest {
            bank: OrgId::new("bank-a").unwrap(),
            firm,
            consent,
            categories: vec![Category::Tax],
            nonce: xinyi_tests::nonce(),
            time: self.now(url)?,
        };
        let payload = query_signing_payload(&self.chain, &req).map_err(|e| e.to_string())?;
        let signed = SignedQueryRequest {
            signature: self.bank.sign(SigDomain::QueryRequest, &payload),
            request: req,
        };
        let v = self.post(
            &format!("{url}/v1/queries"),
            serde_json::json!({ "request": signed }),
        )?;
        let r = &v["record"];
        Ok((
            r["position"].as_u64().ok_or(format!("no position: {v}"))?,
            r["id"].as_str().ok_or(format!("no id: {v}"))?.to_string(),
            url.to_string(),
        ))
    }
}

/// The last few load errors, for a failure message.
fn recent(errors: &Mutex<Vec<String>>) -> Vec<String> {
    errors
        .lock()
        .unwrap()
        .iter()
        .rev()
        .take(5)
        .cloned()
        .collect()
}

/// Every acknowledged write is readable from every node at its position with the same id.
fn check_acks(acks: &[Ack], urls: &[String]) {
    let agent = agent();
    for (pos, id, by) in acks {
        for u in urls {
            let e = get_json(&agent, &format!("{u}/v1/entries/{pos}"))
                .unwrap_or_else(|| panic!("{u} cannot serve entry {pos} (acknowledged by {by})"));
            assert_eq!(
                e["id"].as_str(),
                Some(id.as_str()),
                "{u}: entry {pos} is not the one {by} acknowledged"
            );
        }
    }
}

#[test]
fn scenario_across_four_validators_and_a_follower() {
    step("up: 4 validators + 1 follower");
    let tn = Testnet::up(4, 1, 23100);
    let st = tn.status();
    assert_eq!(st.len(), 5);
    for n in &st {
        assert_eq!(n["process"], "running", "{n}");
        assert_eq!(n["healthy"], true, "{n}");
    }
    assert_eq!(st[4]["org"], "bank-a");
    assert_eq!(st[4]["role"], "follower");
    let table = ok(&tn.run(&["status"]));
    assert!(
        table.contains("gz-credit") && table.contains("bank-a"),
        "{table}"
    );

    step("up again on the running testnet: refused");
    let o = tn.run(&["up"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let e = text(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("error: ") && e.contains("already holds a running testnet"),
        "{e}"
    );

    step("scenario (human)");
    let o = tn.run(&["scenario"]);
    let out = text(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "scenario failed\nstdout: {out}\nstderr: {}\n{}",
        text(&o.stderr),
        tn.logs()
    );
    assert!(
        out.contains("✓ firm ") && out.contains("scenario passed"),
        "{out}"
    );
    assert!(!out.contains('✗'), "{out}");

    step("scenario (JSON), a second consent");
    let v: Value = serde_json::from_str(&ok(&tn.run(&["scenario", "--json"]))).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["steps"].as_array().unwrap().len() >= 7, "{v}");

    step("down, then up restarts the same chain with its data");
    let urls: Vec<String> = tn.nodes().into_iter().map(|n| n.1).collect();
    let (height, head) = converge(&urls, CONVERGE);
    ok(&tn.run(&["down"]));
    for n in tn.status() {
        assert_eq!(n["process"], "dead", "{n}");
    }
    let o = tn.run(&["up", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stderr),
        tn.logs()
    );
    let agent = agent();
    for u in &urls {
        let (h, _) = height_head(&agent, u).expect("health after restart");
        assert!(h >= height, "{u} restarted at height {h} < {height}");
        assert_eq!(
            common::block_hash(&agent, u, height).as_deref(),
            Some(head.as_str()),
            "{u}: block {height} changed across the restart"
        );
    }
    ok(&tn.run(&["scenario"]));
}

#[test]
fn kill9_one_of_four_under_load_then_catch_up() {
    step("up: 4 validators");
    let tn = Testnet::up(4, 0, 23300);
    let load = Load::new(&tn);
    let all: Vec<(String, String)> = tn.nodes();
    let urls: Vec<String> = all.iter().map(|n| n.1.clone()).collect();
    let victim = "gsxt";
    let down = Mutex::new(Vec::<String>::new());
    let acks = Mutex::new(Vec::<Ack>::new());
    let errors = Mutex::new(Vec::<String>::new());
    let stop = AtomicBool::new(false);

    std::thread::scope(|s| {
        // Two light writers: firm grants and bank-a queries, spread over the live nodes.
        for w in 0..2usize {
            let (load, all, down, acks, errors, stop) = (&load, &all, &down, &acks, &errors, &stop);
            s.spawn(move || {
                let mut consents: Vec<(FirmTag, Digest)> = Vec::new();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    i += 2;
                    let live: Vec<&(String, String)> = {
                        let d = down.lock().unwrap();
                        all.iter().filter(|n| !d.contains(&n.0)).collect()
                    };
                    let node = &live[i % live.len()];
                    let r = if consents.is_empty() || i % 3 == 0 {
                        load.grant(&node.1, i).map(|(a, c, f)| {
                            consents.push((f, c));
                            a
                        })
                    } else {
                        let (f, c) = consents[i % consents.len()];
                        load.query(&node.1, f, c)
                    };
                    match r {
                        Ok(a) => acks.lock().unwrap().push(a),
                        Err(e) => errors.lock().unwrap().push(format!("{}: {e}", node.0)),
                    }
                    std::thread::sleep(Duration::from_millis(150));
                }
            });
        }
        let wait_acks = |n: usize, what: &str| {
            let start = acks.lock().unwrap().len();
            let deadline = Instant::now() + CONVERGE;
            while acks.lock().unwrap().len() < start + n {
                assert!(
                    Instant::now() < deadline,
                    "no {n} acknowledged writes {what}; errors: {:?}\n{}",
                    recent(&errors),
                    tn.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        step("load on 4 nodes");
        wait_acks(6, "with all four nodes");
        step("kill -9 gsxt, keep loading");
        down.lock().unwrap().push(victim.to_string());
        ok(&tn.run(&["kill", victim, "--signal", "9"]));
        wait_acks(6, "with gsxt killed");
        step("restart gsxt, keep loading");
        ok(&tn.run(&["start", victim]));
        down.lock().unwrap().clear();
        wait_acks(6, "after gsxt restarted");
        stop.store(true, Ordering::Relaxed);
    });
    step("all four nodes converge on one head");
    let (h, head) = converge(&urls, CONVERGE);
    eprintln!("   height {h}, head {head:?}");
    let acks = acks.into_inner().unwrap();
    eprintln!(
        "   {} writes acknowledged, {} refused or unanswered",
        acks.len(),
        errors.into_inner().unwrap().len()
    );
    step("every acknowledged write is readable from every node");
    check_acks(&acks, &urls);
    let by_node: BTreeMap<&str, usize> = acks.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.2.as_str()).or_default() += 1;
        m
    });
    eprintln!("   acknowledged per node: {by_node:?}");
}

#[test]
fn two_of_four_stopped_no_progress_then_resume() {
    step("up: 4 validators");
    let tn = Testnet::up(4, 0, 23500);
    let load = Load::new(&tn);
    let urls: Vec<String> = tn.nodes().into_iter().map(|n| n.1).collect();
    let (gz, cc) = (tn.url("gz-credit"), tn.url("credit-china"));
    load.grant(&cc, 0)
        .expect("a write commits with all four up");

    step("SIGSTOP gsxt and agency-4");
    ok(&tn.run(&["kill", "gsxt", "--signal", "STOP"]));
    ok(&tn.run(&["kill", "agency-4", "--signal", "STOP"]));
    let st = tn.status();
    assert!(
        st.iter().filter(|n| n["process"] == "stopped").count() == 2,
        "{st:?}"
    );
    // Let anything already certified settle, then take the high-water mark.
    std::thread::sleep(Duration::from_secs(2));
    let agent = agent();
    let live = [gz.clone(), cc.clone()];
    let before: Vec<(u64, Option<String>)> = live
        .iter()
        .map(|u| height_head(&agent, u).expect("live node answers"))
        .collect();
    let high = before.iter().map(|b| b.0).max().unwrap();

    step("writes keep arriving; no new height for a few seconds");
    let pending = std::thread::scope(|s| {
        let h = s.spawn(|| load.grant(&cc, 1));
        let h2 = s.spawn(|| load.grant(&gz, 2));
        std::thread::sleep(Duration::from_secs(5));
        for u in &live {
            let (h, _) = height_head(&agent, u).expect("live node answers");
            assert!(
                h <= high,
                "{u} reached height {h} > {high} with 2 of 4 validators stopped"
            );
        }
        (h.join().unwrap(), h2.join().unwrap())
    });
    eprintln!("   writes during the stall: {pending:?}");
    assert!(
        pending.0.is_err() && pending.1.is_err(),
        "a write was acknowledged without a quorum: {pending:?}"
    );
    step("no divergence: the live nodes agree on every block both have");
    let common_h = live
        .iter()
        .map(|u| height_head(&agent, u).unwrap().0)
        .min()
        .unwrap();
    for h in 1..=common_h {
        let hashes: Vec<Option<String>> = live
            .iter()
            .map(|u| {
                get_json(&agent, &format!("{u}/v1/blocks/{h}"))
                    .and_then(|b| b["header_hash"].as_str().map(str::to_string))
            })
            .collect();
        assert!(
            hashes[0].is_some() && hashes[0] == hashes[1],
            "block {h}: {hashes:?}"
        );
    }

    step("SIGCONT both: progress resumes, all heads agree");
    ok(&tn.run(&["kill", "gsxt", "--signal", "CONT"]));
    ok(&tn.run(&["kill", "agency-4", "--signal", "CONT"]));
    let deadline = Instant::now() + CONVERGE;
    let ack = loop {
        match load.grant(&cc, 3) {
            Ok(a) => break a,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write commits after SIGCONT: {e}\n{}",
                    tn.logs()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    let (h, _) = converge(&urls, CONVERGE);
    assert!(h > high, "height {h} did not pass {high}");
    check_acks(&[ack.0], &urls);
}

#[test]
fn a_non_member_peer_cannot_join() {
    step("up: 4 validators");
    let tn = Testnet::up(4, 0, 23700);
    let peers = tn.peers_toml();

    // The node refuses to start with a key the ledger does not give its organisation, so the
    // intruder runs on its own copy of the genesis in which bank-b (no node in this testnet) has
    // the intruder's fresh key: to the members it is an unknown key dialling in.
    step("start an intruder: a fresh key, not in the members' genesis, dialling every member");
    let idir = tn.dir.join("intruder");
    std::fs::create_dir_all(&idir).unwrap();
    let key = KeyPair::generate();
    let key_path = idir.join("bank-b.key");
    std::fs::write(&key_path, key.to_file_text()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut g = Genesis::from_json(&std::fs::read(tn.genesis()).unwrap()).unwrap();
    for o in &mut g.orgs {
        if o.id.as_str() == "bank-b" {
            o.key = key.public();
        }
    }
    std::fs::write(idir.join("genesis.json"), g.to_json()).unwrap();
    let (http, p2p) = ("127.0.0.1:23799", "127.0.0.1:23899");
    std::fs::write(
        idir.join("xinyi.toml"),
        format!(
            "data_dir = \"data\"\nhttp = \"{http}\"\norg = \"bank-b\"\nkey_file = \"bank-b.key\"\ngenesis = \"genesis.json\"\n\n[p2p]\nlisten = \"{p2p}\"\npeers = {{ {} }}\n",
            peers.join(", ")
        ),
    )
    .unwrap();
    let mut intruder = NodeProcess::start(&idir, "the intruder");
    let log = intruder.log.clone();

    step("the members keep committing");
    let load = Load::new(&tn);
    let cc = tn.url("credit-china");
    for i in 0..3 {
        load.grant(&cc, i).expect("members commit");
    }
    std::thread::sleep(Duration::from_secs(5));
    let agent = agent();
    let member_h = height_head(&agent, &cc).unwrap().0;
    assert!(member_h >= 2);

    step("the intruder learned no block");
    let ilog = || log_text(&log);
    if let Some(status) = intruder.child.try_wait().unwrap() {
        panic!("the intruder exited ({status}):\n{}", ilog());
    }
    let h = get_json(&agent, &format!("http://{http}/health"));
    let ih = h.as_ref().and_then(|h| h["height"].as_u64()).unwrap_or(0);
    assert_eq!(ih, 0, "the intruder learned blocks: {h:?}\n{}", ilog());
    let b = get_json(&agent, &format!("http://{http}/v1/blocks/1"));
    assert!(b.is_none(), "the intruder serves block 1: {b:?}");

    step("the members' logs and /health show the refusal");
    let mut evidence = Vec::new();
    for (org, url) in tn.nodes() {
        let l = std::fs::read_to_string(tn.dir.join(&org).join("node.log")).unwrap_or_default();
        if let Some(line) = l.lines().find(|l| l.contains("not a member")) {
            evidence.push(format!("{org} log: {line}"));
        }
        let refused = refused_connections(&agent, &url);
        if refused > 0 {
            evidence.push(format!(
                "{org} /health: p2p.stats.refused_connections = {refused}"
            ));
        }
    }
    eprintln!(
        "   evidence: {:#?}",
        evidence.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        !evidence.is_empty(),
        "no member logged or counted a refusal of the intruder\nintruder log:\n{}\n{}",
        ilog(),
        tn.logs()
    );
}

/// Short `xinyi-testnet chaos` runs of the pause and quorum-loss modes under write load (the
/// offline figures are in docs/reliability.md): four SIGSTOP/SIGCONT pauses of random
/// validators, then two quorum losses (2 of 4 stopped: once SIGSTOP, once kill -9), each with
/// no progress and no divergence while stopped, and recovery with every node agreeing after.
/// Every acknowledged write is on every node at the end of each run. No timing assertions.
#[test]
fn chaos_pauses_and_quorum_loss_short_runs() {
    step("up: 4 validators");
    let tn = Testnet::up(4, 0, 24500);
    let run = |args: &[&str]| -> Value {
        let o = tn.run(args);
        let out = text(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "chaos {args:?} failed\nstdout: {out}\nstderr: {}\n{}",
            text(&o.stderr),
            tn.logs()
        );
        eprintln!("{out}");
        serde_json::from_str(out.lines().last().expect("a report line")).expect("JSON report")
    };
    step("chaos --fault pause --cycles 4");
    let r = run(&[
        "chaos",
        "--fault",
        "pause",
        "--cycles",
        "4",
        "--seed",
        "11",
        "--timeout",
        "120",
    ]);
    assert_eq!(r["fault"], "pause", "{r}");
    assert_eq!(r["cycles"], 4, "{r}");
    assert_eq!(r["pauses"], 4, "{r}");
    assert_eq!(r["kills"], 0, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert!(r["acknowledged"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["common_head"].as_str().unwrap().len(), 64, "{r}");

    step("chaos --fault quorum-loss --cycles 2");
    let r = run(&[
        "chaos",
        "--fault",
        "quorum-loss",
        "--cycles",
        "2",
        "--seed",
        "12",
        "--stall-secs",
        "3",
        "--timeout",
        "120",
    ]);
    assert_eq!(r["fault"], "quorum-loss", "{r}");
    assert_eq!(r["cycles"], 2, "{r}");
    assert_eq!(r["quorum_losses"], 2, "{r}");
    assert_eq!(r["quorum_loss_kills"], 1, "{r}");
    assert_eq!(r["no_progress_verified"], 2, "{r}");
    assert_eq!(r["recoveries_verified"], 2, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert!(r["acknowledged"].as_u64().unwrap() > 0, "{r}");
}

/// Firm-key rotation under load (specs/privacy.md §8, issue #17): two writers keep granting
/// consents and querying through all four nodes while `xinyi-testnet rotate-firm-key` commits a
/// quorum-approved `RotateFirmKey`, every node picks the new key file up without a restart and
/// the agency re-registers the firms under their new tags. Checked afterwards, with the real
/// client: every acknowledged write is on every node; queries under consents granted before the
/// rotation still serve (old tag) beside consents granted after it (new tag); a firm's access
/// log covers both tags and its completeness proof verifies for both against one certified
/// block; the real client, as the firm, grants under its new tag and revokes a consent granted
/// under its old one; the audit (Rust and the Python verifier written from the spec) verifies
/// the export from genesis; and in that export no entry holds both tags of a firm, no entry
/// under a new tag holds the firm's old public key, and no USCC occurs.
#[test]
fn firm_key_rotation_under_load_keeps_access_logs_complete_and_tags_unlinked() {
    step("up: 4 validators");
    let tn = Testnet::up(4, 0, 24900);
    let load = Load::new(&tn);
    let all: Vec<(String, String)> = tn.nodes();
    let urls: Vec<String> = all.iter().map(|n| n.1.clone()).collect();
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(tn.dir.join("testnet.json")).unwrap())
            .unwrap();
    let usccs: Vec<Uscc> = m["firms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Uscc::parse(f["uscc"].as_str().unwrap()).unwrap())
        .collect();
    // After the rotation: the firms' new tags (same order as `load.firms`).
    let new_tags = Mutex::new(None::<Vec<FirmTag>>);
    // Query acknowledgements: (ack, tag queried, whether the rotation was done when sent).
    let queries = Mutex::new(Vec::<(Ack, FirmTag, bool)>::new());
    let acks = Mutex::new(Vec::<Ack>::new());
    let errors = Mutex::new(Vec::<String>::new());
    let stop = AtomicBool::new(false);
    let report: Value = std::thread::scope(|s| {
        for w in 0..2usize {
            let (load, all, acks, queries, errors, stop, new_tags) =
                (&load, &all, &acks, &queries, &errors, &stop, &new_tags);
            s.spawn(move || {
                let mut consents: Vec<(FirmTag, Digest)> = Vec::new();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    i += 2;
                    let node = &all[i % all.len()];
                    let rotated = new_tags.lock().unwrap().clone();
                    let r = if consents.is_empty() || i % 4 == 0 {
                        let k = i % load.firms.len();
                        // After the rotation a firm signs under its new tag with its epoch-1 key.
                        let (tag, key) = match rotated.as_ref() {
                            Some(t) => (t[k], load.firms[k].1.firm_epoch_key(1)),
                            None => (load.firms[k].0, load.firms[k].1.clone()),
                        };
                        load.grant_as(&node.1, i, tag, &key).map(|(a, c)| {
                            consents.push((tag, c));
                            a
                        })
                    } else {
                        // Newest consents first half the time, so both epochs get queried.
                        let j = if i % 3 == 0 {
                            consents.len() - 1
                        } else {
                            i % consents.len()
                        };
                        let (f, c) = consents[j];
                        load.query(&node.1, f, c).inspect(|a| {
                            queries
                                .lock()
                                .unwrap()
                                .push((a.clone(), f, rotated.is_some()))
                        })
                    };
                    match r {
                        Ok(a) => acks.lock().unwrap().push(a),
                        Err(e) => errors.lock().unwrap().push(format!("{}: {e}", node.0)),
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + CONVERGE;
            while !done() {
                assert!(
                    Instant::now() < deadline,
                    "{what}; errors: {:?}\n{}",
                    recent(&errors),
                    tn.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        step("load on 4 nodes");
        wait_for("no queries before the rotation", &|| {
            queries.lock().unwrap().len() >= 4
        });
        step("rotate-firm-key under load");
        let o = tn.run(&["rotate-firm-key", "--json"]);
        let report: Value = serde_json::from_str(&ok(&o)).expect("rotate-firm-key --json");
        let ring = FirmKey::from_hex(
            &std::fs::read_to_string(tn.dir.join("keys").join("firm.key.1")).expect("firm.key.1"),
        )
        .expect("new firm key");
        *new_tags.lock().unwrap() = Some(usccs.iter().map(|u| ring.tag(u)).collect());
        step("load after the rotation: old consents keep serving, new ones use the new tags");
        let olds: Vec<FirmTag> = load.firms.iter().map(|f| f.0).collect();
        wait_for("no queries under both tags after the rotation", &|| {
            let q = queries.lock().unwrap();
            let after = q.iter().filter(|x| x.2);
            let (old, new): (Vec<_>, Vec<_>) = after.partition(|x| olds.contains(&x.1));
            old.len() >= 2 && new.len() >= 2
        });
        stop.store(true, Ordering::Relaxed);
        report
    });
    let old_key = FirmKey::from_hex(&std::fs::read_to_string(tn.key("firm")).unwrap()).unwrap();
    let new_key = FirmKey::from_hex(
        &std::fs::read_to_string(tn.dir.join("keys").join("firm.key.1")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["epoch"], 1, "{report}");
    assert_eq!(report["key_id"], new_key.id().to_hex(), "{report}");
    assert_eq!(report["reregistered"].as_u64(), Some(usccs.len() as u64));
    step("every node converges and holds both epochs' keys");
    let (h, _) = converge(&urls, CONVERGE);
    assert!(h >= report["effective_height"].as_u64().unwrap());
    for u in &urls {
        let v = get_json(&agent(), &format!("{u}/health")).unwrap();
        assert_eq!(v["firm_keys"]["epochs"], 2, "{u}: {v}");
        assert_eq!(v["firm_keys"]["problem"], Value::Null, "{u}: {v}");
    }
    // No node went down: every write of the load, before, during and after the rotation, was
    // accepted (a refused query is a committed denial, not an error).
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "writes failed across the rotation: {errors:?}"
    );
    let acks = acks.into_inner().unwrap();
    check_acks(&acks, &urls);

    step("a firm's access log spans both tags and is proven complete for both");
    let queries = queries.into_inner().unwrap();
    let count_of = |u: &Uscc| {
        let (a, b) = (old_key.tag(u), new_key.tag(u));
        let n = |t: FirmTag| queries.iter().filter(|q| q.1 == t).count();
        (n(a), n(b))
    };
    let firm = usccs
        .iter()
        .find(|u| {
            let (a, b) = count_of(u);
            a > 0 && b > 0
        })
        .or_else(|| usccs.iter().max_by_key(|u| count_of(u).0 + count_of(u).1))
        .expect("a firm");
    let (n_old, n_new) = count_of(firm);
    eprintln!("   firm {firm}: {n_old} queries under the old tag, {n_new} under the new one");
    let fkey = format!("firm-{firm}");
    for key in [fkey.as_str(), "auditor"] {
        let o = tn.xinyi(
            &urls[1],
            key,
            &["--json", "access-log", "--firm", firm.as_str(), "--verify"],
        );
        let v: Value = serde_json::from_str(&ok(&o)).expect("access-log --json");
        assert_eq!(v["verified"]["complete"], true, "{key}: {v}");
        assert_eq!(v["verified"]["tags"], 2, "{key}: {v}");
        let listed: Vec<u64> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect();
        let mut acked: Vec<u64> = queries
            .iter()
            .filter(|q| q.1 == old_key.tag(firm) || q.1 == new_key.tag(firm))
            .map(|q| q.0 .0)
            .collect();
        acked.sort_unstable();
        assert_eq!(
            listed, acked,
            "{key}: the access log is every acknowledged query"
        );
        assert_eq!(
            v["verified"]["access_count"].as_u64(),
            Some((n_old + n_new) as u64)
        );
    }
    let tag_answer = {
        let o = tn.xinyi(
            &urls[0],
            "auditor",
            &["--json", "access-log", "--firm", firm.as_str()],
        );
        serde_json::from_str::<Value>(&ok(&o)).unwrap()
    };
    assert_eq!(
        tag_answer["tag"],
        new_key.tag(firm).to_hex(),
        "{tag_answer}"
    );
    assert_eq!(
        tag_answer["tags"],
        serde_json::json!([old_key.tag(firm).to_hex(), new_key.tag(firm).to_hex()])
    );

    step("the real client as the firm: grants under its new tag, revokes a consent granted under its old one");
    let firm_s = firm.as_str();
    let o = tn.xinyi(
        &urls[2],
        &fkey,
        &[
            "--json",
            "consent",
            "grant",
            "--firm",
            firm_s,
            "--bank",
            "bank-a",
            "--categories",
            "tax",
            "--uses",
            "3",
            "--days",
            "7",
        ],
    );
    let granted: Value = serde_json::from_str(&ok(&o)).expect("consent grant --json");
    let new_consent = granted["id"].as_str().expect("consent id").to_string();
    let o = tn.xinyi(
        &urls[2],
        &fkey,
        &["--json", "consent", "show", &new_consent],
    );
    let shown: Value = serde_json::from_str(&ok(&o)).expect("consent show --json");
    assert_eq!(shown["firm"], new_key.tag(firm).to_hex(), "{shown}");
    let old_hex = old_key.tag(firm).to_hex();
    let log: Value = serde_json::from_str(&ok(&tn.xinyi(
        &urls[2],
        &fkey,
        &["--json", "access-log", "--firm", firm_s],
    )))
    .unwrap();
    let old_consent = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tag"] == old_hex.as_str())
        .and_then(|e| e["consent"].as_str())
        .expect("a query under the old tag")
        .to_string();
    let o = tn.xinyi(
        &urls[2],
        &fkey,
        &["--json", "consent", "revoke", &old_consent],
    );
    let revoked: Value = serde_json::from_str(&ok(&o)).expect("consent revoke --json");
    assert_eq!(revoked["kind"], "consent_revoked", "{revoked}");
    let o = tn.xinyi(
        &urls[2],
        &fkey,
        &["--json", "consent", "show", &old_consent],
    );
    let shown: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(
        (&shown["firm"], &shown["revoked"]),
        (&Value::from(old_hex.clone()), &Value::Bool(true)),
        "{shown}"
    );

    step("export: the audit verifies from genesis (Rust and Python); no entry links two tags");
    let bundle = tn.dir.join("chain.bundle");
    ok(&tn.xinyi(
        &urls[0],
        "auditor",
        &["export", "--out", bundle.to_str().unwrap()],
    ));
    let o = tn.xinyi(
        &urls[0],
        "auditor",
        &[
            "--json",
            "audit",
            "verify",
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    let audit: Value = serde_json::from_str(&ok(&o)).expect("audit --json");
    assert_eq!(audit["result"], "ok", "{audit}");
    xinyi_tests::pyverify::require_python();
    let py = xinyi_tests::pyverify::verify_bundle(&tn.genesis(), &bundle);
    assert!(
        py.status.success(),
        "verify_bundle.py: {}\n{}",
        text(&py.stdout),
        text(&py.stderr)
    );
    let bytes = std::fs::read(&bundle).unwrap();
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for b in xinyi_ledger::bundle::BundleReader::new(bytes.as_slice()).expect("bundle") {
        let (block, _) = b.expect("bundle block");
        let block = xinyi_ledger::block::Block::decode(&block).expect("block");
        entries.extend(block.entries.into_iter().map(|e| e.into_vec()));
    }
    assert!(
        entries.len() > acks.len(),
        "the export holds the load's entries"
    );
    let mut both_epochs = 0;
    for u in &usccs {
        assert!(
            !bytes.windows(18).any(|w| w == u.as_str().as_bytes()),
            "the export holds USCC {u}"
        );
        let (a, b) = (old_key.tag(u), new_key.tag(u));
        let has = |e: &[u8], t: &FirmTag| e.windows(32).any(|w| w == t.0.as_slice());
        for e in &entries {
            assert!(
                !(has(e, &a) && has(e, &b)),
                "an entry of the export names both tags of {u}"
            );
        }
        // Nor does a public key: the firm registered its new tag with its epoch-1 key.
        let fk = read_key(&tn.key(&format!("firm-{u}")));
        let (pk0, pk1) = (fk.public(), fk.firm_epoch_key(1).public());
        assert_ne!(pk0, pk1);
        for e in entries.iter().filter(|e| has(e, &b)) {
            assert!(
                !e.windows(32).any(|w| w == pk0.0.as_slice()),
                "an entry under {u}'s new tag holds its old public key"
            );
        }
        assert!(
            entries
                .iter()
                .any(|e| has(e, &b) && e.windows(32).any(|w| w == pk1.0.as_slice())),
            "{u}'s new tag is registered with its epoch-1 key"
        );
        if bytes.windows(32).any(|w| w == a.0.as_slice())
            && bytes.windows(32).any(|w| w == b.0.as_slice())
        {
            both_epochs += 1;
        }
    }
    assert_eq!(
        both_epochs,
        usccs.len(),
        "every firm appears under both tags"
    );
}
