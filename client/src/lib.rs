//! xinyi-client: the library behind the `xinyi` command line — a blocking client for the
//! node's v1 HTTP API ([`api`]), signing as a firm or an organisation ([`signer`]),
//! verification of what a node returns ([`proof`]) and the auditor's bundle check ([`audit`]).
//!
//! It holds no ledger rules of its own: encoding, signing payloads, Merkle proofs, checkpoint
//! notes and chain verification all come from `xinyi-ledger`. It is not a node and keeps no
//! state between runs beyond the files it is told to write.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anchor;
pub mod api;
pub mod audit;
pub mod proof;
pub mod report;
pub mod signer;
pub mod state;
pub mod watch;
pub mod witness;

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn fmt_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant), valid for all u64 millisecond times we meet.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_format() {
        assert_eq!(super::fmt_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::fmt_time(1_795_744_800_123),
            "2026-11-27T02:00:00.123Z"
        );
    }
}
