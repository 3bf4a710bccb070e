//! The HTTP API (axum): routes, shared state, body parsing and the middleware stack.
//!
//! `specs/api.md` is the contract. Every error leaves as `{"code","message"}`: handlers return
//! [`ApiError`], and a last middleware rewrites any other error response (framework rejections,
//! 405, 413 from the body limit) into that shape. A request that does not finish within the
//! request timeout gets 408 `api.body_timeout` if the client had not sent its whole body yet
//! (a slow or stalled client), 503 `api.timeout` otherwise (the node was slow). Bodies are parsed
//! strictly: malformed JSON, wrong types and unknown fields (at any depth) are 400. Not here:
//! ledger rules (the engine and the ledger crate decide), data generation (`dev`).

pub mod alerts;
pub mod auth;
pub mod console;
pub mod error;
pub mod handlers;
pub mod openapi;
pub mod ui;

use crate::datastore::AgencyData;
use crate::engine::Engine;
use auth::{RateLimiter, ReplayCache};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
pub use error::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Dev endpoints enabled.
    pub dev: bool,
    /// Signed requests per second per signer (0 = unlimited).
    pub rate_limit_per_sec: u32,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Base URL of the node holding the agency data: credit queries are forwarded there.
    pub data_node: Option<String>,
    /// The consortium network as seen by this node (cluster mode).
    pub net: Option<crate::cluster::SharedNetView>,
    /// The consortium firm keys (`[privacy] firm_key` and the files of later epochs beside it,
    /// `crate::firmkeys`): map the USCCs clients send to the tags the ledger holds. Without them,
    /// routes naming a firm by USCC answer 503 `api.no_firm_key`.
    pub firm_keys: Option<crate::firmkeys::FirmKeys>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            dev: false,
            rate_limit_per_sec: 20_000,
            request_timeout: Duration::from_secs(10),
            data_node: None,
            net: None,
            firm_keys: None,
        }
    }
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    /// The ledger engine.
    pub engine: Engine,
    /// The agency's off-ledger data.
    pub data: AgencyData,
    /// Settings.
    pub cfg: Arc<ApiConfig>,
    /// Rate limiter of signed requests, by signer.
    pub limiter: Arc<RateLimiter>,
    /// Rate limiter of unsigned reads, by client IP (when the server knows it).
    pub anon_limiter: Arc<RateLimiter>,
    /// Nonces of authenticated reads.
    pub auth_replay: Arc<ReplayCache>,
    /// Signatures of query requests already answered.
    pub query_replay: Arc<ReplayCache>,
    /// External witnesses' cosignatures, attached to the checkpoint served.
    pub cosigs: Arc<crate::witness_client::Cosignatures>,
    /// Post-loan monitoring, on the node holding the agency data (`crate::monitor`).
    pub monitor: Arc<std::sync::OnceLock<Arc<crate::monitor::Monitor>>>,
}

impl AppState {
    /// State for `engine` and `data`.
    pub fn new(engine: Engine, data: AgencyData, cfg: ApiConfig) -> AppState {
        let window = engine.genesis().params.entry_time_window_ms;
        let query_replay = Arc::new(ReplayCache::new(window));
        if let Err(e) = remember_recent_queries(&engine, &query_replay, window) {
            tracing::warn!("could not reload recent query requests from the ledger: {e}");
        }
        if let Some(k) = &cfg.firm_keys {
            if let Err(e) = data.set_firm_keys(k.clone()) {
                tracing::warn!("could not index the agency data by firm tag: {e}");
            }
        }
        AppState {
            limiter: Arc::new(RateLimiter::new(cfg.rate_limit_per_sec)),
            anon_limiter: Arc::new(RateLimiter::new(cfg.rate_limit_per_sec)),
            auth_replay: Arc::new(ReplayCache::new(auth::AUTH_WINDOW_MS)),
            query_replay,
            cosigs: Arc::new(crate::witness_client::Cosignatures::default()),
            monitor: Arc::default(),
            engine,
            data,
            cfg: Arc::new(cfg),
        }
    }
}

impl AppState {
    /// Takes a rate-limit token for a signer (429 and a metric when none is left).
    pub fn rate_check(&self, key: &str) -> Result<(), ApiError> {
        self.limiter.check(key).inspect_err(|_| {
            crate::metrics::Metrics::inc(&self.engine.metrics().rate_limited);
        })
    }
}

