//! The clock seam: the only place node logic reads wall-clock time.
//!
//! Durations and timeouts use `tokio::time` (which the simulation drives); wall-clock
//! timestamps (object times, upload ages) come from a [`Clock`] handle.

use std::sync::Arc;

/// Wall-clock time source.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// Shared clock handle.
pub type ClockRef = Arc<dyn Clock>;

/// The operating system's clock, for real runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that starts at a fixed epoch and advances with `tokio::time`, which the
/// simulation controls: deterministic under turmoil, usable in tests.
#[derive(Debug, Clone)]
pub struct TokioClock {
    epoch_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `epoch_ms` now.
    pub fn starting_at(epoch_ms: u64) -> Self {
        Self {
            epoch_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.epoch_ms + self.start.elapsed().as_millis() as u64
    }
}
