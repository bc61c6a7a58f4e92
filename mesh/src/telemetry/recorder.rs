//! A proxy's handle into the hub: every finished request becomes metrics,
//! an access-log entry and a span, stamped with the host's run time.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use seam::Clock;

use super::access_log::AccessLogEntry;
use super::metrics::{
    Direction, OVERFLOW_AUTHORITY, ResponseKey, SERIES_MAX, SeriesKey, TcpKey,
    new_latency_histogram,
};
use super::trace::{Span, TraceContext, span_hex};
use super::{ACCESS_LOG_MAX, ProxyState, SPANS_MAX, Telemetry, push_bounded};

/// What a finished request contributes to metrics, log and trace.
///
/// Labels are shared strings ([`label`]): they go into a series key, the
/// access log and maybe a span, and the ones a proxy knows ahead (its
/// service, a peer's identity) cost a reference count per request.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Which listener: metrics and spans are split by direction.
    pub direction: Direction,
    /// The service the request was for (the `dst_service` label).
    pub service: Arc<str>,
    /// `Host`/`:authority` as received, without the port (the `authority`
    /// label); `None` means the service name.
    pub authority: Option<Arc<str>>,
    /// The route that matched, `default` if none (the `route` label).
    pub route: Arc<str>,
    /// Peer identity label.
    pub peer: Arc<str>,
    /// HTTP method, for the access log.
    pub method: http::Method,
    /// The normalized target, as authorization and routing saw it.
    pub path: String,
    /// Status sent back.
    pub status: u16,
    /// Endpoint host of the last attempt.
    pub endpoint: Arc<str>,
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

impl RequestRecord {
    /// A request as it arrives: its method, when it came and its trace.
    /// The labels stay empty (and shared) until the proxy learns them.
    pub fn arriving(
        direction: Direction,
        method: &http::Method,
        started: Duration,
        trace: TraceContext,
        span_id: [u8; 8],
        parent_id: Option<[u8; 8]>,
    ) -> Self {
        RequestRecord {
            direction,
            service: label(""),
            authority: None,
            route: label(""),
            peer: label(""),
            method: method.clone(),
            path: String::new(),
            status: 0,
            endpoint: label(""),
            attempts: 0,
            started,
            trace,
            span_id,
            parent_id,
            proxy_error: None,
        }
    }
}

/// A shared label. The empty one is shared too, so a record starts
/// without allocating.
pub fn label(text: &str) -> Arc<str> {
    static EMPTY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
    if text.is_empty() {
        EMPTY.clone()
    } else {
        Arc::from(text)
    }
}

/// The route label of a request no route matched.
pub fn default_route() -> Arc<str> {
    static DEFAULT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("default"));
    DEFAULT.clone()
}

/// One proxy's recorder.
#[derive(Clone)]
pub struct ProxyTelemetry {
    pub(super) host: Arc<str>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) hub: Telemetry,
    /// The proxy's own namespace: `dst_namespace` of inbound requests.
    pub(super) namespace: Arc<str>,
}

/// An accepted connection, counted open until dropped.
pub struct ConnectionGuard {
    hub: Telemetry,
    host: Arc<str>,
    key: TcpKey,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.hub.with(|hub| {
            if let Some(stats) = hub
                .proxies
                .get_mut(&*self.host)
                .and_then(|p| p.tcp.get_mut(&self.key))
            {
                stats.open = stats.open.saturating_sub(1);
            }
        });
    }
}

/// The namespace of a SPIFFE ID written `spiffe://<td>/ns/<ns>/sa/<sa>`.
fn namespace_of(spiffe_id: &str) -> Option<&str> {
    let (_, path) = spiffe_id.strip_prefix("spiffe://")?.split_once('/')?;
    let rest = path.strip_prefix("ns/")?;
    Some(
        rest.split_once('/')
            .map_or(rest, |(namespace, _)| namespace),
    )
}

/// Whether a new label set `key` must be folded into the overflow series.
fn over_cap<K: Ord, V>(map: &std::collections::BTreeMap<K, V>, key: &K) -> bool {
    map.len() >= SERIES_MAX && !map.contains_key(key)
}

