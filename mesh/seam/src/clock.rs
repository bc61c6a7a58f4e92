//! The wall-clock half of the seam.
//!
//! Monotonic time is always `tokio::time` (turmoil drives it per host). The
//! wall clock is separate because certificates are valid between two wall
//! times, and a host's wall clock can be skewed while its timers are not.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use crate::BoxFuture;

/// A host's view of time.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time on this host, including its skew. Certificate checks
    /// read this (rustls gets it through a `TimeProvider`).
    fn wall(&self) -> SystemTime;
    /// Time since the run started, identical on every host. Trace timestamps
    /// and SLO windows use it.
    fn run_elapsed(&self) -> Duration;
    /// Whether this clock is simulated time. Only then may a component use
    /// seeded (replayable, hence insecure) TLS randomness.
    fn simulated(&self) -> bool {
        false
    }
    /// Sleeps for exactly `duration` of this host's monotonic time.
    ///
    /// Service times and other drawn delays should sleep here rather than
    /// on `tokio::time::sleep`, whose timer wheel rounds every deadline up
    /// to a whole millisecond: a simulated world overrides this with a
    /// timer that wakes at the drawn instant to the microsecond. In real
    /// mode it is `tokio::time::sleep` (the OS timer is not exact anyway).
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A shared, adjustable clock skew in milliseconds (positive = ahead).
///
/// The fault executor holds one per host and changes it at run time.
#[derive(Clone, Debug, Default)]
pub struct SkewHandle(Arc<AtomicI64>);

impl SkewHandle {
    /// Sets the skew.
    pub fn set_ms(&self, skew_ms: i64) {
        self.0.store(skew_ms, Ordering::SeqCst);
    }

    /// The current skew.
    pub fn ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Applies the skew to an unskewed wall time.
    pub fn apply(&self, unskewed: SystemTime) -> SystemTime {
        let skew_ms = self.ms();
        let magnitude = Duration::from_millis(skew_ms.unsigned_abs());
        if skew_ms >= 0 {
            unskewed + magnitude
        } else {
            unskewed - magnitude
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_moves_wall_time_both_ways() {
        let skew = SkewHandle::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        skew.set_ms(2500);
        assert_eq!(skew.apply(t), t + Duration::from_millis(2500));
        skew.set_ms(-1000);
        assert_eq!(skew.apply(t), t - Duration::from_secs(1));
    }
}
