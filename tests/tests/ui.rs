//! The web console (`/ui`) in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/ui/console.mjs`, pinned in `tests/ui/package-lock.json`) against a real
//! `xinyi-node --dev`, with the `xinyi` CLI making the bank's queries.
//!
//! The script checks the console's in-browser crypto against `specs/vectors`, has a firm grant
//! and revoke a consent from the page (entries built and signed in the browser), sees the CLI's
//! query and a denial marked verified with the access list proven complete, sees the same list
//! NOT verified through a proxy that flips a byte in each inclusion proof, and visits the bank,
//! auditor, public and operator pages, writing screenshots to `target/ui-shots/`. Missing
//! Chromium, Node.js or `tests/ui/node_modules` fail the test with the command that installs
//! them (`tests/run` does): nothing is skipped. A second script (`tests/ui/rotation.mjs`) runs
//! the firm's page against a testnet node after a firm-key rotation.

mod common;

use common::{ok, Testnet};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use xinyi_ledger::sample::sample_firm;
use xinyi_ledger::{FirmKey, Uscc};
use xinyi_tests::DevNode;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "Chromium not found at {} (set CHROMIUM, or: apt-get install -y chromium)",
        p.display()
    );
    p
}

fn node_modules(ui: &Path) {
    let ok = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "Node.js (`node`) is required to drive the browser test");
    assert!(
        ui.join("node_modules/playwright-core/package.json")
            .exists(),
        "{}/node_modules is missing: run `npm ci --prefix {}`",
        ui.display(),
        ui.display()
    );
}

/// Where the browser scripts write their screenshots: `<target>/ui-shots`.
fn shots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("ui-shots")
}

/// Runs `node tests/ui/<script>` (Chromium, Node.js and the pinned playwright-core required)
/// with the environment every script takes — the `xinyi` binary, Chromium, the screenshot
/// directory — plus `envs`; asserts it succeeded (with `logs()` in the message) and returns its
/// JSON summary, the last line of its stdout.
fn browser_script(script: &str, envs: &[(&str, &OsStr)], logs: impl Fn() -> String) -> Value {
    let ui = repo().join("tests/ui");
    let chromium = chromium();
    node_modules(&ui);
    let out = Command::new("node")
        .arg(ui.join(script))
        .current_dir(&ui)
        .env("XINYI_CLI", &xinyi_tests::binaries().client)
        .env("XINYI_SHOTS", shots_dir())
        .env("CHROMIUM", &chromium)
        .envs(envs.iter().copied())
        .env_remove("XINYI_KEY_PASSPHRASE")
        .output()
        .unwrap_or_else(|e| panic!("run node tests/ui/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test {script} failed\nstdout: {stdout}\nstderr: {stderr}\n{}",
        logs()
    );
    eprintln!("{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON summary from {script} ({e}): {stdout}"))
}

