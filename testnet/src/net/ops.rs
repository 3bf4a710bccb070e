//! The testnet commands: `up`, `status`, `down`, `kill`, `start`.

use super::http::{self, HealthInfo, WriteError};
use super::layout::{NodeRole, Plan, DATA_ORG, KEYED_FIRMS, SAMPLE_FIRMS, TESTNET_NAME};
use super::manifest::{FirmEntry, Manifest, NodeEntry, OrgEntry};
use super::process::{self, ProcState, Sig};
use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};
use xinyi_ledger::entry::{Author, CreditRecord, EntryBody};
use xinyi_ledger::genesis::{GenesisOrg, Params};
use xinyi_ledger::sample::sample_firm;
use xinyi_ledger::{Digest, Entry, EntryKind, Genesis, KeyPair, OrgId, Uscc};
use xinyi_node::dev::{read_key, write_secret};

/// Default first port.
pub const DEFAULT_BASE_PORT: u16 = 7800;

/// Options of `up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Testnet directory.
    pub dir: PathBuf,
    /// Validators (required for a new testnet).
    pub validators: Option<usize>,
    /// Followers (default 0 for a new testnet).
    pub followers: Option<usize>,
    /// First port.
    pub base_port: Option<u16>,
    /// The xinyi-node binary.
    pub node_bin: PathBuf,
    /// This program (runs `gen-data` in a child process so that the agency store's lock is
    /// released before the node opens it).
    pub self_exe: PathBuf,
    /// How long to wait for the nodes and the seeding.
    pub timeout: Duration,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// Start a local EVM chain and anchor to it (`anchorchain`; kept on restarts).
    pub anchor_chain: bool,
}

