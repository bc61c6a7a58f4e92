//! Helpers the telemetry unit tests share.

use std::time::Duration;

use seam::Clock;

pub(super) struct FixedClock(pub(super) Duration);

impl Clock for FixedClock {
    fn wall(&self) -> std::time::SystemTime {
        std::time::SystemTime::UNIX_EPOCH
    }
    fn run_elapsed(&self) -> Duration {
        self.0
    }
}
