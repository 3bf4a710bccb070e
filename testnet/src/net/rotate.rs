//! `xinyi-testnet rotate-key`: replace a validator's key through the ledger while the
//! consortium keeps committing (specs/consensus.md §9, docs/reliability.md §6).
//!
//! 1. A new key is written to `keys/<org>.key.next` (mode 0600; encrypted under
//!    `XINYI_KEY_PASSPHRASE` like every other testnet key). A `.next` file left by an
//!    interrupted run is reused.
//! 2. A `Membership` entry `MemberChange::RotateKey { org, key }` with an effective height `E`
//!    a margin above the head, approved by every validator (the testnet holds all their keys;
//!    in a real consortium each validator signs its approval itself), authored by `org` with
//!    its current key, is posted to another validator's node and acknowledged as committed.
//! 3. The node keeps running with its old key until its own ledger holds block `E` (from `E`
//!    on the set names the new key: the old engine stops after `E - 1`, the others start the
//!    next epoch without it and refuse the old key on the p2p layer). If the others pass `E`
//!    while it is still below (it lagged, and they now refuse its old key, so it would never
//!    learn `E`), it is restarted behind `E`: a node starts with the key its ledger gives its
//!    organisation or with the key of a committed rotation of it not yet in force, and
//!    follows until its ledger reaches `E`.
//! 4. The node is stopped (SIGTERM), `keys/<org>.key` is renamed `keys/<org>.key.retired-E`,
//!    the new key takes its place (the node's config names `../keys/<org>.key`), the node is
//!    started, catches up and validates again: the command waits for a commit certificate
//!    carrying its vote and checks that vote under the new key (and not under the old one).
//!
//! The other validators keep a quorum throughout (one of four is restarted), so writes keep
//! committing: the rotation costs the consortium no downtime, only the rotated node's own API
//! is away for its restart.

use super::http::{self, WriteError};
use super::manifest::{Manifest, NodeEntry};
use super::ops;
use super::process::Sig;
use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xinyi_ledger::block::commit_payload;
use xinyi_ledger::entry::{
    membership_signing_payload, Approval, Author, MemberChange, MembershipChange,
    MembershipProposal,
};
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::{
    CommitCertificate, Digest, Entry, EntryBody, EntryKind, Genesis, KeyPair, OrgId, PublicKey,
};
use xinyi_node::dev::{read_key, write_secret};

/// Options of `rotate-key`.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Testnet directory.
    pub dir: PathBuf,
    /// Organisation whose key is rotated (a validator with a running node).
    pub org: String,
    /// Blocks between the head and the effective height (the entry must commit below it).
    pub margin: u64,
    /// Bound of each wait (commit, reaching the effective height, restart, first vote).
    pub timeout: Duration,
    /// How long no node may advance below the effective height before the consortium counts
    /// as halted.
    pub halt: Duration,
    /// Workaround for the epoch-transition halt (docs/reliability.md §6): restart the nodes
    /// that block a peer, one at a time. Costs downtime; off by default.
    pub unstick: bool,
}

/// What `rotate-key` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RotateReport {
    /// Organisation.
    pub org: String,
    /// Key before (hex).
    pub old_key: String,
    /// Key after (hex).
    pub new_key: String,
    /// The membership entry's id.
    pub entry: String,
    /// Its log position.
    pub entry_position: u64,
    /// The block holding it.
    pub entry_height: u64,
    /// First height at which the new key is the organisation's.
    pub effective_height: u64,
    /// The node that acknowledged the entry.
    pub acknowledged_by: String,
    /// The rotated node's height when it was stopped: at least the effective height, unless it
    /// was left behind (below).
    pub stopped_at_height: u64,
    /// Whether the node was cut off below the effective height (the others passed it and
    /// refused its old key before it learnt block `E`) and restarted with the new key behind
    /// `E`, to follow until its ledger reaches it (`Engine::open_cluster` accepts the key of a
    /// committed, pending rotation).
    pub restarted_behind: bool,
    /// Its pid after the restart.
    pub pid: u32,
    /// From stopping the node to its API answering again with the new key (ms).
    pub node_restart_ms: u64,
    /// First block whose commit certificate carries the node's vote under the new key.
    pub first_vote_height: u64,
    /// The key file now in use (`keys/<org>.key`).
    pub key_file: PathBuf,
    /// Where the old key went (`keys/<org>.key.retired-<E>`).
    pub retired_key_file: PathBuf,
    /// Nodes restarted by `--unstick` (empty without a halt).
    pub unstuck: Vec<String>,
}

