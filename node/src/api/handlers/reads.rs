//! Reads of ledger state and per-firm / per-bank indexes: consents, repairs, commitments,
//! grades, records, a firm's tag, a bank's queries, a firm's access log and access proof.
//! Who may read what is decided in `access`; these handlers only fetch and shape.

use super::access::{firm_or_auditor, forbidden_read, Caller, ReadRequest};
use super::{blocking, firm_of, json_ok, parse_id, to_json, ApiResult, FirmTags};
use crate::api::error::ApiError;
use crate::api::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;
use xinyi_ledger::entry::{DenialReason, EntryKind, QueryRequest};
use xinyi_ledger::firmtag::FirmTag;
use xinyi_ledger::store::{Store, StoreError};
use xinyi_ledger::types::Role;
use xinyi_ledger::{Entry, OrgId};

/// `GET /v1/consents/{id}`
pub async fn get_consent(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: ReadRequest,
) -> ApiResult<Response> {
    let id = parse_id("consent", &id)?;
    let caller = req.caller(&s).await?;
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
    // The newest epoch's grade first: an agency grades a firm under the tag in force.
    let r = blocking(move || {
        let core = engine.lock();
        for t in firm.tags().rev() {
            if let Some(g) = core.chain.state().grade(&t, &d)? {
                return Ok(Some(g));
            }
        }
        Ok(None)
    })
    .await?;
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
        let mut found = Vec::new();
        for (pos, e) in firm_entries_all(&store, &firm)? {
            if let EntryKind::CreditRecordPublished(r) = &e.body.kind {
                found.push((pos, r.record));
            }
        }
        let core = engine.lock();
        let mut out = Vec::new();
        let mut hidden = 0u64;
        for (pos, id) in found {
            if let Some(r) = core.chain.state().record(&id)? {
                // Public display ends with a repair or the category's retention period
                // (`specs/state.md` §3 step 4); the firm still sees them in its entries.
                if !r.shown() {
                    hidden += 1;
                    continue;
                }
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
        Ok((out, hidden))
    })
    .await?;
    let (records, hidden) = records;
    Ok(json_ok(
        json!({"firm": uscc, "records": records, "no_longer_shown": hidden}),
    ))
}

/// `GET /v1/firms/{uscc}/tag` (the firm itself, an auditor or an agency, `X-Xinyi-Auth`): the
/// firm's ledger tag, and the log position of the latest `firm_registered` entry binding it to a
/// key (so the firm can check the binding against its own key). After a firm-key rotation
/// (`specs/privacy.md` §8) a firm has one tag per epoch: `tag` is the newest one it is
/// registered under (the one it signs new entries with; the epoch in force's when it is
/// registered under none), `tags` lists every epoch's with its registration, and
/// `epoch_in_force` / `tag_in_force` say under which tag an agency registers it now.
pub async fn firm_tag(
    State(s): State<AppState>,
    Path(uscc): Path<String>,
    req: ReadRequest,
) -> ApiResult<Response> {
    let (uscc, tags) = firm_of(&s, &uscc)?;
    req.require_signed()?;
    // Agencies hold the firm key themselves (they register firms and publish records).
    let allow = |caller: &Caller| {
        if tags.tags().any(|t| caller.is_firm(&t))
            || caller.auditor
            || caller.role == Some(Role::Agency)
        {
            Ok(())
        } else {
            Err(forbidden_read(caller, &format!("the ledger tag of {uscc}")))
        }
    };
    let engine = s.engine.clone();
    let t = tags.clone();
    let (registrations, in_force) = req
        .gated(&s, allow, move || {
            let store = engine.store().clone();
            let mut regs = Vec::new();
            for (epoch, tag) in &t.0 {
                let mut last = None;
                for (pos, e) in firm_entries(&store, tag)? {
                    if matches!(e.body.kind, EntryKind::FirmRegistered { .. }) {
                        last = Some(pos);
                    }
                }
                regs.push((*epoch, *tag, last));
            }
            let core = engine.lock();
            let st = core.chain.state();
            Ok((regs, st.firm_key_epoch_at(st.head().height + 1)?))
        })
        .await?;
    let tag_in_force = registrations
        .iter()
        .find(|(e, _, _)| *e == in_force)
        .map(|(_, t, _)| *t);
    let (tag, registration) = registrations
        .iter()
        .rev()
        .find(|(_, _, r)| r.is_some())
        .map(|(_, t, r)| (Some(*t), *r))
        .unwrap_or((tag_in_force, None));
    let Some(tag) = tag else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "api.no_firm_key",
            format!(
                "firm-key epoch {in_force} is in force but this node does not hold its key (firm.key.{in_force})"
            ),
        ));
    };
    let list: Vec<Value> = registrations
        .iter()
        .map(|(e, t, r)| json!({"epoch": e, "tag": t, "registration": r}))
        .collect();
    Ok(json_ok(json!({
        "firm": uscc,
        "tag": tag,
        "registration": registration,
        "tags": list,
        "epoch_in_force": in_force,
        "tag_in_force": tag_in_force,
    })))
}

