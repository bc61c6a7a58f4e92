//! The outbound listener: local app → mesh.
//!
//! The app sends plain HTTP to its own sidecar with `Host: <service>`; only
//! connections from the loopback are served. Per request the proxy:
//! 1. resolves the service from the Host (case-insensitive, port ignored)
//!    and refuses loopback targets, so nothing reaches this host's own
//!    ports through it;
//! 2. normalizes the path and picks the route (404 if the service declares
//!    routes and none matches);
//! 3. injects the route's faults, if any;
//! 4. picks a backend of the route's traffic split, then an endpoint
//!    (load balancer, outlier detection, circuit breaker);
//! 5. sends over a multiplexed HTTP/2 mTLS connection that verifies the
//!    endpoint's SPIFFE ID, under the per-try timeout;
//! 6. retries what the route allows, with jittered backoff, inside the
//!    retry budget and the request timeout;
//! 7. records metrics, the access log and a span, propagating `traceparent`.
//!
//! Responses the proxy makes itself carry [`PROXY_ERROR_HEADER`], which
//! [`crate::client::Sidecar::is_proxy_error`] reads.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, Uri};
use rand_chacha::ChaCha12Rng;
use seam::HostEnv;

use crate::accept::{Acceptor, Admitted, CONNECTIONS_MAX};
use crate::authz::normalize_target;
use crate::client::PROXY_ERROR_HEADER;
use crate::client::pool::{RESPONSE_BYTES_MAX, clone_request};
use crate::config::{RouteConfig, ServiceConfig};
use crate::control::{Discovery, Endpoint, Snapshot};
use crate::http::{Body, RequestBody, text};
use crate::pod_secret::{self, PodSecret};
use crate::proxy::balance::{Balancer, OutlierChange, Refusal};
use crate::proxy::h2pool::{self, H2Pool, PoolError};
use crate::proxy::limits::{self, Limits, Protocol};
use crate::proxy::outlier::{Health, Transition};
use crate::proxy::retry::{self, AttemptOutcome, BudgetWindow};
use crate::proxy::routes::{self, RequestView, canonical_host};
use crate::proxy::{PEER_IDENTITY_HEADER, TRACEPARENT_HEADER, faults, strip_headers};
use crate::telemetry::{self, Direction, ProxyTelemetry, RequestRecord, TraceContext};
use crate::tls::MeshTls;
use crate::{MeshError, ports};

/// TCP connect, TLS handshake and HTTP/2 preface together (Linkerd's
/// outbound connect timeout is 1 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The policy of a service with none configured.
static DEFAULT_SERVICE: LazyLock<ServiceConfig> = LazyLock::new(ServiceConfig::default);

/// How the outbound listener runs.
#[derive(Clone)]
pub struct OutboundConfig {
    /// Deadline of a request whose route sets none.
    pub request_timeout: Duration,
    /// Where metrics, logs and spans go.
    pub telemetry: ProxyTelemetry,
    /// Header, stream and idle limits of the app-facing listener.
    pub limits: Limits,
}

struct Outbound {
    env: HostEnv,
    tls: Arc<MeshTls>,
    discovery: Discovery,
    pool: H2Pool,
    balancer: Balancer,
    budgets: Mutex<BTreeMap<String, BudgetWindow>>,
    rng: Mutex<ChaCha12Rng>,
    config: OutboundConfig,
    /// What the local app must present (loopback deployments).
    pod_secret: Option<PodSecret>,
}

/// Serves the local app until the host stops (default telemetry and limits).
pub async fn serve(
    env: HostEnv,
    tls: Arc<MeshTls>,
    discovery: Discovery,
    request_timeout: Duration,
) -> Result<(), MeshError> {
    let telemetry = telemetry::Telemetry::new().proxy(&env.name, env.clock.clone());
    let config = OutboundConfig {
        request_timeout,
        telemetry,
        limits: Limits::default(),
    };
    serve_with(env, tls, discovery, config).await
}

