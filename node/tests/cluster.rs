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
    // RUST_LOG=info shows every node's log (interleaved) on failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut members = vec![];
    for cfg in configs(dir, c, nodes, agency) {
        members.push(spawn_member(cfg));
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
        let e = c.registration("gz-credit", f, now_ms(), i as u64).unwrap();
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
                purpose: Consent::purpose_digest(&[0x5a; 32], "loan application"),
                categories: vec![Category::Registration, Category::Tax],
                not_before: t - 1_000,
                not_after: t + 86_400_000,
                max_uses: 2,
                monitoring: None,
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
                firm: c.tag(&firms[0]),
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

/// Validator-set epochs: a quorum-approved membership entry makes the bank's follower a
/// validator from a given height on. The running engines stop at the last block of their
/// epoch, every member starts the next epoch's engine with the new set (the bank's node now
/// validates), the chain goes on, and blocks of the new epoch carry the bank's commit vote.
#[test]
fn a_membership_change_starts_a_new_epoch_with_the_new_validator_set() {
    use xinyi_ledger::entry::{Approval, MemberChange, MembershipChange, MembershipProposal};
    use xinyi_ledger::keys::SigDomain;
    let dir = tempfile::tempdir().unwrap();
    let c = SampleConsortium::new(b"epoch-test", 4, now_ms() - 1_000);
    let nodes = ["gz-credit", "agency-2", "agency-3", "agency-4", "bank-a"];
    let m = start(dir.path(), &c, &nodes, "gz-credit");
    assert_eq!(health(&m[4])["role"], "follower");

    let height = health(&m[0])["height"].as_u64().unwrap();
    let effective = height + 30;
    let proposal = MembershipProposal {
        change: MemberChange::SetPower {
            org: "bank-a".parse().unwrap(),
            power: 1,
        },
        effective_height: effective,
    };
    let payload = xinyi_ledger::entry::membership_signing_payload(&c.chain, &proposal).unwrap();
    let mut approvals: Vec<Approval> = c
        .validators
        .iter()
        .take(3)
        .map(|o| Approval {
            validator: o.clone(),
            signature: c.keys[o].sign(SigDomain::Membership, &payload),
        })
        .collect();
    approvals.sort_by(|a, b| a.validator.cmp(&b.validator));
    let e = c
        .org_entry(
            "gz-credit",
            now_ms(),
            99,
            EntryKind::Membership(MembershipChange {
                proposal,
                approvals,
            }),
        )
        .unwrap();
    let (status, body) = post(&format!("{}/v1/entries", m[1].url), &write_body(&e));
    assert_eq!(status, 200, "{body}");
    assert!(body["height"].as_u64().unwrap() < effective, "{body}");

    wait_until("the bank's node to validate in the new epoch", || {
        let h = health(&m[4]);
        let hs: Vec<String> = m
            .iter()
            .map(|n| {
                let x = health(n);
                format!(
                    "{}:{}:{}:{}",
                    n.org, x["role"], x["height"], x["p2p"]["epoch"]
                )
            })
            .collect();
        eprintln!("effective {effective}: {}", hs.join(" "));
        h["role"] == "validator"
            && m.iter()
                .all(|n| health(n)["height"].as_u64() > Some(effective + 3))
    });
    // Blocks of the new epoch are certified with the bank's vote among others. A certificate
    // holds the votes that arrived until the quorum, so the first new-epoch blocks may be
    // certified without the newcomer; wait (bounded) until some block from `effective` on
    // carries its vote.
    let votes_of = |h: u64| -> Option<Vec<String>> {
        let b = get(&format!("{}/v1/blocks/{h}", m[0].url))?;
        Some(
            b["certificate"]["votes"]
                .as_array()?
                .iter()
                .map(|v| v["validator"].as_str().unwrap_or("").to_string())
                .collect(),
        )
    };
    let mut next = effective;
    wait_until("a new-epoch certificate carrying bank-a's vote", || {
        while let Some(voters) = votes_of(next) {
            next += 1;
            if voters.iter().any(|v| v == "bank-a") {
                return true;
            }
        }
        false
    });
    // Writes still commit everywhere, including through the new validator.
    let f = sample_firm(0).unwrap();
    let e = c.registration("gz-credit", &f, now_ms(), 100).unwrap();
    let (status, body) = post(&format!("{}/v1/entries", m[4].url), &write_body(&e));
    assert_eq!(status, 200, "{body}");
    let p = body["position"].as_u64().unwrap();
    wait_until("the write on every node", || {
        m.iter()
            .all(|n| get(&format!("{}/v1/entries/{p}", n.url)).is_some_and(|e| e.is_object()))
    });
}
