//! Mutation fuzzing of every decoder and of proof verification (stable toolchain: no
//! cargo-fuzz, no coverage feedback). Each target has a corpus of valid inputs taken from the
//! spec vectors; an execution picks one, applies 1–4 random mutations (bit flips, random or
//! boundary bytes, inserted, deleted, duplicated or truncated ranges, splices with another
//! corpus input) and runs the target under `catch_unwind`. A panic is a failure: its input is
//! written to `--crashes DIR` and reported. Some targets also check an oracle (a proof that
//! verifies must be for the true leaf; a decoded value must re-encode to the input bytes).

use anyhow::{anyhow, bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;
use xinyi_ledger::block::{Block, CommitCertificate, CommitVote};
use xinyi_ledger::bundle::BundleReader;
use xinyi_ledger::entry::SignedQueryRequest;
use xinyi_ledger::merkle::{self, MerkleTree};
use xinyi_ledger::note::{Checkpoint, Note};
use xinyi_ledger::verify::verify_bundle;
use xinyi_ledger::{Entry, Genesis};
use xinyi_node::consensus::wire::Wire;
use xinyi_node::p2p::codec::{decode_header, encode_header, HEADER_LEN};

use crate::tamper::{BUNDLE, GENESIS};

/// Target names.
pub const TARGETS: &[&str] = &[
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
];

/// Result of one target's run.
#[derive(Debug, serde::Serialize)]
pub struct Run {
    /// Target.
    pub target: String,
    /// Executions.
    pub execs: u64,
    /// Inputs the target accepted.
    pub accepted: u64,
    /// Panics or oracle violations.
    pub crashes: u64,
    /// Seconds.
    pub seconds: f64,
    /// First failures (text).
    pub failures: Vec<String>,
}

const CHECKPOINTS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../specs/vectors/checkpoints.json"
));

struct Fixture {
    blocks: Vec<Vec<u8>>,
    certs: Vec<Vec<u8>>,
    entries: Vec<Vec<u8>>,
    notes: Vec<String>,
    leaves: Vec<[u8; 32]>,
    tree: MerkleTree,
    genesis: Genesis,
}

fn fixture() -> Result<Fixture> {
    let genesis = Genesis::from_json(GENESIS)?;
    let mut f = Fixture {
        blocks: vec![],
        certs: vec![],
        entries: vec![],
        notes: vec![],
        leaves: vec![],
        tree: MerkleTree::new(),
        genesis,
    };
    for item in BundleReader::new(BUNDLE)? {
        let (b, c) = item?;
        let block = Block::decode(&b)?;
        for e in &block.entries {
            let bytes: &[u8] = e.as_ref();
            f.leaves.push(merkle::leaf_hash(bytes));
            f.tree.append(bytes);
            f.entries.push(bytes.to_vec());
        }
        f.blocks.push(b);
        f.certs.push(c);
    }
    let v: serde_json::Value = serde_json::from_str(CHECKPOINTS)?;
    for k in ["cosigned_on_ledger", "head"] {
        if let Some(n) = v[k]["note"].as_str() {
            f.notes.push(n.to_string());
        }
    }
    if f.entries.is_empty() || f.notes.is_empty() {
        bail!("empty fixture");
    }
    Ok(f)
}

