//! The `monitor` benchmark: post-loan monitoring alerts end to end against a real
//! `xinyi-node --dev` process on loopback.
//!
//! Setup: the agency registers `firms` firms (bench-generated keys) and each grants bank-a a
//! consent with a `penalties` monitoring scope. Load: credit records about random monitored
//! firms are published open loop at `rate` records/s (agency-signed entries over HTTP, each
//! answered after commit); meanwhile bank-a long-polls `GET /v1/banks/bank-a/alerts`. Every
//! alert received was logged in an `alerts_delivered` entry before it was released, so the
//! figure is log-before-release throughput. It reports alerts/s delivered and the latency from
//! a record's commit (its write answered) to the alert's arrival. Not a test: nothing here
//! asserts timing.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xinyi_ledger::entry::{Author, Consent, CreditRecord, EntryBody, EntryKind};
use xinyi_ledger::keys::{KeyPair, SigDomain};
use xinyi_ledger::monitor::{MonitorCategory, Monitoring};
use xinyi_ledger::types::{Category, OrgId, Severity, DAY_MS};
use xinyi_ledger::{Digest, Entry, FirmTag, Genesis};

/// Options of the monitor benchmark.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Monitored firms.
    pub firms: usize,
    /// Offered records/s (open loop).
    pub rate: f64,
    /// Load duration.
    pub duration: Duration,
    /// Data directory of the node (temporary if absent).
    pub data: Option<PathBuf>,
}

/// Result of a run.
#[derive(Debug, Clone)]
pub struct MonitorResult {
    /// Records published (committed) during the load.
    pub records: u64,
    /// Alerts received by the bank.
    pub alerts: u64,
    /// Alerts received per second over the load (plus drain) window.
    pub alerts_per_sec: f64,
    /// Records committed per second.
    pub records_per_sec: f64,
    /// Record commit → alert arrival, ms: p50, p90, p99, max.
    pub latency_ms: [f64; 4],
    /// Failed writes or polls.
    pub errors: u64,
    /// The node's URL (still running while the result's guard lives).
    pub url: String,
    /// The node's data directory.
    pub data: PathBuf,
}

/// Keeps the node process (and its temporary directory) alive; kills it on drop.
pub struct NodeGuard {
    child: Child,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(agent: &ureq::Agent, url: &str, entry: &Entry) -> Result<serde_json::Value> {
    let body = serde_json::json!({"entry": base64::engine::general_purpose::STANDARD.encode(&entry.bytes)});
    match agent.post(url).send_json(body) {
        Ok(r) => Ok(r.into_json()?),
        Err(ureq::Error::Status(code, r)) => {
            bail!(
                "{url}: HTTP {code}: {}",
                r.into_string().unwrap_or_default()
            )
        }
        Err(e) => bail!("{url}: {e}"),
    }
}

/// `X-Xinyi-Auth` for a GET by `org` (specs/api.md).
fn auth(key: &KeyPair, org: &str, chain: &Digest, path: &str, time: u64) -> String {
    let nonce: u64 = rand::random();
    let mut p = chain.as_bytes().to_vec();
    p.extend_from_slice(format!("GET {path}\n{time}\n{nonce}").as_bytes());
    let sig = key.sign(SigDomain::ApiRequest, &p);
    format!("org:{org};{time};{nonce};{}", hex::encode(sig.0))
}

fn node_time(agent: &ureq::Agent, url: &str) -> Result<u64> {
    let h: serde_json::Value = agent.get(&format!("{url}/health")).call()?.into_json()?;
    h["time_ms"]
        .as_u64()
        .ok_or_else(|| anyhow!("health without time_ms"))
}

/// Runs `f(i)` for `0..n` on `threads` threads; the first error wins.
fn parallel(n: usize, threads: usize, f: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        f(i)?;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| anyhow!("a worker panicked"))??;
        }
        Ok(())
    })
}

