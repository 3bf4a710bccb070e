//! EVM anchoring end to end (`specs/anchoring.md`) against a real local EVM chain: ganache
//! 7.9.2 from `tests/evm/node_modules` (installed by `tests/run` with `npm ci`), started by each
//! test on 127.0.0.1, the real `xinyi-node --dev` anchoring to it and the real `xinyi` client
//! reading the anchors back. A missing ganache or solc fails the test with how to install it.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use xinyi_tests::cli::{fails, ok, ok_json, text};
use xinyi_tests::{binaries, free_port, DevNode};

/// ganache --wallet.deterministic accounts 0-2 (1000 ETH each) and their addresses.
const DEPLOYER: &str = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
const ANCHORER: &str = "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1";
const ANCHORER_ADDR: &str = "0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0";
const FORGER: &str = "0x6370fd033278c143179d81c5526140625662b8daa446c22ee2d73db3707e620c";
const FORGER_ADDR: &str = "0x22d491Bde2303f2f43325b2108D26f1eAbA1e32b";

fn evm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("evm")
}

fn ganache_bin() -> PathBuf {
    let p = evm_dir().join("node_modules/.bin/ganache");
    assert!(
        p.exists(),
        "{} is missing: install the pinned EVM tools with `npm ci --prefix tests/evm` (tests/run does)",
        p.display()
    );
    p
}

/// A ganache process on 127.0.0.1 (killed on drop).
struct Ganache {
    child: Option<Child>,
    port: u16,
    db: PathBuf,
    block_time: u64,
    log: PathBuf,
}

