//! Retries: which failures are retried, the jittered backoff, and the retry
//! budget that keeps retries a bounded share of live traffic.
//!
//! The budget is tower's and Linkerd's: every original request deposits
//! `ratio` of a token, each retry withdraws one, and `min_retries_per_s ×
//! ttl` tokens are always available; deposits and withdrawals count for
//! `ttl` (10 s), kept in ten slots.

use std::collections::VecDeque;
use std::time::Duration;

use http::{HeaderMap, Method};
use rand::Rng;
use tokio::time::Instant;

use crate::config::{NonIdempotent, RetryBudget, RetryOn, RetryPolicy};

/// Header whose presence makes a non-idempotent request retryable under
/// `non_idempotent = "with_idempotency_key"`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered.
    Response(u16),
    /// Connect or TLS failure: the request was never sent.
    ConnectFailure,
    /// The connection or stream broke after the request may have left.
    Reset,
    /// The per-try timeout fired.
    Timeout,
}

impl AttemptOutcome {
    /// Whether the request certainly never reached the app.
    pub fn never_sent(self) -> bool {
        self == AttemptOutcome::ConnectFailure
    }
}

/// Whether `policy` retries `outcome`.
pub fn retryable(policy: &RetryPolicy, outcome: AttemptOutcome) -> bool {
    let on = |condition| policy.retry_on.contains(&condition);
    match outcome {
        AttemptOutcome::ConnectFailure => on(RetryOn::ConnectFailure),
        AttemptOutcome::Reset => on(RetryOn::Reset),
        AttemptOutcome::Timeout => on(RetryOn::PerTryTimeout),
        AttemptOutcome::Response(status) => {
            policy.retry_on_status.contains(&status)
                || (status == 503 && on(RetryOn::Unavailable))
                || (matches!(status, 502..=504) && on(RetryOn::GatewayError))
                || (status >= 500 && on(RetryOn::ServerError))
        }
    }
}

/// Whether a request may be sent again after `outcome`: always if it never
/// left; otherwise only idempotent methods, unless the route allows more.
pub fn may_resend(
    policy: &RetryPolicy,
    method: &Method,
    headers: &HeaderMap,
    outcome: AttemptOutcome,
) -> bool {
    if outcome.never_sent() || method.is_idempotent() {
        return true;
    }
    match policy.non_idempotent {
        NonIdempotent::Never => false,
        NonIdempotent::WithIdempotencyKey => headers.contains_key(IDEMPOTENCY_KEY_HEADER),
        NonIdempotent::Always => true,
    }
}

/// Fully jittered exponential backoff before retry number `retry` (1-based):
/// uniform in `[0, min(max, base × 2^(retry-1))]`, as Envoy does.
pub fn backoff(policy: &RetryPolicy, retry: u32, rng: &mut impl Rng) -> Duration {
    let ceiling_ms = policy
        .backoff_base_ms
        .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
        .min(policy.backoff_max_ms);
    if ceiling_ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(rng.random_range(0..=ceiling_ms * 1000))
}

const BUDGET_SLOTS: u32 = 10;

#[derive(Clone, Copy, Debug)]
struct Slot {
    index: u64,
    deposits: u64,
    withdrawals: u64,
}

/// A retry budget's moving window.
#[derive(Debug)]
pub struct BudgetWindow {
    started: Instant,
    slots: VecDeque<Slot>,
}

impl BudgetWindow {
    /// An empty window starting now.
    pub fn new(now: Instant) -> Self {
        BudgetWindow {
            started: now,
            slots: VecDeque::new(),
        }
    }

    fn slot(&mut self, budget: &RetryBudget, now: Instant) -> &mut Slot {
        let width_ms = (budget.ttl_ms / u64::from(BUDGET_SLOTS)).max(1);
        let index = now.saturating_duration_since(self.started).as_millis() as u64 / width_ms;
        let oldest = index.saturating_sub(u64::from(BUDGET_SLOTS) - 1);
        while self.slots.front().is_some_and(|s| s.index < oldest) {
            self.slots.pop_front();
        }
        if self.slots.back().is_none_or(|s| s.index != index) {
            self.slots.push_back(Slot {
                index,
                deposits: 0,
                withdrawals: 0,
            });
        }
        self.slots.back_mut().expect("pushed above")
    }

