//! The OpenAPI 3 document, produced from a hand-maintained route table.
//!
//! [`ROUTES`] is the single list of routes: the router is built from it (`api::router`), so the
//! document lists exactly the routes served, each with its parameters, body and the shared
//! error schema. It is a map of the API for tools, not a second contract: `specs/api.md`
//! remains the contract.

use serde_json::{json, Map, Value};

/// One route: method, path, who may call it, summary.
pub struct Route {
    /// HTTP method (lower case).
    pub method: &'static str,
    /// Path with `{param}` segments.
    pub path: &'static str,
    /// Tag.
    pub tag: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Request body description (None = no body).
    pub body: Option<&'static str>,
}

const WRITE: Option<&str> = Some("{\"entry\": \"<base64 of the signed EntryWire>\"}");

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    Route { method: "get", path: "/health", tag: "service", summary: "Liveness, chain id, height, log size, node time", body: None },
    Route { method: "get", path: "/metrics", tag: "service", summary: "Prometheus text metrics", body: None },
    Route { method: "get", path: "/openapi.json", tag: "service", summary: "This document", body: None },
    Route { method: "get", path: "/v1/genesis", tag: "chain", summary: "The genesis document", body: None },
    Route { method: "post", path: "/v1/entries", tag: "writes", summary: "Write any signed entry; answers after commit", body: WRITE },
    Route { method: "get", path: "/v1/entries/{position}", tag: "chain", summary: "Entry at a log position with inclusion proof and checkpoint (X-Xinyi-Auth: its parties, auditors and validators; others get only id, leaf hash and proof)", body: None },
    Route { method: "post", path: "/v1/consents", tag: "consents", summary: "Grant a consent (firm-signed ConsentGranted)", body: WRITE },
    Route { method: "get", path: "/v1/consents/{id}", tag: "consents", summary: "A consent and its use (X-Xinyi-Auth: the firm, the bank, auditors and validators)", body: None },
    Route { method: "post", path: "/v1/consents/{id}/revoke", tag: "consents", summary: "Revoke a consent (firm-signed ConsentRevoked)", body: WRITE },
    Route { method: "post", path: "/v1/queries", tag: "queries", summary: "Authorized query: data released only after its QueryServed record is committed; refusals are recorded as QueryDenied (403)", body: Some("{\"request\": SignedQueryRequest}") },
    Route { method: "post", path: "/v1/queries/batch", tag: "queries", summary: "Up to 256 authorized queries in one body, each answered (and logged before release) as POST /v1/queries would, in order, with its own status", body: Some("{\"requests\": [SignedQueryRequest]}") },
    Route { method: "get", path: "/v1/firms/{uscc}/tag", tag: "queries", summary: "The firm's ledger tag and the position of its registration (X-Xinyi-Auth: the firm, an auditor or an agency)", body: None },
    Route { method: "get", path: "/v1/banks/{org}/queries", tag: "queries", summary: "Every served and denied query of a bank (X-Xinyi-Auth: the bank, an auditor or a validator)", body: None },
    Route { method: "get", path: "/v1/banks/{org}/alerts", tag: "monitoring", summary: "A bank's monitoring alerts after ?after=SEQ, long poll up to ?wait_ms=MS; each with its logged alerts_delivered entry, inclusion proof and checkpoint (X-Xinyi-Auth: the bank)", body: None },
    Route { method: "get", path: "/v1/firms/{uscc}/access-log", tag: "queries", summary: "Every served and denied query on a firm (X-Xinyi-Auth: the firm or an auditor)", body: None },
    Route { method: "get", path: "/v1/firms/{uscc}/access-proof", tag: "queries", summary: "The firm's access head with its proof against the head block's certified state root (X-Xinyi-Auth: the firm or an auditor)", body: None },
    Route { method: "get", path: "/v1/firms/{uscc}/records", tag: "records", summary: "Published credit records of a firm", body: None },
    Route { method: "get", path: "/v1/firms/{uscc}/grades/{domain}", tag: "records", summary: "A firm's latest grade in a supervision domain", body: None },
    Route { method: "post", path: "/v1/repairs", tag: "repairs", summary: "Request a credit repair (firm-signed RepairRequested)", body: WRITE },
    Route { method: "get", path: "/v1/repairs/{id}", tag: "repairs", summary: "Repair status, with overdue evaluated at the node clock", body: None },
    Route { method: "post", path: "/v1/repairs/{id}/decision", tag: "repairs", summary: "Approve or reject a repair (agency RepairDecided)", body: WRITE },
    Route { method: "post", path: "/v1/repairs/{id}/applications", tag: "repairs", summary: "Apply an approved repair (registry RepairApplied)", body: WRITE },
    Route { method: "post", path: "/v1/commitments", tag: "records", summary: "Make a credit commitment (firm-signed CommitmentMade)", body: WRITE },
    Route { method: "get", path: "/v1/commitments/{id}", tag: "records", summary: "A commitment", body: None },
    Route { method: "post", path: "/v1/commitments/{id}/broken", tag: "records", summary: "Record a broken commitment (agency CommitmentBroken)", body: WRITE },
    Route { method: "post", path: "/v1/grades", tag: "records", summary: "Assign a grade (agency GradeAssigned)", body: WRITE },
    Route { method: "post", path: "/v1/erasures", tag: "records", summary: "Erase a firm's off-ledger data (agency-signed DataErased); answers once the entry is committed and, on the node holding the data, its keys are destroyed", body: WRITE },
    Route { method: "get", path: "/v1/blocks/{height}", tag: "chain", summary: "Block header, hash, certificate and entries (entries only for auditors and validators by X-Xinyi-Auth; others get leaf hashes)", body: None },
    Route { method: "get", path: "/v1/checkpoint", tag: "chain", summary: "Latest signed checkpoint (C2SP note, text/plain)", body: None },
    Route { method: "get", path: "/v1/consistency", tag: "chain", summary: "RFC 9162 consistency proof between two log sizes (?from=N&to=M)", body: None },
    Route { method: "get", path: "/v1/export", tag: "chain", summary: "Audit bundle (genesis + blocks + certificates), streamed (X-Xinyi-Auth: auditors and validators)", body: None },
    Route { method: "get", path: "/v1/firms/{uscc}/entries", tag: "queries", summary: "Every entry concerning a firm, with its body (X-Xinyi-Auth: the firm or an auditor)", body: None },
    Route { method: "get", path: "/v1/checkpoints", tag: "chain", summary: "Checkpoint cosignatures recorded on the ledger, by size, and anchor receipts", body: None },
    Route { method: "get", path: "/v1/repairs", tag: "repairs", summary: "Every repair case with overdue and one-sided flags (X-Xinyi-Auth: auditors and validators)", body: None },
    Route { method: "post", path: "/v1/dev/clock", tag: "dev", summary: "Advance the node clock (dev mode only; 404 otherwise)", body: Some("{\"advance_ms\": N}") },
];

