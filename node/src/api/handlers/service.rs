//! Service endpoints: health, metrics, the OpenAPI document, the genesis, the 404 fallback
//! and the dev-mode clock. None of them reads or writes ledger entries.

use super::{blocking, json_ok, ApiResult};
use crate::api::error::ApiError;
use crate::api::{openapi, parse_json, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `GET /health`
pub async fn health(State(s): State<AppState>) -> Response {
    let m = s.engine.metrics();
    if s.engine.failed() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api.unavailable",
            "the node stopped committing after a storage failure; restart it",
        )
        .with("status", json!("failed"))
        .into_response();
    }
    let engine = s.engine.clone();
    let head = blocking(move || Ok(engine.lock().chain.head_hash().to_hex()))
        .await
        .unwrap_or_default();
    let mut body = json!({
        "status": "ok",
        "org": s.engine.org().to_string(),
        "role": s.engine.role(),
        "chain_id": s.engine.chain_id().to_hex(),
        "height": m.height.load(std::sync::atomic::Ordering::Relaxed),
        "head": head,
        "log_size": m.log_size.load(std::sync::atomic::Ordering::Relaxed),
        "mempool": m.mempool_depth.load(std::sync::atomic::Ordering::Relaxed),
        "time_ms": s.engine.now(),
        "dev": s.cfg.dev,
    });
    if let Some(net) = &s.cfg.net {
        let v = net.read().unwrap_or_else(|e| e.into_inner()).clone();
        body["peers"] = json!(v.peers);
        body["p2p"] = json!({"listen": v.listen, "stats": v.stats});
    }
    if let Some(k) = &s.cfg.firm_keys {
        // Epochs held (`crate::firmkeys`) and, if an approved one is not, why.
        body["firm_keys"] = json!({"epochs": k.epochs(), "problem": k.problem()});
    }
    json_ok(body)
}

/// `GET /metrics`
pub async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.engine.metrics().render(),
    )
        .into_response()
}

/// `GET /openapi.json`
pub async fn openapi() -> Response {
    json_ok(openapi::document())
}

/// Unknown path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

/// `GET /v1/genesis`
pub async fn genesis(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.engine.genesis().to_json(),
    )
        .into_response()
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    advance_ms: u64,
}

/// `POST /v1/dev/clock` (dev mode only)
pub async fn dev_clock(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    if !s.cfg.dev || !s.engine.clock().is_adjustable() {
        return Err(ApiError::not_found(
            "the dev clock exists only on a node started with --dev",
        ));
    }
    let b: ClockBody = parse_json(&body)?;
    let clock = s.engine.clock().clone();
    let offset = blocking(move || {
        clock
            .advance(b.advance_ms)
            .map_err(|e| ApiError::internal(format!("saving the clock offset: {e}")))
    })
    .await?;
    Ok(json_ok(
        json!({"time_ms": s.engine.now(), "offset_ms": offset}),
    ))
}