    /// An original request.
    pub fn deposit(&mut self, budget: &RetryBudget, now: Instant) {
        self.slot(budget, now).deposits += 1;
    }

    /// Takes one retry if the budget has room.
    pub fn try_withdraw(&mut self, budget: &RetryBudget, now: Instant) -> bool {
        self.slot(budget, now);
        let (deposits, withdrawals) = self
            .slots
            .iter()
            .fold((0, 0), |(d, w), s| (d + s.deposits, w + s.withdrawals));
        let reserve = f64::from(budget.min_retries_per_s) * budget.ttl_ms as f64 / 1000.0;
        let balance = reserve + deposits as f64 * budget.ratio - withdrawals as f64;
        if balance >= 1.0 {
            self.slot(budget, now).withdrawals += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_select_what_is_retried() {
        let policy = RetryPolicy {
            retry_on: vec![RetryOn::ConnectFailure, RetryOn::Unavailable],
            retry_on_status: vec![429],
            ..RetryPolicy::default()
        };
        assert!(retryable(&policy, AttemptOutcome::ConnectFailure));
        assert!(retryable(&policy, AttemptOutcome::Response(503)));
        assert!(retryable(&policy, AttemptOutcome::Response(429)));
        assert!(!retryable(&policy, AttemptOutcome::Response(500)));
        assert!(!retryable(&policy, AttemptOutcome::Reset));
        assert!(!retryable(&policy, AttemptOutcome::Timeout));
        let broad = RetryPolicy {
            retry_on: vec![RetryOn::ServerError, RetryOn::PerTryTimeout],
            ..RetryPolicy::default()
        };
        assert!(retryable(&broad, AttemptOutcome::Response(500)));
        assert!(retryable(&broad, AttemptOutcome::Timeout));
        assert!(!retryable(&broad, AttemptOutcome::Response(404)));
    }

    #[test]
    fn non_idempotent_requests_resend_only_when_allowed() {
        let never = RetryPolicy::default();
        let mut headers = HeaderMap::new();
        let sent = AttemptOutcome::Response(503);
        assert!(may_resend(&never, &Method::GET, &headers, sent));
        assert!(!may_resend(&never, &Method::POST, &headers, sent));
        assert!(may_resend(
            &never,
            &Method::POST,
            &headers,
            AttemptOutcome::ConnectFailure
        ));
        let keyed = RetryPolicy {
            non_idempotent: NonIdempotent::WithIdempotencyKey,
            ..RetryPolicy::default()
        };
        assert!(!may_resend(&keyed, &Method::POST, &headers, sent));
        headers.insert(IDEMPOTENCY_KEY_HEADER, "order-17".parse().unwrap());
        assert!(may_resend(&keyed, &Method::POST, &headers, sent));
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        let policy = RetryPolicy::default();
        let mut rng = seam::Seed::new(1).rng();
        for retry in 1..8 {
            let ceiling = (25u64 << (retry - 1)).min(250);
            for _ in 0..50 {
                let wait = backoff(&policy, retry, &mut rng);
                assert!(
                    wait <= Duration::from_millis(ceiling),
                    "{wait:?} > {ceiling}ms"
                );
            }
        }
        let first: Vec<_> = (0..5).map(|_| backoff(&policy, 1, &mut rng)).collect();
        assert!(first.windows(2).any(|w| w[0] != w[1]), "jitter varies");
    }

    #[test]
    fn budget_allows_the_ratio_plus_the_reserve() {
        let budget = RetryBudget {
            ratio: 0.2,
            min_retries_per_s: 1,
            ttl_ms: 10_000,
        };
        let now = Instant::now();
        let mut window = BudgetWindow::new(now);
        for _ in 0..100 {
            window.deposit(&budget, now);
        }
        let granted = (0..1000)
            .filter(|_| window.try_withdraw(&budget, now))
            .count();
        assert_eq!(granted, 30, "20 % of 100, plus 1/s × 10 s");
        // Once the window has passed, only the reserve is left.
        let later = now + Duration::from_secs(11);
        let granted = (0..1000)
            .filter(|_| window.try_withdraw(&budget, later))
            .count();
        assert_eq!(granted, 10);
    }
}