/// "A blocks B" for every node whose /health reports a blocked member.
pub fn blocked_links(m: &Manifest) -> Vec<(String, String)> {
    let agent = http::agent_short();
    let mut out = Vec::new();
    for n in &m.nodes {
        let Ok(r) = agent.get(&format!("{}/health", n.url)).call() else {
            continue;
        };
        let Ok(v) = r.into_json::<Value>() else {
            continue;
        };
        for p in v
            .get("peers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if p.get("blocked").and_then(Value::as_bool) == Some(true) {
                let o = p.get("org").and_then(Value::as_str).unwrap_or("?");
                out.push((n.org.clone(), o.to_string()));
            }
        }
    }
    out
}

/// `keys/<org>.key.next`.
pub fn next_key_file(m: &Manifest, org: &str) -> PathBuf {
    m.keys.join(format!("{org}.key.next"))
}

/// `keys/<org>.key.retired-<height>`.
pub fn retired_key_file(m: &Manifest, org: &str, effective: u64) -> PathBuf {
    m.keys.join(format!("{org}.key.retired-{effective}"))
}

fn health_height(agent: &ureq::Agent, url: &str) -> Option<u64> {
    http::health(agent, url).ok().map(|h| h.height)
}

/// The certificate of block `h` at `url` with its header hash.
pub fn certificate(agent: &ureq::Agent, url: &str, h: u64) -> Option<CommitCertificate> {
    let v: Value = agent
        .get(&format!("{url}/v1/blocks/{h}"))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    serde_json::from_value(v.get("certificate")?.clone()).ok()
}

/// Whether `org`'s vote in `cert` verifies under `key`; None if the certificate has no vote of
/// `org`.
pub fn vote_verifies(
    cert: &CommitCertificate,
    chain: &Digest,
    org: &OrgId,
    key: &PublicKey,
) -> Option<bool> {
    let v = cert.votes.iter().find(|v| &v.validator == org)?;
    let payload = commit_payload(chain, cert.height, &cert.header_hash);
    Some(
        key.verify(SigDomain::Commit, &payload, &v.signature)
            .is_ok(),
    )
}

/// Builds the membership entry rotating `org`'s key to `new`, approved by every validator in
/// `approvers` (org, key), authored by `org` with `author_key`.
pub fn rotation_entry(
    chain: &Digest,
    org: &OrgId,
    author_key: &KeyPair,
    new: PublicKey,
    effective_height: u64,
    approvers: &[(OrgId, KeyPair)],
    time: u64,
) -> Result<Entry> {
    let change = MemberChange::RotateKey {
        org: org.clone(),
        key: new,
    };
    membership_entry(
        chain,
        org,
        author_key,
        change,
        effective_height,
        approvers,
        time,
    )
}

