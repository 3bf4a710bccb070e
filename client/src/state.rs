//! The client's memory of the last checkpoint it verified for each log, so that every newer
//! checkpoint is checked to extend it (RFC 9162 consistency) — a node that rewrites history or
//! shows this client a different log than before is caught (`specs/checkpoints.md` §5).
//!
//! File format (JSON, version 1): `{"version": 1, "logs": {"<origin> <chain id hex>": {"size",
//! "root" (base64), "note" (the signed note as verified), "seen_at_ms"}}}`. Writes go to a
//! temporary file that is renamed over the old one, after re-reading it: concurrent clients
//! never leave a torn file, and the larger checkpoint wins.

use anyhow::{anyhow, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xinyi_ledger::note::{Checkpoint, Note};

/// What is remembered of one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    /// Log size.
    pub size: u64,
    /// Root, standard base64.
    pub root: String,
    /// The signed note as it was verified.
    pub note: String,
    /// When it was stored (client clock, milliseconds since the epoch).
    pub seen_at_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: u32,
    logs: BTreeMap<String, Seen>,
}

/// The state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

/// The key of a log: origin and chain id.
pub fn log_key(origin: &str, chain_id_hex: &str) -> String {
    format!("{origin} {chain_id_hex}")
}

impl StateFile {
    /// The state file at `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// `$XINYI_STATE`, else `$HOME/.xinyi/state.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("XINYI_STATE") {
            return Some(PathBuf::from(p));
        }
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".xinyi").join("state.json"))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<FileV1> {
        match std::fs::read(&self.path) {
            Ok(b) => {
                let f: FileV1 = serde_json::from_slice(&b).map_err(|e| {
                    anyhow!(
                        "state.corrupt: {} is not a xinyi state file: {e}",
                        self.path.display()
                    )
                })?;
                if f.version != 1 {
                    return Err(anyhow!(
                        "state.version: {} has version {}, this client reads 1",
                        self.path.display(),
                        f.version
                    ));
                }
                Ok(f)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileV1 {
                version: 1,
                logs: BTreeMap::new(),
            }),
            Err(e) => Err(anyhow!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// The last checkpoint stored for `key`, parsed from its note.
    pub fn get(&self, key: &str) -> Result<Option<(Checkpoint, Seen)>> {
        let f = self.read()?;
        let Some(seen) = f.logs.get(key) else {
            return Ok(None);
        };
        let note = Note::parse(&seen.note)
            .map_err(|e| anyhow!("state.corrupt: stored note in {}: {e}", self.path.display()))?;
        let cp = Checkpoint::parse_text(&note.text).map_err(|e| {
            anyhow!(
                "state.corrupt: stored checkpoint in {}: {e}",
                self.path.display()
            )
        })?;
        if cp.size != seen.size || STANDARD.encode(cp.root) != seen.root {
            return Err(anyhow!(
                "state.corrupt: stored size/root in {} differ from the stored note",
                self.path.display()
            ));
        }
        Ok(Some((cp, seen.clone())))
    }

    /// Stores `cp` (verified, with its note) for `key` unless a checkpoint at least as large is
    /// already stored.
    pub fn put(&self, key: &str, cp: &Checkpoint, note: &str) -> Result<()> {
        let mut f = self.read()?;
        if f.logs.get(key).is_some_and(|s| s.size >= cp.size) {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        f.logs.insert(
            key.to_string(),
            Seen {
                size: cp.size,
                root: STANDARD.encode(cp.root),
                note: note.to_string(),
                seen_at_ms: now,
            },
        );
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = self.path.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let text = serde_json::to_string_pretty(&f).map_err(|e| anyhow!("{e}"))?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming to {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use xinyi_ledger::note::{sign_checkpoint, NoteSigner};

    #[test]
    fn keeps_the_largest_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateFile::new(dir.path().join("sub").join("state.json"));
        assert!(st.get("k").unwrap().is_none());
        let signer = NoteSigner::new("o", SigningKey::from_bytes(&[1; 32])).unwrap();
        let cp = |size, b| Checkpoint {
            origin: "o".into(),
            size,
            root: [b; 32],
            extensions: vec![],
        };
        let note = |c: &Checkpoint| sign_checkpoint(c, &[&signer]).unwrap();
        st.put("k", &cp(5, 1), &note(&cp(5, 1))).unwrap();
        st.put("k", &cp(3, 2), &note(&cp(3, 2))).unwrap();
        assert_eq!(st.get("k").unwrap().unwrap().0, cp(5, 1));
        st.put("k", &cp(7, 3), &note(&cp(7, 3))).unwrap();
        assert_eq!(st.get("k").unwrap().unwrap().0, cp(7, 3));
        std::fs::write(st.path(), "{").unwrap();
        assert!(st
            .get("k")
            .unwrap_err()
            .to_string()
            .contains("state.corrupt"));
    }
}
