//! `xinyi`: the command line for banks, firms and auditors.
//!
//! Parses arguments (clap), signs with the key given by `--key`, talks to one node (`--node`)
//! and verifies every proof the node returns before printing the result. Usage errors exit 2
//! (clap); every other failure prints one line `error: ...` on stderr and exits 1. This file is
//! wiring only: HTTP is in `xinyi_client::api`, signing in `signer`, checks in `proof`/`audit`.

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use xinyi_client::api::{one_line, Api, ApiError, EntryAnswer, Health, WriteAnswer};
use xinyi_client::audit;
use xinyi_client::fmt_time;
use xinyi_client::proof::{self, Included, Opened, Trust};
use xinyi_client::signer::{parse_uscc, Signer};
use xinyi_client::state::{log_key, StateFile};
use xinyi_client::witness::Witness;
use xinyi_ledger::entry::{Consent, Entry, EntryKind, QueryRequest};
use xinyi_ledger::genesis::Genesis;
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::note::{Cosigner, CosignerKey};
use xinyi_ledger::state::AccessHead;
use xinyi_ledger::types::{Category, Grade, OrgId, DAY_MS};
use xinyi_ledger::{FirmTag, KeyPair};

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
        #[arg(long)]
        consent: String,
        /// Firm USCC (taken from the consent if absent).
        #[arg(long)]
        firm: Option<String>,
        /// Categories, comma-separated.
        #[arg(long)]
        categories: String,
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
    Watch {
        /// The bank (default: the signer).
        #[arg(long)]
        bank: Option<String>,
        /// Start after this alert sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Exit after this many alerts.
        #[arg(long)]
        count: Option<u64>,
        /// Exit when no alert came for this many milliseconds.
        #[arg(long, value_name = "MS")]
        idle_exit_ms: Option<u64>,
    },
    /// Publish credit records (agency).
    #[command(subcommand)]
    Record(RecordCmd),
    /// Download the node's audit bundle.
    Export {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConsentCmd {
    /// Grant a bank a consent (signed by the firm).
    Grant {
        /// Firm USCC (must be the signer).
        #[arg(long)]
        firm: String,
        /// Bank org id.
        #[arg(long)]
        bank: String,
        /// Categories, comma-separated.
        #[arg(long)]
        categories: String,
        /// Number of queries allowed.
        #[arg(long)]
        uses: u32,
        /// Validity in days from now.
        #[arg(long)]
        days: u32,
        /// Purpose. Only its salted digest goes on the ledger; the salt is printed
        /// (`purpose_salt`) for the firm and the bank to keep.
        #[arg(long, default_value = "loan application")]
        purpose: String,
        /// Post-loan monitoring: the bank is alerted about these changes while the consent is in
        /// force (penalties, abnormal_list, dishonest_list, judgments, other_records, grades,
        /// commitments_broken, repairs; comma-separated).
        #[arg(long, value_name = "CATEGORIES")]
        monitor: Option<String>,
    },
    /// Revoke a consent (signed by the firm).
    Revoke {
        /// Consent id.
        id: String,
    },
    /// Show a consent.
    Show {
        /// Consent id.
        id: String,
    },
}

#[derive(Subcommand)]
enum RecordCmd {
    /// Publish a credit record about a firm (agency-signed CreditRecordPublished; only the
    /// record's digest goes on the ledger).
    Publish {
        /// Firm USCC.
        #[arg(long)]
        firm: String,
        /// Category (penalties, abnormal_list, dishonest_list, judgments, ...).
        #[arg(long, default_value = "penalties")]
        category: String,
        /// minor|general|serious.
        #[arg(long, default_value = "minor")]
        severity: String,
        /// Minimum publicity days (minor 0-90, general 90-365, serious 365-1095).
        #[arg(long, default_value_t = 0)]
        days: u16,
        /// Record id (64 hex digits; default: a random digest).
        #[arg(long)]
        record: Option<String>,
    },
}

#[derive(Subcommand)]
enum RepairCmd {
    /// Ask for a record to be repaired (firm).
    Request {
        /// Record id.
        #[arg(long)]
        record: String,
        /// File proving obligations were fulfilled (only its salted digest is logged).
        #[arg(long)]
        fulfilment: Option<PathBuf>,
        /// Signed commitment letter file (only its salted digest is logged).
        #[arg(long)]
        letter: Option<PathBuf>,
    },
    /// Approve or reject a repair (the penalising agency).
    Decide {
        /// Repair id.
        id: String,
        #[command(flatten)]
        verdict: Verdict,
        /// Reason.
        #[arg(long)]
        reason: String,
    },
    /// Record that this registry applied an approved repair.
    Apply {
        /// Repair id.
        id: String,
    },
    /// Show a repair's status (overdue evaluated at the node clock).
    Status {
        /// Repair id.
        id: String,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct Verdict {
    /// Approve.
    #[arg(long)]
    approve: bool,
    /// Reject.
    #[arg(long)]
    reject: bool,
}

#[derive(Subcommand)]
enum CommitmentCmd {
    /// Make a commitment to an agency (firm).
    Make {
        /// Agency org id.
        #[arg(long)]
        agency: String,
        /// Commitment text (only its salted digest is logged).
        #[arg(long)]
        text: String,
        /// Due in this many days.
        #[arg(long)]
        due_days: u32,
    },
    /// Record a commitment as broken (agency).
    Broken {
        /// Commitment id.
        id: String,
        /// Finding text (only its salted digest is logged).
        #[arg(long)]
        finding: String,
    },
    /// Show a commitment.
    Show {
        /// Commitment id.
        id: String,
    },
}

#[derive(Subcommand)]
enum GradeCmd {
    /// Assign a supervision grade (agency).
    Assign {
        /// Firm USCC.
        #[arg(long)]
        firm: String,
        /// Supervision domain, e.g. food-drug.
        #[arg(long)]
        domain: String,
        /// a|b|c|d|green|blue|yellow|red.
        #[arg(long)]
        grade: String,
    },
    /// Show a firm's grade in a domain.
    Show {
        /// Firm USCC.
        #[arg(long)]
        firm: String,
        /// Domain.
        #[arg(long)]
        domain: String,
    },
}

#[derive(Subcommand)]
enum ProofCmd {
    /// Verify an entry's inclusion in a signed checkpoint (online by position, or offline).
    Verify {
        /// Fetch this log position from the node.
        #[arg(long, conflicts_with_all = ["entry", "proof", "checkpoint"])]
        entry_position: Option<u64>,
        /// With --entry-position: save entry.bin, proof.json and checkpoint.txt here.
        #[arg(long, requires = "entry_position")]
        save: Option<PathBuf>,
        /// Offline: stored entry bytes (raw or base64).
        #[arg(long, requires_all = ["proof", "checkpoint"])]
        entry: Option<PathBuf>,
        /// Offline: JSON with "position" and "inclusion_proof".
        #[arg(long, requires = "entry")]
        proof: Option<PathBuf>,
        /// Offline: signed checkpoint note.
        #[arg(long, requires = "entry")]
        checkpoint: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum WitnessCmd {
    /// Serve the tlog-witness protocol (POST /add-checkpoint, GET /<origin hash>/checkpoint).
    Serve {
        /// Listen address (e.g. 127.0.0.1:7900).
        #[arg(long)]
        listen: String,
        /// Witness name (key name of its cosignatures), e.g. auditor.example/w1.
        #[arg(long)]
        name: String,
        /// Genesis file of a log to witness (repeatable; default --genesis).
        #[arg(long = "log", value_name = "GENESIS")]
        logs: Vec<PathBuf>,
        /// State file (the latest cosigned checkpoint per log).
        #[arg(long)]
        state_file: PathBuf,
    },
    /// Print the witness's verifier key (`name+keyid+base64(0x04 ‖ key)`).
    Vkey {
        /// Witness name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify every block, certificate, signature and state transition from the genesis.
    Verify {
        /// Offline: an audit bundle file (needs --genesis).
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Check that checkpoint NEW extends checkpoint OLD (both signed notes, each final), with a
    /// consistency proof from the node or from --proof.
    Consistency {
        /// Older signed checkpoint note (file).
        old: PathBuf,
        /// Newer signed checkpoint note (file).
        new: PathBuf,
        /// Offline: JSON {"proof": [hex...]} instead of asking the node.
        #[arg(long)]
        proof: Option<PathBuf>,
    },
}

/// Everything a command needs: flags, the node, and lazily its health and trust.
struct Ctx {
    api: Api,
    json: bool,
    key: Option<PathBuf>,
    as_: Option<String>,
    genesis: Option<PathBuf>,
    state: Option<StateFile>,
    witnesses: Vec<CosignerKey>,
    min_witnesses: usize,
    wait: Duration,
}

fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    if !s.ends_with('\n') {
        let _ = o.write_all(b"\n");
    }
    let _ = o.flush();
}

fn out_json(v: &Value) {
    out(&serde_json::to_string_pretty(v).unwrap_or_default());
}

fn warn(s: &str) {
    let _ = writeln!(std::io::stderr(), "warning: {s}");
}

fn digest_arg(what: &str, s: &str) -> Result<Digest> {
    Digest::from_hex(s.trim()).map_err(|e| anyhow!("invalid {what} {s:?}: {e}"))
}

fn org_arg(what: &str, s: &str) -> Result<OrgId> {
    OrgId::new(s).map_err(|e| anyhow!("{what}: {e}"))
}

fn categories_arg(s: &str) -> Result<Vec<Category>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        v.push(Category::parse(part).map_err(|e| anyhow!("{e}"))?);
    }
    if v.is_empty() {
        bail!("--categories: at least one category is required");
    }
    v.sort();
    v.dedup();
    Ok(v)
}

fn read_genesis(path: &Path) -> Result<Genesis> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read genesis {}", path.display()))?;
    Genesis::from_json(&bytes).map_err(|e| anyhow!("genesis {}: {e}", path.display()))
}

impl Ctx {
    /// The signer (a firm's ledger tag is fetched when it signs an entry, [`Ctx::submit`]).
    fn signer(&self) -> Result<Signer> {
        Signer::load(self.key.as_deref(), self.as_.as_deref())
    }

    /// `signer` with its ledger tag if it is a firm: fetched from the node
    /// (`GET /v1/firms/{uscc}/tag`, signed by the firm) and checked against the firm's
    /// registration on the ledger.
    fn with_tag(&self, signer: &Signer) -> Result<Signer> {
        let mut s = signer.clone();
        if let (xinyi_client::signer::Identity::Firm(u), None) = (&s.identity, s.tag) {
            s.tag = Some(self.firm_tag_as(&s, u)?);
        }
        Ok(s)
    }

    /// The ledger tag of firm `u`, read with `signer`'s authentication (the firm itself, an
    /// auditor or an agency). When the signer is the firm, the tag must be the one the ledger's
    /// latest `firm_registered` entry binds to the signer's key (`firm.tag_mismatch`).
    fn firm_tag_as(&self, signer: &Signer, u: &xinyi_ledger::Uscc) -> Result<FirmTag> {
        let h = self.health()?;
        let path = format!("/v1/firms/{u}/tag");
        let auth = signer.auth_header(&h.chain_id, "GET", &path, h.time_ms);
        let v: Value = self.api.get_auth(&path, &auth)?;
        let tag: FirmTag = v
            .get("tag")
            .and_then(Value::as_str)
            .and_then(|t| FirmTag::from_hex(t).ok())
            .ok_or_else(|| anyhow!("the node's tag answer for {u} has no tag"))?;
        if signer.identity == xinyi_client::signer::Identity::Firm(*u) {
            let Some(pos) = v.get("registration").and_then(Value::as_u64) else {
                bail!("firm.unregistered: the ledger has no registration of firm {u}");
            };
            let ea: EntryAnswer = self.get_signed(signer, &format!("/v1/entries/{pos}"))?;
            let bytes = entry_bytes(&ea)?;
            let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
            match &entry.body.kind {
                EntryKind::FirmRegistered { firm, key } if *firm == tag && *key == signer.key.public() => {}
                _ => bail!("firm.tag_mismatch: the node's tag for {u} is not registered to this key on the ledger"),
            }
        }
        Ok(tag)
    }

    /// GET with `signer`'s `X-Xinyi-Auth`.
    fn get_signed<T: serde::de::DeserializeOwned>(&self, signer: &Signer, path: &str) -> Result<T> {
        let h = self.health()?;
        let auth = signer.auth_header(&h.chain_id, "GET", path, h.time_ms);
        self.api.get_auth(path, &auth)
    }

    /// GET signed with the command's key when there is one (reads gated by role), else unsigned.
    fn get_read<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        match self.key.as_deref() {
            Some(_) => {
                let s = Signer::load(self.key.as_deref(), self.as_.as_deref())?;
                self.get_signed(&s, path)
            }
            None => self.api.get(path),
        }
    }

    /// A byte stream, signed with the command's key when there is one.
    fn get_stream_read(
        &self,
        path: &str,
    ) -> Result<Box<dyn std::io::Read + Send + Sync + 'static>> {
        let auth = match self.key.as_deref() {
            Some(_) => {
                let s = Signer::load(self.key.as_deref(), self.as_.as_deref())?;
                let h = self.health()?;
                Some(s.auth_header(&h.chain_id, "GET", path, h.time_ms))
            }
            None => None,
        };
        self.api.get_stream(path, auth.as_deref())
    }

    fn signer_key(&self) -> Result<KeyPair> {
        let p = self
            .key
            .as_deref()
            .ok_or_else(|| anyhow!("this command needs --key FILE"))?;
        xinyi_client::signer::read_key(p)
    }

    fn health(&self) -> Result<Health> {
        let h = self.api.health()?;
        if h.status != "ok" {
            bail!("node at {} reports status {:?}", self.api.base(), h.status);
        }
        Ok(h)
    }

    /// The trusted genesis: `--genesis`, or the node's (with `fetched = true`).
    fn genesis(&self) -> Result<(Genesis, bool)> {
        match &self.genesis {
            Some(p) => Ok((read_genesis(p)?, false)),
            None => {
                let text = self.api.get_text("/v1/genesis")?;
                let g = Genesis::from_json(text.as_bytes())
                    .map_err(|e| anyhow!("the node's genesis is unusable: {e}"))?;
                Ok((g, true))
            }
        }
    }

    fn trust(&self, health: Option<&Health>) -> Result<Trust> {
        let (g, _) = self.genesis()?;
        let mut t = Trust::from_genesis(&g)?;
        t.witnesses = self.witnesses.clone();
        t.min_witnesses = self.min_witnesses;
        if let Some(h) = health {
            if h.chain_id != t.chain_id {
                bail!(
                    "chain.mismatch: the node serves chain {} but the genesis is chain {}",
                    h.chain_id,
                    t.chain_id
                );
            }
        }
        Ok(t)
    }

    /// Checks a final checkpoint against the last one this client verified for the same log
    /// (state file): equal sizes need equal roots, a newer one needs a consistency proof from
    /// the node, an older one a proof up to the stored one. Stores it if it is newer.
    fn observe(&self, trust: &Trust, o: &Opened) -> Result<()> {
        let Some(st) = &self.state else {
            return Ok(());
        };
        let key = log_key(&trust.origin, &trust.chain_id.to_hex());
        if let Some((old, _)) = st.get(&key)? {
            let cp = &o.cp;
            let split = |e: anyhow::Error| {
                anyhow!(
                    "split_view: the node's checkpoint (size {}) is inconsistent with the checkpoint of size {} this client verified before (state file {}): {e:#}",
                    cp.size,
                    old.size,
                    st.path().display()
                )
            };
            if cp.size == old.size {
                proof::verify_consistency(&old, cp, &[]).map_err(split)?;
            } else if cp.size > old.size {
                let p = self.consistency_proof(old.size, cp.size)?;
                proof::verify_consistency(&old, cp, &p).map_err(split)?;
            } else {
                // The node shows an older checkpoint (e.g. a follower a little behind): it must
                // catch up to ours, with a final checkpoint that extends it.
                let later = self.final_checkpoint(trust, old.size).map_err(|e| {
                    anyhow!(
                        "split_view: the node serves a checkpoint of size {} older than the one of size {} this client verified, and does not catch up: {e:#}",
                        cp.size,
                        old.size
                    )
                })?;
                let p = self.consistency_proof(cp.size, later.cp.size)?;
                proof::verify_consistency(cp, &later.cp, &p).map_err(split)?;
                let p = self.consistency_proof(old.size, later.cp.size)?;
                proof::verify_consistency(&old, &later.cp, &p).map_err(split)?;
                return st.put(&key, &later.cp, &later.note);
            }
        }
        st.put(&key, &o.cp, &o.note)
    }

    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<String>> {
        if from == 0 || from == to {
            return Ok(vec![]);
        }
        let v: Value = self
            .api
            .get(&format!("/v1/consistency?from={from}&to={to}"))?;
        let proof = v
            .get("proof")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("the node's consistency answer has no proof"))?;
        Ok(proof
            .iter()
            .map(|h| h.as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// Fetches `GET /v1/checkpoint` until it is final (quorum and witnesses) and at least
    /// `min_size` large, for at most `--wait-ms`.
    fn final_checkpoint(&self, trust: &Trust, min_size: u64) -> Result<Opened> {
        let deadline = Instant::now() + self.wait;
        loop {
            let note = self.api.get_text("/v1/checkpoint")?;
            let o = trust.open_any(&note)?;
            let ready = o.cp.size >= min_size;
            match trust.check_final(&o) {
                Ok(()) if ready => return Ok(o),
                Err(e) if Instant::now() >= deadline => return Err(e),
                _ if Instant::now() >= deadline => bail!(
                    "checkpoint.stale: the node's checkpoint (size {}) did not reach size {min_size} within {:?}",
                    o.cp.size,
                    self.wait
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Verifies that `entry_bytes` is at `position` in the checkpoint `note` (signed by at least
    /// one validator) and that this checkpoint is, or is extended by, a final checkpoint
    /// (quorum of validators, required witnesses) consistent with what this client saw before.
    fn verify_entry(
        &self,
        trust: &Trust,
        entry_bytes: &[u8],
        position: u64,
        proof_hex: &[String],
        note: &str,
    ) -> Result<Included> {
        let o = trust.open_any(note)?;
        let inc = proof::verify_inclusion_in(&o.cp, entry_bytes, position, proof_hex)?;
        let fin = if trust.check_final(&o).is_ok() {
            o
        } else {
            let f = self.final_checkpoint(trust, o.cp.size)?;
            let p = self.consistency_proof(o.cp.size, f.cp.size)?;
            proof::verify_consistency(&o.cp, &f.cp, &p)?;
            f
        };
        self.observe(trust, &fin)?;
        Ok(Included {
            position: inc.position,
            size: fin.cp.size,
        })
    }

    /// Signs `kind`, posts it to `path`, checks the answer and its inclusion proof.
    fn submit(
        &self,
        signer: &Signer,
        path: &str,
        kind: EntryKind,
    ) -> Result<(Entry, WriteAnswer, Included)> {
        let signer = &self.with_tag(signer)?;
        let h = self.health()?;
        let entry = signer.entry(&h.chain_id, h.time_ms, kind)?;
        let ans = self.api.post_entry(path, &entry.bytes)?;
        if ans.id != entry.id {
            bail!(
                "the node answered for entry {} but the submitted entry is {}",
                ans.id,
                entry.id
            );
        }
        let trust = self.trust(Some(&h))?;
        let inc = self.verify_entry(
            &trust,
            &entry.bytes,
            ans.position,
            &ans.inclusion_proof,
            &ans.checkpoint,
        )?;
        Ok((entry, ans, inc))
    }

    fn report_write(&self, what: &str, ans: &WriteAnswer, inc: &Included, extra: Value) {
        if self.json {
            let mut v = serde_json::to_value(ans).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert(
                    "verified".into(),
                    json!({"position": inc.position, "checkpoint_size": inc.size}),
                );
                if let Value::Object(x) = extra {
                    m.extend(x);
                }
            }
            out_json(&v);
        } else {
            let mut s = format!(
                "{what}: id {}\n  {} at log position {} in block {} ({})\n",
                ans.id, ans.kind, ans.position, ans.height, ans.block_hash
            );
            if let Value::Object(x) = extra {
                for (k, v) in x {
                    s += &format!(
                        "  {k}: {}\n",
                        v.as_str().map_or(v.to_string(), str::to_string)
                    );
                }
            }
            s += &inc.to_string();
            out(&s);
        }
    }

    fn show(&self, v: &Value) {
        if self.json {
            out_json(v);
        } else {
            out(&human(v, 0));
        }
    }
}

/// A plain indented rendering of a JSON value (times ending in `_at`/`time` get a UTC form).
fn human(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            let mut s = String::new();
            for (k, x) in m {
                match x {
                    Value::Object(_) | Value::Array(_) if !is_scalar_array(x) => {
                        s += &format!("{pad}{k}:\n{}", human(x, indent + 2));
                    }
                    _ => {
                        let mut line = scalar(x);
                        if let Some(n) = x.as_u64() {
                            if (k.ends_with("_at")
                                || k == "time"
                                || k == "deadline"
                                || k == "due"
                                || k.starts_with("not_"))
                                && n > 1_000_000_000_000
                            {
                                line = format!("{n} ({})", fmt_time(n));
                            }
                        }
                        s += &format!("{pad}{k}: {line}\n");
                    }
                }
            }
            s
        }
        Value::Array(a) => {
            let mut s = String::new();
            for (i, x) in a.iter().enumerate() {
                s += &format!("{pad}- [{i}]\n{}", human(x, indent + 2));
            }
            s
        }
        x => format!("{pad}{}\n", scalar(x)),
    }
}

fn is_scalar_array(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
        x => x.to_string(),
    }
}

fn keygen(ctx: &Ctx, out_path: &Path) -> Result<()> {
    let key = KeyPair::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(out_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} already exists; refusing to overwrite a key",
                out_path.display()
            )
        } else {
            anyhow!("cannot create {}: {e}", out_path.display())
        }
    })?;
    f.write_all(key.to_file_text().as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", out_path.display()))?;
    if ctx.json {
        out_json(&json!({"file": out_path, "public_key": key.public().to_hex()}));
    } else {
        out(&format!(
            "wrote {} (mode 0600)\npublic key: {}",
            out_path.display(),
            key.public().to_hex()
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct QueryOk<'a> {
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    salt: String,
    response_digest: Digest,
    record: WriteAnswer,
}

fn query(ctx: &Ctx, consent: &str, firm: Option<&str>, categories: &str) -> Result<()> {
    let firm = firm.map(parse_uscc).transpose()?;
    let consent = digest_arg("consent id", consent)?;
    let categories = categories_arg(categories)?;
    let signer = ctx.signer()?;
    let bank = signer.org("a query")?;
    // The ledger names the firm by tag: the request carries the consent's firm tag (a bank
    // reads its own consents). A --firm USCC is only validated here; the agency maps the tag.
    let _ = firm;
    let firm = {
        let c: Value = match ctx.get_signed(&signer, &format!("/v1/consents/{consent}")) {
            Ok(c) => c,
            Err(e) if e.downcast_ref::<ApiError>().is_some_and(|a| a.status == 404) => bail!(
                "consent.unknown: the ledger has no consent {consent}, so there is no firm to query (nothing was sent or recorded)"
            ),
            Err(e) => return Err(e),
        };
        let f = c.get("firm").and_then(Value::as_str).unwrap_or_default();
        FirmTag::from_hex(f).map_err(|e| anyhow!("the consent's firm tag: {e}"))?
    };
    let h = ctx.health()?;
    let signed = signer.query(
        &h.chain_id,
        QueryRequest {
            bank,
            firm,
            consent,
            categories,
            nonce: rand::random(),
            time: h.time_ms,
        },
    )?;
    let body = json!({ "request": signed });
    let text = match ctx.api.post_text("/v1/queries", &body) {
        Ok(t) => t,
        Err(e) => {
            if let Some(api) = e.downcast_ref::<ApiError>() {
                if let Some(d) = api.body.get("denial") {
                    let pos = d.get("position").and_then(Value::as_u64);
                    if ctx.json {
                        out_json(&api.body);
                    }
                    return Err(anyhow!(
                        "{}{}",
                        api,
                        pos.map(|p| format!("; denial recorded at log position {p}"))
                            .unwrap_or_default()
                    ));
                }
            }
            return Err(e);
        }
    };
    let ok: QueryOk<'_> = serde_json::from_str(&text)
        .map_err(|e| anyhow!("the node's query answer is not as specified: {e}"))?;
    let data: Value = serde_json::from_str(ok.data.get())
        .map_err(|e| anyhow!("the node's query data is not JSON: {e}"))?;
    // 1. The data matches the digest that was logged.
    proof::verify_response_digest(ok.data.get(), &data, &ok.salt, &ok.response_digest)?;
    // 2. The logged entry is a QueryServed of exactly this request with that digest.
    let ea: EntryAnswer =
        ctx.get_signed(&signer, &format!("/v1/entries/{}", ok.record.position))?;
    let bytes = entry_bytes(&ea)?;
    let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    if entry.id != ok.record.id {
        bail!(
            "query.record_mismatch: entry at position {} is not the query record",
            ok.record.position
        );
    }
    match &entry.body.kind {
        EntryKind::QueryServed(q) if q.request == signed && q.response == ok.response_digest => {}
        _ => bail!("query.record_mismatch: the logged query record does not match this request and response"),
    }
    // 3. That entry is in the signed checkpoint the node returned.
    let trust = ctx.trust(Some(&h))?;
    let inc = ctx.verify_entry(
        &trust,
        &entry.bytes,
        ok.record.position,
        &ok.record.inclusion_proof,
        &ok.record.checkpoint,
    )?;
    if ctx.json {
        out_json(&json!({
            "data": data,
            "salt": ok.salt,
            "response_digest": ok.response_digest,
            "record": ok.record,
            "verified": {"position": inc.position, "checkpoint_size": inc.size, "response_digest": true},
        }));
    } else {
        let mut s = format!(
            "query served: record {} at log position {} in block {}\n",
            ok.record.id, ok.record.position, ok.record.height
        );
        s += &human(&data, 2);
        s += "verified: response digest matches the logged record\n";
        s += &inc.to_string();
        out(&s);
    }
    Ok(())
}

/// Checks one access-log item against the entry stored at its position and that entry's
/// inclusion proof; returns the checkpoint size it was verified in and the entry id.
fn verify_access_item(
    ctx: &Ctx,
    signer: &Signer,
    trust: &Trust,
    firm: &FirmTag,
    item: &Value,
) -> Result<(u64, Digest)> {
    let pos = item
        .get("position")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("an access-log item has no position"))?;
    let ea: EntryAnswer = ctx.get_signed(signer, &format!("/v1/entries/{pos}"))?;
    let bytes = entry_bytes(&ea)?;
    let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    let (req, reason) = match &entry.body.kind {
        EntryKind::QueryServed(q) => (&q.request.request, None),
        EntryKind::QueryDenied { request, reason } => (&request.request, Some(reason.code())),
        EntryKind::AlertsDelivered(b) => {
            xinyi_client::watch::check_access_item(b, item, firm, pos)?;
            let inc = ctx.verify_entry(trust, &bytes, pos, &ea.inclusion_proof, &ea.checkpoint)?;
            return Ok((inc.size, entry.id));
        }
        other => bail!(
            "access_log.mismatch: entry {pos} is a {} entry",
            other.name()
        ),
    };
    let listed = (
        item.get("kind").and_then(Value::as_str),
        item.get("bank").and_then(Value::as_str),
        item.get("consent").and_then(Value::as_str),
        item.get("reason").and_then(Value::as_str),
    );
    let consent = req.consent.to_hex();
    let stored = (
        Some(entry.body.kind.name()),
        Some(req.bank.as_str()),
        Some(consent.as_str()),
        reason,
    );
    if req.firm != *firm || listed != stored {
        bail!("access_log.mismatch: the access log's item at position {pos} does not match the stored entry");
    }
    let inc = ctx.verify_entry(trust, &bytes, pos, &ea.inclusion_proof, &ea.checkpoint)?;
    Ok((inc.size, entry.id))
}

fn access_log(ctx: &Ctx, firm: &str, verify: bool) -> Result<()> {
    let firm = parse_uscc(firm)?;
    let signer = ctx.signer()?;
    let h = ctx.health()?;
    // The firm's tag: checked against its own registration when the firm asks (`signer`);
    // an auditor takes the node's.
    let tag = match signer.tag {
        Some(t) => t,
        None => ctx.firm_tag_as(&signer, &firm)?,
    };
    // The proof first: the list fetched afterwards covers at least the proven block.
    let commitment = if verify {
        let ppath = format!("/v1/firms/{firm}/access-proof");
        let pauth = signer.auth_header(&h.chain_id, "GET", &ppath, h.time_ms);
        let pv: Value = ctx.api.get_auth(&ppath, &pauth)?;
        let (g, _) = ctx.genesis()?;
        Some(proof::verify_access_proof(&g, &tag, &pv)?)
    } else {
        None
    };
    let path = format!("/v1/firms/{firm}/access-log");
    let auth = signer.auth_header(&h.chain_id, "GET", &path, h.time_ms);
    let mut v: Value = ctx.api.get_auth(&path, &auth)?;
    let mut verified = None;
    if let Some(c) = commitment {
        let trust = ctx.trust(Some(&h))?;
        let items = v
            .get("entries")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut size = 0;
        let mut chain = AccessHead {
            head: Digest([0; 32]),
            count: 0,
        };
        let mut last = None;
        for item in &items {
            let pos = item
                .get("position")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if last.is_some_and(|l| pos <= l) {
                bail!("access_log.order: the access log is not in log order at position {pos}");
            }
            last = Some(pos);
            let (s, id) = verify_access_item(ctx, &signer, &trust, &tag, item)?;
            size = size.max(s);
            if pos < c.log_size {
                chain = chain.next(&id);
            }
        }
        let want = c.value.unwrap_or(AccessHead {
            head: Digest([0; 32]),
            count: 0,
        });
        if chain != want {
            bail!(
                "access_log.incomplete: the node listed {} access entries before log size {} but the ledger's access index of {firm} at block {} commits to {} (or the list differs from the committed chain)",
                chain.count,
                c.log_size,
                c.height,
                want.count
            );
        }
        verified = Some((items.len(), size, c.clone()));
        if let Value::Object(m) = &mut v {
            m.insert(
                "verified".into(),
                json!({"entries": items.len(), "checkpoint_size": size, "complete": true,
                       "complete_up_to_log_size": c.log_size, "block": c.height,
                       "access_count": want.count}),
            );
        }
    }
    if ctx.json {
        out_json(&v);
        return Ok(());
    }
    let entries = v
        .get("entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut s = format!("access log of {firm}: {} entries\n", entries.len());
    for e in &entries {
        let g = |k: &str| e.get(k).map(scalar).unwrap_or_else(|| "-".into());
        let time = e
            .get("time")
            .and_then(Value::as_u64)
            .map(fmt_time)
            .unwrap_or_default();
        s += &format!(
            "  #{:<6} {} {:<13} bank {:<10} consent {} [{}]{}\n",
            g("position"),
            time,
            g("kind"),
            g("bank"),
            g("consent"),
            g("categories"),
            e.get("reason")
                .filter(|r| !r.is_null())
                .map(|r| format!(" reason {}", scalar(r)))
                .unwrap_or_default()
        );
    }
    if let Some((n, size, c)) = verified {
        s += &format!("verified: all {n} entries match the ledger and are included in checkpoints up to size {size}\n");
        s += &format!(
            "verified: the list is complete up to log size {} (block {}, {} accesses, certified state root)\n",
            c.log_size,
            c.height,
            c.value.map_or(0, |a| a.count)
        );
    }
    out(&s);
    Ok(())
}

fn salted_random(data: &[u8]) -> (Digest, String) {
    let salt: [u8; 32] = rand::random();
    (hash::salted(&salt, data), hex::encode(salt))
}

fn file_or(path: Option<&Path>, default: String) -> Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display())),
        None => Ok(default.into_bytes()),
    }
}