impl Ganache {
    fn start(dir: &Path, block_time: u64) -> Ganache {
        let mut g = Ganache {
            child: None,
            port: free_port(),
            db: dir.join("evm-db"),
            block_time,
            log: dir.join("ganache.log"),
        };
        std::fs::create_dir_all(&g.db).expect("ganache db dir");
        g.restart();
        g
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts it on the same port and database.
    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("ganache log");
        let mut cmd = Command::new("node");
        cmd.arg(ganache_bin())
            .args(["--server.host", "127.0.0.1", "--server.port"])
            .arg(self.port.to_string())
            .args(["--chain.chainId", "1337", "--wallet.deterministic"])
            .arg("--database.dbPath")
            .arg(&self.db);
        if self.block_time > 0 {
            cmd.args(["--miner.blockTime", &self.block_time.to_string()]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn node (Node.js) for ganache");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while rpc(&self.url(), "eth_chainId", json!([])).is_none() {
            assert!(
                Instant::now() < deadline,
                "ganache did not answer; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM (ganache closes its database), SIGKILL after 20 s.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Ganache {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A JSON-RPC call's result (None on any failure).
fn rpc(url: &str, method: &str, params: Value) -> Option<Value> {
    let v: Value = ureq::post(url)
        .timeout(Duration::from_secs(10))
        .send_json(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .ok()?
        .into_json()
        .ok()?;
    v.get("result").cloned()
}

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("quantity").trim_start_matches("0x"), 16)
        .expect("hex quantity")
}

fn nonce(url: &str, addr: &str, tag: &str) -> u64 {
    quantity(&rpc(url, "eth_getTransactionCount", json!([addr, tag])).expect("nonce"))
}

fn key_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.join(format!("{name}.evm.key"));
    std::fs::write(&p, format!("{secret}\n")).expect("write key");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

fn node_cmd(args: &[&str]) -> Output {
    Command::new(&binaries().node)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run xinyi-node")
}

/// Deploys the contract allowing the anchorer and the forger; its address.
fn deploy(g: &Ganache, dir: &Path) -> String {
    let k = key_file(dir, "deployer", DEPLOYER);
    let o = node_cmd(&[
        "anchor",
        "deploy",
        "--rpc",
        &g.url(),
        "--key",
        k.to_str().expect("path"),
        "--allow",
        ANCHORER_ADDR,
        "--allow",
        FORGER_ADDR,
    ]);
    let out = ok(&o);
    assert!(out.contains("[anchor.evm]"), "{out}");
    let addr = out.lines().next().expect("address line").trim().to_string();
    assert!(addr.starts_with("0x") && addr.len() == 42, "{out}");
    addr
}

fn anchoring_args(g: &Ganache, contract: &str, key: &Path) -> Vec<String> {
    [
        "--anchor-rpc",
        &g.url(),
        "--anchor-contract",
        contract,
        "--anchor-key",
        key.to_str().expect("path"),
        "--anchor-interval-ms",
        "300",
        "--anchor-poll-ms",
        "200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_node(dir: &Path, log: &str, extra: &[String]) -> DevNode {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    DevNode::start_with(
        &dir.join("data"),
        &dir.join(log),
        Duration::from_secs(60),
        &extra,
    )
}

/// One firm commitment (a ledger write that waits for its commit).
fn write_entry(node: &DevNode, i: usize) {
    let firm = xinyi_ledger::sample::sample_firm(1)
        .expect("firm")
        .to_string();
    ok(&node.xinyi(
        Some(&format!("firm-{firm}")),
        &[
            "--json",
            "commitment",
            "make",
            "--agency",
            "gz-credit",
            "--text",
            &format!("commitment {i}"),
            "--due-days",
            "30",
        ],
    ));
}

/// `xinyi anchor verify --rpc URL --json` until it passes with at least `min_receipts` receipts
/// checked and at least `min_size` anchored; its answer.
fn wait_verified(node: &DevNode, g: &Ganache, min_receipts: u64, min_size: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = node.xinyi(
            Some("auditor"),
            &["--json", "anchor", "verify", "--rpc", &g.url()],
        );
        if o.status.success() {
            let v: Value = serde_json::from_slice(&o.stdout).expect("json");
            let last = v["anchors"]["anchors"]
                .as_array()
                .and_then(|a| a.last())
                .map_or(0, |a| a["size"].as_u64().unwrap_or(0));
            if v["receipts_checked"].as_u64().unwrap_or(0) >= min_receipts && last >= min_size {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "anchoring did not reach {min_receipts} receipts / size {min_size}; last: {} {}\nnode log:\n{}",
            text(&o.stdout),
            text(&o.stderr),
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The ledger's anchor receipts (sizes) from `audit verify --json`.
fn receipt_sizes(node: &DevNode) -> Vec<u64> {
    let v = ok_json(&node.xinyi(Some("auditor"), &["--json", "audit", "verify"]));
    v["ledger"]["anchors"]
        .as_array()
        .expect("anchors")
        .iter()
        .map(|a| a["size"].as_u64().expect("size"))
        .collect()
}

fn metric(node: &DevNode, name: &str) -> u64 {
    let body = ureq::get(&format!("{}/metrics", node.url))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{body}"))
}

fn assert_no_double_anchor(node: &DevNode, g: &Ganache, chain: &Value) {
    let anchors = chain["anchors"]["anchors"].as_array().expect("anchors");
    let sizes: Vec<u64> = anchors
        .iter()
        .map(|a| a["size"].as_u64().expect("size"))
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "sizes grow: {sizes:?}"
    );
    let mut receipts = receipt_sizes(node);
    let n = receipts.len();
    receipts.sort_unstable();
    receipts.dedup();
    assert_eq!(receipts.len(), n, "one receipt per anchored size");
    for r in &receipts {
        assert!(
            sizes.contains(r),
            "receipt of size {r} has an anchor on the chain {sizes:?}"
        );
    }
    // Every transaction of the anchoring account is one anchor: nothing was sent twice.
    let ours = anchors
        .iter()
        .filter(|a| {
            a["sender"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(ANCHORER_ADDR))
        })
        .count() as u64;
    assert_eq!(
        nonce(&g.url(), ANCHORER_ADDR, "latest"),
        ours,
        "no wasted anchoring tx"
    );
}

#[test]
fn committed_artifact_matches_the_pinned_compiler() {
    let solc = evm_dir().join("node_modules/solc");
    assert!(
        solc.exists(),
        "{} is missing: `npm ci --prefix tests/evm` (tests/run does)",
        solc.display()
    );
    let o = Command::new("node")
        .arg(evm_dir().join("compile.js"))
        .arg("--check")
        .output()
        .expect("run node (Node.js)");
    let out = ok(&o);
    assert!(out.contains("matches solc 0.8.26"), "{out}");
}

#[test]
fn anchors_receipts_and_forged_root() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let g = Ganache::start(tmp.path(), 0);
    let contract = deploy(&g, tmp.path());
    let key = key_file(tmp.path(), "anchorer", ANCHORER);
    let mut node = start_node(tmp.path(), "node.log", &anchoring_args(&g, &contract, &key));

    // (a) anchor → receipt on the ledger → client verification passes.
    let v = wait_verified(&node, &g, 1, 1);
    assert_eq!(
        v["anchors"]["contract"].as_str().map(str::to_lowercase),
        Some(contract.to_lowercase())
    );
    let o = node.xinyi(Some("auditor"), &["audit", "verify", "--rpc", &g.url()]);
    let out = ok(&o);
    assert!(out.contains("agree with the chain"), "{out}");
    assert!(out.contains("evm:1337"), "{out}");
    assert!(metric(&node, "xinyi_anchor_size") >= 1);

    // The log grows; it is anchored too.
    write_entry(&node, 1);
    let h = node.api().health().expect("health");
    let v = wait_verified(&node, &g, 2, h.log_size);
    assert_no_double_anchor(&node, &g, &v);
    let chain_id = h.chain_id.to_hex();
    node.kill9();

    // (b) A forged root, written by an allowed key at a size the ledger has (the node restarted
    // without anchoring, so nothing races the forger), is detected with its stable code.
    let node = start_node(tmp.path(), "node2.log", &[]);
    write_entry(&node, 2);
    let size = node.api().health().expect("health").log_size;
    let fk = key_file(tmp.path(), "forger", FORGER);
    ok(&node_cmd(&[
        "anchor",
        "send",
        "--rpc",
        &g.url(),
        "--key",
        fk.to_str().expect("path"),
        "--contract",
        &contract,
        "--chain-id",
        &chain_id,
        "--size",
        &size.to_string(),
        "--root",
        &"ab".repeat(32),
    ]));
    // `xinyi anchor verify --rpc URL --contract ADDR` (unsigned: anchors are public).
    let verify = |rpc: &str, contract: &str| {
        node.xinyi(
            None,
            &["anchor", "verify", "--rpc", rpc, "--contract", contract],
        )
    };
    let e = fails(&verify(&g.url(), &contract), "anchor.root_mismatch");
    assert!(e.contains(&format!("size {size}")), "{e}");

    // Bad input: one readable line each.
    fails(
        &verify("http://127.0.0.1:9", &contract),
        "anchor.rpc_unreachable",
    );
    fails(&verify(&g.url(), ANCHORER_ADDR), "anchor.no_code");
}

#[test]
fn bad_keys_and_unfunded_accounts() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let g = Ganache::start(tmp.path(), 0);
    // A key others may read is refused, by deploy and by the node.
    let k = key_file(tmp.path(), "open", DEPLOYER);
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = node_cmd(&[
        "anchor",
        "deploy",
        "--rpc",
        &g.url(),
        "--key",
        k.to_str().expect("p"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("anchor.key") && e.contains("chmod 600"), "{e}");
    // An unfunded key cannot deploy.
    let poor = tmp.path().join("poor.key");
    let o = node_cmd(&["anchor", "keygen", "--out", poor.to_str().expect("p")]);
    let addr = ok(&o).trim().to_string();
    assert_eq!(
        std::fs::metadata(&poor).expect("key").permissions().mode() & 0o777,
        0o600
    );
    let o = node_cmd(&[
        "anchor",
        "deploy",
        "--rpc",
        &g.url(),
        "--key",
        poor.to_str().expect("p"),
    ]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("anchor.unfunded") && e.contains(&addr), "{e}");
    // A wrong RPC URL: one line.
    let good = key_file(tmp.path(), "deployer", DEPLOYER);
    let o = node_cmd(&[
        "anchor",
        "deploy",
        "--rpc",
        "http://127.0.0.1:9",
        "--key",
        good.to_str().expect("p"),
    ]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.lines().count() == 1 && e.contains("anchor.rpc_unreachable"),
        "{e}"
    );

    // A node anchoring to an address without code keeps committing and counts failures.
    let nk = key_file(tmp.path(), "anchorer", ANCHORER);
    let node = start_node(
        tmp.path(),
        "node.log",
        &anchoring_args(&g, FORGER_ADDR, &nk),
    );
    write_entry(&node, 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&node, "xinyi_anchor_failures_total") < 2 {
        assert!(
            Instant::now() < deadline,
            "no failures counted:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    write_entry(&node, 2);
    assert!(
        node.log_text().contains("anchor.no_code"),
        "{}",
        node.log_text()
    );
    assert_eq!(nonce(&g.url(), ANCHORER_ADDR, "latest"), 0);
}

#[test]
fn chain_down_then_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut g = Ganache::start(tmp.path(), 0);
    let contract = deploy(&g, tmp.path());
    let key = key_file(tmp.path(), "anchorer", ANCHORER);
    let node = start_node(tmp.path(), "node.log", &anchoring_args(&g, &contract, &key));
    wait_verified(&node, &g, 1, 1);

    // (c) The chain goes down: the ledger keeps committing, failures are counted.
    g.stop();
    let failures = metric(&node, "xinyi_anchor_failures_total");
    let before = node.api().health().expect("health").height;
    for i in 0..3 {
        write_entry(&node, i);
    }
    let after = node.api().health().expect("health");
    assert!(after.height >= before + 3, "the ledger kept committing");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&node, "xinyi_anchor_failures_total") <= failures {
        assert!(
            Instant::now() < deadline,
            "no failure counted while the chain is down"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        metric(&node, "xinyi_anchor_lag_entries") > 0
            || metric(&node, "xinyi_anchor_size") < after.log_size
    );

    // Back on the same port and database: anchoring resumes up to the new entries.
    g.restart();
    let v = wait_verified(&node, &g, 2, after.log_size);
    assert_no_double_anchor(&node, &g, &v);
}

#[test]
fn node_restart_with_a_pending_anchor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Blocks every 4 s: an anchor stays pending for a while.
    let g = Ganache::start(tmp.path(), 4);
    let contract = deploy(&g, tmp.path());
    let key = key_file(tmp.path(), "anchorer", ANCHORER);
    let args = anchoring_args(&g, &contract, &key);
    let mut node = start_node(tmp.path(), "node.log", &args);

    // (d) Kill the node while its anchor is in the chain's pool: the node remembers the
    // transaction (DATA/anchor-evm.json) before sending it; wait until it is sent, not mined.
    let state = tmp.path().join("data").join("anchor-evm.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let tx = loop {
        let sent = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["tx"]["hash"].as_str().map(str::to_string));
        if let Some(h) = sent {
            let known = rpc(&g.url(), "eth_getTransactionByHash", json!([h]));
            let mined = rpc(&g.url(), "eth_getTransactionReceipt", json!([h]));
            if known.is_some_and(|k| !k.is_null()) && mined.is_some_and(|m| m.is_null()) {
                break h;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no anchor pending:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    node.kill9();
    let node = start_node(tmp.path(), "node2.log", &args);
    let v = wait_verified(&node, &g, 1, 1);
    assert_no_double_anchor(&node, &g, &v);
    // The transaction sent before the restart is the first anchor; no second was sent for it.
    let first = v["anchors"]["anchors"][0]["tx"]
        .as_str()
        .expect("tx")
        .to_string();
    assert_eq!(first.to_lowercase(), tx.to_lowercase());
}
