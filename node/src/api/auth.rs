//! Request authentication for reads, replay caches and per-signer rate limiting.
//!
//! Authenticated reads carry `X-Xinyi-Auth: <author>;<time_ms>;<nonce>;<signature hex>` with the
//! signature in domain `ApiRequest` over `chain id ‖ "<METHOD> <path-and-query>\n<time>\n<nonce>"`
//! (specs/api.md). Keys come from the ledger state (organisations and registered firms). Writes
//! need none of this: a write is a signed ledger entry. The rate limiter is a token bucket per
//! signer; it is a courtesy against floods, not a security boundary.

use super::error::ApiError;
use crate::firmkeys::FirmKeys;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;
use xinyi_ledger::keys::{SigDomain, Signature};
use xinyi_ledger::state::State;
use xinyi_ledger::types::Role;
use xinyi_ledger::{OrgId, PublicKey, TimeMs, Uscc};

/// Allowed distance between a read request's time and the node clock.
pub const AUTH_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Who signed a read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// An organisation.
    Org(OrgId),
    /// A firm.
    Firm(Uscc),
}

impl Requester {
    /// Rate-limit / replay key.
    pub fn key(&self) -> String {
        match self {
            Requester::Org(o) => format!("org:{o}"),
            Requester::Firm(f) => format!("firm:{f}"),
        }
    }
}

/// A parsed `X-Xinyi-Auth` header.
#[derive(Debug, Clone)]
pub struct AuthHeader {
    /// Author.
    pub who: Requester,
    /// Time in ms.
    pub time: TimeMs,
    /// Nonce text.
    pub nonce: String,
    /// Signature.
    pub signature: Signature,
}

/// Parses the header value.
pub fn parse_auth(v: &str) -> Result<AuthHeader, ApiError> {
    let bad = |m: &str| ApiError::unauthorized("api.bad_auth", format!("X-Xinyi-Auth: {m}"));
    let parts: Vec<&str> = v.trim().split(';').collect();
    let [author, time, nonce, sig] = parts.as_slice() else {
        return Err(bad("expected <author>;<time_ms>;<nonce>;<signature hex>"));
    };
    let who = if let Some(o) = author.strip_prefix("org:") {
        Requester::Org(OrgId::new(o).map_err(|e| bad(&e.to_string()))?)
    } else if let Some(f) = author.strip_prefix("firm:") {
        Requester::Firm(Uscc::parse(f).map_err(|e| bad(&e.to_string()))?)
    } else {
        return Err(bad("author must be org:<id> or firm:<USCC>"));
    };
    let time: TimeMs = time.parse().map_err(|_| bad("time is not an integer"))?;
    if nonce.is_empty() || nonce.len() > 64 {
        return Err(bad("nonce must be 1-64 characters"));
    }
    let sig = hex::decode(sig).map_err(|_| bad("signature is not hex"))?;
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| bad("signature must be 64 bytes"))?;
    Ok(AuthHeader {
        who,
        time,
        nonce: nonce.to_string(),
        signature: Signature(sig),
    })
}

/// The payload a read request's signature covers.
pub fn auth_payload(
    chain: &[u8; 32],
    method: &str,
    path_and_query: &str,
    time: TimeMs,
    nonce: &str,
) -> Vec<u8> {
    let mut p = chain.to_vec();
    p.extend_from_slice(format!("{method} {path_and_query}\n{time}\n{nonce}").as_bytes());
    p
}

/// The 503 of a node without the consortium firm key, asked about a firm by USCC.
pub fn no_firm_key() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "api.no_firm_key",
        "this node has no consortium firm key ([privacy] firm_key) and cannot map USCCs to the ledger's firm tags",
    )
}

/// The signer's key and, for organisations, its role. A firm signs as `firm:<USCC>`; its key is
/// the one registered under its tag of the newest firm-key epoch in which it is registered
/// (`firm_keys` map USCCs to tags).
pub fn requester_key(
    state: &State,
    who: &Requester,
    firm_keys: Option<&FirmKeys>,
) -> Result<(PublicKey, Option<Role>), ApiError> {
    let unknown = || {
        ApiError::unauthorized(
            "api.unknown_signer",
            format!("{} is not registered", who.key()),
        )
    };
    match who {
        Requester::Org(o) => {
            let r = state.org(o).map_err(ApiError::from)?.ok_or_else(unknown)?;
            Ok((r.key, Some(r.role)))
        }
        Requester::Firm(f) => {
            for (_, tag) in firm_keys.ok_or_else(no_firm_key)?.tags(f).iter().rev() {
                if let Some(r) = state.firm(tag).map_err(ApiError::from)? {
                    return Ok((r.key, None));
                }
            }
            Err(unknown())
        }
    }
}

