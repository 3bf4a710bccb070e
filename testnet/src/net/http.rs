//! The few HTTP calls the testnet makes itself (health, writes); everything a user would do goes
//! through the `xinyi` client instead (see `scenario`).

use anyhow::{anyhow, Result};
use base64::Engine as _;
use serde_json::Value;
use std::time::Duration;

/// An agent with short timeouts (the node answers a write after its block commits; 10 s is the
/// node's own request timeout).
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .build()
}

/// An agent for status reads (a frozen node must not stall `status`).
pub fn agent_short() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .build()
}

/// What `/health` says, fields missing in older nodes left empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HealthInfo {
    /// `status`.
    pub status: String,
    /// `chain_id`.
    pub chain_id: String,
    /// `height`.
    pub height: u64,
    /// `log_size`.
    pub log_size: u64,
    /// `time_ms`.
    pub time_ms: u64,
    /// `head`: header hash of the last block.
    pub head: Option<String>,
    /// `role`: validator | follower | solo.
    pub role: Option<String>,
    /// `peers`: (org, connected).
    pub peers: Option<Vec<(String, bool)>>,
}

impl HealthInfo {
    /// Parses a `/health` body.
    pub fn from_json(v: &Value) -> HealthInfo {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        HealthInfo {
            status: s("status").unwrap_or_default(),
            chain_id: s("chain_id").unwrap_or_default(),
            height: n("height"),
            log_size: n("log_size"),
            time_ms: n("time_ms"),
            head: s("head"),
            role: s("role"),
            peers: v.get("peers").and_then(Value::as_array).map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p.get("org")
                                .and_then(Value::as_str)
                                .unwrap_or("?")
                                .to_string(),
                            p.get("connected").and_then(Value::as_bool).unwrap_or(false),
                        )
                    })
                    .collect()
            }),
        }
    }

    /// (connected, total) peers, if the node reports them.
    pub fn peer_counts(&self) -> Option<(usize, usize)> {
        self.peers
            .as_ref()
            .map(|p| (p.iter().filter(|x| x.1).count(), p.len()))
    }
}

/// `GET URL/health` (any HTTP status with a JSON body counts as an answer).
pub fn health(agent: &ureq::Agent, url: &str) -> Result<HealthInfo> {
    let v: Value = match agent.get(&format!("{url}/health")).call() {
        Ok(r) => r.into_json()?,
        Err(ureq::Error::Status(code, r)) => {
            let v: Value = r
                .into_json()
                .map_err(|_| anyhow!("{url}/health: HTTP {code}"))?;
            v
        }
        Err(e) => return Err(anyhow!("{url}/health: {e}")),
    };
    Ok(HealthInfo::from_json(&v))
}

/// The head hash: `/health`'s `head`, else the header hash of block `height`.
pub fn head(agent: &ureq::Agent, url: &str, h: &HealthInfo) -> Option<String> {
    if h.head.is_some() {
        return h.head.clone();
    }
    if h.height == 0 {
        return None;
    }
    block_hash(agent, url, h.height)
}

/// Header hash of block `height` (`GET /v1/blocks/{height}`).
pub fn block_hash(agent: &ureq::Agent, url: &str, height: u64) -> Option<String> {
    let v: Value = agent
        .get(&format!("{url}/v1/blocks/{height}"))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    v.get("header_hash")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An HTTP failure of a write.
#[derive(Debug)]
pub enum WriteError {
    /// The node answered with an error status.
    Status {
        /// HTTP status.
        status: u16,
        /// `code` of the error body.
        code: String,
        /// The body.
        body: String,
    },
    /// No answer (connection refused, timeout, ...).
    Transport(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Status { status, body, .. } => write!(f, "HTTP {status}: {body}"),
            WriteError::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl WriteError {
    /// Worth retrying: no answer, 429 or 5xx.
    pub fn retryable(&self) -> bool {
        match self {
            WriteError::Transport(_) => true,
            WriteError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// `POST URL/v1/entries {"entry": base64}` → the write answer.
pub fn post_entry(
    agent: &ureq::Agent,
    url: &str,
    entry: &[u8],
) -> std::result::Result<Value, WriteError> {
    let body = serde_json::json!({
        "entry": base64::engine::general_purpose::STANDARD.encode(entry)
    });
    match agent.post(&format!("{url}/v1/entries")).send_json(body) {
        Ok(r) => r
            .into_json()
            .map_err(|e| WriteError::Transport(format!("bad answer: {e}"))),
        Err(ureq::Error::Status(status, r)) => {
            let body = r.into_string().unwrap_or_default();
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            Err(WriteError::Status { status, code, body })
        }
        Err(e) => Err(WriteError::Transport(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_fields_are_optional() {
        let h = HealthInfo::from_json(&serde_json::json!({
            "status": "ok", "chain_id": "ab", "height": 3, "log_size": 9, "time_ms": 5
        }));
        assert_eq!(h.height, 3);
        assert_eq!(h.head, None);
        assert_eq!(h.peer_counts(), None);
        let h = HealthInfo::from_json(&serde_json::json!({
            "status": "ok", "height": 3, "head": "ff", "role": "validator",
            "peers": [{"org": "gsxt", "connected": true}, {"org": "bank-a", "connected": false}]
        }));
        assert_eq!(h.head.as_deref(), Some("ff"));
        assert_eq!(h.peer_counts(), Some((1, 2)));
    }
}
