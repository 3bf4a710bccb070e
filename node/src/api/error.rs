//! The API's one error shape, `{"code","message"}`, and how ledger errors map to statuses.
//!
//! Codes are the ledger's stable codes (`state.*`, `entry.*`, `codec.*`, `consent.*`, `uscc.*`)
//! or `api.*` for the HTTP layer. Status mapping follows `specs/api.md`: 400 malformed, 401
//! signature/signer/time/replay, 403 not allowed, 404 unknown object, 409 ledger conflict, 413
//! too large, 429 rate limit or full mempool, 500/503 the node's own failures.

use crate::engine::SubmitError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use xinyi_ledger::chain::ChainErrorKind;
use xinyi_ledger::state::StateError;

/// An API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: String,
    /// One readable line.
    pub message: String,
    /// Extra top-level fields (e.g. `denial`).
    pub extra: Vec<(&'static str, Value)>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            extra: vec![],
        }
    }
    /// 400.
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 401.
    pub fn unauthorized(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
    /// 403.
    pub fn forbidden(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "api.not_found", message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api.internal", message)
    }
    /// Adds a top-level field.
    pub fn with(mut self, k: &'static str, v: Value) -> Self {
        self.extra.push((k, v));
        self
    }
}

impl ApiError {
    /// The JSON body: `{code, message}` and the extra fields.
    pub fn body(self) -> Value {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Value::Object(m) = &mut body {
            for (k, v) in self.extra {
                m.insert(k.to_string(), v);
            }
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, Json(self.body())).into_response()
    }
}

/// The status of a ledger rule refusal.
pub fn state_status(e: &StateError) -> StatusCode {
    match e {
        StateError::UnknownAuthor(_) | StateError::StaleOrFuture { .. } | StateError::Replay(_) => {
            StatusCode::UNAUTHORIZED
        }
        StateError::Forbidden { .. }
        | StateError::NotOwner(_)
        | StateError::QueryNotAuthorized(_) => StatusCode::FORBIDDEN,
        StateError::NotFound { .. } => StatusCode::NOT_FOUND,
        StateError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        ApiError::new(state_status(&e), e.code(), e.to_string())
    }
}

impl From<ChainErrorKind> for ApiError {
    fn from(e: ChainErrorKind) -> Self {
        match e {
            ChainErrorKind::State(s) => s.into(),
            ChainErrorKind::Signature => ApiError::unauthorized(
                "entry.bad_signature",
                "the entry's signature does not verify under the author's registered key",
            ),
            other => ApiError::bad_request(other.code(), other.to_string()),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(k) => k.into(),
            SubmitError::Dropped(s) => s.into(),
            SubmitError::MempoolFull => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "api.mempool_full",
                "the mempool is full; retry later",
            ),
            SubmitError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "api.unavailable", m)
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(format!("{e:#}"))
    }
}

/// The code used for an error status that reached the client without a JSON body.
pub fn code_for_status(s: StatusCode) -> &'static str {
    match s.as_u16() {
        400 => "api.bad_request",
        401 => "api.unauthorized",
        403 => "api.forbidden",
        404 => "api.not_found",
        405 => "api.method_not_allowed",
        408 | 503 | 504 => "api.timeout",
        413 => "api.body_too_large",
        415 => "api.unsupported_media_type",
        422 => "api.bad_request",
        429 => "api.rate_limited",
        _ => "api.internal",
    }
}
