//! `xinyi-testnet up --anchor-chain`: a local EVM chain for the testnet to anchor to
//! (`specs/anchoring.md` §3). Starts ganache (the pinned one in `tests/evm/node_modules`) on
//! 127.0.0.1 as a detached process with its database and log in `DIR/evm/`, deploys the anchor
//! contract from a funded dev account on first start, and adds `[anchor.evm]` to the config of
//! every node whose organisation may anchor (agencies and auditors), each with its own funded
//! dev key. State is in `DIR/evm/chain.json`; `down` stops the chain. A test fixture, not a
//! production chain: the dev keys are ganache's public deterministic ones.

use super::manifest::Manifest;
use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xinyi_ledger::types::Role;
use xinyi_node::anchor_evm;

/// ganache `--wallet.deterministic` private keys (1000 ETH each): 0 deploys, 1.. anchor.
const DEV_KEYS: [&str; 10] = [
    "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d",
    "6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1",
    "6370fd033278c143179d81c5526140625662b8daa446c22ee2d73db3707e620c",
    "646f1ce2fdad0e6deeeb5c7e8e5543bdde65e86029e2fd9fc169899c440a7913",
    "add53f9a7e588d003326d1cbf9e4a43c061aadd9bc938c843a79e7b4fd2ad743",
    "395df67f0c2d2d9fe1ad08d1bc8b6627011959b79c53d7dd6a3536a33ab8a4fd",
    "e485d098507f54e7733a205420dfddbe58db035fa577fc294ebd14db90767a52",
    "a453611d9419d0e56f499079478fd72c37b251a94bfde4d19872c44cf65386e3",
    "829e924fdf021ba3dbbc4225edfece9aca04b929d6e75613329ca6f1d31c0bb4",
    "b0057716d5917badaf911b193b12b910811c1497b5bada8d7711f758981c3773",
];

/// EIP-155 chain id of the local chain.
pub const CHAIN_ID: u64 = 1337;

/// `DIR/evm/chain.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainState {
    /// JSON-RPC URL.
    pub rpc: String,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Anchor contract address.
    pub contract: String,
    /// Process id of the last start.
    pub pid: Option<u32>,
    /// Anchoring nodes and their accounts.
    pub anchorers: Vec<(String, String)>,
}

fn evm_dir(dir: &Path) -> PathBuf {
    dir.join("evm")
}

fn state_path(dir: &Path) -> PathBuf {
    evm_dir(dir).join("chain.json")
}

/// The ganache launcher: `XINYI_GANACHE`, else the repository's `tests/evm/node_modules`.
pub fn ganache_bin() -> Result<PathBuf> {
    let p = match std::env::var_os("XINYI_GANACHE") {
        Some(p) => PathBuf::from(p),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/evm/node_modules/.bin/ganache")
        }
    };
    if !p.exists() {
        bail!(
            "ganache not found at {}: run `npm ci --prefix tests/evm` in the repository (or set XINYI_GANACHE)",
            p.display()
        );
    }
    Ok(p)
}

fn load(dir: &Path) -> Result<Option<ChainState>> {
    match std::fs::read(state_path(dir)) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).context("DIR/evm/chain.json")?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("reading DIR/evm/chain.json"),
    }
}

fn save(dir: &Path, s: &ChainState) -> Result<()> {
    std::fs::write(state_path(dir), serde_json::to_vec_pretty(s)?)
        .context("writing DIR/evm/chain.json")
}

/// Whether `pid` is still our ganache (pids are reused).
fn alive(pid: Option<u32>) -> bool {
    pid.is_some_and(|p| {
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        !zombie && String::from_utf8_lossy(&cmd).contains("ganache")
    })
}