fn parse_grade(s: &str) -> Result<Grade> {
    serde_json::from_value(Value::String(s.trim().to_ascii_lowercase())).map_err(|_| {
        anyhow!("unknown grade {s:?}; expected one of a, b, c, d, green, blue, yellow, red")
    })
}

/// The stored bytes of an entry answer (`entry.redacted` if the node withheld them).
fn entry_bytes(ea: &EntryAnswer) -> Result<Vec<u8>> {
    if ea.redacted || ea.entry.is_empty() {
        bail!(
            "entry.redacted: the node withholds entry {} from this reader (sign as a party to it or as an auditor: --key)",
            ea.position
        );
    }
    base64::engine::general_purpose::STANDARD
        .decode(ea.entry.trim())
        .map_err(|_| anyhow!("the node's entry {} is not base64", ea.position))
}

fn proof_verify_online(ctx: &Ctx, position: u64, save: Option<&Path>) -> Result<()> {
    let h = ctx.health()?;
    let ea: EntryAnswer = ctx.get_read(&format!("/v1/entries/{position}"))?;
    if ea.position != position {
        bail!(
            "the node answered with position {} for {position}",
            ea.position
        );
    }
    let bytes = entry_bytes(&ea)?;
    let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    let trust = ctx.trust(Some(&h))?;
    let inc = ctx.verify_entry(
        &trust,
        &bytes,
        position,
        &ea.inclusion_proof,
        &ea.checkpoint,
    )?;
    if let Some(dir) = save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let w = |name: &str, data: &[u8]| {
            std::fs::write(dir.join(name), data)
                .with_context(|| format!("writing {}", dir.join(name).display()))
        };
        w("entry.bin", &bytes)?;
        w(
            "proof.json",
            serde_json::to_string_pretty(
                &json!({"position": position, "inclusion_proof": ea.inclusion_proof}),
            )
            .unwrap_or_default()
            .as_bytes(),
        )?;
        w("checkpoint.txt", ea.checkpoint.as_bytes())?;
    }
    report_proof(ctx, &entry, &inc);
    Ok(())
}

