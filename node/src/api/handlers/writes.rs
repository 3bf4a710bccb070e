//! Writes: a signed entry in, the committed entry's position, proof and checkpoint out, answered
//! only after its block is durable. `POST /v1/entries` takes any kind; each typed route takes
//! one kind and, under `/{id}`, an entry about that id. The typed routes are one handler driven
//! by [`TYPED_WRITES`]; the rules of the entries themselves are the ledger's.

use super::{parse_id, ApiResult};
use crate::api::error::ApiError;
use crate::api::{parse_json, AppState};
use crate::engine::Committed;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{post, MethodRouter};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use xinyi_ledger::entry::{Author, EntryKind};
use xinyi_ledger::hash::Digest;
use xinyi_ledger::Entry;

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
    let erasure = matches!(e.body.kind, EntryKind::DataErased(_));
    let committed = s.engine.submit(e).await?;
    if erasure && s.cfg.data_node.is_none() {
        // On the node holding the data: answer once the keys are destroyed here.
        let (engine, data) = (s.engine.clone(), s.data.clone());
        super::blocking(move || Ok(crate::erasure::catch_up(&engine, &data)?)).await?;
    }
    Ok(Json(committed))
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

/// `POST /v1/entries`
pub async fn post_entry(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Committed>> {
    write(&s, &body, |_| Ok(())).await
}

/// The `{id}` of a typed write route: what it names (for the 400 on a bad id) and where the
/// entry carries it.
pub struct PathId {
    /// `consent`, `repair`, `commitment`: the `api.bad_id` message names it.
    pub what: &'static str,
    /// The id the entry refers to (`None` if the entry is of another kind).
    pub of: fn(&EntryKind) -> Option<&Digest>,
}

/// One typed write route of `specs/api.md`.
pub struct TypedWrite {
    /// Route path (as in `openapi::ROUTES`).
    pub path: &'static str,
    /// The only entry kind it accepts (`EntryKind::name`).
    pub kind: &'static str,
    /// For `/{id}` routes: the id the entry must refer to.
    pub id: Option<PathId>,
}

/// Every typed write route. `POST /v1/entries` (any kind) is [`post_entry`].
pub const TYPED_WRITES: &[TypedWrite] = &[
    TypedWrite {
        path: "/v1/consents",
        kind: "consent_granted",
        id: None,
    },
    TypedWrite {
        path: "/v1/consents/{id}/revoke",
        kind: "consent_revoked",
        id: Some(PathId {
            what: "consent",
            of: |k| match k {
                EntryKind::ConsentRevoked { consent } => Some(consent),
                _ => None,
            },
        }),
    },
    TypedWrite {
        path: "/v1/repairs",
        kind: "repair_requested",
        id: None,
    },
    TypedWrite {
        path: "/v1/repairs/{id}/decision",
        kind: "repair_decided",
        id: Some(PathId {
            what: "repair",
            of: |k| match k {
                EntryKind::RepairDecided { repair, .. } => Some(repair),
                _ => None,
            },
        }),
    },
    TypedWrite {
        path: "/v1/repairs/{id}/applications",
        kind: "repair_applied",
        id: Some(PathId {
            what: "repair",
            of: |k| match k {
                EntryKind::RepairApplied { repair } => Some(repair),
                _ => None,
            },
        }),
    },
    TypedWrite {
        path: "/v1/commitments",
        kind: "commitment_made",
        id: None,
    },
    TypedWrite {
        path: "/v1/commitments/{id}/broken",
        kind: "commitment_broken",
        id: Some(PathId {
            what: "commitment",
            of: |k| match k {
                EntryKind::CommitmentBroken { commitment, .. } => Some(commitment),
                _ => None,
            },
        }),
    },
    TypedWrite {
        path: "/v1/grades",
        kind: "grade_assigned",
        id: None,
    },
    TypedWrite {
        path: "/v1/erasures",
        kind: "data_erased",
        id: None,
    },
];

/// The typed write handler: the path id (400 `api.bad_id`) before the body, then the entry's
/// kind (400 `api.wrong_kind`) and the id it refers to (400 `api.id_mismatch`).
async fn typed_write(
    s: AppState,
    route: &'static TypedWrite,
    path_id: Option<String>,
    body: Bytes,
) -> ApiResult<Json<Committed>> {
    let want = match (&route.id, path_id) {
        (Some(pid), Some(raw)) => Some((pid, parse_id(pid.what, &raw)?)),
        _ => None,
    };
    write(&s, &body, |k| {
        if k.name() != route.kind {
            return Err(wrong_kind(route.kind, k));
        }
        match want {
            Some((pid, id)) => match (pid.of)(k) {
                Some(got) if *got == id => Ok(()),
                Some(got) => Err(id_mismatch(&id, got)),
                None => Err(wrong_kind(route.kind, k)),
            },
            None => Ok(()),
        }
    })
    .await
}

/// The handler of a typed write route (`None` if `path` is not one).
pub fn typed_route(path: &str) -> Option<MethodRouter<AppState>> {
    let route = TYPED_WRITES.iter().find(|w| w.path == path)?;
    Some(if route.id.is_some() {
        post(
            move |State(s): State<AppState>, Path(id): Path<String>, body: Bytes| {
                typed_write(s, route, Some(id), body)
            },
        )
    } else {
        post(move |State(s): State<AppState>, body: Bytes| typed_write(s, route, None, body))
    })
}
