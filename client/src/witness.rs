//! `xinyi witness`: an independent witness (e.g. an auditor's) implementing the C2SP
//! [tlog-witness](https://c2sp.org/tlog-witness) protocol for xinyi logs (`specs/witness.md`).
//!
//! The witness trusts, per origin, the validator keys and powers of a genesis file and cosigns
//! a checkpoint only if more than two thirds of the validator power signed it and it is
//! consistent with the latest checkpoint it cosigned for that origin (RFC 9162 consistency
//! proof in the request). It persists that checkpoint (write to a temporary file, fsync,
//! rename) *before* answering, under one lock, so a concurrent request cannot roll it back.
//! Cosignatures are Ed25519 `cosignature/v1` (type 0x04, timestamped).

use crate::proof::Trust;
use anyhow::{anyhow, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use xinyi_ledger::merkle;
use xinyi_ledger::note::{Checkpoint, Cosigner, Note, NoteError};

/// Largest accepted request body.
const MAX_BODY: u64 = 1 << 20;

/// Most consistency proof lines (tlog-witness).
const MAX_PROOF_LINES: usize = 63;

/// What the witness remembers of one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latest {
    /// Size of the latest cosigned checkpoint.
    pub size: u64,
    /// Its root, base64.
    pub root: String,
    /// The checkpoint note as submitted, plus this witness's cosignature.
    pub note: String,
}

/// An HTTP answer: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

fn answer(status: u16, body: impl Into<String>) -> Answer {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
    }
}

/// The witness: its key, the logs it knows, and its persisted state.
pub struct Witness {
    cosigner: Cosigner,
    logs: BTreeMap<String, Trust>,
    state_path: PathBuf,
    state: Mutex<BTreeMap<String, Latest>>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl Witness {
    /// A witness signing as `cosigner` for the logs of `trusts` (by origin), keeping its state
    /// in `state_path` (read now if it exists).
    pub fn open(cosigner: Cosigner, trusts: Vec<Trust>, state_path: &Path) -> Result<Witness> {
        let state = match std::fs::read(state_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow!("witness state {} is corrupt: {e}", state_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(anyhow!("reading {}: {e}", state_path.display())),
        };
        let mut logs = BTreeMap::new();
        for t in trusts {
            if logs.insert(t.origin.clone(), t).is_some() {
                anyhow::bail!("two genesis files have the same origin");
            }
        }
        Ok(Witness {
            cosigner,
            logs,
            state_path: state_path.to_path_buf(),
            state: Mutex::new(state),
            clock: Box::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(1)
            }),
        })
    }