fn report_proof(ctx: &Ctx, entry: &Entry, inc: &Included) {
    if ctx.json {
        out_json(&json!({
            "id": entry.id,
            "kind": entry.body.kind.name(),
            "position": inc.position,
            "checkpoint_size": inc.size,
            "verified": true,
        }));
    } else {
        out(&format!(
            "{} entry {}\n{inc}",
            entry.body.kind.name(),
            entry.id
        ));
    }
}

#[derive(Deserialize)]
struct ProofFile {
    position: u64,
    inclusion_proof: Vec<String>,
}

fn proof_verify_offline(
    ctx: &Ctx,
    entry: &Path,
    proof_file: &Path,
    checkpoint: &Path,
) -> Result<()> {
    let gpath = ctx.genesis.as_deref().ok_or_else(|| {
        anyhow!("offline proof verification needs --genesis FILE (the trusted validator keys)")
    })?;
    let trust = Trust::from_genesis(&read_genesis(gpath)?)?;
    let raw = std::fs::read(entry).with_context(|| format!("cannot read {}", entry.display()))?;
    let bytes = match Entry::decode(&raw) {
        Ok(_) => raw,
        Err(_) => base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8_lossy(&raw).trim())
            .map_err(|_| anyhow!("{} holds neither entry bytes nor base64", entry.display()))?,
    };
    let e = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    let pf: ProofFile = serde_json::from_slice(
        &std::fs::read(proof_file)
            .with_context(|| format!("cannot read {}", proof_file.display()))?,
    )
    .map_err(|e| {
        anyhow!(
            "{}: expected {{\"position\", \"inclusion_proof\"}}: {e}",
            proof_file.display()
        )
    })?;
    let note = std::fs::read_to_string(checkpoint)
        .with_context(|| format!("cannot read {}", checkpoint.display()))?;
    let inc = proof::verify_inclusion(&trust, &bytes, pf.position, &pf.inclusion_proof, &note)?;
    report_proof(ctx, &e, &inc);
    Ok(())
}

