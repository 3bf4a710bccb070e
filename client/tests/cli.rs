//! Process-level tests of the `xinyi` binary that need no node: argument and input errors
//! (exit codes, one-line messages), key generation, offline proof verification and offline
//! audit of bundles built here with the ledger's sample consortium.
//!
//! The end-to-end scenario against a real node is in the `xinyi-tests` crate.

use std::path::Path;
use std::process::{Command, Output};
use xinyi_ledger::chain::{Chain, CommittedBlock};
use xinyi_ledger::entry::{Consent, EntryKind, QueryRecord, QueryRequest};
use xinyi_ledger::hash::{self, Domain};
use xinyi_ledger::note::{sign_checkpoint, Checkpoint, NoteSigner};
use xinyi_ledger::sample::SampleConsortium;
use xinyi_ledger::types::{Category, OrgId, TimeMs, DAY_MS};
use xinyi_ledger::{Entry, Uscc};

const T0: TimeMs = 1_795_000_000_000;
const CONSENT: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn xinyi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xinyi"))
        .args(args)
        .env_remove("XINYI_KEY")
        .env_remove("XINYI_GENESIS")
        // Nothing listens here: commands that reach the network fail fast.
        .env("XINYI_NODE", "http://127.0.0.1:9")
        .output()
        .expect("run xinyi")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Exit code 1 and exactly one line `error: ...` on stderr containing `needle`.
fn assert_one_line_error(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {e}");
    assert_eq!(e.lines().count(), 1, "not one line: {e:?}");
    assert!(e.starts_with("error: "), "{e:?}");
    assert!(e.contains(needle), "{e:?} lacks {needle:?}");
}

fn firm(i: u32) -> Uscc {
    SampleConsortium::firm(i).unwrap()
}

fn write_key(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, xinyi_ledger::KeyPair::generate().to_file_text()).unwrap();
    p.display().to_string()
}

#[test]
fn bad_uscc_is_one_line_exit_1() {
    let d = tempfile::tempdir().unwrap();
    let f = firm(1).to_string();
    let key = write_key(d.path(), &format!("firm-{f}.key"));
    let mut bad = f.clone();
    bad.replace_range(17..18, if f.ends_with('0') { "1" } else { "0" });
    let o = xinyi(&[
        "--key",
        &key,
        "consent",
        "grant",
        "--firm",
        &bad,
        "--bank",
        "bank-a",
        "--categories",
        "tax",
        "--uses",
        "1",
        "--days",
        "1",
    ]);
    assert_one_line_error(&o, "uscc.check_char");
    let o = xinyi(&["records", "--firm", "12345"]);
    assert_one_line_error(&o, "uscc.length");
}

#[test]
fn missing_key_file_is_one_line_exit_1() {
    let f = firm(1).to_string();
    let o = xinyi(&[
        "--key",
        "/nonexistent/dir/bank-a.key",
        "query",
        "--consent",
        CONSENT,
        "--firm",
        &f,
        "--categories",
        "tax",
    ]);
    assert_one_line_error(&o, "cannot read key file /nonexistent/dir/bank-a.key");
    let o = xinyi(&[
        "query",
        "--consent",
        CONSENT,
        "--firm",
        &f,
        "--categories",
        "tax",
    ]);
    assert_one_line_error(&o, "needs a signing key");
}

#[test]
fn malformed_key_and_unknown_identity() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bank-a.key");
    std::fs::write(&p, "not a key\n").unwrap();
    let f = firm(1).to_string();
    let args = |k: &str| {
        vec![
            "--key".to_string(),
            k.to_string(),
            "query".into(),
            "--consent".into(),
            CONSENT.into(),
            "--firm".into(),
            f.clone(),
            "--categories".into(),
            "tax".into(),
        ]
    };
    let a = args(&p.display().to_string());
    let o = xinyi(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&o, "xinyi-ed25519-secret");
    let k = write_key(d.path(), "Some Key.key");
    let a = args(&k);
    let o = xinyi(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&o, "--as");
    // A firm key cannot sign a bank query.
    let k = write_key(d.path(), &format!("firm-{f}.key"));
    let a = args(&k);
    let o = xinyi(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&o, "organisation");
}

#[test]
fn unknown_category_is_one_line_exit_1() {
    let d = tempfile::tempdir().unwrap();
    let key = write_key(d.path(), "bank-a.key");
    let f = firm(1).to_string();
    let o = xinyi(&[
        "--key",
        &key,
        "query",
        "--consent",
        CONSENT,
        "--firm",
        &f,
        "--categories",
        "tax,salary",
    ]);
    assert_one_line_error(&o, "unknown category \"salary\"");
}