/// Runs the benchmark; the returned guard keeps the node up (for a following query run).
pub fn run(opts: &MonitorOptions) -> Result<(MonitorResult, NodeGuard)> {
    let tmp = match opts.data {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let data = match (&opts.data, &tmp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().join("dev"),
        (None, None) => bail!("no data directory"),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(crate::devnode::node_binary()?)
        .args(["--dev", "--data"])
        .arg(&data)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(["--alert-rate", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting xinyi-node")?;
    let guard = NodeGuard { child, _tmp: tmp };
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .max_idle_connections_per_host(64)
        .build();
    let deadline = Instant::now() + Duration::from_secs(180);
    while agent.get(&format!("{url}/health")).call().is_err() {
        if Instant::now() > deadline {
            bail!("node at {url} did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = data.join("dev-keys");
    let read = |p: &Path| -> Result<KeyPair> {
        Ok(KeyPair::from_file_text(&std::fs::read_to_string(p)?)?)
    };
    let agency = read(&keys.join("gz-credit.key"))?;
    let bank = read(&keys.join("bank-a.key"))?;
    let genesis = Genesis::from_json(&std::fs::read(data.join("genesis.json"))?)?;
    let chain = genesis.chain_id()?;
    let gz = OrgId::new("gz-credit")?;
    let sign = |author: Author, key: &KeyPair, kind: EntryKind, time: u64| -> Result<Entry> {
        Ok(Entry::sign(
            &chain,
            EntryBody {
                author,
                time,
                nonce: rand::random(),
                kind,
            },
            key,
        )?)
    };
    // Setup: firms (tags derived from the bench's own seeds) registered and consenting.
    let firms: Vec<(FirmTag, KeyPair)> = (0..opts.firms)
        .map(|i| {
            let seed = xinyi_ledger::hash::tagged(
                xinyi_ledger::hash::Domain::Data,
                &[b"bench-monitor-firm", &(i as u64).to_be_bytes()],
            );
            (FirmTag(seed.0), KeyPair::from_seed(seed.0))
        })
        .collect();
    let now = node_time(&agent, &url)?;
    let entries_url = format!("{url}/v1/entries");
    parallel(firms.len(), 16, |i| {
        let (tag, key) = &firms[i];
        let reg = sign(
            Author::Org(gz.clone()),
            &agency,
            EntryKind::FirmRegistered {
                firm: *tag,
                key: key.public(),
            },
            now,
        )?;
        post(&agent, &entries_url, &reg)?;
        let c = sign(
            Author::Firm(*tag),
            key,
            EntryKind::ConsentGranted(Consent {
                bank: OrgId::new("bank-a")?,
                purpose: Consent::purpose_digest(&[0x5c; 32], "bench monitoring"),
                categories: vec![Category::Registration],
                not_before: now.saturating_sub(60_000),
                not_after: now + 30 * DAY_MS,
                max_uses: 1,
                monitoring: Some(Monitoring {
                    categories: vec![MonitorCategory::Penalties],
                }),
            }),
            now,
        )?;
        post(&agent, &entries_url, &c)?;
        Ok(())
    })?;
    // The bank's stream starts from what it holds now.
    let path = "/v1/banks/bank-a/alerts?after=0&limit=1";
    let t = node_time(&agent, &url)?;
    let v: serde_json::Value = agent
        .get(&format!("{url}{path}"))
        .set("X-Xinyi-Auth", &auth(&bank, "bank-a", &chain, path, t))
        .call()?
        .into_json()?;
    let start_seq = v["last_seq"].as_u64().unwrap_or(0);

    // Load: records at `rate`/s (open loop, one thread per in-flight write), and the watcher.
    let committed: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let received: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let total = (opts.rate * opts.duration.as_secs_f64()).round() as u64;
    let load_start = Instant::now();
    let watcher = {
        let (agent, url, received, stop, errors) = (
            agent.clone(),
            url.clone(),
            received.clone(),
            stop.clone(),
            errors.clone(),
        );
        let bank = bank.clone();
        std::thread::spawn(move || {
            let mut after = start_seq;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/v1/banks/bank-a/alerts?after={after}&wait_ms=1000&limit=1000");
                let Ok(t) = node_time(&agent, &url) else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                };
                let r = agent
                    .get(&format!("{url}{path}"))
                    .set("X-Xinyi-Auth", &auth(&bank, "bank-a", &chain, &path, t))
                    .call();
                let v: serde_json::Value = match r.map(|r| r.into_json()) {
                    Ok(Ok(v)) => v,
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                };
                let at = Instant::now();
                let mut got = received.lock().unwrap_or_else(|e| e.into_inner());
                for a in v["alerts"].as_array().cloned().unwrap_or_default() {
                    if let Some(p) = a["trigger"]["position"].as_u64() {
                        got.push((p, at));
                    }
                    after = after.max(a["seq"].as_u64().unwrap_or(after));
                }
            }
        })
    };
    std::thread::scope(|s| {
        for k in 0..total {
            let due = load_start + Duration::from_secs_f64(k as f64 / opts.rate);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            let (agent, committed, errors) = (&agent, &committed, &errors);
            let tag = firms[rand::random::<usize>() % firms.len()].0;
            let e = sign(
                Author::Org(gz.clone()),
                &agency,
                EntryKind::CreditRecordPublished(CreditRecord {
                    record: Digest(rand::random()),
                    firm: tag,
                    category: Category::Penalties,
                    severity: Severity::Minor,
                    min_publicity_days: 0,
                }),
                now + load_start.elapsed().as_millis() as u64,
            );
            let entries_url = &entries_url;
            s.spawn(move || match e.and_then(|e| post(agent, entries_url, &e)) {
                Ok(v) => {
                    if let Some(p) = v["position"].as_u64() {
                        committed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(p, Instant::now());
                    }
                }
                Err(_) => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let load_secs = load_start.elapsed().as_secs_f64();
    let records = committed.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
    // Drain: wait until every committed record's alert arrived (or 30 s).
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while (received.lock().unwrap_or_else(|e| e.into_inner()).len() as u64) < records
        && Instant::now() < drain_deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    let got = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let last = got.iter().map(|g| g.1).max().unwrap_or(load_start);
    let window = last.duration_since(load_start).as_secs_f64().max(load_secs);
    let committed = committed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut lat: Vec<f64> = got
        .iter()
        .filter_map(|(p, at)| {
            committed
                .get(p)
                .map(|c| at.saturating_duration_since(*c).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize]
    };
    Ok((
        MonitorResult {
            records,
            alerts: got.len() as u64,
            alerts_per_sec: got.len() as f64 / window,
            records_per_sec: records as f64 / load_secs,
            latency_ms: [pct(0.5), pct(0.9), pct(0.99), pct(1.0)],
            errors: errors.load(std::sync::atomic::Ordering::Relaxed),
            url,
            data,
        },
        guard,
    ))
}
