//! Failed bootstrap-token attempts, limited per source address, so a token
//! cannot be guessed online (a 256-bit token cannot be guessed anyway; the
//! limit also keeps a guessing client from costing the CA a signature
//! check per attempt).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Failures one address may have in a window before it is refused outright.
pub const FAILURES_PER_WINDOW: u32 = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond that the oldest window is dropped,
/// so the table's memory is bounded (about 64 bytes an entry).
const ADDRESSES_MAX: usize = 4096;

/// Failures per source address in the current window.
#[derive(Default)]
pub struct FailureThrottle {
    windows: BTreeMap<IpAddr, (Instant, u32)>,
}

impl FailureThrottle {
    /// Whether `source` may try a token now.
    pub fn allows(&mut self, source: IpAddr, now: Instant) -> bool {
        match self.windows.get(&source) {
            Some((start, failures)) if now.duration_since(*start) < WINDOW => {
                *failures < FAILURES_PER_WINDOW
            }
            _ => true,
        }
    }

    /// Records a failed attempt from `source`.
    pub fn failed(&mut self, source: IpAddr, now: Instant) {
        if self.windows.len() >= ADDRESSES_MAX
            && !self.windows.contains_key(&source)
            && let Some(oldest) = self
                .windows
                .iter()
                .min_by_key(|(_, (start, _))| *start)
                .map(|(ip, _)| *ip)
        {
            self.windows.remove(&oldest);
        }
        let entry = self.windows.entry(source).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_five_failures_until_the_window_ends() {
        let mut throttle = FailureThrottle::default();
        let guesser: IpAddr = [127, 0, 0, 9].into();
        let other: IpAddr = [127, 0, 0, 10].into();
        let now = Instant::now();
        for _ in 0..FAILURES_PER_WINDOW {
            assert!(throttle.allows(guesser, now));
            throttle.failed(guesser, now);
        }
        assert!(!throttle.allows(guesser, now));
        assert!(
            throttle.allows(other, now),
            "other addresses are unaffected"
        );
        assert!(throttle.allows(guesser, now + WINDOW));
    }
}
