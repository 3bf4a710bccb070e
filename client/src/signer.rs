//! Who the client signs as: a key file plus an identity (`org:<id>` or `firm:<USCC>`), and
//! the three things it signs — ledger entries, bank query requests and authenticated API reads.
//!
//! All signing goes through the ledger's own functions (`Entry::sign`,
//! `query_signing_payload`, `SigDomain`), so the client adds no encoding of its own. It does not
//! talk to the node: times and chain ids are passed in by the caller.

use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};
use xinyi_ledger::entry::{
    query_signing_payload, Author, Entry, EntryBody, EntryKind, QueryRequest, SignedQueryRequest,
};
use xinyi_ledger::hash::Digest;
use xinyi_ledger::keyfile;
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::types::{OrgId, TimeMs};
use xinyi_ledger::{FirmTag, KeyPair, Uscc};

/// A signer identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A registered organisation.
    Org(OrgId),
    /// A registered firm.
    Firm(Uscc),
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Org(o) => write!(f, "org:{o}"),
            Identity::Firm(u) => write!(f, "firm:{u}"),
        }
    }
}

impl Identity {
    /// Parses `org:<id>` or `firm:<USCC>`.
    pub fn parse(s: &str) -> Result<Identity> {
        if let Some(o) = s.strip_prefix("org:") {
            return Ok(Identity::Org(
                OrgId::new(o).map_err(|e| anyhow!("--as: {e}"))?,
            ));
        }
        if let Some(u) = s.strip_prefix("firm:") {
            return Ok(Identity::Firm(parse_uscc(u)?));
        }
        bail!("--as must be org:<id> or firm:<USCC>, got {s:?}")
    }

    /// Infers the identity from a key file name: `firm-<USCC>.key` → firm, `<org>.key` → org.
    pub fn from_key_path(path: &Path) -> Option<Identity> {
        let stem = path.file_stem()?.to_str()?;
        if let Some(u) = stem.strip_prefix("firm-") {
            return Uscc::parse(u).ok().map(Identity::Firm);
        }
        OrgId::new(stem).ok().map(Identity::Org)
    }

    /// The ledger author; a firm is named by its tag (`tag`, learnt from a node).
    pub fn author(&self, tag: Option<FirmTag>) -> Result<Author> {
        match self {
            Identity::Org(o) => Ok(Author::Org(o.clone())),
            Identity::Firm(u) => tag.map(Author::Firm).ok_or_else(|| {
                anyhow!("signing as firm {u} needs its ledger tag (GET /v1/firms/{u}/tag)")
            }),
        }
    }
}

/// Parses a USCC typed by a user (trims, converts full-width forms, upper-cases).
pub fn parse_uscc(s: &str) -> Result<Uscc> {
    Uscc::parse_lenient(s).map_err(|e| anyhow!("{}: {e}", e.code()))
}

/// A key and the identity it signs as.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The key.
    pub key: KeyPair,
    /// Who.
    pub identity: Identity,
    /// Where the key came from.
    pub path: PathBuf,
    /// A firm's ledger tag (firms sign entries under it), once fetched.
    pub tag: Option<FirmTag>,
    /// What signs entries: the key file's key, or for a firm the key of `tag`'s firm-key epoch
    /// ([`KeyPair::firm_epoch_key`], `specs/privacy.md` §8).
    entry_key: KeyPair,
    /// What signs `X-Xinyi-Auth`: for a firm, the key of the newest epoch it is registered in.
    auth_key: KeyPair,
}

/// Reads a key file (`KeyPair::from_file_text` format).
pub fn read_key(path: &Path) -> Result<KeyPair> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    // Passphrase-encrypted files (XINYI_KEY_PASSPHRASE): the ledger's key-file format, as the node's.
    let text =
        keyfile::open_text(&text).map_err(|e| anyhow!("key file {}: {e}", path.display()))?;
    KeyPair::from_file_text(&text).map_err(|e| anyhow!("key file {}: {e}", path.display()))
}

impl Signer {
    /// Loads `path` and resolves the identity from `as_` or the file name.
    pub fn load(path: Option<&Path>, as_: Option<&str>) -> Result<Signer> {
        let path = path.ok_or_else(|| {
            anyhow!("this command needs a signing key: pass --key FILE (or set XINYI_KEY)")
        })?;
        let key = read_key(path)?;
        let identity = match as_ {
            Some(s) => Identity::parse(s)?,
            None => Identity::from_key_path(path).ok_or_else(|| {
                anyhow!(
                    "cannot tell who {} belongs to: name it firm-<USCC>.key or <org>.key, or pass --as org:<id>|firm:<USCC>",
                    path.display()
                )
            })?,
        };
        Ok(Signer {
            entry_key: key.clone(),
            auth_key: key.clone(),
            key,
            identity,
            path: path.to_path_buf(),
            tag: None,
        })
    }