/// Builds the membership entry making `change` at `effective_height`, approved by every
/// validator in `approvers` (org, key), authored by `org` with `author_key`.
pub fn membership_entry(
    chain: &Digest,
    org: &OrgId,
    author_key: &KeyPair,
    change: MemberChange,
    effective_height: u64,
    approvers: &[(OrgId, KeyPair)],
    time: u64,
) -> Result<Entry> {
    let proposal = MembershipProposal {
        change,
        effective_height,
    };
    let payload = membership_signing_payload(chain, &proposal)?;
    let mut approvals: Vec<Approval> = approvers
        .iter()
        .map(|(o, k)| Approval {
            validator: o.clone(),
            signature: k.sign(SigDomain::Membership, &payload),
        })
        .collect();
    approvals.sort_by(|a, b| a.validator.cmp(&b.validator));
    approvals.dedup_by(|a, b| a.validator == b.validator);
    Ok(Entry::sign(
        chain,
        EntryBody {
            author: Author::Org(org.clone()),
            time,
            nonce: rand::random(),
            kind: EntryKind::Membership(MembershipChange {
                proposal,
                approvals,
            }),
        },
        author_key,
    )?)
}

pub(crate) fn wait<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(x) = f() {
            return Ok(x);
        }
        if Instant::now() > deadline {
            bail!("timed out after {:?} waiting for {what}", timeout);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the rotation; `say` gets one line per step.
pub fn rotate_key(opts: &RotateOptions, say: impl Fn(&str)) -> Result<RotateReport> {
    let m = Manifest::load(&opts.dir)?;
    let node = m.node(&opts.org)?.clone();
    if !node.validator {
        bail!(
            "{} is not a validator of this testnet; rotate-key is for validators (their votes \
             show the new key in use)",
            opts.org
        );
    }
    if !super::process::alive(node.pid) {
        bail!(
            "{} is not running: start it first (it must apply the rotation's block before it \
             can start with the new key)",
            opts.org
        );
    }
    let org = OrgId::new(&opts.org)?;
    let genesis = Genesis::from_json(&std::fs::read(&m.genesis)?)?;
    let chain = genesis.chain_id()?;
    let key_file = m.org_key(&opts.org);
    let old = read_key(&key_file)?;
    let next_file = next_key_file(&m, &opts.org);
    let new = if next_file.exists() {
        say(&format!(
            "reusing the new key of an interrupted rotation in {}",
            next_file.display()
        ));
        read_key(&next_file)?
    } else {
        let k = KeyPair::generate();
        write_secret(&next_file, &k.to_file_text())?;
        k
    };
    if new.public() == old.public() {
        bail!("{} holds the current key", next_file.display());
    }
    say(&format!(
        "rotating {}: {} -> {} (new key in {})",
        opts.org,
        old.public(),
        new.public(),
        next_file.display()
    ));
    let mut approvers = Vec::new();
    for n in m.nodes.iter().filter(|n| n.validator) {
        approvers.push((OrgId::new(&n.org)?, read_key(&m.org_key(&n.org))?));
    }
    // Post through another live validator (the rotated node is the one that will restart).
    let others: Vec<&NodeEntry> = m
        .nodes
        .iter()
        .filter(|n| n.org != opts.org && super::process::alive(n.pid))
        .collect();
    let via = others
        .iter()
        .find(|n| n.validator)
        .or_else(|| others.first())
        .copied()
        .unwrap_or(&node)
        .clone();
    let agent = http::agent();
    let mut margin = opts.margin.max(3);
    let deadline = Instant::now() + opts.timeout;
    let (entry, answer, effective) = loop {
        let h = http::health(&agent, &via.url)
            .with_context(|| format!("{} does not answer", via.org))?;
        let effective = h.height + margin;
        let e = rotation_entry(
            &chain,
            &org,
            &old,
            new.public(),
            effective,
            &approvers,
            h.time_ms,
        )?;
        match http::post_entry(&agent, &via.url, &e.bytes) {
            Ok(v) => break (e, v, effective),
            Err(WriteError::Status { code, body, .. })
                if code.starts_with("state.") && body.contains("effective height") =>
            {
                margin *= 2;
                say(&format!(
                    "the entry committed too late for effective height {effective}; retrying with a margin of {margin}"
                ));
            }
            Err(e) if e.retryable() && Instant::now() < deadline => {
                say(&format!(
                    "{} did not acknowledge the entry ({e}); retrying",
                    via.org
                ));
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => bail!("posting the rotation to {}: {e}", via.org),
        }
        if Instant::now() > deadline || margin > 10_000 {
            bail!("the rotation entry did not commit below its effective height in time");
        }
    };
    let num = |k: &str| answer.get(k).and_then(Value::as_u64);
    let mut r = RotateReport {
        org: opts.org.clone(),
        old_key: old.public().to_hex(),
        new_key: new.public().to_hex(),
        entry: entry.id.to_hex(),
        entry_position: num("position").ok_or_else(|| anyhow!("no position in {answer}"))?,
        entry_height: num("height").ok_or_else(|| anyhow!("no height in {answer}"))?,
        effective_height: effective,
        acknowledged_by: via.org.clone(),
        key_file: key_file.clone(),
        retired_key_file: retired_key_file(&m, &opts.org, effective),
        ..RotateReport::default()
    };
    say(&format!(
        "rotation committed by {} in block {} (position {}); the new key is in force from height {effective}",
        via.org, r.entry_height, r.entry_position
    ));

    // The node applies block E with its old key still running (or is left behind, below).
    let short = http::agent_short();
    let stopped_at =
        wait_effective(opts, &m, &node, effective, &mut r, &say).with_context(|| {
            format!(
                "{} must hold block {effective}, or at least the rotation's block {}, before it \
                 can start with its new key (a node starts only with a key its own ledger gives \
                 its organisation); the rotation is committed, the new key waits in {}",
                opts.org,
                r.entry_height,
                next_file.display()
            )
        })?;
    r.stopped_at_height = stopped_at;
    r.restarted_behind = stopped_at < effective;
    say(&if r.restarted_behind {
        format!(
            "{} is at block {stopped_at}, below {effective}, and the others have passed it (they \
             refuse its old key now); restarting it with the new key to follow up to {effective}",
            opts.org
        )
    } else {
        format!(
            "{} holds block {stopped_at} (>= {effective}); restarting it with the new key",
            opts.org
        )
    });
    let t = Instant::now();
    ops::kill(&opts.dir, &opts.org, Sig::Term)?;
    if super::process::alive(Manifest::load(&opts.dir)?.node(&opts.org)?.pid) {
        ops::kill(&opts.dir, &opts.org, Sig::Kill)?;
    }
    swap_key_files(&key_file, &next_file, &r.retired_key_file)?;
    r.pid = ops::start(&opts.dir, &opts.org, None, opts.timeout)
        .with_context(|| format!("starting {} with its new key", opts.org))?;
    r.node_restart_ms = t.elapsed().as_millis() as u64;
    say(&format!(
        "{} restarted with its new key (pid {}) after {} ms; waiting for its vote",
        opts.org, r.pid, r.node_restart_ms
    ));

    // Its vote, under the new key, in a certificate the others accepted.
    let from = wait("a live peer's height", opts.timeout, || {
        health_height(&short, &via.url)
    })?
    .max(effective);
    let mut next = from + 1;
    r.first_vote_height = wait(
        &format!("a commit certificate with {}'s vote", opts.org),
        opts.timeout,
        || {
            let top = health_height(&short, &via.url)?;
            while next <= top {
                let cert = certificate(&agent, &via.url, next)?;
                match vote_verifies(&cert, &chain, &org, &new.public()) {
                    Some(true) => return Some(next),
                    Some(false) => return None,
                    None => next += 1,
                }
            }
            None
        },
    )?;
    let cert = certificate(&agent, &via.url, r.first_vote_height)
        .ok_or_else(|| anyhow!("block {} vanished", r.first_vote_height))?;
    if vote_verifies(&cert, &chain, &org, &old.public()) != Some(false) {
        bail!(
            "{}'s vote in block {} verifies under the old key",
            opts.org,
            r.first_vote_height
        );
    }
    say(&format!(
        "block {} carries {}'s vote, valid under the new key and not under the old one",
        r.first_vote_height, opts.org
    ));
    Ok(r)
}

/// How long the node may stay below `E` once another node holds `E` before it counts as left
/// behind (a validator normally applies `E` within a block time of the others).
const LEFT_BEHIND: Duration = Duration::from_secs(5);

/// Waits until `node` holds block `effective`, or is left behind below it (for
/// [`LEFT_BEHIND`] after another node passed it) while holding the rotation's block
/// `r.entry_height`; returns the node's height. If no node advances for `opts.halt` below `effective`, the
/// consortium has halted: with `opts.unstick` the nodes that block a peer are restarted one at
/// a time (their blocks are in memory only), otherwise the error names the blocked links.
fn wait_effective(
    opts: &RotateOptions,
    m: &Manifest,
    node: &NodeEntry,
    effective: u64,
    r: &mut RotateReport,
    say: &impl Fn(&str),
) -> Result<u64> {
    let agent = http::agent_short();
    let deadline = Instant::now() + opts.timeout;
    let mut top = 0u64;
    let mut moved = Instant::now();
    let mut others_passed: Option<Instant> = None;
    loop {
        let mine = health_height(&agent, &node.url);
        if let Some(h) = mine.filter(|h| *h >= effective) {
            return Ok(h);
        }
        let now = m
            .nodes
            .iter()
            .filter_map(|n| health_height(&agent, &n.url))
            .max()
            .unwrap_or(0);
        if now > top {
            top = now;
            moved = Instant::now();
        }
        if top >= effective {
            let since = *others_passed.get_or_insert_with(Instant::now);
            if let Some(h) = mine.filter(|h| *h >= r.entry_height) {
                if since.elapsed() >= LEFT_BEHIND {
                    return Ok(h);
                }
            }
        }
        if moved.elapsed() >= opts.halt && top < effective {
            let links = blocked_links(m);
            let desc = links
                .iter()
                .map(|(a, b)| format!("{a} blocks {b}"))
                .collect::<Vec<_>>()
                .join(", ");
            let blockers: Vec<String> = links
                .iter()
                .map(|l| l.0.clone())
                .filter(|o| *o != node.org)
                .fold(Vec::new(), |mut v, o| {
                    if !v.contains(&o) {
                        v.push(o);
                    }
                    v
                });
            if !opts.unstick || blockers.is_empty() {
                bail!(
                    "the consortium halted at height {top}, below the effective height {effective}, \
                     for {:?}; blocked p2p links: {}. At the epoch change the first validators on \
                     the new set's engine block a validator still sending the old epoch's \
                     messages (\"epoch mismatch\" in their logs), and the block lasts until they \
                     restart; with the rotated validator out of the new set the rest then lack a \
                     quorum (docs/reliability.md §6). --unstick restarts the blocking nodes",
                    opts.halt,
                    if desc.is_empty() { "none reported".into() } else { desc }
                );
            }
            say(&format!(
                "halted at height {top} ({desc}); --unstick: restarting {}",
                blockers.join(", ")
            ));
            for b in blockers {
                ops::kill(&opts.dir, &b, Sig::Term)?;
                if super::process::alive(Manifest::load(&opts.dir)?.node(&b)?.pid) {
                    ops::kill(&opts.dir, &b, Sig::Kill)?;
                }
                ops::start(&opts.dir, &b, None, opts.timeout)?;
                r.unstuck.push(b);
            }
            moved = Instant::now();
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {:?} waiting for {} to apply block {effective} (highest height \
                 seen {top})",
                opts.timeout,
                node.org
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `key` → `retired`, `next` → `key`.
fn swap_key_files(key: &Path, next: &Path, retired: &Path) -> Result<()> {
    std::fs::rename(key, retired)
        .with_context(|| format!("moving {} to {}", key.display(), retired.display()))?;
    std::fs::rename(next, key)
        .with_context(|| format!("moving {} to {}", next.display(), key.display()))?;
    Ok(())
}