/// The OpenAPI 3.0 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .chain(if r.path == "/v1/consistency" {
                vec![
                    json!({"name": "from", "in": "query", "required": true, "schema": {"type": "integer"}}),
                    json!({"name": "to", "in": "query", "required": true, "schema": {"type": "integer"}}),
                ]
            } else {
                vec![]
            })
            .chain(if r.path.ends_with("access-log") || r.path.ends_with("access-proof") {
                vec![json!({"name": "X-Xinyi-Auth", "in": "header", "required": true, "schema": {"type": "string"}, "description": "<author>;<time_ms>;<nonce>;<signature hex>"})]
            } else {
                vec![]
            })
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "tags": [r.tag],
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.', '-'], "_")),
            "responses": {
                "200": {"description": "success"},
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if let Value::Object(m) = &mut op {
            if !params.is_empty() {
                m.insert("parameters".into(), Value::Array(params));
            }
            if let Some(b) = r.body {
                m.insert(
                    "requestBody".into(),
                    json!({"required": true, "description": b, "content": {"application/json": {"schema": {"type": "object"}}}}),
                );
            }
        }
        let entry = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(r.method.to_string(), op);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "xinyi node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Consents, authorized credit queries, access logs, credit repair and audit of the xinyi ledger. Contract: specs/api.md.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }}},
    })
}