/// Serves the local app until the host stops.
pub async fn serve_with(
    env: HostEnv,
    tls: Arc<MeshTls>,
    discovery: Discovery,
    config: OutboundConfig,
) -> Result<(), MeshError> {
    let listener = env.net.bind(ports::PROXY_OUTBOUND).await?;
    let mut acceptor = Acceptor::new(listener, CONNECTIONS_MAX, &env, "outbound");
    let outbound = Arc::new(Outbound {
        balancer: Balancer::new(env.seed.child("balancer").rng()),
        rng: Mutex::new(env.seed.child("outbound").rng()),
        pod_secret: PodSecret::load(env.disk.as_ref()),
        env,
        tls,
        discovery,
        pool: H2Pool::default(),
        budgets: Mutex::default(),
        config,
    });
    loop {
        let Admitted { io, peer, slot } = acceptor.next().await;
        // The outbound listener serves this host's app only: a remote caller
        // would borrow this workload's identity (an open relay). Real hosts
        // bind it to 127.0.0.1; the seam binds every port on the host's
        // address, so the proxy checks the peer itself.
        if !peer.ip().is_loopback() {
            outbound.env.record(
                seam::event::OUTBOUND_REFUSED_REMOTE,
                format!("from={}", peer.ip()),
            );
            continue;
        }
        let outbound = outbound.clone();
        seam::task::spawn(async move {
            let _slot = slot;
            let _open = outbound
                .config
                .telemetry
                .connection(Direction::Outbound, false);
            let limits = outbound.config.limits.clone();
            let handler = move |request| {
                let outbound = outbound.clone();
                async move { outbound.handle(request).await }
            };
            let _ = limits::serve(io, Protocol::Http1, &limits, handler).await;
        });
    }
}

/// A response the proxy makes itself, with the reason in a header.
pub fn proxy_error(status: StatusCode, reason: &str) -> Response<Body> {
    let mut response = text(status, reason);
    response.headers_mut().insert(
        PROXY_ERROR_HEADER,
        HeaderValue::from_str(reason).unwrap_or(HeaderValue::from_static("error")),
    );
    response
}

/// The target host of a request: the authority, else the Host header.
fn target_host(request: &Request<RequestBody>) -> Option<String> {
    let raw = match request.uri().authority() {
        Some(authority) => authority.as_str().to_owned(),
        None => request
            .headers()
            .get(http::header::HOST)?
            .to_str()
            .ok()?
            .to_owned(),
    };
    let host = canonical_host(raw.rsplit('@').next().unwrap_or(&raw));
    (!host.is_empty()).then_some(host)
}

/// Names that mean this host: the proxy never forwards to them.
fn is_loopback_target(host: &str, own_name: &str) -> bool {
    // Only a name that starts with a digit or holds a colon can be an IP
    // address; parsing every service name as one cost more than the rest.
    let may_be_ip = host.starts_with(|c: char| c.is_ascii_digit()) || host.contains(':');
    host == "localhost"
        || host.ends_with(".localhost")
        || host == own_name
        || (may_be_ip
            && host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified()))
}

/// What one request needs across its attempts.
struct Exchange<'a> {
    service: &'a str,
    backend: &'a str,
    route: &'a RouteConfig,
    backend_config: &'a ServiceConfig,
    endpoints: &'a [Endpoint],
    request: Request<Body>,
}

/// How the last attempt ended.
enum Finished {
    Answered(Response<Body>),
    Failed(AttemptOutcome),
    Refused(&'static str),
}

struct Outcome {
    finished: Finished,
    attempts: u32,
    endpoint: Option<Endpoint>,
}

impl Outbound {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.discovery.snapshot_changes().borrow().clone()
    }

