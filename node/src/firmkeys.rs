//! The node's firm keys across firm-key rotations (`specs/privacy.md` §8).
//!
//! Epoch 0 is the file `[privacy] firm_key` names (`firm.key`); the key of epoch `e` is the file
//! beside it with the suffix `.e` (`firm.key.1`, `firm.key.2`, ...), handed to member nodes out of
//! band like the first. The node reads every such file at start and again when the ledger names
//! an approved epoch it does not hold yet ([`FirmKeys::sync`], polled by [`spawn_sync`]), so an
//! operator drops the next key in place before its rotation takes effect, without a restart. A
//! key whose [`FirmKey::id`] differs from the one the ledger approved is not used (and named in
//! `/health`). This module only holds keys; which tag a route uses is the handlers' business.

use crate::datastore::AgencyData;
use crate::engine::Engine;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use xinyi_ledger::state::FirmKeyEpoch;
use xinyi_ledger::{FirmKey, FirmKeyring, FirmTag, Uscc};

/// The firm keys a node holds, shared by the API, the agency data index and the sync task.
#[derive(Clone, Debug)]
pub struct FirmKeys {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug)]
struct Inner {
    ring: FirmKeyring,
    /// Epoch-0 file, when the keys come from files (dev and tests may give them directly).
    base: Option<PathBuf>,
    /// Why an approved epoch is not held (missing file, wrong key), for `/health`.
    problem: Option<String>,
}

/// The file holding the key of `epoch`: `base` itself for 0, else `base.<epoch>`.
pub fn epoch_file(base: &Path, epoch: u32) -> PathBuf {
    if epoch == 0 {
        return base.to_path_buf();
    }
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{epoch}"));
    PathBuf::from(s)
}

impl FirmKeys {
    /// Keys given directly (no files to re-read).
    pub fn fixed(ring: FirmKeyring) -> FirmKeys {
        FirmKeys {
            inner: Arc::new(RwLock::new(Inner {
                ring,
                base: None,
                problem: None,
            })),
        }
    }

