//! The run-wide evidence scenario checks read: tallies per service and
//! endpoint per second, mesh events, authorization decisions and callers,
//! and the config each proxy held at each version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::metrics::{MeshCounter, new_latency_histogram};
use super::{
    AUTHZ_DECISIONS_MAX, ConfigState, EVENTS_MAX, HubState, LONG_LIVED_RECORDS_MAX,
    LONG_LIVED_TALLY_SECONDS, ProxyTelemetry, Retention,
};
use crate::config::MeshConfig;

/// Outbound attempts and originals for one service in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceTally {
    /// Requests the apps sent (before retries).
    pub requests: u64,
    /// Attempts sent to endpoints (first tries and retries).
    pub attempts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Retries the budget refused.
    pub budget_exhausted: u64,
    /// Requests failed fast by a circuit breaker.
    pub circuit_open: u64,
}

/// Attempt outcomes at one endpoint in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndpointTally {
    /// Answered below 500.
    pub ok: u64,
    /// 5xx, connect failure, reset or timeout.
    pub failed: u64,
}

/// A discrete event (outlier ejection, probation, restoration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeshEvent {
    /// Run time, µs.
    pub at_us: u64,
    /// Proxy that recorded it.
    pub proxy: String,
    /// `outlier.eject`, `outlier.probation`, `outlier.restore`.
    pub kind: String,
    /// The service whose load balancer acted.
    pub service: String,
    /// The endpoint (host) it acted on: checks find ejections per endpoint.
    pub endpoint: String,
    /// Extra facts of the event (e.g. `for_ms=` of an ejection).
    pub detail: String,
}

/// One distinct inbound authorization decision.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AuthzDecision {
    /// The service whose policy decided.
    pub service: String,
    /// Snapshot version of the policy.
    pub config_version: u64,
    /// The caller's SPIFFE ID, as the policy matched it.
    pub principal: String,
    /// HTTP method, which policies may match on.
    pub method: String,
    /// The request target as received (before normalization).
    pub raw_target: String,
    /// `allow`, `deny` or `refused` (malformed path, never evaluated).
    pub verdict: String,
}

/// How one caller fared at one service's inbound authorization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallerTally {
    /// Requests the policy allowed.
    pub allowed: u64,
    /// Requests it denied (or refused as malformed).
    pub denied: u64,
    /// Run time of the last allowed request, µs.
    pub last_allowed_us: Option<u64>,
    /// Run time of the first denied request, µs.
    pub first_denied_us: Option<u64>,
    /// Run time of the last denied request, µs.
    pub last_denied_us: Option<u64>,
}

/// Everything checks read after a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TelemetryReport {
    /// Outbound tallies by (service, run second).
    pub services: BTreeMap<(String, u64), ServiceTally>,
    /// Attempt outcomes by (endpoint host, run second).
    pub endpoints: BTreeMap<(String, u64), EndpointTally>,
    /// Events in the order they happened.
    pub events: Vec<MeshEvent>,
    /// Distinct authorization decisions and how often each was made.
    pub authz: Vec<(AuthzDecision, u64)>,
    /// Inbound authorization outcomes by (service, caller principal).
    pub callers: BTreeMap<(String, String), CallerTally>,
    /// The config in force at each snapshot version any proxy held.
    pub configs: BTreeMap<u64, MeshConfig>,
    /// Each proxy's config versions over time: (run µs, version).
    pub versions: BTreeMap<String, Vec<(u64, u64)>>,
    /// Outbound requests by route name, summed over every sidecar.
    pub routes: BTreeMap<String, RouteStats>,
}

/// What the calling sidecars saw on one route.
#[derive(Clone, Debug, Serialize)]
pub struct RouteStats {
    /// Requests the calling sidecars sent on the route.
    pub total: u64,
    /// Answered 5xx (Linkerd's success-rate notion of failure: a 4xx is
    /// the caller's mistake or a policy decision, not the route failing).
    pub failed: u64,
    /// Time in the calling proxy until the response, µs.
    #[serde(skip)]
    pub latency_us: Histogram<u64>,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            total: 0,
            failed: 0,
            latency_us: new_latency_histogram(),
        }
    }
}

