//! The agency store's data keys: one ChaCha20-Poly1305 key per *scope* (a firm's category of
//! credit data, a firm's stored alerts), kept in one small file beside the store, so that
//! destroying a key erases every copy of what it sealed (crypto-shredding, `specs/privacy.md`
//! §7): sled's log, snapshots and backups of the store hold only ciphertext.
//!
//! The key file (`agency-data.keys`, mode 0600) is rewritten whole on every change (temporary
//! file, fsync, rename, fsync of the directory), so a destroyed key is gone from the file system
//! namespace once [`Keyring::destroy`] returns. It also records how far the node has applied the
//! ledger's erasures (`erased_through`, a log position), so a key file restored from an older
//! backup is re-erased on start-up. This module does not decide what to erase (the ledger's
//! `data_erased` entries do, applied by `crate::erasure`).

use anyhow::{anyhow, Context};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// First byte of a sealed value (JSON values, the store's old plaintext form, never start so).
pub const SEALED: u8 = 0x01;
const NONCE: usize = 12;

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    /// Format version (1).
    version: u32,
    /// Every erasure at a log position below this one has been applied.
    erased_through: u64,
    /// Scope → key (64 hex digits).
    keys: BTreeMap<String, String>,
}

/// The data keys of one agency store.
pub struct Keyring {
    path: PathBuf,
    file: Mutex<KeyFile>,
}

/// What unsealing found.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    /// The plaintext.
    Plain(Vec<u8>),
    /// The scope's key was destroyed: the value is erased.
    Erased,
}

impl Keyring {
    /// Opens the key file at `path`, creating an empty one if there is none.
    pub fn open(path: &Path) -> anyhow::Result<Keyring> {
        let file = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice::<KeyFile>(&b)
                .with_context(|| format!("reading the data key file {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyFile {
                version: 1,
                ..KeyFile::default()
            },
            Err(e) => return Err(anyhow!("reading the data key file {}: {e}", path.display())),
        };
        if file.version != 1 {
            return Err(anyhow!(
                "data key file {}: unknown version {}",
                path.display(),
                file.version
            ));
        }
        let k = Keyring {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        };
        if !path.exists() {
            k.persist(&k.lock())?;
        }
        Ok(k)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyFile> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, f: &KeyFile) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("keys.tmp");
        let bytes = serde_json::to_vec(f)?;
        {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut out = o
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            out.write_all(&bytes)?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Makes sure every scope in `scopes` has a key (one file write for all new ones).
    pub fn ensure(&self, scopes: &[String]) -> anyhow::Result<()> {
        let mut f = self.lock();
        let mut added = false;
        for s in scopes {
            if !f.keys.contains_key(s) {
                f.keys
                    .insert(s.clone(), hex::encode(rand::random::<[u8; 32]>()));
                added = true;
            }
        }
        if added {
            self.persist(&f)?;
        }
        Ok(())
    }

    fn cipher(&self, scope: &str) -> anyhow::Result<Option<ChaCha20Poly1305>> {
        let f = self.lock();
        let Some(h) = f.keys.get(scope) else {
            return Ok(None);
        };
        let raw: [u8; 32] = hex::decode(h)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow!("data key file {}: bad key for {scope}", self.path.display()))?;
        Ok(Some(ChaCha20Poly1305::new(Key::from_slice(&raw))))
    }

    /// Seals `plain` under the key of `scope` (created if missing): `0x01 ‖ nonce ‖ ciphertext`,
    /// the scope bound as associated data so a value cannot be moved to another scope.
    pub fn seal(&self, scope: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let cipher = match self.cipher(scope)? {
            Some(c) => c,
            None => {
                self.ensure(&[scope.to_string()])?;
                self.cipher(scope)?
                    .ok_or_else(|| anyhow!("no data key for {scope}"))?
            }
        };
        let nonce: [u8; NONCE] = rand::random();
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: scope.as_bytes(),
                },
            )
            .map_err(|_| anyhow!("sealing a value of {scope}"))?;
        let mut out = Vec::with_capacity(1 + NONCE + ct.len());
        out.push(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value sealed under `scope`; [`Unsealed::Erased`] once its key is destroyed. A
    /// value that fails authentication is an error (the store was tampered with).
    pub fn unseal(&self, scope: &str, sealed: &[u8]) -> anyhow::Result<Unsealed> {
        let (Some(&SEALED), Some(nonce), Some(ct)) = (
            sealed.first(),
            sealed.get(1..1 + NONCE),
            sealed.get(1 + NONCE..),
        ) else {
            return Err(anyhow!("a stored value of {scope} is not sealed"));
        };
        let Some(cipher) = self.cipher(scope)? else {
            return Ok(Unsealed::Erased);
        };
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: scope.as_bytes(),
                },
            )
            .map(Unsealed::Plain)
            .map_err(|_| anyhow!("a stored value of {scope} does not authenticate"))
    }

    /// Destroys the keys of `scopes` and records that erasures below log position `through`
    /// are applied; one file write. Returns how many keys existed.
    pub fn destroy(&self, scopes: &[String], through: u64) -> anyhow::Result<usize> {
        let mut f = self.lock();
        let n = scopes
            .iter()
            .filter(|s| f.keys.remove(s.as_str()).is_some())
            .count();
        f.erased_through = f.erased_through.max(through);
        self.persist(&f)?;
        Ok(n)
    }

    /// Log position below which every erasure has been applied.
    pub fn erased_through(&self) -> u64 {
        self.lock().erased_through
    }

    /// Whether `scope` has a key.
    pub fn has(&self, scope: &str) -> bool {
        self.lock().keys.contains_key(scope)
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destroyed_key_erases_what_it_sealed_and_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agency-data.keys");
        let k = Keyring::open(&path).unwrap();
        let a = k.seal("d/firm-a/tax", b"secret tax data").unwrap();
        let b = k.seal("d/firm-b/tax", b"other data").unwrap();
        assert_eq!(a[0], SEALED);
        assert!(!a.windows(6).any(|w| w == b"secret"));
        let key_hex = {
            let f: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            f["keys"]["d/firm-a/tax"].as_str().unwrap().to_string()
        };
        // Bound to its scope: the same bytes do not open under another scope's key.
        assert!(k.unseal("d/firm-b/tax", &a).is_err());
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(k.unseal("d/firm-a/tax", &tampered).is_err());
        assert_eq!(
            k.unseal("d/firm-a/tax", &a).unwrap(),
            Unsealed::Plain(b"secret tax data".to_vec())
        );
        assert_eq!(k.destroy(&["d/firm-a/tax".into()], 42).unwrap(), 1);
        assert_eq!(k.unseal("d/firm-a/tax", &a).unwrap(), Unsealed::Erased);
        // Reopened from the file: still erased, the other scope intact, the cursor kept, and
        // the destroyed key is in no file of the directory.
        drop(k);
        let k = Keyring::open(&path).unwrap();
        assert_eq!(k.unseal("d/firm-a/tax", &a).unwrap(), Unsealed::Erased);
        assert_eq!(
            k.unseal("d/firm-b/tax", &b).unwrap(),
            Unsealed::Plain(b"other data".to_vec())
        );
        assert_eq!(k.erased_through(), 42);
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            assert!(!bytes
                .windows(key_hex.len())
                .any(|w| w == key_hex.as_bytes()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agency-data.keys");
        std::fs::write(&path, b"{not json").unwrap();
        let e = Keyring::open(&path).err().unwrap().to_string();
        assert!(e.contains("agency-data.keys"), "{e}");
    }
}