/// Fills the query replay cache with the signed requests answered in the recent blocks (within
/// twice the entry window of the node clock), so a restart does not forget them.
fn remember_recent_queries(
    engine: &Engine,
    cache: &ReplayCache,
    window: u64,
) -> Result<(), xinyi_ledger::store::StoreError> {
    use xinyi_ledger::{Entry, EntryKind};
    let store = engine.store();
    let now = engine.now();
    let cutoff = now.saturating_sub(2 * window);
    let mut height = store.height()?;
    while height > 0 {
        let Some((block, _)) = store.block(height)? else {
            break;
        };
        if block.header.time < cutoff {
            break;
        }
        for bytes in &block.entries {
            let Ok(e) = Entry::decode(bytes) else {
                continue;
            };
            let sig = match &e.body.kind {
                EntryKind::QueryServed(q) => q.request.signature,
                EntryKind::QueryDenied { request, .. } => request.signature,
                _ => continue,
            };
            cache.check_and_insert(hex::encode(sig.0), now);
        }
        height -= 1;
    }
    Ok(())
}

/// The router with every route of `specs/api.md` and the middleware stack.
/// The handler of a route of the table [`openapi::ROUTES`] (None if the table names a route
/// this function does not know; a test checks there is none).
pub fn method_router(method: &str, path: &str) -> Option<MethodRouter<AppState>> {
    use handlers as h;
    Some(match (method, path) {
        ("get", "/health") => get(h::health),
        ("get", "/metrics") => get(h::metrics),
        ("get", "/openapi.json") => get(h::openapi),
        ("get", "/v1/genesis") => get(h::genesis),
        ("post", "/v1/entries") => post(h::post_entry),
        ("get", "/v1/entries/{position}") => get(h::get_entry),
        ("get", "/v1/consents/{id}") => get(h::get_consent),
        ("post", "/v1/queries") => post(h::post_query),
        ("post", "/v1/queries/batch") => post(h::post_query_batch),
        ("get", "/v1/firms/{uscc}/tag") => get(h::firm_tag),
        ("get", "/v1/banks/{org}/queries") => get(h::bank_queries),
        ("get", "/v1/banks/{org}/alerts") => get(alerts::bank_alerts),
        ("get", "/v1/firms/{uscc}/access-log") => get(h::access_log),
        ("get", "/v1/firms/{uscc}/access-proof") => get(h::access_proof),
        ("get", "/v1/firms/{uscc}/records") => get(h::firm_records),
        ("get", "/v1/firms/{uscc}/grades/{domain}") => get(h::get_grade),
        ("get", "/v1/repairs/{id}") => get(h::get_repair),
        ("get", "/v1/commitments/{id}") => get(h::get_commitment),
        ("get", "/v1/blocks/{height}") => get(h::get_block),
        ("get", "/v1/checkpoint") => get(h::checkpoint),
        ("get", "/v1/consistency") => get(h::consistency),
        ("get", "/v1/export") => get(h::export),
        ("post", "/v1/dev/clock") => post(h::dev_clock),
        ("get", "/v1/firms/{uscc}/entries") => get(console::firm_entries),
        ("get", "/v1/checkpoints") => get(console::checkpoints),
        ("get", "/v1/repairs") => get(console::repairs),
        // The typed writes (`/v1/consents`, `/v1/repairs/{id}/decision`, ...): one handler
        // driven by `handlers::writes::TYPED_WRITES`.
        ("post", p) => return h::writes::typed_route(p),
        _ => return None,
    })
}

/// The router: exactly the routes of [`openapi::ROUTES`] (so the OpenAPI document lists every
/// route), and the middleware stack.
pub fn router(state: AppState) -> Router {
    let timeout = state.cfg.request_timeout;
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<AppState>> =
        std::collections::BTreeMap::new();
    for r in openapi::ROUTES {
        let Some(m) = method_router(r.method, r.path) else {
            tracing::error!("route {} {} has no handler", r.method, r.path);
            continue;
        };
        let merged = match by_path.remove(r.path) {
            Some(prev) => prev.merge(m),
            None => m,
        };
        by_path.insert(r.path, merged);
    }
    let mut app = Router::new();
    for (path, m) in by_path {
        app = app.route(path, m);
    }
    app.merge(ui::routes())
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(move |req, next| {
            request_timeout(timeout, req, next)
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_unsigned_reads,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            normalize_errors,
        ))
        .with_state(state)
}