/// Runs `audit verify`. Returns Ok(false) when the chain fails verification (already reported).
fn audit_verify(ctx: &Ctx, bundle: Option<&Path>) -> Result<bool> {
    let show = !ctx.json && std::io::stderr().is_terminal();
    let result = match bundle {
        Some(b) => {
            let gpath = ctx.genesis.as_deref().ok_or_else(|| {
                anyhow!("audit verify --bundle needs --genesis FILE (the trusted genesis)")
            })?;
            let genesis = read_genesis(gpath)?;
            let f = std::fs::File::open(b)
                .with_context(|| format!("cannot open bundle {}", b.display()))?;
            audit::run(&genesis, f, 0, show)
        }
        None => {
            let h = ctx.health()?;
            let (genesis, fetched) = ctx.genesis()?;
            if fetched {
                warn(&format!(
                    "using the genesis fetched from {}: a fetched genesis is only as trustworthy as the node; pass --genesis FILE to audit against a genesis you trust",
                    ctx.api.base()
                ));
            }
            let stream = ctx.get_stream_read("/v1/export")?;
            let mut r = audit::run(&genesis, stream, h.height, show);
            if let Ok(sum) = &mut r {
                sum.checkpoint = Some(latest_checkpoint_report(ctx, &genesis)?);
            }
            r
        }
    };
    match result {
        Ok(s) => {
            if ctx.json {
                out_json(&serde_json::to_value(&s).unwrap_or(Value::Null));
            } else {
                out(&s.text());
            }
            Ok(true)
        }
        Err(f) => {
            if ctx.json {
                out_json(&serde_json::to_value(&f).unwrap_or(Value::Null));
            }
            let _ = writeln!(std::io::stderr(), "error: {}", f.line());
            Ok(false)
        }
    }
}