fn kill(pid: u32, sig: &str) -> Result<()> {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .context("running kill")?;
    if !st.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

fn spawn(dir: &Path, port: u16) -> Result<u32> {
    let ev = evm_dir(dir);
    std::fs::create_dir_all(ev.join("db"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ev.join("ganache.log"))?;
    let mut cmd = std::process::Command::new("node");
    cmd.arg(ganache_bin()?)
        .args(["--server.host", "127.0.0.1", "--server.port"])
        .arg(port.to_string())
        .args([
            "--chain.chainId",
            &CHAIN_ID.to_string(),
            "--wallet.deterministic",
        ])
        .arg("--database.dbPath")
        .arg(ev.join("db"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    let child = cmd
        .spawn()
        .context("starting ganache (needs Node.js `node`)")?;
    let pid = child.id();
    let rpc = anchor_evm::Rpc::new(&format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(90);
    while rpc.chain_id().is_err() {
        if Instant::now() > deadline {
            bail!(
                "ganache did not answer on port {port}; see {}",
                ev.join("ganache.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(pid)
}

fn write_key(path: &Path, hex: &str) -> Result<()> {
    if !path.exists() {
        xinyi_node::dev::write_secret(path, &format!("0x{hex}\n"))?;
    }
    Ok(())
}

/// Starts the chain (deploying and wiring configs the first time); before the nodes start.
pub fn up(dir: &Path, m: &Manifest, verbose: bool) -> Result<ChainState> {
    let ev = evm_dir(dir);
    std::fs::create_dir_all(&ev)?;
    if let Some(mut s) = load(dir)? {
        if !alive(s.pid) {
            s.pid = Some(spawn(dir, s.port)?);
            save(dir, &s)?;
        }
        return Ok(s);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let pid = spawn(dir, port)?;
    let rpc_url = format!("http://127.0.0.1:{port}");
    let rpc = anchor_evm::Rpc::new(&rpc_url);
    // Which nodes anchor: agencies and auditors (the ledger rules for anchor_receipt).
    let mut anchorers = Vec::new();
    for n in &m.nodes {
        let cfg: xinyi_node::config::Config = toml::from_str(
            &std::fs::read_to_string(&n.config).with_context(|| n.config.display().to_string())?,
        )?;
        let gpath = n.config.parent().unwrap_or(dir).join(&cfg.genesis);
        let g = xinyi_ledger::Genesis::from_json(&std::fs::read(&gpath)?)
            .map_err(|e| anyhow!("{}: {e}", gpath.display()))?;
        let role = g
            .orgs
            .iter()
            .find(|o| o.id.as_str() == n.org)
            .map(|o| o.role);
        if matches!(role, Some(Role::Agency | Role::Auditor)) {
            anchorers.push(n.clone());
        }
    }
    if anchorers.len() + 1 > DEV_KEYS.len() {
        bail!(
            "--anchor-chain supports at most {} anchoring nodes",
            DEV_KEYS.len() - 1
        );
    }
    let deployer_path = ev.join("deployer.key");
    write_key(&deployer_path, DEV_KEYS[0])?;
    let mut allowed = Vec::new();
    let mut rows = Vec::new();
    for (i, n) in anchorers.iter().enumerate() {
        let kp = ev.join(format!("{}.key", n.org));
        write_key(&kp, DEV_KEYS[i + 1])?;
        let a = anchor_evm::read_key(&kp)?.address();
        allowed.push(a);
        rows.push((n.org.clone(), a.to_string()));
    }
    let (contract, _) = anchor_evm::deploy(&rpc, &anchor_evm::read_key(&deployer_path)?, &allowed)?;
    for n in &anchorers {
        let text = std::fs::read_to_string(&n.config)?;
        if !text.contains("[anchor.evm]") {
            let kp = ev.join(format!("{}.key", n.org));
            let block = format!(
                "\n[anchor.evm]\nrpc = \"{rpc_url}\"\ncontract = \"{contract}\"\nkey = \"{}\"\ninterval_ms = 5000\nconfirmations = 1\n",
                kp.display()
            );
            std::fs::write(&n.config, text + &block)?;
        }
    }
    if verbose {
        eprintln!(
            "  EVM chain {rpc_url} (ganache, chain id {CHAIN_ID}, pid {pid}); anchor contract {contract}; anchoring: {}",
            rows.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let s = ChainState {
        rpc: rpc_url,
        port,
        contract: contract.to_string(),
        pid: Some(pid),
        anchorers: rows,
    };
    save(dir, &s)?;
    Ok(s)
}

/// Stops the chain if this testnet has one; whether it was running.
pub fn down(dir: &Path) -> Result<bool> {
    let Some(s) = load(dir)? else {
        return Ok(false);
    };
    let Some(pid) = s.pid.filter(|p| alive(Some(*p))) else {
        return Ok(false);
    };
    kill(pid, "-TERM")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && alive(Some(pid)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(Some(pid)) {
        kill(pid, "-KILL")?;
    }
    Ok(true)
}
