//! `xinyi`: the command line for banks, firms and auditors.
//!
//! Parses arguments (clap), signs with the key given by `--key`, talks to one node (`--node`)
//! and verifies every proof the node returns before printing the result. Usage errors exit 2
//! (clap); every other failure prints one line `error: ...` on stderr and exits 1. This file is
//! the clap top level and the dispatch only: each command group is a module of `cmd/`, HTTP is
//! in `xinyi_client::api`, signing in `signer`, checks in `proof`/`audit`.

mod cmd;

use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};
use cmd::anchor::AnchorCmd;
use cmd::audit::AuditCmd;
use cmd::commitment::CommitmentCmd;
use cmd::consent::ConsentCmd;
use cmd::ctx::Ctx;
use cmd::grade::GradeCmd;
use cmd::proof::ProofCmd;
use cmd::record::RecordCmd;
use cmd::repair::RepairCmd;
use cmd::witness::WitnessCmd;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xinyi_client::api::{one_line, Api};
use xinyi_client::state::StateFile;
use xinyi_ledger::note::CosignerKey;

#[derive(Parser)]
#[command(
    name = "xinyi",
    version,
    about = "xinyi (信易) client: consents, authorized credit queries, access logs, credit repair and audit"
)]
struct Cli {
    /// Node base URL.
    #[arg(
        long,
        global = true,
        env = "XINYI_NODE",
        default_value = "http://127.0.0.1:7878"
    )]
    node: String,
    /// Extra trusted CA certificate(s), PEM, for an `https://` node with a self-signed or
    /// private-CA certificate.
    #[arg(long, global = true, env = "XINYI_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Signing key file (`xinyi-ed25519-secret:<hex>`).
    #[arg(long, global = true, env = "XINYI_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Signer identity; inferred from the key file name (firm-<USCC>.key, <org>.key) if absent.
    #[arg(long = "as", global = true, value_name = "org:<id>|firm:<USCC>")]
    as_: Option<String>,
    /// Trusted genesis file (validator keys for checkpoints); fetched from the node if absent.
    #[arg(long, global = true, env = "XINYI_GENESIS", value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// Machine-readable JSON output on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// File remembering the last verified checkpoint of each log (split-view detection);
    /// default `$HOME/.xinyi/state.json`.
    #[arg(long, global = true, env = "XINYI_STATE", value_name = "FILE")]
    state: Option<PathBuf>,
    /// Do not read or write the checkpoint state file.
    #[arg(long, global = true)]
    no_state: bool,
    /// A trusted witness's verifier key (`name+keyid+base64(0x04 ‖ key)`); repeatable.
    #[arg(long = "witness", global = true, value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned a checkpoint (default: all given).
    #[arg(long, global = true, value_name = "N")]
    min_witnesses: Option<usize>,
    /// Longest wait for a quorum-cosigned checkpoint covering a write, in milliseconds.
    #[arg(long, global = true, env = "XINYI_WAIT_MS", default_value_t = 20_000)]
    wait_ms: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a signing key file (mode 0600; never overwrites).
    Keygen {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show the node's health (chain id, height, log size, clock).
    Status,
    /// Grant, revoke or show consents (firm).
    #[command(subcommand)]
    Consent(ConsentCmd),
    /// Submit an authorized query (bank) and verify the returned proof.
    Query {
        /// Consent id.
        #[arg(long, required_unless_present = "batch")]
        consent: Option<String>,
        /// Firm USCC (taken from the consent if absent).
        #[arg(long, conflicts_with = "batch")]
        firm: Option<String>,
        /// Categories, comma-separated.
        #[arg(long, required_unless_present = "batch")]
        categories: Option<String>,
        /// Many queries in one request: a file of lines `{"consent": ID, "categories": "a,b"}`
        /// (at most 256), each signed, logged and verified on its own.
        #[arg(long, conflicts_with_all = ["consent", "categories"])]
        batch: Option<PathBuf>,
    },
    /// Every query and denial on a firm's data (signed by the firm or an auditor).
    AccessLog {
        /// Firm USCC.
        #[arg(long)]
        firm: String,
        /// Also fetch every listed entry and verify it and its inclusion proof.
        #[arg(long)]
        verify: bool,
    },
    /// Every query and denial of a bank (signed by the bank, an auditor or a validator).
    Queries {
        /// The bank's organisation id (default: the signer's).
        #[arg(long)]
        bank: Option<String>,
    },
    /// Published credit records of a firm.
    Records {
        /// Firm USCC.
        #[arg(long)]
        firm: String,
    },
    /// Credit repair (信用修复): request, decide, apply, status.
    #[command(subcommand)]
    Repair(RepairCmd),
    /// Credit commitments (信用承诺).
    #[command(subcommand)]
    Commitment(CommitmentCmd),
    /// Supervision grades.
    #[command(subcommand)]
    Grade(GradeCmd),
    /// Erase a firm's off-ledger data (agency; crypto-shredding, the ledger keeps its digests).
    Erase(cmd::erase::EraseArgs),
    /// Inclusion proofs.
    #[command(subcommand)]
    Proof(ProofCmd),
    /// Verify the whole chain.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Fetch, verify (validator quorum, witnesses) and remember the node's latest checkpoint,
    /// checking it is consistent with the last one this client verified.
    Checkpoint {
        /// Save the verified note here.
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Run or describe an independent C2SP tlog-witness.
    #[command(subcommand)]
    Witness(WitnessCmd),
    /// Follow a bank's monitoring alerts (贷后监测), each verified (content digest, logged
    /// entry, inclusion in a final checkpoint); signed by the bank.
    Watch(cmd::watch::WatchArgs),
    /// Publish credit records (agency).
    #[command(subcommand)]
    Record(RecordCmd),
    /// Check the consortium's anchors on an EVM chain against the ledger.
    #[command(subcommand)]
    Anchor(AnchorCmd),
    /// Download the node's audit bundle.
    Export {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> Result<bool> {
    let offline = matches!(
        cli.cmd,
        Cmd::Keygen { .. }
            | Cmd::Proof(ProofCmd::Verify {
                entry_position: None,
                ..
            })
            | Cmd::Audit(AuditCmd::Verify {
                bundle: Some(_),
                ..
            })
            | Cmd::Audit(AuditCmd::Consistency { proof: Some(_), .. })
            | Cmd::Witness(_)
    );
    let web = cli.node.starts_with("http://") || cli.node.starts_with("https://");
    if !offline && !web {
        bail!(
            "--node must be an http:// or https:// URL, e.g. http://127.0.0.1:7878, got {:?}",
            cli.node
        );
    }
    let witnesses = cli
        .witnesses
        .iter()
        .map(|w| CosignerKey::parse(w).map_err(|e| anyhow!("--witness {w:?}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let min_witnesses = cli.min_witnesses.unwrap_or(witnesses.len());
    if min_witnesses > witnesses.len() {
        bail!(
            "--min-witnesses {min_witnesses} exceeds the {} --witness keys given",
            witnesses.len()
        );
    }
    let state = if cli.no_state {
        None
    } else {
        cli.state
            .or_else(StateFile::default_path)
            .map(StateFile::new)
    };
    let ctx = Ctx {
        api: Api::with_ca(&cli.node, cli.ca.as_deref())?,
        json: cli.json,
        key: cli.key,
        as_: cli.as_,
        genesis: cli.genesis,
        state,
        witnesses,
        min_witnesses,
        wait: Duration::from_millis(cli.wait_ms),
        auth_epoch: std::cell::OnceCell::new(),
    };
    match cli.cmd {
        Cmd::Keygen { out } => cmd::keygen::keygen(&ctx, &out)?,
        Cmd::Status => cmd::info::status(&ctx)?,
        Cmd::Consent(c) => cmd::consent::run(&ctx, c)?,
        Cmd::Query {
            consent,
            firm,
            categories,
            batch,
        } => match (batch, consent, categories) {
            (Some(file), _, _) => cmd::query::query_batch(&ctx, &file)?,
            (None, Some(consent), Some(categories)) => {
                cmd::query::query(&ctx, &consent, firm.as_deref(), &categories)?;
            }
            // clap already requires both without --batch.
            _ => Err(anyhow::anyhow!(
                "query needs --consent and --categories, or --batch FILE"
            ))?,
        },
        Cmd::AccessLog { firm, verify } => cmd::access_log::access_log(&ctx, &firm, verify)?,
        Cmd::Queries { bank } => cmd::query::queries(&ctx, bank)?,
        Cmd::Records { firm } => cmd::info::records(&ctx, &firm)?,
        Cmd::Repair(r) => cmd::repair::run(&ctx, r)?,
        Cmd::Commitment(c) => cmd::commitment::run(&ctx, c)?,
        Cmd::Grade(g) => cmd::grade::run(&ctx, g)?,
        Cmd::Erase(a) => cmd::erase::run(&ctx, a)?,
        Cmd::Proof(p) => cmd::proof::run(&ctx, p)?,
        Cmd::Audit(a) => return cmd::audit::run(&ctx, a),
        Cmd::Checkpoint { save } => cmd::checkpoint::run(&ctx, save.as_deref())?,
        Cmd::Witness(w) => cmd::witness::run(&ctx, w)?,
        Cmd::Export { out } => cmd::export::run(&ctx, &out)?,
        Cmd::Watch(w) => cmd::watch::run(&ctx, w)?,
        Cmd::Record(r) => cmd::record::run(&ctx, r)?,
        Cmd::Anchor(a) => cmd::anchor::run(&ctx, a)?,
    }
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}
