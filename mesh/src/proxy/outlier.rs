//! Outlier detection for one endpoint: consecutive failures eject it for a
//! time that grows with each ejection (n × base, capped); when the time is
//! up it is on probation, and one success restores it while one failure
//! ejects it again at once (Envoy's consecutive-5xx detector with
//! Linkerd's probation).

use std::time::Duration;

use tokio::time::Instant;

use crate::config::OutlierDetection;

/// How an attempt at an endpoint ended, as far as health goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// A response below 500.
    Success,
    /// A 5xx response.
    ServerError,
    /// Connect failure, reset or timeout: no response at all.
    GatewayFailure,
}

/// A change worth reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Ejected for this long.
    Ejected(Duration),
    /// The ejection ran out; the next result decides.
    Probation,
    /// Probation passed.
    Restored,
}

/// Detector state of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
    probation: bool,
}

impl OutlierState {
    /// Whether the endpoint is ejected at `now` (and ends an ejection that
    /// ran out, reporting probation).
    pub fn ejected(&mut self, now: Instant) -> (bool, Option<Transition>) {
        match self.ejected_until {
            Some(until) if until > now => (true, None),
            Some(_) => {
                self.ejected_until = None;
                self.probation = true;
                (false, Some(Transition::Probation))
            }
            None => (false, None),
        }
    }

    /// Whether the endpoint is ejected, without changing anything.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| until > now)
    }

    /// Records a result. `may_eject` says whether the max-ejected share
    /// still allows one more ejection.
    pub fn observe(
        &mut self,
        health: Health,
        config: &OutlierDetection,
        now: Instant,
        may_eject: bool,
    ) -> Option<Transition> {
        if self.is_ejected(now) {
            // A late answer from before the ejection changes nothing.
            return None;
        }
        match health {
            Health::Success => {
                self.consecutive_5xx = 0;
                self.consecutive_gateway = 0;
                if std::mem::take(&mut self.probation) {
                    self.ejections = self.ejections.saturating_sub(1);
                    return Some(Transition::Restored);
                }
                None
            }
            Health::ServerError | Health::GatewayFailure => {
                self.consecutive_5xx += 1;
                if health == Health::GatewayFailure {
                    self.consecutive_gateway += 1;
                } else {
                    self.consecutive_gateway = 0;
                }
                let tripped = |count: u32, threshold: u32| threshold > 0 && count >= threshold;
                let trip = self.probation
                    || tripped(self.consecutive_5xx, config.consecutive_5xx)
                    || tripped(
                        self.consecutive_gateway,
                        config.consecutive_gateway_failures,
                    );
                (trip && may_eject).then(|| self.eject(config, now))
            }
        }
    }

    fn eject(&mut self, config: &OutlierDetection, now: Instant) -> Transition {
        self.ejections += 1;
        let length = Duration::from_millis(
            config
                .base_ejection_ms
                .saturating_mul(u64::from(self.ejections))
                .min(config.max_ejection_ms),
        );
        self.ejected_until = Some(now + length);
        self.probation = false;
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        Transition::Ejected(length)
    }
}

/// How many of `endpoints` may be ejected at once: the configured share,
/// but at least one (as in Envoy).
pub fn ejection_cap(config: &OutlierDetection, endpoints: usize) -> usize {
    (endpoints * config.max_ejected_percent as usize / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_failures: 2,
            base_ejection_ms: 1000,
            max_ejection_ms: 2500,
            max_ejected_percent: 10,
        }
    }

    #[test]
    fn consecutive_failures_eject_and_ejections_grow() {
        let config = config();
        let mut state = OutlierState::default();
        let now = Instant::now();
        assert_eq!(state.observe(Health::ServerError, &config, now, true), None);
        assert_eq!(state.observe(Health::Success, &config, now, true), None);
        assert_eq!(state.observe(Health::ServerError, &config, now, true), None);
        assert_eq!(state.observe(Health::ServerError, &config, now, true), None);
        assert_eq!(
            state.observe(Health::ServerError, &config, now, true),
            Some(Transition::Ejected(Duration::from_secs(1)))
        );
        assert!(state.ejected(now).0);
        let later = now + Duration::from_millis(1001);
        assert_eq!(state.ejected(later), (false, Some(Transition::Probation)));
        // One failure on probation ejects again, for twice as long.
        assert_eq!(
            state.observe(Health::GatewayFailure, &config, later, true),
            Some(Transition::Ejected(Duration::from_secs(2)))
        );
        let later = later + Duration::from_secs(2);
        assert_eq!(state.ejected(later), (false, Some(Transition::Probation)));
        assert_eq!(
            state.observe(Health::Success, &config, later, true),
            Some(Transition::Restored)
        );
        assert_eq!(state.observe(Health::Success, &config, later, true), None);
    }

    #[test]
    fn gateway_failures_trip_sooner_and_the_cap_holds() {
        let config = config();
        let mut state = OutlierState::default();
        let now = Instant::now();
        assert_eq!(
            state.observe(Health::GatewayFailure, &config, now, true),
            None
        );
        assert_eq!(
            state.observe(Health::GatewayFailure, &config, now, false),
            None
        );
        assert!(!state.is_ejected(now), "the cap forbade the ejection");
        assert_eq!(ejection_cap(&config, 3), 1);
        assert_eq!(ejection_cap(&config, 30), 3);
        let mut capped = OutlierState::default();
        for _ in 0..3 {
            capped.observe(Health::GatewayFailure, &config, now, true);
            capped.ejected(now + Duration::from_secs(60));
        }
        assert!(capped.ejections <= 3);
    }
}
