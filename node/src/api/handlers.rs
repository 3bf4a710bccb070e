//! Route handlers: thin adapters between HTTP and the engine, the ledger state and the agency
//! data store.
//!
//! Writes decode a signed entry, check that it is the kind the route is for, and hand it to the
//! engine, answering only after the block is durable. Queries are the agency's service: verify
//! the bank's signed request, evaluate the consent with the ledger's own rule at the node clock,
//! commit a `QueryServed` (then release data) or a `QueryDenied` (then 403). Reads take the
//! engine lock only on blocking threads.

use super::auth::{no_firm_key, parse_auth, requester_key, verify_auth, Requester};
use super::error::ApiError;
use super::{openapi, parse_json, AppState};
use crate::datastore::canonical_json;
use crate::datastore::AgencyData;
use crate::engine::{ser_proof, Committed, SubmitError};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use xinyi_ledger::entry::{
    query_signing_payload, Author, DenialReason, EntryKind, QueryRecord, QueryRequest,
    SignedQueryRequest, MAX_RECORD_IDS,
};
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::merkle::Hash;
use xinyi_ledger::state::StateError;
use xinyi_ledger::types::{check_categories, Role};
use xinyi_ledger::{Entry, FirmTag, OrgId, Uscc};

type ApiResult<T> = Result<T, ApiError>;

// ---------- helpers ----------

fn parse_uscc(s: &str) -> ApiResult<Uscc> {
    Uscc::parse(s).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))
}

/// A USCC from a path, validated at this edge (400 `uscc.*`), and its ledger tag (503
/// `api.no_firm_key` without the consortium firm key).
fn firm_of(s: &AppState, uscc: &str) -> ApiResult<(Uscc, FirmTag)> {
    let u = parse_uscc(uscc)?;
    let key = s.cfg.firm_key.as_ref().ok_or_else(no_firm_key)?;
    Ok((u, key.tag(&u)))
}

fn parse_id(what: &str, s: &str) -> ApiResult<Digest> {
    Digest::from_hex(s).map_err(|e| {
        ApiError::bad_request(
            "api.bad_id",
            format!("{what} id must be 64 hex digits: {e}"),
        )
    })
}

fn parse_u64(what: &str, s: &str) -> ApiResult<u64> {
    s.parse().map_err(|_| {
        ApiError::bad_request(
            "api.bad_param",
            format!("{what} must be a non-negative integer, got {s:?}"),
        )
    })
}

fn to_json<T: Serialize>(v: &T) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

fn json_ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

fn hex_proof(p: &[Hash]) -> Vec<String> {
    p.iter().map(hex::encode).collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    entry: String,
}

fn decode_entry(body: &[u8]) -> ApiResult<Entry> {
    let w: WriteBody = parse_json(body)?;
    let bytes = B64.decode(w.entry.trim()).map_err(|e| {
        ApiError::bad_request("api.bad_base64", format!("entry is not base64: {e}"))
    })?;
    Entry::decode(&bytes).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))
}

fn author_key(a: &Author) -> String {
    match a {
        Author::Org(o) => format!("org:{o}"),
        Author::Firm(f) => format!("firm:{f}"),
    }
}

/// The generic write path: decode, check kind, rate-limit, admit, commit, answer.
async fn write(
    s: &AppState,
    body: &[u8],
    check: impl FnOnce(&EntryKind) -> ApiResult<()>,
) -> ApiResult<Json<Committed>> {
    let e = decode_entry(body)?;
    check(&e.body.kind)?;
    s.rate_check(&author_key(&e.body.author))?;
    Ok(Json(s.engine.submit(e).await?))
}

fn wrong_kind(want: &str, got: &EntryKind) -> ApiError {
    ApiError::bad_request(
        "api.wrong_kind",
        format!("this endpoint takes a {want} entry, got {}", got.name()),
    )
}

fn id_mismatch(path: &Digest, body: &Digest) -> ApiError {
    ApiError::bad_request(
        "api.id_mismatch",
        format!("the entry refers to {body}, the path to {path}"),
    )
}

// ---------- service endpoints ----------

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

// ---------- writes ----------

