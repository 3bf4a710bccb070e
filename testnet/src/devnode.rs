//! The `dev-node` benchmark: authorized queries end to end over HTTP against a real
//! `xinyi-node --dev` process on loopback, with concurrent clients.
//!
//! It starts the node (or attaches to one with `--node`), grants consents with many uses from
//! the dev firms' keys, then drives signed queries from `clients` threads for a fixed duration
//! (closed loop: each client waits for its answer before sending the next). Every answer is a
//! committed `QueryServed` with its proof, so the figure is log-before-release throughput. It
//! reports queries/s and latency percentiles beside the ed25519 verification ceiling measured
//! in the same run. Not a test: nothing here asserts timing.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xinyi_ledger::entry::{
    Author, Consent, EntryBody, EntryKind, QueryRequest, SignedQueryRequest,
};
use xinyi_ledger::keys::{KeyPair, SigDomain};
use xinyi_ledger::types::{Category, OrgId, DAY_MS};
use xinyi_ledger::{Digest, Entry, FirmTag, Genesis, Uscc};

/// Options of the dev-node benchmark.
#[derive(Debug, Clone)]
pub struct DevNodeOptions {
    /// Attach to this node URL instead of starting one (its data dir must be `data`).
    pub node: Option<String>,
    /// Data directory of the node (temporary if starting one).
    pub data: Option<PathBuf>,
    /// Concurrent clients.
    pub clients: usize,
    /// Measurement duration.
    pub duration: Duration,
}

/// Result of a run.
#[derive(Debug, Clone)]
pub struct DevNodeResult {
    /// Queries answered with data per second.
    pub queries_per_sec: f64,
    /// Latency percentiles in ms: p50, p90, p99, max.
    pub latency_ms: [f64; 4],
    /// Queries answered.
    pub served: u64,
    /// Failed requests.
    pub errors: u64,
}

struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `xinyi-node` binary built beside the running one (`target/<profile>/`), or an error
/// saying how to build it.
pub(crate) fn node_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("no executable directory"))?;
    for cand in [dir.join("xinyi-node"), dir.join("../xinyi-node")] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    bail!(
        "xinyi-node not found next to {} — build it first: cargo build --release --bin xinyi-node",
        exe.display()
    )
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_ready(agent: &ureq::Agent, url: &str) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = agent.get(&format!("{url}/health")).call() {
            return Ok(r.into_json()?);
        }
        if Instant::now() > deadline {
            bail!("node at {url} did not become ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
    match agent.post(url).send_json(body.clone()) {
        Ok(r) => Ok(r.into_json()?),
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            bail!("{url}: HTTP {code}: {text}")
        }
        Err(e) => bail!("{url}: {e}"),
    }
}

fn firm_keys(keys: &Path) -> Result<Vec<(Uscc, KeyPair)>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(keys).with_context(|| format!("reading {}", keys.display()))? {
        let p = item?.path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(u) = name
            .strip_prefix("firm-")
            .and_then(|s| s.strip_suffix(".key"))
        {
            let firm = Uscc::parse(u).map_err(|e| anyhow!("{name}: {e}"))?;
            out.push((
                firm,
                KeyPair::from_file_text(&std::fs::read_to_string(&p)?)?,
            ));
        }
    }
    out.sort_by_key(|a| a.0);
    if out.is_empty() {
        bail!("no firm-*.key files in {}", keys.display());
    }
    Ok(out)
}

/// Runs the benchmark.
pub fn run(opts: &DevNodeOptions) -> Result<DevNodeResult> {
    let tmp = tempfile::tempdir()?;
    let data = opts.data.clone().unwrap_or_else(|| tmp.path().join("dev"));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .max_idle_connections_per_host(opts.clients.max(1) * 2)
        .build();
    let (_proc, url) = match &opts.node {
        Some(u) => (None, u.trim_end_matches('/').to_string()),
        None => {
            let port = free_port()?;
            let child = Command::new(node_binary()?)
                .args(["--dev", "--data"])
                .arg(&data)
                .args(["--http", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting xinyi-node")?;
            (Some(NodeProcess(child)), format!("http://127.0.0.1:{port}"))
        }
    };
    let health = wait_ready(&agent, &url)?;
    let genesis = Genesis::from_json(&std::fs::read(data.join("genesis.json"))?)?;
    let chain = genesis.chain_id()?;
    let bank =
        KeyPair::from_file_text(&std::fs::read_to_string(data.join("dev-keys/bank-a.key"))?)?;
    let firms = firm_keys(&data.join("dev-keys"))?;
    let tag_key = xinyi_node::dev::read_firm_key(&data.join("dev-keys/firm.key"))?;
    let mut now = health["time_ms"].as_u64().unwrap_or(0);
    let b64 = base64::engine::general_purpose::STANDARD;
    // One consent per dev firm with ample uses.
    let mut consents: Vec<(FirmTag, Digest)> = Vec::new();
    for (i, (firm, key)) in firms.iter().enumerate() {
        let firm = &tag_key.tag(firm);
        let body = EntryBody {
            author: Author::Firm(*firm),
            time: now,
            nonce: rand::random(),
            kind: EntryKind::ConsentGranted(Consent {
                bank: OrgId::new("bank-a")?,
                purpose: Consent::purpose_digest(&[0x5a; 32], &format!("benchmark {i}")),
                categories: vec![Category::Registration, Category::Tax],
                not_before: now.saturating_sub(60_000),
                not_after: now + 30 * DAY_MS,
                max_uses: u32::MAX,
                monitoring: None,
            }),
        };
        let e = Entry::sign(&chain, body, &KeyPair::from_seed(key.seed()))?;
        post(
            &agent,
            &format!("{url}/v1/consents"),
            &serde_json::json!({"entry": b64.encode(&e.bytes)}),
        )?;
        consents.push((*firm, e.id));
        now += 1;
    }
    let deadline = Instant::now() + opts.duration;
    let results: Vec<(Vec<f64>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..opts.clients.max(1))
            .map(|c| {
                let agent = agent.clone();
                let url = url.clone();
                let bank = bank.clone();
                let consents = consents.clone();
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut errors = 0u64;
                    let mut n = 0u64;
                    let started = Instant::now();
                    while Instant::now() < deadline {
                        let (firm, consent) = consents[(c + n as usize) % consents.len()];
                        n += 1;
                        let req = QueryRequest {
                            bank: match OrgId::new("bank-a") {
                                Ok(b) => b,
                                Err(_) => break,
                            },
                            firm,
                            consent,
                            categories: vec![Category::Tax],
                            nonce: rand::random(),
                            time: now + started.elapsed().as_millis() as u64,
                        };
                        let Ok(payload) = xinyi_ledger::entry::query_signing_payload(&chain, &req)
                        else {
                            break;
                        };
                        let signed = SignedQueryRequest {
                            signature: bank.sign(SigDomain::QueryRequest, &payload),
                            request: req,
                        };
                        let body = serde_json::json!({ "request": signed });
                        let t = Instant::now();
                        match agent.post(&format!("{url}/v1/queries")).send_json(body) {
                            Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e3),
                            Err(_) => errors += 1,
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut lat: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    let errors = results.iter().map(|r| r.1).sum();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize]
    };
    Ok(DevNodeResult {
        queries_per_sec: lat.len() as f64 / opts.duration.as_secs_f64(),
        latency_ms: [pct(0.5), pct(0.9), pct(0.99), pct(1.0)],
        served: lat.len() as u64,
        errors,
    })
}