    /// The witness's cosigner (public part).
    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    fn persist(&self, state: &BTreeMap<String, Latest>) -> Result<()> {
        let text = serde_json::to_string_pretty(state)?;
        let tmp = self.state_path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.state_path)
            .with_context(|| format!("renaming to {}", self.state_path.display()))?;
        Ok(())
    }

    /// `POST /add-checkpoint` (tlog-witness): returns the HTTP answer.
    pub fn add_checkpoint(&self, body: &str) -> Answer {
        let Some((head, note_text)) = body.split_once("\n\n") else {
            return answer(
                400,
                "request needs an old size line, proof lines, an empty line and a checkpoint",
            );
        };
        let mut lines = head.split('\n');
        let old = match lines.next().and_then(|l| l.strip_prefix("old ")) {
            Some(n)
                if n == "0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())) =>
            {
                match n.parse::<u64>() {
                    Ok(v) => v,
                    Err(_) => return answer(400, "old size does not fit in 64 bits"),
                }
            }
            _ => return answer(400, "first line must be \"old <size>\""),
        };
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_LINES {
                return answer(400, "more than 63 consistency proof lines");
            }
            match STANDARD
                .decode(l)
                .ok()
                .and_then(|b| merkle::hash_from_slice(&b).ok())
            {
                Some(h) => proof.push(h),
                None => return answer(400, "a consistency proof line is not base64 of 32 bytes"),
            }
        }
        let note = match Note::parse(note_text) {
            Ok(n) => n,
            Err(e) => return answer(400, format!("malformed note: {e}")),
        };
        let cp = match Checkpoint::parse_text(&note.text) {
            Ok(c) => c,
            Err(e) => return answer(400, format!("{e}")),
        };
        let Some(trust) = self.logs.get(&cp.origin) else {
            return answer(404, format!("unknown log origin {:?}", cp.origin));
        };
        match trust.open_any(note_text) {
            Ok(o) if o.has_quorum() => {}
            Ok(o) => {
                return answer(
                    403,
                    format!(
                    "checkpoint signed by validator power {} of {}; more than two thirds required",
                    o.power, o.total_power
                ),
                )
            }
            Err(e) => return answer(403, format!("{e:#}")),
        }
        if old > cp.size {
            return answer(400, "old size is above the checkpoint size");
        }
        if cp.size == 0 && cp.root != merkle::empty_root() {
            return answer(422, "a checkpoint of size 0 must have the empty root");
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let latest = state.get(&cp.origin).cloned();
        let stored = latest.as_ref().map_or(0, |l| l.size);
        if old != stored {
            return Answer {
                status: 409,
                content_type: "text/x.tlog.size",
                body: format!("{stored}\n"),
            };
        }
        let stored_root = latest
            .as_ref()
            .and_then(|l| STANDARD.decode(&l.root).ok())
            .and_then(|b| merkle::hash_from_slice(&b).ok());
        if old == 0 {
            if !proof.is_empty() {
                return answer(422, "old size 0 needs an empty proof");
            }
        } else {
            let Some(old_root) = stored_root else {
                return answer(500, "stored root unreadable");
            };
            if let Err(e) = merkle::verify_consistency(old, cp.size, &old_root, &cp.root, &proof) {
                tracing_line(&format!(
                    "REFUSED {} size {}: inconsistent with cosigned size {old}: {e}",
                    cp.origin, cp.size
                ));
                return answer(
                    422,
                    format!("checkpoint of size {} is not consistent with the cosigned checkpoint of size {old}: {e}", cp.size),
                );
            }
        }
        let ts = (self.clock)();
        let sig = match self.cosigner.cosign(&note.text, ts) {
            Ok(s) => s,
            Err(e) => return answer(400, format!("{e}")),
        };
        let mut with = note.clone();
        if let Err(NoteError::TooLarge { reason }) = with.merge_signatures([sig.clone()]) {
            return answer(400, reason);
        }
        state.insert(
            cp.origin.clone(),
            Latest {
                size: cp.size,
                root: STANDARD.encode(cp.root),
                note: with.to_string(),
            },
        );
        if let Err(e) = self.persist(&state) {
            // Not persisted: do not cosign, and forget the in-memory update.
            match latest {
                Some(l) => state.insert(cp.origin.clone(), l),
                None => state.remove(&cp.origin),
            };
            return answer(500, format!("could not persist the witness state: {e:#}"));
        }
        Answer {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: sig.to_string(),
        }
    }

    /// `GET /<hex sha256(origin)>/checkpoint`: the latest cosigned checkpoint.
    pub fn latest(&self, origin_hash: &str) -> Answer {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (origin, l) in state.iter() {
            if hex::encode(Sha256::digest(origin.as_bytes())) == origin_hash {
                return Answer {
                    status: 200,
                    content_type: "text/plain; charset=utf-8",
                    body: l.note.clone(),
                };
            }
        }
        answer(404, "no checkpoint cosigned for that log")
    }

    /// Routes one request.
    pub fn handle(&self, method: &str, path: &str, body: &str) -> Answer {
        match (method, path) {
            ("POST", "/add-checkpoint") => self.add_checkpoint(body),
            ("GET", "/health") => answer(200, "ok"),
            ("GET", p) if p.ends_with("/checkpoint") => {
                let h = p.trim_start_matches('/').trim_end_matches("/checkpoint");
                self.latest(h)
            }
            ("GET", _) | ("POST", _) => answer(404, "not found"),
            _ => answer(405, "method not allowed"),
        }
    }

    /// Serves on `listener` until the process ends (one thread per connection is not needed:
    /// requests are small and handled in order).
    pub fn serve(&self, server: tiny_http::Server) -> Result<()> {
        for mut req in server.incoming_requests() {
            let method = req.method().as_str().to_string();
            let path = req.url().split('?').next().unwrap_or("/").to_string();
            let mut body = String::new();
            let read = req.as_reader().take(MAX_BODY + 1).read_to_string(&mut body);
            let a = match read {
                Ok(n) if n as u64 > MAX_BODY => answer(413, "body too large"),
                Ok(_) => self.handle(&method, &path, &body),
                Err(_) => answer(400, "body is not UTF-8"),
            };
            let ct = tiny_http::Header::from_bytes(&b"Content-Type"[..], a.content_type.as_bytes())
                .map_err(|_| anyhow!("bad header"))?;
            let resp = tiny_http::Response::from_string(a.body)
                .with_status_code(a.status)
                .with_header(ct);
            let _ = req.respond(resp);
        }
        Ok(())
    }
}

