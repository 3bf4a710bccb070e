//! The HTTP side of the client: a small blocking wrapper over the node's v1 JSON API
//! (`specs/api.md`), with its one error shape turned into [`ApiError`]. `https://` node URLs
//! work (rustls; `--ca` adds a trusted root); a certificate the client does not trust fails
//! with `tls.untrusted`.
//!
//! It knows URLs, headers and JSON shapes only. It does not sign, verify or decide anything:
//! entries are built and signed in [`crate::signer`], and every proof a node returns is checked
//! in [`crate::proof`] before the CLI believes it.

use anyhow::{anyhow, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::time::Duration;
use xinyi_ledger::hash::Digest;

/// An error answer of the node: HTTP status and the API's `{code, message}` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code (`consent.exhausted`, `api.bad_request`, ...).
    pub code: String,
    /// One readable line.
    pub message: String,
    /// The whole JSON body (a refused query carries its `denial` record here).
    pub body: Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (HTTP {})", self.code, self.message, self.status)?;
        if self.code == "api.missing_auth" {
            // The node speaks of headers; the client's user needs the option.
            write!(
                f,
                "; sign the request with --key (a party's, an auditor's or a validator's key)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// `GET /health`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Chain id (hex).
    pub chain_id: Digest,
    /// Head height.
    pub height: u64,
    /// Global log size.
    pub log_size: u64,
    /// The node's clock.
    pub time_ms: u64,
    /// Dev mode.
    #[serde(default)]
    pub dev: bool,
    /// The firm-key epochs the node holds (`specs/privacy.md` §8); absent on a node without
    /// the firm key.
    #[serde(default)]
    pub firm_keys: Option<FirmKeysHealth>,
}

/// `/health` → `firm_keys`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FirmKeysHealth {
    /// How many epochs (0, 1, ...) the node holds keys of.
    pub epochs: u32,
}

/// The answer to a successful write (`POST` of an entry).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WriteAnswer {
    /// Entry id (also the consent / repair / commitment id it creates).
    pub id: Digest,
    /// Entry kind name.
    pub kind: String,
    /// Position in the global log.
    pub position: u64,
    /// Height of the block holding it.
    pub height: u64,
    /// Header hash of that block.
    pub block_hash: Digest,
    /// RFC 9162 inclusion proof (hex hashes) for `position` in the checkpoint's tree.
    pub inclusion_proof: Vec<String>,
    /// Signed checkpoint note text.
    pub checkpoint: String,
}

/// `GET /v1/entries/{position}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EntryAnswer {
    /// Position in the global log.
    pub position: u64,
    /// Height of the block holding it.
    #[serde(default)]
    pub height: u64,
    /// Stored entry bytes, base64 (empty when the node redacts the entry for this reader).
    #[serde(default)]
    pub entry: String,
    /// The node withheld the entry (the reader is not a party to it, nor an auditor).
    #[serde(default)]
    pub redacted: bool,
    /// Entry id.
    #[serde(default)]
    pub id: Option<Digest>,
    /// Kind name.
    #[serde(default)]
    pub kind: Option<String>,
    /// Decoded body (informative; the client decodes `entry` itself).
    #[serde(default)]
    pub body: Value,
    /// Inclusion proof (hex).
    pub inclusion_proof: Vec<String>,
    /// Signed checkpoint.
    pub checkpoint: String,
}

/// A node's API at one base URL.
#[derive(Clone)]
pub struct Api {
    base: String,
    agent: ureq::Agent,
    /// Built with an extra trusted CA (`--ca`).
    ca: bool,
}

