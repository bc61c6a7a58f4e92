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

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::Rng;
use seam::Clock;
use serde::Serialize;

use crate::config::MeshConfig;

/// Access-log entries kept per proxy.
const ACCESS_LOG_MAX: usize = 1024;
/// Spans kept per proxy.
const SPANS_MAX: usize = 4096;
/// Outlier and other mesh events kept per run.
const EVENTS_MAX: usize = 100_000;
/// Distinct authorization decisions kept per run.
const AUTHZ_DECISIONS_MAX: usize = 100_000;
/// Linkerd's latency buckets, in milliseconds.
const LATENCY_BUCKETS_MS: &[u64] = &[
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
    10_000, 20_000, 30_000, 40_000, 50_000,
];

/// Which listener handled a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Local app → mesh.
    Outbound,
    /// Mesh → local app.
    Inbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CounterKey {
    direction: Direction,
    service: String,
    route: String,
    peer: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LatencyKey {
    direction: Direction,
    service: String,
    route: String,
}

/// One finished request, as a proxy saw it.
#[derive(Clone, Debug, Serialize)]
pub struct AccessLogEntry {
    /// Run time at completion, µs.
    pub at_us: u64,
    /// Listener.
    pub direction: Direction,
    /// Destination service (outbound) or own service (inbound).
    pub service: String,
    /// Route name.
    pub route: String,
    /// Method.
    pub method: String,
    /// Normalized request target.
    pub path: String,
    /// Status sent back.
    pub status: u16,
    /// The other side's identity (server for outbound, client for inbound).
    pub peer: String,
    /// Endpoint host of the last attempt (outbound).
    pub endpoint: String,
    /// Attempts made (outbound).
    pub attempts: u32,
    /// Time in the proxy, µs.
    pub latency_us: u64,
    /// Trace id.
    pub trace_id: String,
    /// Why the proxy answered itself, if it did.
    pub proxy_error: String,
}

/// A span: one hop of one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The caller's span, if any.
    pub parent_id: Option<String>,
    /// `outbound registry` or `inbound registry`.
    pub name: String,
    /// Host that recorded it.
    pub host: String,
    /// Run time at start, µs.
    pub start_us: u64,
    /// Run time at end, µs.
    pub end_us: u64,
    /// Status.
    pub status: u16,
}

/// A W3C trace context (`traceparent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// Trace id (never all zero).
    pub trace_id: [u8; 16],
    /// The caller's span id (never all zero).
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceContext {
    /// Parses a `traceparent` header (version 00; ids lower-case hex and not
    /// all zero). Anything else is ignored, as the spec asks.
    pub fn parse(value: &str) -> Option<TraceContext> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = unhex::<16>(trace)?;
        let parent_id = unhex::<8>(parent)?;
        let [flags] = unhex::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The header value naming `span_id` as the parent of the next hop.
    pub fn header_for(&self, span_id: [u8; 8]) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&span_id),
            self.flags
        )
    }

    /// Trace id as hex.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// Draws a non-zero span id.
pub fn new_span_id(rng: &mut impl Rng) -> [u8; 8] {
    loop {
        let id: [u8; 8] = rng.random();
        if id != [0; 8] {
            return id;
        }
    }
}

/// The context of a request that arrives without one (sampled).
pub fn new_trace(rng: &mut impl Rng) -> TraceContext {
    loop {
        let trace_id: [u8; 16] = rng.random();
        if trace_id != [0; 16] {
            return TraceContext {
                trace_id,
                parent_id: [0; 8],
                flags: 1,
            };
        }
    }
}

/// Hex form of a span id.
pub fn span_hex(id: [u8; 8]) -> String {
    hex(&id)
}

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
    /// Service.
    pub service: String,
    /// Endpoint host.
    pub endpoint: String,
    /// Free-form detail.
    pub detail: String,
}