    /// A firm signs entries under `tag`, its tag of firm-key epoch `epoch`, with that epoch's
    /// key (a revocation of a consent granted before a rotation is signed under the old tag).
    pub fn sign_under(&mut self, tag: FirmTag, epoch: u32) {
        self.tag = Some(tag);
        self.entry_key = self.key.firm_epoch_key(epoch);
    }

    /// A firm authenticates reads with its key of firm-key epoch `epoch`.
    pub fn auth_epoch(&mut self, epoch: u32) {
        self.auth_key = self.key.firm_epoch_key(epoch);
    }

    /// The public key a firm registers under its tag of epoch `epoch`.
    pub fn epoch_public(&self, epoch: u32) -> xinyi_ledger::PublicKey {
        self.key.firm_epoch_key(epoch).public()
    }

    /// The organisation id, or an error naming the command's required role.
    pub fn org(&self, what: &str) -> Result<OrgId> {
        match &self.identity {
            Identity::Org(o) => Ok(o.clone()),
            Identity::Firm(_) => bail!("{what} is signed by an organisation, not by a firm (use an org key or --as org:<id>)"),
        }
    }

    /// The firm, or an error.
    pub fn firm(&self, what: &str) -> Result<Uscc> {
        match &self.identity {
            Identity::Firm(f) => Ok(*f),
            Identity::Org(_) => bail!(
                "{what} is signed by the firm itself (use firm-<USCC>.key or --as firm:<USCC>)"
            ),
        }
    }

    /// Signs an entry of `kind` at `time` with a fresh random nonce.
    pub fn entry(&self, chain: &Digest, time: TimeMs, kind: EntryKind) -> Result<Entry> {
        let body = EntryBody {
            author: self.identity.author(self.tag)?,
            time,
            nonce: rand::random(),
            kind,
        };
        Entry::sign(chain, body, &self.entry_key).map_err(|e| anyhow!("{}: {e}", e.code()))
    }

    /// Signs a bank's query request (domain `QueryRequest`).
    pub fn query(&self, chain: &Digest, req: QueryRequest) -> Result<SignedQueryRequest> {
        let payload = query_signing_payload(chain, &req).map_err(|e| anyhow!("{e}"))?;
        Ok(SignedQueryRequest {
            signature: self.key.sign(SigDomain::QueryRequest, &payload),
            request: req,
        })
    }

    /// The `X-Xinyi-Auth` header value for `METHOD path-and-query` at `time`.
    pub fn auth_header(&self, chain: &Digest, method: &str, path: &str, time: TimeMs) -> String {
        let nonce: u64 = rand::random();
        let payload = api_request_payload(chain, method, path, time, nonce);
        let sig = self.auth_key.sign(SigDomain::ApiRequest, &payload);
        format!("{};{time};{nonce};{}", self.identity, hex::encode(sig.0))
    }
}

/// `chain id ‖ "<METHOD> <path-and-query>\n<time_ms>\n<nonce>"`, the payload of an API read
/// signature.
pub fn api_request_payload(
    chain: &Digest,
    method: &str,
    path: &str,
    time: TimeMs,
    nonce: u64,
) -> Vec<u8> {
    let mut p = chain.as_bytes().to_vec();
    p.extend_from_slice(format!("{method} {path}\n{time}\n{nonce}").as_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_from_names() {
        let u = xinyi_ledger::sample::sample_firm(3).unwrap();
        assert_eq!(
            Identity::from_key_path(Path::new(&format!("/x/firm-{u}.key"))),
            Some(Identity::Firm(u))
        );
        assert_eq!(
            Identity::from_key_path(Path::new("/x/bank-a.key")),
            Some(Identity::Org(OrgId::new("bank-a").unwrap()))
        );
        assert_eq!(Identity::from_key_path(Path::new("/x/Bad Name.key")), None);
        assert!(Identity::parse("org:bank-a").is_ok());
        assert!(Identity::parse(&format!("firm:{u}")).is_ok());
        assert!(Identity::parse("bank-a").is_err());
        assert!(Identity::parse("firm:123").is_err());
    }
}