fn corpus(target: &str, f: &Fixture) -> Result<Vec<Vec<u8>>> {
    let b0 = Block::decode(&f.blocks[0])?;
    let c0 = CommitCertificate::decode(&f.certs[0])?;
    Ok(match target {
        "entry" => f.entries.clone(),
        "block" => f.blocks.clone(),
        "certificate" => f.certs.clone(),
        "genesis" => vec![GENESIS.to_vec()],
        "note" => f.notes.iter().map(|n| n.as_bytes().to_vec()).collect(),
        "checkpoint" => f
            .notes
            .iter()
            .filter_map(|n| Note::parse(n).ok())
            .map(|n| n.text.into_bytes())
            .collect(),
        "bundle" => vec![BUNDLE.to_vec()],
        "wire" => {
            let header_hash = b0.header.hash()?;
            let vote: CommitVote = c0
                .votes
                .first()
                .cloned()
                .ok_or_else(|| anyhow!("certificate without votes"))?;
            [
                Wire::Block(b0.clone()),
                Wire::Vote {
                    height: 1,
                    header_hash,
                    vote,
                },
                Wire::Certified(b0.clone(), c0.clone()),
                Wire::Want(header_hash),
                Wire::Sync(3),
                Wire::Checkpoint(f.notes[0].clone()),
            ]
            .iter()
            .map(|w| w.encode())
            .collect::<Result<Vec<_>, _>>()?
        }
        "frame" => vec![
            encode_header(0, 100).to_vec(),
            encode_header(7, 4 << 20).to_vec(),
            encode_header(u64::MAX, 0).to_vec(),
        ],
        "batch" => {
            let es: Vec<Entry> = f
                .entries
                .iter()
                .take(5)
                .map(|b| Entry::decode(b))
                .collect::<Result<_, _>>()?;
            vec![
                xinyi_node::cluster::encode_batch(&es),
                xinyi_node::cluster::encode_batch(&es[..1]),
            ]
        }
        "query-body" => {
            let c = xinyi_ledger::sample::SampleConsortium::new(b"fuzz", 1, 1_795_000_000_000);
            let req = xinyi_ledger::entry::QueryRequest {
                bank: xinyi_ledger::OrgId::new("bank-a")?,
                firm: c.firm_tag(1)?,
                consent: xinyi_ledger::Digest([7; 32]),
                categories: vec![
                    xinyi_ledger::Category::Registration,
                    xinyi_ledger::Category::Tax,
                ],
                nonce: 7,
                time: 1_795_000_001_000,
            };
            vec![serde_json::to_vec(&c.signed_query("bank-a", req)?)?]
        }
        "auth-header" => vec![
            b"org:bank-a;1795000001000;n1;00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".to_vec(),
            format!("firm:{};1795000001000;abc;{}", xinyi_ledger::sample::sample_firm(2)?, "ab".repeat(64))
                .into_bytes(),
        ],
        "inclusion-proof" => {
            let n = f.tree.size();
            let mut out = Vec::new();
            for (i, size) in [(0, n), (n - 1, n), (5, n), (3, 7)] {
                let proof = f.tree.inclusion_proof(i, size)?;
                let mut v = Vec::new();
                v.extend(i.to_be_bytes());
                v.extend(size.to_be_bytes());
                v.extend(f.leaves[i as usize]);
                for h in proof {
                    v.extend(h);
                }
                out.push(v);
            }
            out
        }
        "consistency-proof" => {
            let n = f.tree.size();
            let mut out = Vec::new();
            for (old, new) in [(1, n), (7, n), (8, 16), (n - 1, n)] {
                let proof = f.tree.consistency_proof(old, new)?;
                let mut v = Vec::new();
                v.extend(old.to_be_bytes());
                v.extend(new.to_be_bytes());
                for h in proof {
                    v.extend(h);
                }
                out.push(v);
            }
            out
        }
        other => bail!("unknown target {other} (targets: {})", TARGETS.join(", ")),
    })
}

fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

fn hashes(b: &[u8]) -> Option<Vec<[u8; 32]>> {
    if !b.len().is_multiple_of(32) {
        return None;
    }
    Some(
        b.chunks(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect(),
    )
}

/// Runs the target on one input. `Ok(true)` accepted, `Ok(false)` refused, `Err` = oracle
/// violation.
fn run_one(target: &str, f: &Fixture, input: &[u8]) -> Result<bool, String> {
    let ok = match target {
        "entry" => match Entry::decode(input) {
            Ok(e) if e.bytes != input => return Err("decoded entry re-encodes differently".into()),
            r => r.is_ok(),
        },
        "block" => match Block::decode(input) {
            Ok(b) if b.encode().ok().as_deref() != Some(input) => {
                return Err("block not canonical".into())
            }
            r => r.is_ok(),
        },
        "certificate" => match CommitCertificate::decode(input) {
            Ok(c) if c.encode().ok().as_deref() != Some(input) => {
                return Err("certificate not canonical".into())
            }
            r => r.is_ok(),
        },
        "genesis" => Genesis::from_json(input).is_ok(),
        "note" => match Note::parse_bytes(input) {
            Ok(n) => {
                let _ = Checkpoint::parse_text(&n.text);
                true
            }
            Err(_) => false,
        },
        "checkpoint" => Checkpoint::parse_text(&String::from_utf8_lossy(input)).is_ok(),
        "bundle" => {
            let r = verify_bundle(&f.genesis, input, |_, _| {});
            if r.is_ok() && input != BUNDLE {
                // Only a whitespace change in the bundled genesis JSON may pass.
                let g = BundleReader::new(input)
                    .ok()
                    .and_then(|r| Genesis::from_json(r.genesis()).ok());
                if g.map(|g| g.to_json()) != Some(f.genesis.to_json()) {
                    return Err("mutated bundle verified".into());
                }
            }
            r.is_ok()
        }
        "wire" => match Wire::decode(input) {
            Ok(w)
                if !matches!(w, Wire::Checkpoint(_))
                    && w.encode().ok().as_deref() != Some(input) =>
            {
                return Err("wire message not canonical".into())
            }
            r => r.is_ok(),
        },
        "frame" => {
            let Ok(h) = <[u8; HEADER_LEN]>::try_from(input) else {
                return Ok(false);
            };
            match decode_header(&h, 4 << 20) {
                Ok((_, len)) if len > 4 << 20 => return Err("length over the limit".into()),
                r => r.is_ok(),
            }
        }
        "batch" => xinyi_node::cluster::decode_batch(input).is_some(),
        "query-body" => serde_json::from_slice::<SignedQueryRequest>(input).is_ok(),
        "auth-header" => xinyi_node::api::auth::parse_auth(&String::from_utf8_lossy(input)).is_ok(),
        "inclusion-proof" => {
            let (Some(i), Some(size)) = (be64(input), input.get(8..).and_then(be64)) else {
                return Ok(false);
            };
            let Some(rest) = input.get(16..) else {
                return Ok(false);
            };
            let Some(hs) = hashes(rest) else {
                return Ok(false);
            };
            let Some((leaf, proof)) = hs.split_first() else {
                return Ok(false);
            };
            let root = f.tree.root_at(size).unwrap_or([0; 32]);
            let ok = merkle::verify_inclusion(leaf, i, size, proof, &root).is_ok();
            if ok && (size > f.tree.size() || f.leaves.get(i as usize) != Some(leaf)) {
                return Err(format!(
                    "proof verified for a leaf not at index {i} of size {size}"
                ));
            }
            ok
        }
        "consistency-proof" => {
            let (Some(old), Some(new)) = (be64(input), input.get(8..).and_then(be64)) else {
                return Ok(false);
            };
            let Some(hs) = input.get(16..).and_then(hashes) else {
                return Ok(false);
            };
            let n = f.tree.size();
            // Sizes beyond the tree get a root no tree has (all zeros): accepting one is a bug.
            let root = |s: u64| f.tree.root_at(s).unwrap_or([0; 32]);
            let (old_root, new_root) = (root(old), root(new));
            let ok = merkle::verify_consistency(old, new, &old_root, &new_root, &hs).is_ok();
            if ok && old != new && (old > n || new > n) {
                return Err(format!(
                    "consistency {old}->{new} verified beyond the tree ({n})"
                ));
            }
            ok
        }
        other => return Err(format!("unknown target {other}")),
    };
    Ok(ok)
}

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x9f, 0xbf,
];

fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&corpus[rng.gen_range(0..corpus.len())]);
    for _ in 0..rng.gen_range(1..=4) {
        let len = out.len();
        match rng.gen_range(0..9) {
            0 if len > 0 => {
                let p = rng.gen_range(0..len);
                out[p] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let p = rng.gen_range(0..len);
                out[p] = rng.gen();
            }
            2 if len > 0 => {
                let p = rng.gen_range(0..len);
                out[p] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            }
            3 => {
                let p = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=16);
                for _ in 0..n {
                    out.insert(p, rng.gen());
                }
            }
            4 if len > 1 => {
                let a = rng.gen_range(0..len);
                let b = (a + rng.gen_range(1..=16)).min(len);
                out.drain(a..b);
            }
            5 if len > 1 => {
                let a = rng.gen_range(0..len);
                let b = (a + rng.gen_range(1..=32)).min(len);
                let chunk = out[a..b].to_vec();
                let p = rng.gen_range(0..=len);
                out.splice(p..p, chunk);
            }
            6 if len > 0 => {
                out.truncate(rng.gen_range(0..len));
            }
            7 => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                if !other.is_empty() && len > 0 {
                    let cut = rng.gen_range(0..len);
                    let from = rng.gen_range(0..other.len());
                    out.truncate(cut);
                    out.extend_from_slice(&other[from..]);
                }
            }
            _ if len >= 4 => {
                // A 4-byte big-endian length-like field set to a boundary value.
                let p = rng.gen_range(0..len - 3);
                let v: u32 =
                    [0, 1, 0x7fff_ffff, 0xffff_ffff, 1 << 20, 64 << 20][rng.gen_range(0..6)];
                out[p..p + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ => out.push(rng.gen()),
        }
    }
}

/// Fuzzes `target` for `execs` executions (or until `seconds` elapse, if given).
pub fn run(
    target: &str,
    execs: u64,
    seconds: Option<f64>,
    seed: u64,
    crashes: Option<&Path>,
) -> Result<Run> {
    let f = fixture()?;
    let corpus = corpus(target, &f)?;
    // Every corpus input must be accepted: otherwise the target tests nothing.
    for (i, c) in corpus.iter().enumerate() {
        if run_one(target, &f, c) != Ok(true) {
            bail!("{target}: corpus input {i} is not accepted");
        }
    }
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut r = Run {
        target: target.to_string(),
        execs: 0,
        accepted: 0,
        crashes: 0,
        seconds: 0.0,
        failures: vec![],
    };
    let mut input = Vec::with_capacity(16 << 10);
    while r.execs < execs {
        if r.execs.is_multiple_of(1024) {
            if let Some(s) = seconds {
                if start.elapsed().as_secs_f64() >= s {
                    break;
                }
            }
        }
        mutate(&mut rng, &corpus, &mut input);
        r.execs += 1;
        let out = catch_unwind(AssertUnwindSafe(|| run_one(target, &f, &input)));
        let failure = match out {
            Ok(Ok(true)) => {
                r.accepted += 1;
                None
            }
            Ok(Ok(false)) => None,
            Ok(Err(m)) => Some(m),
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            )),
        };
        if let Some(m) = failure {
            r.crashes += 1;
            if r.failures.len() < 10 {
                r.failures.push(format!(
                    "{m} (input {})",
                    hex::encode(&input[..input.len().min(64)])
                ));
            }
            if let Some(dir) = crashes {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join(format!("{target}-{}", r.execs)), &input)?;
            }
        }
    }
    std::panic::set_hook(prev);
    r.seconds = start.elapsed().as_secs_f64();
    Ok(r)
}