/// One distinct inbound authorization decision.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AuthzDecision {
    /// The service whose policy decided.
    pub service: String,
    /// Snapshot version of the policy.
    pub config_version: u64,
    /// Caller identity.
    pub principal: String,
    /// Method.
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

/// What a finished request contributes to metrics, log and trace.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Listener.
    pub direction: Direction,
    /// Service label.
    pub service: String,
    /// Route label.
    pub route: String,
    /// Peer identity label.
    pub peer: String,
    /// Method.
    pub method: String,
    /// Normalized target.
    pub path: String,
    /// Status sent back.
    pub status: u16,
    /// Endpoint host of the last attempt.
    pub endpoint: String,
    /// Attempts made.
    pub attempts: u32,
    /// Run time when the proxy got the request.
    pub started: Duration,
    /// Trace context of this hop.
    pub trace: TraceContext,
    /// This hop's span id.
    pub span_id: [u8; 8],
    /// The caller's span id, if the request carried one.
    pub parent_id: Option<[u8; 8]>,
    /// Why the proxy answered itself, if it did.
    pub proxy_error: Option<String>,
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
    /// Requests.
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

fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn route_stats(hub: &HubState) -> BTreeMap<String, RouteStats> {
    let mut routes: BTreeMap<String, RouteStats> = BTreeMap::new();
    for proxy in hub.proxies.values() {
        for (key, count) in &proxy.counters {
            if key.direction == Direction::Outbound {
                let stats = routes.entry(key.route.clone()).or_default();
                stats.total += count;
                if key.status_class == "5xx" {
                    stats.failed += count;
                }
            }
        }
        for (key, histogram) in &proxy.latency {
            if key.direction == Direction::Outbound {
                let stats = routes.entry(key.route.clone()).or_default();
                let _ = stats.latency_us.add(histogram);
            }
        }
    }
    routes
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

/// One proxy's recorder.
#[derive(Clone)]
pub struct ProxyTelemetry {
    host: Arc<str>,
    clock: Arc<dyn Clock>,
    hub: Telemetry,
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl ProxyTelemetry {
    /// Run time now.
    pub fn now(&self) -> Duration {
        self.clock.run_elapsed()
    }

    /// The host this recorder belongs to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The run-wide hub.
    pub fn hub(&self) -> &Telemetry {
        &self.hub
    }

    fn second(&self) -> u64 {
        self.now().as_secs()
    }

    /// Records a finished request: counters, latency, access log, span.
    pub fn request(&self, record: RequestRecord) {
        let now = self.now();
        let latency_us = now.saturating_sub(record.started).as_micros() as u64;
        let entry = AccessLogEntry {
            at_us: now.as_micros() as u64,
            direction: record.direction,
            service: record.service.clone(),
            route: record.route.clone(),
            method: record.method.clone(),
            path: record.path.clone(),
            status: record.status,
            peer: record.peer.clone(),
            endpoint: record.endpoint.clone(),
            attempts: record.attempts,
            latency_us,
            trace_id: record.trace.trace_hex(),
            proxy_error: record.proxy_error.clone().unwrap_or_default(),
        };
        tracing::debug!(
            target: "meshsim::access",
            host = &*self.host,
            direction = record.direction.as_str(),
            service = %entry.service,
            route = %entry.route,
            method = %entry.method,
            path = %entry.path,
            status = entry.status,
            peer = %entry.peer,
            attempts = entry.attempts,
            latency_us,
            trace_id = %entry.trace_id,
            proxy_error = %entry.proxy_error,
        );
        let span = Span {
            trace_id: entry.trace_id.clone(),
            span_id: span_hex(record.span_id),
            parent_id: record.parent_id.map(span_hex),
            name: format!("{} {}", record.direction.as_str(), record.service),
            host: self.host.to_string(),
            start_us: record.started.as_micros() as u64,
            end_us: entry.at_us,
            status: record.status,
        };
        self.hub.with(|hub| {
            let proxy = hub.proxies.entry(self.host.to_string()).or_default();
            let counter = CounterKey {
                direction: record.direction,
                service: record.service.clone(),
                route: record.route.clone(),
                peer: record.peer,
                status_class: status_class(record.status),
            };
            *proxy.counters.entry(counter).or_default() += 1;
            let histogram = proxy
                .latency
                .entry(LatencyKey {
                    direction: record.direction,
                    service: record.service,
                    route: record.route,
                })
                .or_insert_with(new_latency_histogram);
            histogram.saturating_record(latency_us.max(1));
            push_bounded(&mut proxy.access_log, entry, ACCESS_LOG_MAX);
            push_bounded(&mut proxy.spans, span, SPANS_MAX);
        });
    }

    fn tally(&self, service: &str, f: impl FnOnce(&mut ServiceTally)) {
        let key = (service.to_owned(), self.second());
        self.hub.with(|hub| f(hub.services.entry(key).or_default()));
    }

    /// An app's request for `service` (before any retry).
    pub fn original_request(&self, service: &str) {
        self.tally(service, |t| t.requests += 1);
    }

    /// An attempt that was sent to an endpoint of `service`.
    pub fn attempt(&self, service: &str, retry: bool) {
        self.tally(service, |t| {
            t.attempts += 1;
            if retry {
                t.retries += 1;
            }
        });
    }

    /// A retry the budget refused.
    pub fn budget_exhausted(&self, service: &str) {
        self.tally(service, |t| t.budget_exhausted += 1);
    }

    /// A request failed fast by a circuit breaker.
    pub fn circuit_open(&self, service: &str) {
        self.tally(service, |t| t.circuit_open += 1);
    }

    /// The outcome of one attempt at one endpoint.
    pub fn endpoint_outcome(&self, endpoint: &str, ok: bool) {
        let key = (endpoint.to_owned(), self.second());
        self.hub.with(|hub| {
            let tally = hub.endpoints.entry(key).or_default();
            if ok {
                tally.ok += 1;
            } else {
                tally.failed += 1;
            }
        });
    }

    /// A discrete event.
    pub fn event(&self, kind: &str, service: &str, endpoint: &str, detail: String) {
        let event = MeshEvent {
            at_us: self.now().as_micros() as u64,
            proxy: self.host.to_string(),
            kind: kind.to_owned(),
            service: service.to_owned(),
            endpoint: endpoint.to_owned(),
            detail,
        };
        self.hub.with(|hub| {
            if hub.events.len() < EVENTS_MAX {
                hub.events.push(event);
            }
        });
    }

    /// An authorization decision (distinct decisions are kept, with counts;
    /// per caller, when it was last allowed and first and last denied).
    pub fn authz(&self, decision: AuthzDecision) {
        let at_us = self.now().as_micros() as u64;
        self.hub.with(|hub| {
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
            hub.versions
                .entry(self.host.to_string())
                .or_default()
                .push((at_us, snapshot_version));
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

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() == max {
        queue.pop_front();
    }
    queue.push_back(item);
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_prometheus(proxy: &ProxyState) -> String {
    let mut out = String::new();
    out.push_str("# HELP request_total Requests, by direction, service, route, peer identity and status class.\n");
    out.push_str("# TYPE request_total counter\n");
    for (key, count) in &proxy.counters {
        let _ = writeln!(
            out,
            "request_total{{direction=\"{}\",service=\"{}\",route=\"{}\",peer=\"{}\",status_class=\"{}\"}} {count}",
            key.direction.as_str(),
            escape_label(&key.service),
            escape_label(&key.route),
            escape_label(&key.peer),
            key.status_class
        );
    }
    out.push_str(
        "# HELP response_latency_ms Time in the proxy until the response, in milliseconds.\n",
    );
    out.push_str("# TYPE response_latency_ms histogram\n");
    for (key, histogram) in &proxy.latency {
        let labels = format!(
            "direction=\"{}\",service=\"{}\",route=\"{}\"",
            key.direction.as_str(),
            escape_label(&key.service),
            escape_label(&key.route)
        );
        for bucket_ms in LATENCY_BUCKETS_MS {
            let count = histogram.count_between(0, bucket_ms * 1000);
            let _ = writeln!(
                out,
                "response_latency_ms_bucket{{{labels},le=\"{bucket_ms}\"}} {count}"
            );
        }
        let total = histogram.len();
        let sum_ms = histogram.mean() * total as f64 / 1000.0;
        let _ = writeln!(
            out,
            "response_latency_ms_bucket{{{labels},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(out, "response_latency_ms_sum{{{labels}}} {sum_ms:.3}");
        let _ = writeln!(out, "response_latency_ms_count{{{labels}}} {total}");
    }
    if let Some(config) = &proxy.config {
        out.push_str(
            "# HELP config_version The control-plane snapshot version this proxy serves from.\n",
        );
        out.push_str("# TYPE config_version gauge\n");
        let _ = writeln!(out, "config_version {}", config.version);
        out.push_str("# HELP config_staleness_seconds Time since the control plane last answered this proxy (-1: never).\n");
        out.push_str("# TYPE config_staleness_seconds gauge\n");
        let staleness = config.last_contact.map_or(-1.0, |at| {
            config.clock.run_elapsed().saturating_sub(at).as_secs_f64()
        });
        let _ = writeln!(out, "config_staleness_seconds {staleness:.3}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FixedClock(Duration);

    impl Clock for FixedClock {
        fn wall(&self) -> std::time::SystemTime {
            std::time::SystemTime::UNIX_EPOCH
        }
        fn run_elapsed(&self) -> Duration {
            self.0
        }
    }

    #[test]
    fn traceparent_parses_and_refuses_what_the_spec_refuses() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(good).unwrap();
        assert_eq!(context.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.flags, 1);
        assert_eq!(context.header_for(context.parent_id), good);
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        let mut rng = seam::Seed::new(7).rng();
        let fresh = new_trace(&mut rng);
        let header = fresh.header_for(new_span_id(&mut rng));
        assert_eq!(
            TraceContext::parse(&header).map(|c| c.trace_id),
            Some(fresh.trace_id)
        );
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let hub = Telemetry::new();
        let proxy = hub.proxy("registry-0", Arc::new(FixedClock(Duration::from_millis(7))));
        let mut rng = seam::Seed::new(1).rng();
        for status in [200, 200, 503] {
            proxy.request(RequestRecord {
                direction: Direction::Inbound,
                service: "registry".into(),
                route: "default".into(),
                peer: "spiffe://td/ns/rec/sa/gateway".into(),
                method: "GET".into(),
                path: "/recs".into(),
                status,
                endpoint: String::new(),
                attempts: 1,
                started: Duration::from_millis(4),
                trace: new_trace(&mut rng),
                span_id: new_span_id(&mut rng),
                parent_id: None,
                proxy_error: None,
            });
        }
        let text = hub.prometheus("registry-0");
        assert!(text.contains("request_total{direction=\"inbound\",service=\"registry\",route=\"default\",peer=\"spiffe://td/ns/rec/sa/gateway\",status_class=\"2xx\"} 2"), "{text}");
        assert!(text.contains("status_class=\"5xx\"} 1"), "{text}");
        assert!(text.contains("le=\"2\"} 0"), "{text}");
        assert!(text.contains("le=\"3\"} 3"), "{text}");
        assert!(text.contains("response_latency_ms_count{direction=\"inbound\",service=\"registry\",route=\"default\"} 3"), "{text}");
        assert_eq!(hub.access_log("registry-0").len(), 3);
        assert_eq!(hub.spans().len(), 3);
    }

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
        assert!(text.contains("\nconfig_version 4\n"), "{text}");
        assert!(
            text.contains("\nconfig_staleness_seconds 2.500\n"),
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
