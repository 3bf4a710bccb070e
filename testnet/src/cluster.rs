//! The `cluster` benchmark: authorized queries, open loop, against a local multi-node testnet of
//! real `xinyi-node` processes on loopback (the `xinyi-testnet` library starts it).
//!
//! It starts a testnet (or attaches to a running one with `--dir`), grants one consent per
//! keyed sample firm to `bank-a` through `/v1/consents`, signs every query request of the run
//! in advance (on all cores, not timed), then sends them at a fixed rate: request `i` is due at
//! `start + i / rate` whatever happened to earlier ones (open loop), from many connections.
//! Latency is measured from the due time to the answer, so a client that falls behind counts
//! against the node, not in its favour. Every answer is a query served after its `QueryServed`
//! record was committed by the validators. Per node it samples CPU time and RSS from `/proc`
//! and the data directory's size. Nothing here asserts timing.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use xinyi_ledger::entry::{
    query_signing_payload, Author, Consent, EntryBody, EntryKind, QueryRequest, SignedQueryRequest,
};
use xinyi_ledger::keys::{KeyPair, SigDomain};
use xinyi_ledger::types::{Category, OrgId, DAY_MS};
use xinyi_ledger::{Digest, Entry, FirmTag, Genesis, Uscc};

use crate::net::manifest::Manifest;
use crate::net::{http, ops, process};

/// The bank whose signed requests the benchmark sends.
pub const BANK: &str = "bank-a";

/// Where queries enter the testnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// POSTed to the agency node (gz-credit), which holds the data.
    Agency,
    /// POSTed to the bank's follower node (bank-a), which forwards to the agency node.
    Bank,
}

/// How to get a testnet.
#[derive(Debug, Clone)]
pub struct ClusterSetup {
    /// Attach to (or create) the testnet in this directory; temporary if `None`.
    pub dir: Option<PathBuf>,
    /// Validators of a new testnet.
    pub validators: usize,
    /// Followers of a new testnet (bank-a is the first).
    pub followers: usize,
    /// First port of a new testnet (random free range if `None`).
    pub base_port: Option<u16>,
    /// Leave a testnet this run started running afterwards.
    pub keep: bool,
    /// Progress on stderr.
    pub verbose: bool,
}

/// A testnet the benchmark uses; stops it on drop if the benchmark started it.
pub struct Testnet {
    /// Its manifest.
    pub manifest: Manifest,
    started: bool,
    keep: bool,
    _tmp: Option<tempfile::TempDir>,
    chain: Digest,
    bank: KeyPair,
    consents: Vec<(FirmTag, Digest)>,
    agent: ureq::Agent,
}

impl Drop for Testnet {
    fn drop(&mut self) {
        if self.started && !self.keep {
            let _ = ops::stop_all(&self.manifest, Duration::from_secs(5));
        }
    }
}

/// A binary next to this executable (or one directory up).
pub(crate) fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("no executable directory"))?;
    for cand in [dir.join(name), dir.join("..").join(name)] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    bail!(
        "{name} not found next to {}: build it first (cargo build --release -p xinyi-node -p xinyi-testnet)",
        exe.display()
    )
}

