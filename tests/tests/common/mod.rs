//! Shared by the real-process tests (`testnet.rs`, `rotation.rs`, `ui.rs`, ...): builds `xinyi-testnet`
//! beside `xinyi-node` and `xinyi` (through `xinyi_tests::binaries`, the helper acceptance.rs
//! uses), runs it, a guard that takes the testnet down when a test ends — also when it fails —
//! and [`NodeProcess`] for a node started outside the testnet.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Builds `xinyi-testnet` in the same profile and target dir as the running test (after
/// `xinyi-node` and `xinyi`, so all three sit in `<target>/<profile>/`) and returns its path.
pub fn testnet_bin() -> &'static Path {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| xinyi_tests::workspace_bin("xinyi-testnet", "xinyi-testnet"))
}

/// Lossy text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// Runs `xinyi-testnet ARGS`.
pub fn xinyi_testnet(args: &[&str]) -> Output {
    Command::new(testnet_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run xinyi-testnet")
}

/// Exit 0, returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "xinyi-testnet failed\nstdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// An HTTP agent with short timeouts (a frozen node must not hang a test).
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(20))
        .build()
}

/// GET URL → JSON (None on any failure).
pub fn get_json(agent: &ureq::Agent, url: &str) -> Option<Value> {
    agent.get(url).call().ok()?.into_json().ok()
}

/// A running testnet in a temporary directory, taken down (and any straggler SIGKILLed) on drop.
pub struct Testnet {
    /// Keeps the directory alive.
    pub tmp: tempfile::TempDir,
    /// The testnet directory.
    pub dir: PathBuf,
    /// The manifest `up --json` printed.
    pub manifest: Value,
}

impl Testnet {
    /// `xinyi --node URL --genesis G --key DIR/keys/<key>.key ARGS` (the real client binary),
    /// with its checkpoint memory kept beside the testnet, one file per key.
    pub fn xinyi(&self, url: &str, key: &str, args: &[&str]) -> Output {
        Command::new(&xinyi_tests::binaries().client)
            .arg("--node")
            .arg(url)
            .arg("--genesis")
            .arg(self.genesis())
            .arg("--key")
            .arg(self.key(key))
            .args(args)
            .env_remove("XINYI_KEY")
            .env_remove("XINYI_NODE")
            .env_remove("XINYI_GENESIS")
            .env(
                "XINYI_STATE",
                self.dir.join(format!("client-state-{key}.json")),
            )
            .stdin(Stdio::null())
            .output()
            .expect("run xinyi")
    }

    /// `xinyi-testnet up --validators V --followers F --base-port P --json` in a new directory.
    pub fn up(validators: usize, followers: usize, base_port: u16) -> Testnet {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("tn");
        let mut tn = Testnet {
            tmp,
            dir: dir.clone(),
            manifest: Value::Null,
        };
        let o = xinyi_testnet(&[
            "up",
            "--validators",
            &validators.to_string(),
            "--followers",
            &followers.to_string(),
            "--base-port",
            &base_port.to_string(),
            "--dir",
            dir.to_str().expect("utf-8 path"),
            "--json",
        ]);
        if o.status.code() != Some(0) {
            let logs = tn.logs();
            panic!(
                "xinyi-testnet up failed\nstderr: {}\n{logs}",
                text(&o.stderr)
            );
        }
        let v: Value = serde_json::from_slice(&o.stdout).expect("up --json prints JSON");
        tn.manifest = v["manifest"].clone();
        tn
    }

    /// The `[p2p.peers]` lines (`"org" = "host:port"`) of every node in the manifest: what an
    /// extra node started beside the testnet puts in its config to dial the members.
    pub fn peers_toml(&self) -> Vec<String> {
        self.manifest["nodes"]
            .as_array()
            .expect("manifest nodes")
            .iter()
            .map(|n| {
                format!(
                    "\"{}\" = \"{}\"",
                    n["org"].as_str().expect("org"),
                    n["p2p"].as_str().expect("p2p address")
                )
            })
            .collect()
    }