    async fn handle(&self, request: Request<RequestBody>) -> Response<Body> {
        if !pod_secret::admits(self.pod_secret.as_ref(), request.headers()) {
            self.env.record(
                seam::event::OUTBOUND_REFUSED_REMOTE,
                "caller without the pod secret",
            );
            return proxy_error(
                StatusCode::FORBIDDEN,
                "the outbound listener serves its own app only",
            );
        }
        let started = self.config.telemetry.now();
        let incoming = request
            .headers()
            .get(TRACEPARENT_HEADER)
            .and_then(|v| TraceContext::parse(v.as_bytes()));
        let (trace, span_id) = {
            let mut rng = self.rng.lock().expect("rng poisoned");
            // Drawn even when the app sent a context: the stream then
            // stays the same whether or not apps propagate `traceparent`.
            let fresh = telemetry::new_trace(&mut *rng);
            (incoming.unwrap_or(fresh), telemetry::new_span_id(&mut *rng))
        };
        let mut record = RequestRecord::arriving(
            Direction::Outbound,
            request.method(),
            started,
            trace,
            span_id,
            incoming.map(|c| c.parent_id),
        );
        let response = self.route_and_forward(request, &mut record).await;
        record.status = response.status().as_u16();
        record.proxy_error = response
            .headers()
            .get(PROXY_ERROR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.env.record_with("outbound.response", || {
            format!(
                "svc={} route={} ep={} status={} attempts={}",
                record.service, record.route, record.endpoint, record.status, record.attempts
            )
        });
        self.config.telemetry.request(record);
        response
    }

    async fn route_and_forward(
        &self,
        request: Request<RequestBody>,
        record: &mut RequestRecord,
    ) -> Response<Body> {
        let Some(service) = target_host(&request) else {
            return proxy_error(StatusCode::BAD_REQUEST, "no target service in Host");
        };
        record.service = telemetry::label(&service);
        if is_loopback_target(&service, &self.env.name) {
            return proxy_error(StatusCode::FORBIDDEN, "refusing a loopback target");
        }
        let raw_target = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let Ok(target) = normalize_target(&raw_target) else {
            return proxy_error(StatusCode::BAD_REQUEST, "malformed path");
        };
        record.path = target.to_target();
        let snapshot = self.snapshot();
        let service_config = snapshot
            .config
            .services
            .get(&service)
            .unwrap_or(&DEFAULT_SERVICE);
        let view = RequestView {
            host: &service,
            method: request.method(),
            path: &target.path,
            headers: request.headers(),
        };
        let Some(route) = routes::select(service_config, &view) else {
            return proxy_error(StatusCode::NOT_FOUND, "no route matches");
        };
        record.route = telemetry::label(&route.name);
        let (parts, body) = request.into_parts();
        let Ok(body) = body.read(self.config.limits.request_bytes_max).await else {
            return proxy_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        };
        if let Some(fault) = &route.fault {
            let injection = faults::draw(fault, &mut *self.rng.lock().expect("rng poisoned"));
            if let Some(delay) = injection.delay {
                tokio::time::sleep(delay).await;
            }
            if let Some(status) = injection.abort {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return proxy_error(status, "fault injected");
            }
        }
        let backend = {
            let mut rng = self.rng.lock().expect("rng poisoned");
            routes::pick_backend(&route.backends, &service, &mut *rng).to_owned()
        };
        let Some(parts) = upstream_parts(parts, &service, &target.to_target(), record) else {
            return proxy_error(StatusCode::BAD_REQUEST, "unusable target");
        };
        let backend_config = snapshot
            .config
            .services
            .get(&backend)
            .unwrap_or(&DEFAULT_SERVICE);
        let exchange = Exchange {
            service: &service,
            backend: &backend,
            route,
            backend_config,
            endpoints: snapshot.services.get(&backend).map_or(&[], Vec::as_slice),
            request: Request::from_parts(parts, body.into()),
        };
        self.config.telemetry.original_request(&backend);
        let deadline = route
            .timeout_ms
            .map_or(self.config.request_timeout, Duration::from_millis);
        // Pinned in place: `timeout` would otherwise move the whole
        // exchange future into itself, and that copy is per request.
        let exchanging = std::pin::pin!(self.exchange(&exchange, service_config));
        let Ok(outcome) = tokio::time::timeout(deadline, exchanging).await else {
            self.env.record(
                "outbound.timeout",
                format!("svc={service} after_ms={}", deadline.as_millis()),
            );
            return proxy_error(StatusCode::GATEWAY_TIMEOUT, "request timeout");
        };
        record.attempts = outcome.attempts;
        if let Some(endpoint) = outcome.endpoint {
            record.endpoint = telemetry::label(&endpoint.host);
            record.peer = endpoint.identity.uri().clone();
        }
        outcome.finished.into_response()
    }

    /// Attempts until one succeeds or the route's policy says stop.
    async fn exchange(&self, exchange: &Exchange<'_>, service_config: &ServiceConfig) -> Outcome {
        if let Some(budget) = &service_config.retry_budget {
            let mut budgets = self.budgets.lock().expect("budgets poisoned");
            let now = tokio::time::Instant::now();
            budgets
                .entry(exchange.service.to_owned())
                .or_insert_with(|| BudgetWindow::new(now))
                .deposit(budget, now);
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (finished, endpoint) = self.attempt(exchange, attempts > 1).await;
            let outcome = match &finished {
                Finished::Answered(response) => {
                    AttemptOutcome::Response(response.status().as_u16())
                }
                Finished::Failed(outcome) => *outcome,
                Finished::Refused(_) => {
                    return Outcome {
                        finished,
                        attempts,
                        endpoint,
                    };
                }
            };
            let retry = self.may_retry(exchange, service_config, attempts, outcome);
            match retry {
                Some(wait) => {
                    self.env.record(
                        "outbound.retry",
                        format!(
                            "svc={} attempt={attempts} after={outcome:?} wait_us={}",
                            exchange.backend,
                            wait.as_micros()
                        ),
                    );
                    tokio::time::sleep(wait).await;
                }
                None => {
                    return Outcome {
                        finished,
                        attempts,
                        endpoint,
                    };
                }
            }
        }
    }

    /// The backoff before the next attempt, if the route allows one.
    fn may_retry(
        &self,
        exchange: &Exchange<'_>,
        service_config: &ServiceConfig,
        attempts: u32,
        outcome: AttemptOutcome,
    ) -> Option<Duration> {
        let policy = exchange.route.retry.as_ref()?;
        let request = &exchange.request;
        let allowed = attempts < policy.max_attempts
            && retry::retryable(policy, outcome)
            && retry::may_resend(policy, request.method(), request.headers(), outcome);
        if !allowed {
            return None;
        }
        if let Some(budget) = &service_config.retry_budget {
            let mut budgets = self.budgets.lock().expect("budgets poisoned");
            let now = tokio::time::Instant::now();
            let window = budgets
                .entry(exchange.service.to_owned())
                .or_insert_with(|| BudgetWindow::new(now));
            if !window.try_withdraw(budget, now) {
                drop(budgets);
                self.config.telemetry.budget_exhausted(exchange.backend);
                self.env.record(
                    "outbound.budget_exhausted",
                    format!("svc={} attempt={attempts}", exchange.backend),
                );
                return None;
            }
        }
        let mut rng = self.rng.lock().expect("rng poisoned");
        Some(retry::backoff(policy, attempts, &mut *rng))
    }

    /// One attempt at one endpoint.
    async fn attempt(
        &self,
        exchange: &Exchange<'_>,
        is_retry: bool,
    ) -> (Finished, Option<Endpoint>) {
        if !self.tls.has_valid_leaf() {
            return (Finished::Refused("no workload certificate"), None);
        }
        let config = exchange.backend_config;
        let mut changes = Vec::new();
        let acquired = self
            .balancer
            .acquire(exchange.backend, exchange.endpoints, config, &mut changes)
            .await;
        self.report(exchange.backend, changes);
        let lease = match acquired {
            Ok(lease) => lease,
            Err(Refusal::NoEndpoints) => return (Finished::Refused("no endpoints"), None),
            Err(Refusal::PendingOverflow) => {
                self.config.telemetry.circuit_open(exchange.backend);
                return (
                    Finished::Refused("circuit open: max pending requests"),
                    None,
                );
            }
        };
        let endpoint = lease.endpoint().clone();
        let key = lease.key().to_owned();
        self.config.telemetry.attempt(exchange.backend, is_retry);
        let send = self.pool.send(
            &key,
            clone_request(&exchange.request),
            config.circuit_breaker.max_connections as usize,
            RESPONSE_BYTES_MAX,
            // Boxed: connecting (TCP, TLS, the HTTP/2 preface) is most of
            // this request's future by size, and happens once per
            // connection; unboxed, every request's future carried (and
            // hyper copied) its 6.5 KB.
            || Box::pin(self.connect(&endpoint)),
        );
        let result = match exchange.route.per_try_timeout_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), send)
                .await
                .unwrap_or(Err(PoolError::Mesh(MeshError::Timeout(ms)))),
            None => send.await,
        };
        let (finished, health) = match result {
            Ok(response) => {
                let health = if response.status().is_server_error() {
                    Health::ServerError
                } else {
                    Health::Success
                };
                (Finished::Answered(response), health)
            }
            Err(PoolError::Saturated) => {
                drop(lease);
                self.config.telemetry.circuit_open(exchange.backend);
                return (
                    Finished::Refused("circuit open: max connections"),
                    Some(endpoint),
                );
            }
            Err(PoolError::Mesh(error)) => {
                let outcome = classify(&error);
                self.env.record(
                    "outbound.attempt_failed",
                    format!("ep={} outcome={outcome:?} err={error}", endpoint.host),
                );
                if outcome != AttemptOutcome::ConnectFailure {
                    self.pool.evict(&key);
                }
                (Finished::Failed(outcome), Health::GatewayFailure)
            }
        };
        self.config
            .telemetry
            .endpoint_outcome(&endpoint.host, health == Health::Success);
        if let Some(change) = lease.finish(health, config) {
            self.report(exchange.backend, vec![change]);
        }
        (finished, Some(endpoint))
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<h2pool::H2Connection, MeshError> {
        let connecting = async {
            let io = self
                .env
                .net
                .connect(&endpoint.host, endpoint.port)
                .await
                .map_err(|source| MeshError::Connect {
                    target: format!("{}:{}", endpoint.host, endpoint.port),
                    source,
                })?;
            let stream = self
                .tls
                .connect(io, &endpoint.identity, &[b"h2"], true)
                .await?;
            self.env.record(
                seam::event::OUTBOUND_CONNECT,
                format!("ep={} id={}", endpoint.host, endpoint.identity),
            );
            h2pool::handshake(stream).await
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .unwrap_or(Err(MeshError::Connect {
                target: format!("{}:{}", endpoint.host, endpoint.port),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            }))
    }

    fn report(&self, service: &str, changes: Vec<OutlierChange>) {
        for (endpoint, change) in changes {
            let (kind, detail) = match change {
                Transition::Ejected(length) => {
                    ("outlier.eject", format!("for_ms={}", length.as_millis()))
                }
                Transition::Probation => ("outlier.probation", String::new()),
                Transition::Restored => ("outlier.restore", String::new()),
            };
            self.env
                .record(kind, format!("svc={service} ep={endpoint} {detail}"));
            self.config
                .telemetry
                .event(kind, service, &endpoint, detail);
        }
    }
}

