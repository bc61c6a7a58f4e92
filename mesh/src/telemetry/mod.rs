//! Telemetry: golden metrics, W3C trace context, spans, the access log, and
//! the run-wide evidence that scenario checks read.
//!
//! One [`Telemetry`] exists per run (or per deployment); each proxy records
//! through its own [`ProxyTelemetry`], stamped with that host's run time.
//! * Metrics in Linkerd's shape (`request_total`, `response_total`,
//!   `response_latency_ms`, `tcp_open_*`, with `direction`, `authority`,
//!   `dst_service`, `dst_namespace`, `tls`, `client_id`/`server_id`), plus
//!   meshsim's own under `meshsim_`; rendered as Prometheus text on the
//!   admin port and, for a whole run, as `metrics.prom`.
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
//! Retention: a simulated or `run --real` run keeps what the checks read
//! ([`Retention::Run`]). A long-lived process (`meshsim up`'s sidecars)
//! keeps a window ([`Retention::LongLived`]): per-second tallies for the
//! last [`LONG_LIVED_TALLY_SECONDS`], at most [`LONG_LIVED_RECORDS_MAX`]
//! events, authorization decisions, callers and config versions, and the
//! per-proxy caps every run has (access log, spans, [`metrics::SERIES_MAX`]
//! label sets per family), so memory stays flat under any request rate.
//!
//! Layout: this file is the hub (one per run) and its state; [`recorder`]
//! is a proxy's handle into it; [`metrics`] the counters and latency
//! histograms; [`trace`] trace context and spans; [`access_log`];
//! [`evidence`] what checks read after a run; [`prometheus`] the text the
//! admin port serves; [`otlp`] spans as OTLP JSON.

mod access_log;
mod evidence;
mod metrics;
mod otlp;
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
pub use otlp::{otlp_json, service_of_host};
pub use recorder::{ConnectionGuard, ProxyTelemetry, RequestRecord, default_route, label};
pub use trace::{Span, TRACEPARENT_HEADER, TraceContext, new_span_id, new_trace, span_hex};

use evidence::{Tallies, route_stats};
use metrics::{MeshCounter, ResponseKey, ResponseStats, SeriesKey, TcpKey, TcpStats};
use prometheus::render_prometheus;

/// Access-log entries kept per proxy.
const ACCESS_LOG_MAX: usize = 1024;
/// Spans kept per proxy.
const SPANS_MAX: usize = 4096;
/// Outlier and other mesh events kept per run.
const EVENTS_MAX: usize = 100_000;
/// Distinct authorization decisions kept per run.
const AUTHZ_DECISIONS_MAX: usize = 100_000;
/// Seconds of per-second tallies a long-lived process keeps.
pub const LONG_LIVED_TALLY_SECONDS: u64 = 300;
/// Events, authorization decisions, callers and config versions a
/// long-lived process keeps (each).
pub const LONG_LIVED_RECORDS_MAX: usize = 1000;

/// How much of its history a hub keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// A run: everything the checks read afterwards (bounded by the run).
    #[default]
    Run,
    /// A process that runs until stopped: windows and small caps only.
    LongLived,
}

impl Retention {
    fn records_max(self, run_max: usize) -> usize {
        match self {
            Retention::Run => run_max,
            Retention::LongLived => LONG_LIVED_RECORDS_MAX,
        }
    }
}

/// What a proxy knows of its config: the version in force and when the
/// control plane last answered.
struct ConfigState {
    version: u64,
    last_contact: Option<Duration>,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct ProxyState {
    requests: BTreeMap<SeriesKey, u64>,
    responses: BTreeMap<ResponseKey, ResponseStats>,
    /// Outbound latency by route, for the SLO checks (HdrHistogram).
    route_latency: BTreeMap<Arc<str>, Histogram<u64>>,
    tcp: BTreeMap<TcpKey, TcpStats>,
    mesh_counters: BTreeMap<(MeshCounter, String), u64>,
    access_log: VecDeque<AccessLogEntry>,
    spans: VecDeque<Span>,
    config: Option<ConfigState>,
}

#[derive(Default)]
struct HubState {
    retention: Retention,
    /// The latest second a per-second tally was pruned at (long-lived).
    pruned_second: u64,
    proxies: BTreeMap<String, ProxyState>,
    services: Tallies<ServiceTally>,
    endpoints: Tallies<EndpointTally>,
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
            namespace: "".into(),
        }
    }

    /// Keeps only windows and small caps from now on: for processes that
    /// run until stopped (`meshsim up`), never for a run the checks judge.
    pub fn set_retention(&self, retention: Retention) {
        self.with(|hub| hub.retention = retention);
    }

    fn with<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        f(&mut self.0.lock().expect("telemetry poisoned"))
    }

    /// A copy of the run-wide evidence.
    pub fn report(&self) -> TelemetryReport {
        self.with(|hub| TelemetryReport {
            services: evidence::flatten(&hub.services),
            endpoints: evidence::flatten(&hub.endpoints),
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

    /// The Prometheus text of one proxy (what its admin port serves).
    pub fn prometheus(&self, host: &str) -> String {
        self.with(|hub| {
            let empty = ProxyState::default();
            let proxy = hub.proxies.get(host).unwrap_or(&empty);
            render_prometheus(&[(None, proxy)])
        })
    }

    /// The Prometheus text of every proxy of the run, each series labelled
    /// `pod="<host>"` (a run's `metrics.prom`).
    pub fn prometheus_all(&self) -> String {
        self.with(|hub| {
            let proxies: Vec<_> = hub
                .proxies
                .iter()
                .map(|(host, proxy)| (Some(host.as_str()), proxy))
                .collect();
            render_prometheus(&proxies)
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
