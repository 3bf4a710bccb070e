//! Smoke tests of `xinyi-bench ledger`, `audit` and `cluster`: run the real binary in quick
//! mode and check the shape of its JSON (no timing assertions: figures depend on the machine).

use std::process::Command;

const REQUIRED: [(&str, &str); 10] = [
    ("ledger.durable_append", "entries/s"),
    ("ledger.durable_append.blocks", "blocks/s"),
    ("ledger.verify", "entries/s"),
    ("ceiling.ed25519.verify_strict.1core", "sig/s"),
    ("ceiling.ed25519.verify_strict.all_cores", "sig/s"),
    ("ceiling.ed25519.verify_batch.1core", "sig/s"),
    ("ceiling.ed25519.verify_batch.all_cores", "sig/s"),
    ("ceiling.sha256.1core", "MB/s"),
    ("ceiling.sled.flush", "flushes/s"),
    ("ledger.durable_append.phase.store_append", "us/entry"),
];

#[test]
fn ledger_quick_json_has_every_figure_beside_its_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_xinyi-bench"))
        .args(["ledger", "--quick", "--json", "--out"])
        .arg(&out_file)
        .output()
        .expect("run xinyi-bench");
    assert!(
        out.status.success(),
        "xinyi-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&stdout).expect("stdout is one JSON array");
    let from_file: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(rows, from_file, "--out writes the same JSON");

    check_rows(&rows);
    let row = |m: &str| get(&rows, m);
    for (metric, unit) in REQUIRED {
        assert_eq!(row(metric)["unit"], unit, "{metric}");
    }
    for m in ["ledger.durable_append", "ledger.verify"] {
        assert_eq!(
            row(m)["ceiling_metric"],
            "ceiling.ed25519.verify_batch.all_cores",
            "{m} is compared with the batch-verify ceiling"
        );
        assert!(row(m)["ratio"].as_f64().is_some());
    }
    // Two signatures per query record: the append ceiling is half the signature ceiling.
    let v = row("ceiling.ed25519.verify_batch.all_cores")["value"]
        .as_f64()
        .unwrap();
    let c = row("ledger.durable_append")["ceiling"].as_f64().unwrap();
    assert!((c - v / 2.0).abs() <= 1e-9 * v);
    assert_eq!(
        row("ledger.durable_append.blocks")["ceiling_metric"],
        "ceiling.sled.flush"
    );
}

#[test]
fn ledger_table_without_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_xinyi-bench"))
        .args(["ledger", "--quick", "--entries", "500"])
        .output()
        .expect("run xinyi-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().next().unwrap().starts_with("metric"));
    assert!(text.contains("ledger.durable_append"));
    assert!(text.contains("ceiling.sled.flush"));
}

/// Every row: the fields, a positive value, ratio = value / ceiling, a ceiling metric that has
/// its own raw row.
fn check_rows(rows: &[serde_json::Value]) {
    for row in rows {
        let o = row.as_object().expect("each row is an object");
        for field in [
            "metric",
            "value",
            "unit",
            "ceiling_metric",
            "ceiling",
            "ratio",
        ] {
            assert!(o.contains_key(field), "{row} lacks {field}");
        }
        let value = o["value"].as_f64().expect("numeric value");
        assert!(
            value.is_finite() && value > 0.0,
            "{row}: value must be positive"
        );
        if let (Some(ceiling), Some(ratio)) = (o["ceiling"].as_f64(), o["ratio"].as_f64()) {
            assert!(ceiling > 0.0, "{row}: ceiling must be positive");
            let expect = value / ceiling;
            assert!(
                (ratio - expect).abs() <= 1e-9 * expect.abs().max(1.0),
                "{row}: ratio must be value/ceiling"
            );
            let cm = o["ceiling_metric"]
                .as_str()
                .expect("ceiling_metric names it");
            assert!(
                rows.iter().any(|r| r["metric"] == cm),
                "{row}: ceiling metric {cm} has its own raw row"
            );
        } else {
            assert!(o["ceiling"].is_null() && o["ratio"].is_null(), "{row}");
            assert!(
                o["ceiling_metric"].is_null(),
                "{row}: raw row has no ceiling"
            );
        }
    }
}

fn run_json(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("bench.md");
    let out = Command::new(env!("CARGO_BIN_EXE_xinyi-bench"))
        .args(args)
        .arg("--md")
        .arg(&md)
        .output()
        .expect("run xinyi-bench");
    assert!(
        out.status.success(),
        "xinyi-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON array");
    let table = std::fs::read_to_string(&md).expect("--md writes a markdown table");
    (rows, table)
}