pub(super) fn route_stats(hub: &HubState) -> BTreeMap<String, RouteStats> {
    let mut routes: BTreeMap<String, RouteStats> = BTreeMap::new();
    for proxy in hub.proxies.values() {
        for (key, stats) in &proxy.responses {
            if key.series.direction == super::Direction::Outbound {
                let route = routes.entry(key.series.route.to_string()).or_default();
                route.total += stats.count;
                if key.status_code >= 500 {
                    route.failed += stats.count;
                }
            }
        }
        for (route, histogram) in &proxy.route_latency {
            let stats = routes.entry(route.to_string()).or_default();
            let _ = stats.latency_us.add(histogram);
        }
    }
    routes
}

/// Drops per-second tallies older than the long-lived window, once per
/// second.
fn prune_tallies(hub: &mut HubState, second: u64) {
    if hub.retention != Retention::LongLived || second <= hub.pruned_second {
        return;
    }
    hub.pruned_second = second;
    let oldest = second.saturating_sub(LONG_LIVED_TALLY_SECONDS);
    prune(&mut hub.services, oldest);
    prune(&mut hub.endpoints, oldest);
}

/// Per-second tallies by name, then second. Looked up by `&str`: a
/// request whose name already has tallies allocates nothing (a flat
/// `(String, u64)` key was built, and dropped, three times per outbound
/// request).
pub(super) type Tallies<T> = BTreeMap<String, BTreeMap<u64, T>>;

/// The tally of `name` at `second`, allocating the name only the first time.
fn tally_at<'a, T: Default>(tallies: &'a mut Tallies<T>, name: &str, second: u64) -> &'a mut T {
    if !tallies.contains_key(name) {
        tallies.insert(name.to_owned(), BTreeMap::new());
    }
    tallies
        .get_mut(name)
        .expect("inserted above")
        .entry(second)
        .or_default()
}

fn prune<T>(tallies: &mut Tallies<T>, oldest: u64) {
    tallies.retain(|_, by_second| {
        by_second.retain(|at, _| *at >= oldest);
        !by_second.is_empty()
    });
}

/// The tallies keyed `(name, second)`, in the same order, for a report.
pub(super) fn flatten<T: Clone>(tallies: &Tallies<T>) -> BTreeMap<(String, u64), T> {
    tallies
        .iter()
        .flat_map(|(name, by_second)| {
            by_second
                .iter()
                .map(|(second, tally)| ((name.clone(), *second), tally.clone()))
        })
        .collect()
}

/// Makes room for one more entry in a long-lived hub's list (oldest half
/// goes at once, so the cost is amortized).
fn make_room<T>(list: &mut Vec<T>, retention: Retention, run_max: usize) -> bool {
    let max = retention.records_max(run_max);
    if list.len() < max {
        return true;
    }
    if retention == Retention::LongLived {
        list.drain(..max / 2);
        return true;
    }
    false
}

impl TelemetryReport {
    /// Sums the tallies of `service` over run seconds `[from, until)`.
    pub fn service_total(&self, service: &str, from: Duration, until: Duration) -> ServiceTally {
        let (from_s, until_s) = (from.as_secs(), until.as_secs());
        let mut total = ServiceTally::default();
        for ((name, second), tally) in &self.services {
            if name == service && (from_s..until_s).contains(second) {
                total.requests += tally.requests;
                total.attempts += tally.attempts;
                total.retries += tally.retries;
                total.budget_exhausted += tally.budget_exhausted;
                total.circuit_open += tally.circuit_open;
            }
        }
        total
    }

    /// The first event of `kind` for `endpoint` at or after `after`.
    pub fn first_event(&self, kind: &str, endpoint: &str, after: Duration) -> Option<&MeshEvent> {
        let after_us = after.as_micros() as u64;
        self.events
            .iter()
            .find(|e| e.kind == kind && e.endpoint == endpoint && e.at_us >= after_us)
    }
}

impl ProxyTelemetry {
    fn tally(&self, service: &str, f: impl FnOnce(&mut ServiceTally)) {
        let second = self.second();
        self.hub.with(|hub| {
            prune_tallies(hub, second);
            f(tally_at(&mut hub.services, service, second));
        });
    }

    /// One of meshsim's own counters of this proxy (`meshsim_*_total`).
    fn count(&self, counter: MeshCounter, service: &str) {
        self.hub.with(|hub| {
            let proxy = hub.proxies.entry(self.host.to_string()).or_default();
            *proxy
                .mesh_counters
                .entry((counter, service.to_owned()))
                .or_default() += 1;
        });
    }

