//! Crypto-shredding end to end, with the real binaries (issue 17): a firm's data is sealed at
//! rest; the agency's `xinyi erase` is checked by the ledger against its reason, commits, and
//! destroys the data keys; afterwards queries answer 410 `data.erased` (also after a restart),
//! neither the plaintext nor the destroyed key is in any file of the node, and the chain still
//! audits from the genesis alone.

use std::path::Path;
use std::time::Duration;
use xinyi_ledger::sample::sample_firm;
use xinyi_tests::cli::{fails, grant_args, ok, ok_json, query_args};
use xinyi_tests::DevNode;

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

#[test]
fn an_erased_firms_data_is_gone_from_every_file_and_the_chain_still_audits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let start = |log: &str| DevNode::start(&data, &tmp.path().join(log), Duration::from_secs(60));
    let mut node = start("node-1.log");
    let firm = sample_firm(3).expect("firm").to_string();
    let fk = format!("firm-{firm}");
    let query = |node: &DevNode, consent: &str| {
        node.xinyi(
            Some("bank-a"),
            &query_args(consent, &firm, "registration,penalties,tax"),
        )
    };

    // Grant and query: the bank gets the data.
    let grant = |node: &DevNode| {
        let g = ok_json(&node.xinyi(
            Some(&fk),
            &grant_args(&firm, "bank-a", "registration,penalties,tax", "3", "30"),
        ));
        g["id"].as_str().expect("consent id").to_string()
    };
    let c1 = grant(&node);
    let q = ok_json(&query(&node, &c1));
    let registration = &q["data"]["registration"];
    assert_eq!(registration["uscc"], firm.as_str(), "{q}");
    // The stored form of the registration holds this pair; the node never writes it in clear.
    let plaintext = format!("\"uscc\":\"{firm}\"");
    let name = registration["name"].as_str().expect("name").to_string();
    assert!(
        files_containing(&data, plaintext.as_bytes()).is_empty(),
        "the data is sealed at rest"
    );
    // The data key of the firm's registration is in the node's key file, and only there.
    let keyring = data.join("agency-data.keys");
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&keyring).expect("key file")).expect("key JSON");
    let key_hex = keys["keys"][format!("d/{firm}/registration")]
        .as_str()
        .expect("the registration's data key")
        .to_string();
    assert_eq!(
        files_containing(&data, key_hex.as_bytes()),
        vec![keyring.display().to_string()]
    );

    // The ledger checks the reason: the consent is not revoked yet.
    let erase = |node: &DevNode, reference: &str| {
        node.xinyi(
            Some("gz-credit"),
            &[
                "--json",
                "erase",
                "--firm",
                &firm,
                "--all",
                "--reason",
                "consent-withdrawn",
                "--reference",
                reference,
            ],
        )
    };
    fails(&erase(&node, &c1), "erasure.consent_not_revoked");
    // A bank may not erase; a reason that needs a reference is refused before signing.
    fails(
        &node.xinyi(
            Some("bank-a"),
            &[
                "erase",
                "--firm",
                &firm,
                "--categories",
                "tax",
                "--reason",
                "legal-order",
            ],
        ),
        "forbidden",
    );
    fails(
        &node.xinyi(
            Some("gz-credit"),
            &[
                "erase",
                "--firm",
                &firm,
                "--all",
                "--reason",
                "purpose-ended",
            ],
        ),
        "--reference",
    );
    fails(
        &node.xinyi(
            Some("gz-credit"),
            &["erase", "--firm", &firm, "--all", "--reason", "forgotten"],
        ),
        "--reason",
    );

    // The firm withdraws its consent; the agency erases everything it holds on the firm.
    ok(&node.xinyi(Some(&fk), &["consent", "revoke", &c1]));
    let erased = ok_json(&erase(&node, &c1));
    assert_eq!(erased["kind"], "data_erased", "{erased}");
    assert_eq!(erased["reason"], "consent_withdrawn");

    // A new consent does not bring the data back: 410 data.erased, nothing released.
    let c2 = grant(&node);
    let refused = fails(&query(&node, &c2), "data.erased");
    assert!(refused.contains("registration"), "{refused}");
    // Another firm's data is untouched.
    let other = sample_firm(4).expect("firm").to_string();
    let ok_other = ok_json(&node.xinyi(
        Some(&format!("firm-{other}")),
        &grant_args(&other, "bank-a", "registration", "1", "30"),
    ));
    let q_other = ok_json(&node.xinyi(
        Some("bank-a"),
        &query_args(ok_other["id"].as_str().expect("id"), &other, "registration"),
    ));
    assert_eq!(q_other["data"]["registration"]["uscc"], other.as_str());
    // The same in one batch (`query --batch`, the erasure check made once for the batch):
    // the erased firm's request is refused on its own, the other firm's is served.
    let again = ok_json(&node.xinyi(
        Some(&format!("firm-{other}")),
        &grant_args(&other, "bank-a", "registration", "1", "30"),
    ));
    let lines = tmp.path().join("batch.jsonl");
    std::fs::write(
        &lines,
        format!(
            "{}\n{}\n",
            serde_json::json!({"consent": c2, "categories": "registration"}),
            serde_json::json!({"consent": again["id"], "categories": "registration"})
        ),
    )
    .expect("batch file");
    let batch = node.xinyi(
        Some("bank-a"),
        &["--json", "query", "--batch", lines.to_str().expect("path")],
    );
    fails(&batch, "data.erased");
    let results: serde_json::Value =
        serde_json::from_slice(&batch.stdout).expect("the batch's results as JSON");
    assert_eq!(results["results"][0]["code"], "data.erased", "{results}");
    assert!(results["results"][0].get("data").is_none(), "{results}");
    assert_eq!(
        results["results"][1]["data"]["registration"]["uscc"],
        other.as_str(),
        "{results}"
    );

    // Restart: still erased; the key is in no file, nor the plaintext.
    node.kill9();
    let node = start("node-2.log");
    fails(&query(&node, &c2), "data.erased");
    assert_eq!(
        files_containing(&data, key_hex.as_bytes()),
        Vec::<String>::new(),
        "the destroyed key is in no file"
    );
    assert_eq!(
        files_containing(&data, plaintext.as_bytes()),
        Vec::<String>::new()
    );
    assert!(files_containing(&data, name.as_bytes()).is_empty());

    // The ledger keeps every digest and audits from the genesis alone.
    let bundle = tmp.path().join("chain.bundle");
    let report = node.export_and_audit(&bundle);
    assert_eq!(report["result"], "ok", "{report}");
    assert_eq!(report["entries_by_kind"]["data_erased"], 1, "{report}");
    // Before the erasure, the other firm's query, and its request in the batch.
    assert_eq!(report["entries_by_kind"]["query_served"], 3, "{report}");
}
