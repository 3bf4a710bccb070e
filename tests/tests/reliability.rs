//! CI-sized runs of `xinyi-reliability` (docs/reliability.md): a few hundred random mutations
//! of a sled store and of an audit bundle, every one detected (or, for sled free space, the
//! content read back identical), and a short mutation-fuzzing run of every decoder and proof
//! verifier with no panic and no oracle violation. Fixed seeds, so a failure replays. And a
//! short `xinyi-testnet chaos` run (3 cycles: two kill -9 + restart, one SIGSTOP/SIGCONT)
//! over a 4-validator testnet under write load.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn reliability_bin() -> &'static Path {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| xinyi_tests::workspace_bin("xinyi-testnet", "xinyi-reliability"))
}

/// Runs the binary; every stdout line is one JSON report.
fn run(args: &[&str]) -> Vec<Value> {
    let out = Command::new(reliability_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run xinyi-reliability");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "xinyi-reliability {args:?} failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON report line"))
        .collect()
}

#[test]
fn bundle_mutations_are_all_refused_by_the_verifier() {
    let r = &run(&[
        "tamper",
        "--target",
        "bundle",
        "--mutations",
        "400",
        "--seed",
        "7",
    ])[0];
    assert_eq!(r["silent"], 0, "{r}");
    assert_eq!(r["panics"], 0, "{r}");
    let m = r["mutations"].as_u64().unwrap();
    assert!(m >= 390, "{r}");
    // Every mutation is detected, except a genesis-JSON whitespace change that parses to the
    // identical genesis and gives the identical report.
    assert_eq!(
        r["detected"].as_u64().unwrap() + r["equivalent"].as_u64().unwrap(),
        m,
        "{r}"
    );
}

#[test]
fn store_mutations_are_refused_at_open_or_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = &run(&[
        "tamper",
        "--target",
        "store",
        "--mutations",
        "150",
        "--seed",
        "7",
        "--dir",
        dir.path().to_str().unwrap(),
    ])[0];
    assert_eq!(r["silent"], 0, "{r}");
    assert_eq!(r["panics"], 0, "{r}");
    let m = r["mutations"].as_u64().unwrap();
    assert!(m >= 140, "{r}");
    assert_eq!(
        r["detected"].as_u64().unwrap() + r["unchanged"].as_u64().unwrap(),
        m,
        "{r}"
    );
    // The refusal names the place.
    let examples = r["examples"].to_string();
    assert!(examples.contains("store.corrupt"), "{r}");
}

#[test]
fn every_fuzz_target_survives_a_short_run() {
    let reports = run(&["fuzz", "--target", "all", "--execs", "1500", "--seed", "7"]);
    let targets: Vec<&str> = reports
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    for t in [
        "entry",
        "block",
        "certificate",
        "genesis",
        "note",
        "checkpoint",
        "bundle",
        "wire",
        "frame",
        "batch",
        "query-body",
        "auth-header",
        "inclusion-proof",
        "consistency-proof",
    ] {
        assert!(targets.contains(&t), "target {t} missing: {targets:?}");
    }
    for r in &reports {
        assert_eq!(r["crashes"], 0, "{r}");
        assert_eq!(r["execs"], 1500, "{r}");
    }
}

#[test]
fn chaos_short_run_loses_no_acknowledged_write_and_nodes_agree() {
    let tn = common::Testnet::up(4, 0, 24100);
    let o = tn.run(&[
        "chaos",
        "--cycles",
        "3",
        "--pause-every",
        "3",
        "--seed",
        "7",
        "--timeout",
        "120",
    ]);
    let out = common::text(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "chaos failed\nstdout: {out}\nstderr: {}\n{}",
        common::text(&o.stderr),
        tn.logs()
    );
    let r: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["cycles"], 3, "{r}");
    assert_eq!(r["kills"], 2, "{r}");
    assert_eq!(r["pauses"], 1, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert!(r["acknowledged"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["common_head"].as_str().unwrap().len(), 64, "{r}");
}

/// The real node on a damaged store: a dev node writes its blocks, is killed, one byte in the
/// middle of sled's log is changed, and the node refuses to start with an error naming the
/// damage (before the head marker, sled's recovery silently dropped the tail and the node came
/// up rolled back).
#[test]
fn a_node_refuses_to_start_on_a_damaged_store() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut node =
        xinyi_tests::DevNode::start(&data, &dir.path().join("a.log"), Duration::from_secs(60));
    let h = node.api().health().unwrap();
    assert!(h.height > 0, "the dev node wrote no block");
    node.kill9();
    // The store directory is the one holding the head marker.
    let mut stack = vec![data.clone()];
    let mut store = None;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "xinyi-head") {
                store = Some(d.clone());
            }
        }
    }
    let store = store.expect("no store directory with a head marker");
    let db = store.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    // A byte inside the written part of the log (first half of the non-zero extent).
    let used = bytes.iter().rposition(|b| *b != 0).unwrap();
    let at = used / 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&db, &bytes).unwrap();
    let port = xinyi_tests::free_port();
    let log = dir.path().join("b.log");
    let mut child = Command::new(&xinyi_tests::binaries().node)
        .args(["--dev", "--data"])
        .arg(&data)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("b.err")).unwrap())
        .spawn()
        .unwrap();
    // Bounded: a node that starts anyway is killed after 60 s and the test fails.
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("b.err")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "started on a damaged store: {text}"
    );
    assert!(
        text.contains("damaged") || text.contains("corrupt"),
        "the refusal does not name the damage: {text}"
    );
}
