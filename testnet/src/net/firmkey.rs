//! `xinyi-testnet rotate-firm-key`: rotate the consortium firm key behind firm tags while the
//! consortium keeps serving (`specs/privacy.md` §8).
//!
//! 1. The next epoch's key is written to `keys/firm.key.<epoch>` (mode 0600), beside the
//!    `keys/firm.key` every member's config names, so each node picks it up without a restart
//!    (`xinyi_node::firmkeys`). A file left by an interrupted run is reused.
//! 2. A `Membership` entry `MemberChange::RotateFirmKey { epoch, key_id }` (the key's id, never
//!    the key) with an effective height `E` a margin above the head, approved by every
//!    validator, is posted and acknowledged as committed.
//! 3. The command waits until every node holds the new epoch (its `/health` says so) and has
//!    reached `E`.
//! 4. The agency re-registers every keyed firm under its new tag with the firm's key of the
//!    new epoch (`KeyPair::firm_epoch_key`: derived from the firm's own key file, so the firm
//!    keeps one file, and unrelated to its earlier public key), in parallel; consents, records
//!    and accesses made before stay under the old tag. Only the nodes, holding both firm keys,
//!    can tell the two tags are one firm.

use super::http::{self, WriteError};
use super::layout::DATA_ORG;
use super::manifest::Manifest;
use super::ops;
use super::rotate::{membership_entry, wait};
use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xinyi_ledger::entry::MemberChange;
use xinyi_ledger::{EntryKind, FirmKey, Genesis, OrgId, Uscc};
use xinyi_node::dev::{read_firm_key, read_key, write_firm_key};
use xinyi_node::firmkeys::epoch_file;

/// Options of `rotate-firm-key`.
#[derive(Debug, Clone)]
pub struct FirmKeyOptions {
    /// Testnet directory.
    pub dir: PathBuf,
    /// Blocks between the head and the effective height.
    pub margin: u64,
    /// Bound of each wait.
    pub timeout: Duration,
}

/// What `rotate-firm-key` did.
#[derive(Debug, Clone, Serialize)]
pub struct FirmKeyReport {
    /// The new epoch.
    pub epoch: u32,
    /// `FirmKey::id` of its key (hex).
    pub key_id: String,
    /// Its key file.
    pub key_file: PathBuf,
    /// The membership entry's id.
    pub entry: String,
    /// Its log position.
    pub entry_position: u64,
    /// First height at which the new epoch is in force.
    pub effective_height: u64,
    /// Every node's height when all had passed it.
    pub heights: Vec<(String, u64)>,
    /// Firms re-registered under their new tag.
    pub reregistered: usize,
}

