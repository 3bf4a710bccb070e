//! `GET /v1/banks/{org}/alerts`: a bank's stream of monitoring alerts (long poll).
//!
//! A signed read (`X-Xinyi-Auth`) by the bank itself: it returns the released alerts after the
//! bank's cursor `after`, waiting up to `wait_ms` for one if there is none yet. Every alert comes
//! with its `alerts_delivered` entry, an inclusion proof and the node's checkpoint, as a query
//! answer does; only alerts whose entry is committed exist in the stream (`crate::monitor`).
//! The `after` a bank sends acknowledges everything up to it (the backlog bound counts from
//! there). Not here: producing alerts, webhooks (`crate::monitor`).

use super::error::ApiError;
use super::handlers::access::authenticate;
use super::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use xinyi_ledger::OrgId;

/// Longest long-poll wait.
pub const MAX_WAIT_MS: u64 = 25_000;
/// Most alerts per answer.
pub const MAX_LIMIT: usize = 1_000;

fn param(q: &HashMap<String, String>, k: &str, default: u64) -> Result<u64, ApiError> {
    match q.get(k) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(
                "api.bad_param",
                format!("{k} must be a non-negative integer, got {v:?}"),
            )
        }),
    }
}

/// `GET /v1/banks/{org}/alerts?after=SEQ&wait_ms=MS&limit=N`
pub async fn bank_alerts(
    State(s): State<AppState>,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bank =
        OrgId::new(&org).map_err(|e| ApiError::bad_request("api.bad_param", e.to_string()))?;
    if let Some(k) = q
        .keys()
        .find(|k| !matches!(k.as_str(), "after" | "wait_ms" | "limit"))
    {
        return Err(ApiError::bad_request(
            "api.bad_param",
            format!("unknown query parameter {k:?} (after, wait_ms, limit)"),
        ));
    }
    let after = param(&q, "after", 0)?;
    // The wait must end well before the request timeout.
    let cap = MAX_WAIT_MS.min((s.cfg.request_timeout.as_millis() as u64).saturating_sub(1_000));
    let wait = Duration::from_millis(param(&q, "wait_ms", 0)?.min(cap));
    let limit = (param(&q, "limit", 100)? as usize).clamp(1, MAX_LIMIT);
    if headers.get("x-xinyi-auth").is_none() {
        return Err(ApiError::unauthorized(
            "api.missing_auth",
            "reading alerts needs an X-Xinyi-Auth header signed by the bank",
        ));
    }
    let caller = authenticate(&s, &method, &uri, &headers).await?;
    if !caller.is_org(&bank) {
        return Err(ApiError::forbidden(
            "api.forbidden",
            format!("only {bank} may read its alerts"),
        ));
    }
    let m = s.monitor.get().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "monitor.unavailable",
            "this node produces no alerts (it does not hold the agency data); ask the agency's node",
        )
    })?;
    let mut rx = m.subscribe();
    let deadline = Instant::now() + wait;
    let ie = |e: anyhow::Error| ApiError::internal(format!("{e:#}"));
    loop {
        rx.borrow_and_update();
        let (m2, b) = (m.clone(), bank.clone());
        let found = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let items = m2.alerts_after(&b, after, limit)?;
            let answers = items
                .iter()
                .map(|a| m2.answer(a))
                .collect::<anyhow::Result<Vec<Value>>>()?;
            Ok((answers, m2.last_seq(&b)?, m2.dropped(&b)?))
        })
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
        .map_err(ie)?;
        let (answers, last, dropped) = found;
        let now = Instant::now();
        if !answers.is_empty() || now >= deadline {
            let next = answers
                .last()
                .and_then(|a| a.get("seq"))
                .and_then(Value::as_u64)
                .unwrap_or(after);
            return Ok((
                StatusCode::OK,
                Json(json!({
                    "bank": bank,
                    "alerts": answers,
                    "next": next,
                    "last_seq": last,
                    "dropped": dropped,
                })),
            )
                .into_response());
        }
        let _ = tokio::time::timeout(deadline - now, rx.changed()).await;
    }
}

/// The access-log and bank-query-list item of an `alerts_delivered` entry at `pos`: who was
/// alerted under which consents, about which triggers.
pub(crate) fn log_item(
    store: &xinyi_ledger::store::Store,
    e: &xinyi_ledger::Entry,
    b: &xinyi_ledger::monitor::AlertBatch,
    pos: u64,
) -> Result<Value, ApiError> {
    let ie = |e: xinyi_ledger::store::StoreError| ApiError::internal(e.to_string());
    let height = store.height_of_position(pos).map_err(ie)?.unwrap_or(0);
    let time = store.header(height).map_err(ie)?.map_or(0, |h| h.time);
    let mut consents: Vec<String> = b.alerts.iter().map(|a| a.consent.to_hex()).collect();
    consents.sort();
    consents.dedup();
    Ok(json!({
        "position": pos,
        "height": height,
        "time": time,
        "kind": e.body.kind.name(),
        "id": e.id.to_hex(),
        "bank": b.bank,
        "firm": b.firm,
        "consents": consents,
        "alerts": b.alerts.iter().map(|a| json!({
            "id": a.alert, "consent": a.consent, "category": a.category,
            "trigger": {"id": a.trigger, "position": a.position},
        })).collect::<Vec<_>>(),
    }))
}
