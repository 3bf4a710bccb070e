//! `POST /v1/queries` (and `/v1/queries/batch`), the agency's authorized-query service (log before release): verify the
//! bank's signed request, evaluate the consent with the ledger's own rule at the node clock,
//! commit a `QueryServed` (then release data) or a `QueryDenied` (then 403). A node without the
//! agency data forwards the request to the one that has it.
//!
//! Reads of logged queries (`/v1/banks/{org}/queries`, access logs) are in `reads`.

use super::{blocking, ApiResult};
use crate::api::auth::ReplayCache;
use crate::api::error::ApiError;
use crate::api::{parse_json, AppState};
use crate::datastore::{canonical_json, AgencyData, Release};
use crate::engine::{Committed, SubmitError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;
use xinyi_ledger::entry::{
    query_signing_payload, DenialReason, EntryKind, QueryRecord, QueryRequest, SignedQueryRequest,
    MAX_RECORD_IDS,
};
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::keys::{signing_message, verify_many, SigCheck, SigDomain};
use xinyi_ledger::state::{OrgRecord, StateError};
use xinyi_ledger::types::{check_categories, Category, Role};

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

/// A served query's answer (`specs/api.md`): the released data, its salt and digest, and the
/// committed `QueryServed` record with its proof. Serialised straight into the response body:
/// building a JSON value tree of the record first was a visible share of the agency node's CPU.
/// Fields in name order, as the value tree wrote them.
#[derive(Serialize)]
struct Served {
    data: Value,
    record: Committed,
    response_digest: String,
    salt: String,
    /// Only in a batch's results: 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

/// One result of `POST /v1/queries/batch`: a served answer, or an error body with its status.
#[derive(Serialize)]
#[serde(untagged)]
enum BatchResult {
    Served(Served),
    Failed(Value),
}

/// The body of a `POST /v1/queries/batch` answer (serialised without a value tree too).
#[derive(Serialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}

/// Most signed requests in one `POST /v1/queries/batch` (`specs/api.md`).
pub const MAX_QUERY_BATCH: usize = 256;

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct QueryBatchBody {
    requests: Vec<SignedQueryRequest>,
}

/// `POST /v1/queries`: the agency's authorized-query service (log before release).
pub async fn post_query(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    if let Some(url) = s.cfg.data_node.clone() {
        return forward_query(&s, url, "/v1/queries", body, s.cfg.request_timeout).await;
    }
    let QueryBody { request: sq } = parse_json(&body)?;
    let now = s.engine.now();
    let bank = admit(&s, &sq, now)?;
    let checks = Checks::of(&s);
    let sq2 = sq.clone();
    // One hop to a blocking thread for the signature, the replay cache, the rule and the data.
    let checked = blocking(move || checks.check(&sq2, Some(&bank), now)).await?;
    answer(&s, sq, checked, ErasureCheck::Here)
        .await
        .map(|a| Json(a).into_response())
}

/// `POST /v1/queries/batch`: up to [`MAX_QUERY_BATCH`] signed requests in one body, each
/// answered exactly as `POST /v1/queries` would (its own record committed before its data is
/// released, its own denial or error), in request order, in one 200 answer. The batch saves the
/// HTTP round trips and thread hops, not any check: every request is verified, logged and
/// answered on its own, and one bad request fails only itself.
pub async fn post_query_batch(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    if let Some(url) = s.cfg.data_node.clone() {
        return forward_query(&s, url, "/v1/queries/batch", body, s.cfg.request_timeout).await;
    }
    let QueryBatchBody { requests } = parse_json(&body)?;
    if requests.is_empty() || requests.len() > MAX_QUERY_BATCH {
        return Err(ApiError::bad_request(
            "batch.size",
            format!(
                "a batch holds 1 to {MAX_QUERY_BATCH} requests, not {}",
                requests.len()
            ),
        ));
    }
    let now = s.engine.now();
    let admitted: Vec<(SignedQueryRequest, ApiResult<OrgRecord>)> = requests
        .into_iter()
        .map(|sq| {
            let bank = admit(&s, &sq, now);
            (sq, bank)
        })
        .collect();
    let checks = Checks::of(&s);
    // One blocking hop for the whole batch; its signatures are checked in one batch
    // verification first, and one by one (naming the bad ones) only if that fails.
    let checked = blocking(move || {
        let all_verified = checks.verify_all(&admitted);
        Ok(admitted
            .into_iter()
            .map(|(sq, bank)| {
                let c =
                    bank.and_then(|bank| checks.check(&sq, (!all_verified).then_some(&bank), now));
                (sq, c)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let requests: Vec<(String, QueryRequest)> = checked
        .iter()
        .map(|(sq, _)| (replay_key(sq), sq.request.clone()))
        .collect();
    let mut answers = futures::future::join_all(checked.into_iter().map(|(sq, c)| {
        let s = &s;
        async move {
            match c {
                Ok(c) => answer(s, sq, c, ErasureCheck::Caller).await,
                Err(e) => Err(e),
            }
        }
    }))
    .await;
    // The erasure check of every served answer, in one blocking hop for the batch (a hop per
    // answer was 7 % of the agency node's CPU).
    let served: Vec<(usize, (String, QueryRequest))> = answers
        .iter()
        .zip(requests)
        .enumerate()
        .filter(|(_, (a, _))| a.is_ok())
        .map(|(i, (_, r))| (i, r))
        .collect();
    if !served.is_empty() {
        let data = s.data.clone();
        let erased = blocking(move || {
            Ok(served
                .into_iter()
                .map(|(i, (key, r))| (i, key, erased_of(&data, &r)))
                .collect::<Vec<_>>())
        })
        .await?;
        // Each answer on its own, as `serve` does for a single query.
        for (i, key, e) in erased {
            let e = e.and_then(|e| {
                if e.is_empty() {
                    Ok(())
                } else {
                    Err(erased_error(&e))
                }
            });
            if let Err(e) = e {
                let e = Err(e);
                allow_retry(&s, &key, &e);
                answers[i] = e;
            }
        }
    }
    let results: Vec<BatchResult> = answers
        .into_iter()
        .map(|r| match r {
            Ok(served) => BatchResult::Served(Served {
                status: Some(200),
                ..served
            }),
            Err(e) => {
                let status = e.status.as_u16();
                let mut v = e.body();
                if let Value::Object(m) = &mut v {
                    m.insert("status".into(), json!(status));
                }
                BatchResult::Failed(v)
            }
        })
        .collect();
    Ok(Json(BatchAnswer { results }).into_response())
}

/// The checks that need no blocking work, in the order `POST /v1/queries` has always made them:
/// the bank's rate, the categories, the request time against the node clock, the bank's
/// registration. Returns the bank's record.
fn admit(s: &AppState, sq: &SignedQueryRequest, now: u64) -> ApiResult<OrgRecord> {
    let req = &sq.request;
    s.rate_check(&format!("org:{}", req.bank))?;
    check_categories(&req.categories)
        .map_err(|e| ApiError::bad_request("entry.field", e.to_string()))?;
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
    Ok(bank)
}

/// What a blocking thread needs to check requests: the engine, the chain id, the replay cache
/// and the agency data.
struct Checks {
    engine: crate::engine::Engine,
    chain_id: Digest,
    replay: std::sync::Arc<ReplayCache>,
    data: AgencyData,
}

/// A request that passed the blocking checks: the rule's verdict at the node clock (`None`
/// when the state was busy building a block) and, unless it was refused, the released data.
struct Checked {
    verdict: Option<Result<(), DenialReason>>,
    released: Option<ApiResult<(Value, Vec<Digest>)>>,
}

impl Checks {
    fn of(s: &AppState) -> Checks {
        Checks {
            engine: s.engine.clone(),
            chain_id: *s.engine.chain_id(),
            replay: s.query_replay.clone(),
            data: s.data.clone(),
        }
    }

    /// Blocking: the signature first (401, nothing written), then the replay cache, then the
    /// consent rule at the node clock and, if it passes, the data (released to the bank only
    /// after the QueryServed record commits). The pre-check is skipped while a block is being
    /// built rather than waiting for it: the ledger applies the same rule when the QueryServed
    /// is committed, and a refusal there is recorded as a denial just the same (see `serve`).
    ///
    /// `verify_with`: the bank whose key the signature is checked against, strictly; `None`
    /// when [`Checks::verify_all`] has verified it already.
    fn check(
        &self,
        sq: &SignedQueryRequest,
        verify_with: Option<&OrgRecord>,
        now: u64,
    ) -> ApiResult<Checked> {
        if let Some(bank) = verify_with {
            let payload = query_signing_payload(&self.chain_id, &sq.request)
                .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
            bank.key
                .verify(SigDomain::QueryRequest, &payload, &sq.signature)
                .map_err(|_| {
                    ApiError::unauthorized(
                        "api.bad_signature",
                        "the query request's signature does not verify under the bank's key",
                    )
                })?;
        }
        if !self.replay.check_and_insert(replay_key(sq), now) {
            return Err(ApiError::unauthorized(
                "api.replay",
                "this signed query request was already submitted",
            ));
        }
        let verdict = self
            .engine
            .try_lock()
            .map(|core| core.chain.state().check_query(&sq.request, now));
        let released = match verdict {
            Some(Err(_)) => None,
            Some(Ok(())) | None => Some(release(&self.data, &sq.request)),
        };
        Ok(Checked { verdict, released })
    }
}

impl Checks {
    /// Whether every admitted request's signature verifies under its bank's key, in one batch
    /// verification (`keys::verify_many`; each bank key decompressed once). `false` if any
    /// does not, or cannot be checked: the caller then verifies each one strictly.
    fn verify_all(&self, admitted: &[(SignedQueryRequest, ApiResult<OrgRecord>)]) -> bool {
        let mut keys = std::collections::BTreeMap::new();
        let mut messages = Vec::with_capacity(admitted.len());
        for (sq, bank) in admitted {
            let Ok(bank) = bank else { continue };
            let Ok(payload) = query_signing_payload(&self.chain_id, &sq.request) else {
                return false;
            };
            if !keys.contains_key(&sq.request.bank) {
                let Ok(vk) = bank.key.verifying_key() else {
                    return false;
                };
                keys.insert(sq.request.bank.clone(), vk);
            }
            messages.push((
                signing_message(SigDomain::QueryRequest, &payload),
                &sq.request.bank,
                &sq.signature,
            ));
        }
        let checks: Vec<SigCheck<'_>> = messages
            .iter()
            .filter_map(|(m, bank, sig)| {
                Some(SigCheck {
                    message: m,
                    key: keys.get(*bank)?,
                    signature: sig,
                })
            })
            .collect();
        checks.len() == messages.len() && verify_many(&checks).is_ok()
    }
}

/// The replay cache's key of a signed request.
fn replay_key(sq: &SignedQueryRequest) -> String {
    hex::encode(sq.signature.0)
}

/// Where a served answer's erasure check is made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ErasureCheck {
    /// In [`serve`], before it answers.
    Here,
    /// By the caller, before it releases the answer (a batch checks all its answers at once).
    Caller,
}

/// Records the denial or the served query of a checked request and gives the answer body.
async fn answer(
    s: &AppState,
    sq: SignedQueryRequest,
    c: Checked,
    erasure: ErasureCheck,
) -> ApiResult<Served> {
    let key = replay_key(&sq);
    let result = match (c.verdict, c.released) {
        (Some(Err(reason)), _) => Err(deny(s, sq, reason).await),
        (_, Some(released)) => match released {
            Ok(released) => serve(s, sq, released, erasure).await,
            Err(e) => Err(e),
        },
        (_, None) => Err(ApiError::internal(
            "no data was released for a served query",
        )),
    };
    allow_retry(s, &key, &result);
    result
}

/// Nothing was recorded for this request (full mempool, node failure): lets the bank retry the
/// same signed request (replay key `key`).
fn allow_retry<T>(s: &AppState, key: &str, result: &ApiResult<T>) {
    if let Err(e) = result {
        if e.status == StatusCode::TOO_MANY_REQUESTS || e.status.is_server_error() {
            s.query_replay.remove(key);
        }
    }
}

/// Cross-node query path: this node does not hold the agency data, so the signed request goes
/// to the node that does, which records the query on the ledger and releases the data only
/// once that record is final. Its answer (data, proof, checkpoint, or the error) is passed back
/// unchanged; the client verifies it.
async fn forward_query(
    s: &AppState,
    url: String,
    path: &str,
    body: Bytes,
    timeout: Duration,
) -> ApiResult<Response> {
    let target = format!("{}{path}", url.trim_end_matches('/'));
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
    // (A batch answer: the last position any of its results names.)
    let position = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        let of = |v: &Value| {
            v.get("record")
                .or_else(|| v.get("denial"))
                .and_then(|r| r.get("position"))
                .and_then(Value::as_u64)
        };
        match v.get("results").and_then(Value::as_array) {
            Some(items) => items.iter().filter_map(of).max(),
            None => of(&v),
        }
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

/// The categories of `req` whose data was erased (with the erasure entry), checked after its
/// record committed: an erasure that committed while the record waited wins.
fn erased_of(data: &AgencyData, req: &QueryRequest) -> ApiResult<Vec<(Category, Digest)>> {
    let Some(firm) = data.firm_by_tag(&req.firm) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for &c in &req.categories {
        if let Some(id) = data.erased(&firm, c)? {
            out.push((c, id));
        }
    }
    Ok(out)
}

/// 410 `data.erased`: the agency erased some requested categories (nothing is released and
/// nothing more is logged; the bank may ask again without them).
fn erased_error(erased: &[(Category, Digest)]) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "data.erased",
        format!(
            "the agency erased this firm's {} data (data_erased entry {}); ask again without {}",
            erased
                .iter()
                .map(|(c, _)| c.name())
                .collect::<Vec<_>>()
                .join(", "),
            erased
                .first()
                .map(|(_, id)| id.to_hex())
                .unwrap_or_default(),
            if erased.len() == 1 { "it" } else { "them" }
        ),
    )
    .with(
        "erased",
        json!(erased
            .iter()
            .map(|(c, id)| json!({"category": c.name(), "erasure": id.to_hex()}))
            .collect::<Vec<_>>()),
    )
}

/// What the agency holds on the request's firm in the requested categories, and the ids of the
/// records it drew on (blocking: reads the agency's data store); 410 `data.erased` if some were
/// erased.
fn release(data: &AgencyData, req: &QueryRequest) -> ApiResult<(Value, Vec<Digest>)> {
    match data.firm_by_tag(&req.firm) {
        Some(firm) => match data.release(&firm, &req.categories, MAX_RECORD_IDS)? {
            Release::Data(v, ids) => Ok((v, ids)),
            Release::Erased(erased) => Err(erased_error(&erased)),
        },
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
    erasure: ErasureCheck,
) -> ApiResult<Served> {
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
            // An erasure that committed while this record was waiting wins: the data read
            // before it is not released (the record stays on the ledger, its digest unreleased).
            if erasure == ErasureCheck::Here {
                let (data, req) = (s.data.clone(), sq.request.clone());
                let erased = blocking(move || erased_of(&data, &req)).await?;
                if !erased.is_empty() {
                    return Err(erased_error(&erased));
                }
            }
            Ok(Served {
                data: released,
                record: c,
                response_digest: digest.to_hex(),
                salt: hex::encode(salt),
                status: None,
            })
        }
        Err(SubmitError::Dropped(StateError::QueryNotAuthorized(reason))) => {
            Err(deny(s, sq, reason).await)
        }
        Err(e) => Err(e.into()),
    }
}