/// `GET /v1/banks/{org}/queries` (the bank itself or an auditor/validator, `X-Xinyi-Auth`): every
/// `query_served` and `query_denied` naming that bank, in log order.
pub async fn bank_queries(
    State(s): State<AppState>,
    Path(org): Path<String>,
    req: ReadRequest,
) -> ApiResult<Response> {
    let bank =
        OrgId::new(&org).map_err(|e| ApiError::bad_request("api.bad_param", e.to_string()))?;
    let allow = |caller: &Caller| {
        if caller.is_org(&bank) || caller.privileged {
            Ok(())
        } else {
            Err(forbidden_read(caller, &format!("the queries of {bank}")))
        }
    };
    let engine = s.engine.clone();
    let b = bank.clone();
    let entries = req
        .gated(&s, allow, move || {
            let store = engine.store().clone();
            let ie = store_err;
            let positions = store
                .bank_query_positions(&b, None, usize::MAX)
                .map_err(ie)?;
            let mut out = Vec::new();
            for (pos, e) in entries_at(&store, positions)? {
                if let EntryKind::AlertsDelivered(a) = &e.body.kind {
                    if a.bank == b {
                        out.push(crate::api::alerts::log_item(&store, &e, a, pos)?);
                    }
                    continue;
                }
                let Some((req, reason)) = query_of(&e) else {
                    continue;
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

/// `GET /v1/firms/{uscc}/access-log` (firm itself or an auditor, `X-Xinyi-Auth`)
pub async fn access_log(
    State(s): State<AppState>,
    Path(uscc): Path<String>,
    req: ReadRequest,
) -> ApiResult<Response> {
    let (uscc, firm) = firm_of(&s, &uscc)?;
    req.require_signed()?;
    let engine = s.engine.clone();
    let entries = req
        .gated(&s, firm_or_auditor(&uscc), {
            let firm = firm.clone();
            move || {
                let store = engine.store().clone();
                let ie = store_err;
                let mut times: HashMap<u64, u64> = HashMap::new();
                let mut out = Vec::new();
                for (pos, e) in firm_entries_all(&store, &firm)? {
                    if let EntryKind::AlertsDelivered(a) = &e.body.kind {
                        out.push(crate::api::alerts::log_item(&store, &e, a, pos)?);
                        continue;
                    }
                    let Some((req, reason)) = query_of(&e) else {
                        continue;
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
                        "tag": req.firm,
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
            }
        })
        .await?;
    let tags: Vec<FirmTag> = firm.tags().collect();
    Ok(json_ok(
        json!({"firm": uscc, "tag": tags.last(), "tags": tags, "entries": entries}),
    ))
}

/// `GET /v1/firms/{uscc}/access-proof` (firm itself or an auditor, `X-Xinyi-Auth`): the firm's
/// access head and its sparse Merkle proof against the head block's state root, with that
/// block's header and commit certificate (`specs/api.md`, `specs/state.md` §access map).
pub async fn access_proof(
    State(s): State<AppState>,
    Path(uscc): Path<String>,
    req: ReadRequest,
) -> ApiResult<Response> {
    let (uscc, firm) = firm_of(&s, &uscc)?;
    req.require_signed()?;
    let engine = s.engine.clone();
    let v = req
        .gated(&s, firm_or_auditor(&uscc), move || {
            let unavailable = |m: &str| {
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "api.unavailable",
                    m.to_string(),
                )
            };
            let core = engine.lock();
            // One proof per tag, all against the same block (the lock is held throughout).
            let mut proofs = Vec::new();
            for (epoch, tag) in &firm.0 {
                let p = core.chain.state().access_proof(tag)?.ok_or_else(|| {
                    unavailable(
                        "no access proof before a block is committed since the node started",
                    )
                })?;
                proofs.push((*epoch, *tag, p));
            }
            let Some((_, newest, p)) = proofs.last().cloned() else {
                return Err(ApiError::internal("no firm key epoch held"));
            };
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
            let per_tag: Vec<Value> = proofs
                .iter()
                .map(|(epoch, tag, q)| {
                    let mut v = proof_json(q);
                    if let Value::Object(m) = &mut v {
                        m.insert("epoch".into(), json!(epoch));
                        m.insert("tag".into(), json!(tag));
                    }
                    v
                })
                .collect();
            let newest_proof = proof_json(&p);
            Ok(json!({
                "firm": uscc,
                "tag": newest,
                "height": p.height,
                "header": to_json(&header)?,
                "certificate": to_json(&cert)?,
                "prev_root": p.prev_root.to_hex(),
                "write_set_hash": p.write_set_hash.to_hex(),
                "access_root": p.access_root.to_hex(),
                "value": newest_proof["value"],
                "proof": newest_proof["proof"],
                "tags": per_tag,
            }))
        })
        .await?;
    Ok(json_ok(v))
}

/// The value and sparse Merkle proof of one access head, as JSON.
fn proof_json(p: &xinyi_ledger::state::AccessProof) -> Value {
    let terminal = match &p.proof.terminal {
        xinyi_ledger::smt::Terminal::Empty => json!({"empty": true}),
        xinyi_ledger::smt::Terminal::Leaf { key, value } => {
            json!({"key": hex::encode(key), "value": hex::encode(value)})
        }
    };
    json!({
        "value": p.value.map(|v| json!({"head": v.head.to_hex(), "count": v.count})),
        "proof": {
            "siblings": p.proof.siblings.iter().map(hex::encode).collect::<Vec<_>>(),
            "terminal": terminal,
        },
    })
}

/// Every entry naming any of a firm's tags (all firm-key epochs), in log order.
pub(crate) fn firm_entries_all(store: &Store, firm: &FirmTags) -> ApiResult<Vec<(u64, Entry)>> {
    let mut positions = Vec::new();
    for t in firm.tags() {
        positions.extend(
            store
                .firm_positions(&t, None, usize::MAX)
                .map_err(store_err)?,
        );
    }
    positions.sort_unstable();
    positions.dedup();
    entries_at(store, positions)
}

fn store_err(e: StoreError) -> ApiError {
    ApiError::internal(e.to_string())
}

/// Every entry that names the firm with ledger tag `firm` (the per-firm index), decoded, in log
/// order, with its log position. The firm reads above and the console's firm history start here.
pub(crate) fn firm_entries(store: &Store, firm: &FirmTag) -> ApiResult<Vec<(u64, Entry)>> {
    let positions = store
        .firm_positions(firm, None, usize::MAX)
        .map_err(store_err)?;
    entries_at(store, positions)
}

/// The entries stored at `positions`, decoded, in the same order (a position without an entry
/// is skipped). The per-firm and per-bank index reads above all start here.
fn entries_at(store: &Store, positions: Vec<u64>) -> ApiResult<Vec<(u64, Entry)>> {
    let mut out = Vec::with_capacity(positions.len());
    for pos in positions {
        let Some(bytes) = store.entry(pos).map_err(store_err)? else {
            continue;
        };
        let e = Entry::decode(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
        out.push((pos, e));
    }
    Ok(out)
}

/// The request of a `query_served` or `query_denied` entry, and the denial's reason.
fn query_of(e: &Entry) -> Option<(&QueryRequest, Option<DenialReason>)> {
    match &e.body.kind {
        EntryKind::QueryServed(q) => Some((&q.request.request, None)),
        EntryKind::QueryDenied { request, reason } => Some((&request.request, Some(*reason))),
        _ => None,
    }
}