/// Verifies time window and signature (not the nonce: see [`ReplayCache`]).
pub fn verify_auth(
    h: &AuthHeader,
    key: &PublicKey,
    chain: &[u8; 32],
    method: &str,
    path_and_query: &str,
    now: TimeMs,
) -> Result<(), ApiError> {
    if h.time.abs_diff(now) > AUTH_WINDOW_MS {
        return Err(ApiError::unauthorized(
            "api.stale",
            format!(
                "request time {} is more than 5 minutes from the node clock {now}",
                h.time
            ),
        ));
    }
    key.verify(
        SigDomain::ApiRequest,
        &auth_payload(chain, method, path_and_query, h.time, &h.nonce),
        &h.signature,
    )
    .map_err(|_| {
        ApiError::unauthorized(
            "api.bad_signature",
            "X-Xinyi-Auth signature does not verify",
        )
    })
}

/// Keys by time of first sighting, and the same ordered by time for pruning.
type Seen = (HashMap<String, TimeMs>, BTreeMap<(TimeMs, String), ()>);

/// Remembers keys seen within a time window; a second sighting is a replay.
#[derive(Debug)]
pub struct ReplayCache {
    window: u64,
    seen: Mutex<Seen>,
}

impl ReplayCache {
    /// A cache remembering keys for `window` ms.
    pub fn new(window: u64) -> Self {
        ReplayCache {
            window,
            seen: Mutex::new((HashMap::new(), BTreeMap::new())),
        }
    }

    /// Records `key` at `time`; false if it was already seen.
    pub fn check_and_insert(&self, key: String, now: TimeMs) -> bool {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (map, by_time) = &mut *g;
        let cutoff = now.saturating_sub(2 * self.window);
        while let Some(((t, k), ())) = by_time.first_key_value() {
            if *t >= cutoff {
                break;
            }
            let k = k.clone();
            let t = *t;
            by_time.remove(&(t, k.clone()));
            map.remove(&k);
        }
        if map.contains_key(&key) {
            return false;
        }
        map.insert(key.clone(), now);
        by_time.insert((now, key), ());
        true
    }
}

impl ReplayCache {
    /// Forgets `key` (its request was not recorded and may be retried).
    pub fn remove(&self, key: &str) {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (map, by_time) = &mut *g;
        if let Some(t) = map.remove(key) {
            by_time.remove(&(t, key.to_string()));
        }
    }
}

/// Token buckets keyed by signer.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_sec` requests per second per key, bursts of twice that (0 = unlimited).
    pub fn new(per_sec: u32) -> Self {
        RateLimiter {
            rate: f64::from(per_sec),
            burst: f64::from(per_sec) * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; Err(429) if none is left.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut m = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 100_000 {
            m.clear();
        }
        let b = m.entry(key.to_string()).or_insert((self.burst, now));
        let elapsed = now.duration_since(b.1).as_secs_f64();
        b.0 = (b.0 + elapsed * self.rate).min(self.burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "api.rate_limited",
                format!("too many requests from {key}; slow down"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_header_parsing() {
        let f = xinyi_ledger::sample::sample_firm(1).unwrap();
        let sig = "ab".repeat(64);
        let h = parse_auth(&format!("firm:{f};1700;n1;{sig}")).unwrap();
        assert_eq!(h.who, Requester::Firm(f));
        assert_eq!((h.time, h.nonce.as_str()), (1700, "n1"));
        let h = parse_auth(&format!("org:auditor;1;x;{sig}")).unwrap();
        assert_eq!(h.who.key(), "org:auditor");
        for bad in [
            String::new(),
            format!("auditor;1;x;{sig}"),
            format!("org:Auditor;1;x;{sig}"),
            format!("firm:123;1;x;{sig}"),
            format!("org:auditor;t;x;{sig}"),
            format!("org:auditor;1;;{sig}"),
            "org:auditor;1;x;abcd".to_string(),
            format!("org:auditor;1;x;{sig};extra"),
        ] {
            let e = parse_auth(&bad).unwrap_err();
            assert_eq!(e.status.as_u16(), 401, "{bad}");
        }
    }

    #[test]
    fn replay_cache_refuses_second_sighting_and_forgets_old_keys() {
        let c = ReplayCache::new(1000);
        assert!(c.check_and_insert("a".into(), 10_000));
        assert!(!c.check_and_insert("a".into(), 10_001));
        assert!(c.check_and_insert("b".into(), 10_001));
        // Far later, "a" has been pruned (window 1 s, kept for 2).
        assert!(c.check_and_insert("c".into(), 20_000));
        assert!(c.check_and_insert("a".into(), 20_001));
        c.remove("a");
        assert!(c.check_and_insert("a".into(), 20_002));
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_refuses() {
        let r = RateLimiter::new(2);
        let ok = (0..10).filter(|_| r.check("k").is_ok()).count();
        assert_eq!(ok, 4, "burst of twice the rate");
        assert!(r.check("other").is_ok(), "buckets are per key");
        assert!(RateLimiter::new(0).check("k").is_ok());
    }
}
