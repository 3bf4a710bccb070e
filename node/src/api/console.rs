//! Read endpoints the web console (`/ui`) needs beyond the CLI's: a firm's own ledger history,
//! the checkpoints recorded on the ledger with anchor receipts, and the repair cases with their
//! SLA state.
//!
//! Each is role-gated like its neighbours (`specs/privacy.md` §4): a firm's history goes to the
//! firm itself or an auditor; the repair list (it names firm tags) to auditors and validators;
//! checkpoint cosignatures and anchor receipts carry no per-firm data and are public. These are
//! reads of committed state and the store; they write nothing and decide nothing.

use super::auth::Requester;
use super::error::ApiError;
use super::handlers::access::{authenticate, Caller};
use super::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use xinyi_ledger::hash::Digest;
use xinyi_ledger::state::RepairStatus;
use xinyi_ledger::Uscc;

type ApiResult<T> = Result<T, ApiError>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

fn ie(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

fn refuse(caller: &Caller, what: &str) -> ApiError {
    if caller.who.is_none() {
        return ApiError::unauthorized(
            "api.missing_auth",
            format!("reading {what} needs an X-Xinyi-Auth header"),
        );
    }
    ApiError::forbidden(
        "api.forbidden",
        format!("{} may not read {what}", caller.name()),
    )
}

/// `GET /v1/firms/{uscc}/entries` (the firm itself or an auditor, `X-Xinyi-Auth`): every entry
/// concerning the firm (its registration, consents, revocations, queries and denials on it,
/// records, commitments, grades, repairs), in log order, each with its body as JSON.
pub async fn firm_entries(
    State(s): State<AppState>,
    Path(uscc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let firm = Uscc::parse(&uscc).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
    let keys = s
        .cfg
        .firm_keys
        .as_ref()
        .ok_or_else(super::auth::no_firm_key)?;
    let tags = super::handlers::FirmTags(keys.tags(&firm));
    let list: Vec<xinyi_ledger::FirmTag> = tags.tags().collect();
    let caller = authenticate(&s, &method, &uri, &headers).await?;
    let allowed = match &caller.who {
        Some(Requester::Firm(f)) => *f == firm,
        Some(Requester::Org(_)) => caller.auditor,
        None => false,
    };
    if !allowed {
        return Err(refuse(&caller, &format!("the ledger history of {firm}")));
    }
    let engine = s.engine.clone();
    let entries = blocking(move || {
        let store = engine.store().clone();
        let mut out = Vec::new();
        for (pos, e) in super::handlers::reads::firm_entries_all(&store, &tags)? {
            let height = store.height_of_position(pos).map_err(ie)?.unwrap_or(0);
            out.push(json!({
                "position": pos,
                "height": height,
                "kind": e.body.kind.name(),
                "id": e.id.to_hex(),
                "body": serde_json::to_value(&e.body).map_err(ie)?,
            }));
        }
        Ok(out)
    })
    .await?;
    Ok(
        Json(json!({"firm": firm, "tag": list.last(), "tags": list, "entries": entries}))
            .into_response(),
    )
}

/// `GET /v1/checkpoints` (anyone): the checkpoint cosignatures recorded on the ledger
/// (`checkpoint_cosigned`, state `k`), grouped by size, and the anchor receipts (state `a`).
pub async fn checkpoints(State(s): State<AppState>) -> ApiResult<Response> {
    let engine = s.engine.clone();
    let v = blocking(move || {
        let core = engine.lock();
        let state = core.chain.state();
        let mut cosigned: Vec<(u64, Vec<String>)> = Vec::new();
        let mut anchors = Vec::new();
        for (k, v) in state.iter() {
            let (Some(&p), Some(size)) = (k.first(), k.get(1..9)) else {
                continue;
            };
            let Ok(size) = <[u8; 8]>::try_from(size).map(u64::from_be_bytes) else {
                continue;
            };
            let rest = String::from_utf8_lossy(&k[9..]).to_string();
            match p {
                b'k' => match cosigned.last_mut() {
                    Some((sz, orgs)) if *sz == size => orgs.push(rest),
                    _ => cosigned.push((size, vec![rest])),
                },
                b'a' => anchors.push(json!({
                    "size": size,
                    "chain": rest,
                    "tx": String::from_utf8_lossy(v),
                })),
                _ => {}
            }
        }
        let cosigned: Vec<Value> = cosigned
            .into_iter()
            .map(|(size, signers)| json!({"size": size, "signers": signers}))
            .collect();
        Ok(json!({"cosigned": cosigned, "anchors": anchors}))
    })
    .await?;
    Ok(Json(v).into_response())
}

/// `GET /v1/repairs` (auditors and validators, `X-Xinyi-Auth`): every repair case with its
/// status, deadline, both registries' application times and the SLA flags: `overdue` (at the
/// node clock) and `one_sided` (approved and applied by exactly one registry).
pub async fn repairs(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = authenticate(&s, &method, &uri, &headers).await?;
    if !caller.privileged {
        return Err(refuse(&caller, "the list of repair cases"));
    }
    let now = s.engine.now();
    let engine = s.engine.clone();
    let list = blocking(move || {
        let core = engine.lock();
        let state = core.chain.state();
        let ids: Vec<Digest> = state
            .iter()
            .filter(|(k, _)| k.first() == Some(&b'p') && k.len() == 33)
            .filter_map(|(k, _)| <[u8; 32]>::try_from(&k[1..]).ok().map(Digest))
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let Some(r) = state.repair(&id).map_err(ie)? else {
                continue;
            };
            let one_sided = r.status == RepairStatus::Approved
                && (r.credit_china_applied_at.is_some() != r.gsxt_applied_at.is_some());
            let overdue = r.overdue_at(now);
            let mut v = serde_json::to_value(&r).map_err(ie)?;
            if let Value::Object(m) = &mut v {
                m.insert("id".into(), json!(id.to_hex()));
                m.insert("overdue".into(), json!(overdue));
                m.insert("one_sided".into(), json!(one_sided));
            }
            out.push(v);
        }
        Ok(out)
    })
    .await?;
    Ok(Json(json!({"time_ms": now, "repairs": list})).into_response())
}
