//! The ceilings every benchmark is compared with, measured in the same run: ed25519 sign,
//! `verify_strict` and `verify_batch` on one core and all cores, SHA-256, sled insert+flush.
//! Nothing here measures xinyi code.

use crate::report::Row;
use anyhow::{bail, ensure, Context, Result};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::{RngCore as _, SeedableRng as _};
use sha2::{Digest as _, Sha256};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs `f` (which returns the work units it did) repeatedly for at least `d`.
pub(crate) fn run_for(d: Duration, mut f: impl FnMut() -> u64) -> f64 {
    // One untimed warm-up call.
    black_box(f());
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        n += f();
        let e = start.elapsed();
        if e >= d {
            return n as f64 / e.as_secs_f64();
        }
    }
}

/// Runs `f` on `threads` threads at once for `d`; the summed rate.
pub(crate) fn run_parallel(threads: usize, d: Duration, f: impl Fn(usize) -> u64 + Sync) -> f64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || run_for(d, || f(t)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

/// Distinct keys, messages of the ledger's mean signed-message length, and signatures.
pub(crate) struct SigSet {
    pub(crate) keys: Vec<VerifyingKey>,
    pub(crate) msgs: Vec<Vec<u8>>,
    pub(crate) sigs: Vec<ed25519_dalek::Signature>,
}

pub(crate) fn sig_set(n: usize, msg_len: usize, seed: u64) -> SigSet {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut keys = Vec::with_capacity(n);
    let mut msgs = Vec::with_capacity(n);
    let mut sigs = Vec::with_capacity(n);
    for _ in 0..n {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let sk = SigningKey::from_bytes(&seed);
        let mut m = vec![0u8; msg_len];
        rng.fill_bytes(&mut m);
        sigs.push(sk.sign(&m));
        keys.push(sk.verifying_key());
        msgs.push(m);
    }
    SigSet { keys, msgs, sigs }
}

pub(crate) struct Ceilings {
    pub(crate) sign_1: f64,
    pub(crate) sign_all: f64,
    pub(crate) strict_1: f64,
    pub(crate) strict_all: f64,
    pub(crate) batch_1: f64,
    pub(crate) batch_all: f64,
    pub(crate) batch_size: usize,
    pub(crate) sha256_mb_s: f64,
    pub(crate) sled_flushes: f64,
    pub(crate) sled_inserts: f64,
}

impl Ceilings {
    /// The higher of two measurements, figure by figure.
    pub(crate) fn max(self, o: &Ceilings) -> Ceilings {
        Ceilings {
            sign_1: self.sign_1.max(o.sign_1),
            sign_all: self.sign_all.max(o.sign_all),
            strict_1: self.strict_1.max(o.strict_1),
            strict_all: self.strict_all.max(o.strict_all),
            batch_1: self.batch_1.max(o.batch_1),
            batch_all: self.batch_all.max(o.batch_all),
            batch_size: self.batch_size,
            sha256_mb_s: self.sha256_mb_s.max(o.sha256_mb_s),
            sled_flushes: self.sled_flushes.max(o.sled_flushes),
            sled_inserts: self.sled_inserts.max(o.sled_inserts),
        }
    }
}

pub(crate) fn ceilings(
    d: Duration,
    threads: usize,
    msg_len: usize,
    batch_size: usize,
) -> Result<Ceilings> {
    let set: Vec<SigSet> = (0..threads)
        .map(|t| sig_set(batch_size, msg_len, 7 + t as u64))
        .collect();
    let strict = |t: usize| -> u64 {
        let s = &set[t];
        let mut ok = 0u64;
        for i in 0..64.min(s.keys.len()) {
            ok += u64::from(s.keys[i].verify_strict(&s.msgs[i], &s.sigs[i]).is_ok());
        }
        ok
    };
    let batch = |t: usize| -> u64 {
        let s = &set[t];
        let refs: Vec<&[u8]> = s.msgs.iter().map(Vec::as_slice).collect();
        match ed25519_dalek::verify_batch(&refs, &s.sigs, &s.keys) {
            Ok(()) => s.sigs.len() as u64,
            Err(_) => 0,
        }
    };
    ensure!(
        strict(0) > 0 && batch(0) > 0,
        "ceiling signatures do not verify"
    );
    let signers: Vec<SigningKey> = (0..threads)
        .map(|t| SigningKey::from_bytes(&[t as u8 + 1; 32]))
        .collect();
    let sign_msg = vec![0x5au8; msg_len];
    let sign = |t: usize| -> u64 {
        for _ in 0..64 {
            black_box(signers[t].sign(black_box(&sign_msg)));
        }
        64
    };
    let sign_1 = run_for(d, || sign(0));
    let sign_all = run_parallel(threads, d, sign);
    let strict_1 = run_for(d, || strict(0));
    let strict_all = run_parallel(threads, d, strict);
    let batch_1 = run_for(d, || batch(0));
    let batch_all = run_parallel(threads, d, batch);

    let buf = vec![0xa5u8; 1 << 20];
    let sha = run_for(d, || {
        black_box(Sha256::digest(black_box(&buf)));
        buf.len() as u64
    }) / 1e6;

    let dir = tempfile::tempdir().context("temporary directory for the sled ceiling")?;
    let db = sled::open(dir.path()).context("opening sled for the flush ceiling")?;
    let mut i = 0u64;
    let mut failed = None;
    let flushes = run_for(d, || {
        i += 1;
        let r = db
            .insert(i.to_be_bytes(), &[0u8; 32][..])
            .and_then(|_| db.flush());
        match r {
            Ok(_) => 1,
            Err(e) => {
                failed = Some(e);
                0
            }
        }
    });
    if let Some(e) = failed {
        bail!("sled flush ceiling: {e}");
    }
    drop(db);

    // Batched inserts: 1,000 hash-like 32-byte keys with 8-byte values per batch, one flush
    // per batch (the shape of the store's per-entry index keys).
    let dir = tempfile::tempdir().context("temporary directory for the sled ceiling")?;
    let db = sled::open(dir.path()).context("opening sled for the insert ceiling")?;
    let mut i = 0u64;
    let inserts = run_for(d, || {
        let mut batch = sled::Batch::default();
        for _ in 0..1_000 {
            i += 1;
            let k: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
            batch.insert(&k[..], &i.to_be_bytes()[..]);
        }
        match db.apply_batch(batch).and_then(|_| db.flush()) {
            Ok(_) => 1_000,
            Err(e) => {
                failed = Some(e);
                0
            }
        }
    });
    if let Some(e) = failed {
        bail!("sled insert ceiling: {e}");
    }
    drop(db);
    Ok(Ceilings {
        sign_1,
        sign_all,
        strict_1,
        strict_all,
        batch_1,
        batch_all,
        batch_size,
        sha256_mb_s: sha,
        sled_flushes: flushes,
        sled_inserts: inserts,
    })
}

/// The ceiling rows every run prints, measured in the same run.
pub(crate) fn ceiling_rows(c: &Ceilings, threads: usize, msg_len: usize) -> Vec<Row> {
    let msg = format!("{msg_len}-byte messages; higher of two runs, before and after the load");
    vec![
        Row::raw(
            "ceiling.ed25519.sign.1core",
            c.sign_1,
            "sig/s",
            format!("ed25519 sign, one core, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.sign.all_cores",
            c.sign_all,
            "sig/s",
            format!("ed25519 sign, {threads} threads, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.verify_strict.1core",
            c.strict_1,
            "sig/s",
            format!("verify_strict, one core, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.verify_strict.all_cores",
            c.strict_all,
            "sig/s",
            format!("verify_strict, {threads} threads, {msg}"),
        ),
        Row::raw(
            "ceiling.ed25519.verify_batch.1core",
            c.batch_1,
            "sig/s",
            format!("verify_batch, batches of {}, one core, {msg}", c.batch_size),
        ),
        Row::raw(
            "ceiling.ed25519.verify_batch.all_cores",
            c.batch_all,
            "sig/s",
            format!(
                "verify_batch, batches of {}, {threads} threads, {msg}",
                c.batch_size
            ),
        ),
        Row::raw(
            "ceiling.sha256.1core",
            c.sha256_mb_s,
            "MB/s",
            "SHA-256 over 1 MiB buffers, one core (MB = 10^6 bytes)",
        ),
        Row::raw(
            "ceiling.sled.flush",
            c.sled_flushes,
            "flushes/s",
            "sled insert of a 32-byte value + flush, temporary directory",
        ),
    ]
}

/// The ceilings a service benchmark (dev node, monitor) prints beside its own figures, all
/// measured in the same run, and the run's wall time (`wall` says what it includes).
pub(crate) fn service_rows(c: &Ceilings, threads: usize, started: Instant, wall: &str) -> Vec<Row> {
    vec![
        Row::raw(
            "ceiling.ed25519.verify_batch.all_cores",
            c.batch_all,
            "sig/s",
            format!(
                "verify_batch, batches of {}, {threads} threads; higher of two runs",
                c.batch_size
            ),
        ),
        Row::raw(
            "ceiling.sha256.1core",
            c.sha256_mb_s,
            "MB/s",
            "SHA-256 over 1 MiB buffers, one core",
        ),
        Row::raw(
            "ceiling.sled.flush",
            c.sled_flushes,
            "flushes/s",
            "sled insert of a 32-byte value + flush",
        ),
        Row::raw(
            "run.wall_seconds",
            started.elapsed().as_secs_f64(),
            "s",
            format!("{wall}; {threads} cores"),
        ),
    ]
}
