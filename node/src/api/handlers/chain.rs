//! Reads of the chain itself: blocks, entries with inclusion proofs, the latest checkpoint,
//! consistency proofs and the streamed audit bundle. Entry and block contents are role-gated
//! (`access::may_read_entry`); proofs are for anyone.

use super::access::{forbidden_read, may_read_entry, ReadRequest};
use super::{blocking, hex_proof, json_ok, parse_u64, to_json, ApiResult};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::engine::ser_proof;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use xinyi_ledger::entry::EntryKind;
use xinyi_ledger::merkle::Hash;
use xinyi_ledger::Entry;

/// `GET /v1/blocks/{height}`: header, hash and certificate for anyone; the entries for an
/// auditor or validator (`X-Xinyi-Auth`), otherwise only their Merkle leaf hashes.
pub async fn get_block(
    State(s): State<AppState>,
    Path(h): Path<String>,
    req: ReadRequest,
) -> ApiResult<Response> {
    let height = parse_u64("height", &h)?;
    let caller = req.caller(&s).await?;
    let store = s.engine.store().clone();
    let b = blocking(move || {
        store
            .block(height)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    let (block, cert) =
        b.ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let header_hash = block
        .header
        .hash()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut v = json!({
        "header": to_json(&block.header)?,
        "header_hash": header_hash.to_hex(),
        "certificate": to_json(&cert)?,
    });
    if caller.privileged {
        v["entries"] = json!(block
            .entries
            .iter()
            .map(|e| B64.encode(e.as_slice()))
            .collect::<Vec<_>>());
    } else {
        v["redacted"] = json!(true);
        v["leaf_hashes"] = json!(block
            .entries
            .iter()
            .map(|e| hex::encode(xinyi_ledger::merkle::leaf_hash(e)))
            .collect::<Vec<_>>());
    }
    Ok(json_ok(v))
}

/// `GET /v1/entries/{position}`: the entry for its parties (author, the bank of a query or
/// consent, the firm it names) and auditors/validators (`X-Xinyi-Auth`); for anyone else only
/// its id, leaf hash and inclusion proof (`"redacted": true`). The proof is in the latest final
/// (quorum-cosigned) checkpoint that covers the entry, so a reader who requires finality does not
/// race the cosignatures of the newest block; only an entry of that block gets the newest note.
pub async fn get_entry(
    State(s): State<AppState>,
    Path(p): Path<String>,
    req: ReadRequest,
) -> ApiResult<Response> {
    let position = parse_u64("position", &p)?;
    let caller = req.caller(&s).await?;
    let engine = s.engine.clone();
    let (bytes, proof, checkpoint) = blocking(move || {
        let core = engine.lock();
        let size = core.durable_size;
        if position >= size {
            return Err(ApiError::not_found(format!(
                "no entry at position {position}; the log has {size}"
            )));
        }
        let bytes = core
            .store
            .entry(position)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| {
                ApiError::internal(format!("entry {position} missing from the store"))
            })?;
        let (size, checkpoint) = core.read_checkpoint(position);
        let proof = core
            .chain
            .log()
            .inclusion_proof(position, size)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((bytes, proof, checkpoint))
    })
    .await?;
    let store = s.engine.store().clone();
    let height = blocking(move || {
        store
            .height_of_position(position)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    let e = Entry::decode(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut allowed = may_read_entry(&caller, &e);
    if !allowed && !caller.tags.is_empty() {
        // Entries about a firm's commitment or repair name it only through the record.
        let engine = s.engine.clone();
        let kind = e.body.kind.clone();
        let firm = blocking(move || {
            let core = engine.lock();
            let st = core.chain.state();
            Ok(match &kind {
                EntryKind::CommitmentBroken { commitment, .. } => {
                    st.commitment(commitment)?.map(|c| c.firm)
                }
                EntryKind::RepairDecided { repair, .. } | EntryKind::RepairApplied { repair } => {
                    st.repair(repair)?.map(|r| r.firm)
                }
                _ => None,
            })
        })
        .await?;
        allowed = firm.is_some_and(|f| caller.is_firm(&f));
    }
    if !allowed {
        return Ok(json_ok(json!({
            "position": position,
            "height": height,
            "id": e.id.to_hex(),
            "leaf_hash": hex::encode(xinyi_ledger::merkle::leaf_hash(&bytes)),
            "redacted": true,
            "inclusion_proof": hex_proof(&proof),
            "checkpoint": checkpoint,
        })));
    }
    Ok(json_ok(json!({
        "position": position,
        "height": height,
        "entry": B64.encode(&bytes),
        "id": e.id.to_hex(),
        "kind": e.body.kind.name(),
        "body": to_json(&e.body)?,
        "inclusion_proof": hex_proof(&proof),
        "checkpoint": checkpoint,
    })))
}

/// `GET /v1/checkpoint`
pub async fn checkpoint(State(s): State<AppState>) -> ApiResult<Response> {
    let engine = s.engine.clone();
    let cp = blocking(move || Ok(engine.lock().checkpoint.clone())).await?;
    let cp = s.cosigs.attach(&cp);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], cp).into_response())
}

#[derive(Serialize)]
struct ConsistencyAnswer {
    from: u64,
    to: u64,
    #[serde(serialize_with = "ser_proof")]
    proof: Vec<Hash>,
}

/// `GET /v1/consistency?from=N&to=M`
pub async fn consistency(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if let Some(k) = q.keys().find(|k| *k != "from" && *k != "to") {
        return Err(ApiError::bad_request(
            "api.bad_param",
            format!("unknown parameter {k:?}"),
        ));
    }
    let get = |k: &str| -> ApiResult<u64> {
        let v = q.get(k).ok_or_else(|| {
            ApiError::bad_request("api.bad_param", format!("missing parameter {k}"))
        })?;
        parse_u64(k, v)
    };
    let (from, to) = (get("from")?, get("to")?);
    let engine = s.engine.clone();
    let proof = blocking(move || {
        let core = engine.lock();
        if to > core.durable_size {
            return Err(ApiError::bad_request(
                "api.bad_range",
                format!("to={to} is beyond the log size {}", core.durable_size),
            ));
        }
        core.chain
            .log()
            .consistency_proof(from, to)
            .map_err(|e| ApiError::bad_request("api.bad_range", e.to_string()))
    })
    .await?;
    Ok(json_ok(to_json(&ConsistencyAnswer { from, to, proof })?))
}

/// A `Write` that sends 64 KiB chunks into a channel (export streaming).
struct ChannelWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// `GET /v1/export`: the audit bundle, streamed; auditors and validators only (`X-Xinyi-Auth`).
pub async fn export(State(s): State<AppState>, req: ReadRequest) -> ApiResult<Response> {
    let caller = req.caller(&s).await?;
    if !caller.privileged {
        return Err(forbidden_read(&caller, "the whole ledger (export)"));
    }
    let store = s.engine.store().clone();
    let height = store
        .height()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let genesis = s.engine.genesis().to_json();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let run = || -> Result<(), String> {
            let w = ChannelWriter {
                buf: Vec::new(),
                tx,
            };
            let mut bw = xinyi_ledger::bundle::BundleWriter::new(w, genesis.as_bytes())
                .map_err(|e| e.to_string())?;
            for h in 1..=height {
                let (b, c) = store
                    .block(h)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("block {h} missing"))?;
                let bb = b.encode().map_err(|e| e.to_string())?;
                let cb = c.encode().map_err(|e| e.to_string())?;
                bw.block(&bb, &cb).map_err(|e| e.to_string())?;
            }
            bw.finish().map_err(|e| e.to_string())?;
            Ok(())
        };
        if let Err(e) = run() {
            tracing::warn!("export stopped: {e}");
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"xinyi-bundle-{height}.bin\""),
            ),
        ],
        body,
    )
        .into_response())
}
