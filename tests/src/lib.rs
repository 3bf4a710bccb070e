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

pub mod pyverify;

/// Paths of the two binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `xinyi-node`.
    pub node: PathBuf,
    /// `xinyi`.
    pub client: PathBuf,
}

/// `<target>/<profile>/` of the running test binary, which lives in `<target>/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable in <target>/<profile>/deps")
        .to_path_buf()
}

/// Runs `cargo build ARGS` for the workspace in the running test's profile and target dir, so
/// the binaries land in [`profile_dir`]; works from `cargo test --workspace` on a clean clone.
fn cargo_build(args: &[&str]) {
    let profile_dir = profile_dir();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace).arg("build").args(args);
    if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Path of binary `name` in [`profile_dir`]; panics if it is not there.
fn built(name: &str) -> PathBuf {
    let p = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} missing", p.display());
    p
}

/// Builds `xinyi-node` and `xinyi` (same profile and target dir as the running test) once per
/// test process and returns their paths.
pub fn binaries() -> &'static Binaries {
    static B: OnceLock<Binaries> = OnceLock::new();
    B.get_or_init(|| {
        cargo_build(&["-p", "xinyi-node", "-p", "xinyi-client", "--bins"]);
        Binaries {
            node: built("xinyi-node"),
            client: built("xinyi"),
        }
    })
}

/// Builds binary `bin` of workspace package `package` beside [`binaries`] (which it builds
/// first) and returns its path. Call it once per test process (behind a `OnceLock`).
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    binaries();
    cargo_build(&["-p", package, "--bin", bin]);
    built(bin)
}

/// Output helpers for tests that drive the `xinyi` client.
pub mod cli {
    use serde_json::Value;
    use std::process::Output;

    /// Lossy UTF-8.
    pub fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).to_string()
    }

    /// Exit 0; returns stdout.
    #[track_caller]
    pub fn ok(o: &Output) -> String {
        assert_eq!(
            o.status.code(),
            Some(0),
            "xinyi failed\nstdout: {}\nstderr: {}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// Exit 0 with JSON on stdout.
    #[track_caller]
    pub fn ok_json(o: &Output) -> Value {
        let s = ok(o);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
    }

    /// `--json consent grant` of `firm`'s public credit data to `bank` for `categories`
    /// (comma-separated), `uses` queries over `days` days: the argument list the scenarios
    /// extend (`--purpose`, `--monitor`, ...) and hand to the client.
    pub fn grant_args<'a>(
        firm: &'a str,
        bank: &'a str,
        categories: &'a str,
        uses: &'a str,
        days: &'a str,
    ) -> Vec<&'a str> {
        vec![
            "--json",
            "consent",
            "grant",
            "--firm",
            firm,
            "--bank",
            bank,
            "--categories",
            categories,
            "--uses",
            uses,
            "--days",
            days,
        ]
    }

    /// `--json query --consent C --firm F --categories LIST`: the argument list of a
    /// bank's query (the caller adds the bank's key).
    pub fn query_args<'a>(consent: &'a str, firm: &'a str, categories: &'a str) -> [&'a str; 8] {
        [
            "--json",
            "query",
            "--consent",
            consent,
            "--firm",
            firm,
            "--categories",
            categories,
        ]
    }

    /// Exit 1, one `error:` line on stderr containing `needle`; returns that line.
    #[track_caller]
    pub fn fails(o: &Output, needle: &str) -> String {
        let e = text(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(1),
            "expected failure with {needle:?}\nstdout: {}\nstderr: {e}",
            text(&o.stdout)
        );
        assert_eq!(e.lines().count(), 1, "not one line: {e:?}");
        assert!(e.starts_with("error: "), "{e:?}");
        assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        e
    }
}

/// A fresh entry nonce: random per process (so runs against a node that outlives one test do
/// not replay each other's nonces) and never repeated within one.
pub fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.finish()
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

    /// `GET path` signed (`X-Xinyi-Auth`) with `DIR/dev-keys/<key>.key`: the HTTP status and
    /// the JSON body (error bodies included).
    pub fn get_as(&self, key: &str, path: &str) -> (u16, serde_json::Value) {
        let signer = xinyi_client::signer::Signer::load(Some(&self.key(key)), None)
            .expect("signer from key file");
        let h = self.api().health().expect("health");
        let auth = signer.auth_header(&h.chain_id, "GET", path, h.time_ms);
        self.get_raw(path, Some(&auth))
    }

    /// Asserts that `GET path` signed with `DIR/dev-keys/<key>.key` is refused with 403
    /// `api.forbidden` (a reader that is authenticated but not allowed).
    #[track_caller]
    pub fn assert_forbidden(&self, key: &str, path: &str) {
        let (code, v) = self.get_as(key, path);
        assert_eq!(
            (code, v["code"].as_str()),
            (403, Some("api.forbidden")),
            "GET {path} as {key}: {v}"
        );
    }

    /// Asserts that an unsigned `GET path` is refused with 401 `api.missing_auth`.
    #[track_caller]
    pub fn assert_needs_auth(&self, path: &str) {
        let (code, v) = self.get_raw(path, None);
        assert_eq!(
            (code, v["code"].as_str()),
            (401, Some("api.missing_auth")),
            "unsigned GET {path}: {v}"
        );
    }

    /// `GET path` with an optional `X-Xinyi-Auth` header: status and JSON body.
    pub fn get_raw(&self, path: &str, auth: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = ureq::get(&format!("{}{path}", self.url));
        if let Some(a) = auth {
            req = req.set("X-Xinyi-Auth", a);
        }
        let (code, text) = match req.call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
            Err(e) => panic!("GET {path}: {e}"),
        };
        (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `DIR/genesis.json`.
    pub fn genesis(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }

    /// Exports the chain as the auditor into `bundle`, then audits it offline from the genesis
    /// file alone (`xinyi --json audit verify --bundle --genesis`); returns the report.
    #[track_caller]
    pub fn export_and_audit(&self, bundle: &Path) -> serde_json::Value {
        let b = bundle.to_str().expect("utf-8 path");
        cli::ok(&self.xinyi(Some("auditor"), &["export", "--out", b]));
        let genesis = self.genesis();
        let g = genesis.to_str().expect("utf-8 path");
        cli::ok_json(&self.xinyi(
            None,
            &["--json", "audit", "verify", "--bundle", b, "--genesis", g],
        ))
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
