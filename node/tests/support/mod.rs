//! Shared by the cluster tests: a sample consortium's genesis, keys and per-node configs on
//! loopback ports, and small blocking HTTP helpers.
#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xinyi_ledger::sample::SampleConsortium;
use xinyi_ledger::Entry;
use xinyi_node::config::{Config, P2pSection, QuerySection, SampleSection};

pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub struct Member {
    pub org: String,
    pub url: String,
}

pub fn get(url: &str) -> Option<Value> {
    ureq::get(url)
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_json()
        .ok()
}

/// `GET base + path` signed as organisation `org` (`X-Xinyi-Auth`, `specs/api.md`): role-gated
/// reads (entries, blocks, export) need a party, an auditor or a validator.
pub fn get_as(
    base: &str,
    path: &str,
    chain: &xinyi_ledger::Digest,
    org: &str,
    key: &xinyi_ledger::KeyPair,
) -> Option<Value> {
    let time = now_ms();
    let nonce = format!("n{}", rand::random::<u64>());
    let payload = xinyi_node::api::auth::auth_payload(chain.as_bytes(), "GET", path, time, &nonce);
    let sig = key.sign(xinyi_ledger::keys::SigDomain::ApiRequest, &payload);
    ureq::get(&format!("{base}{path}"))
        .set(
            "x-xinyi-auth",
            &format!("org:{org};{time};{nonce};{}", hex::encode(sig.0)),
        )
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_json()
        .ok()
}

pub fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = ureq::post(url)
        .timeout(Duration::from_secs(30))
        .send_json(body.clone());
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(c, r)) => (c, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

pub fn write_body(e: &Entry) -> Value {
    json!({"entry": base64::engine::general_purpose::STANDARD.encode(&e.bytes)})
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes genesis and keys for `nodes` under `dir` and returns each node's config.
pub fn configs(dir: &Path, c: &SampleConsortium, nodes: &[&str], agency: &str) -> Vec<Config> {
    std::fs::write(dir.join("genesis.json"), c.genesis.to_json()).unwrap();
    let addrs: BTreeMap<String, (SocketAddr, SocketAddr)> = nodes
        .iter()
        .map(|o| (o.to_string(), (free_addr(), free_addr())))
        .collect();
    let agency_url = format!("http://{}", addrs[agency].0);
    let mut out = vec![];
    // The consortium firm key, shared by every member (firm tags).
    let firm_key = dir.join("firm.key");
    std::fs::write(&firm_key, c.tag_key.to_hex()).unwrap();
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
            witness: None,
            anchor: None,
            api: None,
            monitor: None,
            bench: None,
            privacy: Some(xinyi_node::config::PrivacySection {
                firm_key: firm_key.clone(),
            }),
        };
        std::fs::write(home.join("xinyi.toml"), toml::to_string(&cfg).unwrap()).unwrap();
        out.push(cfg);
    }
    out
}

/// The member of a config.
pub fn member(cfg: &Config) -> Member {
    Member {
        org: cfg.org.clone(),
        url: format!("http://{}", cfg.http),
    }
}

/// Starts `cfg`'s node (`xinyi_node::cluster::run`) on its own thread and returns its
/// [`Member`]; a node that stops prints why.
pub fn spawn_member(cfg: Config) -> Member {
    let m = member(&cfg);
    let org = cfg.org.clone();
    std::thread::Builder::new()
        .name(format!("node-{org}"))
        .spawn(move || {
            if let Err(e) = xinyi_node::cluster::run(cfg) {
                eprintln!("node {org} stopped: {e:#}");
            }
        })
        .expect("spawn node thread");
    m
}

/// Waits until every member answers `/health`.
pub fn wait_serving(members: &[Member]) {
    for m in members {
        wait_until(&format!("{} to serve /health", m.org), || {
            get(&format!("{}/health", m.url)).is_some()
        });
    }
}

pub fn health(m: &Member) -> Value {
    get(&format!("{}/health", m.url)).unwrap_or(Value::Null)
}