/// Runs the rotation; `say` gets one line per step.
pub fn rotate_firm_key(opts: &FirmKeyOptions, say: impl Fn(&str)) -> Result<FirmKeyReport> {
    let m = Manifest::load(&opts.dir)?;
    let base = m.keys.join("firm.key");
    let agent = http::agent();
    let data = m
        .data_node()
        .ok_or_else(|| anyhow!("this testnet has no {DATA_ORG} node"))?
        .clone();
    let held = |url: &str| -> Option<u64> {
        let v: serde_json::Value = agent
            .get(&format!("{url}/health"))
            .call()
            .ok()?
            .into_json()
            .ok()?;
        v.get("firm_keys")?.get("epochs")?.as_u64()
    };
    // The next epoch is the number the agency holds (it holds every approved one); a key file
    // for it left by an interrupted run is reused (its id is what gets approved).
    let epoch = held(&data.url)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| anyhow!("{} does not report its firm keys on /health", data.org))?;
    let file = epoch_file(&base, epoch);
    let key = if file.exists() {
        say(&format!(
            "reusing the key of an interrupted rotation in {}",
            file.display()
        ));
        read_firm_key(&file)?
    } else {
        let k = FirmKey::generate();
        write_firm_key(&file, &k)?;
        k
    };
    let key_id = key.id();
    say(&format!(
        "rotating the firm key to epoch {epoch} (key id {key_id}, key in {})",
        file.display()
    ));
    let genesis = Genesis::from_json(&std::fs::read(&m.genesis)?)?;
    let chain = genesis.chain_id()?;
    let mut approvers = Vec::new();
    for n in m.nodes.iter().filter(|n| n.validator) {
        approvers.push((OrgId::new(&n.org)?, read_key(&m.org_key(&n.org))?));
    }
    let author = approvers
        .iter()
        .find(|(o, _)| o.as_str() == DATA_ORG)
        .or(approvers.first())
        .cloned()
        .ok_or_else(|| anyhow!("this testnet has no validator"))?;
    let deadline = Instant::now() + opts.timeout;
    let mut margin = opts.margin.max(3);
    let (entry, answer, effective) = loop {
        let h = http::health(&agent, &data.url)
            .with_context(|| format!("{} does not answer", data.org))?;
        let effective = h.height + margin;
        let e = membership_entry(
            &chain,
            &author.0,
            &author.1,
            MemberChange::RotateFirmKey { epoch, key_id },
            effective,
            &approvers,
            h.time_ms,
        )?;
        match http::post_entry(&agent, &data.url, &e.bytes) {
            Ok(v) => break (e, v, effective),
            Err(WriteError::Status { code, body, .. })
                if code == "state.membership" && body.contains("must be above") =>
            {
                margin *= 2;
                say(&format!(
                    "the entry committed too late for effective height {effective}; retrying with a margin of {margin}"
                ));
            }
            Err(e) if e.retryable() && Instant::now() < deadline => {
                say(&format!(
                    "{} did not acknowledge the entry ({e}); retrying",
                    data.org
                ));
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => bail!("posting the firm-key rotation to {}: {e}", data.org),
        }
        if Instant::now() > deadline || margin > 10_000 {
            bail!("the firm-key rotation did not commit below its effective height in time");
        }
    };
    let position = answer
        .get("position")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| anyhow!("no position in {answer}"))?;
    say(&format!(
        "rotation committed at position {position}; epoch {epoch} is in force from height {effective}"
    ));
    let mut heights = Vec::new();
    for n in &m.nodes {
        wait(
            &format!("{} to hold firm-key epoch {epoch}", n.org),
            opts.timeout,
            || held(&n.url).filter(|e| *e > u64::from(epoch)),
        )
        .with_context(|| {
            format!(
                "{}'s /health names the problem under firm_keys; the key is in {}",
                n.org,
                file.display()
            )
        })?;
        let h = wait(
            &format!("{} to reach height {effective}", n.org),
            opts.timeout,
            || {
                http::health(&agent, &n.url)
                    .ok()
                    .map(|h| h.height)
                    .filter(|h| *h >= effective)
            },
        )?;
        heights.push((n.org.clone(), h));
    }
    say("every node holds the new key and is past the effective height; re-registering the firms");
    let agency = read_key(&m.org_key(DATA_ORG))?;
    let kinds: Vec<EntryKind> = m
        .firms
        .iter()
        .map(|f| {
            let u = Uscc::parse(&f.uscc).map_err(|e| anyhow!("{}: {e}", f.uscc))?;
            Ok(EntryKind::FirmRegistered {
                firm: key.tag(&u),
                key: read_key(&f.key_file)?.firm_epoch_key(epoch).public(),
            })
        })
        .collect::<Result<_>>()?;
    let n = kinds.len();
    let until = Instant::now() + opts.timeout;
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = kinds
            .into_iter()
            .map(|k| {
                let (agency, url, chain) = (&agency, &data.url, &chain);
                s.spawn(move || ops::write_until(chain, agency, url, k, until))
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("re-registration thread panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    say(&format!(
        "{n} firms re-registered under their epoch-{epoch} tags"
    ));
    Ok(FirmKeyReport {
        epoch,
        key_id: key_id.to_hex(),
        key_file: file,
        entry: entry.id.to_hex(),
        entry_position: position,
        effective_height: effective,
        heights,
        reregistered: n,
    })
}