fn read_note(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn offline_trust(ctx: &Ctx, what: &str) -> Result<Trust> {
    let gpath = ctx
        .genesis
        .as_deref()
        .ok_or_else(|| anyhow!("{what} needs --genesis FILE (the trusted validator keys)"))?;
    let mut t = Trust::from_genesis(&read_genesis(gpath)?)?;
    t.witnesses = ctx.witnesses.clone();
    t.min_witnesses = ctx.min_witnesses;
    Ok(t)
}

fn audit_consistency(ctx: &Ctx, old: &Path, new: &Path, proof_file: Option<&Path>) -> Result<()> {
    let trust = match proof_file {
        Some(_) => offline_trust(ctx, "audit consistency --proof")?,
        None => ctx.trust(Some(&ctx.health()?))?,
    };
    let o = trust.open(&read_note(old)?)?;
    let n = trust.open(&read_note(new)?)?;
    let (a, b) = if o.size <= n.size { (&o, &n) } else { (&n, &o) };
    let p = match proof_file {
        Some(f) => {
            let v: Value = serde_json::from_slice(
                &std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
            )
            .map_err(|e| anyhow!("{}: {e}", f.display()))?;
            v.get("proof")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("{}: expected {{\"proof\": [hex...]}}", f.display()))?
                .iter()
                .map(|h| h.as_str().unwrap_or_default().to_string())
                .collect()
        }
        None => ctx.consistency_proof(a.size, b.size)?,
    };
    proof::verify_consistency(a, b, &p)?;
    if ctx.json {
        out_json(&json!({"consistent": true, "old_size": a.size, "new_size": b.size}));
    } else {
        out(&format!(
            "verified: the checkpoint of size {} extends the checkpoint of size {}",
            b.size, a.size
        ));
    }
    Ok(())
}

