//! Cluster mode in one process: four validators and a bank's follower, each a real
//! `cluster::run` (its own Commonware tokio runtime, sled store, libp2p sockets on 127.0.0.1
//! and HTTP server), driven over HTTP. Checks that writes submitted to any node (validator or
//! follower) commit on every node, that every node ends on the same head, and the cross-node
//! query path: the bank's follower forwards the signed request to the agency node, which
//! answers with the data only once the query record is final.
//! (Killing processes is tested with real processes in tests/tests/testnet.rs.)

mod support;

use serde_json::{json, Value};
use support::*;
use xinyi_ledger::entry::{Consent, EntryKind, QueryRequest};
use xinyi_ledger::note::{open_checkpoint, VerifierKey};
use xinyi_ledger::sample::{sample_firm, SampleConsortium};
use xinyi_ledger::Category;

fn start(dir: &std::path::Path, c: &SampleConsortium, nodes: &[&str], agency: &str) -> Vec<Member> {
    let mut members = vec![];
    for cfg in configs(dir, c, nodes, agency) {
        members.push(member(&cfg));
        let org = cfg.org.clone();
        std::thread::Builder::new()
            .name(format!("node-{org}"))
            .spawn(move || {
                if let Err(e) = xinyi_node::cluster::run(cfg) {
                    eprintln!("node {org} stopped: {e:#}");
                }
            })
            .unwrap();
    }
    wait_serving(&members);
    members
}

#[test]
fn four_validators_and_a_follower_agree_and_serve_queries_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let c = SampleConsortium::new(b"cluster-test", 4, now_ms() - 1_000);
    let nodes = ["gz-credit", "agency-2", "agency-3", "agency-4", "bank-a"];
    let m = start(dir.path(), &c, &nodes, "gz-credit");
    let roles: Vec<String> = m
        .iter()
        .map(|n| health(n)["role"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        roles,
        [
            "validator",
            "validator",
            "validator",
            "validator",
            "follower"
        ]
    );

    let verifiers: Vec<VerifierKey> = c
        .validators
        .iter()
        .map(|o| {
            VerifierKey::new(
                c.genesis.name.clone(),
                c.keys[o].public().verifying_key().unwrap(),
            )
            .unwrap()
        })
        .collect();

    // Firms registered by the agency, submitted to three different nodes (one a follower).
    let firms: Vec<_> = (0..3).map(|i| sample_firm(i).unwrap()).collect();
    let mut positions = vec![];
    let mut sent = vec![];
    for (i, f) in firms.iter().enumerate() {
        let e = c
            .org_entry(
                "gz-credit",
                now_ms(),
                i as u64,
                EntryKind::FirmRegistered {
                    firm: *f,
                    key: c.firm_key(f).public(),
                },
            )
            .unwrap();
        let node = &m[[1, 2, 4][i]];
        let (status, body) = post(&format!("{}/v1/entries", node.url), &write_body(&e));
        assert_eq!(status, 200, "{} via {}: {body}", f, node.org);
        // Even through the follower, the answer's checkpoint is a validator's and covers it.
        let (cp, _) = open_checkpoint(body["checkpoint"].as_str().unwrap(), &verifiers)
            .unwrap_or_else(|e| panic!("checkpoint from {}: {e}: {body}", node.org));
        assert!(cp.size > body["position"].as_u64().unwrap());
        assert_eq!(body["id"], e.id.to_hex());
        positions.push(body["position"].as_u64().unwrap());
        sent.push(e);
    }
    let first = sent[0].clone();

    // The same entry again (to another node) is a replay: refused, not committed twice.
    let (status, body) = post(&format!("{}/v1/entries", m[3].url), &write_body(&first));
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["code"], "state.replay", "{body}");

    // Consent by firm 0 for bank-a, through a validator that is not the agency.
    let t = now_ms();
    let consent = c
        .firm_entry(
            firms[0],
            t,
            7,
            EntryKind::ConsentGranted(Consent {
                bank: "bank-a".parse().unwrap(),
                purpose: "loan application".into(),
                categories: vec![Category::Registration, Category::Tax],
                not_before: t - 1_000,
                not_after: t + 86_400_000,
                max_uses: 2,
            }),
        )
        .unwrap();
    let (status, body) = post(&format!("{}/v1/consents", m[2].url), &write_body(&consent));
    assert_eq!(status, 200, "{body}");

    // The bank queries through its own follower; the agency node releases the data.
    let sq = c
        .signed_query(
            "bank-a",
            QueryRequest {
                bank: "bank-a".parse().unwrap(),
                firm: firms[0],
                consent: consent.id,
                categories: vec![Category::Tax],
                nonce: 1,
                time: now_ms(),
            },
        )
        .unwrap();
    let (status, body) = post(
        &format!("{}/v1/queries", m[4].url),
        &json!({ "request": sq }),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["tax"].is_object(), "{body}");
    let served_at = body["record"]["position"]
        .as_u64()
        .or_else(|| body["position"].as_u64())
        .expect("the answer names the record's position");

    // Every node converges on one head that includes the query record.
    wait_until("all nodes on one head", || {
        let hs: Vec<Value> = m.iter().map(health).collect();
        let heads: std::collections::BTreeSet<String> = hs
            .iter()
            .map(|h| h["head"].as_str().unwrap_or("").to_string())
            .collect();
        heads.len() == 1 && hs.iter().all(|h| h["log_size"].as_u64() > Some(served_at))
    });
    for n in &m {
        for p in positions.iter().chain([served_at].iter()) {
            let e = get(&format!("{}/v1/entries/{p}", n.url))
                .unwrap_or_else(|| panic!("{} lacks entry {p}", n.org));
            assert!(e.is_object(), "{}: {e}", n.org);
        }
    }
    // Validators gather each other's signatures on their checkpoint (a quorum, here 3 of 4).
    wait_until("a cosigned checkpoint", || {
        let note = ureq::get(&format!("{}/v1/checkpoint", m[0].url))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        open_checkpoint(&note, &verifiers).is_ok_and(|(_, signed)| signed.len() >= 3)
    });

    // The follower's status shows its peers (the view refreshes every second).
    wait_until("the follower to show its connected peers", || {
        let h = health(&m[4]);
        h["peers"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["connected"] == true).count())
            .unwrap_or(0)
            >= 4
    });
}