#[test]
fn the_web_console_verifies_in_a_real_browser() {
    let root = repo();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // Anchoring to a file every 300 ms gives the auditor page anchor receipts to list.
    let anchors = tmp.path().join("anchors.jsonl");
    let node = DevNode::start_with(
        &data,
        &tmp.path().join("node.log"),
        Duration::from_secs(60),
        &[
            "--anchor-file",
            anchors.to_str().expect("utf-8 path"),
            "--anchor-interval-ms",
            "300",
        ],
    );
    let firm = sample_firm(0).expect("sample firm").to_string();
    let (keys, genesis) = (data.join("dev-keys"), node.genesis());
    let state = tmp.path().join("client-state.json");
    let vectors = root.join("specs/vectors");
    let summary = browser_script(
        "console.mjs",
        &[
            ("XINYI_URL", node.url.as_ref()),
            ("XINYI_KEYS", keys.as_ref()),
            ("XINYI_GENESIS", genesis.as_ref()),
            ("XINYI_FIRM", firm.as_ref()),
            ("XINYI_STATE", state.as_ref()),
            ("XINYI_VECTORS", vectors.as_ref()),
        ],
        || format!("node log:\n{}", node.log_text()),
    );
    let shots = shots_dir();
    assert!(summary["vectors"]["checked"].as_u64().unwrap_or(0) > 100);
    assert_eq!(summary["vectors"]["failures"], serde_json::json!([]));
    let rows = summary["firm_rows"].as_array().expect("firm rows");
    assert!(rows.len() >= 2, "{summary}");
    assert!(rows.iter().all(|r| r["verified"] == "yes"), "{summary}");
    let bad = summary["tampered_rows"].as_array().expect("tampered rows");
    assert_eq!(bad.len(), rows.len());
    assert!(bad.iter().all(|r| r["verified"] == "no"), "{summary}");
    assert!(summary["anchors"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(summary["repair"].is_string(), "{summary}");
    for page in ["firm", "firm-tampered", "bank", "audit", "public", "ops"] {
        let f = shots.join(format!("{page}.png"));
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {} missing or empty", f.display());
    }
}

/// The reads the console added are role-gated like their neighbours (`specs/privacy.md` §4), and
/// the console's files come with their content types and the CSP.
#[test]
fn console_reads_are_role_gated_and_files_carry_the_csp() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let node = DevNode::start(&data, &tmp.path().join("node.log"), Duration::from_secs(60));
    let firm = sample_firm(0).expect("sample firm").to_string();
    let other = sample_firm(1).expect("sample firm").to_string();
    let fk = format!("firm-{firm}");
    let entries = format!("/v1/firms/{firm}/entries");

    let (code, v) = node.get_as(&fk, &entries);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["firm"], firm.as_str());
    let list = v["entries"].as_array().expect("entries");
    assert!(
        list.iter().any(|e| e["kind"] == "firm_registered"),
        "the firm's registration is in its history: {v}"
    );
    assert!(list
        .iter()
        .all(|e| e["body"].is_object() && e["id"].is_string()));
    let (code, v) = node.get_as("auditor", &entries);
    assert_eq!(
        (code, v["entries"].as_array().map(Vec::len)),
        (200, Some(list.len()))
    );
    for who in ["bank-a", "gz-credit", &format!("firm-{other}")] {
        node.assert_forbidden(who, &entries);
    }
    node.assert_needs_auth(&entries);
    let (code, v) = node.get_raw("/v1/firms/91350100M000100Y4X/entries", None);
    assert_eq!(code, 400, "{v}");
    assert!(v["code"].as_str().unwrap_or("").starts_with("uscc."), "{v}");

    node.assert_needs_auth("/v1/repairs");
    node.assert_forbidden("bank-a", "/v1/repairs");
    for who in ["auditor", "gz-credit"] {
        let (code, v) = node.get_as(who, "/v1/repairs");
        assert_eq!(code, 200, "{who}: {v}");
        assert!(v["repairs"].is_array(), "{v}");
    }
    let (code, v) = node.get_raw("/v1/checkpoints", None);
    assert_eq!(code, 200, "{v}");
    assert!(v["cosigned"].is_array() && v["anchors"].is_array(), "{v}");

    for (path, ct) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/js/verify.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let r = ureq::get(&format!("{}{path}", node.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.header("content-type"), Some(ct), "{path}");
        let csp = r.header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    let (code, v) = node.get_raw("/ui/../Cargo.toml", None);
    assert_eq!(code, 404, "{v}");
}

/// The firm's page across a firm-key rotation (`specs/privacy.md` §8), against a node of a real
/// 4-validator testnet: before `xinyi-testnet rotate-firm-key` the firm grants a consent and
/// bank-a queries under it (old tag); after it bank-a queries that consent again (still the old
/// tag) and under a new consent (new tag). In the browser (`tests/ui/rotation.mjs`) the firm,
/// signing in with its one key file, sees its new tag with every registration bound to its key
/// of that epoch, exactly those three accesses verified and proven complete, grants a consent
/// under the new tag and revokes the old consent under the old tag.
#[test]
fn the_console_follows_a_firm_across_a_firm_key_rotation() {
    let tn = Testnet::up(4, 0, 25100);
    let url = tn.url("gz-credit");
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(tn.dir.join("testnet.json")).unwrap())
            .unwrap();
    let firm = m["firms"][0]["uscc"].as_str().expect("a firm").to_string();
    let fkey = format!("firm-{firm}");
    let json =
        |o: std::process::Output| -> Value { serde_json::from_str(&ok(&o)).expect("xinyi --json") };
    let grant = || {
        json(tn.xinyi(
            &url,
            &fkey,
            &[
                "--json",
                "consent",
                "grant",
                "--firm",
                &firm,
                "--bank",
                "bank-a",
                "--categories",
                "tax",
                "--uses",
                "5",
                "--days",
                "7",
            ],
        ))["id"]
            .as_str()
            .expect("consent id")
            .to_string()
    };
    let query = |consent: &str| {
        json(tn.xinyi(
            &url,
            "bank-a",
            &[
                "--json",
                "query",
                "--consent",
                consent,
                "--firm",
                &firm,
                "--categories",
                "tax",
            ],
        ))["record"]["position"]
            .as_u64()
            .expect("query position")
    };
    let old_consent = grant();
    let mut accesses = vec![query(&old_consent)];
    let report: Value = serde_json::from_str(&ok(&tn.run(&["rotate-firm-key", "--json"])))
        .expect("rotate-firm-key --json");
    assert_eq!(report["epoch"], 1, "{report}");
    accesses.push(query(&old_consent));
    let new_consent = grant();
    accesses.push(query(&new_consent));
    let u = Uscc::parse(&firm).unwrap();
    let tag = |file: &str| {
        FirmKey::from_hex(&std::fs::read_to_string(tn.dir.join("keys").join(file)).unwrap())
            .unwrap()
            .tag(&u)
            .to_hex()
    };
    let (keys, genesis) = (tn.dir.join("keys"), tn.genesis());
    let state = tn.dir.join("client-state-ui.json");
    let (old_tag, new_tag) = (tag("firm.key"), tag("firm.key.1"));
    let accesses = serde_json::to_string(&accesses).unwrap();
    let summary = browser_script(
        "rotation.mjs",
        &[
            ("XINYI_URL", url.as_ref()),
            ("XINYI_KEYS", keys.as_ref()),
            ("XINYI_GENESIS", genesis.as_ref()),
            ("XINYI_FIRM", firm.as_ref()),
            ("XINYI_STATE", state.as_ref()),
            ("XINYI_OLD_TAG", old_tag.as_ref()),
            ("XINYI_NEW_TAG", new_tag.as_ref()),
            ("XINYI_OLD_CONSENT", old_consent.as_ref()),
            ("XINYI_ACCESSES", accesses.as_ref()),
        ],
        || tn.logs(),
    );
    assert_eq!(
        summary["rows"].as_array().map(Vec::len),
        Some(3),
        "{summary}"
    );
    assert!(summary["granted"].is_string(), "{summary}");
}
