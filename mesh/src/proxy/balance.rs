//! Load balancing across a service's endpoints, with the per-endpoint state
//! that outlier detection and circuit breaking need.
//!
//! * `round_robin`: each available endpoint in turn.
//! * `least_request`: power of two choices on requests in flight.
//! * `peak_ewma`: power of two choices on a peak-sensitive EWMA of latency
//!   × (in flight + 1), decaying toward zero while unused (tower's and
//!   Linkerd's `PeakEwma`; 30 ms default estimate, 10 s decay).
//!
//! Ejected endpoints are skipped unless every endpoint is ejected (then all
//! are used: Envoy's panic routing). Endpoints at `max_requests` are
//! skipped; when all are, the request waits as pending, up to
//! `max_pending_requests`, and beyond that it fails fast.
//!
//! Random choices come from the proxy's seeded stream, so the simulation
//! replays them.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha12Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{LoadBalancer, PeakEwmaConfig, ServiceConfig};
use crate::control::Endpoint;
use crate::proxy::outlier::{Health, OutlierState, Transition, ejection_cap};

/// A peak-sensitive EWMA of round-trip time.
#[derive(Clone, Debug)]
struct PeakEwma {
    estimate_ns: f64,
    updated: Instant,
}

impl PeakEwma {
    fn new(config: &PeakEwmaConfig, now: Instant) -> Self {
        PeakEwma {
            estimate_ns: config.default_rtt_ms as f64 * 1e6,
            updated: now,
        }
    }

    /// The estimate decayed to `now` (an idle endpoint drifts toward zero,
    /// so it is eventually probed again).
    fn decayed(&self, now: Instant, decay_ms: u64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos() as f64;
        self.estimate_ns * seam::math::exp(-elapsed / (decay_ms as f64 * 1e6))
    }

    /// A sample above the estimate replaces it; one below is averaged in,
    /// weighted by the time since the last update.
    fn observe(&mut self, rtt: Duration, now: Instant, decay_ms: u64) {
        let rtt_ns = rtt.as_nanos() as f64;
        if rtt_ns > self.estimate_ns {
            self.estimate_ns = rtt_ns;
        } else {
            let elapsed = now.saturating_duration_since(self.updated).as_nanos() as f64;
            let decay = seam::math::exp(-elapsed / (decay_ms as f64 * 1e6));
            self.estimate_ns = self.estimate_ns * decay + rtt_ns * (1.0 - decay);
        }
        self.updated = now;
    }
}

struct EndpointLb {
    in_flight: u32,
    ewma: PeakEwma,
    outlier: OutlierState,
}

#[derive(Default)]
struct ServiceLb {
    endpoints: BTreeMap<String, EndpointLb>,
    /// The keys of the endpoint list last picked from, in its order: the
    /// list rarely changes, so a pick compares it with this instead of
    /// formatting every endpoint's key and sweeping the map (which was
    /// quadratic in the endpoints, on every request).
    keys: Vec<String>,
    next: usize,
    pending: u32,
}

struct BalancerState {
    services: BTreeMap<String, ServiceLb>,
    rng: ChaCha12Rng,
}

/// One outbound proxy's balancer for every service it calls.
#[derive(Clone)]
pub struct Balancer {
    state: Arc<Mutex<BalancerState>>,
    freed: Arc<Notify>,
}

/// Why no endpoint was handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Discovery lists none.
    NoEndpoints,
    /// Every endpoint is at `max_requests` and the pending queue is full.
    PendingOverflow,
}

/// An outlier-detection change to report: (endpoint host, change).
pub type OutlierChange = (String, Transition);

/// The right to send one attempt to one endpoint; counts as in flight
/// until finished or dropped.
pub struct Lease {
    balancer: Balancer,
    service: String,
    key: String,
    endpoint: Endpoint,
    sent_at: Instant,
    done: bool,
}

fn endpoint_key(endpoint: &Endpoint) -> String {
    format!("{}:{}", endpoint.host, endpoint.port)
}

/// Whether `key` is `endpoint_key(endpoint)`, without formatting it.
fn is_key_of(key: &str, endpoint: &Endpoint) -> bool {
    key.strip_prefix(endpoint.host.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|port| port.parse() == Ok(endpoint.port))
}

impl ServiceLb {
    /// Makes `keys` those of `endpoints` and forgets endpoints that left.
    fn track(&mut self, endpoints: &[Endpoint]) {
        let unchanged = self.keys.len() == endpoints.len()
            && self
                .keys
                .iter()
                .zip(endpoints)
                .all(|(key, e)| is_key_of(key, e));
        if unchanged {
            return;
        }
        self.keys = endpoints.iter().map(endpoint_key).collect();
        let keys = &self.keys;
        self.endpoints.retain(|key, _| keys.contains(key));
    }
}