impl Api {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:7878`, or `https://…` for a node
    /// whose certificate chains to a public root).
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            agent: agent_builder().build(),
            ca: false,
        }
    }

    /// [`Api::new`], also trusting the CA certificates of the PEM file `ca` for `https://`
    /// (self-signed or private-CA deployments; `--ca`).
    pub fn with_ca(base: &str, ca: Option<&Path>) -> Result<Api> {
        let Some(ca) = ca else {
            return Ok(Api::new(base));
        };
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            agent: agent_builder().tls_config(tls_config(ca)?).build(),
            ca: true,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn check(&self, r: std::result::Result<ureq::Response, ureq::Error>) -> Result<ureq::Response> {
        match r {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let code = body
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("api.http")
                    .to_string();
                let message = body
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        let t = text.trim();
                        if t.is_empty() {
                            format!("HTTP status {status}")
                        } else {
                            t.chars().take(200).collect()
                        }
                    });
                Err(anyhow!(ApiError {
                    status,
                    code,
                    message: one_line(&message),
                    body,
                }))
            }
            Err(ureq::Error::Transport(t)) => match tls_failure(&t) {
                Some(TlsFailure::Certificate(e)) => {
                    use rustls::CertificateError as C;
                    let hint = match &e {
                        // A wrong --ca with the issuer's name gives BadSignature.
                        #[allow(deprecated)]
                        C::UnknownIssuer | C::BadSignature if self.ca => {
                            "; it does not chain to the --ca certificate(s) or a public root"
                        }
                        C::UnknownIssuer => {
                            "; pass the CA certificate that signed it with --ca FILE (or XINYI_CA)"
                        }
                        C::NotValidForName | C::NotValidForNameContext { .. } => {
                            "; it does not name the host of --node"
                        }
                        C::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => {
                            "; it is a CA certificate (basicConstraints CA:TRUE) used as the \
                             node's own, which TLS clients refuse: give the node a certificate \
                             with CA:FALSE"
                        }
                        _ => "",
                    };
                    Err(anyhow!(
                        "tls.untrusted: the certificate of {} is not trusted ({}){hint}",
                        self.base,
                        one_line(&e.to_string())
                    ))
                }
                Some(TlsFailure::Handshake(e)) => Err(anyhow!(
                    "tls.handshake: TLS with {} failed: {}",
                    self.base,
                    one_line(&e)
                )),
                None => {
                    let msg = one_line(&t.to_string());
                    // A TLS alert record (0x15 0x03 ..) where an HTTP status line was expected.
                    let hint = if self.base.starts_with("http://") && msg.contains("[21, 3, ") {
                        " (the node answers with TLS: use an https:// URL)"
                    } else {
                        ""
                    };
                    Err(anyhow!(
                        "cannot reach the node at {}: {msg}{hint}",
                        self.base
                    ))
                }
            },
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, resp: ureq::Response, what: &str) -> Result<T> {
        let text = resp
            .into_string()
            .with_context(|| format!("reading the {what} answer"))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("the node's {what} answer is not as specified: {e}"))
    }

    /// GET returning JSON.
    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let r = self.check(self.agent.get(&self.url(path)).call())?;
        self.json(r, path)
    }

    /// `GET /v1/consistency?from=&to=`: the hex hashes of the RFC 9162 consistency proof between
    /// two tree sizes (empty when `from` is 0 or equals `to`, where no proof is needed).
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<String>> {
        if from == 0 || from == to {
            return Ok(vec![]);
        }
        let v: Value = self.get(&format!("/v1/consistency?from={from}&to={to}"))?;
        let proof = v
            .get("proof")
            .ok_or_else(|| anyhow!("the node's consistency answer has no proof"))?;
        Ok(crate::proof::hex_list(proof))
    }

    /// GET with an `X-Xinyi-Auth` header, returning JSON.
    pub fn get_auth<T: serde::de::DeserializeOwned>(&self, path: &str, auth: &str) -> Result<T> {
        let r = self.check(
            self.agent
                .get(&self.url(path))
                .set("X-Xinyi-Auth", auth)
                .call(),
        )?;
        self.json(r, path)
    }

    /// GET returning text.
    pub fn get_text(&self, path: &str) -> Result<String> {
        let r = self.check(self.agent.get(&self.url(path)).call())?;
        r.into_string()
            .with_context(|| format!("reading the {path} answer"))
    }

    /// GET returning a byte stream, with an `X-Xinyi-Auth` header if `auth` is given.
    pub fn get_stream(
        &self,
        path: &str,
        auth: Option<&str>,
    ) -> Result<Box<dyn Read + Send + Sync + 'static>> {
        let mut req = self.agent.get(&self.url(path));
        if let Some(a) = auth {
            req = req.set("X-Xinyi-Auth", a);
        }
        let r = self.check(req.call())?;
        Ok(r.into_reader())
    }

    /// POST a JSON body, returning the answer text (so callers can keep exact bytes).
    pub fn post_text(&self, path: &str, body: &Value) -> Result<String> {
        let r = self.check(
            self.agent
                .post(&self.url(path))
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
        )?;
        r.into_string()
            .with_context(|| format!("reading the {path} answer"))
    }

    /// POST a JSON body, returning JSON.
    pub fn post<T: serde::de::DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let text = self.post_text(path, body)?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("the node's {path} answer is not as specified: {e}"))
    }

    /// POST a signed entry (`{"entry": base64}`) and return the write answer.
    pub fn post_entry(&self, path: &str, entry_bytes: &[u8]) -> Result<WriteAnswer> {
        use base64::Engine as _;
        let body = serde_json::json!({
            "entry": base64::engine::general_purpose::STANDARD.encode(entry_bytes)
        });
        self.post(path, &body)
    }

    /// `GET /health`.
    pub fn health(&self) -> Result<Health> {
        self.get("/health")
    }
}

fn agent_builder() -> ureq::AgentBuilder {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(120))
        .timeout_write(Duration::from_secs(30))
}

/// rustls client settings trusting the Mozilla roots (ureq's default) and every certificate
/// of the PEM file `ca`.
fn tls_config(ca: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer};
    let pem = std::fs::read(ca).with_context(|| format!("--ca: cannot read {}", ca.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("--ca {}: not a PEM certificate file: {e}", ca.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "--ca {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            ca.display()
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in certs {
        roots
            .add(c)
            .map_err(|e| anyhow!("--ca {}: {e}", ca.display()))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

/// Why a TLS connection failed, when it did.
enum TlsFailure {
    /// The node's certificate was refused (unknown issuer, wrong name, expired, ...).
    Certificate(rustls::CertificateError),
    /// Any other TLS error.
    Handshake(String),
}

/// Finds a rustls error in the cause chain of a ureq transport error.
fn tls_failure(t: &ureq::Transport) -> Option<TlsFailure> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(c) = cause {
        let found = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(e) = found {
            return Some(match e {
                rustls::Error::InvalidCertificate(c) => TlsFailure::Certificate(c.clone()),
                _ => TlsFailure::Handshake(e.to_string()),
            });
        }
        cause = c.source();
    }
    None
}

/// Collapses any line breaks so an error stays on one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