    /// `xinyi-testnet ARGS --dir DIR`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut a: Vec<&str> = args.to_vec();
        a.push("--dir");
        a.push(self.dir.to_str().expect("utf-8 path"));
        xinyi_testnet(&a)
    }

    /// Nodes of the manifest: (org, url).
    pub fn nodes(&self) -> Vec<(String, String)> {
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.join("testnet.json")).expect("manifest"),
        )
        .expect("manifest JSON");
        m["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                (
                    n["org"].as_str().expect("org").to_string(),
                    n["url"].as_str().expect("url").to_string(),
                )
            })
            .collect()
    }

    /// URL of `org`'s node.
    pub fn url(&self, org: &str) -> String {
        self.nodes()
            .into_iter()
            .find(|n| n.0 == org)
            .unwrap_or_else(|| panic!("no node {org}"))
            .1
    }

    /// `DIR/keys/<name>.key`.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.key"))
    }

    /// `DIR/genesis.json`.
    pub fn genesis(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }

    /// The last lines of every node's log (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            dirs.sort();
            for d in dirs {
                let log = d.join("node.log");
                if let Ok(t) = std::fs::read_to_string(&log) {
                    let lines: Vec<&str> = t.lines().collect();
                    let from = lines.len().saturating_sub(15);
                    s += &format!(
                        "--- {} (last 15 lines)\n{}\n",
                        log.display(),
                        lines[from..].join("\n")
                    );
                }
            }
        }
        s
    }

    /// `status --json`.
    pub fn status(&self) -> Vec<Value> {
        let o = self.run(&["status", "--json"]);
        serde_json::from_str(&ok(&o)).expect("status --json prints JSON")
    }

    /// Pids of the manifest.
    fn pids(&self) -> Vec<u32> {
        let Ok(t) = std::fs::read_to_string(self.dir.join("testnet.json")) else {
            return vec![];
        };
        let m: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
        m["nodes"]
            .as_array()
            .map(|ns| {
                ns.iter()
                    .filter_map(|n| n["pid"].as_u64().map(|p| p as u32))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--grace", "5"]);
        // If `down` itself failed, no node may outlive the test.
        for pid in self.pids() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if text(&cmdline).contains("xinyi-node") {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
            }
        }
    }
}

/// (height, head) of a node, head from /health's `head` or the head block's header hash.
pub fn height_head(agent: &ureq::Agent, url: &str) -> Option<(u64, Option<String>)> {
    let h = get_json(agent, &format!("{url}/health"))?;
    let height = h["height"].as_u64()?;
    let head = match h.get("head").and_then(Value::as_str) {
        Some(x) => Some(x.to_string()),
        None if height == 0 => None,
        None => get_json(agent, &format!("{url}/v1/blocks/{height}"))
            .and_then(|b| b["header_hash"].as_str().map(str::to_string)),
    };
    Some((height, head))
}

/// `p2p.stats.refused_connections` of the node at `url` (0 when it does not answer).
pub fn refused_connections(agent: &ureq::Agent, url: &str) -> u64 {
    get_json(agent, &format!("{url}/health"))
        .and_then(|h| h["p2p"]["stats"]["refused_connections"].as_u64())
        .unwrap_or(0)
}

/// Header hash of block `h` at `url`.
pub fn block_hash(agent: &ureq::Agent, url: &str, h: u64) -> Option<String> {
    get_json(agent, &format!("{url}/v1/blocks/{h}"))
        .and_then(|b| b["header_hash"].as_str().map(str::to_string))
}

/// Waits (at most `timeout`) until every URL has reached the highest height any of them reported
/// at the first poll, then asserts they hold the same block there; returns (height, hash).
/// (Blocks keep coming, so the nodes are compared at a height all of them have.)
pub fn converge(urls: &[String], timeout: Duration) -> (u64, String) {
    let agent = agent();
    let deadline = Instant::now() + timeout;
    let mut target = None;
    loop {
        let seen: Vec<Option<u64>> = urls
            .iter()
            .map(|u| height_head(&agent, u).map(|x| x.0))
            .collect();
        if target.is_none() && seen.iter().all(Option::is_some) {
            target = seen.iter().flatten().max().copied();
        }
        if let Some(t) = target {
            if seen.iter().all(|h| h.is_some_and(|h| h >= t)) {
                let hashes: Vec<Option<String>> =
                    urls.iter().map(|u| block_hash(&agent, u, t)).collect();
                if hashes.iter().all(Option::is_some) {
                    assert!(
                        hashes.iter().all(|h| h == &hashes[0]),
                        "divergence at height {t}: {urls:?} {hashes:?}"
                    );
                    return (t, hashes[0].clone().unwrap_or_default());
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not all reach height {target:?} within {timeout:?}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `xinyi-node start --config DIR/xinyi.toml` started outside the testnet's manifest (an
/// intruder, a node on a retired key), logging to `DIR/node.log`; killed and reaped on drop.
pub struct NodeProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl NodeProcess {
    pub fn start(dir: &Path, what: &str) -> NodeProcess {
        let log = dir.join("node.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(&xinyi_tests::binaries().node)
            .args(["start", "--config"])
            .arg(dir.join("xinyi.toml"))
            .env_remove("XINYI_KEY_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        NodeProcess { child, log }
    }
}

/// The text of a log file ("" if unreadable).
pub fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
