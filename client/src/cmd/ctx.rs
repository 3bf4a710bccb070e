//! The command context: global flags, the node's API, and the checks every command shares —
//! signer and firm tag, trust from the genesis, final checkpoints, the split-view memory, and
//! submitting a signed entry with its inclusion proof verified.
//!
//! It holds no command's logic; the command modules call into it.

use crate::cmd::args::{entry_bytes, read_genesis};
use crate::cmd::output::{human, out, out_json};
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xinyi_client::api::{Api, EntryAnswer, Health, WriteAnswer};
use xinyi_client::proof::{self, Included, Opened, Trust};
use xinyi_client::signer::Signer;
use xinyi_client::state::{log_key, StateFile};
use xinyi_ledger::entry::{Entry, EntryKind};
use xinyi_ledger::genesis::Genesis;
use xinyi_ledger::note::CosignerKey;
use xinyi_ledger::{FirmTag, KeyPair};

/// Which of a firm's tags an entry is signed under, looked up on demand ([`Ctx::with_tag`]);
/// `None`: its newest.
pub type Under<'a> = &'a dyn Fn() -> Option<FirmTag>;

/// A firm's tags as the node answers them (`GET /v1/firms/{uscc}/tag`).
#[derive(Debug, Clone)]
pub struct FirmTags {
    /// The newest tag it is registered under (new entries are signed under it).
    pub tag: FirmTag,
    /// Every epoch's tag the node holds, oldest first.
    pub tags: Vec<(u32, FirmTag)>,
}

/// Everything a command needs: flags, the node, and lazily its health and trust.
pub struct Ctx {
    pub api: Api,
    pub json: bool,
    pub key: Option<PathBuf>,
    pub as_: Option<String>,
    pub genesis: Option<PathBuf>,
    pub state: Option<StateFile>,
    pub witnesses: Vec<CosignerKey>,
    pub min_witnesses: usize,
    pub wait: Duration,
    /// A firm's authentication epoch, once found ([`Ctx::auth_header`]).
    pub auth_epoch: std::cell::OnceCell<u32>,
}

impl Ctx {
    /// The signer (a firm's ledger tag is fetched when it signs an entry, [`Ctx::submit`]).
    pub fn signer(&self) -> Result<Signer> {
        Signer::load(self.key.as_deref(), self.as_.as_deref())
    }

    /// The `X-Xinyi-Auth` header of `GET path` by `signer` at the node time of `h`. A firm
    /// authenticates with its key of the newest firm-key epoch it is registered in
    /// (`specs/privacy.md` §8): on a node holding more than one epoch the client finds it once
    /// per command by asking `GET /v1/firms/{uscc}/tag` with each epoch's key, newest first
    /// (none before the first rotation).
    pub fn auth_header(&self, signer: &Signer, path: &str, h: &Health) -> String {
        let xinyi_client::signer::Identity::Firm(u) = &signer.identity else {
            return signer.auth_header(&h.chain_id, "GET", path, h.time_ms);
        };
        let epoch = *self.auth_epoch.get_or_init(|| {
            let epochs = h.firm_keys.as_ref().map_or(1, |k| k.epochs.max(1));
            let tag_path = format!("/v1/firms/{u}/tag");
            let mut s = signer.clone();
            (1..epochs)
                .rev()
                .find(|e| {
                    s.auth_epoch(*e);
                    let a = s.auth_header(&h.chain_id, "GET", &tag_path, h.time_ms);
                    self.api.get_auth::<Value>(&tag_path, &a).is_ok()
                })
                .unwrap_or(0)
        });
        let mut s = signer.clone();
        s.auth_epoch(epoch);
        s.auth_header(&h.chain_id, "GET", path, h.time_ms)
    }