#[test]
fn usage_errors_exit_2_and_bad_ids_exit_1() {
    let o = xinyi(&["consent", "grant", "--bank", "bank-a"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = xinyi(&[
        "repair",
        "decide",
        CONSENT,
        "--approve",
        "--reject",
        "--reason",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = xinyi(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = xinyi(&["consent", "show", "xyz"]);
    assert_one_line_error(&o, "invalid consent id");
    let o = xinyi(&["audit", "verify", "--bundle", "/nonexistent.bundle"]);
    assert_one_line_error(&o, "--genesis");
}

#[test]
fn unreachable_node_is_one_line_exit_1() {
    let o = xinyi(&["status"]);
    assert_one_line_error(&o, "cannot reach the node at http://127.0.0.1:9");
}

#[test]
fn keygen_writes_0600_and_refuses_to_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("new.key");
    let ps = p.display().to_string();
    let o = xinyi(&["keygen", "--out", &ps]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(xinyi_ledger::KeyPair::from_file_text(&text).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let o = xinyi(&["keygen", "--out", &ps]);
    assert_one_line_error(&o, "refusing to overwrite");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
}

/// A small chain: registrations, a consent, served queries, a revocation, over five blocks.
struct Built {
    c: SampleConsortium,
    chain: Chain,
    blocks: Vec<CommittedBlock>,
    entries: Vec<Entry>,
}

fn build_chain() -> Built {
    let c = SampleConsortium::new(b"client-cli-test", 1, T0);
    let (mut chain, _) = Chain::from_genesis(&c.genesis).unwrap();
    let mut blocks = Vec::new();
    let mut all = Vec::new();
    let mut now = T0 + 1000;
    let mut nonce = 0u64;
    let mut next = || {
        nonce += 1;
        nonce
    };
    let f = firm(7);
    let mut commit = |chain: &mut Chain, now: &mut TimeMs, entries: Vec<Entry>| {
        *now += 10;
        let (block, dropped) = chain
            .build_block(*now, OrgId::new("gz-credit").unwrap(), entries.clone())
            .unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        let cert = c.certify(&block).unwrap();
        blocks.push(chain.commit_built(cert).unwrap());
        all.extend(entries);
    };
    let reg = c.registration("gz-credit", &f, now, next()).unwrap();
    commit(&mut chain, &mut now, vec![reg]);
    let consent = c
        .firm_entry(
            f,
            now,
            next(),
            EntryKind::ConsentGranted(Consent {
                bank: OrgId::new("bank-a").unwrap(),
                purpose: Consent::purpose_digest(&[0x5a; 32], "loan application"),
                categories: vec![Category::Registration, Category::Tax],
                not_before: now - 1000,
                not_after: now + 30 * DAY_MS,
                max_uses: 10,
                monitoring: None,
            }),
        )
        .unwrap();
    let cid = consent.id;
    commit(&mut chain, &mut now, vec![consent]);
    for _ in 0..2 {
        let mut es = Vec::new();
        for _ in 0..3 {
            let req = QueryRequest {
                bank: OrgId::new("bank-a").unwrap(),
                firm: c.tag(&f),
                consent: cid,
                categories: vec![Category::Tax],
                nonce: next(),
                time: now,
            };
            let signed = c.signed_query("bank-a", req).unwrap();
            es.push(
                c.org_entry(
                    "gz-credit",
                    now,
                    next(),
                    EntryKind::QueryServed(QueryRecord {
                        request: signed,
                        response: hash::tagged(Domain::Data, &[b"response"]),
                        records: vec![],
                    }),
                )
                .unwrap(),
            );
        }
        commit(&mut chain, &mut now, es);
    }
    let rev = c
        .firm_entry(f, now, next(), EntryKind::ConsentRevoked { consent: cid })
        .unwrap();
    commit(&mut chain, &mut now, vec![rev]);
    Built {
        c,
        chain,
        blocks,
        entries: all,
    }
}

impl Built {
    fn bundle(&self) -> Vec<u8> {
        xinyi_ledger::bundle::bundle_of(&self.c.genesis, &self.blocks).unwrap()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("entry bytes in bundle")
}

#[test]
fn audit_verify_bundle_passes_and_a_flipped_byte_fails_naming_block_and_entry() {
    let b = build_chain();
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("genesis.json");
    std::fs::write(&g, b.c.genesis.to_json()).unwrap();
    let bundle = b.bundle();
    let bp = d.path().join("chain.bundle");
    std::fs::write(&bp, &bundle).unwrap();
    let (gs, bs) = (g.display().to_string(), bp.display().to_string());

    let o = xinyi(&["audit", "verify", "--bundle", &bs, "--genesis", &gs]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.contains("audit verify: OK"), "{out}");
    assert!(out.contains("blocks        5"), "{out}");
    assert!(out.contains("query_served"), "{out}");
    assert!(out.contains(&b.chain.state_head().root.to_hex()), "{out}");

    let o = xinyi(&[
        "--json",
        "audit",
        "verify",
        "--bundle",
        &bs,
        "--genesis",
        &gs,
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"], 9);
    assert_eq!(v["entries_by_kind"]["query_served"], 6);
    assert_eq!(v["head_hash"], b.chain.head_hash().to_hex());

    // Flip one byte in the middle of the second query record of block 4 (entry index 1).
    let target = &b.blocks[3].entries[1].bytes;
    let at = find(&bundle, target) + target.len() / 2;
    let mut bad = bundle.clone();
    bad[at] ^= 0x01;
    let badp = d.path().join("bad.bundle");
    std::fs::write(&badp, &bad).unwrap();
    let o = xinyi(&[
        "audit",
        "verify",
        "--bundle",
        &badp.display().to_string(),
        "--genesis",
        &gs,
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.lines().count(), 1, "{e:?}");
    assert!(e.contains("at block 4, entry 1"), "{e}");

    // A flipped byte in a signature (last byte of an entry) is named too.
    let target = &b.blocks[1].entries[0].bytes;
    let at = find(&bundle, target) + target.len() - 1;
    let mut bad = bundle.clone();
    bad[at] ^= 0x80;
    std::fs::write(&badp, &bad).unwrap();
    let o = xinyi(&[
        "--json",
        "audit",
        "verify",
        "--bundle",
        &badp.display().to_string(),
        "--genesis",
        &gs,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], "failed");
    assert_eq!(v["height"], 2);
    assert_eq!(v["entry"], 0);

    // Truncation and a foreign genesis are reported too.
    std::fs::write(&badp, &bundle[..bundle.len() - 20]).unwrap();
    let o = xinyi(&[
        "audit",
        "verify",
        "--bundle",
        &badp.display().to_string(),
        "--genesis",
        &gs,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
    let other = SampleConsortium::new(b"other", 1, T0);
    let og = d.path().join("other.json");
    std::fs::write(&og, other.genesis.to_json()).unwrap();
    let o = xinyi(&[
        "audit",
        "verify",
        "--bundle",
        &bs,
        "--genesis",
        &og.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("verify.genesis_mismatch"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn offline_proof_verify() {
    let b = build_chain();
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("genesis.json");
    std::fs::write(&g, b.c.genesis.to_json()).unwrap();
    let size = b.chain.log().size();
    let pos = 4u64;
    let entry = &b.entries[pos as usize];
    let proof: Vec<String> = b
        .chain
        .log()
        .inclusion_proof(pos, size)
        .unwrap()
        .iter()
        .map(hex::encode)
        .collect();
    let signer = NoteSigner::new(
        b.c.genesis.name.clone(),
        b.c.key("gz-credit").unwrap().signing_key().clone(),
    )
    .unwrap();
    let note = sign_checkpoint(
        &Checkpoint {
            origin: b.c.genesis.name.clone(),
            size,
            root: b.chain.log().root(),
            extensions: vec![],
        },
        &[&signer],
    )
    .unwrap();
    let (ep, pp, cp) = (
        d.path().join("entry.bin"),
        d.path().join("proof.json"),
        d.path().join("checkpoint.txt"),
    );
    std::fs::write(&ep, &entry.bytes).unwrap();
    std::fs::write(
        &pp,
        serde_json::json!({"position": pos, "inclusion_proof": proof}).to_string(),
    )
    .unwrap();
    std::fs::write(&cp, &note).unwrap();
    let run = |genesis: &Path| {
        xinyi(&[
            "--genesis",
            &genesis.display().to_string(),
            "proof",
            "verify",
            "--entry",
            &ep.display().to_string(),
            "--proof",
            &pp.display().to_string(),
            "--checkpoint",
            &cp.display().to_string(),
        ])
    };
    let o = run(&g);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "verified: entry {pos} included in checkpoint of size {size}"
        )),
        "{out}"
    );

    // Another entry at that position does not verify.
    std::fs::write(&ep, &b.entries[5].bytes).unwrap();
    let o = run(&g);
    assert_one_line_error(&o, "proof.inclusion");
    std::fs::write(&ep, &entry.bytes).unwrap();

    // A checkpoint signed by a key outside the genesis is refused.
    let other = SampleConsortium::new(b"other", 1, T0);
    let og = d.path().join("other.json");
    std::fs::write(&og, other.genesis.to_json()).unwrap();
    let o = run(&og);
    assert_one_line_error(&o, "checkpoint.invalid");
}