/// A base port whose HTTP and p2p ranges are free now.
pub(crate) fn free_base_port(nodes: usize) -> Result<u16> {
    for _ in 0..50 {
        let base: u16 = 20_000 + (rand::random::<u16>() % 30_000);
        let free = (1..=nodes as u16).all(|k| {
            std::net::TcpListener::bind(("127.0.0.1", base + k)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + 100 + k)).is_ok()
        });
        if free {
            return Ok(base);
        }
    }
    bail!("no free port range found")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Testnet {
    /// Starts or attaches to the testnet and grants the benchmark's consents.
    pub fn open(s: &ClusterSetup) -> Result<Testnet> {
        let tmp = match &s.dir {
            Some(_) => None,
            None => Some(tempfile::tempdir()?),
        };
        let dir = match (&s.dir, &tmp) {
            (Some(d), _) => ops::absolute(d)?,
            (None, Some(t)) => t.path().join("net"),
            (None, None) => bail!("no directory"),
        };
        let mut started = false;
        let manifest =
            if Manifest::exists(&dir) && !ops::live_nodes(&Manifest::load(&dir)?).is_empty() {
                let m = Manifest::load(&dir)?;
                if ops::live_nodes(&m).len() != m.nodes.len() {
                    bail!(
                        "{}: only {} of {} nodes are running",
                        dir.display(),
                        ops::live_nodes(&m).len(),
                        m.nodes.len()
                    );
                }
                m
            } else {
                let fresh = !Manifest::exists(&dir);
                let base_port = match (s.base_port, fresh) {
                    (Some(p), _) => Some(p),
                    (None, true) => Some(free_base_port(s.validators + s.followers)?),
                    (None, false) => None,
                };
                let r = ops::up(&ops::UpOptions {
                    dir: dir.clone(),
                    validators: fresh.then_some(s.validators),
                    followers: fresh.then_some(s.followers),
                    base_port,
                    node_bin: sibling("xinyi-node")?,
                    self_exe: sibling("xinyi-testnet")?,
                    timeout: Duration::from_secs(180),
                    verbose: s.verbose,
                    anchor_chain: false,
                })?;
                started = true;
                r.manifest
            };
        let genesis = Genesis::from_json(
            &std::fs::read(&manifest.genesis)
                .with_context(|| format!("reading {}", manifest.genesis.display()))?,
        )?;
        let chain = genesis.chain_id()?;
        let bank = xinyi_node::dev::read_key(&manifest.org_key(BANK))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .max_idle_connections(4096)
            .max_idle_connections_per_host(4096)
            .build();
        let tmp = match tmp {
            Some(t) if s.keep => {
                // Leave the directory behind with the running testnet.
                let kept = t.keep();
                if s.verbose {
                    eprintln!("testnet kept in {}", kept.display());
                }
                None
            }
            other => other,
        };
        let mut t = Testnet {
            manifest,
            started,
            keep: s.keep,
            _tmp: tmp,
            chain,
            bank,
            consents: Vec::new(),
            agent,
        };
        t.grant_consents()?;
        Ok(t)
    }

    fn url_of(&self, org: &str) -> Result<String> {
        Ok(self.manifest.node(org)?.url.clone())
    }

    /// URL queries are sent to.
    pub fn entry_url(&self, via: Via) -> Result<String> {
        match via {
            Via::Agency => self.url_of(crate::net::layout::DATA_ORG),
            Via::Bank => self.url_of(BANK).map_err(|_| {
                anyhow!("this testnet has no {BANK} follower node: create it with --followers 1")
            }),
        }
    }

    fn grant_consents(&mut self) -> Result<()> {
        let url = self.entry_url(Via::Agency)?;
        let h = http::health(&self.agent, &url)?;
        let now = if h.time_ms > 0 { h.time_ms } else { now_ms() };
        let b64 = base64::engine::general_purpose::STANDARD;
        let tag_key = xinyi_node::dev::read_firm_key(&self.manifest.keys.join("firm.key"))?;
        for (i, f) in self.manifest.firms.iter().enumerate() {
            let firm = tag_key.tag(&Uscc::parse(&f.uscc).map_err(|e| anyhow!("{}: {e}", f.uscc))?);
            let key = xinyi_node::dev::read_key(&f.key_file)?;
            let body = EntryBody {
                author: Author::Firm(firm),
                time: now + i as u64,
                nonce: rand::random(),
                kind: EntryKind::ConsentGranted(Consent {
                    bank: OrgId::new(BANK)?,
                    purpose: Consent::purpose_digest(
                        &[0x5a; 32],
                        &format!("cluster benchmark {i}"),
                    ),
                    categories: vec![Category::Registration, Category::Tax],
                    not_before: now.saturating_sub(60_000),
                    not_after: now + 30 * DAY_MS,
                    max_uses: u32::MAX,
                    monitoring: None,
                }),
            };
            let e = Entry::sign(&self.chain, body, &key)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let r = self
                    .agent
                    .post(&format!("{url}/v1/consents"))
                    .send_json(serde_json::json!({"entry": b64.encode(&e.bytes)}));
                match r {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => {
                        bail!("granting a consent through {url}: {e}")
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(300)),
                }
            }
            self.consents.push((firm, e.id));
        }
        if self.consents.is_empty() {
            bail!("the testnet has no keyed firms");
        }
        Ok(())
    }

    /// `n` signed query request bodies (JSON), signed on all cores, times near the node clock.
    pub fn signed_requests(&self, n: usize) -> Result<Vec<Vec<u8>>> {
        let url = self.entry_url(Via::Agency)?;
        let h = http::health(&self.agent, &url)?;
        let now = if h.time_ms > 0 { h.time_ms } else { now_ms() };
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        let per = n.div_ceil(threads).max(1);
        let bank = OrgId::new(BANK)?;
        let parts: Vec<Result<Vec<Vec<u8>>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .step_by(per)
                .map(|lo| {
                    let bank = bank.clone();
                    s.spawn(move || -> Result<Vec<Vec<u8>>> {
                        (lo..(lo + per).min(n))
                            .map(|i| {
                                let (firm, consent) = self.consents[i % self.consents.len()];
                                let req = QueryRequest {
                                    bank: bank.clone(),
                                    firm,
                                    consent,
                                    categories: vec![Category::Tax],
                                    nonce: rand::random(),
                                    time: now,
                                };
                                let payload = query_signing_payload(&self.chain, &req)?;
                                let signed = SignedQueryRequest {
                                    signature: self.bank.sign(SigDomain::QueryRequest, &payload),
                                    request: req,
                                };
                                Ok(serde_json::to_vec(
                                    &serde_json::json!({ "request": signed }),
                                )?)
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("signing thread panicked")))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(n);
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    /// Bytes of the last entry of the log (its encoded size), if the log is not empty.
    pub fn last_entry_bytes(&self) -> Result<Option<usize>> {
        let url = self.entry_url(Via::Agency)?;
        let h = http::health(&self.agent, &url)?;
        if h.log_size == 0 {
            return Ok(None);
        }
        // Entries are role-gated (specs/privacy.md §4): read it as the auditor.
        let path = format!("/v1/entries/{}", h.log_size - 1);
        let key = xinyi_node::dev::read_key(&self.manifest.org_key("auditor"))?;
        let nonce = format!("b{}", rand::random::<u64>());
        let payload = xinyi_node::api::auth::auth_payload(
            self.chain.as_bytes(),
            "GET",
            &path,
            h.time_ms,
            &nonce,
        );
        let sig = key.sign(xinyi_ledger::keys::SigDomain::ApiRequest, &payload);
        let v: serde_json::Value = self
            .agent
            .get(&format!("{url}{path}"))
            .set(
                "X-Xinyi-Auth",
                &format!("org:auditor;{};{nonce};{}", h.time_ms, hex::encode(sig.0)),
            )
            .call()?
            .into_json()?;
        let b = v["entry"]
            .as_str()
            .ok_or_else(|| anyhow!("entry answer without bytes"))?;
        Ok(Some(
            base64::engine::general_purpose::STANDARD.decode(b)?.len(),
        ))
    }

    /// Log size (and height) the agency node reports.
    pub fn log_size(&self) -> Result<(u64, u64)> {
        let h = http::health(&self.agent, &self.entry_url(Via::Agency)?)?;
        Ok((h.log_size, h.height))
    }

    /// Snapshot of every node's process and disk figures.
    pub fn sample_nodes(&self) -> Vec<NodeSample> {
        self.manifest
            .nodes
            .iter()
            .map(|n| {
                let pid = n.pid.filter(|p| process::alive(Some(*p)));
                let (cpu, rss, hwm) = pid.map(proc_figures).unwrap_or((None, None, None));
                NodeSample {
                    org: n.org.clone(),
                    validator: n.validator,
                    cpu,
                    rss_bytes: rss,
                    hwm_bytes: hwm,
                    disk_bytes: dir_bytes(&n.dir.join("data").join("ledger")),
                }
            })
            .collect()
    }
}

/// CPU time, RSS and peak RSS of a process (Linux `/proc`).
pub(crate) fn proc_figures(pid: u32) -> (Option<Duration>, Option<u64>, Option<u64>) {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            // USER_HZ is 100 on Linux.
            Some(Duration::from_millis(ticks * 10))
        });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |field: &str| {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    (cpu, kb("VmRSS:"), kb("VmHWM:"))
}

/// Total size of the files under `p` (apparent size).
pub fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    for e in rd.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

/// One node at one moment.
#[derive(Debug, Clone)]
pub struct NodeSample {
    /// Organisation.
    pub org: String,
    /// Validator or follower.
    pub validator: bool,
    /// CPU time used so far.
    pub cpu: Option<Duration>,
    /// Resident set.
    pub rss_bytes: Option<u64>,
    /// Peak resident set.
    pub hwm_bytes: Option<u64>,
    /// Bytes of its ledger store (`data/ledger`; not the agency data or the consensus journal).
    pub disk_bytes: u64,
}

/// One node over a run.
#[derive(Debug, Clone)]
pub struct NodeFigures {
    /// Organisation.
    pub org: String,
    /// Validator or follower.
    pub validator: bool,
    /// CPU used over the run as % of one core.
    pub cpu_percent: Option<f64>,
    /// RSS at the end.
    pub rss_bytes: Option<u64>,
    /// Peak RSS.
    pub hwm_bytes: Option<u64>,
    /// Ledger store size at the end.
    pub disk_bytes: u64,
}

/// Result of one open-loop step.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Offered rate.
    pub rate: f64,
    /// Requests sent.
    pub sent: usize,
    /// Answered with data (committed).
    pub served: usize,
    /// Refused or failed.
    pub errors: usize,
    /// First error text seen.
    pub first_error: Option<String>,
    /// Seconds from the first due time to the last answer.
    pub elapsed: f64,
    /// Served per second over the scheduled duration or the elapsed time, whichever is longer.
    pub served_per_sec: f64,
    /// Latency (due time to answer) p50, p90, p99, max in ms.
    pub latency_ms: [f64; 4],
    /// Entries the agency node's log grew by.
    pub log_growth: u64,
    /// Blocks committed during the step.
    pub blocks: u64,
    /// Per-node figures over the step.
    pub nodes: Vec<NodeFigures>,
    /// Wall seconds the step was measured over (for CPU %).
    pub wall: f64,
    /// CPU of the load generator itself (this process's HTTP client threads) over the step, as
    /// % of one core: what of the machine's cores the nodes did not get. The requests were
    /// signed before the step and are not counted.
    pub loadgen_cpu_percent: Option<f64>,
}

/// Drives `rate` queries/s for `duration` from `connections` concurrent connections.
///
/// With `batch` > 1 the requests go `batch` at a time to `POST /v1/queries/batch` (each batch
/// due when its first request is), and each result counts as one request.
pub fn open_loop(
    t: &Testnet,
    via: Via,
    rate: f64,
    duration: Duration,
    connections: usize,
    batch: usize,
) -> Result<StepResult> {
    if rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let n = ((rate * duration.as_secs_f64()).ceil() as usize).max(1);
    let batch = batch.max(1);
    let singles = t.signed_requests(n)?;
    let (bodies, url) = if batch == 1 {
        (singles, format!("{}/v1/queries", t.entry_url(via)?))
    } else {
        let mut bodies = Vec::with_capacity(n.div_ceil(batch));
        for chunk in singles.chunks(batch) {
            let requests = chunk
                .iter()
                .map(|b| {
                    serde_json::from_slice::<serde_json::Value>(b).map(|mut v| v["request"].take())
                })
                .collect::<Result<Vec<_>, _>>()?;
            bodies.push(serde_json::to_vec(
                &serde_json::json!({ "requests": requests }),
            )?);
        }
        (bodies, format!("{}/v1/queries/batch", t.entry_url(via)?))
    };
    let (log0, h0) = t.log_size()?;
    let before = t.sample_nodes();
    let own_before = proc_figures(std::process::id()).0;
    let next = AtomicUsize::new(0);
    let start = Instant::now() + Duration::from_millis(50);
    let conns = connections.clamp(1, 4096).min(bodies.len());
    let results: Vec<(Vec<f64>, usize, Option<String>, Instant)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..conns)
            .map(|_| {
                let (bodies, next, url) = (&bodies, &next, &url);
                let agent = t.agent.clone();
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        let mut lat = Vec::new();
                        let mut errors = 0usize;
                        let mut first = None;
                        let mut last = start;
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(body) = bodies.get(i) else { break };
                            let due = start + Duration::from_secs_f64((i * batch) as f64 / rate);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                            let r = agent
                                .post(url)
                                .set("content-type", "application/json")
                                .send_bytes(body);
                            let done = Instant::now();
                            last = last.max(done);
                            match r {
                                Ok(resp) if batch > 1 => {
                                    let ms = (done - due).as_secs_f64() * 1e3;
                                    let v: serde_json::Value = resp.into_json().unwrap_or_default();
                                    let results = v["results"].as_array();
                                    for r in results.into_iter().flatten() {
                                        if r["status"] == 200 {
                                            lat.push(ms);
                                        } else {
                                            errors += 1;
                                            if first.is_none() {
                                                first = Some(format!(
                                                    "{} {}: {}",
                                                    r["status"], r["code"], r["message"]
                                                ));
                                            }
                                        }
                                    }
                                    if results.is_none() {
                                        errors += 1;
                                        first.get_or_insert_with(|| {
                                            format!("not a batch answer: {v}")
                                        });
                                    }
                                }
                                Ok(resp) => {
                                    // Read the body so the connection is reused.
                                    let _ = resp.into_string();
                                    lat.push((done - due).as_secs_f64() * 1e3);
                                }
                                Err(e) => {
                                    errors += 1;
                                    if first.is_none() {
                                        first = Some(match e {
                                            ureq::Error::Status(c, r) => format!(
                                                "HTTP {c}: {}",
                                                r.into_string().unwrap_or_default()
                                            ),
                                            e => e.to_string(),
                                        });
                                    }
                                }
                            }
                        }
                        (lat, errors, first, last)
                    })
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    if results.is_empty() {
        bail!("no client thread could start");
    }
    let wall = start.elapsed().as_secs_f64();
    let own_after = proc_figures(std::process::id()).0;
    let after = t.sample_nodes();
    let (log1, h1) = t.log_size()?;
    let mut lat: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    let errors: usize = results.iter().map(|r| r.1).sum();
    let first_error = results.iter().find_map(|r| r.2.clone());
    let last = results.iter().map(|r| r.3).max().unwrap_or(start);
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize]
    };
    let elapsed = last.saturating_duration_since(start).as_secs_f64();
    let nodes = before
        .iter()
        .zip(&after)
        .map(|(b, a)| NodeFigures {
            org: a.org.clone(),
            validator: a.validator,
            cpu_percent: match (b.cpu, a.cpu) {
                (Some(x), Some(y)) => Some(100.0 * y.saturating_sub(x).as_secs_f64() / wall),
                _ => None,
            },
            rss_bytes: a.rss_bytes,
            hwm_bytes: a.hwm_bytes,
            disk_bytes: a.disk_bytes,
        })
        .collect();
    Ok(StepResult {
        rate,
        sent: n,
        served: lat.len(),
        errors,
        first_error,
        elapsed,
        served_per_sec: lat.len() as f64 / elapsed.max(duration.as_secs_f64()),
        latency_ms: [pct(0.5), pct(0.9), pct(0.99), pct(1.0)],
        log_growth: log1.saturating_sub(log0),
        blocks: h1.saturating_sub(h0),
        nodes,
        wall,
        loadgen_cpu_percent: match (own_before, own_after) {
            (Some(x), Some(y)) => Some(100.0 * y.saturating_sub(x).as_secs_f64() / wall),
            _ => None,
        },
    })
}