fn tracing_line(s: &str) {
    eprintln!("witness: {s}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use xinyi_ledger::note::{sign_checkpoint, CosignerKey, NoteSigner, VerifierKey};
    use xinyi_ledger::Digest;

    fn setup() -> (tempfile::TempDir, Witness, NoteSigner, CosignerKey) {
        let dir = tempfile::tempdir().unwrap();
        let log = NoteSigner::new("log.example", SigningKey::from_bytes(&[1; 32])).unwrap();
        let trust = Trust {
            origin: "log.example".into(),
            keys: vec![log.verifier_key()],
            powers: vec![1],
            chain_id: Digest([0; 32]),
            witnesses: vec![],
            min_witnesses: 0,
        };
        let c = Cosigner::new("w.example/1", SigningKey::from_bytes(&[2; 32])).unwrap();
        let key = c.key().clone();
        let w = Witness::open(c, vec![trust], &dir.path().join("w.json")).unwrap();
        (dir, w, log, key)
    }

    fn tree(n: u64) -> merkle::MerkleTree {
        let mut t = merkle::MerkleTree::new();
        for i in 0..n {
            t.append(&i.to_be_bytes());
        }
        t
    }

    fn req(log: &NoteSigner, old: u64, t: &merkle::MerkleTree, size: u64) -> String {
        let cp = Checkpoint {
            origin: "log.example".into(),
            size,
            root: t.root_at(size).unwrap(),
            extensions: vec![],
        };
        let mut s = format!("old {old}\n");
        if old > 0 && old < size {
            for h in t.consistency_proof(old, size).unwrap() {
                s += &format!("{}\n", STANDARD.encode(h));
            }
        }
        s + "\n" + &sign_checkpoint(&cp, &[log]).unwrap()
    }

    #[test]
    fn cosigns_consistent_and_refuses_forks() {
        let (dir, w, log, key) = setup();
        let t = tree(10);
        let a = w.add_checkpoint(&req(&log, 0, &t, 4));
        assert_eq!(a.status, 200, "{}", a.body);
        let note = Note::parse(&format!(
            "{}\n{}",
            Checkpoint::parse_text(&format!(
                "log.example\n4\n{}\n",
                STANDARD.encode(t.root_at(4).unwrap())
            ))
            .unwrap()
            .to_text(),
            a.body
        ))
        .unwrap();
        assert_eq!(
            note.verify_cosignatures(std::slice::from_ref(&key))
                .unwrap()
                .len(),
            1
        );
        // Wrong old size: 409 with the stored size.
        let a = w.add_checkpoint(&req(&log, 0, &t, 6));
        assert_eq!((a.status, a.body.as_str()), (409, "4\n"));
        // Consistent extension.
        assert_eq!(w.add_checkpoint(&req(&log, 4, &t, 10)).status, 200);
        // A fork of the same size, and an inconsistent larger tree: 422.
        let mut fork = tree(9);
        fork.append(b"other");
        assert_eq!(w.add_checkpoint(&req(&log, 10, &fork, 10)).status, 422);
        let mut fork2 = fork.clone();
        fork2.append(b"more");
        let mut r = req(&log, 10, &fork2, 11);
        assert_eq!(w.add_checkpoint(&r).status, 422);
        // Unsigned / unknown origin.
        let other = NoteSigner::new("log.example", SigningKey::from_bytes(&[7; 32])).unwrap();
        assert_eq!(w.add_checkpoint(&req(&other, 10, &t, 10)).status, 403);
        r = r.replace("log.example\n11", "other.example\n11");
        assert!(matches!(w.add_checkpoint(&r).status, 400 | 404));
        // State survives a restart.
        drop(w);
        let (_, _, _, _) = (0, 0, 0, 0);
        let c = Cosigner::new("w.example/1", SigningKey::from_bytes(&[2; 32])).unwrap();
        let trust = Trust {
            origin: "log.example".into(),
            keys: vec![VerifierKey::parse(&log.verifier_key().to_string()).unwrap()],
            powers: vec![1],
            chain_id: Digest([0; 32]),
            witnesses: vec![],
            min_witnesses: 0,
        };
        let w = Witness::open(c, vec![trust], &dir.path().join("w.json")).unwrap();
        let a = w.add_checkpoint(&req(&log, 0, &t, 10));
        assert_eq!((a.status, a.body.as_str()), (409, "10\n"));
        let h = hex::encode(Sha256::digest(b"log.example"));
        assert_eq!(w.handle("GET", &format!("/{h}/checkpoint"), "").status, 200);
    }
}