    /// Reads `base` (epoch 0, required) and every `base.1`, `base.2`, ... present, in order.
    pub fn load(base: &Path) -> anyhow::Result<FirmKeys> {
        let mut ring = FirmKeyring::new(crate::dev::read_firm_key(base)?);
        while epoch_file(base, ring.epochs()).exists() {
            ring.push(crate::dev::read_firm_key(&epoch_file(base, ring.epochs()))?);
        }
        Ok(FirmKeys {
            inner: Arc::new(RwLock::new(Inner {
                ring,
                base: Some(base.to_path_buf()),
                problem: None,
            })),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the keyring (a few keys).
    pub fn ring(&self) -> FirmKeyring {
        self.read().ring.clone()
    }

    /// `uscc`'s tag in every epoch held, oldest first.
    pub fn tags(&self, uscc: &Uscc) -> Vec<(u32, FirmTag)> {
        self.read().ring.tags(uscc)
    }

    /// The key of `epoch`, if held.
    pub fn key(&self, epoch: u32) -> Option<FirmKey> {
        self.read().ring.key(epoch).cloned()
    }

    /// Number of epochs held.
    pub fn epochs(&self) -> u32 {
        self.read().ring.epochs()
    }

    /// Why an approved epoch is not held, if one is not.
    pub fn problem(&self) -> Option<String> {
        self.read().problem.clone()
    }

    /// Brings the keyring in line with the ledger's `approved` epochs: checks every held key of
    /// an approved epoch against its id (a mismatching key and those above it are dropped), and
    /// reads the files of approved epochs not held yet. Returns whether the keyring changed.
    pub fn sync(&self, approved: &[FirmKeyEpoch]) -> bool {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let before = g.ring.clone();
        let mut keys: Vec<FirmKey> = (0..g.ring.epochs())
            .filter_map(|e| g.ring.key(e).cloned())
            .collect();
        let mut problem = None;
        for a in approved {
            let i = a.epoch as usize;
            if i < keys.len() {
                if keys[i].id() != a.key_id {
                    problem = Some(format!(
                        "the key held for firm-key epoch {} is not the approved one (id {})",
                        a.epoch, a.key_id
                    ));
                    keys.truncate(i);
                    break;
                }
                continue;
            }
            if i > keys.len() {
                break;
            }
            let Some(base) = g.base.clone() else {
                problem = Some(format!(
                    "firm-key epoch {} is approved but this node was given no key for it",
                    a.epoch
                ));
                break;
            };
            let path = epoch_file(&base, a.epoch);
            match crate::dev::read_firm_key(&path) {
                Ok(k) if k.id() == a.key_id => keys.push(k),
                Ok(_) => {
                    problem = Some(format!(
                        "{} is not the key approved for firm-key epoch {} (id {})",
                        path.display(),
                        a.epoch,
                        a.key_id
                    ));
                    break;
                }
                Err(e) => {
                    problem = Some(format!(
                        "firm-key epoch {} is approved: put its key at {} ({e:#})",
                        a.epoch,
                        path.display()
                    ));
                    break;
                }
            }
        }
        g.ring = FirmKeyring::from_keys(keys);
        g.problem = problem;
        g.ring != before
    }
}

/// One sync pass: the ledger's approved epochs into `keys`, and the agency data's tag index
/// re-built when the keyring changed.
pub fn sync_once(engine: &Engine, keys: &FirmKeys, data: &AgencyData) {
    let approved = match engine.lock().chain.state().firm_key_epochs() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("reading the ledger's firm-key epochs: {e}");
            return;
        }
    };
    if keys.sync(&approved) {
        tracing::info!("firm keys: {} epochs held", keys.epochs());
        if let Err(e) = data.set_firm_keys(keys.clone()) {
            tracing::warn!("could not index the agency data by firm tag: {e}");
        }
    }
    if let Some(p) = keys.problem() {
        tracing::warn!("firm keys: {p}");
    }
}

/// Polls the ledger every `poll` and runs [`sync_once`]. Must run inside a tokio runtime.
pub fn spawn_sync(engine: Engine, keys: FirmKeys, data: AgencyData, poll: Duration) {
    tokio::spawn(async move {
        loop {
            let (e, k, d) = (engine.clone(), keys.clone(), data.clone());
            if let Err(err) = tokio::task::spawn_blocking(move || sync_once(&e, &k, &d)).await {
                tracing::error!("firm-key sync: {err}");
            }
            tokio::time::sleep(poll).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved(epoch: u32, key: &FirmKey) -> FirmKeyEpoch {
        FirmKeyEpoch {
            epoch,
            key_id: key.id(),
            from_height: 10 * u64::from(epoch),
        }
    }

    /// Real files: epoch files are found beside the first, a late file is picked up by `sync`,
    /// a wrong key is refused with the reason kept.
    #[test]
    fn keys_load_sync_and_refuse_a_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("firm.key");
        let (k0, k1, k2) = (
            FirmKey::from_bytes([1; 32]),
            FirmKey::from_bytes([2; 32]),
            FirmKey::from_bytes([3; 32]),
        );
        crate::dev::write_firm_key(&base, &k0).unwrap();
        let keys = FirmKeys::load(&base).unwrap();
        assert_eq!(keys.epochs(), 1);
        // Approved but not on disk yet: named, not held.
        assert!(!keys.sync(&[approved(1, &k1)]));
        assert!(keys.problem().unwrap().contains("firm.key.1"));
        // The operator drops a wrong file: refused.
        crate::dev::write_firm_key(&epoch_file(&base, 1), &k2).unwrap();
        assert!(!keys.sync(&[approved(1, &k1)]));
        assert!(keys.problem().unwrap().contains("not the key approved"));
        // The right one: held, and tags differ per epoch.
        std::fs::remove_file(epoch_file(&base, 1)).unwrap();
        crate::dev::write_firm_key(&epoch_file(&base, 1), &k1).unwrap();
        assert!(keys.sync(&[approved(1, &k1)]));
        assert_eq!(keys.problem(), None);
        let u = Uscc::parse("91350100M000100Y43").unwrap();
        let tags = keys.tags(&u);
        assert_eq!(tags, vec![(0, k0.tag(&u)), (1, k1.tag(&u))]);
        // A restart reads both files.
        assert_eq!(FirmKeys::load(&base).unwrap().epochs(), 2);
        // A held key the ledger contradicts is dropped.
        let fixed = FirmKeys::fixed(FirmKeyring::from_keys(vec![k0, k2]));
        assert!(fixed.sync(&[approved(1, &k1)]));
        assert_eq!(fixed.epochs(), 1);
        assert!(fixed.problem().is_some());
    }
}
