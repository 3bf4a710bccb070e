//! `xinyi-reliability`: tamper detection and decoder fuzzing runners (docs/reliability.md).
//!
//! - `xinyi-reliability tamper --target store|bundle --mutations N [--seed S]`
//! - `xinyi-reliability fuzz --target T|all --execs N [--seconds S] [--seed S]`
//!
//! Each prints one JSON object per run and exits non-zero if anything was silently accepted,
//! panicked or broke an oracle. The seed is printed so a failure can be replayed.

mod fuzz;
mod tamper;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "xinyi-reliability",
    about = "tamper detection and fuzzing runners"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum TamperTarget {
    /// A node's sled store (files mutated, then `Store::open` and every read).
    Store,
    /// An exported audit bundle (`verify_bundle`, what `xinyi audit verify` runs).
    Bundle,
}

#[derive(Subcommand)]
enum Cmd {
    /// Random byte mutations of a sled store or a bundle; every one must be detected (or, for
    /// sled free space, leave the content byte-identical).
    Tamper {
        #[arg(long, value_enum)]
        target: TamperTarget,
        #[arg(long, default_value_t = 1000)]
        mutations: u64,
        /// RNG seed (random if absent; printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Scratch directory (a temporary one if absent).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Mutation fuzzing of one decoder / proof verifier, or `all`.
    Fuzz {
        #[arg(long)]
        target: String,
        #[arg(long, default_value_t = 100_000)]
        execs: u64,
        /// Stop after this many seconds even if `--execs` is not reached.
        #[arg(long)]
        seconds: Option<f64>,
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write crashing inputs.
        #[arg(long)]
        crashes: Option<PathBuf>,
    },
    /// Lists the fuzz targets.
    Targets,
}

fn seed_or_random(s: Option<u64>) -> u64 {
    s.unwrap_or_else(rand::random)
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Tamper {
            target,
            mutations,
            seed,
            dir,
        } => {
            let seed = seed_or_random(seed);
            eprintln!("seed {seed}");
            let t = match target {
                TamperTarget::Bundle => tamper::bundles(mutations, seed)?,
                TamperTarget::Store => {
                    let tmp = tempfile::tempdir()?;
                    let work = dir.unwrap_or_else(|| tmp.path().to_path_buf());
                    std::fs::create_dir_all(&work)?;
                    tamper::stores(mutations, seed, &work)?
                }
            };
            let name = match target {
                TamperTarget::Bundle => "bundle",
                TamperTarget::Store => "store",
            };
            let mut v = serde_json::to_value(&t)?;
            v["target"] = name.into();
            v["seed"] = seed.into();
            println!("{}", serde_json::to_string(&v)?);
            if !t.ok() {
                bail!(
                    "tamper {name}: {} silently accepted, {} panics",
                    t.silent,
                    t.panics
                );
            }
        }
        Cmd::Fuzz {
            target,
            execs,
            seconds,
            seed,
            crashes,
        } => {
            let seed = seed_or_random(seed);
            eprintln!("seed {seed}");
            let targets: Vec<&str> = if target == "all" {
                fuzz::TARGETS.to_vec()
            } else {
                vec![target.as_str()]
            };
            let mut bad = 0;
            for t in targets {
                let r = fuzz::run(t, execs, seconds, seed, crashes.as_deref())?;
                let mut v = serde_json::to_value(&r)?;
                v["seed"] = seed.into();
                println!("{}", serde_json::to_string(&v)?);
                bad += r.crashes;
            }
            if bad > 0 {
                bail!("fuzz: {bad} crashes or oracle violations");
            }
        }
        Cmd::Targets => {
            for t in fuzz::TARGETS {
                println!("{t}");
            }
        }
    }
    Ok(())
}