/// `POST /v1/entries`
pub async fn post_entry(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Committed>> {
    write(&s, &body, |_| Ok(())).await
}

/// `POST /v1/consents`
pub async fn post_consent(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Committed>> {
    write(&s, &body, |k| match k {
        EntryKind::ConsentGranted(_) => Ok(()),
        other => Err(wrong_kind("consent_granted", other)),
    })
    .await
}

/// `POST /v1/consents/{id}/revoke`
pub async fn revoke_consent(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Committed>> {
    let id = parse_id("consent", &id)?;
    write(&s, &body, |k| match k {
        EntryKind::ConsentRevoked { consent } if *consent == id => Ok(()),
        EntryKind::ConsentRevoked { consent } => Err(id_mismatch(&id, consent)),
        other => Err(wrong_kind("consent_revoked", other)),
    })
    .await
}

/// `POST /v1/repairs`
pub async fn post_repair(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Committed>> {
    write(&s, &body, |k| match k {
        EntryKind::RepairRequested { .. } => Ok(()),
        other => Err(wrong_kind("repair_requested", other)),
    })
    .await
}

/// `POST /v1/repairs/{id}/decision`
pub async fn decide_repair(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Committed>> {
    let id = parse_id("repair", &id)?;
    write(&s, &body, |k| match k {
        EntryKind::RepairDecided { repair, .. } if *repair == id => Ok(()),
        EntryKind::RepairDecided { repair, .. } => Err(id_mismatch(&id, repair)),
        other => Err(wrong_kind("repair_decided", other)),
    })
    .await
}

/// `POST /v1/repairs/{id}/applications`
pub async fn apply_repair(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Committed>> {
    let id = parse_id("repair", &id)?;
    write(&s, &body, |k| match k {
        EntryKind::RepairApplied { repair } if *repair == id => Ok(()),
        EntryKind::RepairApplied { repair } => Err(id_mismatch(&id, repair)),
        other => Err(wrong_kind("repair_applied", other)),
    })
    .await
}

/// `POST /v1/commitments`
pub async fn post_commitment(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Committed>> {
    write(&s, &body, |k| match k {
        EntryKind::CommitmentMade { .. } => Ok(()),
        other => Err(wrong_kind("commitment_made", other)),
    })
    .await
}

/// `POST /v1/commitments/{id}/broken`
pub async fn break_commitment(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Committed>> {
    let id = parse_id("commitment", &id)?;
    write(&s, &body, |k| match k {
        EntryKind::CommitmentBroken { commitment, .. } if *commitment == id => Ok(()),
        EntryKind::CommitmentBroken { commitment, .. } => Err(id_mismatch(&id, commitment)),
        other => Err(wrong_kind("commitment_broken", other)),
    })
    .await
}

/// `POST /v1/grades`
pub async fn post_grade(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Committed>> {
    write(&s, &body, |k| match k {
        EntryKind::GradeAssigned { .. } => Ok(()),
        other => Err(wrong_kind("grade_assigned", other)),
    })
    .await
}

// ---------- queries ----------

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    request: SignedQueryRequest,
}

fn denial_message(r: DenialReason) -> &'static str {
    match r {
        DenialReason::ConsentUnknown => "query refused: no consent with that id",
        DenialReason::WrongFirm => "query refused: the consent was granted by another firm",
        DenialReason::WrongBank => "query refused: the consent names another bank",
        DenialReason::ConsentRevoked => "query refused: the firm revoked this consent",
        DenialReason::ConsentNotYetValid => "query refused: the consent is not valid yet",
        DenialReason::ConsentExpired => "query refused: the consent has expired",
        DenialReason::CategoryNotCovered => {
            "query refused: a requested category is not covered by the consent"
        }
        DenialReason::UsesExhausted => "query refused: the consent has no uses left",
    }
}

/// `POST /v1/queries`: the agency's authorized-query service (log before release).
pub async fn post_query(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    if let Some(url) = s.cfg.data_node.clone() {
        return forward_query(&s, url, body, s.cfg.request_timeout).await;
    }
    let QueryBody { request: sq } = parse_json(&body)?;
    let req = sq.request.clone();
    s.rate_check(&format!("org:{}", req.bank))?;
    check_categories(&req.categories)
        .map_err(|e| ApiError::bad_request("entry.field", e.to_string()))?;
    let now = s.engine.now();
    let window = s.engine.genesis().params.entry_time_window_ms;
    if req.time.abs_diff(now) > window {
        return Err(ApiError::unauthorized(
            "api.stale",
            format!(
                "request time {} is more than {} s from the node clock {now}",
                req.time,
                window / 1000
            ),
        ));
    }
    let bank = s.engine.org_record(&req.bank).ok_or_else(|| {
        ApiError::unauthorized(
            "api.unknown_signer",
            format!("{} is not a registered organisation", req.bank),
        )
    })?;
    if bank.role != Role::Bank {
        return Err(ApiError::forbidden(
            "api.forbidden",
            format!("{} is not a bank", req.bank),
        ));
    }
    let engine = s.engine.clone();
    let chain_id = *s.engine.chain_id();
    let replay = s.query_replay.clone();
    let data = s.data.clone();
    let sq2 = sq.clone();
    let key = hex::encode(sq.signature.0);
    let replay_key = key.clone();
    // One hop to a blocking thread: the signature first (401, nothing written), then the replay
    // cache, then the consent rule at the node clock and, if it passes, the data (released to
    // the bank only after the QueryServed record commits). The pre-check is skipped while a
    // block is being built rather than waiting for it: the ledger applies the same rule when
    // the QueryServed is committed, and a refusal there is recorded as a denial just the same
    // (see `serve`).
    let (verdict, released) = blocking(move || {
        let payload = query_signing_payload(&chain_id, &sq2.request)
            .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
        bank.key
            .verify(SigDomain::QueryRequest, &payload, &sq2.signature)
            .map_err(|_| {
                ApiError::unauthorized(
                    "api.bad_signature",
                    "the query request's signature does not verify under the bank's key",
                )
            })?;
        if !replay.check_and_insert(replay_key, now) {
            return Err(ApiError::unauthorized(
                "api.replay",
                "this signed query request was already submitted",
            ));
        }
        let verdict = engine
            .try_lock()
            .map(|core| core.chain.state().check_query(&sq2.request, now));
        let released = match verdict {
            Some(Err(_)) => None,
            Some(Ok(())) | None => Some(release(&data, &sq2.request)),
        };
        Ok((verdict, released))
    })
    .await?;
    let result = match (verdict, released) {
        (Some(Err(reason)), _) => Err(deny(&s, sq, reason).await),
        (_, Some(released)) => match released {
            Ok(released) => serve(&s, sq, released).await,
            Err(e) => Err(e),
        },
        (_, None) => Err(ApiError::internal(
            "no data was released for a served query",
        )),
    };
    // Nothing was recorded for this request (full mempool, node failure): let the bank retry
    // the same signed request.
    if let Err(e) = &result {
        if e.status == StatusCode::TOO_MANY_REQUESTS || e.status.is_server_error() {
            s.query_replay.remove(&key);
        }
    }
    result
}

/// Cross-node query path: this node does not hold the agency data, so the signed request goes
/// to the node that does, which records the query on the ledger and releases the data only
/// once that record is final. Its answer (data, proof, checkpoint, or the error) is passed back
/// unchanged; the client verifies it.
async fn forward_query(
    s: &AppState,
    url: String,
    body: Bytes,
    timeout: Duration,
) -> ApiResult<Response> {
    let target = format!("{}/v1/queries", url.trim_end_matches('/'));
    let (status, text) = blocking(move || {
        let agent = crate::tls::peer_agent_builder().timeout(timeout).build();
        match agent
            .post(&target)
            .set("content-type", "application/json")
            .send_bytes(&body)
        {
            Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
            Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "api.data_node_unreachable",
                format!("the data node {target} did not answer: {e}"),
            )),
        }
    })
    .await?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    // The bank will read the record (and its proof) back from this node: answer once this node
    // has committed it too, so what the data node says is final is final here as well.
    let position = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        v.get("record")
            .or_else(|| v.get("denial"))
            .and_then(|r| r.get("position"))
            .and_then(Value::as_u64)
    });
    if let Some(p) = position {
        let start = std::time::Instant::now();
        loop {
            let engine = s.engine.clone();
            let durable = blocking(move || Ok(engine.lock().durable_size)).await?;
            if durable > p {
                break;
            }
            if start.elapsed() >= timeout {
                // The record is final on the data node (it released the data only then); pass
                // the answer on rather than lose it. The bank's reads here may lag a little.
                tracing::warn!("query record {p} is not committed here yet; answering anyway");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response())
}

/// Commits a `QueryDenied` for `reason` and returns the 403. If the consent changed before the
/// denial committed (the ledger then computes another reason), the denial is re-issued with
/// the reason the ledger gives.
async fn deny(s: &AppState, sq: SignedQueryRequest, reason: DenialReason) -> ApiError {
    let mut reason = reason;
    for _ in 0..3 {
        let entry = match s.engine.sign_own(EntryKind::QueryDenied {
            request: sq.clone(),
            reason,
        }) {
            Ok(e) => e,
            Err(e) => return ApiError::internal(format!("signing the denial: {e}")),
        };
        match s.engine.enqueue(entry).await {
            Ok(c) => {
                crate::metrics::Metrics::inc(&s.engine.metrics().queries_denied);
                let denial = serde_json::to_value(&c).unwrap_or(Value::Null);
                return ApiError::forbidden(reason.code(), denial_message(reason))
                    .with("denial", denial);
            }
            Err(SubmitError::Dropped(StateError::WrongDenial {
                actual: Some(actual),
                ..
            })) => reason = actual,
            Err(e) => return e.into(),
        }
    }
    ApiError::new(
        StatusCode::CONFLICT,
        "state.wrong_denial",
        "the consent kept changing while the refusal was being recorded; retry",
    )
}

/// What the agency holds on the request's firm in the requested categories, and the ids of the
/// records it drew on (blocking: reads the agency's data store).
fn release(data: &AgencyData, req: &QueryRequest) -> ApiResult<(Value, Vec<Digest>)> {
    match data.firm_by_tag(&req.firm) {
        Some(firm) => Ok(data.release(&firm, &req.categories, MAX_RECORD_IDS)?),
        // No data on that firm here (or no firm key): every category is null, as for a firm
        // the agency holds nothing on.
        None => Ok((
            Value::Object(
                req.categories
                    .iter()
                    .map(|c| (c.name().to_string(), Value::Null))
                    .collect(),
            ),
            Vec::new(),
        )),
    }
}

/// Commits the `QueryServed` record of `sq` and only then answers with the `released` data.
async fn serve(
    s: &AppState,
    sq: SignedQueryRequest,
    (released, ids): (Value, Vec<Digest>),
) -> ApiResult<Response> {
    let salt: [u8; 32] = rand::random();
    let digest = hash::salted(&salt, &canonical_json(&released));
    let entry = s
        .engine
        .sign_own(EntryKind::QueryServed(QueryRecord {
            request: sq.clone(),
            response: digest,
            records: ids,
        }))
        .map_err(|e| ApiError::internal(format!("signing the query record: {e}")))?;
    match s.engine.enqueue(entry).await {
        Ok(c) => {
            crate::metrics::Metrics::inc(&s.engine.metrics().queries_served);
            Ok(json_ok(json!({
                "data": released,
                "salt": hex::encode(salt),
                "response_digest": digest.to_hex(),
                "record": to_json(&c)?,
            })))
        }
        Err(SubmitError::Dropped(StateError::QueryNotAuthorized(reason))) => {
            Err(deny(s, sq, reason).await)
        }
        Err(e) => Err(e.into()),
    }
}

// ---------- reads ----------

/// `GET /v1/consents/{id}`
pub async fn get_consent(
    State(s): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_id("consent", &id)?;
    let caller = authenticate(&s, &method, &uri, &headers).await?;
    let engine = s.engine.clone();
    let c = blocking(move || Ok(engine.lock().chain.state().consent(&id)?)).await?;
    let c = c.ok_or_else(|| ApiError::not_found(format!("consent {id} not found")))?;
    // A consent id is a capability: the firm hands it to the bank it consents to. Any bank
    // holding one may read the consent (it needs the firm's tag to query, and the ledger then
    // records whether the consent is its own); other readers must be a party or privileged.
    let party = caller.is_firm(&c.firm) || caller.is_org(&c.consent.bank);
    if !(party || caller.privileged || caller.role == Some(Role::Bank)) {
        return Err(forbidden_read(&caller, &format!("consent {id}")));
    }
    Ok(json_ok(json!({
        "id": id.to_hex(),
        "firm": c.firm,
        "bank": c.consent.bank,
        "purpose": c.consent.purpose,
        "categories": c.consent.categories,
        "not_before": c.consent.not_before,
        "not_after": c.consent.not_after,
        "max_uses": c.consent.max_uses,
        "monitoring": c.consent.monitoring,
        "used": c.used,
        "revoked": c.revoked,
        "granted_at": c.granted_at,
    })))
}

/// `GET /v1/repairs/{id}`
pub async fn get_repair(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_id("repair", &id)?;
    let engine = s.engine.clone();
    let r = blocking(move || Ok(engine.lock().chain.state().repair(&id)?)).await?;
    let r = r.ok_or_else(|| ApiError::not_found(format!("repair {id} not found")))?;
    let overdue = r.overdue_at(s.engine.now());
    let mut v = to_json(&r)?;
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(id.to_hex()));
        m.insert("overdue".into(), json!(overdue));
    }
    Ok(json_ok(v))
}

/// `GET /v1/commitments/{id}`
pub async fn get_commitment(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id("commitment", &id)?;
    let engine = s.engine.clone();
    let r = blocking(move || Ok(engine.lock().chain.state().commitment(&id)?)).await?;
    let r = r.ok_or_else(|| ApiError::not_found(format!("commitment {id} not found")))?;
    let mut v = to_json(&r)?;
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(id.to_hex()));
    }
    Ok(json_ok(v))
}

/// `GET /v1/firms/{uscc}/grades/{domain}`
pub async fn get_grade(
    State(s): State<AppState>,
    Path((uscc, domain)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (uscc, firm) = firm_of(&s, &uscc)?;
    let engine = s.engine.clone();
    let d = domain.clone();
    let r = blocking(move || Ok(engine.lock().chain.state().grade(&firm, &d)?)).await?;
    let r =
        r.ok_or_else(|| ApiError::not_found(format!("no grade for {uscc} in domain {domain:?}")))?;
    let mut v = to_json(&r)?;
    if let Value::Object(m) = &mut v {
        m.insert("firm".into(), json!(uscc));
        m.insert("domain".into(), json!(domain));
    }
    Ok(json_ok(v))
}

/// `GET /v1/firms/{uscc}/records`
pub async fn firm_records(
    State(s): State<AppState>,
    Path(uscc): Path<String>,
) -> ApiResult<Response> {
    let (uscc, firm) = firm_of(&s, &uscc)?;
    let engine = s.engine.clone();
    let records = blocking(move || {
        let store = engine.store().clone();
        let positions = store
            .firm_positions(&firm, None, usize::MAX)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut found = Vec::new();
        for pos in positions {
            let Some(bytes) = store
                .entry(pos)
                .map_err(|e| ApiError::internal(e.to_string()))?
            else {
                continue;
            };
            let e = Entry::decode(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
            if let EntryKind::CreditRecordPublished(r) = &e.body.kind {
                found.push((pos, r.record));
            }
        }
        let core = engine.lock();
        let mut out = Vec::new();
        for (pos, id) in found {
            if let Some(r) = core.chain.state().record(&id)? {
                out.push(json!({
                    "id": id.to_hex(),
                    "position": pos,
                    "agency": r.agency,
                    "category": r.category,
                    "severity": r.severity,
                    "min_publicity_days": r.min_publicity_days,
                    "published_at": r.published_at,
                    "open_repair": r.open_repair,
                    "repaired": r.repaired,
                }));
            }
        }
        Ok(out)
    })
    .await?;
    Ok(json_ok(json!({"firm": uscc, "records": records})))
}

/// Who made a read, after its `X-Xinyi-Auth` header was checked (signature, time, nonce).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The signer; `None` for an unsigned request.
    who: Option<Requester>,
    /// The signing firm's tag.
    tag: Option<FirmTag>,
    /// The signing organisation's role.
    role: Option<Role>,
    /// Role auditor.
    auditor: bool,
    /// An auditor, or a validator of the current set: reads every entry.
    privileged: bool,
}

impl Caller {
    fn is_firm(&self, tag: &FirmTag) -> bool {
        self.tag.as_ref() == Some(tag)
    }

    pub(crate) fn is_org(&self, org: &OrgId) -> bool {
        matches!(&self.who, Some(Requester::Org(o)) if o == org)
    }

    fn name(&self) -> String {
        self.who
            .as_ref()
            .map(Requester::key)
            .unwrap_or_else(|| "an unsigned request".into())
    }
}

fn forbidden_read(caller: &Caller, what: &str) -> ApiError {
    if caller.who.is_none() {
        return ApiError::unauthorized(
            "api.missing_auth",
            format!("reading {what} needs an X-Xinyi-Auth header (a party to it or an auditor)"),
        );
    }
    ApiError::forbidden(
        "api.forbidden",
        format!("{} may not read {what}", caller.name()),
    )
}

/// Checks the `X-Xinyi-Auth` header if there is one (401 on a bad one; signature before
/// permission) and says who is asking. Permission is the caller's business.
pub(crate) async fn authenticate(
    s: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> ApiResult<Caller> {
    let Some(raw) = headers.get("x-xinyi-auth") else {
        return Ok(Caller {
            who: None,
            tag: None,
            role: None,
            auditor: false,
            privileged: false,
        });
    };
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::unauthorized("api.bad_auth", "X-Xinyi-Auth is not ASCII"))?;
    let auth = parse_auth(raw)?;
    s.rate_check(&auth.who.key())?;
    let pq = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    let now = s.engine.now();
    let engine = s.engine.clone();
    let a = auth.clone();
    let firm_key = s.cfg.firm_key.clone();
    let method = method.clone();
    let privileged = blocking(move || {
        let (key, privileged) = {
            let core = engine.lock();
            let state = core.chain.state();
            let (key, role) = requester_key(state, &a.who, firm_key.as_ref())?;
            let validator = match &a.who {
                Requester::Org(o) => state
                    .validators()
                    .map(|v| v.get(o).is_some_and(|x| x.power > 0))
                    .unwrap_or(false),
                Requester::Firm(_) => false,
            };
            (key, (role, validator))
        };
        verify_auth(
            &a,
            &key,
            engine.chain_id().as_bytes(),
            method.as_str(),
            &pq,
            now,
        )?;
        Ok(privileged)
    })
    .await?;
    let (role, validator) = privileged;
    let auditor = role == Some(Role::Auditor);
    if !s
        .auth_replay
        .check_and_insert(format!("{}|{}", auth.who.key(), auth.nonce), now)
    {
        return Err(ApiError::unauthorized(
            "api.replay",
            "this request nonce was already used",
        ));
    }
    let tag = match &auth.who {
        Requester::Firm(f) => s.cfg.firm_key.as_ref().map(|k| k.tag(f)),
        Requester::Org(_) => None,
    };
    Ok(Caller {
        who: Some(auth.who),
        tag,
        role,
        auditor,
        privileged: auditor || validator,
    })
}

/// Checks `X-Xinyi-Auth` for a read of `firm`'s data: the firm itself or an auditor.
async fn authorize_firm_read(
    s: &AppState,
    firm: &Uscc,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<()> {
    if headers.get("x-xinyi-auth").is_none() {
        return Err(ApiError::unauthorized(
            "api.missing_auth",
            "this endpoint needs an X-Xinyi-Auth header",
        ));
    }
    let caller = authenticate(s, &method, &uri, &headers).await?;
    let allowed = match &caller.who {
        Some(Requester::Firm(f)) => f == firm,
        Some(Requester::Org(_)) => caller.auditor,
        None => false,
    };
    if !allowed {
        return Err(ApiError::forbidden(
            "api.forbidden",
            format!("{} may not read the access log of {firm}", caller.name()),
        ));
    }
    Ok(())
}

/// `GET /v1/firms/{uscc}/tag` (the firm itself, an auditor or an agency, `X-Xinyi-Auth`): the firm's ledger
/// tag, and the log position of the latest `firm_registered` entry binding it to a key (so the
/// firm can check the binding against its own key).
pub async fn firm_tag(
    State(s): State<AppState>,
    Path(uscc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (uscc, tag) = firm_of(&s, &uscc)?;
    if headers.get("x-xinyi-auth").is_none() {
        return Err(ApiError::unauthorized(
            "api.missing_auth",
            "this endpoint needs an X-Xinyi-Auth header",
        ));
    }
    let caller = authenticate(&s, &method, &uri, &headers).await?;
    // Agencies hold the firm key themselves (they register firms and publish records).
    let allowed = caller.is_firm(&tag) || caller.auditor || caller.role == Some(Role::Agency);
    if !allowed {
        return Err(forbidden_read(
            &caller,
            &format!("the ledger tag of {uscc}"),
        ));
    }
    let engine = s.engine.clone();
    let registration = blocking(move || {
        let store = engine.store().clone();
        let ie = |e: xinyi_ledger::store::StoreError| ApiError::internal(e.to_string());
        let mut last = None;
        for pos in store.firm_positions(&tag, None, usize::MAX).map_err(ie)? {
            let Some(bytes) = store.entry(pos).map_err(ie)? else {
                continue;
            };
            let e = Entry::decode(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
            if matches!(e.body.kind, EntryKind::FirmRegistered { .. }) {
                last = Some(pos);
            }
        }
        Ok(last)
    })
    .await?;
    Ok(json_ok(
        json!({"firm": uscc, "tag": tag, "registration": registration}),
    ))
}

/// `GET /v1/banks/{org}/queries` (the bank itself or an auditor/validator, `X-Xinyi-Auth`): every
/// `query_served` and `query_denied` naming that bank, in log order.
pub async fn bank_queries(
    State(s): State<AppState>,
    Path(org): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let bank =
        OrgId::new(&org).map_err(|e| ApiError::bad_request("api.bad_param", e.to_string()))?;
    let caller = authenticate(&s, &method, &uri, &headers).await?;
    if !(caller.is_org(&bank) || caller.privileged) {
        return Err(forbidden_read(&caller, &format!("the queries of {bank}")));
    }
    let engine = s.engine.clone();
    let b = bank.clone();
    let entries = blocking(move || {
        let store = engine.store().clone();
        let ie = |e: xinyi_ledger::store::StoreError| ApiError::internal(e.to_string());
        let positions = store
            .bank_query_positions(&b, None, usize::MAX)
            .map_err(ie)?;
        let mut out = Vec::new();
        for pos in positions {
            let Some(bytes) = store.entry(pos).map_err(ie)? else {
                continue;
            };
            let e = Entry::decode(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
            let (req, reason) = match &e.body.kind {
                EntryKind::QueryServed(q) => (&q.request.request, None),
                EntryKind::QueryDenied { request, reason } => (&request.request, Some(*reason)),
                EntryKind::AlertsDelivered(a) if a.bank == b => {
                    out.push(super::alerts::log_item(&store, &e, a, pos)?);
                    continue;
                }
                _ => continue,
            };
            if req.bank != b {
                continue;
            }
            let height = store.height_of_position(pos).map_err(ie)?.unwrap_or(0);
            let mut item = json!({
                "position": pos,
                "height": height,
                "kind": e.body.kind.name(),
                "id": e.id.to_hex(),
                "firm": req.firm,
                "consent": req.consent,
                "categories": req.categories,
                "time": req.time,
            });
            if let (Some(r), Value::Object(m)) = (reason, &mut item) {
                m.insert("reason".into(), json!(r.code()));
            }
            out.push(item);
        }
        Ok(out)
    })
    .await?;
    Ok(json_ok(json!({"bank": bank, "entries": entries})))
}

/// The organisations and firm an entry concerns: its author, the bank of a query or consent, the
/// agency of a commitment, and the firm it names (author or named firm).
fn entry_parties(e: &Entry) -> (Vec<OrgId>, Option<FirmTag>) {
    let mut orgs = Vec::new();
    if let Author::Org(o) = &e.body.author {
        orgs.push(o.clone());
    }
    match &e.body.kind {
        EntryKind::QueryServed(q) => orgs.push(q.request.request.bank.clone()),
        EntryKind::QueryDenied { request, .. } => orgs.push(request.request.bank.clone()),
        EntryKind::ConsentGranted(c) => orgs.push(c.bank.clone()),
        EntryKind::CommitmentMade { agency, .. } => orgs.push(agency.clone()),
        EntryKind::AlertsDelivered(a) => orgs.push(a.bank.clone()),
        _ => {}
    }
    (orgs, e.body.firm())
}

fn may_read_entry(caller: &Caller, e: &Entry) -> bool {
    if caller.privileged {
        return true;
    }
    let (orgs, firm) = entry_parties(e);
    orgs.iter().any(|o| caller.is_org(o)) || firm.is_some_and(|f| caller.is_firm(&f))
}

/// `GET /v1/firms/{uscc}/access-log` (firm itself or an auditor, `X-Xinyi-Auth`)
pub async fn access_log(
    State(s): State<AppState>,
    Path(uscc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (uscc, firm) = firm_of(&s, &uscc)?;
    authorize_firm_read(&s, &uscc, method, uri, headers).await?;
    let engine = s.engine.clone();
    let entries = blocking(move || {
        let store = engine.store().clone();
        let ie = |e: xinyi_ledger::store::StoreError| ApiError::internal(e.to_string());
        let positions = store.firm_positions(&firm, None, usize::MAX).map_err(ie)?;
        let mut times: HashMap<u64, u64> = HashMap::new();
        let mut out = Vec::new();
        for pos in positions {
            let Some(bytes) = store.entry(pos).map_err(ie)? else {
                continue;
            };
            let e = Entry::decode(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
            let (req, reason) = match &e.body.kind {
                EntryKind::QueryServed(q) => (&q.request.request, None),
                EntryKind::QueryDenied { request, reason } => (&request.request, Some(*reason)),
                EntryKind::AlertsDelivered(a) => {
                    out.push(super::alerts::log_item(&store, &e, a, pos)?);
                    continue;
                }
                _ => continue,
            };
            let height = store.height_of_position(pos).map_err(ie)?.unwrap_or(0);
            let time = match times.get(&height) {
                Some(t) => *t,
                None => {
                    let t = store
                        .header(height)
                        .map_err(ie)?
                        .map(|h| h.time)
                        .unwrap_or(0);
                    times.insert(height, t);
                    t
                }
            };
            let mut item = json!({
                "position": pos,
                "height": height,
                "time": time,
                "kind": e.body.kind.name(),
                "id": e.id.to_hex(),
                "bank": req.bank,
                "consent": req.consent,
                "categories": req.categories,
            });
            if let (Some(r), Value::Object(m)) = (reason, &mut item) {
                m.insert("reason".into(), json!(r.code()));
            }
            out.push(item);
        }
        Ok(out)
    })
    .await?;
    Ok(json_ok(
        json!({"firm": uscc, "tag": firm, "entries": entries}),
    ))
}

/// `GET /v1/firms/{uscc}/access-proof` (firm itself or an auditor, `X-Xinyi-Auth`): the firm's
/// access head and its sparse Merkle proof against the head block's state root, with that
/// block's header and commit certificate (`specs/api.md`, `specs/state.md` §access map).
pub async fn access_proof(
    State(s): State<AppState>,
    Path(uscc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (uscc, firm) = firm_of(&s, &uscc)?;
    authorize_firm_read(&s, &uscc, method, uri, headers).await?;
    let engine = s.engine.clone();
    let v = blocking(move || {
        let unavailable = |m: &str| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "api.unavailable",
                m.to_string(),
            )
        };
        let core = engine.lock();
        let p = core.chain.state().access_proof(&firm)?.ok_or_else(|| {
            unavailable("no access proof before a block is committed since the node started")
        })?;
        let ie = |e: xinyi_ledger::store::StoreError| ApiError::internal(e.to_string());
        let header = core
            .store
            .header(p.height)
            .map_err(ie)?
            .ok_or_else(|| unavailable("the head block is not stored yet; retry"))?;
        let cert = core
            .store
            .certificate(p.height)
            .map_err(ie)?
            .ok_or_else(|| unavailable("the head block is not stored yet; retry"))?;
        drop(core);
        let terminal = match &p.proof.terminal {
            xinyi_ledger::smt::Terminal::Empty => json!({"empty": true}),
            xinyi_ledger::smt::Terminal::Leaf { key, value } => {
                json!({"key": hex::encode(key), "value": hex::encode(value)})
            }
        };
        Ok(json!({
            "firm": uscc,
            "tag": firm,
            "height": p.height,
            "header": to_json(&header)?,
            "certificate": to_json(&cert)?,
            "prev_root": p.prev_root.to_hex(),
            "write_set_hash": p.write_set_hash.to_hex(),
            "access_root": p.access_root.to_hex(),
            "value": p.value.map(|v| json!({"head": v.head.to_hex(), "count": v.count})),
            "proof": {
                "siblings": p.proof.siblings.iter().map(hex::encode).collect::<Vec<_>>(),
                "terminal": terminal,
            },
        }))
    })
    .await?;
    Ok(json_ok(v))
}

/// `GET /v1/blocks/{height}`: header, hash and certificate for anyone; the entries for an
/// auditor or validator (`X-Xinyi-Auth`), otherwise only their Merkle leaf hashes.
pub async fn get_block(
    State(s): State<AppState>,
    Path(h): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let height = parse_u64("height", &h)?;
    let caller = authenticate(&s, &method, &uri, &headers).await?;
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
/// its id, leaf hash and inclusion proof (`"redacted": true`).
pub async fn get_entry(
    State(s): State<AppState>,
    Path(p): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let position = parse_u64("position", &p)?;
    let caller = authenticate(&s, &method, &uri, &headers).await?;
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
        let proof = core
            .chain
            .log()
            .inclusion_proof(position, size)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((bytes, proof, core.checkpoint.clone()))
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
    if !allowed && caller.tag.is_some() {
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
pub async fn export(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = authenticate(&s, &method, &uri, &headers).await?;
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
