//! Optional TLS for the HTTP API (`specs/api.md` "Transport security"), end to end with the real
//! binaries on 127.0.0.1: a self-signed certificate for 127.0.0.1/localhost made here with
//! rcgen, `xinyi-node --dev --tls-cert --tls-key`, and the `xinyi` client.
//!
//! With `--ca` (or `XINYI_CA`) the client reads health and the checkpoint and runs a consent →
//! verified query → verified access log flow over https; without it the client fails with one
//! `tls.untrusted` line; plain HTTP to the TLS port gets no data; half a TLS configuration, or
//! an unreadable one, stops the node at startup with one readable line.

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use xinyi_ledger::sample::sample_firm;
use xinyi_tests::cli::{fails, grant_args, ok, ok_json, text};
use xinyi_tests::{binaries, free_port};

/// `cert.pem` and `key.pem` in `dir`: a self-signed certificate for 127.0.0.1 and localhost.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("rcgen");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
    (cert, key)
}

/// A `xinyi-node --dev` over TLS; SIGKILLed and reaped on drop.
struct TlsNode {
    child: Child,
    dir: PathBuf,
    port: u16,
    url: String,
    ca: PathBuf,
    log: PathBuf,
}

/// Starts `cmd` (an `xinyi-node` command line) with TLS taken only from its arguments or
/// config, its output in `log`.
fn spawn_node(cmd: &mut Command, log: &Path) -> Child {
    let logf = std::fs::File::create(log).expect("log file");
    cmd.env_remove("XINYI_TLS_CERT")
        .env_remove("XINYI_TLS_KEY")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("log handle"))
        .stderr(logf)
        .spawn()
        .expect("spawn xinyi-node")
}

impl TlsNode {
    fn start(tmp: &Path) -> TlsNode {
        let (cert, key) = self_signed(tmp);
        let port = free_port();
        let log = tmp.join("node.log");
        let dir = tmp.join("data");
        let child = spawn_node(
            Command::new(&binaries().node)
                .args(["--dev", "--data"])
                .arg(&dir)
                .args(["--http", &format!("127.0.0.1:{port}"), "--tls-cert"])
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key),
            &log,
        );
        let mut node = TlsNode {
            child,
            dir,
            port,
            url: format!("https://127.0.0.1:{port}"),
            ca: cert,
            log,
        };
        node.wait_ready(Duration::from_secs(90));
        node
    }

    /// Polls `/health` over https with the certificate as trusted root (bounded wait).
    fn wait_ready(&mut self, timeout: Duration) {
        let api = xinyi_client::api::Api::with_ca(&self.url, Some(self.ca.as_path())).expect("api");
        let start = Instant::now();
        loop {
            if api.health().is_ok_and(|h| h.status == "ok") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("xinyi-node exited with {status}; log:\n{}", self.log_text());
            }
            assert!(
                start.elapsed() < timeout,
                "xinyi-node not ready over https after {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `xinyi --node URL --genesis … [--key …] ARGS`, with no CA unless ARGS or `env` give one.
    fn xinyi(&self, url: &str, key: Option<&str>, env: &[(&str, &Path)], args: &[&str]) -> Output {
        let mut cmd = Command::new(&binaries().client);
        cmd.arg("--node")
            .arg(url)
            .arg("--genesis")
            .arg(self.dir.join("genesis.json"))
            .env_remove("XINYI_CA")
            .env_remove("XINYI_KEY")
            .env_remove("XINYI_NODE")
            .env_remove("XINYI_GENESIS")
            .env("XINYI_STATE", self.dir.with_extension("client-state.json"))
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(k) = key {
            cmd.arg("--key")
                .arg(self.dir.join("dev-keys").join(format!("{k}.key")));
        }
        cmd.args(args).output().expect("run xinyi")
    }

    /// The client over https with `--ca`.
    fn trusted(&self, key: Option<&str>, args: &[&str]) -> Output {
        let ca = self.ca.to_str().expect("utf-8 path");
        let mut all = vec!["--ca", ca];
        all.extend_from_slice(args);
        self.xinyi(&self.url, key, &[], &all)
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dev_node_over_tls_with_trusted_and_untrusted_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = TlsNode::start(tmp.path());
    let firm = sample_firm(0).expect("sample firm").to_string();
    let fk = format!("firm-{firm}");

    // Health and checkpoint with --ca, and with XINYI_CA.
    let health = ok_json(&node.trusted(None, &["--json", "status"]));
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["dev"], true, "{health}");
    let cp = ok(&node.trusted(None, &["checkpoint"]));
    assert!(!cp.trim().is_empty());
    let via_env = node.xinyi(
        &node.url,
        None,
        &[("XINYI_CA", node.ca.as_path())],
        &["--json", "status"],
    );
    assert_eq!(ok_json(&via_env)["chain_id"], health["chain_id"]);

    // Write + query + verified access log over https.
    let grant = ok_json(&node.trusted(
        Some(&fk),
        &grant_args(&firm, "bank-a", "registration,tax", "1", "30"),
    ));
    assert_eq!(grant["kind"], "consent_granted", "{grant}");
    let consent = grant["id"].as_str().expect("consent id").to_string();
    let out = ok(&node.trusted(
        Some("bank-a"),
        &[
            "query",
            "--consent",
            &consent,
            "--firm",
            &firm,
            "--categories",
            "registration,tax",
        ],
    ));
    assert!(out.contains("verified: response digest matches"), "{out}");
    let log = ok_json(&node.trusted(
        Some("auditor"),
        &["--json", "access-log", "--firm", &firm, "--verify"],
    ));
    assert!(log.to_string().contains(&consent), "{log}");

    // No --ca: the self-signed certificate is not trusted; one readable line, exit 1.
    let e = fails(
        &node.xinyi(&node.url, None, &[], &["status"]),
        "tls.untrusted",
    );
    assert!(e.contains("--ca"), "{e}");

    // Plain HTTP to the TLS port: the client gets no answer, a raw request no HTTP data.
    let plain = format!("http://127.0.0.1:{}", node.port);
    let o = node.xinyi(&plain, None, &[], &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stdout).is_empty(), "{}", text(&o.stdout));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(
        !got.contains("HTTP/1.1") && !got.contains("chain_id"),
        "plain HTTP got an answer: {got:?}"
    );

    // The node is unharmed by the failed connections.
    ok_json(&node.trusted(None, &["--json", "status"]));
}