fn get<'a>(rows: &'a [serde_json::Value], m: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["metric"] == m)
        .unwrap_or_else(|| panic!("metric {m} missing"))
}

#[test]
fn audit_quick_reports_verification_against_the_batch_ceiling() {
    let (rows, table) = run_json(&[
        "audit",
        "--entries",
        "600",
        "--block-size",
        "200",
        "--quick",
        "--json",
    ]);
    check_rows(&rows);
    let v = get(&rows, "audit.verify");
    assert_eq!(v["unit"], "entries/s");
    assert_eq!(
        v["ceiling_metric"],
        "ceiling.ed25519.verify_batch.all_cores"
    );
    assert!(
        get(&rows, "audit.verify.seconds")["value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    for m in [
        "ceiling.ed25519.sign.1core",
        "ceiling.sha256.1core",
        "ceiling.sled.flush",
    ] {
        get(&rows, m);
    }
    assert!(table.starts_with("| metric |"), "{table}");
    assert!(table.contains("| audit.verify |"), "{table}");
}

/// Path of `xinyi-node` beside `xinyi-bench`, built if it is not there (a workspace test run
/// has built it already; `cargo test -p xinyi-testnet` alone has not).
fn ensure_node_binary() {
    let bench = std::path::PathBuf::from(env!("CARGO_BIN_EXE_xinyi-bench"));
    let dir = bench.parent().unwrap().to_path_buf();
    if dir.join("xinyi-node").exists() {
        return;
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace)
        .args(["build", "-p", "xinyi-node", "--bin", "xinyi-node"]);
    if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    if let Some(target) = dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cluster_quick_drives_queries_through_a_four_validator_testnet() {
    ensure_node_binary();
    let (rows, table) = run_json(&[
        "cluster",
        "--validators",
        "4",
        "--rate",
        "50",
        "--duration",
        "2",
        "--connections",
        "8",
        "--quick",
        "--json",
    ]);
    check_rows(&rows);
    let q = get(&rows, "cluster.queries_per_sec");
    assert_eq!(
        q["ceiling_metric"],
        "ceiling.cluster.crypto_queries_per_sec"
    );
    assert!(
        q["note"].as_str().unwrap().contains(" 0 errors"),
        "every query is answered: {q}"
    );
    for m in [
        "cluster.latency_ms.p50",
        "cluster.latency_ms.p90",
        "cluster.latency_ms.p99",
        "cluster.latency_ms.max",
        "cluster.blocks_per_sec",
        "cluster.disk_bytes_per_entry",
        "ceiling.ed25519.sign.1core",
        "ceiling.ed25519.verify_batch.all_cores",
        "ceiling.sha256.1core",
        "ceiling.sled.flush",
    ] {
        get(&rows, m);
    }
    // The load generator's own CPU is reported beside the nodes'.
    let lg = get(&rows, "cluster.loadgen.cpu_percent");
    assert_eq!(lg["unit"], "% of one core");
    for org in ["gz-credit", "credit-china", "gsxt", "agency-4"] {
        get(&rows, &format!("cluster.node.{org}.cpu_percent"));
        let us = get(&rows, &format!("cluster.node.{org}.core_us_per_query"));
        assert_eq!(us["unit"], "core-us/query");
        assert!(us["target"].is_string(), "a per-node cost target: {us}");
        assert_eq!(
            get(&rows, &format!("cluster.node.{org}.rss_mib"))["unit"],
            "MiB"
        );
    }
    assert!(table.contains("| cluster.queries_per_sec |"), "{table}");
}

#[test]
fn cluster_quick_with_batches_answers_every_query_through_the_batch_endpoint() {
    ensure_node_binary();
    let (rows, _) = run_json(&[
        "cluster",
        "--validators",
        "4",
        "--rate",
        "60",
        "--duration",
        "2",
        "--connections",
        "4",
        "--batch",
        "6",
        "--quick",
        "--json",
    ]);
    check_rows(&rows);
    let q = get(&rows, "cluster.queries_per_sec");
    let note = q["note"].as_str().unwrap();
    assert!(
        note.contains("6 requests per POST /v1/queries/batch"),
        "{q}"
    );
    // 120 requests offered, each result counted: all answered with data after commit.
    assert!(
        note.contains("120 answered with data") && note.contains(" 0 errors"),
        "{q}"
    );
}

#[test]
fn cluster_both_runs_the_noop_peer_beside_the_ledger_and_reports_the_ratio() {
    ensure_node_binary();
    let (rows, table) = run_json(&[
        "cluster",
        "--app",
        "both",
        "--validators",
        "4",
        "--rate",
        "40",
        "--duration",
        "2",
        "--connections",
        "4",
        "--quick",
        "--json",
    ]);
    check_rows(&rows);
    // The ledger ran: its rows are there as with --app ledger.
    let q = get(&rows, "cluster.queries_per_sec");
    assert!(q["note"].as_str().unwrap().contains(" 0 errors"), "{q}");
    get(&rows, "cluster.loadgen.cpu_percent");
    // The no-op peer ordered payloads (a count, not a rate: nothing here is timed).
    let n = get(&rows, "cluster.noop.payloads");
    assert_eq!(n["unit"], "payloads");
    assert!(n["value"].as_f64().unwrap() >= 1.0, "{n}");
    for (m, unit) in [
        ("cluster.noop.payloads_per_sec", "payloads/s"),
        ("cluster.noop.query_equivalents_per_sec", "queries/s"),
        ("cluster.noop.payload_bytes", "bytes"),
        ("cluster.noop.mb_per_sec", "MB/s"),
        ("cluster.noop.loadgen.cpu_percent", "% of one core"),
    ] {
        assert_eq!(get(&rows, m)["unit"], unit, "{m}");
    }
    for org in ["gz-credit", "credit-china", "gsxt", "agency-4"] {
        get(&rows, &format!("cluster.noop.node.{org}.cpu_percent"));
        get(
            &rows,
            &format!("cluster.noop.node.{org}.core_us_per_query_equivalent"),
        );
    }
    // The payload is the ledger step's mean block: a whole number of query records.
    let bytes = get(&rows, "cluster.noop.payload_bytes")["value"]
        .as_f64()
        .unwrap();
    let note = get(&rows, "cluster.noop.payload_bytes")["note"]
        .as_str()
        .unwrap()
        .to_string();
    let (k, rec) = note
        .trim_start_matches("body bytes of each payload = ")
        .split_once(" x ")
        .expect("k x record bytes");
    let (k, rec): (f64, f64) = (k.parse().unwrap(), rec.parse().unwrap());
    assert_eq!(bytes, k * rec, "{note}");
    // xinyi's rate as a ratio of the no-op's, beside the machine ceilings.
    let r = get(&rows, "cluster.queries_per_sec_vs_noop");
    assert_eq!(
        r["ceiling_metric"],
        "cluster.noop.query_equivalents_per_sec"
    );
    assert_eq!(r["value"], q["value"]);
    get(&rows, "ceiling.cluster.crypto_queries_per_sec");
    assert!(
        table.contains("| cluster.queries_per_sec_vs_noop |"),
        "{table}"
    );
}

#[test]
fn cluster_refuses_an_unknown_app() {
    let out = Command::new(env!("CARGO_BIN_EXE_xinyi-bench"))
        .args(["cluster", "--app", "ledgr"])
        .output()
        .expect("run xinyi-bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("possible values: ledger, noop, both"), "{err}");
}

#[test]
fn monitor_quick_reports_alerts_beside_the_query_figure_and_ceilings() {
    ensure_node_binary();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("monitor.json");
    let out = Command::new(env!("CARGO_BIN_EXE_xinyi-bench"))
        .args(["monitor", "--quick", "--json", "--out"])
        .arg(&out_file)
        .output()
        .expect("run xinyi-bench monitor");
    assert!(
        out.status.success(),
        "xinyi-bench monitor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON array");
    let from_file: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(rows, from_file, "--out writes the same JSON");
    check_rows(&rows);
    let a = get(&rows, "monitor.alerts_per_sec");
    assert_eq!(a["unit"], "alerts/s");
    assert_eq!(
        a["ceiling_metric"],
        "ceiling.ed25519.verify_batch.all_cores"
    );
    assert_eq!(
        a["meets_target"], true,
        "every committed record is alerted: {a}"
    );
    for m in [
        "monitor.latency_ms.p50",
        "monitor.latency_ms.p99",
        "dev_node.queries_per_sec",
        "ceiling.sled.flush",
    ] {
        get(&rows, m);
    }
}
