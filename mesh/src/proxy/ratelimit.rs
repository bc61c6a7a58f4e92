//! Local rate limiting with GCRA (the generic cell rate algorithm, as in
//! Linkerd's `HTTPLocalRateLimitPolicy`): a total bucket for all callers and
//! one bucket per caller identity, per service and per route. Over the
//! limit, the inbound proxy answers 429.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::authz::pattern_matches;
use crate::config::{Rate, RateLimit};

/// Buckets kept before the table is reset (a bound on memory when many
/// identities call).
const BUCKETS_MAX: usize = 10_000;

/// One GCRA bucket: the theoretical arrival time of the next request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gcra {
    tat: Option<Instant>,
}

impl Gcra {
    /// Admits a request at `now` if the rate and burst allow it.
    pub fn admit(&mut self, rate: &Rate, now: Instant) -> bool {
        let interval = Duration::from_secs_f64(1.0 / rate.requests_per_s);
        let burst = rate
            .burst
            .unwrap_or_else(|| rate.requests_per_s.ceil().max(1.0) as u32);
        let tolerance = interval * burst.saturating_sub(1);
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        if tat.saturating_duration_since(now) > tolerance {
            return false;
        }
        self.tat = Some(tat + interval);
        true
    }
}

/// The rate limits one inbound proxy enforces.
#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<BTreeMap<(String, String), Gcra>>,
}

impl Limiter {
    /// Admits a request under `limit` in `scope` (`service` or a route name)
    /// from `principal`. Every applicable bucket must admit it.
    pub fn admit(&self, scope: &str, limit: &RateLimit, principal: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().expect("limiter poisoned");
        if buckets.len() > BUCKETS_MAX {
            buckets.clear();
        }
        let per_identity = limit
            .overrides
            .iter()
            .find(|o| o.principals.iter().any(|p| pattern_matches(p, principal)))
            .map(|o| &o.rate)
            .or(limit.per_identity.as_ref());
        let mut admitted = true;
        if let Some(rate) = per_identity {
            let key = (scope.to_owned(), format!("id:{principal}"));
            admitted &= buckets.entry(key).or_default().admit(rate, now);
        }
        if admitted && let Some(rate) = &limit.total {
            let key = (scope.to_owned(), "total".to_owned());
            admitted &= buckets.entry(key).or_default().admit(rate, now);
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateOverride;

    fn rate(requests_per_s: f64, burst: u32) -> Rate {
        Rate {
            requests_per_s,
            burst: Some(burst),
        }
    }

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        let mut bucket = Gcra::default();
        let now = Instant::now();
        let rate = rate(10.0, 3);
        let admitted = (0..10).filter(|_| bucket.admit(&rate, now)).count();
        assert_eq!(admitted, 3);
        assert!(!bucket.admit(&rate, now + Duration::from_millis(50)));
        assert!(bucket.admit(&rate, now + Duration::from_millis(100)));
        // Over a long run the rate holds: ~10/s.
        let mut admitted = 0;
        for ms in (1000..11_000).step_by(5) {
            admitted += usize::from(bucket.admit(&rate, now + Duration::from_millis(ms)));
        }
        assert!((99..=103).contains(&admitted), "{admitted}");
    }

    #[test]
    fn identities_have_their_own_buckets_and_overrides() {
        let limiter = Limiter::default();
        let limit = RateLimit {
            total: Some(rate(100.0, 100)),
            per_identity: Some(rate(1.0, 2)),
            overrides: vec![RateOverride {
                principals: vec!["*/sa/gateway".into()],
                rate: rate(50.0, 50),
            }],
        };
        let now = Instant::now();
        let admit = |who: &str| limiter.admit("service", &limit, who, now);
        assert!(admit("spiffe://td/ns/rec/sa/market"));
        assert!(admit("spiffe://td/ns/rec/sa/market"));
        assert!(!admit("spiffe://td/ns/rec/sa/market"));
        assert!(admit("spiffe://td/ns/rec/sa/accounts"));
        let gateway = (0..60)
            .filter(|_| admit("spiffe://td/ns/rec/sa/gateway"))
            .count();
        assert_eq!(gateway, 50);
    }
}
