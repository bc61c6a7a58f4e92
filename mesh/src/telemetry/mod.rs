//! Telemetry: golden metrics, W3C trace context, spans, the access log, and
//! the run-wide evidence that scenario checks read.
//!
//! One [`Telemetry`] exists per run (or per deployment); each proxy records
//! through its own [`ProxyTelemetry`], stamped with that host's run time.
//! * Metrics, Linkerd-style: `request_total` by direction × service × route
//!   × peer identity × status class, and `response_latency_ms` from an
//!   HdrHistogram; rendered as Prometheus text on the admin port.
//! * Trace context: a `traceparent` is parsed or created, propagated, and
//!   every hop records a span with its parent.
//! * A structured access log (bounded, and emitted through `tracing`).
//! * Evidence for checks: attempts and original requests per service per
//!   second (retry amplification), outcomes per endpoint, outlier events, and
//!   every distinct authorization decision (for the independent oracle),
//!   per caller when it was last admitted and first refused, and the
//!   config each proxy held at each version (so checks can judge a decision
//!   by the policy of the version the deciding proxy had).
//! * Each proxy's config version and staleness (time since the control
//!   plane last answered), as Prometheus gauges.
//!
//! Layout: this file is the hub (one per run) and its state; [`recorder`]
//! is a proxy's handle into it; [`metrics`] the counters and latency
//! histograms; [`trace`] trace context and spans; [`access_log`];
//! [`evidence`] what checks read after a run; [`prometheus`] the text the
//! admin port serves.

mod access_log;
mod evidence;
mod metrics;
mod prometheus;
mod recorder;
#[cfg(test)]
mod testing;
mod trace;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use seam::Clock;

use crate::config::MeshConfig;

pub use access_log::AccessLogEntry;
pub use evidence::{
    AuthzDecision, CallerTally, EndpointTally, MeshEvent, RouteStats, ServiceTally, TelemetryReport,
};
pub use metrics::Direction;
pub use recorder::{ProxyTelemetry, RequestRecord};
pub use trace::{Span, TraceContext, new_span_id, new_trace, span_hex};

use evidence::route_stats;
use metrics::{CounterKey, LatencyKey};
use prometheus::render_prometheus;

/// Access-log entries kept per proxy.
const ACCESS_LOG_MAX: usize = 1024;
/// Spans kept per proxy.
const SPANS_MAX: usize = 4096;
/// Outlier and other mesh events kept per run.
const EVENTS_MAX: usize = 100_000;
/// Distinct authorization decisions kept per run.
const AUTHZ_DECISIONS_MAX: usize = 100_000;

/// What a proxy knows of its config: the version in force and when the
/// control plane last answered.
struct ConfigState {
    version: u64,
    last_contact: Option<Duration>,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct ProxyState {
    counters: BTreeMap<CounterKey, u64>,
    latency: BTreeMap<LatencyKey, Histogram<u64>>,
    access_log: VecDeque<AccessLogEntry>,
    spans: VecDeque<Span>,
    config: Option<ConfigState>,
}

#[derive(Default)]
struct HubState {
    proxies: BTreeMap<String, ProxyState>,
    services: BTreeMap<(String, u64), ServiceTally>,
    endpoints: BTreeMap<(String, u64), EndpointTally>,
    events: Vec<MeshEvent>,
    authz: BTreeMap<AuthzDecision, u64>,
    callers: BTreeMap<(String, String), CallerTally>,
    configs: BTreeMap<u64, Arc<MeshConfig>>,
    versions: BTreeMap<String, Vec<(u64, u64)>>,
}

/// Run-wide telemetry. Cloning shares it.
#[derive(Clone, Default)]
pub struct Telemetry(Arc<Mutex<HubState>>);

impl Telemetry {
    /// A fresh, empty hub.
    pub fn new() -> Self {
        Telemetry::default()
    }

    /// The handle one proxy records through.
    pub fn proxy(&self, host: &str, clock: Arc<dyn Clock>) -> ProxyTelemetry {
        ProxyTelemetry {
            host: host.into(),
            clock,
            hub: self.clone(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        f(&mut self.0.lock().expect("telemetry poisoned"))
    }

    /// A copy of the run-wide evidence.
    pub fn report(&self) -> TelemetryReport {
        self.with(|hub| TelemetryReport {
            services: hub.services.clone(),
            endpoints: hub.endpoints.clone(),
            events: hub.events.clone(),
            authz: hub.authz.iter().map(|(d, n)| (d.clone(), *n)).collect(),
            callers: hub.callers.clone(),
            configs: hub
                .configs
                .iter()
                .map(|(v, c)| (*v, MeshConfig::clone(c)))
                .collect(),
            versions: hub.versions.clone(),
            routes: route_stats(hub),
        })
    }

    /// The Prometheus text of one proxy.
    pub fn prometheus(&self, host: &str) -> String {
        self.with(|hub| {
            hub.proxies.get(host).map_or_else(
                || render_prometheus(&ProxyState::default()),
                render_prometheus,
            )
        })
    }

    /// The access log of one proxy (oldest first).
    pub fn access_log(&self, host: &str) -> Vec<AccessLogEntry> {
        self.with(|hub| {
            hub.proxies
                .get(host)
                .map(|p| p.access_log.iter().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Every span kept, across proxies, in host order then time order.
    pub fn spans(&self) -> Vec<Span> {
        self.with(|hub| {
            hub.proxies
                .values()
                .flat_map(|p| p.spans.iter().cloned())
                .collect()
        })
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() == max {
        queue.pop_front();
    }
    queue.push_back(item);
}