/// Whether a step kept up with its offered rate.
pub fn sustained(r: &StepResult) -> bool {
    r.served as f64 >= 0.97 * r.sent as f64
        && r.served_per_sec >= 0.9 * r.rate
        && r.latency_ms[2] < 2_000.0
}

/// `--max`: raises the rate by `factor` from `start` until a step does not keep up, then
/// bisects once between the last good and the first bad rate. Returns every step run, and
/// the index of the best sustained one.
pub fn find_max(
    t: &Testnet,
    via: Via,
    start: f64,
    step: Duration,
    connections: usize,
    batch: usize,
    mut progress: impl FnMut(&StepResult),
) -> Result<(Vec<StepResult>, Option<usize>)> {
    let mut steps: Vec<StepResult> = Vec::new();
    let mut rate = start;
    let mut good: Option<usize> = None;
    let mut bad_rate = None;
    for _ in 0..12 {
        let r = open_loop(t, via, rate, step, connections, batch)?;
        progress(&r);
        let ok = sustained(&r);
        steps.push(r);
        if ok {
            good = Some(steps.len() - 1);
            rate *= 1.5;
        } else {
            bad_rate = Some(rate);
            break;
        }
        // Let the testnet drain before the next step.
        std::thread::sleep(Duration::from_secs(1));
    }
    if let (Some(g), Some(b)) = (good, bad_rate) {
        let mid = (steps[g].rate + b) / 2.0;
        std::thread::sleep(Duration::from_secs(2));
        let r = open_loop(t, via, mid, step, connections, batch)?;
        progress(&r);
        let ok = sustained(&r);
        steps.push(r);
        if ok {
            good = Some(steps.len() - 1);
        }
    }
    Ok((steps, good))
}
