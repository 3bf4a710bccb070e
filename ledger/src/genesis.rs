//! The genesis document: the consortium's founding members and chain parameters.
//!
//! An auditor needs only this file to verify the whole chain. It is JSON for people to read and
//! review; its identity (the chain id) is `tagged(Genesis, canonical CBOR of the document)`, so
//! whitespace or key order in the JSON file does not matter but every value does.

use crate::codec::{self, CodecError};
use crate::hash::{self, Digest, Domain};
use crate::keys::PublicKey;
use crate::types::{check_text, Category, OrgId, Role, TimeMs, ValueError};
use serde::{Deserialize, Serialize};

/// Maximum voting power of one validator (keeps every quorum computation far from overflow).
pub const MAX_POWER: u64 = 1_000_000;
/// Maximum number of founding organisations.
pub const MAX_ORGS: usize = 10_000;

/// Maximum genesis file size.
pub const MAX_GENESIS_BYTES: usize = 1024 * 1024;

/// A founding organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisOrg {
    /// Id.
    pub id: OrgId,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Signing key.
    pub key: PublicKey,
    /// Voting power (0 = not a validator).
    pub power: u64,
}

/// Chain parameters fixed at genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Working days (Mon–Fri, CST) within which both registries must apply an approved repair.
    pub repair_deadline_working_days: u32,
    /// An entry's own time must lie within this many ms of its block's time (replay window).
    pub entry_time_window_ms: u64,
    /// Maximum entries per block.
    pub max_block_entries: u32,
    /// How long published records of a category stay shown (`specs/state.md` §3 step 4),
    /// sorted by category without duplicates; a category not listed is shown until repaired.
    /// Absent from the encoding when empty, so chains made before retention keep their id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<Retention>,
}

/// Longest retention period, in days (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// The publicity period of one record category: a record published at block time `t` stops
/// being shown at the first block whose time is at least `t + days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// The record category.
    pub category: Category,
    /// Days from publication (1 to [`MAX_RETENTION_DAYS`]).
    pub days: u32,
}

impl Params {
    /// The retention period of `c` in days, if the chain sets one.
    pub fn retention_days(&self, c: Category) -> Option<u32> {
        self.retention
            .iter()
            .find(|r| r.category == c)
            .map(|r| r.days)
    }
}

impl Default for Params {
    fn default() -> Params {
        Params {
            repair_deadline_working_days: 3,
            entry_time_window_ms: 10 * 60 * 1000,
            max_block_entries: 10_000,
            retention: Vec::new(),
        }
    }
}

/// The genesis document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Consortium name; also the checkpoint origin line.
    pub name: String,
    /// Genesis time; every block's time must exceed it.
    pub time: TimeMs,
    /// Founding organisations, sorted by id, no duplicates.
    pub orgs: Vec<GenesisOrg>,
    /// Parameters.
    pub params: Params,
}

/// Why a genesis document is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Not valid JSON of the right shape.
    #[error("genesis JSON: {0}")]
    Json(String),
    /// Encoding failed.
    #[error("genesis encoding: {0}")]
    Codec(#[from] CodecError),
    /// A value is invalid.
    #[error("genesis: {0}")]
    Value(#[from] ValueError),
    /// Larger than [`MAX_GENESIS_BYTES`].
    #[error("genesis file too large ({0} bytes)")]
    TooLarge(usize),
}

impl Genesis {
    /// Parses and validates the JSON form.
    pub fn from_json(text: &[u8]) -> Result<Genesis, GenesisError> {
        if text.len() > MAX_GENESIS_BYTES {
            return Err(GenesisError::TooLarge(text.len()));
        }
        let g: Genesis =
            serde_json::from_slice(text).map_err(|e| GenesisError::Json(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// The JSON form (pretty).
    pub fn to_json(&self) -> String {
        // Serialising plain data structures to JSON cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks invariants: at least one validator, sorted unique ids, valid keys and names.
    pub fn validate(&self) -> Result<(), ValueError> {
        let bad = |reason: String| ValueError {
            what: "genesis",
            reason,
        };
        check_text("consortium name", &self.name, 128, false)?;
        if self.name.contains(char::is_whitespace) || self.name.contains('+') {
            return Err(bad(
                "name must have no spaces or '+' (it is the checkpoint origin)".into(),
            ));
        }
        if self.orgs.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err(bad("orgs must be sorted by id without duplicates".into()));
        }
        if !self.orgs.iter().any(|o| o.power > 0) {
            return Err(bad("at least one org must have voting power".into()));
        }
        if self.orgs.len() > MAX_ORGS {
            return Err(bad(format!("at most {MAX_ORGS} founding organisations")));
        }
        for o in &self.orgs {
            check_text("org name", &o.name, 128, false)?;
            if o.power > MAX_POWER {
                return Err(bad(format!("org {} has power above {MAX_POWER}", o.id)));
            }
            o.key
                .verifying_key()
                .map_err(|_| bad(format!("org {} has an invalid key", o.id)))?;
        }
        if self.params.repair_deadline_working_days > 365 {
            return Err(bad(
                "repair_deadline_working_days must be at most 365".into()
            ));
        }
        if self.params.max_block_entries == 0 || self.params.entry_time_window_ms == 0 {
            return Err(bad("params must be positive".into()));
        }
        let r = &self.params.retention;
        if r.windows(2).any(|w| w[0].category >= w[1].category) {
            return Err(bad(
                "retention must be sorted by category without duplicates".into(),
            ));
        }
        if let Some(x) = r
            .iter()
            .find(|x| x.days == 0 || x.days > MAX_RETENTION_DAYS)
        {
            return Err(bad(format!(
                "retention of {} must be 1-{MAX_RETENTION_DAYS} days, not {}",
                x.category.name(),
                x.days
            )));
        }
        Ok(())
    }

    /// The chain id.
    pub fn chain_id(&self) -> Result<Digest, CodecError> {
        Ok(hash::tagged(Domain::Genesis, &[&codec::encode(self)?]))
    }
}
