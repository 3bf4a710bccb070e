//! Who is reading: the `X-Xinyi-Auth` check ([`authenticate`], signature before permission),
//! the caller it yields ([`Caller`]), the one shape every gated read shares
//! ([`ReadRequest::gated`]: authenticate, check the caller's permission, read on a blocking
//! thread) and which entries a caller may see ([`may_read_entry`], `specs/privacy.md` §4).

use super::{blocking, ApiResult};
pub(crate) use crate::api::auth::Requester;
use crate::api::auth::{parse_auth, requester_key, verify_auth};
use crate::api::error::ApiError;
use crate::api::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use xinyi_ledger::entry::{Author, EntryKind};
use xinyi_ledger::types::Role;
use xinyi_ledger::{Entry, FirmTag, OrgId, Uscc};

/// Who made a read, after its `X-Xinyi-Auth` header was checked (signature, time, nonce).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The signer; `None` for an unsigned request.
    pub(crate) who: Option<Requester>,
    /// The signing firm's tags (one per firm-key epoch held).
    pub(crate) tags: Vec<FirmTag>,
    /// The signing organisation's role.
    pub(crate) role: Option<Role>,
    /// Role auditor.
    pub(crate) auditor: bool,
    /// An auditor, or a validator of the current set: reads every entry.
    pub(crate) privileged: bool,
}

impl Caller {
    pub(crate) fn is_firm(&self, tag: &FirmTag) -> bool {
        self.tags.contains(tag)
    }

    pub(crate) fn is_org(&self, org: &OrgId) -> bool {
        matches!(&self.who, Some(Requester::Org(o)) if o == org)
    }

    pub(crate) fn name(&self) -> String {
        self.who
            .as_ref()
            .map(Requester::key)
            .unwrap_or_else(|| "an unsigned request".into())
    }
}

pub(crate) fn forbidden_read(caller: &Caller, what: &str) -> ApiError {
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
            tags: Vec::new(),
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
    let firm_keys = s.cfg.firm_keys.clone();
    let method = method.clone();
    let privileged = blocking(move || {
        let (key, privileged) = {
            let core = engine.lock();
            let state = core.chain.state();
            let (key, role) = requester_key(state, &a.who, firm_keys.as_ref())?;
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
    let tags = match (&auth.who, &s.cfg.firm_keys) {
        (Requester::Firm(f), Some(k)) => k.tags(f).into_iter().map(|(_, t)| t).collect(),
        _ => Vec::new(),
    };
    Ok(Caller {
        who: Some(auth.who),
        tags,
        role,
        auditor,
        privileged: auditor || validator,
    })
}

/// The permission of a read of `firm`'s access data: the firm itself or an auditor.
pub(crate) fn firm_or_auditor(firm: &Uscc) -> impl FnOnce(&Caller) -> ApiResult<()> + '_ {
    move |caller| {
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
}

/// The parts of a read request its `X-Xinyi-Auth` signature covers (method, path and query)
/// and the headers carrying it; extracted by every gated read.
pub struct ReadRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for ReadRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ReadRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

impl ReadRequest {
    /// 401 `api.missing_auth` for an unsigned request (routes that are never public).
    pub(crate) fn require_signed(&self) -> ApiResult<()> {
        if self.headers.get("x-xinyi-auth").is_none() {
            return Err(ApiError::unauthorized(
                "api.missing_auth",
                "this endpoint needs an X-Xinyi-Auth header",
            ));
        }
        Ok(())
    }

    /// Who is asking ([`authenticate`]).
    pub(crate) async fn caller(&self, s: &AppState) -> ApiResult<Caller> {
        authenticate(s, &self.method, &self.uri, &self.headers).await
    }

    /// The shape of every read gated before it is made: authenticate, let `allow` decide from
    /// the caller (its error is the answer), then run `read` on a blocking thread.
    pub(crate) async fn gated<T: Send + 'static>(
        &self,
        s: &AppState,
        allow: impl FnOnce(&Caller) -> ApiResult<()>,
        read: impl FnOnce() -> ApiResult<T> + Send + 'static,
    ) -> ApiResult<T> {
        let caller = self.caller(s).await?;
        allow(&caller)?;
        blocking(read).await
    }
}

/// The organisations and firm an entry concerns: its author, the bank of a query or consent, the
/// agency of a commitment, and the firm it names (author or named firm).
pub(crate) fn entry_parties(e: &Entry) -> (Vec<OrgId>, Option<FirmTag>) {
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

pub(crate) fn may_read_entry(caller: &Caller, e: &Entry) -> bool {
    if caller.privileged {
        return true;
    }
    let (orgs, firm) = entry_parties(e);
    orgs.iter().any(|o| caller.is_org(o)) || firm.is_some_and(|f| caller.is_firm(&f))
}