fn say(verbose: bool, s: &str) {
    if verbose {
        eprintln!("{s}");
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Absolute form of `p` (without resolving symlinks).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// Live nodes of a manifest: (org, pid).
pub fn live_nodes(m: &Manifest) -> Vec<(String, u32)> {
    m.nodes
        .iter()
        .filter_map(|n| {
            n.pid
                .filter(|p| process::alive(Some(*p)))
                .map(|p| (n.org.clone(), p))
        })
        .collect()
}

fn check_ports(m: &Manifest, nodes: &[&NodeEntry]) -> Result<()> {
    let _ = m;
    for n in nodes {
        for (what, addr) in [("HTTP", n.http), ("p2p", n.p2p)] {
            if std::net::TcpListener::bind(addr).is_err() {
                bail!(
                    "port {addr} ({what} of {}) is in use; pick another --base-port, or stop what uses it",
                    n.org
                );
            }
        }
    }
    Ok(())
}

/// Creates a new testnet in `dir` (keys, genesis, configs, agency data) without starting it
/// (`up` starts it; the benchmark's no-op peer edits the configs first, `crate::noop`).
pub fn create(opts: &UpOptions, dir: &Path) -> Result<Manifest> {
    let validators = opts.validators.ok_or_else(|| {
        anyhow!(
            "{} holds no testnet yet: pass --validators N to create one",
            dir.display()
        )
    })?;
    let followers = opts.followers.unwrap_or(0);
    let base_port = opts.base_port.unwrap_or(DEFAULT_BASE_PORT);
    let plan = Plan::new(validators, followers, base_port)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty and holds no testnet.json; use a new or empty --dir",
            dir.display()
        );
    }
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    // Ports first: a clash is the likeliest failure and should leave nothing half-made.
    for n in &plan.nodes {
        for (what, addr) in [("HTTP", n.http), ("p2p", n.p2p)] {
            if std::net::TcpListener::bind(addr).is_err() {
                bail!(
                    "port {addr} ({what} of {}) is in use; pick another --base-port",
                    n.org
                );
            }
        }
    }
    let mut orgs = Vec::new();
    let mut gorgs = Vec::new();
    for o in &plan.orgs {
        let k = KeyPair::generate();
        let key_file = keys.join(format!("{}.key", o.id));
        write_secret(&key_file, &k.to_file_text())?;
        gorgs.push(GenesisOrg {
            id: OrgId::new(&o.id)?,
            name: o.name.clone(),
            role: o.role,
            key: k.public(),
            power: o.power,
        });
        orgs.push(OrgEntry {
            id: o.id.clone(),
            role: o.role,
            power: o.power,
            key_file,
            node: o.node,
        });
    }
    // The consortium firm key, shared by every node (`[privacy] firm_key = "../keys/firm.key"`).
    xinyi_node::dev::write_firm_key(&keys.join("firm.key"), &xinyi_ledger::FirmKey::generate())?;
    let mut firms = Vec::new();
    for i in 0..KEYED_FIRMS {
        let f = sample_firm(i).map_err(|e| anyhow!("sample firm {i}: {e}"))?;
        let key_file = keys.join(format!("firm-{}.key", f.as_str()));
        write_secret(&key_file, &KeyPair::generate().to_file_text())?;
        firms.push(FirmEntry {
            uscc: f.as_str().to_string(),
            key_file,
        });
    }
    let genesis = Genesis {
        name: TESTNET_NAME.into(),
        time: now_ms().saturating_sub(1000),
        orgs: gorgs,
        params: Params::default(),
    };
    genesis.validate().context("genesis")?;
    let genesis_path = dir.join("genesis.json");
    std::fs::write(&genesis_path, genesis.to_json())
        .with_context(|| format!("writing {}", genesis_path.display()))?;
    let mut nodes = Vec::new();
    for n in &plan.nodes {
        let ndir = dir.join(&n.org);
        std::fs::create_dir_all(&ndir).with_context(|| format!("creating {}", ndir.display()))?;
        let config = ndir.join("xinyi.toml");
        std::fs::write(&config, plan.config_text(n)?)
            .with_context(|| format!("writing {}", config.display()))?;
        nodes.push(NodeEntry {
            org: n.org.clone(),
            role: n.role,
            validator: n.role == NodeRole::Validator,
            data_node: n.is_data_node(),
            url: n.url(),
            http: n.http,
            p2p: n.p2p,
            log: ndir.join("node.log"),
            config,
            dir: ndir,
            pid: None,
        });
    }
    let m = Manifest {
        version: 1,
        name: TESTNET_NAME.into(),
        chain_id: genesis.chain_id()?.to_hex(),
        dir: dir.to_path_buf(),
        genesis: genesis_path,
        keys,
        base_port,
        validators,
        followers,
        node_bin: opts.node_bin.clone(),
        seeded: false,
        orgs,
        firms,
        nodes,
    };
    // The agency's synthetic data, generated before its node starts so that the penalties to
    // publish are known (the node keeps a complete store as it is).
    if let Some(d) = m.data_node() {
        let store = d.dir.join("data").join("agency-data");
        let records = gen_data_child(&opts.self_exe, &store, &m.keys.join("firm.key"))?;
        std::fs::write(
            penalties_file(&m),
            serde_json::to_string_pretty(&records)? + "\n",
        )?;
    }
    m.save()?;
    Ok(m)
}

fn penalties_file(m: &Manifest) -> PathBuf {
    m.dir.join(DATA_ORG).join("penalties.json")
}