/// The series that absorbs label sets beyond the cap.
fn overflow(key: SeriesKey) -> SeriesKey {
    SeriesKey {
        authority: OVERFLOW_AUTHORITY.into(),
        peer_id: label(""),
        ..key
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

    /// The same recorder, labelling inbound requests with `namespace`.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Counts a connection a listener accepted, open until the guard drops
    /// (`tcp_open_total`, `tcp_open_connections`). `tls`: mTLS (inbound)
    /// or the app's plaintext loopback connection (outbound).
    pub fn connection(&self, direction: Direction, tls: bool) -> ConnectionGuard {
        let key = TcpKey { direction, tls };
        self.hub.with(|hub| {
            let proxy = hub.proxies.entry(self.host.to_string()).or_default();
            let stats = proxy.tcp.entry(key).or_default();
            stats.open += 1;
            stats.total += 1;
        });
        ConnectionGuard {
            hub: self.hub.clone(),
            host: self.host.clone(),
            key,
        }
    }

    fn series(&self, record: &RequestRecord) -> SeriesKey {
        let dst_namespace = match record.direction {
            Direction::Outbound => match namespace_of(&record.peer) {
                Some(namespace) if namespace != &*self.namespace => label(namespace),
                _ => self.namespace.clone(),
            },
            Direction::Inbound => self.namespace.clone(),
        };
        SeriesKey {
            direction: record.direction,
            authority: record
                .authority
                .clone()
                .unwrap_or_else(|| record.service.clone()),
            dst_service: record.service.clone(),
            dst_namespace,
            peer_id: record.peer.clone(),
            route: record.route.clone(),
        }
    }

    pub(super) fn second(&self) -> u64 {
        self.now().as_secs()
    }

    /// Records a finished request: counters, latency, access log, span.
    /// The record's strings move into the entry, and a span is built only
    /// when the trace is sampled: this runs on every request.
    pub fn request(&self, record: RequestRecord) {
        let now = self.now();
        let latency_us = now.saturating_sub(record.started).as_micros() as u64;
        let at_us = now.as_micros() as u64;
        tracing::debug!(
            target: "meshsim::access",
            host = &*self.host,
            at_us,
            direction = record.direction.as_str(),
            service = %record.service,
            route = %record.route,
            method = %record.method,
            path = %record.path,
            status = record.status,
            peer = %record.peer,
            attempts = record.attempts,
            latency_us,
            trace_id = %record.trace.trace_hex(),
            proxy_error = %record.proxy_error.as_deref().unwrap_or_default(),
        );
        let span = record.trace.sampled().then(|| Span {
            trace_id: record.trace.trace_hex(),
            span_id: span_hex(record.span_id),
            parent_id: record.parent_id.map(span_hex),
            name: format!("{} {}", record.direction.as_str(), record.service),
            host: self.host.to_string(),
            direction: record.direction,
            start_us: record.started.as_micros() as u64,
            end_us: at_us,
            status: record.status,
        });
        let series = self.series(&record);
        self.hub.with(|hub| {
            let proxy = proxy_state(&mut hub.proxies, &self.host);
            record_metrics(proxy, series, &record, latency_us);
            let entry = AccessLogEntry {
                at_us,
                direction: record.direction,
                service: record.service,
                route: record.route,
                method: record.method,
                path: record.path,
                status: record.status,
                peer: record.peer,
                endpoint: record.endpoint,
                attempts: record.attempts,
                latency_us,
                trace_id: record.trace.trace_id,
                proxy_error: record.proxy_error.unwrap_or_default(),
            };
            push_bounded(&mut proxy.access_log, entry, ACCESS_LOG_MAX);
            if let Some(span) = span {
                push_bounded(&mut proxy.spans, span, SPANS_MAX);
            }
        });
    }
}

/// The state of `host`, allocating its name only the first time.
fn proxy_state<'a>(
    proxies: &'a mut std::collections::BTreeMap<String, ProxyState>,
    host: &str,
) -> &'a mut ProxyState {
    if !proxies.contains_key(host) {
        proxies.insert(host.to_owned(), ProxyState::default());
    }
    proxies.get_mut(host).expect("inserted above")
}

/// Adds one to the counter of `key`, cloning the key only for a new series.
fn count<K: Ord + Clone>(map: &mut std::collections::BTreeMap<K, u64>, key: &K) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.clone(), 1);
        }
    }
}

/// The request's counters and latency, under the series caps.
fn record_metrics(
    proxy: &mut ProxyState,
    series: SeriesKey,
    record: &RequestRecord,
    latency_us: u64,
) {
    let series = if over_cap(&proxy.requests, &series) {
        overflow(series)
    } else {
        series
    };
    count(&mut proxy.requests, &series);
    let mut response = ResponseKey {
        series,
        status_code: record.status,
    };
    if over_cap(&proxy.responses, &response) {
        response.series = overflow(response.series);
    }
    proxy
        .responses
        .entry(response)
        .or_default()
        .record(latency_us);
    if record.direction == Direction::Outbound {
        proxy
            .route_latency
            .entry(record.route.clone())
            .or_insert_with(new_latency_histogram)
            .saturating_record(latency_us.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::namespace_of;

    #[test]
    fn namespace_comes_from_the_spiffe_id() {
        assert_eq!(namespace_of("spiffe://td/ns/rec/sa/gateway"), Some("rec"));
        assert_eq!(namespace_of("spiffe://td/sa/gateway"), None);
        assert_eq!(namespace_of("spiffe://td/ns/rec"), Some("rec"));
        assert_eq!(namespace_of(""), None);
    }
}
