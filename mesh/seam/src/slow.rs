//! A per-host service-time multiplier: the "slow host" fault.
//!
//! The fault executor holds one handle per host and changes it at run time;
//! an app's service-time model multiplies every drawn service time by it, so
//! a slow host is slow in the same seeded way, just stretched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A shared service-time factor (1.0 = normal speed, 4.0 = four times slower).
#[derive(Clone, Debug)]
pub struct SlowHandle(Arc<AtomicU64>);

impl Default for SlowHandle {
    fn default() -> Self {
        SlowHandle(Arc::new(AtomicU64::new(1.0f64.to_bits())))
    }
}

impl SlowHandle {
    /// Sets the factor. Values that are not finite and positive mean 1.0:
    /// a fault can slow a host down, never make service instantaneous.
    pub fn set_factor(&self, factor: f64) {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        self.0.store(factor.to_bits(), Ordering::SeqCst);
    }

    /// The current factor.
    pub fn factor(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::SeqCst))
    }

    /// A service time stretched by the factor.
    /// At normal speed the time is returned untouched (`mul_f64` rounds
    /// through f64 seconds and could move it by a nanosecond).
    pub fn stretch(&self, service_time: Duration) -> Duration {
        let factor = self.factor();
        if factor == 1.0 {
            service_time
        } else {
            service_time.mul_f64(factor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_normal_speed_and_clones_share_the_factor() {
        let slow = SlowHandle::default();
        let seen_by_app = slow.clone();
        assert_eq!(
            seen_by_app.stretch(Duration::from_millis(2)),
            Duration::from_millis(2)
        );
        slow.set_factor(4.0);
        assert_eq!(
            seen_by_app.stretch(Duration::from_millis(2)),
            Duration::from_millis(8)
        );
        slow.set_factor(f64::NAN);
        assert_eq!(seen_by_app.factor(), 1.0);
        slow.set_factor(0.0);
        assert_eq!(seen_by_app.factor(), 1.0);
    }
}
