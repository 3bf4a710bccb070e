//! Smoke test of `xinyi-bench ledger`: runs the real binary in quick mode and checks the shape
//! of its JSON (no timing assertions: figures depend on the machine).

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

    for row in &rows {
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
        match (o["ceiling"].as_f64(), o["ratio"].as_f64()) {
            (Some(ceiling), Some(ratio)) => {
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
            }
            (None, None) => {
                assert!(
                    o["ceiling_metric"].is_null(),
                    "{row}: raw row has no ceiling"
                );
            }
            _ => panic!("{row}: ceiling and ratio must both be set or both be null"),
        }
    }

    let get = |m: &str| {
        rows.iter()
            .find(|r| r["metric"] == m)
            .unwrap_or_else(|| panic!("metric {m} missing from {stdout}"))
    };
    for (metric, unit) in REQUIRED {
        assert_eq!(get(metric)["unit"], unit, "{metric}");
    }
    for m in ["ledger.durable_append", "ledger.verify"] {
        assert_eq!(
            get(m)["ceiling_metric"],
            "ceiling.ed25519.verify_batch.all_cores",
            "{m} is compared with the batch-verify ceiling"
        );
        assert!(get(m)["ratio"].as_f64().is_some());
    }
    // Two signatures per query record: the append ceiling is half the signature ceiling.
    let v = get("ceiling.ed25519.verify_batch.all_cores")["value"]
        .as_f64()
        .unwrap();
    let c = get("ledger.durable_append")["ceiling"].as_f64().unwrap();
    assert!((c - v / 2.0).abs() <= 1e-9 * v);
    assert_eq!(
        get("ledger.durable_append.blocks")["ceiling_metric"],
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