    /// An app's request for `service` (before any retry).
    pub fn original_request(&self, service: &str) {
        self.tally(service, |t| t.requests += 1);
    }

    /// An attempt that was sent to an endpoint of `service`.
    pub fn attempt(&self, service: &str, retry: bool) {
        if retry {
            self.count(MeshCounter::Retries, service);
        }
        self.tally(service, |t| {
            t.attempts += 1;
            if retry {
                t.retries += 1;
            }
        });
    }

    /// A retry the budget refused.
    pub fn budget_exhausted(&self, service: &str) {
        self.count(MeshCounter::BudgetExhausted, service);
        self.tally(service, |t| t.budget_exhausted += 1);
    }

    /// A request failed fast by a circuit breaker.
    pub fn circuit_open(&self, service: &str) {
        self.count(MeshCounter::CircuitOpen, service);
        self.tally(service, |t| t.circuit_open += 1);
    }

    /// The outcome of one attempt at one endpoint.
    pub fn endpoint_outcome(&self, endpoint: &str, ok: bool) {
        let second = self.second();
        self.hub.with(|hub| {
            prune_tallies(hub, second);
            let tally = tally_at(&mut hub.endpoints, endpoint, second);
            if ok {
                tally.ok += 1;
            } else {
                tally.failed += 1;
            }
        });
    }

    /// A discrete event.
    pub fn event(&self, kind: &str, service: &str, endpoint: &str, detail: String) {
        if kind == "outlier.eject" {
            self.count(MeshCounter::Ejections, service);
        }
        let event = MeshEvent {
            at_us: self.now().as_micros() as u64,
            proxy: self.host.to_string(),
            kind: kind.to_owned(),
            service: service.to_owned(),
            endpoint: endpoint.to_owned(),
            detail,
        };
        self.hub.with(|hub| {
            if make_room(&mut hub.events, hub.retention, EVENTS_MAX) {
                hub.events.push(event);
            }
        });
    }

    /// An authorization decision (distinct decisions are kept, with counts;
    /// per caller, when it was last allowed and first and last denied).
    pub fn authz(&self, decision: AuthzDecision) {
        let at_us = self.now().as_micros() as u64;
        self.hub.with(|hub| {
            if hub.retention == Retention::LongLived {
                forget_if_full(&mut hub.callers);
                forget_if_full(&mut hub.authz);
            }
            let caller = hub
                .callers
                .entry((decision.service.clone(), decision.principal.clone()))
                .or_default();
            if decision.verdict == "allow" {
                caller.allowed += 1;
                caller.last_allowed_us = Some(at_us);
            } else {
                caller.denied += 1;
                caller.first_denied_us.get_or_insert(at_us);
                caller.last_denied_us = Some(at_us);
            }
            if let Some(count) = hub.authz.get_mut(&decision) {
                *count += 1;
            } else if hub.authz.len() < AUTHZ_DECISIONS_MAX {
                hub.authz.insert(decision, 1);
            }
        });
    }
}

/// A long-lived hub forgets a full map's entries and starts again: what it
/// kept is evidence for a run's checks, which a long-lived process has not.
fn forget_if_full<K, V>(map: &mut BTreeMap<K, V>) {
    if map.len() >= LONG_LIVED_RECORDS_MAX {
        map.clear();
    }
}

impl ProxyTelemetry {
    /// The control plane answered a watch: the proxy is current as of now.
    pub fn control_contact(&self) {
        let now = self.now();
        self.hub.with(|hub| {
            self.config_state(hub).last_contact = Some(now);
        });
    }

    /// The proxy now serves from `snapshot_version`, whose config is
    /// `config`. Called before the proxy uses the snapshot, so every
    /// version a decision can carry is known.
    pub fn config_in_force(&self, snapshot_version: u64, config: &MeshConfig) {
        let at_us = self.now().as_micros() as u64;
        self.hub.with(|hub| {
            self.config_state(hub).version = snapshot_version;
            let retention = hub.retention;
            let versions = hub.versions.entry(self.host.to_string()).or_default();
            if make_room(versions, retention, usize::MAX) {
                versions.push((at_us, snapshot_version));
            }
            if retention == Retention::LongLived {
                forget_if_full(&mut hub.configs);
            }
            // Versions are global, so one copy per version serves every proxy.
            let same_as_before = hub
                .configs
                .range(..snapshot_version)
                .next_back()
                .filter(|(_, previous)| ***previous == *config)
                .map(|(_, previous)| previous.clone());
            hub.configs
                .entry(snapshot_version)
                .or_insert_with(|| same_as_before.unwrap_or_else(|| Arc::new(config.clone())));
        });
    }

