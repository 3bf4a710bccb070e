//! The `xinyi` client against a real dev node beyond the acceptance scenario: commitments and
//! grades, and the errors a user meets (wrong role, wrong key, unknown ids, a query under an
//! unknown consent), each one line on stderr with the API's code and exit code 1.

use std::time::Duration;
use xinyi_ledger::sample::sample_firm;
use xinyi_tests::cli::{fails, grant_args, ok_json};
use xinyi_tests::DevNode;

#[test]
fn commitments_grades_and_user_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = DevNode::start(
        &tmp.path().join("data"),
        &tmp.path().join("node.log"),
        Duration::from_secs(60),
    );
    let firm = sample_firm(1).expect("firm").to_string();
    let other = sample_firm(2).expect("firm").to_string();
    let fk = format!("firm-{firm}");

    // Commitment: made by the firm, broken by the agency.
    let made = ok_json(&node.xinyi(
        Some(&fk),
        &[
            "--json",
            "commitment",
            "make",
            "--agency",
            "gz-credit",
            "--text",
            "pay the arrears by month end",
            "--due-days",
            "30",
        ],
    ));
    let id = made["id"].as_str().expect("id").to_string();
    assert!(made["content_salt"].is_string());
    ok_json(&node.xinyi(
        Some("gz-credit"),
        &[
            "--json",
            "commitment",
            "broken",
            &id,
            "--finding",
            "not paid",
        ],
    ));
    let c = ok_json(&node.xinyi(None, &["--json", "commitment", "show", &id]));
    assert_eq!(c["broken"], true, "{c}");
    // The ledger names the firm by its keyed tag, never its USCC (specs/privacy.md §2).
    let key = xinyi_ledger::FirmKey::from_hex(
        &std::fs::read_to_string(node.key("firm")).expect("dev-keys/firm.key"),
    )
    .expect("firm key");
    let tag = key.tag(&xinyi_ledger::Uscc::parse(&firm).expect("uscc"));
    assert_eq!(c["firm"], tag.to_hex().as_str());

    // Grade: assigned by the agency; a bank may not.
    ok_json(&node.xinyi(
        Some("gz-credit"),
        &[
            "--json",
            "grade",
            "assign",
            "--firm",
            &firm,
            "--domain",
            "food-drug",
            "--grade",
            "B",
        ],
    ));
    let g = ok_json(&node.xinyi(
        None,
        &[
            "--json",
            "grade",
            "show",
            "--firm",
            &firm,
            "--domain",
            "food-drug",
        ],
    ));
    assert_eq!(g["grade"], "b", "{g}");
    fails(
        &node.xinyi(
            Some("bank-a"),
            &[
                "grade", "assign", "--firm", &firm, "--domain", "tax", "--grade", "a",
            ],
        ),
        "HTTP 403",
    );

    // A firm's key cannot grant another firm's consent (refused before anything is sent).
    let grant_other = grant_args(&other, "bank-a", "tax", "1", "1");
    fails(
        &node.xinyi(Some(&fk), &grant_other),
        "granted by the firm itself",
    );
    // Signing as another firm with this firm's key: the node refuses the signature.
    let as_other = format!("firm:{other}");
    let o = node.xinyi(Some(&fk), &[vec!["--as", &as_other], grant_other].concat());
    fails(&o, "HTTP 401");

    // Unknown ids: 404 with the API's code.
    let zero = "00".repeat(32);
    fails(&node.xinyi(None, &["consent", "show", &zero]), "HTTP 404");
    fails(&node.xinyi(None, &["repair", "status", &zero]), "HTTP 404");

    // A query under an unknown consent is refused by the client: the request must name the
    // firm by its ledger tag, which the bank learns from the consent (specs/privacy.md §2).
    fails(
        &node.xinyi(
            Some("bank-a"),
            &[
                "query",
                "--consent",
                &zero,
                "--firm",
                &firm,
                "--categories",
                "tax",
            ],
        ),
        "consent.unknown",
    );
    let log = ok_json(&node.xinyi(
        Some(&fk),
        &["--json", "access-log", "--firm", &firm, "--verify"],
    ));
    assert_eq!(log["entries"].as_array().map(Vec::len), Some(0), "{log}");
    assert_eq!(log["verified"]["entries"], 0);

    // A firm cannot read another firm's access log.
    fails(
        &node.xinyi(Some(&fk), &["access-log", "--firm", &other]),
        "HTTP 403",
    );
}

#[test]
fn a_bank_sends_many_queries_in_one_batch_and_each_is_verified() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = DevNode::start(
        &tmp.path().join("data"),
        &tmp.path().join("node.log"),
        Duration::from_secs(60),
    );
    let grant = |i: u32, uses: &str| {
        let firm = sample_firm(i).expect("firm").to_string();
        let g = ok_json(&node.xinyi(
            Some(&format!("firm-{firm}")),
            &grant_args(&firm, "bank-a", "registration,tax", uses, "30"),
        ));
        g["id"].as_str().expect("consent id").to_string()
    };
    let (c1, c2) = (grant(3, "4"), grant(4, "1"));
    let file = tmp.path().join("batch.jsonl");
    let line =
        |c: &str, cats: &str| format!("{{\"consent\": \"{c}\", \"categories\": \"{cats}\"}}\n");
    std::fs::write(
        &file,
        [
            line(&c1, "tax"),
            line(&c2, "registration,tax"),
            line(&c1, "registration"),
        ]
        .concat(),
    )
    .expect("write");
    let batch = file.to_str().expect("utf-8");
    let v = ok_json(&node.xinyi(Some("bank-a"), &["--json", "query", "--batch", batch]));
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{v}");
    for r in results {
        // The client verified each: digest, logged record, inclusion in the signed checkpoint.
        assert_eq!(r["verified"]["response_digest"], true, "{r}");
        assert!(r["verified"]["checkpoint_size"].as_u64().unwrap() > 0);
    }
    assert!(results[1]["data"]["registration"].is_object(), "{v}");

    // Again: c2 has no use left, so one refusal (logged), the others served; exit 1.
    let o = node.xinyi(Some("bank-a"), &["query", "--batch", batch]);
    let out = xinyi_tests::cli::text(&o.stdout);
    // One result per line block, each starting its own line.
    let starts = |p: &str| out.lines().any(|l| l.starts_with(p));
    assert!(starts("[1] query served"), "{out}");
    assert!(starts("[2] refused: consent.exhausted"), "{out}");
    assert!(starts("[3] query served"), "{out}");
    assert!(out.contains("denial recorded at log position"), "{out}");
    fails(&o, "1 of 3 queries refused");

    // A malformed line is refused before anything is sent.
    std::fs::write(&file, "{\"consent\": 5}\n").expect("write");
    fails(
        &node.xinyi(Some("bank-a"), &["query", "--batch", batch]),
        "batch.jsonl:1: not a batch line",
    );
}
