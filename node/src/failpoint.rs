//! Crash points for recovery tests: `XINYI_FAILPOINT=<name>@<height>` makes the process abort
//! (no destructors, no flush: what `kill -9` does) when it reaches the named point at that
//! block height. Unset, every check is one relaxed atomic load.
//!
//! Points: `commit.before_store` (consensus finalized the block and the ledger applied it in
//! memory; sled has not been written), `commit.after_store` (sled written, waiters not yet
//! answered). Not a general fault-injection framework.

use std::sync::OnceLock;

fn configured() -> &'static Option<(String, u64)> {
    static FP: OnceLock<Option<(String, u64)>> = OnceLock::new();
    FP.get_or_init(|| {
        let v = std::env::var("XINYI_FAILPOINT").ok()?;
        let (name, h) = v.split_once('@')?;
        Some((name.to_string(), h.parse().ok()?))
    })
}

/// Aborts the process if the failpoint `name` is armed for `height`.
pub fn check(name: &str, height: u64) {
    if let Some((n, h)) = configured() {
        if n == name && *h == height {
            tracing::error!("failpoint {name}@{height}: aborting");
            std::process::abort();
        }
    }
}