enum Pick {
    Chosen(Lease),
    Saturated,
}

impl Balancer {
    /// A balancer drawing from `rng`.
    pub fn new(rng: ChaCha12Rng) -> Self {
        Balancer {
            state: Arc::new(Mutex::new(BalancerState {
                services: BTreeMap::new(),
                rng,
            })),
            freed: Arc::new(Notify::new()),
        }
    }

    /// An endpoint for one attempt, waiting (as a pending request) while
    /// every endpoint is at its request limit. The caller bounds the wait
    /// with its deadline.
    pub async fn acquire(
        &self,
        service: &str,
        endpoints: &[Endpoint],
        config: &ServiceConfig,
        changes: &mut Vec<OutlierChange>,
    ) -> Result<Lease, Refusal> {
        if endpoints.is_empty() {
            return Err(Refusal::NoEndpoints);
        }
        let mut queued: Option<PendingGuard> = None;
        loop {
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            match self.pick(service, endpoints, config, changes) {
                Pick::Chosen(lease) => return Ok(lease),
                Pick::Saturated => {
                    if queued.is_none() {
                        let limit = config.circuit_breaker.max_pending_requests;
                        queued = Some(
                            self.enqueue(service, limit)
                                .ok_or(Refusal::PendingOverflow)?,
                        );
                    }
                    freed.await;
                }
            }
        }
    }

    fn enqueue(&self, service: &str, limit: u32) -> Option<PendingGuard> {
        let mut state = self.state.lock().expect("balancer poisoned");
        let lb = state.services.entry(service.to_owned()).or_default();
        if lb.pending >= limit {
            return None;
        }
        lb.pending += 1;
        Some(PendingGuard {
            balancer: self.clone(),
            service: service.to_owned(),
        })
    }

    fn pick(
        &self,
        service: &str,
        endpoints: &[Endpoint],
        config: &ServiceConfig,
        changes: &mut Vec<OutlierChange>,
    ) -> Pick {
        let now = Instant::now();
        let mut guard = self.state.lock().expect("balancer poisoned");
        let BalancerState { services, rng } = &mut *guard;
        if !services.contains_key(service) {
            services.insert(service.to_owned(), ServiceLb::default());
        }
        let lb = services.get_mut(service).expect("inserted");
        lb.track(endpoints);
        let mut healthy = Vec::with_capacity(endpoints.len());
        for (index, key) in lb.keys.iter().enumerate() {
            if !lb.endpoints.contains_key(key) {
                lb.endpoints.insert(
                    key.clone(),
                    EndpointLb {
                        in_flight: 0,
                        ewma: PeakEwma::new(&config.peak_ewma, now),
                        outlier: OutlierState::default(),
                    },
                );
            }
            let state = lb.endpoints.get_mut(key).expect("inserted");
            let (ejected, change) = state.outlier.ejected(now);
            if let Some(change) = change {
                changes.push((endpoints[index].host.clone(), change));
            }
            if !ejected {
                healthy.push(index);
            }
        }
        if healthy.is_empty() {
            healthy = (0..endpoints.len()).collect();
        }
        let ServiceLb {
            endpoints: states,
            keys,
            next,
            ..
        } = lb;
        let max_requests = config.circuit_breaker.max_requests;
        let open: Vec<usize> = healthy
            .into_iter()
            .filter(|&i| states[&keys[i]].in_flight < max_requests)
            .collect();
        if open.is_empty() {
            return Pick::Saturated;
        }
        let chosen = match config.load_balancer {
            LoadBalancer::RoundRobin => {
                let choice = open[*next % open.len()];
                *next = next.wrapping_add(1);
                choice
            }
            LoadBalancer::LeastRequest => {
                two_choices(&open, rng, |i| f64::from(states[&keys[i]].in_flight))
            }
            LoadBalancer::PeakEwma => two_choices(&open, rng, |i| {
                let state = &states[&keys[i]];
                let estimate = state.ewma.decayed(now, config.peak_ewma.decay_ms);
                estimate * f64::from(state.in_flight + 1)
            }),
        };
        let key = keys[chosen].clone();
        if let Some(state) = states.get_mut(&key) {
            state.in_flight += 1;
        }
        Pick::Chosen(Lease {
            balancer: self.clone(),
            service: service.to_owned(),
            key,
            endpoint: endpoints[chosen].clone(),
            sent_at: now,
            done: false,
        })
    }

