//! `xinyi-bench`: benchmarks that print each figure beside the ceiling it is measured against,
//! with the ceiling measured in the same run (DESIGN.md, "Targets").
//!
//! `xinyi-bench ledger` measures, on this machine:
//!
//! 1. durable append of signed query records: pre-generated `QueryServed` entries (each carries
//!    the bank's signed request and the agency's entry signature: two signatures) go through
//!    `Chain::build_block` (state rules and batched signature verification), certification,
//!    `Chain::commit_built` and `Store::append` (one sled batch, flushed) in a temporary
//!    directory;
//! 2. verifier throughput: the same chain exported as an audit bundle in memory and checked
//!    with `verify::verify_bundle`;
//! 3. the ceilings: ed25519 `verify_strict` and `verify_batch` on one core and on all cores,
//!    SHA-256 over 1 MiB buffers, and sled insert+flush round trips.
//!
//! A per-entry figure is compared with the batch-verify ceiling expressed per entry: with `V`
//! signatures/s and `s` signatures per entry the ceiling is `V / s` entries/s.
//!
//! One module per benchmark (`ledger`, `dev_node`, `cluster`, `audit`); the ceilings they are
//! compared with are in `ceilings`, rows and their JSON/Markdown/table output in `report`.

mod audit;
mod ceilings;
mod cluster;
mod dev_node;
mod ledger;
mod monitor;
mod report;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xinyi-bench",
    about = "xinyi benchmarks: each figure beside a ceiling measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Durable append and verifier throughput of the ledger core, with crypto/storage ceilings.
    Ledger(ledger::LedgerArgs),
    /// Authorized queries end to end over HTTP against a real `xinyi-node --dev` process.
    DevNode(dev_node::DevNodeArgs),
    /// Authorized queries, open loop, against a local multi-validator testnet (real processes).
    Cluster(cluster::ClusterArgs),
    /// Full offline verification (`ledger::verify`) of a chain of N entries.
    Audit(audit::AuditArgs),
    /// Post-loan monitoring alerts delivered (logged first) against a real dev node, beside
    /// the query figure on the same node (`testnet/src/monitor.rs`).
    Monitor(monitor::MonitorArgs),
    /// Opens a ledger store and reports open time and memory as JSON (used by `audit --store`
    /// in a child process, so the figures are those of a process holding just the ledger).
    #[command(hide = true)]
    StoreOpen(audit::StoreOpenArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ledger(a) => ledger::ledger(a),
        Cmd::DevNode(a) => dev_node::dev_node(a),
        Cmd::Cluster(a) => cluster::cluster(a),
        Cmd::Audit(a) => audit::audit(a),
        Cmd::Monitor(a) => monitor::monitor(a),
        Cmd::StoreOpen(a) => audit::store_open(a),
    }
}