    /// `signer` with its ledger tag if it is a firm: fetched from the node
    /// (`GET /v1/firms/{uscc}/tag`, signed by the firm) and checked against the firm's
    /// registration on the ledger. A firm signs under its newest registered tag, or under the
    /// tag `under` names (one of its tags: that of the consent it revokes) with that tag's epoch
    /// key; `under` is asked only when the firm has more than one tag (after a firm-key
    /// rotation), so the lookup costs nothing before one.
    pub fn with_tag(&self, signer: &Signer, under: Under<'_>) -> Result<Signer> {
        let mut s = signer.clone();
        if let (xinyi_client::signer::Identity::Firm(u), None) = (&s.identity, s.tag) {
            let t = self.firm_tags_as(&s, u)?;
            let want = match t.tags.len() {
                1 => t.tag,
                _ => under().unwrap_or(t.tag),
            };
            let (epoch, tag) = t
                .tags
                .iter()
                .find(|(_, x)| *x == want)
                .copied()
                .ok_or_else(|| {
                    anyhow!("firm.not_owner: tag {want} is not one of firm {u}'s tags")
                })?;
            s.sign_under(tag, epoch);
        }
        Ok(s)
    }

    /// The ledger tag of firm `u`, read with `signer`'s authentication (the firm itself, an
    /// auditor or an agency). When the signer is the firm, the tag must be the one the ledger's
    /// latest `firm_registered` entry binds to the signer's key (`firm.tag_mismatch`).
    pub fn firm_tag_as(&self, signer: &Signer, u: &xinyi_ledger::Uscc) -> Result<FirmTag> {
        Ok(self.firm_tags_as(signer, u)?.tag)
    }

    /// The ledger tag of firm `u` (as [`Ctx::firm_tag_as`]) and its tags of every firm-key
    /// epoch the node holds (`specs/privacy.md` §8). When the signer is the firm, each tag it
    /// is registered under must be bound to its key of that epoch.
    pub fn firm_tags_as(&self, signer: &Signer, u: &xinyi_ledger::Uscc) -> Result<FirmTags> {
        let h = self.health()?;
        let path = format!("/v1/firms/{u}/tag");
        let auth = self.auth_header(signer, &path, &h);
        let v: Value = self.api.get_auth(&path, &auth)?;
        let hex_tag = |x: &Value| {
            x.get("tag")
                .and_then(Value::as_str)
                .and_then(|t| FirmTag::from_hex(t).ok())
        };
        let tag = hex_tag(&v).ok_or_else(|| anyhow!("the node's tag answer for {u} has no tag"))?;
        let listed: Vec<(u32, FirmTag, Option<u64>)> = match v.get("tags").and_then(Value::as_array)
        {
            Some(l) => l
                .iter()
                .map(|x| {
                    let epoch = x
                        .get("epoch")
                        .and_then(Value::as_u64)
                        .and_then(|e| u32::try_from(e).ok());
                    match (epoch, hex_tag(x)) {
                        (Some(e), Some(t)) => {
                            Ok((e, t, x.get("registration").and_then(Value::as_u64)))
                        }
                        _ => Err(anyhow!("the node's tag answer for {u} lists a bad tag")),
                    }
                })
                .collect::<Result<_>>()?,
            None => vec![(0, tag, v.get("registration").and_then(Value::as_u64))],
        };
        if !listed.iter().any(|(_, t, _)| *t == tag) {
            bail!("firm.tag_mismatch: the node's tag for {u} is not among the tags it lists");
        }
        if signer.identity == xinyi_client::signer::Identity::Firm(*u) {
            if listed.iter().all(|(_, _, r)| r.is_none()) {
                bail!("firm.unregistered: the ledger has no registration of firm {u}");
            }
            for (e, t, pos) in &listed {
                let Some(pos) = pos else { continue };
                let ea: EntryAnswer = self.get_signed(signer, &format!("/v1/entries/{pos}"))?;
                let bytes = entry_bytes(&ea)?;
                let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
                match &entry.body.kind {
                    EntryKind::FirmRegistered { firm, key } if firm == t && *key == signer.epoch_public(*e) => {}
                    _ => bail!("firm.tag_mismatch: the node's tag {t} for {u} is not registered to this key (firm-key epoch {e}) on the ledger"),
                }
            }
            if !listed.iter().any(|(_, t, r)| *t == tag && r.is_some()) {
                bail!("firm.tag_mismatch: the node's tag for {u} is not registered on the ledger");
            }
        }
        Ok(FirmTags {
            tag,
            tags: listed.into_iter().map(|(e, t, _)| (e, t)).collect(),
        })
    }