fn checkpoint_cmd(ctx: &Ctx, save: Option<&Path>) -> Result<()> {
    let h = ctx.health()?;
    let trust = ctx.trust(Some(&h))?;
    let note = ctx.api.get_text("/v1/checkpoint")?;
    let o = trust.open_any(&note)?;
    trust.check_final(&o)?;
    ctx.observe(&trust, &o)?;
    if let Some(p) = save {
        std::fs::write(p, &note).with_context(|| format!("writing {}", p.display()))?;
    }
    let v = json!({
        "origin": o.cp.origin,
        "size": o.cp.size,
        "root": hex::encode(o.cp.root),
        "validator_power": o.power,
        "total_power": o.total_power,
        "validator_signatures": o.validators,
        "witnesses": o.witnesses.iter().map(|(n, t)| json!({"name": n, "timestamp": t})).collect::<Vec<_>>(),
        "consistent_with_state": ctx.state.as_ref().map(|s| s.path().display().to_string()),
    });
    if ctx.json {
        out_json(&v);
    } else {
        out(&format!(
            "checkpoint {} size {} root {}\nverified: signed by validators of power {} of {} ({} signatures), {} witness cosignature(s){}",
            o.cp.origin,
            o.cp.size,
            hex::encode(o.cp.root),
            o.power,
            o.total_power,
            o.validators,
            o.witnesses.len(),
            if ctx.state.is_some() { "; consistent with the last checkpoint this client verified" } else { "" }
        ));
    }
    Ok(())
}

