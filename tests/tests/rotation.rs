//! Key rotation without downtime, with real processes: a 4-validator testnet (`xinyi-testnet
//! up`), a steady trickle of writes, and `xinyi-testnet rotate-key --node agency-4`, which
//! rotates agency-4's key through a quorum-approved `Membership` entry
//! (`MemberChange::RotateKey`) and restarts its node with the new key file once its ledger holds
//! the effective height. Checked here, independently of the command's own checks:
//!
//! - every write submitted during the rotation is acknowledged on its first attempt (the
//!   `xinyi` client does not retry, so neither does this writer), before and after the
//!   effective height, and every acknowledged write is on every node afterwards;
//! - agency-4 validates again with its new key: commit certificates after the rotation carry
//!   its vote, valid under the new key and not under the old one, and all four nodes agree;
//! - the old key is refused: an entry agency-4 signs with it is rejected (the same entry signed
//!   with the new key commits), and a node started with it (on a fresh copy of the genesis,
//!   where that key is still agency-4's) is refused by every member and learns no block.
//!
//! Nothing asserts timing: waits are bounded generously.
//!
//! This test found the epoch-switch halt (docs/reliability.md §6): validators that started the
//! new engine first p2p-blocked a slower one still sending old-epoch messages, for good; engine
//! blocks now expire (`xinyi_node::p2p::ENGINE_BLOCK`).

mod common;

use common::{
    agent, converge, get_json, height_head, log_text, ok, refused_connections, text, NodeProcess,
    Testnet,
};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use xinyi_ledger::block::commit_payload;
use xinyi_ledger::entry::{Author, CreditRecord, EntryBody, EntryKind};
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::types::{Category, Severity};
use xinyi_ledger::{
    CommitCertificate, Digest, Entry, FirmKey, FirmTag, Genesis, KeyPair, OrgId, PublicKey, Uscc,
};

const T: Duration = Duration::from_secs(120);
const ROTATED: &str = "agency-4";

fn step(what: &str) {
    eprintln!("== {what}");
}

fn read_key(p: &std::path::Path) -> KeyPair {
    KeyPair::from_file_text(&std::fs::read_to_string(p).expect("key file")).expect("key")
}

/// An agency's credit record about `firm`, signed by `org` with `key` at the node's time.
fn record(chain: &Digest, org: &str, key: &KeyPair, firm: FirmTag, time: u64) -> Entry {
    Entry::sign(
        chain,
        EntryBody {
            author: Author::Org(OrgId::new(org).unwrap()),
            time,
            nonce: xinyi_tests::nonce(),
            kind: EntryKind::CreditRecordPublished(CreditRecord {
                record: Digest(
                    xinyi_tests::nonce()
                        .to_be_bytes()
                        .repeat(4)
                        .try_into()
                        .unwrap(),
                ),
                firm,
                category: Category::Penalties,
                severity: Severity::Minor,
                min_publicity_days: 30,
            }),
        },
        key,
    )
    .unwrap()
}

/// A write a node acknowledged: (position, entry id, height, node).
type Ack = (u64, String, u64, String);

