//! The node clock: system time plus an offset that only moves forward.
//!
//! In `--dev` mode tests inject time with `POST /v1/dev/clock` instead of sleeping; the offset is
//! persisted in the data directory so a restarted dev node keeps a monotonic clock. This is the
//! node's clock for admitting entries and proposing block times; the ledger itself never reads
//! a clock (its only time is the block header's).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use xinyi_ledger::TimeMs;

/// System time plus a forward-only offset.
#[derive(Debug)]
pub struct Clock {
    offset: AtomicU64,
    file: Option<PathBuf>,
    write: Mutex<()>,
}

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_ms() -> TimeMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Clock {
    /// The system clock, no offset, not adjustable.
    pub fn system() -> Clock {
        Clock {
            offset: AtomicU64::new(0),
            file: None,
            write: Mutex::new(()),
        }
    }

    /// An adjustable clock whose offset is kept in `file` (read now if it exists).
    pub fn adjustable(file: PathBuf) -> std::io::Result<Clock> {
        let offset = match std::fs::read_to_string(&file) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} does not hold a clock offset", file.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Clock {
            offset: AtomicU64::new(offset),
            file: Some(file),
            write: Mutex::new(()),
        })
    }

    /// Whether the clock can be advanced (dev mode).
    pub fn is_adjustable(&self) -> bool {
        self.file.is_some()
    }

    /// Current node time.
    pub fn now(&self) -> TimeMs {
        system_ms().saturating_add(self.offset.load(Ordering::SeqCst))
    }

    /// Current offset in ms.
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `ms` and persists the new offset before returning it.
    pub fn advance(&self, ms: u64) -> std::io::Result<u64> {
        let Some(file) = &self.file else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "clock is not adjustable",
            ));
        };
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let new = self.offset().saturating_add(ms);
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, format!("{new}\n"))?;
        std::fs::rename(&tmp, file)?;
        self.offset.store(new, Ordering::SeqCst);
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_persists_and_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("clock");
        let c = Clock::adjustable(f.clone()).unwrap();
        let t0 = c.now();
        assert_eq!(c.advance(5_000).unwrap(), 5_000);
        assert_eq!(c.advance(1_000).unwrap(), 6_000);
        assert!(c.now() >= t0 + 6_000);
        let again = Clock::adjustable(f.clone()).unwrap();
        assert_eq!(again.offset(), 6_000);
        std::fs::write(&f, "garbage").unwrap();
        assert!(Clock::adjustable(f).is_err());
        assert!(Clock::system().advance(1).is_err());
    }
}
