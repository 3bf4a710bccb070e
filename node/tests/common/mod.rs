//! Shared helpers for the node's in-process API tests: a dev node in a temp dir, signing with
//! the dev keys, and one-shot requests through the router.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use xinyi_ledger::entry::{
    query_signing_payload, Author, Consent, EntryBody, QueryRequest, SignedQueryRequest,
};
use xinyi_ledger::keys::SigDomain;
use xinyi_ledger::types::DAY_MS;
use xinyi_ledger::{Category, Entry, EntryKind, KeyPair, OrgId, Uscc};
use xinyi_node::api::ApiConfig;
use xinyi_node::dev::{read_key, DevSetup};
use xinyi_node::engine::EngineConfig;
use xinyi_node::node::Node;

pub struct T {
    pub dir: tempfile::TempDir,
    pub node: Node,
    pub setup: DevSetup,
    pub app: axum::Router,
}

pub fn start() -> T {
    start_with(ApiConfig::default())
}

pub fn start_with(cfg: ApiConfig) -> T {
    start_full(cfg, EngineConfig::default())
}

pub fn start_full(cfg: ApiConfig, engine: EngineConfig) -> T {
    let dir = tempfile::tempdir().unwrap();
    let (node, setup) = Node::open_dev(dir.path(), cfg, engine).unwrap();
    let app = node.router();
    T {
        dir,
        node,
        setup,
        app,
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl T {
    pub fn now(&self) -> u64 {
        self.node.state.engine.now()
    }
    pub fn chain(&self) -> xinyi_ledger::hash::Digest {
        *self.node.state.engine.chain_id()
    }
    pub fn org_key(&self, org: &str) -> KeyPair {
        read_key(&self.setup.paths.org_key(org)).unwrap()
    }
    pub fn firm(&self, i: usize) -> (Uscc, KeyPair) {
        self.setup.firms[i].clone()
    }
    /// The ledger tag of keyed firm `i`.
    pub fn tag(&self, i: usize) -> xinyi_ledger::FirmTag {
        self.setup.firm_key.tag(&self.firm(i).0)
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        let body = match body {
            Some(bytes) => {
                b = b.header("content-type", "application/json");
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let resp = self
            .app
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { status, body, text }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None, &[]).await
    }

    /// GET signed as the auditor (role-gated reads: entries, blocks, export, consents).
    pub async fn get_audited(&self, path: &str) -> Resp {
        let h = self.auth_header("org:auditor", &self.org_key("auditor"), "GET", path);
        self.req("GET", path, None, &[(h.0, h.1)]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.req("POST", path, Some(serde_json::to_vec(body).unwrap()), &[])
            .await
    }

    pub async fn log_size(&self) -> u64 {
        self.get("/health").await.body["log_size"].as_u64().unwrap()
    }

    pub fn sign(&self, author: Author, key: &KeyPair, kind: EntryKind) -> Entry {
        Entry::sign(
            &self.chain(),
            EntryBody {
                author,
                time: self.now(),
                nonce: rand::random(),
                kind,
            },
            key,
        )
        .unwrap()
    }

    pub fn org_entry(&self, org: &str, kind: EntryKind) -> Entry {
        self.sign(
            Author::Org(OrgId::new(org).unwrap()),
            &self.org_key(org),
            kind,
        )
    }

    pub fn firm_entry(&self, i: usize, kind: EntryKind) -> Entry {
        let (_, k) = self.firm(i);
        self.sign(Author::Firm(self.tag(i)), &k, kind)
    }

    pub fn consent_entry(&self, firm: usize, bank: &str, cats: &[Category], uses: u32) -> Entry {
        let now = self.now();
        self.firm_entry(
            firm,
            EntryKind::ConsentGranted(Consent {
                bank: OrgId::new(bank).unwrap(),
                purpose: Consent::purpose_digest(&[0x5a; 32], "loan application 2026-118"),
                categories: cats.to_vec(),
                not_before: now - 1000,
                not_after: now + 30 * DAY_MS,
                max_uses: uses,
                monitoring: None,
            }),
        )
    }

    pub fn query(&self, bank: &str, firm: usize, consent: &str, cats: &[Category]) -> Value {
        self.query_signed_by(bank, bank, firm, consent, cats)
    }

    pub fn query_signed_by(
        &self,
        signer: &str,
        bank: &str,
        firm: usize,
        consent: &str,
        cats: &[Category],
    ) -> Value {
        let req = QueryRequest {
            bank: OrgId::new(bank).unwrap(),
            firm: self.tag(firm),
            consent: xinyi_ledger::hash::Digest::from_hex(consent).unwrap(),
            categories: cats.to_vec(),
            nonce: rand::random(),
            time: self.now(),
        };
        let payload = query_signing_payload(&self.chain(), &req).unwrap();
        let sq = SignedQueryRequest {
            signature: self.org_key(signer).sign(SigDomain::QueryRequest, &payload),
            request: req,
        };
        json!({"request": sq})
    }

    pub fn auth_header(
        &self,
        author: &str,
        key: &KeyPair,
        method: &str,
        pq: &str,
    ) -> (&'static str, String) {
        let time = self.now();
        let nonce = format!("n{}", rand::random::<u64>());
        let payload =
            xinyi_node::api::auth::auth_payload(self.chain().as_bytes(), method, pq, time, &nonce);
        let sig = key.sign(SigDomain::ApiRequest, &payload);
        (
            "x-xinyi-auth",
            format!("{author};{time};{nonce};{}", hex::encode(sig.0)),
        )
    }
}

pub fn write_body(e: &Entry) -> Value {
    json!({"entry": base64::engine::general_purpose::STANDARD.encode(&e.bytes)})
}