    fn release(&self, service: &str, key: &str) {
        let mut state = self.state.lock().expect("balancer poisoned");
        if let Some(endpoint) = state
            .services
            .get_mut(service)
            .and_then(|lb| lb.endpoints.get_mut(key))
        {
            endpoint.in_flight = endpoint.in_flight.saturating_sub(1);
        }
        drop(state);
        self.freed.notify_waiters();
    }

    /// Endpoints currently ejected from `service` (for tests and the admin
    /// page).
    pub fn ejected(&self, service: &str) -> Vec<String> {
        let now = Instant::now();
        let state = self.state.lock().expect("balancer poisoned");
        state.services.get(service).map_or_else(Vec::new, |lb| {
            lb.endpoints
                .iter()
                .filter(|(_, e)| e.outlier.is_ejected(now))
                .map(|(k, _)| k.clone())
                .collect()
        })
    }
}

/// Power of two choices: two distinct random candidates, the cheaper wins
/// (the first drawn on a tie).
fn two_choices(open: &[usize], rng: &mut ChaCha12Rng, cost: impl Fn(usize) -> f64) -> usize {
    if open.len() == 1 {
        return open[0];
    }
    let first = rng.random_range(0..open.len());
    let mut second = rng.random_range(0..open.len() - 1);
    if second >= first {
        second += 1;
    }
    let (a, b) = (open[first], open[second]);
    if cost(b) < cost(a) { b } else { a }
}

struct PendingGuard {
    balancer: Balancer,
    service: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut state = self.balancer.state.lock().expect("balancer poisoned");
        if let Some(lb) = state.services.get_mut(&self.service) {
            lb.pending = lb.pending.saturating_sub(1);
        }
    }
}

impl Lease {
    /// The endpoint to send to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The endpoint's `host:port`, as the balancer keys it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Ends the attempt: feeds latency to the EWMA (when a response came
    /// back) and the result to outlier detection.
    pub fn finish(mut self, health: Health, config: &ServiceConfig) -> Option<OutlierChange> {
        self.done = true;
        let now = Instant::now();
        let mut state = self.balancer.state.lock().expect("balancer poisoned");
        let lb = state.services.get_mut(&self.service)?;
        let ejected_now = lb
            .endpoints
            .values()
            .filter(|e| e.outlier.is_ejected(now))
            .count();
        let endpoint_count = lb.endpoints.len();
        let endpoint = lb.endpoints.get_mut(&self.key)?;
        endpoint.in_flight = endpoint.in_flight.saturating_sub(1);
        if health != Health::GatewayFailure {
            endpoint
                .ewma
                .observe(now - self.sent_at, now, config.peak_ewma.decay_ms);
        }
        let change = config.outlier_detection.as_ref().and_then(|outlier| {
            let may_eject = ejected_now < ejection_cap(outlier, endpoint_count);
            endpoint.outlier.observe(health, outlier, now, may_eject)
        });
        drop(state);
        self.balancer.freed.notify_waiters();
        change.map(|c| (self.endpoint.host.clone(), c))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.done {
            self.balancer.release(&self.service, &self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpiffeId;
    use crate::config::{CircuitBreaker, OutlierDetection};

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                host: format!("registry-{i}"),
                port: 4143,
                identity: SpiffeId::new("td", "rec", "registry").unwrap(),
            })
            .collect()
    }

    fn config(load_balancer: LoadBalancer) -> ServiceConfig {
        ServiceConfig {
            load_balancer,
            ..ServiceConfig::default()
        }
    }