fn witness_cmd(ctx: &Ctx, cmd: WitnessCmd) -> Result<()> {
    let signer = ctx.signer_key()?;
    match cmd {
        WitnessCmd::Vkey { name } => {
            let c =
                Cosigner::new(name, signer.signing_key().clone()).map_err(|e| anyhow!("{e}"))?;
            out(&c.key().to_string());
        }
        WitnessCmd::Serve {
            listen,
            name,
            logs,
            state_file,
        } => {
            let c =
                Cosigner::new(name, signer.signing_key().clone()).map_err(|e| anyhow!("{e}"))?;
            let mut paths = logs;
            if paths.is_empty() {
                paths.extend(ctx.genesis.clone());
            }
            if paths.is_empty() {
                bail!("witness serve needs --log GENESIS (or --genesis) for each log it witnesses");
            }
            let trusts = paths
                .iter()
                .map(|p| Trust::from_genesis(&read_genesis(p)?))
                .collect::<Result<Vec<_>>>()?;
            let origins: Vec<String> = trusts.iter().map(|t| t.origin.clone()).collect();
            let w = Witness::open(c, trusts, &state_file)?;
            let server = tiny_http::Server::http(&listen)
                .map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
            out(&format!(
                "witness {} listening on http://{}\nvkey {}\nlogs: {}",
                w.cosigner().key().name,
                server.server_addr(),
                w.cosigner().key(),
                origins.join(", ")
            ));
            w.serve(server)?;
        }
    }
    Ok(())
}

/// The node's latest checkpoint for the audit report: verified, final, consistent with the
/// client's state; who signed and cosigned it.
fn latest_checkpoint_report(ctx: &Ctx, genesis: &Genesis) -> Result<Value> {
    let mut trust = Trust::from_genesis(genesis)?;
    trust.witnesses = ctx.witnesses.clone();
    trust.min_witnesses = ctx.min_witnesses;
    let note = ctx.api.get_text("/v1/checkpoint")?;
    let o = trust.open_any(&note)?;
    trust.check_final(&o)?;
    ctx.observe(&trust, &o)?;
    Ok(json!({
        "size": o.cp.size,
        "root": hex::encode(o.cp.root),
        "validator_power": o.power,
        "total_power": o.total_power,
        "validator_signatures": o.validators,
        "witnesses": o.witnesses.iter().map(|(n, t)| json!({"name": n, "timestamp": t})).collect::<Vec<_>>(),
    }))
}

