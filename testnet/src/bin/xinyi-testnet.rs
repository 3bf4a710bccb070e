//! `xinyi-testnet`: a local multi-node xinyi consortium on 127.0.0.1 (validators and
//! followers as real `xinyi-node` processes), and the acceptance scenario across it.
//!
//! The process edge only: argument parsing, output, one `error: ...` line and exit 1 on
//! failure. The work is in `xinyi_testnet::net`.

use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use xinyi_testnet::net::manifest::Manifest;
use xinyi_testnet::net::ops::{self, UpOptions};
use xinyi_testnet::net::process::Sig;
use xinyi_testnet::net::scenario;

#[derive(Parser)]
#[command(
    name = "xinyi-testnet",
    version,
    about = "Run a local multi-node xinyi testnet on 127.0.0.1 and the acceptance scenario across it",
    long_about = "Run a local multi-node xinyi (信易) testnet on 127.0.0.1.\n\n\
`up` creates DIR with keys (mode 0600), a genesis of the sample consortium, one config per node, \
starts every node as a detached `xinyi-node start --config DIR/<org>/xinyi.toml` process (log in \
DIR/<org>/node.log), records everything in DIR/testnet.json and registers five keyed sample \
firms (keys in DIR/keys/firm-<USCC>.key; organisation keys in DIR/keys/<org>.key, the names the \
`xinyi` client infers its signer from).\n\n\
Validators (power 1), in order: gz-credit (holds the agency data), credit-china, gsxt, \
agency-4, ...  Followers (power 0): bank-a, bank-b, bank-3, ...  Node k (validators first, from \
1) listens on HTTP base-port+k and p2p base-port+100+k.\n\n\
Example:\n  xinyi-testnet up --validators 4 --followers 1 --dir ./tn\n  xinyi-testnet status --dir ./tn\n  xinyi-testnet scenario --dir ./tn\n  xinyi-testnet chaos --fault pause --cycles 10 --dir ./tn\n  xinyi-testnet rotate-key --node agency-4 --dir ./tn\n  xinyi-testnet rotate-firm-key --dir ./tn\n  xinyi-testnet down --dir ./tn"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and start a testnet in DIR, or restart the stopped testnet DIR holds.
    Up {
        /// Testnet directory (created; must be new or empty unless it holds a stopped testnet).
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// Validators (power 1). Required for a new testnet.
        #[arg(long, value_name = "N")]
        validators: Option<usize>,
        /// Followers (power 0, banks). Default 0 for a new testnet.
        #[arg(long, value_name = "M")]
        followers: Option<usize>,
        /// First port: node k uses HTTP base+k and p2p base+100+k (default 7800).
        #[arg(long, value_name = "P")]
        base_port: Option<u16>,
        /// The xinyi-node binary (default: next to this program).
        #[arg(long, value_name = "PATH")]
        node_bin: Option<PathBuf>,
        /// Seconds to wait for the nodes to answer and the seeding to commit.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
        /// Print the result as JSON (the manifest and what was done).
        #[arg(long)]
        json: bool,
        /// Also start a local EVM chain (ganache from tests/evm) in DIR/evm, deploy the anchor
        /// contract and anchor every agency/auditor node to it (`specs/anchoring.md`).
        #[arg(long)]
        anchor_chain: bool,
    },
    /// Show every node: role, process, URL, height, head and connected peers.
    Status {
        /// Testnet directory.
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop every node (SIGTERM, then SIGKILL after the grace period); keeps all data.
    Down {
        /// Testnet directory.
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        grace: u64,
    },
    /// Send a signal to one node (chaos testing): 9|KILL (default), 15|TERM, STOP, CONT.
    Kill {
        /// Organisation id of the node.
        org: String,
        /// Testnet directory.
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// Signal.
        #[arg(long, value_name = "SIG", default_value = "9")]
        signal: String,
    },
    /// Start one node that is not running (same key, config and data) and wait for its API.
    Start {
        /// Organisation id of the node.
        org: String,
        /// Testnet directory.
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// The xinyi-node binary (default: the one recorded by `up`).
        #[arg(long, value_name = "PATH")]
        node_bin: Option<PathBuf>,
        /// Seconds to wait for its API.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
    },
    /// Run the acceptance scenario across the nodes with the `xinyi` client; exit 1 on failure.
    Scenario {
        /// Testnet directory.
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// The xinyi client binary (default: next to this program).
        #[arg(long, value_name = "PATH")]
        client_bin: Option<PathBuf>,
        /// Seconds each step may take.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
        /// Print the steps as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Crash (kill -9 + restart) and pause (SIGSTOP/SIGCONT) random validators under write load,
    /// or stop enough of them to lose the quorum, then check every acknowledged write is on
    /// every node and all nodes agree on a common block (docs/reliability.md). Brings a testnet
    /// up in DIR unless DIR holds one.
    #[command(
        long_about = "Crash and pause random validators under write load (two writers posting \
agency entries to random nodes, recording every acknowledged write), then check that every \
acknowledged write is at its log position on every node and that all nodes hold the same block \
(same header, so same state root) at a common height. Exit 1 otherwise. Brings a testnet up in \
DIR unless DIR holds one; leaves it running (`xinyi-testnet down --dir DIR`).\n\n\
--fault kill: kill -9 one random validator per cycle, restart it after 0.1 s..--max-down-ms.\n\
--fault pause: SIGSTOP one random validator per cycle for 0.1 s..--max-down-ms, then SIGCONT.\n\
--fault mixed (default): kill, every --pause-every-th cycle a pause.\n\
--fault quorum-loss (alias two-of-four): stop as many validators as break the quorum (2 of 4; \
SIGSTOP on odd cycles, kill -9 on even ones), check for --stall-secs that no live node passes \
its height, that no write is acknowledged above it and that the live nodes hold the same block, \
then restore them and check that progress resumes and all nodes agree again.\n\n\
Example:\n  xinyi-testnet chaos --validators 4 --cycles 50 --fault pause --seed 1 --dir /tmp/chaos"
    )]
    Chaos {
        /// Testnet directory.
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// Validators of a new testnet.
        #[arg(long, value_name = "N", default_value_t = 4)]
        validators: usize,
        /// Fault cycles.
        #[arg(long, value_name = "K", default_value_t = 10)]
        cycles: u32,
        /// RNG seed (random if absent; printed).
        #[arg(long)]
        seed: Option<u64>,
        /// kill | pause | mixed | quorum-loss (alias two-of-four).
        #[arg(long, value_name = "MODE", default_value = "mixed")]
        fault: String,
        /// With --fault mixed: every n-th cycle pauses a node instead of killing it (0 = never).
        #[arg(long, value_name = "N", default_value_t = 4)]
        pause_every: u32,
        /// Longest time a node stays killed or paused in the one-node modes (ms).
        #[arg(long, value_name = "MS", default_value_t = 1500)]
        max_down_ms: u64,
        /// With --fault quorum-loss: seconds to watch for (forbidden) progress per cycle.
        #[arg(long, value_name = "SECS", default_value_t = 4)]
        stall_secs: u64,
        /// The xinyi-node binary (default: next to this program).
        #[arg(long, value_name = "PATH")]
        node_bin: Option<PathBuf>,
        /// Seconds each step (restart, convergence) may take.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
    },
    /// Rotate a validator's key through a quorum-approved ledger entry and restart its node
    /// with the new key while the others keep committing (docs/reliability.md §6).
    #[command(
        name = "rotate-key",
        long_about = "Rotate a validator's key through the ledger without stopping the consortium.\n\n\
1. writes a new key to DIR/keys/<ORG>.key.next (mode 0600; reused if an earlier run was \
interrupted);\n\
2. posts a Membership entry (MemberChange::RotateKey) with an effective height --margin blocks \
above the head, approved by every validator (the testnet holds their keys; in a real consortium \
each validator signs its own approval) and authored by ORG with its current key, through \
another validator's node, and waits until it is acknowledged as committed;\n\
3. waits until ORG's node, still on its old key, has applied the effective height; if the \
others pass it while ORG's node lags below (they refuse its old key from then on), it goes on \
once that node holds the rotation entry (a node starts with the key its ledger gives its \
organisation, or the key of a committed rotation not yet in force, and then follows until the \
effective height);\n\
4. stops it (SIGTERM), moves DIR/keys/<ORG>.key to <ORG>.key.retired-<E> and the new key to \
DIR/keys/<ORG>.key (the node's config names that file), starts it, and waits until a commit \
certificate carries its vote valid under the new key (and not under the old one).\n\n\
The other validators keep a quorum throughout (one node restarts), so writes keep committing; \
only ORG's own API is away for its restart. From the effective height the old key is refused: \
the members drop it from the p2p admission set and its signatures no longer verify.\n\n\
Example:\n  xinyi-testnet rotate-key --node agency-4 --dir ./tn"
    )]
    RotateKey {
        /// Organisation id of the validator whose key is rotated (e.g. agency-4).
        #[arg(long = "node", value_name = "ORG")]
        org: String,
        /// Testnet directory.
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// Blocks between the head and the effective height.
        #[arg(long, value_name = "N", default_value_t = 20)]
        margin: u64,
        /// Seconds each wait (commit, effective height, restart, first vote) may take.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
        /// Seconds without any node advancing (below the effective height) that count as a halt.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        halt_secs: u64,
        /// Workaround for the epoch-change halt (docs/reliability.md §6): restart the nodes that
        /// block a peer, one at a time. Costs downtime.
        #[arg(long)]
        unstick: bool,
        /// Print the result as one JSON object (progress lines go to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Rotate the consortium firm key behind firm tags through a quorum-approved ledger entry,
    /// without restarting any node (specs/privacy.md §8).
    #[command(
        name = "rotate-firm-key",
        long_about = "Rotate the consortium firm key (the HMAC key behind firm tags) without stopping the consortium.\n\n\
1. writes the next epoch's key to DIR/keys/firm.key.<EPOCH> (mode 0600; reused if an earlier run \
was interrupted), beside the firm.key every member's config names: each node reads it there \
without a restart;\n\
2. posts a Membership entry (MemberChange::RotateFirmKey {epoch, key_id}) with an effective \
height --margin blocks above the head, approved by every validator; the ledger holds the key's \
id, never the key;\n\
3. waits until every node holds the new epoch (/health firm_keys) and has passed the effective \
height;\n\
4. re-registers every keyed firm under its new tag with the key it had.\n\n\
Consents, records and accesses made before stay under the old tags; a firm's access log and its \
completeness proof cover both (xinyi access-log --verify). A leaked copy of the chain shows two \
unrelated tags per firm.\n\n\
Example:\n  xinyi-testnet rotate-firm-key --dir ./tn --json"
    )]
    RotateFirmKey {
        /// Testnet directory.
        #[arg(long, value_name = "DIR", default_value = "./xinyi-testnet")]
        dir: PathBuf,
        /// Blocks between the head and the effective height.
        #[arg(long, value_name = "N", default_value_t = 10)]
        margin: u64,
        /// Seconds each wait (commit, every node holding the key and passing the height,
        /// re-registration) may take.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
        /// Print the result as one JSON object (progress lines go to stderr).
        #[arg(long)]
        json: bool,
    },
    /// (internal) Generate the agency's sample data store and print the keyed firms' penalties.
    #[command(hide = true)]
    GenData {
        /// The agency data store directory.
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        /// The consortium firm key (the records name firms by tag).
        #[arg(long, value_name = "FILE")]
        firm_key: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

/// A sibling binary of this program (or of its parent directory, for test binaries in deps/).
fn sibling(name: &str, given: Option<PathBuf>, flag: &str) -> Result<PathBuf> {
    if let Some(p) = given {
        if !p.exists() {
            bail!("{flag} {}: no such file", p.display());
        }
        return ops::absolute(&p);
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("cannot tell the directory of {}", exe.display()))?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    for cand in [dir.join(&file), dir.join("..").join(&file)] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    bail!(
        "{name} not found next to {}; build it (cargo build --bin {name}) or pass {flag} PATH",
        exe.display()
    )
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Up {
            dir,
            validators,
            followers,
            base_port,
            node_bin,
            timeout,
            json,
            anchor_chain,
        } => {
            let node_bin = sibling("xinyi-node", node_bin, "--node-bin")?;
            let r = ops::up(&UpOptions {
                dir,
                validators,
                followers,
                base_port,
                node_bin,
                self_exe: std::env::current_exe()?,
                timeout: Duration::from_secs(timeout),
                verbose: !json,
                anchor_chain,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_up(&r);
            }
            Ok(())
        }
        Cmd::Status { dir, json } => {
            let rows = ops::status(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", ops::status_table(&rows));
            }
            Ok(())
        }
        Cmd::Down { dir, grace } => {
            let (term, killed) = ops::down(&dir, Duration::from_secs(grace))?;
            println!(
                "stopped {} node(s){}; data kept in {}",
                term + killed,
                if killed > 0 {
                    format!(" ({killed} needed SIGKILL)")
                } else {
                    String::new()
                },
                dir.display()
            );
            Ok(())
        }
        Cmd::Kill { org, dir, signal } => {
            let sig = Sig::parse(&signal)?;
            let pid = ops::kill(&dir, &org, sig)?;
            println!("sent {} to {org} (pid {pid})", sig.name());
            Ok(())
        }
        Cmd::Start {
            org,
            dir,
            node_bin,
            timeout,
        } => {
            let nb = match node_bin {
                Some(p) => Some(sibling("xinyi-node", Some(p), "--node-bin")?),
                None => None,
            };
            let pid = ops::start(&dir, &org, nb.as_deref(), Duration::from_secs(timeout))?;
            let m = Manifest::load(&dir)?;
            println!("started {org} (pid {pid}) on {}", m.node(&org)?.url);
            Ok(())
        }
        Cmd::Chaos {
            dir,
            validators,
            cycles,
            seed,
            fault,
            pause_every,
            max_down_ms,
            stall_secs,
            node_bin,
            timeout,
        } => {
            let fault = xinyi_testnet::net::chaos::Fault::parse(&fault)?;
            let seed = seed.unwrap_or_else(rand::random);
            println!("chaos seed {seed}, fault {}", fault.name());
            let r = xinyi_testnet::net::chaos::run(
                &xinyi_testnet::net::chaos::ChaosOptions {
                    dir,
                    validators,
                    cycles,
                    seed,
                    node_bin: sibling("xinyi-node", node_bin, "--node-bin")?,
                    self_exe: std::env::current_exe()?,
                    fault,
                    pause_every,
                    max_down_ms,
                    stall: Duration::from_secs(stall_secs),
                    timeout: Duration::from_secs(timeout),
                },
                |s| println!("{s}"),
            )?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::Scenario {
            dir,
            client_bin,
            timeout,
            json,
        } => {
            let client = sibling("xinyi", client_bin, "--client-bin")?;
            let r = scenario::run(&dir, &client, Duration::from_secs(timeout), |s| {
                if !json {
                    println!("{s}");
                }
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            }
            if !r.ok {
                let failed = r
                    .steps
                    .iter()
                    .find(|s| !s.ok)
                    .map(|s| format!("{}: {}", s.name, s.detail))
                    .unwrap_or_default();
                bail!("scenario failed at: {failed}");
            }
            if !json {
                let total: u64 = r.steps.iter().map(|s| s.ms).sum();
                println!("scenario passed: {} steps in {total} ms", r.steps.len());
            }
            Ok(())
        }
        Cmd::RotateKey {
            org,
            dir,
            margin,
            timeout,
            halt_secs,
            unstick,
            json,
        } => {
            let r = xinyi_testnet::net::rotate::rotate_key(
                &xinyi_testnet::net::rotate::RotateOptions {
                    dir,
                    org,
                    margin,
                    timeout: Duration::from_secs(timeout),
                    halt: Duration::from_secs(halt_secs),
                    unstick,
                },
                |s| progress(json, s),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "rotated {}: key {} in force from height {}, node restarted in {} ms, its vote under the new key in block {}",
                    r.org,
                    ops::short(Some(&r.new_key)),
                    r.effective_height,
                    r.node_restart_ms,
                    r.first_vote_height
                );
            }
            Ok(())
        }
        Cmd::RotateFirmKey {
            dir,
            margin,
            timeout,
            json,
        } => {
            let r = xinyi_testnet::net::firmkey::rotate_firm_key(
                &xinyi_testnet::net::firmkey::FirmKeyOptions {
                    dir,
                    margin,
                    timeout: Duration::from_secs(timeout),
                },
                |s| progress(json, s),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "firm key rotated to epoch {} (key id {}), in force from height {}; {} firms re-registered",
                    r.epoch,
                    ops::short(Some(&r.key_id)),
                    r.effective_height,
                    r.reregistered
                );
            }
            Ok(())
        }
        Cmd::GenData { store, firm_key } => {
            let recs = ops::gen_data(&store, &xinyi_node::dev::read_firm_key(&firm_key)?)?;
            println!("{}", serde_json::to_string(&recs)?);
            Ok(())
        }
    }
}

fn print_up(r: &ops::UpReport) {
    let m = &r.manifest;
    println!(
        "testnet {} in {} ({} validators, {} followers), chain {}",
        if r.created { "created" } else { "restarted" },
        m.dir.display(),
        m.validators,
        m.followers,
        ops::short(Some(&m.chain_id))
    );
    for n in &m.nodes {
        println!(
            "  {:<14} {:<10} {:<24} p2p {:<16} pid {}",
            n.org,
            n.role.name(),
            n.url,
            n.p2p.to_string(),
            n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    if r.seeded_entries > 0 {
        println!(
            "seeded: {} keyed firms registered, {} penalty records published; height {}",
            m.firms.len(),
            r.seeded_entries.saturating_sub(m.firms.len()),
            r.height
        );
    }
    let k = &m.keys;
    let firm = m.firms.first().map(|f| f.uscc.as_str()).unwrap_or("<USCC>");
    let url = |o: &str| {
        m.nodes
            .iter()
            .find(|n| n.org == o)
            .or_else(|| m.nodes.first())
            .map(|n| n.url.clone())
            .unwrap_or_default()
    };
    println!(
        "\nkeys in {k}; genesis {g}\n\nTry:\n  xinyi --node {u1} --key {k}/firm-{firm}.key consent grant --firm {firm} --bank bank-a --categories registration,tax --uses 2 --days 30\n  xinyi --node {u2} --key {k}/bank-a.key query --consent <CONSENT-ID> --categories tax\n  xinyi-testnet status --dir {d}\n  xinyi-testnet scenario --dir {d}\n  xinyi-testnet down --dir {d}",
        k = k.display(),
        g = m.genesis.display(),
        u1 = url("credit-china"),
        u2 = url("bank-a"),
        d = m.dir.display(),
    );
}

/// A progress line: on stderr when stdout carries the JSON report, else on stdout.
fn progress(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}
