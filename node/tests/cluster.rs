//! Cluster mode in one process: four validators and a bank's follower, each a real
//! `cluster::run` (its own Commonware tokio runtime, sled store, libp2p sockets on 127.0.0.1
//! and HTTP server), driven over HTTP. Checks that writes submitted to any node (validator or
//! follower) commit on every node, that every node ends on the same head, and the cross-node
//! query path: the bank's follower forwards the signed request to the agency node, which
//! answers with the data only once the query record is final.
//! (Killing processes is tested with real processes in tests/tests/testnet.rs.)

use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xinyi_ledger::entry::{Consent, EntryKind, QueryRequest};
use xinyi_ledger::sample::{sample_firm, SampleConsortium};
use xinyi_ledger::{Category, Entry};
use xinyi_node::config::{Config, P2pSection, QuerySection, SampleSection};

const DEADLINE: Duration = Duration::from_secs(120);

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Member {
    org: String,
    url: String,
}

fn get(url: &str) -> Option<Value> {
    ureq::get(url)
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_json()
        .ok()
}

fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = ureq::post(url)
        .timeout(Duration::from_secs(30))
        .send_json(body.clone());
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(c, r)) => (c, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

fn write_body(e: &Entry) -> Value {
    json!({"entry": base64::engine::general_purpose::STANDARD.encode(&e.bytes)})
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(dir: &Path, c: &SampleConsortium, nodes: &[&str], agency: &str) -> Vec<Member> {
    std::fs::write(dir.join("genesis.json"), c.genesis.to_json()).unwrap();
    let addrs: BTreeMap<String, (SocketAddr, SocketAddr)> = nodes
        .iter()
        .map(|o| (o.to_string(), (free_addr(), free_addr())))
        .collect();
    let agency_url = format!("http://{}", addrs[agency].0);
    let mut members = vec![];
    for org in nodes {
        let home: PathBuf = dir.join(org);
        std::fs::create_dir_all(&home).unwrap();
        let key = home.join(format!("{org}.key"));
        std::fs::write(&key, c.key(org).unwrap().to_file_text()).unwrap();
        let (http, p2p) = addrs[*org];
        let cfg = Config {
            data_dir: home.join("data"),
            http,
            org: org.to_string(),
            key_file: key,
            genesis: dir.join("genesis.json"),
            rate_limit_per_sec: 0,
            mempool_capacity: 10_000,
            request_timeout_ms: 30_000,
            p2p: Some(P2pSection {
                listen: p2p,
                peers: addrs
                    .iter()
                    .filter(|(o, _)| o != org)
                    .map(|(o, (_, p))| (o.clone(), *p))
                    .collect(),
                max_message_bytes: 16 << 20,
                peer_rate_limit_per_sec: 20_000,
                leader_timeout_ms: 500,
            }),
            query: (*org != agency).then(|| QuerySection {
                data_node: agency_url.clone(),
            }),
            sample: (*org == agency).then_some(SampleSection { firms: 10 }),
        };
        std::thread::Builder::new()
            .name(format!("node-{org}"))
            .spawn(move || {
                if let Err(e) = xinyi_node::cluster::run(cfg) {
                    eprintln!("node stopped: {e:#}");
                }
            })
            .unwrap();
        members.push(Member {
            org: org.to_string(),
            url: format!("http://{http}"),
        });
    }
    for m in &members {
        wait_until(&format!("{} to serve /health", m.org), || {
            get(&format!("{}/health", m.url)).is_some()
        });
    }
    members
}

fn health(m: &Member) -> Value {
    get(&format!("{}/health", m.url)).unwrap_or(Value::Null)
}

#[test]
fn four_validators_and_a_follower_agree_and_serve_queries_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let c = SampleConsortium::new(b"cluster-test", 4, now_ms() - 1_000);
    let nodes = ["gz-credit", "agency-2", "agency-3", "agency-4", "bank-a"];
    let m = start(dir.path(), &c, &nodes, "gz-credit");
    let roles: Vec<String> = m
        .iter()
        .map(|n| health(n)["role"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        roles,
        ["validator", "validator", "validator", "validator", "follower"]
    );

    // Firms registered by the agency, submitted to three different nodes (one a follower).
    let firms: Vec<_> = (0..3).map(|i| sample_firm(i).unwrap()).collect();
    let mut positions = vec![];
    let mut sent = vec![];
    for (i, f) in firms.iter().enumerate() {
        let e = c
            .org_entry(
                "gz-credit",
                now_ms(),
                i as u64,
                EntryKind::FirmRegistered {
                    firm: *f,
                    key: c.firm_key(f).public(),
                },
            )
            .unwrap();
        let node = &m[[1, 2, 4][i]];
        let (status, body) = post(&format!("{}/v1/entries", node.url), &write_body(&e));
        assert_eq!(status, 200, "{} via {}: {body}", f, node.org);
        assert_eq!(body["id"], e.id.to_hex());
        positions.push(body["position"].as_u64().unwrap());
        sent.push(e);
    }
    let first = sent[0].clone();

    // The same entry again (to another node) is a replay: refused, not committed twice.
    let (status, body) = post(&format!("{}/v1/entries", m[3].url), &write_body(&first));
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["code"], "state.replay", "{body}");

    // Consent by firm 0 for bank-a, through a validator that is not the agency.
    let t = now_ms();
    let consent = c
        .firm_entry(
            firms[0],
            t,
            7,
            EntryKind::ConsentGranted(Consent {
                bank: "bank-a".parse().unwrap(),
                purpose: "loan application".into(),
                categories: vec![Category::Registration, Category::Tax],
                not_before: t - 1_000,
                not_after: t + 86_400_000,
                max_uses: 2,
            }),
        )
        .unwrap();
    let (status, body) = post(&format!("{}/v1/consents", m[2].url), &write_body(&consent));
    assert_eq!(status, 200, "{body}");

    // The bank queries through its own follower; the agency node releases the data.
    let sq = c
        .signed_query(
            "bank-a",
            QueryRequest {
                bank: "bank-a".parse().unwrap(),
                firm: firms[0],
                consent: consent.id,
                categories: vec![Category::Tax],
                nonce: 1,
                time: now_ms(),
            },
        )
        .unwrap();
    let (status, body) = post(
        &format!("{}/v1/queries", m[4].url),
        &json!({ "request": sq }),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["tax"].is_object(), "{body}");
    let served_at = body["record"]["position"]
        .as_u64()
        .or_else(|| body["position"].as_u64())
        .expect("the answer names the record's position");

    // Every node converges on one head that includes the query record.
    wait_until("all nodes on one head", || {
        let hs: Vec<Value> = m.iter().map(health).collect();
        let heads: std::collections::BTreeSet<String> = hs
            .iter()
            .map(|h| h["head"].as_str().unwrap_or("").to_string())
            .collect();
        heads.len() == 1 && hs.iter().all(|h| h["log_size"].as_u64() > Some(served_at))
    });
    for n in &m {
        for p in positions.iter().chain([served_at].iter()) {
            let e = get(&format!("{}/v1/entries/{p}", n.url))
                .unwrap_or_else(|| panic!("{} lacks entry {p}", n.org));
            assert!(e.is_object(), "{}: {e}", n.org);
        }
    }
    // The follower sees its peers.
    let h = health(&m[4]);
    let connected = h["peers"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["connected"] == true).count())
        .unwrap_or(0);
    assert!(connected >= 3, "{h}");
}