fn export(ctx: &Ctx, path: &Path) -> Result<()> {
    let mut stream = ctx.get_stream_read("/v1/export")?;
    let tmp = path.with_extension("part");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let n = std::io::copy(&mut stream, &mut f).with_context(|| "downloading the bundle")?;
    f.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if ctx.json {
        out_json(&json!({"file": path, "bytes": n}));
    } else {
        out(&format!("wrote {} ({n} bytes); verify it with: xinyi audit verify --bundle {} --genesis GENESIS", path.display(), path.display()));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<bool> {
    let offline = matches!(
        cli.cmd,
        Cmd::Keygen { .. }
            | Cmd::Proof(ProofCmd::Verify {
                entry_position: None,
                ..
            })
            | Cmd::Audit(AuditCmd::Verify { bundle: Some(_) })
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
    };
    match cli.cmd {
        Cmd::Keygen { out } => keygen(&ctx, &out)?,
        Cmd::Status => {
            let h = ctx.health()?;
            ctx.show(&serde_json::to_value(&h)?);
        }
        Cmd::Consent(c) => match c {
            ConsentCmd::Grant {
                firm,
                bank,
                categories,
                uses,
                days,
                purpose,
                monitor,
            } => {
                let monitoring = monitor
                    .as_deref()
                    .map(xinyi_client::watch::monitoring_arg)
                    .transpose()?;
                let firm = parse_uscc(&firm)?;
                let bank = org_arg("--bank", &bank)?;
                let categories = categories_arg(&categories)?;
                if uses == 0 {
                    bail!("--uses must be at least 1");
                }
                if days == 0 {
                    bail!("--days must be at least 1");
                }
                let signer = ctx.signer()?;
                let me = signer.firm("a consent")?;
                if me != firm {
                    bail!("the key signs as firm {me} but --firm is {firm}: a consent is granted by the firm itself");
                }
                if purpose.trim().is_empty() || purpose.len() > 512 {
                    bail!("--purpose must be 1-512 bytes of text");
                }
                let now = ctx.health()?.time_ms;
                // Salted digest (Consent::purpose_digest): the ledger never holds the text.
                let (purpose_digest, purpose_salt) = salted_random(purpose.as_bytes());
                let kind = EntryKind::ConsentGranted(Consent {
                    bank,
                    purpose: purpose_digest,
                    categories,
                    not_before: now.saturating_sub(60_000),
                    not_after: now + u64::from(days) * DAY_MS,
                    max_uses: uses,
                    monitoring,
                });
                let (_, ans, inc) = ctx.submit(&signer, "/v1/consents", kind)?;
                ctx.report_write(
                    "consent granted",
                    &ans,
                    &inc,
                    json!({"purpose": purpose, "purpose_salt": purpose_salt}),
                );
            }
            ConsentCmd::Revoke { id } => {
                let consent = digest_arg("consent id", &id)?;
                let signer = ctx.signer()?;
                signer.firm("a revocation")?;
                let (_, ans, inc) = ctx.submit(
                    &signer,
                    &format!("/v1/consents/{consent}/revoke"),
                    EntryKind::ConsentRevoked { consent },
                )?;
                ctx.report_write("consent revoked", &ans, &inc, json!({"consent": consent}));
            }
            ConsentCmd::Show { id } => {
                let id = digest_arg("consent id", &id)?;
                let v: Value = ctx.get_read(&format!("/v1/consents/{id}"))?;
                ctx.show(&v);
            }
        },
        Cmd::Query {
            consent,
            firm,
            categories,
        } => query(&ctx, &consent, firm.as_deref(), &categories)?,
        Cmd::AccessLog { firm, verify } => access_log(&ctx, &firm, verify)?,
        Cmd::Queries { bank } => {
            let signer = ctx.signer()?;
            let bank = match bank {
                Some(b) => org_arg("--bank", &b)?,
                None => signer.org("a bank's query list")?,
            };
            let v: Value = ctx.get_signed(&signer, &format!("/v1/banks/{bank}/queries"))?;
            ctx.show(&v);
        }
        Cmd::Records { firm } => {
            let firm = parse_uscc(&firm)?;
            let v: Value = ctx.api.get(&format!("/v1/firms/{firm}/records"))?;
            ctx.show(&v);
        }
        Cmd::Repair(r) => match r {
            RepairCmd::Request {
                record,
                fulfilment,
                letter,
            } => {
                let record = digest_arg("record id", &record)?;
                let signer = ctx.signer()?;
                signer.firm("a repair request")?;
                let f = file_or(fulfilment.as_deref(), format!("fulfilment of {record}"))?;
                let l = file_or(letter.as_deref(), format!("commitment letter for {record}"))?;
                let (fd, fs) = salted_random(&f);
                let (ld, ls) = salted_random(&l);
                let (_, ans, inc) = ctx.submit(
                    &signer,
                    "/v1/repairs",
                    EntryKind::RepairRequested {
                        record,
                        fulfilment: fd,
                        commitment_letter: ld,
                    },
                )?;
                ctx.report_write(
                    "repair requested",
                    &ans,
                    &inc,
                    json!({"fulfilment_salt": fs, "commitment_letter_salt": ls}),
                );
            }
            RepairCmd::Decide {
                id,
                verdict,
                reason,
            } => {
                let repair = digest_arg("repair id", &id)?;
                let signer = ctx.signer()?;
                signer.org("a repair decision")?;
                let approved = verdict.approve && !verdict.reject;
                let (_, ans, inc) = ctx.submit(
                    &signer,
                    &format!("/v1/repairs/{repair}/decision"),
                    EntryKind::RepairDecided {
                        repair,
                        approved,
                        reason,
                    },
                )?;
                let what = if approved { "repair approved" } else { "repair rejected" };
                ctx.report_write(what, &ans, &inc, json!({}));
            }
            RepairCmd::Apply { id } => {
                let repair = digest_arg("repair id", &id)?;
                let signer = ctx.signer()?;
                signer.org("a repair application")?;
                let (_, ans, inc) = ctx.submit(
                    &signer,
                    &format!("/v1/repairs/{repair}/applications"),
                    EntryKind::RepairApplied { repair },
                )?;
                ctx.report_write("repair applied", &ans, &inc, json!({}));
            }
            RepairCmd::Status { id } => {
                let id = digest_arg("repair id", &id)?;
                let v: Value = ctx.api.get(&format!("/v1/repairs/{id}"))?;
                ctx.show(&v);
            }
        },
        Cmd::Commitment(c) => match c {
            CommitmentCmd::Make {
                agency,
                text,
                due_days,
            } => {
                let agency = org_arg("--agency", &agency)?;
                let signer = ctx.signer()?;
                signer.firm("a commitment")?;
                let now = ctx.health()?.time_ms;
                let (content, salt) = salted_random(text.as_bytes());
                let (_, ans, inc) = ctx.submit(
                    &signer,
                    "/v1/commitments",
                    EntryKind::CommitmentMade {
                        agency,
                        content,
                        due: now + u64::from(due_days) * DAY_MS,
                    },
                )?;
                ctx.report_write("commitment made", &ans, &inc, json!({"content_salt": salt}));
            }
            CommitmentCmd::Broken { id, finding } => {
                let commitment = digest_arg("commitment id", &id)?;
                let signer = ctx.signer()?;
                signer.org("a broken-commitment finding")?;
                let (fd, salt) = salted_random(finding.as_bytes());
                let (_, ans, inc) = ctx.submit(
                    &signer,
                    &format!("/v1/commitments/{commitment}/broken"),
                    EntryKind::CommitmentBroken {
                        commitment,
                        finding: fd,
                    },
                )?;
                ctx.report_write("commitment broken", &ans, &inc, json!({"finding_salt": salt}));
            }
            CommitmentCmd::Show { id } => {
                let id = digest_arg("commitment id", &id)?;
                let v: Value = ctx.api.get(&format!("/v1/commitments/{id}"))?;
                ctx.show(&v);
            }
        },
        Cmd::Grade(g) => match g {
            GradeCmd::Assign {
                firm,
                domain,
                grade,
            } => {
                let firm = parse_uscc(&firm)?;
                let grade = parse_grade(&grade)?;
                let signer = ctx.signer()?;
                signer.org("a grade")?;
                let firm = ctx.firm_tag_as(&signer, &firm)?;
                let (_, ans, inc) = ctx.submit(
                    &signer,
                    "/v1/grades",
                    EntryKind::GradeAssigned {
                        firm,
                        domain,
                        grade,
                    },
                )?;
                ctx.report_write("grade assigned", &ans, &inc, json!({}));
            }
            GradeCmd::Show { firm, domain } => {
                let firm = parse_uscc(&firm)?;
                if domain.is_empty() || domain.contains('/') {
                    bail!("--domain must be a non-empty name without '/'");
                }
                let v: Value = ctx.api.get(&format!("/v1/firms/{firm}/grades/{domain}"))?;
                ctx.show(&v);
            }
        },
        Cmd::Proof(ProofCmd::Verify {
            entry_position,
            save,
            entry,
            proof,
            checkpoint,
        }) => match (entry_position, entry, proof, checkpoint) {
            (Some(n), None, None, None) => proof_verify_online(&ctx, n, save.as_deref())?,
            (None, Some(e), Some(p), Some(c)) => proof_verify_offline(&ctx, &e, &p, &c)?,
            _ => bail!("proof verify needs --entry-position N, or --entry FILE --proof FILE --checkpoint FILE"),
        },
        Cmd::Audit(AuditCmd::Verify { bundle }) => return audit_verify(&ctx, bundle.as_deref()),
        Cmd::Audit(AuditCmd::Consistency { old, new, proof }) => {
            audit_consistency(&ctx, &old, &new, proof.as_deref())?
        }
        Cmd::Checkpoint { save } => checkpoint_cmd(&ctx, save.as_deref())?,
        Cmd::Witness(w) => witness_cmd(&ctx, w)?,
        Cmd::Export { out } => export(&ctx, &out)?,
        Cmd::Watch {
            bank,
            after,
            count,
            idle_exit_ms,
        } => {
            let signer = ctx.signer()?;
            let bank = match bank {
                Some(b) => org_arg("--bank", &b)?,
                None => signer.org("watching alerts")?,
            };
            let opts = xinyi_client::watch::WatchOptions {
                bank,
                after,
                count,
                idle: idle_exit_ms.map(Duration::from_millis),
                poll: Duration::from_secs(5),
                wait: ctx.wait,
            };
            let json = ctx.json;
            xinyi_client::watch::watch(&ctx.api, &signer, &ctx.trust(None)?, &opts, |a| {
                if json {
                    out(&a.to_string());
                } else {
                    out(&xinyi_client::watch::human_line(a));
                }
            })?;
        }
        Cmd::Record(RecordCmd::Publish {
            firm,
            category,
            severity,
            days,
            record,
        }) => {
            let firm = parse_uscc(&firm)?;
            let category = Category::parse(&category).map_err(|e| anyhow!("--category: {e}"))?;
            let severity = match severity.as_str() {
                "minor" => xinyi_ledger::types::Severity::Minor,
                "general" => xinyi_ledger::types::Severity::General,
                "serious" => xinyi_ledger::types::Severity::Serious,
                other => bail!("--severity: {other:?} is not minor, general or serious"),
            };
            let record = match record {
                Some(r) => digest_arg("record id", &r)?,
                None => Digest(rand::random()),
            };
            let signer = ctx.signer()?;
            signer.org("a credit record")?;
            let tag = ctx.firm_tag_as(&signer, &firm)?;
            let kind = EntryKind::CreditRecordPublished(xinyi_ledger::entry::CreditRecord {
                record,
                firm: tag,
                category,
                severity,
                min_publicity_days: days,
            });
            let (_, ans, inc) = ctx.submit(&signer, "/v1/entries", kind)?;
            ctx.report_write("record published", &ans, &inc, json!({"record": record}));
        }
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
