//! Tamper detection: random byte mutations of a node's sled files and of an audit bundle.
//!
//! The reference chain is the spec vector `specs/vectors/chain.bundle` (12 blocks, 30 entries,
//! every entry kind) with its genesis. For the store, the chain is applied block by block into
//! a fresh sled store through `Chain::apply_block` + `Store::append` (what a node does), the
//! store is closed and its files read into memory. Each trial writes the files back into a
//! scratch directory with one random mutation, opens the store and reads back everything a
//! node serves (every header, certificate, block, entry, the whole state, the per-firm and
//! per-organisation indexes). Outcomes:
//!
//! - **detected**: opening or a read fails with a typed error (the message names the place);
//! - **unchanged**: everything read back is byte-identical to the reference (the byte was in
//!   sled's free space or in a superseded page);
//! - **silent**: something read back differs and nothing complained — a failure;
//! - **panic**: the store or sled panicked — a failure.
//!
//! For bundles every mutation must make `verify_bundle` fail; the one exception counted
//! separately is a change inside the genesis JSON that parses to the identical genesis
//! (whitespace), for which the verifier's report must equal the reference report.

use anyhow::{anyhow, bail, Context as _, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use xinyi_ledger::block::{Block, CommitCertificate};
use xinyi_ledger::bundle::BundleReader;
use xinyi_ledger::store::{Store, StoreError};
use xinyi_ledger::verify::{verify_bundle, VerifyReport};
use xinyi_ledger::{FirmTag, Genesis};

/// The reference bundle (spec vector).
pub const BUNDLE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../specs/vectors/chain.bundle"
));
/// Its trusted genesis.
pub const GENESIS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../specs/vectors/genesis.json"
));

/// Counts of one run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Tally {
    /// Mutations tried.
    pub mutations: u64,
    /// Refused with an error.
    pub detected: u64,
    /// Content byte-identical to the reference (free space, superseded pages).
    pub unchanged: u64,
    /// Bundles only: genesis JSON re-parsed to the identical genesis, identical report.
    pub equivalent: u64,
    /// Accepted with different content: failures.
    pub silent: u64,
    /// Panics: failures.
    pub panics: u64,
    /// Error codes seen, with counts.
    pub codes: BTreeMap<String, u64>,
    /// Up to 10 examples of failures (silent or panic).
    pub failures: Vec<String>,
    /// Up to 5 examples of detection messages.
    pub examples: Vec<String>,
}

impl Tally {
    fn detected(&mut self, code: &str, msg: String) {
        self.detected += 1;
        *self.codes.entry(code.to_string()).or_default() += 1;
        if self.examples.len() < 5 && !self.examples.iter().any(|e| e.starts_with(code)) {
            self.examples.push(format!("{code}: {msg}"));
        }
    }
    fn fail(&mut self, what: String) {
        if self.failures.len() < 10 {
            self.failures.push(what);
        }
    }
    /// True when nothing was silently accepted and nothing panicked.
    pub fn ok(&self) -> bool {
        self.silent == 0 && self.panics == 0
    }
}

