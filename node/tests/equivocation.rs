//! Equivocation evidence end to end: four validators, each a real `cluster::run` (its own
//! runtime, sled store, libp2p sockets on 127.0.0.1 and HTTP server). The test plays a
//! Byzantine validator: with agency-4's key from the sample consortium it signs a commit vote
//! for a bogus header at a height the cluster already committed (so agency-4 has signed two
//! headers at that height) and sends it as a real ledger-channel `Vote` message, from a p2p
//! member that runs no node (bank-a's identity). The honest validators must catch it, and one
//! of them must get a `misbehaviour` entry naming agency-4 and that height committed; the
//! chain must keep committing afterwards. Every wait is bounded by a deadline; nothing is a
//! timing assertion.

mod support;

use commonware_p2p::{Recipients, Sender as _};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::*;
use xinyi_ledger::block::sign_commit;
use xinyi_ledger::entry::{Author, EntryKind};
use xinyi_ledger::sample::{sample_firm, SampleConsortium};
use xinyi_ledger::{Digest, Entry, OrgId};
use xinyi_node::cluster::channel;
use xinyi_node::consensus::wire::Wire;
use xinyi_node::p2p::{Network, NetworkConfig};

fn height(m: &Member) -> u64 {
    health(m)["height"].as_u64().unwrap_or(0)
}

/// Whether `org`'s commit vote is in the certificate of `m`'s block at height `h`.
fn signed_by(m: &Member, h: u64, org: &str) -> bool {
    get(&format!("{}/v1/blocks/{h}", m.url)).is_some_and(|b| {
        b["certificate"]["votes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["validator"] == org))
    })
}

/// The `misbehaviour` entries committed at `m` from position `*next` on (advancing `*next`).
fn new_evidence(m: &Member, c: &SampleConsortium, next: &mut u64) -> Vec<Entry> {
    let size = health(m)["log_size"].as_u64().unwrap_or(0);
    let auditor = c.key("auditor").expect("auditor key");
    let mut out = vec![];
    while *next < size {
        // Entries are role-gated: read them as the auditor (`specs/privacy.md` §4).
        let path = format!("/v1/entries/{}", *next);
        let Some(v) = get_as(&m.url, &path, &c.chain, "auditor", auditor) else {
            break;
        };
        *next += 1;
        if v["kind"] == "misbehaviour" {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v["entry"].as_str().unwrap())
                .unwrap();
            out.push(Entry::decode(&bytes).unwrap());
        }
    }
    out
}

#[test]
fn an_equivocating_validator_is_caught_and_the_evidence_committed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let c = SampleConsortium::new(b"equivocation-test", 4, now_ms() - 1_000);
    let nodes = ["gz-credit", "agency-2", "agency-3", "agency-4"];
    let cfgs = configs(dir.path(), &c, &nodes, "gz-credit");
    let mut members = vec![];
    let mut dial = vec![];
    for cfg in cfgs {
        let p2p = cfg.p2p.as_ref().unwrap().listen;
        dial.push((c.key(&cfg.org).unwrap().public(), p2p));
        members.push(spawn_member(cfg));
    }
    wait_serving(&members);
    wait_until("every node to commit two blocks", || {
        members.iter().all(|m| height(m) >= 2)
    });

    // The injector: a registered organisation without a node, connected to every validator.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bank = c.key("bank-a").unwrap();
    let members_keys: Vec<_> = c.keys.values().map(|k| k.public()).collect();
    let (_net, mut tx) = rt.block_on(async {
        let mut net = Network::start(NetworkConfig {
            key: bank.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            members: members_keys,
            dial: dial.clone(),
            max_message_bytes: 16 << 20,
            peer_rate_limit_per_sec: 20_000,
            queue_capacity: 1_024,
        })
        .await
        .unwrap();
        let (tx, _rx) = net.register(channel::LEDGER, 1_024);
        (net, tx)
    });

    // A committed height at which agency-4's vote is in some node's certificate (a validator
    // that caught up by sync signed nothing at the heights it fetched); agency-4 signed that
    // header, now it signs another one.
    let offender = OrgId::new("agency-4").unwrap();
    let mut at = None;
    wait_until("a certificate with agency-4's vote", || {
        let top = members.iter().map(height).min().unwrap_or(0);
        at = (1..=top).find(|h| members.iter().any(|m| signed_by(m, *h, "agency-4")));
        at.is_some()
    });
    let at = at.unwrap();
    let bogus = Digest([0xee; 32]);
    let vote = sign_commit(
        c.key("agency-4").unwrap(),
        offender.clone(),
        &c.chain,
        at,
        &bogus,
    );
    let msg = Wire::Vote {
        height: at,
        header_hash: bogus,
        vote,
    }
    .encode()
    .unwrap();

    let validators: Vec<OrgId> = nodes.iter().map(|o| OrgId::new(o).unwrap()).collect();
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    let mut found: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    let start = Instant::now();
    loop {
        // Sent again until seen: the first copies may precede the connections.
        {
            let _g = rt.enter();
            let _ = tx.send(Recipients::All, msg.clone(), false);
        }
        for m in &members {
            let n = next.entry(m.org.clone()).or_default();
            found
                .entry(m.org.clone())
                .or_default()
                .extend(new_evidence(m, &c, n));
        }
        if members.iter().all(|m| !found[&m.org].is_empty()) {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for the evidence on every node: {:?}",
            found.iter().map(|(o, v)| (o, v.len())).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for m in &members {
        let evs = &found[&m.org];
        assert_eq!(evs.len(), 1, "one misbehaviour entry at {}: {evs:?}", m.org);
        let e = &evs[0];
        let Author::Org(author) = &e.body.author else {
            panic!("evidence authored by a firm: {e:?}");
        };
        assert!(validators.contains(author), "author {author}");
        let EntryKind::Misbehaviour(ev) = &e.body.kind else {
            panic!("not misbehaviour: {e:?}");
        };
        assert_eq!((&ev.validator, ev.height), (&offender, at));
        assert!(ev.header_a < ev.header_b);
        assert!([ev.header_a, ev.header_b].contains(&bogus));
    }

    // The chain goes on: a write commits, and every node moves past where it was.
    let before: Vec<u64> = members.iter().map(height).collect();
    let firm = sample_firm(0).unwrap();
    let e = c.registration("gz-credit", &firm, now_ms(), 1).unwrap();
    let (status, body) = post(&format!("{}/v1/entries", members[1].url), &write_body(&e));
    assert_eq!(status, 200, "{body}");
    wait_until("every node to commit more blocks", || {
        members.iter().zip(&before).all(|(m, b)| height(m) > *b)
    });
}