    async fn pick(balancer: &Balancer, eps: &[Endpoint], config: &ServiceConfig) -> Lease {
        let mut changes = Vec::new();
        balancer
            .acquire("registry", eps, config, &mut changes)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn round_robin_takes_turns() {
        let balancer = Balancer::new(seam::Seed::new(1).rng());
        let eps = endpoints(3);
        let config = config(LoadBalancer::RoundRobin);
        let mut hosts = Vec::new();
        for _ in 0..6 {
            let lease = pick(&balancer, &eps, &config).await;
            hosts.push(lease.endpoint().host.clone());
            lease.finish(Health::Success, &config);
        }
        assert_eq!(
            hosts,
            [
                "registry-0",
                "registry-1",
                "registry-2",
                "registry-0",
                "registry-1",
                "registry-2"
            ]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn least_request_avoids_the_busy_endpoint() {
        let balancer = Balancer::new(seam::Seed::new(2).rng());
        let eps = endpoints(2);
        let config = config(LoadBalancer::LeastRequest);
        let busy = pick(&balancer, &eps, &config).await;
        let busy_host = busy.endpoint().host.clone();
        for _ in 0..20 {
            let lease = pick(&balancer, &eps, &config).await;
            assert_ne!(lease.endpoint().host, busy_host);
        }
    }

    /// The balancer follows the endpoint list: one that leaves is
    /// forgotten (its in-flight count with it), one that joins is picked.
    #[tokio::test(flavor = "current_thread")]
    async fn a_changed_endpoint_list_is_followed() {
        let balancer = Balancer::new(seam::Seed::new(3).rng());
        let config = config(LoadBalancer::LeastRequest);
        let two = endpoints(2);
        let held = pick(&balancer, &two[..1], &config).await;
        assert_eq!(held.endpoint().host, "registry-0");
        // registry-0 has one in flight: least-request takes registry-1.
        let lease = pick(&balancer, &two, &config).await;
        assert_eq!(lease.endpoint().host, "registry-1");
        lease.finish(Health::Success, &config);
        // registry-0 leaves and comes back: its count was forgotten, so
        // both are idle and both get picked again.
        pick(&balancer, &two[1..], &config)
            .await
            .finish(Health::Success, &config);
        let mut hosts = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let lease = pick(&balancer, &two, &config).await;
            hosts.insert(lease.endpoint().host.clone());
            lease.finish(Health::Success, &config);
        }
        assert_eq!(hosts.len(), 2);
        assert!(super::is_key_of("registry-0:4143", &two[0]));
        assert!(!super::is_key_of("registry-0:41430", &two[0]));
        assert!(!super::is_key_of("registry-1:4143", &two[0]));
        drop(held);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn peak_ewma_prefers_the_fast_endpoint() {
        let balancer = Balancer::new(seam::Seed::new(3).rng());
        let eps = endpoints(3);
        let config = config(LoadBalancer::PeakEwma);
        let mut slow_picks = 0;
        for _ in 0..300 {
            let lease = pick(&balancer, &eps, &config).await;
            let slow = lease.endpoint().host == "registry-2";
            let rtt = if slow { 50 } else { 5 };
            tokio::time::sleep(Duration::from_millis(rtt)).await;
            lease.finish(Health::Success, &config);
            slow_picks += usize::from(slow);
        }
        assert!(slow_picks < 30, "the slow endpoint got {slow_picks} of 300");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn outliers_are_ejected_and_skipped() {
        let balancer = Balancer::new(seam::Seed::new(4).rng());
        let eps = endpoints(3);
        let config = ServiceConfig {
            load_balancer: LoadBalancer::RoundRobin,
            outlier_detection: Some(OutlierDetection {
                consecutive_gateway_failures: 2,
                max_ejected_percent: 34,
                ..OutlierDetection::default()
            }),
            ..ServiceConfig::default()
        };
        let mut ejected = None;
        for _ in 0..6 {
            let lease = pick(&balancer, &eps, &config).await;
            let bad = lease.endpoint().host == "registry-1";
            let health = if bad {
                Health::GatewayFailure
            } else {
                Health::Success
            };
            if let Some(change) = lease.finish(health, &config) {
                ejected = Some(change);
            }
        }
        assert_eq!(
            ejected,
            Some((
                "registry-1".into(),
                Transition::Ejected(Duration::from_secs(30))
            ))
        );
        assert_eq!(balancer.ejected("registry"), ["registry-1:4143"]);
        for _ in 0..10 {
            let lease = pick(&balancer, &eps, &config).await;
            assert_ne!(lease.endpoint().host, "registry-1");
            lease.finish(Health::Success, &config);
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn saturated_endpoints_queue_then_overflow() {
        let balancer = Balancer::new(seam::Seed::new(5).rng());
        let eps = endpoints(1);
        let config = ServiceConfig {
            circuit_breaker: CircuitBreaker {
                max_requests: 1,
                max_pending_requests: 1,
                ..CircuitBreaker::default()
            },
            ..ServiceConfig::default()
        };
        let first = pick(&balancer, &eps, &config).await;
        let waiter = {
            let (balancer, eps, config) = (balancer.clone(), eps.clone(), config.clone());
            seam::task::spawn(async move {
                let mut changes = Vec::new();
                balancer
                    .acquire("registry", &eps, &config, &mut changes)
                    .await
                    .map(|lease| lease.endpoint().host.clone())
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut changes = Vec::new();
        let overflow = balancer
            .acquire("registry", &eps, &config, &mut changes)
            .await
            .err();
        assert_eq!(overflow, Some(Refusal::PendingOverflow));
        drop(first);
        assert_eq!(waiter.await.unwrap().unwrap(), "registry-0");
    }
}