/// One random mutation: mostly a single byte XOR a non-zero value, sometimes several bytes, a
/// deleted byte or an inserted byte. Returns a description.
fn mutate(rng: &mut StdRng, data: &mut Vec<u8>, resize: bool) -> String {
    if data.is_empty() {
        data.push(rng.gen());
        return "insert into empty".into();
    }
    let pick = rng.gen_range(0..10u32);
    match pick {
        0 if resize => {
            let at = rng.gen_range(0..data.len());
            data.remove(at);
            format!("delete byte {at}")
        }
        1 if resize => {
            let at = rng.gen_range(0..=data.len());
            data.insert(at, rng.gen());
            format!("insert byte at {at}")
        }
        2 | 3 => {
            let n = rng.gen_range(2..=8);
            let mut at = Vec::new();
            for _ in 0..n {
                let p = rng.gen_range(0..data.len());
                data[p] ^= rng.gen_range(1..=255u8);
                at.push(p);
            }
            format!("xor bytes {at:?}")
        }
        _ => {
            let p = rng.gen_range(0..data.len());
            let x = rng.gen_range(1..=255u8);
            data[p] ^= x;
            format!("xor byte {p} with {x:#04x}")
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Mutates the reference bundle `n` times; every mutation must be refused by the verifier.
pub fn bundles(n: u64, seed: u64) -> Result<Tally> {
    let trusted = Genesis::from_json(GENESIS).context("vector genesis")?;
    let reference = verify_bundle(&trusted, BUNDLE, |_, _| {}).context("reference bundle")?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tally::default();
    for _ in 0..n {
        let mut data = BUNDLE.to_vec();
        let what = mutate(&mut rng, &mut data, true);
        if data == BUNDLE {
            continue;
        }
        t.mutations += 1;
        let r = catch_unwind(AssertUnwindSafe(|| {
            verify_bundle(&trusted, data.as_slice(), |_, _| {})
        }));
        match r {
            Err(p) => {
                t.panics += 1;
                t.fail(format!("bundle {what}: panic {}", panic_text(p)));
            }
            Ok(Err(e)) => {
                let at = match (e.height(), e.entry()) {
                    (Some(h), Some(i)) => format!(" (height {h}, entry {i})"),
                    (Some(h), None) => format!(" (height {h})"),
                    _ => String::new(),
                };
                t.detected(e.code(), format!("{e}{at}"));
            }
            Ok(Ok(report)) => {
                if same_report(&report, &reference) && genesis_equivalent(&data, &trusted) {
                    t.equivalent += 1;
                } else {
                    t.silent += 1;
                    t.fail(format!("bundle {what}: accepted"));
                }
            }
        }
    }
    Ok(t)
}

fn same_report(a: &VerifyReport, b: &VerifyReport) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// The bundle's genesis frame parses to the trusted genesis.
fn genesis_equivalent(bundle: &[u8], trusted: &Genesis) -> bool {
    BundleReader::new(bundle)
        .ok()
        .and_then(|r| Genesis::from_json(r.genesis()).ok())
        .map(|g| g.to_json() == trusted.to_json())
        .unwrap_or(false)
}

/// Everything a node reads from its store, as bytes.
#[derive(PartialEq, Eq)]
struct Dump(Vec<Vec<u8>>);

fn dump(dir: &Path, firms: &[FirmTag], genesis: &Genesis) -> Result<Dump, StoreError> {
    // sled's background threads may hold the previous instance's file lock for a moment after
    // it is dropped; only that error is retried.
    let mut tries = 0;
    let (store, chain) = loop {
        match Store::open(dir) {
            Err(StoreError::Io(e)) if tries < 100 && e.to_string().contains("acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r?,
        }
    };
    let mut out = Vec::new();
    let height = store.height()?;
    out.push(height.to_be_bytes().to_vec());
    out.push(chain.state_head().root.0.to_vec());
    out.push(chain.head_hash().0.to_vec());
    out.push(chain.log().size().to_be_bytes().to_vec());
    for h in 1..=height {
        let hd = store
            .header(h)?
            .ok_or_else(|| missing(format!("header of block {h}")))?;
        out.push(hd.encode()?);
        let c = store
            .certificate(h)?
            .ok_or_else(|| missing(format!("certificate of block {h}")))?;
        out.push(xinyi_ledger::codec::encode(&c)?);
        let (b, _) = store
            .block(h)?
            .ok_or_else(|| missing(format!("block {h}")))?;
        out.push(b.encode()?);
    }
    for p in 0..chain.log().size() {
        let e = store
            .entry(p)?
            .ok_or_else(|| missing(format!("entry {p}")))?;
        out.push(e);
        out.push(
            store
                .height_of_position(p)?
                .unwrap_or(u64::MAX)
                .to_be_bytes()
                .to_vec(),
        );
    }
    for (k, v) in chain.state().iter() {
        out.push(k.clone());
        out.push(v.clone());
    }
    for f in firms {
        let ps = store.firm_positions(f, None, usize::MAX)?;
        out.push(ps.iter().flat_map(|p| p.to_be_bytes()).collect());
    }
    for o in &genesis.orgs {
        let ps = store.org_positions(&o.id, None, usize::MAX)?;
        out.push(ps.iter().flat_map(|p| p.to_be_bytes()).collect());
    }
    drop(store);
    Ok(Dump(out))
}

/// What differs between two dumps, in words.
fn diff(got: &Dump, want: &Dump) -> String {
    let h = |d: &Dump| {
        d.0.first()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    };
    if h(got) != h(want) {
        return format!("height {} instead of {}", h(got), h(want));
    }
    match got.0.iter().zip(&want.0).position(|(a, b)| a != b) {
        Some(i) => format!("item {i} of {} differs", want.0.len()),
        None => format!("{} items instead of {}", got.0.len(), want.0.len()),
    }
}

fn missing(location: String) -> StoreError {
    StoreError::Corrupt {
        location,
        reason: "missing".into(),
    }
}

fn read_tree(root: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root)?.to_path_buf();
                out.push((rel, std::fs::read(&p)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn write_tree(root: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }
    for (rel, bytes) in files {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
    }
    Ok(())
}

/// Builds the reference store from the vector bundle in `dir`; returns the firms it concerns.
fn build_store(dir: &Path, genesis: &Genesis) -> Result<Vec<FirmTag>> {
    let (store, mut chain) = Store::open_or_create(dir, genesis)?;
    let reader = BundleReader::new(BUNDLE)?;
    let mut firms = Vec::new();
    for item in reader {
        let (b, c) = item?;
        let block = Block::decode(&b)?;
        let cert = CommitCertificate::decode(&c)?;
        let committed = chain.apply_block(block, cert).map_err(|e| anyhow!("{e}"))?;
        for f in committed.firms.iter().flatten() {
            if !firms.contains(f) {
                firms.push(*f);
            }
        }
        store.append(&committed)?;
    }
    store.close()?;
    Ok(firms)
}

/// Mutates a sled store `n` times (`work` is a scratch directory).
pub fn stores(n: u64, seed: u64, work: &Path) -> Result<Tally> {
    let genesis = Genesis::from_json(GENESIS).context("vector genesis")?;
    let reference_dir = work.join("reference");
    if reference_dir.exists() {
        std::fs::remove_dir_all(&reference_dir)?;
    }
    let firms = build_store(&reference_dir, &genesis)?;
    let files = read_tree(&reference_dir)?;
    let reference = match dump(&reference_dir, &firms, &genesis) {
        Ok(d) => d,
        Err(e) => bail!("reference store does not read back: {e}"),
    };
    // Opening may have rewritten sled files (recovery, snapshot); start every trial from the
    // files as they were after the close, and check the untouched copy reads back identical.
    let scratch = work.join("trial");
    write_tree(&scratch, &files)?;
    if dump(&scratch, &firms, &genesis).ok() != Some(reference) {
        bail!("an unmodified copy of the store does not read back identically");
    }
    let reference = dump(&reference_dir, &firms, &genesis).map_err(|e| anyhow!("{e}"))?;
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    if total == 0 {
        bail!("empty store");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tally::default();
    for _ in 0..n {
        // A file weighted by size, then a mutation inside it (sizes kept: sled files have
        // fixed layouts; growing or shrinking one is a different experiment).
        let mut at = rng.gen_range(0..total);
        let mut fi = 0;
        while at >= files[fi].1.len() {
            at -= files[fi].1.len();
            fi += 1;
        }
        let mut mutated = files.clone();
        let what = mutate(&mut rng, &mut mutated[fi].1, false);
        let what = format!("{} {what}", files[fi].0.display());
        if mutated[fi].1 == files[fi].1 {
            continue;
        }
        t.mutations += 1;
        let trial = work.join(format!("trial-{}", t.mutations));
        write_tree(&trial, &mutated)?;
        let r = catch_unwind(AssertUnwindSafe(|| dump(&trial, &firms, &genesis)));
        std::fs::remove_dir_all(&trial).ok();
        match r {
            Err(p) => {
                t.panics += 1;
                t.fail(format!("store {what}: panic {}", panic_text(p)));
            }
            Ok(Err(e)) => t.detected(e.code(), e.to_string()),
            Ok(Ok(d)) if d == reference => t.unchanged += 1,
            Ok(Ok(d)) => {
                t.silent += 1;
                t.fail(format!(
                    "store {what}: opened and read back different content ({})",
                    diff(&d, &reference)
                ));
            }
        }
    }
    std::fs::remove_dir_all(&scratch).ok();
    std::fs::remove_dir_all(&reference_dir).ok();
    Ok(t)
}
