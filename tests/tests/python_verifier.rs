//! The Python verifier written from `specs/` alone (`specs/tools/verify_bundle.py`) against the
//! Rust chain: it must accept the spec vector bundle (and reproduce `bundle.json`'s report) and a
//! bundle exported by a real dev node after consents, a served query, a denial and a revocation;
//! it must reject the same bundles with one byte changed, and a report that disagrees.
//!
//! `specs/vectors` is what `ledger/tests/spec_vectors.rs` regenerates (that test fails if the
//! committed files differ from the generator's). A missing `python3` or `cryptography` fails
//! these tests with the install command; `tests/run` installs `specs/tools/requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use xinyi_ledger::sample::sample_firm;
use xinyi_tests::cli::{grant_args, ok, ok_json, query_args, text};
use xinyi_tests::pyverify::verify_bundle;
use xinyi_tests::DevNode;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("specs/vectors")
}

fn passes(o: &Output) -> String {
    let out = text(&o.stdout);
    assert!(
        o.status.success(),
        "verify_bundle.py refused the bundle ({}):\n{out}\n{}",
        o.status,
        text(&o.stderr)
    );
    out
}

fn refuses(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "verify_bundle.py accepted a changed bundle:\n{}",
        text(&o.stdout)
    );
    text(&o.stderr)
}

/// `bytes` with one byte flipped `from_end` bytes before the end.
fn flipped(bytes: &[u8], from_end: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let at = b.len() - from_end;
    b[at] ^= 0x01;
    b
}

#[test]
fn python_verifier_reproduces_the_spec_vector_report() {
    let dir = vectors();
    let out = passes(&verify_bundle(
        &dir.join("genesis.json"),
        &dir.join("chain.bundle"),
    ));
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("bundle.json")).expect("specs/vectors/bundle.json"),
    )
    .expect("bundle.json is JSON");
    let head = report["report"]["head_hash"].as_str().expect("head_hash");
    assert!(out.contains(&format!("head {head}")), "{out}");
    assert!(
        out.contains("matches"),
        "the report was not compared: {out}"
    );
}

#[test]
fn python_verifier_refuses_a_changed_vector_bundle_or_report() {
    let dir = vectors();
    let genesis = dir.join("genesis.json");
    let bundle = std::fs::read(dir.join("chain.bundle")).expect("chain.bundle");
    let tmp = tempfile::tempdir().expect("tempdir");
    // One flipped byte in the last block (no bundle.json beside it: only the chain's own checks).
    let changed = tmp.path().join("changed.bundle");
    std::fs::write(&changed, flipped(&bundle, 200)).expect("write");
    refuses(&verify_bundle(&genesis, &changed));
    // The unchanged bundle beside a report naming another head: the comparison fails.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("chain.bundle"), &bundle).expect("write");
    let mut report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).expect("bundle.json"))
            .expect("JSON");
    report["report"]["head_hash"] = serde_json::json!("00".repeat(32));
    std::fs::write(other.join("bundle.json"), report.to_string()).expect("write");
    let err = refuses(&verify_bundle(&genesis, &other.join("chain.bundle")));
    assert!(err.contains("head_hash"), "{err}");
}

#[test]
fn python_verifier_accepts_a_dev_node_export_and_refuses_it_changed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = DevNode::start(
        &tmp.path().join("data"),
        &tmp.path().join("node.log"),
        Duration::from_secs(60),
    );
    let firm = sample_firm(0).expect("sample firm").to_string();
    let fk = format!("firm-{firm}");
    let grant = |uses: &str| {
        ok_json(&node.xinyi(
            Some(&fk),
            &grant_args(&firm, "bank-a", "registration,tax", uses, "30"),
        ))["id"]
            .as_str()
            .expect("consent id")
            .to_string()
    };
    let c1 = grant("1");
    let query = |consent: &str| node.xinyi(Some("bank-a"), &query_args(consent, &firm, "tax")[1..]);
    ok(&query(&c1));
    // The only use is spent: a logged denial.
    assert!(!query(&c1).status.success(), "a second use was served");
    let c2 = grant("3");
    ok(&node.xinyi(Some(&fk), &["consent", "revoke", &c2]));

    let bundle = tmp.path().join("export").join("dev.bundle");
    std::fs::create_dir_all(bundle.parent().expect("dir")).expect("mkdir");
    ok(&node.xinyi(
        Some("auditor"),
        &["export", "--out", bundle.to_str().expect("utf-8")],
    ));
    let genesis = node.genesis();
    let out = passes(&verify_bundle(&genesis, &bundle));
    // The Python verifier ends where the node's chain ends.
    let h = node.api().health().expect("health");
    assert!(out.contains(&format!("log {} ", h.log_size)), "{out}");

    let bytes = std::fs::read(&bundle).expect("bundle");
    let changed = tmp.path().join("changed.bundle");
    std::fs::write(&changed, flipped(&bytes, 200)).expect("write");
    refuses(&verify_bundle(&genesis, &changed));
}