/// The request as it crosses the mesh: hop-by-hop headers and any claimed
/// peer identity removed (only the inbound proxy may assert one), a child
/// `traceparent`, and an absolute URI for HTTP/2.
fn upstream_parts(
    mut parts: http::request::Parts,
    service: &str,
    target: &str,
    record: &RequestRecord,
) -> Option<http::request::Parts> {
    strip_headers(
        &mut parts.headers,
        &[PEER_IDENTITY_HEADER, pod_secret::HEADER, http::header::HOST],
    );
    parts.headers.insert(
        TRACEPARENT_HEADER,
        record.trace.header_value_for(record.span_id),
    );
    let mut uri = String::with_capacity("http://".len() + service.len() + target.len());
    for part in ["http://", service, target] {
        uri.push_str(part);
    }
    parts.uri = Uri::try_from(uri).ok()?;
    parts.version = http::Version::HTTP_2;
    Some(parts)
}

impl Finished {
    /// What the caller gets.
    fn into_response(self) -> Response<Body> {
        match self {
            Finished::Answered(response) => response,
            Finished::Failed(AttemptOutcome::Timeout) => {
                proxy_error(StatusCode::GATEWAY_TIMEOUT, "per-try timeout")
            }
            Finished::Failed(AttemptOutcome::ConnectFailure) => {
                proxy_error(StatusCode::BAD_GATEWAY, "connect failed")
            }
            Finished::Failed(_) => proxy_error(StatusCode::BAD_GATEWAY, "connection reset"),
            Finished::Refused(reason) => proxy_error(StatusCode::SERVICE_UNAVAILABLE, reason),
        }
    }
}

/// What a failed attempt means for retries.
/// (Connecting has its own deadline and fails as `Connect`, so `Timeout`
/// only ever comes from the per-try timeout.)
fn classify(error: &MeshError) -> AttemptOutcome {
    if error.never_sent() {
        AttemptOutcome::ConnectFailure
    } else if matches!(error, MeshError::Timeout(_)) {
        AttemptOutcome::Timeout
    } else {
        AttemptOutcome::Reset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_recognized_by_name_and_address() {
        for host in [
            "localhost",
            "app.localhost",
            "client-0",
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "::1",
            "::",
        ] {
            assert!(is_loopback_target(host, "client-0"), "{host}");
        }
        for host in ["backend", "10.0.0.1", "2001:db8::1", "1backend"] {
            assert!(!is_loopback_target(host, "client-0"), "{host}");
        }
    }
}