    fn config_state<'a>(&self, hub: &'a mut HubState) -> &'a mut ConfigState {
        let proxy = hub.proxies.entry(self.host.to_string()).or_default();
        proxy.config.get_or_insert_with(|| ConfigState {
            version: 0,
            last_contact: None,
            clock: self.clock.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use seam::Clock;

    use super::super::testing::FixedClock;
    use crate::telemetry::*;

    #[test]
    fn tallies_sum_over_a_window() {
        let hub = Telemetry::new();
        for second in [1u64, 2, 3] {
            let proxy = hub.proxy(
                "gateway-0",
                Arc::new(FixedClock(Duration::from_secs(second))),
            );
            proxy.original_request("registry");
            proxy.attempt("registry", false);
            proxy.attempt("registry", true);
        }
        let report = hub.report();
        let total =
            report.service_total("registry", Duration::from_secs(2), Duration::from_secs(4));
        assert_eq!((total.requests, total.attempts, total.retries), (2, 4, 2));
    }

    #[test]
    fn tallies_flatten_in_name_then_second_order_and_prune_empty_names() {
        let mut tallies = super::Tallies::<super::EndpointTally>::new();
        for (name, second) in [("b", 2), ("a", 3), ("b", 1), ("a", 1)] {
            super::tally_at(&mut tallies, name, second).ok += 1;
        }
        super::tally_at(&mut tallies, "a", 1).ok += 1;
        let flat = super::flatten(&tallies);
        let keys: Vec<(&str, u64)> = flat.keys().map(|(n, s)| (n.as_str(), *s)).collect();
        assert_eq!(keys, [("a", 1), ("a", 3), ("b", 1), ("b", 2)]);
        assert_eq!(flat[&("a".to_owned(), 1)].ok, 2);
        super::prune(&mut tallies, 3);
        assert_eq!(super::flatten(&tallies).len(), 1, "only a at 3 is left");
        assert!(!tallies.contains_key("b"), "a name with no seconds goes");
    }

    #[test]
    fn config_version_staleness_and_callers_are_reported() {
        struct Shared(Arc<Mutex<Duration>>);
        impl Clock for Shared {
            fn wall(&self) -> std::time::SystemTime {
                std::time::SystemTime::UNIX_EPOCH
            }
            fn run_elapsed(&self) -> Duration {
                *self.0.lock().unwrap()
            }
        }
        let now = Arc::new(Mutex::new(Duration::from_secs(10)));
        let hub = Telemetry::new();
        let proxy = hub.proxy("registry-0", Arc::new(Shared(now.clone())));
        assert!(!hub.prometheus("registry-0").contains("config_version"));
        let config = MeshConfig::default();
        proxy.control_contact();
        proxy.config_in_force(3, &config);
        proxy.config_in_force(4, &config);
        *now.lock().unwrap() = Duration::from_millis(12_500);
        let text = hub.prometheus("registry-0");
        assert!(text.contains("\nmeshsim_config_version 4\n"), "{text}");
        assert!(
            text.contains("\nmeshsim_config_staleness_seconds 2.500\n"),
            "{text}"
        );
        for verdict in ["allow", "deny", "deny"] {
            proxy.authz(AuthzDecision {
                service: "registry".into(),
                config_version: 4,
                principal: "p".into(),
                method: "GET".into(),
                raw_target: "/".into(),
                verdict: verdict.into(),
            });
        }
        let report = hub.report();
        assert_eq!(
            report.versions["registry-0"],
            [(10_000_000, 3), (10_000_000, 4)]
        );
        assert_eq!(report.configs.keys().copied().collect::<Vec<_>>(), [3, 4]);
        let caller = report.callers[&("registry".to_owned(), "p".to_owned())];
        assert_eq!((caller.allowed, caller.denied), (1, 2));
        assert_eq!(caller.last_allowed_us, Some(12_500_000));
    }
}
