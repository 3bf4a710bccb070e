//! Parsing of command-line values and local files into ledger types, and the salted digests
//! commands put on the ledger instead of documents.
//!
//! Every failure is one readable line naming the flag; nothing here talks to the node.

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use serde_json::Value;
use std::path::Path;
use xinyi_client::api::EntryAnswer;
use xinyi_ledger::genesis::Genesis;
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::types::{Category, Grade, OrgId};

pub fn digest_arg(what: &str, s: &str) -> Result<Digest> {
    Digest::from_hex(s.trim()).map_err(|e| anyhow!("invalid {what} {s:?}: {e}"))
}

pub fn org_arg(what: &str, s: &str) -> Result<OrgId> {
    OrgId::new(s).map_err(|e| anyhow!("{what}: {e}"))
}

pub fn categories_arg(s: &str) -> Result<Vec<Category>> {
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

pub fn read_genesis(path: &Path) -> Result<Genesis> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read genesis {}", path.display()))?;
    Genesis::from_json(&bytes).map_err(|e| anyhow!("genesis {}: {e}", path.display()))
}

pub fn salted_random(data: &[u8]) -> (Digest, String) {
    let salt: [u8; 32] = rand::random();
    (hash::salted(&salt, data), hex::encode(salt))
}

pub fn file_or(path: Option<&Path>, default: String) -> Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display())),
        None => Ok(default.into_bytes()),
    }
}

pub fn parse_grade(s: &str) -> Result<Grade> {
    serde_json::from_value(Value::String(s.trim().to_ascii_lowercase())).map_err(|_| {
        anyhow!("unknown grade {s:?}; expected one of a, b, c, d, green, blue, yellow, red")
    })
}

/// The stored bytes of an entry answer (`entry.redacted` if the node withheld them).
pub fn entry_bytes(ea: &EntryAnswer) -> Result<Vec<u8>> {
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

pub fn read_note(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