fn gen_data_child(self_exe: &Path, store: &Path, firm_key: &Path) -> Result<Vec<CreditRecord>> {
    let out = std::process::Command::new(self_exe)
        .arg("gen-data")
        .arg("--store")
        .arg(store)
        .arg("--firm-key")
        .arg(firm_key)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {} gen-data", self_exe.display()))?;
    if !out.status.success() {
        bail!(
            "generating the agency's sample data failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("gen-data output")
}

/// Fills the agency data store at `store` with `SAMPLE_FIRMS` synthetic firms (the keyed ones
/// with repairable minor penalties) unless it is complete, and returns the penalty records of
/// the keyed firms. Run in a child process (`xinyi-testnet gen-data`).
pub fn gen_data(store: &Path, firm_key: &xinyi_ledger::FirmKey) -> Result<Vec<CreditRecord>> {
    std::fs::create_dir_all(store)?;
    let data = xinyi_node::datastore::AgencyData::open(store)?;
    let all: Vec<Uscc> = (0..SAMPLE_FIRMS)
        .map(|i| sample_firm(i).map_err(|e| anyhow!("sample firm {i}: {e}")))
        .collect::<Result<_>>()?;
    if !data.is_complete()? {
        data.generate_sample(&all, KEYED_FIRMS as usize)?;
    }
    let mut out = Vec::new();
    for f in all.iter().take(KEYED_FIRMS as usize) {
        for p in data.penalties(f)? {
            out.push(CreditRecord {
                record: p.id,
                firm: firm_key.tag(&p.firm),
                category: p.category,
                severity: p.severity,
                min_publicity_days: p.min_publicity_days,
            });
        }
    }
    data.flush()?;
    Ok(out)
}

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// Whether the testnet was created (false: restarted).
    pub created: bool,
    /// The manifest after start.
    pub manifest: Manifest,
    /// Entries written by the seeding (0 when already seeded).
    pub seeded_entries: usize,
    /// Height every node reached after start.
    pub height: u64,
}

/// `up`: creates (or restarts) the testnet, starts every node, waits for them and seeds the
/// ledger with the keyed firms.
pub fn up(opts: &UpOptions) -> Result<UpReport> {
    let dir = absolute(&opts.dir)?;
    let (mut m, created) = if Manifest::exists(&dir) {
        let m = Manifest::load(&dir)?;
        let live = live_nodes(&m);
        if !live.is_empty() {
            bail!(
                "{} already holds a running testnet ({} of {} nodes alive); use `xinyi-testnet status`, `down` or `start ORG`",
                dir.display(),
                live.len(),
                m.nodes.len()
            );
        }
        if let Some(v) = opts.validators.filter(|v| *v != m.validators) {
            bail!(
                "{} holds a testnet of {} validators, not {v}; omit --validators to restart it or use a new --dir",
                dir.display(),
                m.validators
            );
        }
        if let Some(f) = opts.followers.filter(|f| *f != m.followers) {
            bail!(
                "{} holds a testnet of {} followers, not {f}; omit --followers to restart it or use a new --dir",
                dir.display(),
                m.followers
            );
        }
        if let Some(p) = opts.base_port.filter(|p| *p != m.base_port) {
            bail!(
                "{} holds a testnet on base port {}, not {p}; its configs name those ports",
                dir.display(),
                m.base_port
            );
        }
        let nodes: Vec<&NodeEntry> = m.nodes.iter().collect();
        check_ports(&m, &nodes)?;
        say(
            opts.verbose,
            &format!("restarting the testnet in {}", dir.display()),
        );
        (m, false)
    } else {
        say(
            opts.verbose,
            &format!("creating a testnet in {}", dir.display()),
        );
        (create(opts, &dir)?, true)
    };
    m.node_bin = opts.node_bin.clone();
    if opts.anchor_chain || dir.join("evm").join("chain.json").exists() {
        super::anchorchain::up(&dir, &m, opts.verbose)?;
    }
    let mut children: Vec<(String, Child)> = Vec::new();
    for i in 0..m.nodes.len() {
        let n = m.nodes[i].clone();
        let child = process::spawn_node(&m.node_bin, &n.config, &n.log)?;
        say(
            opts.verbose,
            &format!("  started {:<13} pid {:<7} {}", n.org, child.id(), n.url),
        );
        m.nodes[i].pid = Some(child.id());
        children.push((n.org, child));
    }
    m.save()?;
    let deadline = Instant::now() + opts.timeout;
    let r = wait_all_healthy(&m, &mut children, deadline);
    if let Err(e) = r {
        let _ = stop_all(&m, Duration::from_secs(5));
        return Err(e);
    }
    say(opts.verbose, "  every node answers /health");
    let mut seeded_entries = 0;
    if !m.seeded {
        seeded_entries = seed(&m, deadline, opts.verbose)?;
        m.seeded = true;
        m.save()?;
    }
    let height = wait_same_height(&m, deadline)?;
    Ok(UpReport {
        created,
        manifest: m,
        seeded_entries,
        height,
    })
}

/// Waits until every node of `m` answers `/health` with status ok on this testnet's chain;
/// fails early if one of `children` exits.
pub fn wait_all_healthy(
    m: &Manifest,
    children: &mut [(String, Child)],
    deadline: Instant,
) -> Result<()> {
    let agent = http::agent();
    let mut pending: Vec<usize> = (0..m.nodes.len()).collect();
    loop {
        let mut still = Vec::new();
        for i in pending {
            let n = &m.nodes[i];
            if let Some((_, c)) = children.iter_mut().find(|(o, _)| *o == n.org) {
                if let Ok(Some(st)) = c.try_wait() {
                    bail!(
                        "{} exited ({st}) before answering /health; {}: {}",
                        n.org,
                        n.log.display(),
                        process::last_log_line(&n.log)
                    );
                }
            }
            match http::health(&agent, &n.url) {
                Ok(h) if h.status == "ok" => {
                    if !h.chain_id.is_empty() && h.chain_id != m.chain_id {
                        bail!(
                            "{} at {} serves chain {} but this testnet is chain {}",
                            n.org,
                            n.url,
                            h.chain_id,
                            m.chain_id
                        );
                    }
                }
                _ => still.push(i),
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let n = &m.nodes[still[0]];
            bail!(
                "{} not answering /health at {} in time; {}: {}",
                n.org,
                n.url,
                n.log.display(),
                process::last_log_line(&n.log)
            );
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every node has reached the highest height any node reported at the first poll
/// and checks that they all hold the same block there (blocks keep coming, so "same height at
/// the same instant" is not a condition to wait for). Returns that height.
pub fn wait_same_height(m: &Manifest, deadline: Instant) -> Result<u64> {
    let agent = http::agent();
    let mut target: Option<u64> = None;
    loop {
        let seen: Vec<Option<u64>> = m
            .nodes
            .iter()
            .map(|n| http::health(&agent, &n.url).ok().map(|h| h.height))
            .collect();
        if target.is_none() && seen.iter().all(Option::is_some) {
            target = seen.iter().flatten().max().copied();
        }
        if let Some(t) = target {
            if seen.iter().all(|h| h.is_some_and(|h| h >= t)) {
                if t == 0 {
                    return Ok(0);
                }
                let hashes: Vec<(String, Option<String>)> = m
                    .nodes
                    .iter()
                    .map(|n| (n.org.clone(), http::block_hash(&agent, &n.url, t)))
                    .collect();
                if hashes.iter().all(|h| h.1.is_some() && h.1 == hashes[0].1) {
                    return Ok(t);
                }
                if hashes.iter().all(|h| h.1.is_some()) {
                    let desc: Vec<String> = hashes
                        .iter()
                        .map(|(o, h)| format!("{o}={}", short(h.as_deref())))
                        .collect();
                    bail!(
                        "nodes hold different blocks at height {t}: {}",
                        desc.join(" ")
                    );
                }
            }
        }
        if Instant::now() > deadline {
            let desc: Vec<String> = m
                .nodes
                .iter()
                .zip(&seen)
                .map(|(n, h)| {
                    format!(
                        "{}={}",
                        n.org,
                        h.map(|h| h.to_string()).unwrap_or_else(|| "down".into())
                    )
                })
                .collect();
            bail!(
                "nodes did not all reach height {} in time: {}",
                target.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                desc.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// First 8 hex characters, or `-`.
pub fn short(h: Option<&str>) -> String {
    h.map(|s| s.chars().take(8).collect())
        .unwrap_or_else(|| "-".into())
}

/// Registers the keyed firms (signed by gz-credit) and publishes their penalty records through
/// gz-credit's node; retries unanswered or 5xx writes until `deadline`. Returns entries written.
pub fn seed(m: &Manifest, deadline: Instant, verbose: bool) -> Result<usize> {
    let data = m
        .data_node()
        .ok_or_else(|| anyhow!("this testnet has no {DATA_ORG} node to seed through"))?;
    let genesis = Genesis::from_json(
        &std::fs::read(&m.genesis).with_context(|| format!("reading {}", m.genesis.display()))?,
    )?;
    let chain = genesis.chain_id()?;
    let key = read_key(&m.org_key(DATA_ORG))?;
    let tag_key = xinyi_node::dev::read_firm_key(&m.keys.join("firm.key"))?;
    let mut kinds = Vec::new();
    for f in &m.firms {
        let firm = Uscc::parse(&f.uscc).map_err(|e| anyhow!("{}: {e}", f.uscc))?;
        let fk = read_key(&f.key_file)?;
        kinds.push(EntryKind::FirmRegistered {
            firm: tag_key.tag(&firm),
            key: fk.public(),
        });
    }
    let pf = penalties_file(m);
    if pf.exists() {
        let recs: Vec<CreditRecord> = serde_json::from_str(&std::fs::read_to_string(&pf)?)
            .with_context(|| format!("{}", pf.display()))?;
        kinds.extend(recs.into_iter().map(EntryKind::CreditRecordPublished));
    }
    say(
        verbose,
        &format!("  seeding: {} entries signed by {DATA_ORG}", kinds.len()),
    );
    let n = kinds.len();
    let url = data.url.clone();
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = kinds
            .into_iter()
            .map(|k| {
                let (key, url) = (&key, &url);
                s.spawn(move || write_until(&chain, key, url, k, deadline))
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("seeding thread panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(n)
}

/// Signs `kind` as gz-credit with the node's clock and posts it until it commits (409
/// `state.already_exists` counts as done: a retry of a write that had committed).
pub(crate) fn write_until(
    chain: &Digest,
    key: &KeyPair,
    url: &str,
    kind: EntryKind,
    deadline: Instant,
) -> Result<()> {
    let agent = http::agent();
    let mut last = String::new();
    while Instant::now() < deadline {
        let time = match http::health(&agent, url) {
            Ok(h) if h.time_ms > 0 => h.time_ms,
            _ => now_ms(),
        };
        let e = Entry::sign(
            chain,
            EntryBody {
                author: Author::Org(OrgId::new(DATA_ORG)?),
                time,
                nonce: rand::random(),
                kind: kind.clone(),
            },
            key,
        )?;
        match http::post_entry(&agent, url, &e.bytes) {
            Ok(_) => return Ok(()),
            Err(WriteError::Status {
                status: 409, code, ..
            }) if code == "state.already_exists" => return Ok(()),
            Err(e) if e.retryable() => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => bail!("seeding through {url}: {e}"),
        }
    }
    bail!("seeding through {url} did not commit in time; last answer: {last}")
}

/// One line of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Organisation.
    pub org: String,
    /// validator | follower (from the manifest).
    pub role: String,
    /// Role the node reports, if it does.
    pub reported_role: Option<String>,
    /// API URL.
    pub url: String,
    /// Recorded pid.
    pub pid: Option<u32>,
    /// running | stopped | dead.
    pub process: String,
    /// Whether /health answered.
    pub healthy: bool,
    /// Height.
    pub height: Option<u64>,
    /// Head hash (full).
    pub head: Option<String>,
    /// Connected peers.
    pub peers_connected: Option<usize>,
    /// Known peers.
    pub peers_total: Option<usize>,
}

/// `status`.
pub fn status(dir: &Path) -> Result<Vec<NodeStatus>> {
    let m = Manifest::load(dir)?;
    let agent = http::agent_short();
    Ok(m.nodes
        .iter()
        .map(|n| {
            let ps = n.pid.map(process::state).unwrap_or(ProcState::Dead);
            let h: Option<HealthInfo> = if ps == ProcState::Running {
                http::health(&agent, &n.url).ok()
            } else {
                None
            };
            let head = h.as_ref().and_then(|h| http::head(&agent, &n.url, h));
            let pc = h.as_ref().and_then(HealthInfo::peer_counts);
            NodeStatus {
                org: n.org.clone(),
                role: n.role.name().into(),
                reported_role: h.as_ref().and_then(|h| h.role.clone()),
                url: n.url.clone(),
                pid: n.pid,
                process: match ps {
                    ProcState::Running => "running",
                    ProcState::Stopped => "stopped",
                    ProcState::Dead => "dead",
                }
                .into(),
                healthy: h.as_ref().is_some_and(|h| h.status == "ok"),
                height: h.as_ref().map(|h| h.height),
                head,
                peers_connected: pc.map(|p| p.0),
                peers_total: pc.map(|p| p.1),
            }
        })
        .collect())
}

/// `status` as a table.
pub fn status_table(rows: &[NodeStatus]) -> String {
    let mut s = format!(
        "{:<14} {:<10} {:<8} {:<8} {:<24} {:>7} {:<9} {}\n",
        "ORG", "ROLE", "PID", "PROCESS", "URL", "HEIGHT", "HEAD", "PEERS"
    );
    for r in rows {
        s += &format!(
            "{:<14} {:<10} {:<8} {:<8} {:<24} {:>7} {:<9} {}\n",
            r.org,
            r.reported_role.as_deref().unwrap_or(&r.role),
            r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            if r.process == "running" && !r.healthy {
                "no-api"
            } else {
                &r.process
            },
            r.url,
            r.height
                .map(|h| h.to_string())
                .unwrap_or_else(|| "-".into()),
            short(r.head.as_deref()),
            match (r.peers_connected, r.peers_total) {
                (Some(c), Some(t)) => format!("{c}/{t}"),
                _ => "-".into(),
            }
        );
    }
    s
}

/// Sends SIGTERM to every live node, waits up to `grace`, then SIGKILLs stragglers. Returns
/// (terminated, killed).
pub fn stop_all(m: &Manifest, grace: Duration) -> Result<(usize, usize)> {
    let live = live_nodes(m);
    for (_, pid) in &live {
        // A stopped process must be continued to act on SIGTERM.
        if process::state(*pid) == ProcState::Stopped {
            let _ = process::signal(*pid, Sig::Cont);
        }
        let _ = process::signal(*pid, Sig::Term);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && live.iter().any(|(_, p)| process::alive(Some(*p))) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut killed = 0;
    for (_, pid) in &live {
        if process::alive(Some(*pid)) {
            let _ = process::signal(*pid, Sig::Kill);
            killed += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && live.iter().any(|(_, p)| process::alive(Some(*p))) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some((org, pid)) = live.iter().find(|(_, p)| process::alive(Some(*p))) {
        bail!("{org} (pid {pid}) survived SIGKILL");
    }
    Ok((live.len() - killed, killed))
}

/// `down`: stops every node; keeps all data.
pub fn down(dir: &Path, grace: Duration) -> Result<(usize, usize)> {
    let m = Manifest::load(dir)?;
    let r = stop_all(&m, grace);
    super::anchorchain::down(dir)?;
    r
}

/// `kill ORG --signal S`.
pub fn kill(dir: &Path, org: &str, sig: Sig) -> Result<u32> {
    let m = Manifest::load(dir)?;
    let n = m.node(org)?;
    let pid = n
        .pid
        .filter(|p| process::alive(Some(*p)))
        .ok_or_else(|| anyhow!("{org} is not running"))?;
    process::signal(pid, sig)?;
    if matches!(sig, Sig::Kill | Sig::Term) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && process::alive(Some(pid)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(pid)
}

/// `start ORG`: starts a node that is not running and waits until it answers /health.
pub fn start(dir: &Path, org: &str, node_bin: Option<&Path>, timeout: Duration) -> Result<u32> {
    let mut m = Manifest::load(dir)?;
    if let Some(b) = node_bin {
        m.node_bin = b.to_path_buf();
    }
    let n = m.node(org)?.clone();
    if let Some(p) = n.pid.filter(|p| process::alive(Some(*p))) {
        bail!("{org} is already running (pid {p}); `kill {org}` it first");
    }
    check_ports(&m, &[&n])?;
    let child = process::spawn_node(&m.node_bin, &n.config, &n.log)?;
    let pid = child.id();
    m.node_mut(org)?.pid = Some(pid);
    m.save()?;
    let mut children = vec![(org.to_string(), child)];
    let one = Manifest {
        nodes: vec![m.node(org)?.clone()],
        ..m.clone()
    };
    wait_all_healthy(&one, &mut children, Instant::now() + timeout)?;
    Ok(pid)
}
