//! Route handlers: thin adapters between HTTP and the engine, the ledger state and the agency
//! data store, one module per concept: [`writes`] (signed entries, one table-driven handler for
//! the typed write routes), [`queries`] (the authorized-query service), [`reads`] (state and
//! indexes), [`chain`] (blocks, entries, proofs, export), [`access`] (who is reading) and
//! [`service`] (health, metrics, documents, dev clock).
//!
//! Writes answer only after the block is durable; reads take the engine lock only on blocking
//! threads (the helpers below). Every name is re-exported here, so routes name `handlers::*`.

use super::auth::no_firm_key;
use super::error::ApiError;
use super::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use xinyi_ledger::hash::Digest;
use xinyi_ledger::merkle::Hash;
use xinyi_ledger::{FirmTag, Uscc};

pub mod access;
pub mod chain;
pub mod queries;
pub mod reads;
pub mod service;
pub mod writes;

pub use chain::{checkpoint, consistency, export, get_block, get_entry};
pub use queries::{post_query, post_query_batch, MAX_QUERY_BATCH};
pub use reads::{
    access_log, access_proof, bank_queries, firm_records, firm_tag, get_commitment, get_consent,
    get_grade, get_repair,
};
pub use service::{dev_clock, genesis, health, metrics, not_found, openapi};
pub use writes::post_entry;

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn parse_uscc(s: &str) -> ApiResult<Uscc> {
    Uscc::parse(s).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))
}

/// A USCC from a path, validated at this edge (400 `uscc.*`), and its ledger tags, one per
/// firm-key epoch the node holds, oldest first (503 `api.no_firm_key` without the consortium
/// firm key). Only a node holding the keys can tell that these tags name one firm.
pub(crate) fn firm_of(s: &AppState, uscc: &str) -> ApiResult<(Uscc, FirmTags)> {
    let u = parse_uscc(uscc)?;
    let keys = s.cfg.firm_keys.as_ref().ok_or_else(no_firm_key)?;
    Ok((u, FirmTags(keys.tags(&u))))
}

/// A firm's tags, one per firm-key epoch held, oldest first (`crate::firmkeys`).
#[derive(Debug, Clone)]
pub(crate) struct FirmTags(pub(crate) Vec<(u32, FirmTag)>);

impl FirmTags {
    /// The tags alone, oldest epoch first.
    pub(crate) fn tags(&self) -> impl DoubleEndedIterator<Item = FirmTag> + '_ {
        self.0.iter().map(|(_, t)| *t)
    }
}

pub(crate) fn parse_id(what: &str, s: &str) -> ApiResult<Digest> {
    Digest::from_hex(s).map_err(|e| {
        ApiError::bad_request(
            "api.bad_id",
            format!("{what} id must be 64 hex digits: {e}"),
        )
    })
}

pub(crate) fn parse_u64(what: &str, s: &str) -> ApiResult<u64> {
    s.parse().map_err(|_| {
        ApiError::bad_request(
            "api.bad_param",
            format!("{what} must be a non-negative integer, got {s:?}"),
        )
    })
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

pub(crate) fn json_ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

pub(crate) fn hex_proof(p: &[Hash]) -> Vec<String> {
    p.iter().map(hex::encode).collect()
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}