/// Bounds a request's time: 408 `api.body_timeout` when the client had not finished sending the
/// body it announced (`Content-Length` > 0 or chunked) when the time ran out, 503 `api.timeout`
/// when the node itself was slow. Dropping the handler's future on timeout aborts it (a write
/// already handed to consensus may still commit; `specs/api.md`).
async fn request_timeout(timeout: std::time::Duration, req: Request, next: Next) -> Response {
    use futures::StreamExt as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let received = std::sync::Arc::new(AtomicBool::new(!announced));
    let (parts, body) = req.into_parts();
    let flag = received.clone();
    // The flag is set when the body stream has ended, i.e. the client sent all of it.
    let tail = futures::stream::once(async move {
        flag.store(true, Ordering::Release);
    })
    .filter_map(|()| async { None::<Result<axum::body::Bytes, axum::Error>> });
    let body = axum::body::Body::from_stream(body.into_data_stream().chain(tail));
    let req = Request::from_parts(parts, body);
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) if !received.load(Ordering::Acquire) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "api.body_timeout",
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api.timeout",
            format!("the request timed out after {} s", timeout.as_secs_f64()),
        )
        .into_response(),
    }
}

/// Rate-limits unsigned reads (GET without `X-Xinyi-Auth`) per client IP, when the server was
/// started with connection info (`node::serve`); signed requests are limited per signer.
async fn limit_unsigned_reads(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == axum::http::Method::GET && !req.headers().contains_key("x-xinyi-auth") {
        if let Some(ci) = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        {
            if let Err(e) = s.anon_limiter.check(&format!("ip:{}", ci.0.ip())) {
                crate::metrics::Metrics::inc(&s.engine.metrics().rate_limited);
                return e.into_response();
            }
        }
    }
    next.run(req).await
}

/// Counts responses and rewrites non-JSON error responses into `{"code","message"}`.
async fn normalize_errors(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    s.engine.metrics().http_response(status.as_u16());
    tracing::debug!(
        "{method} {path} -> {} in {:?}",
        status.as_u16(),
        started.elapsed()
    );
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        match status.as_u16() {
            405 => "method not allowed on this path".to_string(),
            503 => "the request timed out".to_string(),
            _ => status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_string(),
        }
    } else {
        text.lines().next().unwrap_or_default().to_string()
    };
    let mut out = ApiError::new(status, error::code_for_status(status), message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}

/// Parses a JSON body strictly: syntax, types, and no unknown fields at any depth.
pub fn parse_json<T: DeserializeOwned + Serialize>(body: &[u8]) -> Result<T, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("api.bad_json", format!("malformed JSON: {e}")))?;
    let t: T = serde_json::from_value(v.clone()).map_err(|e| {
        let m = e.to_string();
        let code = if m.contains("unknown field") {
            "api.unknown_field"
        } else if m.contains("social credit code") {
            "uscc.invalid"
        } else {
            "api.bad_field"
        };
        ApiError::bad_request(code, format!("invalid request body: {m}"))
    })?;
    let back = serde_json::to_value(&t).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(path) = find_extra(&v, &back, "") {
        return Err(ApiError::bad_request(
            "api.unknown_field",
            format!("invalid request body: unknown field `{path}`"),
        ));
    }
    Ok(t)
}

/// The first object key present in `input` but not in `parsed` (dotted path).
fn find_extra(input: &Value, parsed: &Value, path: &str) -> Option<String> {
    match (input, parsed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    None => return Some(p),
                    Some(w) => {
                        if let Some(x) = find_extra(v, w, &p) {
                            return Some(x);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| find_extra(v, w, &format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    struct Inner {
        a: u32,
    }
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Inner,
        list: Vec<Inner>,
    }

    #[test]
    fn every_route_of_the_table_has_a_handler() {
        for r in openapi::ROUTES {
            assert!(
                method_router(r.method, r.path).is_some(),
                "{} {}",
                r.method,
                r.path
            );
        }
        assert!(method_router("get", "/v1/unknown").is_none());
    }

    #[test]
    fn strict_parsing_finds_unknown_fields_at_any_depth() {
        assert!(parse_json::<Outer>(br#"{"inner":{"a":1},"list":[{"a":2}]}"#).is_ok());
        let e = parse_json::<Outer>(br#"{"inner":{"a":1,"b":2},"list":[]}"#).unwrap_err();
        assert_eq!(e.code, "api.unknown_field");
        assert!(e.message.contains("inner.b"), "{}", e.message);
        let e = parse_json::<Outer>(br#"{"inner":{"a":1},"list":[{"a":2,"z":0}]}"#).unwrap_err();
        assert!(e.message.contains("list[0].z"), "{}", e.message);
        let e = parse_json::<Outer>(br#"{"inner":{"a":1},"list":[],"x":1}"#).unwrap_err();
        assert_eq!(e.code, "api.unknown_field");
        let e = parse_json::<Outer>(br#"{"inner":{"a":"1"},"list":[]}"#).unwrap_err();
        assert_eq!(e.code, "api.bad_field");
        let e = parse_json::<Outer>(br#"{"inner":"#).unwrap_err();
        assert_eq!(e.code, "api.bad_json");
    }
}
