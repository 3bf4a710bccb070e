//! Node counters and their Prometheus text rendering (hand-written exposition format).
//!
//! Counters are plain atomics updated by the API and the block producer; nothing here reads the
//! ledger. Not a general metrics library: just the figures an operator needs to see that the
//! node is alive and serving.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Head height (gauge).
    pub height: AtomicU64,
    /// Entries in the log (gauge).
    pub log_size: AtomicU64,
    /// Blocks produced by this node since start.
    pub blocks_produced: AtomicU64,
    /// Entries committed by this node since start.
    pub entries_committed: AtomicU64,
    /// Submissions dropped by the block builder.
    pub entries_dropped: AtomicU64,
    /// Submissions refused because the mempool was full.
    pub mempool_full: AtomicU64,
    /// Entries waiting in the mempool (gauge).
    pub mempool_depth: AtomicU64,
    /// Queries served (data released).
    pub queries_served: AtomicU64,
    /// Queries refused and recorded as denied.
    pub queries_denied: AtomicU64,
    /// Requests refused by the rate limiter.
    pub rate_limited: AtomicU64,
    /// Monitoring alerts released after their alerts_delivered entry committed.
    pub alerts_delivered: AtomicU64,
    /// Monitoring alerts the ledger refused (consent revoked or expired meanwhile).
    pub alerts_refused: AtomicU64,
    /// Monitoring alerts not produced because the bank's backlog was full.
    pub alerts_backlog_full: AtomicU64,
    /// Monitoring alerts not produced because of the bank's alert rate limit.
    pub alerts_rate_limited: AtomicU64,
    /// Webhook POSTs attempted.
    pub webhook_attempts: AtomicU64,
    /// Alerts acknowledged by a webhook (2xx).
    pub webhook_delivered: AtomicU64,
    /// Webhook POSTs that failed and will be retried.
    pub webhook_failures: AtomicU64,
    /// Alerts a webhook gave up on after its retry cap (still in the pull stream).
    pub webhook_gave_up: AtomicU64,
    /// EVM anchoring: log size of the consortium's last anchor on the chain (gauge).
    pub anchor_size: AtomicU64,
    /// EVM anchoring: final checkpoint size minus the last anchored size (gauge).
    pub anchor_lag: AtomicU64,
    /// EVM anchoring: failed rounds (chain unreachable, refused transaction, ...).
    pub anchor_failures: AtomicU64,
    http: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    /// Counts one HTTP response.
    pub fn http_response(&self, status: u16) {
        let mut m = self.http.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(status).or_insert(0) += 1;
    }

    /// Increments a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let g = |s: &mut String, name: &str, help: &str, kind: &str, v: &AtomicU64| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
            let _ = writeln!(s, "{name} {}", v.load(Ordering::Relaxed));
        };
        g(
            &mut s,
            "xinyi_height",
            "Height of the last committed block.",
            "gauge",
            &self.height,
        );
        g(
            &mut s,
            "xinyi_log_entries",
            "Entries in the global log.",
            "gauge",
            &self.log_size,
        );
        g(
            &mut s,
            "xinyi_blocks_produced_total",
            "Blocks produced since start.",
            "counter",
            &self.blocks_produced,
        );
        g(
            &mut s,
            "xinyi_entries_committed_total",
            "Entries committed since start.",
            "counter",
            &self.entries_committed,
        );
        g(
            &mut s,
            "xinyi_entries_dropped_total",
            "Submitted entries refused by the block builder.",
            "counter",
            &self.entries_dropped,
        );
        g(
            &mut s,
            "xinyi_mempool_full_total",
            "Submissions refused because the mempool was full.",
            "counter",
            &self.mempool_full,
        );
        g(
            &mut s,
            "xinyi_mempool_depth",
            "Entries waiting for a block.",
            "gauge",
            &self.mempool_depth,
        );
        g(
            &mut s,
            "xinyi_queries_served_total",
            "Authorized queries served (data released after commit).",
            "counter",
            &self.queries_served,
        );
        g(
            &mut s,
            "xinyi_queries_denied_total",
            "Queries refused and recorded as QueryDenied.",
            "counter",
            &self.queries_denied,
        );
        g(
            &mut s,
            "xinyi_rate_limited_total",
            "Requests refused by the rate limiter.",
            "counter",
            &self.rate_limited,
        );
        g(
            &mut s,
            "xinyi_alerts_delivered_total",
            "Monitoring alerts released after their alerts_delivered entry committed.",
            "counter",
            &self.alerts_delivered,
        );
        g(
            &mut s,
            "xinyi_alerts_refused_total",
            "Monitoring alerts the ledger refused (consent revoked or expired meanwhile).",
            "counter",
            &self.alerts_refused,
        );
        g(
            &mut s,
            "xinyi_alerts_backlog_full_total",
            "Monitoring alerts not produced because the bank's backlog was full.",
            "counter",
            &self.alerts_backlog_full,
        );
        g(
            &mut s,
            "xinyi_alerts_rate_limited_total",
            "Monitoring alerts not produced because of the bank's alert rate limit.",
            "counter",
            &self.alerts_rate_limited,
        );
        g(
            &mut s,
            "xinyi_webhook_attempts_total",
            "Webhook POSTs attempted.",
            "counter",
            &self.webhook_attempts,
        );
        g(
            &mut s,
            "xinyi_webhook_delivered_total",
            "Alerts acknowledged by a webhook (2xx).",
            "counter",
            &self.webhook_delivered,
        );
        g(
            &mut s,
            "xinyi_webhook_failures_total",
            "Webhook POSTs that failed and will be retried.",
            "counter",
            &self.webhook_failures,
        );
        g(
            &mut s,
            "xinyi_webhook_gave_up_total",
            "Alerts a webhook gave up on after its retry cap (still in the pull stream).",
            "counter",
            &self.webhook_gave_up,
        );
        g(
            &mut s,
            "xinyi_anchor_size",
            "Log size of the last anchor on the EVM chain.",
            "gauge",
            &self.anchor_size,
        );
        g(
            &mut s,
            "xinyi_anchor_lag_entries",
            "Final checkpoint size minus the last anchored size.",
            "gauge",
            &self.anchor_lag,
        );
        g(
            &mut s,
            "xinyi_anchor_failures_total",
            "Failed EVM anchoring rounds.",
            "counter",
            &self.anchor_failures,
        );
        let _ = writeln!(
            s,
            "# HELP xinyi_http_requests_total HTTP responses by status code."
        );
        let _ = writeln!(s, "# TYPE xinyi_http_requests_total counter");
        let m = self.http.lock().unwrap_or_else(|p| p.into_inner());
        for (status, n) in m.iter() {
            let _ = writeln!(s, "xinyi_http_requests_total{{status=\"{status}\"}} {n}");
        }
        s
    }
}
