//! A proxy's handle into the hub: every finished request becomes metrics,
//! an access-log entry and a span, stamped with the host's run time.

use std::sync::Arc;
use std::time::Duration;

use seam::Clock;

use super::access_log::AccessLogEntry;
use super::metrics::{CounterKey, Direction, LatencyKey, new_latency_histogram, status_class};
use super::trace::{Span, TraceContext, span_hex};
use super::{ACCESS_LOG_MAX, SPANS_MAX, Telemetry, push_bounded};

/// What a finished request contributes to metrics, log and trace.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Which listener: metrics and spans are split by direction.
    pub direction: Direction,
    /// The service the request was for (the `service` label).
    pub service: String,
    /// The route that matched, `default` if none (the `route` label).
    pub route: String,
    /// Peer identity label.
    pub peer: String,
    /// HTTP method, for the access log.
    pub method: String,
    /// The normalized target, as authorization and routing saw it.
    pub path: String,
    /// Status sent back.
    pub status: u16,
    /// Endpoint host of the last attempt.
    pub endpoint: String,
    /// Attempts made, retries included (retry amplification).
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

/// One proxy's recorder.
#[derive(Clone)]
pub struct ProxyTelemetry {
    pub(super) host: Arc<str>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) hub: Telemetry,
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

    pub(super) fn second(&self) -> u64 {
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
}
