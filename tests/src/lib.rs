//! Helpers for the cross-crate end-to-end tests in `tests/tests/`: building and locating the
//! real `xinyi-node` and `xinyi` binaries, running a dev node as a child process (killed on
//! drop) and running the client against it.
//!
//! Nothing here fakes a node or a client: tests drive the same binaries a user runs. This is
//! not a test framework; it only has what the scenarios need.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use xinyi_client::api::Api;

/// Paths of the two binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `xinyi-node`.
    pub node: PathBuf,
    /// `xinyi`.
    pub client: PathBuf,
}

/// Builds `xinyi-node` and `xinyi` (same profile and target dir as the running test) once per
/// test process and returns their paths. Works from `cargo test --workspace` on a clean clone:
/// the test binary lives in `<target>/<profile>/deps/`, so the binaries are in `<target>/<profile>/`.
pub fn binaries() -> &'static Binaries {
    static B: OnceLock<Binaries> = OnceLock::new();
    B.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable in <target>/<profile>/deps")
            .to_path_buf();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&workspace).args([
            "build",
            "-p",
            "xinyi-node",
            "-p",
            "xinyi-client",
            "--bins",
        ]);
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build of the binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exe_name = |n: &str| profile_dir.join(format!("{n}{}", std::env::consts::EXE_SUFFIX));
        let b = Binaries {
            node: exe_name("xinyi-node"),
            client: exe_name("xinyi"),
        };
        assert!(b.node.exists(), "{} missing", b.node.display());
        assert!(b.client.exists(), "{} missing", b.client.display());
        b
    })
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `xinyi-node --dev` child process; killed (SIGKILL) and reaped on drop.
pub struct DevNode {
    child: Option<Child>,
    /// The node's data directory.
    pub dir: PathBuf,
    /// Base URL.
    pub url: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl DevNode {
    /// Starts a dev node on `dir` and waits (at most `timeout`) until `/health` answers.
    pub fn start(dir: &Path, log: &Path, timeout: Duration) -> DevNode {
        DevNode::start_with(dir, log, timeout, &[])
    }

    /// [`DevNode::start`] with further `xinyi-node` arguments (e.g. `--witness URL`).
    pub fn start_with(dir: &Path, log: &Path, timeout: Duration, extra: &[&str]) -> DevNode {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let logf = std::fs::File::create(log).expect("node log file");
        let child = Command::new(&binaries().node)
            .args(["--dev", "--data"])
            .arg(dir)
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log handle"))
            .stderr(logf)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn xinyi-node");
        let mut node = DevNode {
            child: Some(child),
            dir: dir.to_path_buf(),
            url,
            log: log.to_path_buf(),
        };
        node.wait_ready(timeout);
        node
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let api = self.api();
        let start = Instant::now();
        loop {
            if let Ok(h) = api.health() {
                if h.status == "ok" {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "xinyi-node exited with {status} before it was ready; log:\n{}",
                        self.log_text()
                    );
                }
            }
            if start.elapsed() > timeout {
                panic!(
                    "xinyi-node not ready after {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An API client for it.
    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    /// `DIR/dev-keys/<name>.key`.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join("dev-keys").join(format!("{name}.key"))
    }

    /// `DIR/genesis.json`.
    pub fn genesis(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }

    /// Kills the process with SIGKILL (no shutdown path runs) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `xinyi --node URL --genesis DIR/genesis.json [--key DIR/dev-keys/<key>.key] args`.
    pub fn xinyi(&self, key: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(&binaries().client);
        cmd.arg("--node")
            .arg(&self.url)
            .arg("--genesis")
            .arg(self.genesis())
            .env_remove("XINYI_KEY")
            .env_remove("XINYI_NODE")
            .env_remove("XINYI_GENESIS")
            // The client's checkpoint memory stays with the test, not in $HOME.
            .env("XINYI_STATE", self.dir.with_extension("client-state.json"))
            .stdin(Stdio::null());
        if let Some(k) = key {
            cmd.arg("--key").arg(self.key(k));
        }
        cmd.args(args).output().expect("run xinyi")
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        self.kill9();
    }
}