#[test]
fn half_or_bad_tls_configuration_stops_the_node_at_startup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(tmp.path());
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write junk");
    let os = OsStr::new;
    let node = |args: &[&OsStr]| {
        Command::new(&binaries().node)
            .args(args)
            .env_remove("XINYI_TLS_CERT")
            .env_remove("XINYI_TLS_KEY")
            .env_remove("XINYI_HTTP")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run xinyi-node")
    };
    let one_error_line = |o: &Output, needle: &str| {
        let e = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "stderr: {e}");
        assert_eq!(e.lines().count(), 1, "not one line: {e:?}");
        assert!(e.starts_with("xinyi-node: error: "), "{e:?}");
        assert!(e.contains(needle), "{e:?} lacks {needle:?}");
    };
    let data = tmp.path().join("dev");
    let dev = |extra: &[&Path]| {
        let mut a = vec![
            os("--dev"),
            os("--data"),
            data.as_os_str(),
            os("--http"),
            os("127.0.0.1:0"),
        ];
        for (flag, p) in ["--tls-cert", "--tls-key"].into_iter().zip(extra) {
            a.push(os(flag));
            a.push(p.as_os_str());
        }
        node(&a)
    };

    // Dev mode: a certificate without a key, an unreadable certificate, a non-PEM one.
    one_error_line(&dev(&[&cert]), "--tls-cert is set but --tls-key is not");
    one_error_line(
        &dev(&[&tmp.path().join("missing.pem"), &key]),
        "cannot read",
    );
    one_error_line(&dev(&[&junk, &key]), "no PEM certificate");

    // A config file with [api] tls_cert only.
    let conf_dir = tmp.path().join("conf");
    let o = node(&[
        os("init"),
        os("--dir"),
        conf_dir.as_os_str(),
        os("--http"),
        os("127.0.0.1:0"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let config = conf_dir.join("xinyi.toml");
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml.push_str(&format!(
        "\n[api]\ntls_cert = {:?}\n",
        cert.to_str().expect("utf-8")
    ));
    std::fs::write(&config, toml).expect("write config");
    one_error_line(
        &node(&[os("start"), os("--config"), config.as_os_str()]),
        "[api] tls_cert is set but tls_key is not",
    );
}

/// A consortium member (`xinyi-node start` with `[p2p]`) serves its API over TLS too: a
/// one-validator consortium made with `keygen`/`genesis`/`init`, `[api] tls_cert`/`tls_key`
/// added to its config, answers `/health` over https to a client that trusts the certificate and
/// refuses one that does not.
#[test]
fn a_consortium_member_serves_its_api_over_tls() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let (cert, key) = self_signed(d);
    let node = |args: &[&str]| {
        let o = Command::new(&binaries().node)
            .current_dir(d)
            .args(args)
            .env_remove("XINYI_TLS_CERT")
            .env_remove("XINYI_TLS_KEY")
            .env_remove("XINYI_HTTP")
            .stdin(Stdio::null())
            .output()
            .expect("run xinyi-node");
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let public = node(&["keygen", "--out", "gz-credit.key"]);
    node(&[
        "genesis",
        "--name",
        "xinyi/tls-test",
        "--out",
        "genesis.json",
        "--org",
        &format!("gz-credit:agency:{}:1", public.trim()),
    ]);
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let p2p = format!("127.0.0.1:{}", free_port());
    node(&[
        "init",
        "--dir",
        "gz-credit",
        "--org",
        "gz-credit",
        "--key",
        "gz-credit.key",
        "--genesis",
        "genesis.json",
        "--http",
        &http,
        "--p2p",
        &p2p,
    ]);
    let config = d.join("gz-credit").join("xinyi.toml");
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml.push_str(&format!(
        "\n[api]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.to_str().expect("utf-8"),
        key.to_str().expect("utf-8")
    ));
    std::fs::write(&config, toml).expect("write config");
    let log = d.join("member.log");
    let child = spawn_node(
        Command::new(&binaries().node)
            .current_dir(d)
            .args(["start", "--config"])
            .arg(&config),
        &log,
    );
    let mut member = TlsNode {
        child,
        dir: d.to_path_buf(),
        port,
        url: format!("https://127.0.0.1:{port}"),
        ca: cert,
        log,
    };
    member.wait_ready(Duration::from_secs(90));
    let h = ok_json(&member.trusted(None, &["--json", "status"]));
    assert_eq!(h["status"], "ok", "{h}");
    fails(
        &member.xinyi(&member.url, None, &[], &["status"]),
        "tls.untrusted",
    );
}