/// Posts `e` to `url` once: the answer, or "HTTP status: body" / the transport error.
fn post(agent: &ureq::Agent, url: &str, e: &Entry) -> Result<Value, String> {
    use base64::Engine as _;
    let body = serde_json::json!({
        "entry": base64::engine::general_purpose::STANDARD.encode(&e.bytes)
    });
    match agent.post(&format!("{url}/v1/entries")).send_json(body) {
        Ok(r) => r.into_json().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(c, r)) => {
            Err(format!("HTTP {c}: {}", r.into_string().unwrap_or_default()))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn node_time(agent: &ureq::Agent, url: &str) -> Result<u64, String> {
    get_json(agent, &format!("{url}/health"))
        .and_then(|h| h["time_ms"].as_u64())
        .ok_or_else(|| format!("{url}: no /health"))
}

fn write(
    agent: &ureq::Agent,
    chain: &Digest,
    key: &KeyPair,
    firm: FirmTag,
    url: &str,
) -> Result<Ack, String> {
    let e = record(chain, "gz-credit", key, firm, node_time(agent, url)?);
    let v = post(agent, url, &e)?;
    if v["id"].as_str() != Some(e.id.to_hex().as_str()) {
        return Err(format!("answer for another entry: {v}"));
    }
    Ok((
        v["position"].as_u64().ok_or(format!("no position: {v}"))?,
        e.id.to_hex(),
        v["height"].as_u64().ok_or(format!("no height: {v}"))?,
        url.to_string(),
    ))
}

fn certificate(agent: &ureq::Agent, url: &str, h: u64) -> Option<CommitCertificate> {
    let b = get_json(agent, &format!("{url}/v1/blocks/{h}"))?;
    serde_json::from_value(b["certificate"].clone()).ok()
}

/// Whether `org`'s vote in `c` verifies under `key` (None: no vote of `org`).
fn vote_ok(c: &CommitCertificate, chain: &Digest, org: &OrgId, key: &PublicKey) -> Option<bool> {
    let v = c.votes.iter().find(|v| &v.validator == org)?;
    Some(
        key.verify(
            SigDomain::Commit,
            &commit_payload(chain, c.height, &c.header_hash),
            &v.signature,
        )
        .is_ok(),
    )
}

#[test]
fn a_validator_key_rotates_through_the_ledger_without_downtime() {
    step("up: 4 validators");
    let tn = Testnet::up(4, 0, 24300);
    let genesis = Genesis::from_json(&std::fs::read(tn.genesis()).unwrap()).unwrap();
    let chain = genesis.chain_id().unwrap();
    let org = OrgId::new(ROTATED).unwrap();
    let old = read_key(&tn.key(ROTATED));
    assert_eq!(
        genesis.orgs.iter().find(|o| o.id == org).map(|o| o.key),
        Some(old.public()),
        "the genesis gives {ROTATED} the key in its key file"
    );
    let gz = read_key(&tn.key("gz-credit"));
    let uscc = Uscc::parse(tn.manifest["firms"][0]["uscc"].as_str().unwrap()).unwrap();
    // The ledger names firms by tag (the testnet's firm key is keys/firm.key).
    let firm_key = FirmKey::from_hex(&std::fs::read_to_string(tn.key("firm")).unwrap()).unwrap();
    let firm = FirmTag::derive(&firm_key, &uscc);
    let nodes = tn.nodes();
    let urls: Vec<String> = nodes.iter().map(|n| n.1.clone()).collect();
    let rotated_url = tn.url(ROTATED);
    // The writes go to the three nodes that stay up; agency-4's own API is away for its restart.
    let others: Vec<String> = nodes
        .iter()
        .filter(|n| n.0 != ROTATED)
        .map(|n| n.1.clone())
        .collect();

    let acks = Mutex::new(Vec::<Ack>::new());
    let errors = Mutex::new(Vec::<String>::new());
    let stop = AtomicBool::new(false);
    let report: Value = std::thread::scope(|s| {
        s.spawn(|| {
            let agent = agent();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let url = &others[i % others.len()];
                i += 1;
                match write(&agent, &chain, &gz, firm, url) {
                    Ok(a) => acks.lock().unwrap().push(a),
                    Err(e) => errors.lock().unwrap().push(format!("{url}: {e}")),
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let wait_acks = |n: usize, what: &str| {
            let start = acks.lock().unwrap().len();
            let deadline = Instant::now() + T;
            while acks.lock().unwrap().len() < start + n {
                assert!(
                    Instant::now() < deadline,
                    "no {n} acknowledged writes {what}; errors: {:?}\n{}",
                    errors.lock().unwrap(),
                    tn.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        step("a trickle of writes");
        wait_acks(3, "before the rotation");
        step("xinyi-testnet rotate-key --node agency-4 (writes keep coming)");
        let o = tn.run(&["rotate-key", "--node", ROTATED, "--json"]);
        eprintln!("{}", text(&o.stderr));
        if o.status.code() != Some(0) {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "rotate-key failed\nstdout: {}\nstderr: {}\n{}",
                text(&o.stdout),
                text(&o.stderr),
                tn.logs()
            );
        }
        let r: Value = serde_json::from_str(&ok(&o)).expect("rotate-key --json prints JSON");
        wait_acks(4, "after the rotation");
        stop.store(true, Ordering::Relaxed);
        r
    });
    eprintln!("   report: {report}");
    let effective = report["effective_height"].as_u64().unwrap();
    let first_vote = report["first_vote_height"].as_u64().unwrap();
    assert!(
        report["entry_height"].as_u64().unwrap() < effective,
        "{report}"
    );
    assert!(first_vote > effective, "{report}");
    let acks = acks.into_inner().unwrap();
    let errors = errors.into_inner().unwrap();
    eprintln!(
        "   {} writes acknowledged (heights {:?}..{:?}), {} failed",
        acks.len(),
        acks.iter().map(|a| a.2).min(),
        acks.iter().map(|a| a.2).max(),
        errors.len()
    );

    step("every write submitted during the rotation was acknowledged");
    assert!(
        errors.is_empty(),
        "writes failed during the rotation: {errors:?}"
    );
    assert!(
        acks.iter().any(|a| a.2 < effective) && acks.iter().any(|a| a.2 >= effective),
        "the writes do not span the effective height {effective}: {acks:?}"
    );

    step("the key files: new key in use, old key retired");
    let new = read_key(&tn.key(ROTATED));
    assert_eq!(
        report["new_key"].as_str(),
        Some(new.public().to_hex().as_str())
    );
    assert_eq!(
        report["old_key"].as_str(),
        Some(old.public().to_hex().as_str())
    );
    assert_ne!(new.public(), old.public());
    let retired = tn
        .dir
        .join("keys")
        .join(format!("{ROTATED}.key.retired-{effective}"));
    assert_eq!(read_key(&retired).public(), old.public());

    step("agency-4 validates with its new key; all four nodes agree");
    let agent = agent();
    let h = get_json(&agent, &format!("{rotated_url}/health")).expect("agency-4 answers");
    assert_eq!(h["role"], "validator", "{h}");
    let (top, head) = converge(&urls, T);
    eprintln!("   all nodes at height {top}, head {head}");
    let gsxt = tn.url("gsxt");
    let mut with_vote = 0;
    let mut checked = 0;
    for height in first_vote..=top.min(first_vote + 30) {
        let c = certificate(&agent, &gsxt, height)
            .unwrap_or_else(|| panic!("gsxt lacks block {height}"));
        checked += 1;
        if let Some(v) = vote_ok(&c, &chain, &org, &new.public()) {
            assert!(
                v,
                "block {height}: agency-4's vote does not verify under the new key"
            );
            assert_eq!(
                vote_ok(&c, &chain, &org, &old.public()),
                Some(false),
                "block {height}: agency-4's vote verifies under the old key"
            );
            with_vote += 1;
        }
    }
    eprintln!("   {with_vote} of {checked} certificates from block {first_vote} carry agency-4's new-key vote");
    assert!(with_vote > 0);
    for height in 1..effective {
        if let Some(c) = certificate(&agent, &gsxt, height) {
            assert_ne!(
                vote_ok(&c, &chain, &org, &new.public()),
                Some(true),
                "block {height}, before the rotation, carries a new-key vote"
            );
        }
    }

    step("every acknowledged write is on every node");
    for (pos, id, _, by) in &acks {
        for u in &urls {
            let e = get_json(&agent, &format!("{u}/v1/entries/{pos}"))
                .unwrap_or_else(|| panic!("{u} cannot serve entry {pos} (acknowledged by {by})"));
            assert_eq!(e["id"].as_str(), Some(id.as_str()), "{u}: entry {pos}");
        }
    }

    step("the old key is refused by the ledger, the new one accepted");
    let now = node_time(&agent, &gsxt).unwrap();
    let refused = post(&agent, &gsxt, &record(&chain, ROTATED, &old, firm, now));
    eprintln!("   signed with the old key: {refused:?}");
    let e = refused.expect_err("an entry signed with agency-4's old key was accepted");
    assert!(e.starts_with("HTTP 4"), "{e}");
    let accepted = post(
        &agent,
        &rotated_url,
        &record(&chain, ROTATED, &new, firm, now),
    );
    let accepted = accepted.expect("an entry signed with agency-4's new key commits");
    assert!(accepted["position"].as_u64().is_some(), "{accepted}");

    step("a node started with the old key is refused by every member");
    let before: Vec<u64> = urls
        .iter()
        .map(|u| refused_connections(&agent, u))
        .collect();
    let idir = tn.dir.join("old-key-node");
    std::fs::create_dir_all(&idir).unwrap();
    let key_path = idir.join("agency-4.key");
    std::fs::copy(&retired, &key_path).unwrap();
    let peers = tn.peers_toml();
    let (http, p2p) = ("127.0.0.1:24390", "127.0.0.1:24490");
    std::fs::write(
        idir.join("xinyi.toml"),
        format!(
            "data_dir = \"data\"\nhttp = \"{http}\"\norg = \"{ROTATED}\"\nkey_file = \"agency-4.key\"\ngenesis = \"{}\"\n\n[p2p]\nlisten = \"{p2p}\"\npeers = {{ {} }}\n",
            tn.genesis().display(),
            peers.join(", ")
        ),
    )
    .unwrap();
    let mut intruder = NodeProcess::start(&idir, "the old-key node");
    let log = intruder.log.clone();
    let ilog = || log_text(&log);
    let ih = format!("http://{http}");
    let deadline = Instant::now() + T;
    while get_json(&agent, &format!("{ih}/health")).is_none() {
        if let Some(st) = intruder.child.try_wait().unwrap() {
            panic!("the old-key node exited ({st}):\n{}", ilog());
        }
        assert!(
            Instant::now() < deadline,
            "the old-key node never answered:\n{}",
            ilog()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let it dial (and be refused) for a while; the members keep committing meanwhile.
    for i in 0..3 {
        let e = write(&agent, &chain, &gz, firm, &others[i % others.len()]);
        assert!(
            e.is_ok(),
            "a write failed with the old-key node around: {e:?}"
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    assert!(intruder.child.try_wait().unwrap().is_none(), "{}", ilog());
    let (ih_height, _) = height_head(&agent, &ih).expect("the old-key node answers");
    assert_eq!(ih_height, 0, "the old-key node learned blocks:\n{}", ilog());
    let after: Vec<u64> = urls
        .iter()
        .map(|u| refused_connections(&agent, u))
        .collect();
    let refusing: Vec<&String> = urls
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| a > b)
        .map(|(u, _)| u)
        .collect();
    eprintln!("   refused_connections before {before:?}, after {after:?}");
    assert!(
        !refusing.is_empty(),
        "no member counted a refused connection from the old key\n{}\n{}",
        ilog(),
        tn.logs()
    );
    drop(intruder);
    let (h2, _) = converge(&urls, T);
    assert!(h2 >= top);
}

/// A validator that is down while its own rotation takes effect (an operator's node offline for
/// maintenance, or one cut off because it lagged when the others passed `E` and began refusing
/// its old key) comes back with the new key below `E`: the node accepts the key of a committed
/// rotation not yet in force, follows until its ledger holds `E`, then validates with it. A key
/// that is neither in force nor pending is still refused at start-up.
#[test]
fn a_validator_down_across_its_rotation_comes_back_with_the_new_key() {
    step("up: 4 validators");
    let tn = Testnet::up(4, 0, 24700);
    let genesis = Genesis::from_json(&std::fs::read(tn.genesis()).unwrap()).unwrap();
    let chain = genesis.chain_id().unwrap();
    let org = OrgId::new(ROTATED).unwrap();
    let old = read_key(&tn.key(ROTATED));
    let new = KeyPair::generate();
    let agent = agent();
    let gz = tn.url("gz-credit");
    let rotated_url = tn.url(ROTATED);
    let urls: Vec<String> = tn.nodes().into_iter().map(|n| n.1).collect();
    let others: Vec<String> = urls
        .iter()
        .filter(|u| **u != rotated_url)
        .cloned()
        .collect();
    let height = |u: &str| height_head(&agent, u).map(|h| h.0);
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + T;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out: {what}\n{}",
                tn.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    step("the rotation entry commits; agency-4 holds its block, then goes down");
    let approvers: Vec<(OrgId, KeyPair)> = ["gz-credit", "gsxt", "credit-china", ROTATED]
        .iter()
        .map(|o| (OrgId::new(o).unwrap(), read_key(&tn.key(o))))
        .collect();
    let effective = height(&gz).unwrap() + 15;
    let e = xinyi_testnet::net::rotate::rotation_entry(
        &chain,
        &org,
        &old,
        new.public(),
        effective,
        &approvers,
        node_time(&agent, &gz).unwrap(),
    )
    .unwrap();
    let ack = post(&agent, &gz, &e).expect("the rotation entry commits");
    let entry_height = ack["height"].as_u64().unwrap();
    assert!(entry_height < effective, "{ack}");
    wait_for("agency-4 to hold the rotation's block", &|| {
        height(&rotated_url).is_some_and(|h| h >= entry_height)
    });
    let o = tn.run(&["kill", ROTATED, "--signal", "KILL"]);
    ok(&o);
    let down_at = height(&gz).unwrap();
    assert!(
        down_at < effective,
        "the consortium passed E = {effective} before agency-4 went down (at {down_at}); \
         raise the margin"
    );

    step("the other three pass the effective height without it");
    wait_for("the others past the effective height", &|| {
        others
            .iter()
            .all(|u| height(u).is_some_and(|h| h > effective + 2))
    });

    step("a key that is neither in force nor pending is refused at start-up");
    let key_file = tn.key(ROTATED);
    std::fs::write(&key_file, KeyPair::generate().to_file_text()).unwrap();
    let o = tn.run(&["start", ROTATED, "--timeout", "20"]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "a node started with a stranger's key"
    );
    let log = log_text(&tn.dir.join(ROTATED).join("node.log"));
    assert!(
        log.contains("not the key of agency-4 in the ledger"),
        "stderr: {}\nlog: {log}",
        text(&o.stderr)
    );

    step("started below E with the pending rotation's key: it follows, then validates");
    std::fs::write(&key_file, new.to_file_text()).unwrap();
    let o = tn.run(&["start", ROTATED]);
    ok(&o);
    let log = log_text(&tn.dir.join(ROTATED).join("node.log"));
    assert!(
        log.contains(&format!("is in force from height {effective}")),
        "{log}"
    );
    wait_for("agency-4 past the effective height", &|| {
        height(&rotated_url).is_some_and(|h| h > effective + 2)
    });
    let next = std::cell::Cell::new(effective);
    wait_for("a certificate with agency-4's new-key vote", &|| loop {
        let (n, top) = (next.get(), height(&gz).unwrap_or(0));
        if n > top {
            return false;
        }
        let Some(c) = certificate(&agent, &gz, n) else {
            return false;
        };
        match vote_ok(&c, &chain, &org, &new.public()) {
            Some(true) => return true,
            Some(false) => panic!("block {n}: agency-4's vote does not verify under the new key"),
            None => next.set(n + 1),
        }
    });
    let h = get_json(&agent, &format!("{rotated_url}/health")).unwrap();
    assert_eq!(h["role"], "validator", "{h}");
    let (top, head) = converge(&urls, T);
    eprintln!(
        "   agency-4 votes again from block {}; all nodes at {top}, head {head}",
        next.get()
    );
}