    /// GET with `signer`'s `X-Xinyi-Auth`.
    pub fn get_signed<T: serde::de::DeserializeOwned>(
        &self,
        signer: &Signer,
        path: &str,
    ) -> Result<T> {
        let h = self.health()?;
        let auth = self.auth_header(signer, path, &h);
        self.api.get_auth(path, &auth)
    }

    /// GET signed with the command's key when there is one (reads gated by role), else unsigned.
    pub fn get_read<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        match self.key.as_deref() {
            Some(_) => {
                let s = self.signer()?;
                self.get_signed(&s, path)
            }
            None => self.api.get(path),
        }
    }

    /// A byte stream, signed with the command's key when there is one.
    pub fn get_stream_read(
        &self,
        path: &str,
    ) -> Result<Box<dyn std::io::Read + Send + Sync + 'static>> {
        let auth = match self.key.as_deref() {
            Some(_) => {
                let s = self.signer()?;
                let h = self.health()?;
                Some(self.auth_header(&s, path, &h))
            }
            None => None,
        };
        self.api.get_stream(path, auth.as_deref())
    }

    pub fn signer_key(&self) -> Result<KeyPair> {
        let p = self
            .key
            .as_deref()
            .ok_or_else(|| anyhow!("this command needs --key FILE"))?;
        xinyi_client::signer::read_key(p)
    }

    pub fn health(&self) -> Result<Health> {
        let h = self.api.health()?;
        if h.status != "ok" {
            bail!("node at {} reports status {:?}", self.api.base(), h.status);
        }
        Ok(h)
    }

    /// The trusted genesis: `--genesis`, or the node's (with `fetched = true`).
    pub fn genesis(&self) -> Result<(Genesis, bool)> {
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

    /// Trust in `genesis` with this command's witness requirements (`--witness`,
    /// `--min-witnesses`).
    pub fn trust_in(&self, genesis: &Genesis) -> Result<Trust> {
        let mut t = Trust::from_genesis(genesis)?;
        t.witnesses = self.witnesses.clone();
        t.min_witnesses = self.min_witnesses;
        Ok(t)
    }

    /// The node's latest checkpoint note, opened: final under `trust` and consistent with the
    /// last one this client verified ([`Ctx::observe`], which remembers it).
    pub fn latest_checkpoint(&self, trust: &Trust) -> Result<(String, Opened)> {
        let note = self.api.get_text("/v1/checkpoint")?;
        let o = trust.open_any(&note)?;
        trust.check_final(&o)?;
        self.observe(trust, &o)?;
        Ok((note, o))
    }

    pub fn trust(&self, health: Option<&Health>) -> Result<Trust> {
        let (g, _) = self.genesis()?;
        let t = self.trust_in(&g)?;
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
    pub fn observe(&self, trust: &Trust, o: &Opened) -> Result<()> {
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

    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<String>> {
        self.api.consistency_proof(from, to)
    }

    /// Fetches `GET /v1/checkpoint` until it is final (quorum and witnesses) and at least
    /// `min_size` large, for at most `--wait-ms`.
    pub fn final_checkpoint(&self, trust: &Trust, min_size: u64) -> Result<Opened> {
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
    pub fn verify_entry(
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
    pub fn submit(
        &self,
        signer: &Signer,
        path: &str,
        kind: EntryKind,
    ) -> Result<(Entry, WriteAnswer, Included)> {
        self.submit_under(signer, &|| None, path, kind)
    }

    /// [`Ctx::submit`], a firm signing under `under` (one of its tags, [`Ctx::with_tag`]).
    pub fn submit_under(
        &self,
        signer: &Signer,
        under: Under<'_>,
        path: &str,
        kind: EntryKind,
    ) -> Result<(Entry, WriteAnswer, Included)> {
        let signer = &self.with_tag(signer, under)?;
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

    pub fn report_write(&self, what: &str, ans: &WriteAnswer, inc: &Included, extra: Value) {
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

    pub fn show(&self, v: &Value) {
        if self.json {
            out_json(v);
        } else {
            out(&human(v, 0));
        }
    }
}
