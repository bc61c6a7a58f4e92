//! The inbound listener: mesh → local app.
//!
//! mTLS is mandatory: plaintext, no certificate, an unknown CA, an expired or
//! revoked certificate all fail the handshake, and nothing reaches the app.
//! Callers may speak HTTP/2 (ALPN `h2`, what sidecars use) or HTTP/1.1.
//! Per request the proxy:
//! 1. normalizes the path (a malformed or ambiguous one is a 400);
//! 2. authorizes the caller's verified identity, method and normalized path
//!    against the service's policy (default-deny once one exists; a denial
//!    is a bare 403, and every decision is kept for the oracle);
//! 3. applies the route's and the service's rate limits (429);
//! 4. injects this host's endpoint faults, if any are active;
//! 5. forwards to the app on the loopback, and only there, over HTTP/1.1 or
//!    HTTP/2, with the normalized path, the caller's identity in
//!    [`PEER_IDENTITY_HEADER`] and a child `traceparent`.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, Uri};
use rand_chacha::ChaCha12Rng;
use seam::{HostEnv, LOCALHOST};

use crate::accept::{Acceptor, Admitted, CONNECTIONS_MAX};
use crate::authz::{self, NormalizedTarget, Verdict, normalize_target};
use crate::client::pool::{Pool, RESPONSE_BYTES_MAX};
use crate::config::{AppProtocol, RouteConfig, ServiceConfig};
use crate::control::{Discovery, Snapshot};
use crate::http::{Body, RequestBody, text};
use crate::identity::CertInfo;
use crate::pod_secret::{self, PodSecret};
use crate::proxy::h2pool::{self, H2Pool};
use crate::proxy::limits::{self, Limits, Protocol};
use crate::proxy::ratelimit::Limiter;
use crate::proxy::routes::{self, RequestView, canonical_host};
use crate::proxy::{PEER_IDENTITY_HEADER, TRACEPARENT_HEADER, faults, strip_headers};
use crate::telemetry::{
    self, AuthzDecision, Direction, ProxyTelemetry, RequestRecord, Telemetry, TraceContext,
};
use crate::tls::{ClientAuth, MeshTls};
use crate::{MeshError, SpiffeId, ports};

/// The policy of a service with none configured.
static DEFAULT_SERVICE: LazyLock<ServiceConfig> = LazyLock::new(ServiceConfig::default);

/// Connections to an HTTP/2 app (one carries 100 streams).
const APP_CONNECTIONS_MAX: usize = 1024;

/// How the inbound listener runs.
#[derive(Clone)]
pub struct InboundConfig {
    /// The service this workload serves (whose policy applies).
    pub service: String,
    /// Where policy comes from; `None`: no policy (allow every mesh
    /// identity, no limits).
    pub discovery: Option<Discovery>,
    /// Where metrics, logs and spans go.
    pub telemetry: ProxyTelemetry,
    /// Header, stream and idle limits of the mesh-facing listener.
    pub limits: Limits,
}

/// The verified peer of a connection, written out once per connection
/// rather than per request: the principal that policy and the access log
/// name, and the header value the app receives.
struct Caller {
    principal: Arc<str>,
    header_value: HeaderValue,
}

impl Caller {
    fn new(id: &SpiffeId) -> Caller {
        let principal = id.uri().clone();
        let header_value =
            HeaderValue::from_str(&principal).expect("SPIFFE IDs are valid header values");
        Caller {
            principal,
            header_value,
        }
    }
}

struct Inbound {
    env: HostEnv,
    config: InboundConfig,
    app_h1: Pool,
    app_h2: H2Pool,
    limiter: Limiter,
    rng: Mutex<ChaCha12Rng>,
    /// What this sidecar presents to its app (loopback deployments).
    pod_secret: Option<PodSecret>,
    /// `config.service` as the telemetry label.
    service_label: Arc<str>,
}

/// Accepts mesh connections until the host stops, with no policy.
pub async fn serve(env: HostEnv, tls: Arc<MeshTls>) -> Result<(), MeshError> {
    let telemetry = Telemetry::new().proxy(&env.name, env.clock.clone());
    let config = InboundConfig {
        service: String::new(),
        discovery: None,
        telemetry,
        limits: Limits::default(),
    };
    serve_with(env, tls, config).await
}

/// Accepts mesh connections until the host stops.
pub async fn serve_with(
    env: HostEnv,
    tls: Arc<MeshTls>,
    config: InboundConfig,
) -> Result<(), MeshError> {
    let listener = env.net.bind(ports::PROXY_INBOUND).await?;
    let mut acceptor = Acceptor::new(listener, CONNECTIONS_MAX, &env, "inbound");
    let inbound = Arc::new(Inbound {
        rng: Mutex::new(env.seed.child("inbound").rng()),
        pod_secret: PodSecret::load(env.disk.as_ref()),
        service_label: telemetry::label(&config.service),
        env,
        config,
        app_h1: Pool::default(),
        app_h2: H2Pool::default(),
        limiter: Limiter::default(),
    });
    loop {
        let Admitted {
            io,
            peer: peer_addr,
            slot,
        } = acceptor.next().await;
        let (inbound, tls) = (inbound.clone(), tls.clone());
        seam::task::spawn(async move {
            let _slot = slot;
            let limits = inbound.config.limits.clone();
            let handshake = tls.accept(io, ClientAuth::Required, &[b"h2", b"http/1.1"]);
            let accepted = tokio::time::timeout(limits.header_read_timeout, handshake).await;
            let (stream, peer) = match accepted {
                Ok(Ok((stream, Some(peer)))) => (stream, peer),
                Ok(Ok((_, None))) => return,
                Ok(Err(error)) => {
                    inbound.env.record(
                        seam::event::INBOUND_TLS_REJECT,
                        format!("from={} err={error}", peer_addr.ip()),
                    );
                    inbound.env.record(
                        seam::event::CERT_PEER_REJECTED,
                        format!(
                            "from={} reason={}",
                            peer_addr.ip(),
                            rejection_reason(&error)
                        ),
                    );
                    return;
                }
                Err(_) => {
                    inbound.env.record(
                        seam::event::INBOUND_TLS_REJECT,
                        format!("from={} err=handshake timed out", peer_addr.ip()),
                    );
                    return;
                }
            };
            inbound
                .env
                .record("inbound.tls_accept", format!("peer={peer}"));
            let peer_leaf = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| CertInfo::parse(leaf).ok());
            let Some(peer_leaf) = peer_leaf else {
                return;
            };
            inbound.record_acceptance(&peer, &peer_leaf);
            let _open = inbound
                .config
                .telemetry
                .connection(Direction::Inbound, true);
            let tls_for_requests = tls.clone();
            let protocol = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                _ => Protocol::Http1,
            };
            let peer = Arc::new(Caller::new(&peer));
            let handler = move |request| {
                let (inbound, peer) = (inbound.clone(), peer.clone());
                let tls = tls_for_requests.clone();
                async move {
                    // Fail closed once our own certificate has lapsed: we
                    // can no longer prove who we are, even on a connection
                    // opened while we could. (A peer's certificate is
                    // checked at the handshake; its renewal reaches us on
                    // its next connection, as in Linkerd and Envoy.)
                    if !tls.has_valid_leaf() {
                        return refusal(StatusCode::SERVICE_UNAVAILABLE);
                    }
                    inbound.handle(request, &peer).await
                }
            };
            let _ = limits::serve(stream, protocol, &limits, handler).await;
        });
    }
}

/// The class of a refused handshake, for the trace (the identity checks
/// count expiry refusals separately).
fn rejection_reason(error: &MeshError) -> &'static str {
    match error {
        MeshError::Tls(failure) => failure.trace_reason(),
        _ => "other",
    }
}

/// Milliseconds from `from` to `to`, negative if `to` is earlier.
fn signed_ms(from: std::time::SystemTime, to: std::time::SystemTime) -> i128 {
    match to.duration_since(from) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    }
}

/// A bare refusal: the status and nothing that would help a prober.
fn refusal(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = status;
    response
}

impl Inbound {
    /// Records the accepted peer certificate's validity as this host's
    /// clock saw it at the handshake: `age_ms` since notBefore and
    /// `left_ms` until notAfter. The identity checks recompute from these,
    /// independently of webpki, that no expired or not-yet-valid
    /// certificate was ever accepted.
    fn record_acceptance(&self, peer: &SpiffeId, leaf: &CertInfo) {
        let now = self.env.clock.wall();
        self.env.record(
            seam::event::CERT_PEER_ACCEPTED,
            format!(
                "peer={peer} serial={} age_ms={} left_ms={}",
                leaf.serial_hex,
                signed_ms(leaf.not_before, now),
                signed_ms(now, leaf.not_after)
            ),
        );
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        let discovery = self.config.discovery.as_ref()?;
        Some(discovery.snapshot_changes().borrow().clone())
    }

    async fn handle(&self, request: Request<RequestBody>, peer: &Caller) -> Response<Body> {
        let started = self.config.telemetry.now();
        let incoming = request
            .headers()
            .get(TRACEPARENT_HEADER)
            .and_then(|v| TraceContext::parse(v.as_bytes()));
        let (trace, span_id) = {
            let mut rng = self.rng.lock().expect("rng poisoned");
            let trace = incoming.unwrap_or_else(|| telemetry::new_trace(&mut *rng));
            (trace, telemetry::new_span_id(&mut *rng))
        };
        let mut record = RequestRecord {
            service: self.service_label.clone(),
            route: telemetry::default_route(),
            peer: peer.principal.clone(),
            attempts: 1,
            ..RequestRecord::arriving(
                Direction::Inbound,
                request.method(),
                started,
                trace,
                span_id,
                incoming.map(|c| c.parent_id),
            )
        };
        let response = self.authorize_and_forward(request, peer, &mut record).await;
        record.status = response.status().as_u16();
        self.config.telemetry.request(record);
        response
    }

    async fn authorize_and_forward(
        &self,
        request: Request<RequestBody>,
        peer: &Caller,
        record: &mut RequestRecord,
    ) -> Response<Body> {
        let snapshot = self.snapshot();
        let (service_config, version) = match &snapshot {
            Some(s) => (
                s.config
                    .services
                    .get(&self.config.service)
                    .unwrap_or(&DEFAULT_SERVICE),
                s.version,
            ),
            None => (&*DEFAULT_SERVICE, 0),
        };
        let principal = &*peer.principal;
        let target = match self.authorize(&request, service_config, version, principal) {
            Ok(target) => target,
            Err(status) => {
                record.proxy_error = Some("forbidden".into());
                return refusal(status);
            }
        };
        record.path = target.to_target();
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_else(|| self.config.service.clone());
        let route_host = canonical_host(&host);
        if !route_host.is_empty() && route_host != self.config.service {
            record.authority = Some(telemetry::label(&route_host));
        }
        let view = RequestView {
            host: &route_host,
            method: request.method(),
            path: &target.path,
            headers: request.headers(),
        };
        let route = routes::select(service_config, &view);
        if let Some(route) = route {
            record.route = telemetry::label(&route.name);
        }
        if !self.admit(service_config, route, principal) {
            self.env.record(
                "inbound.rate_limited",
                format!("peer={principal} route={}", record.route),
            );
            record.proxy_error = Some("rate limited".into());
            return refusal(StatusCode::TOO_MANY_REQUESTS);
        }
        if let Some(response) = self.inject_endpoint_faults(snapshot.as_deref()).await {
            record.proxy_error = Some("fault injected".into());
            return response;
        }
        let (mut parts, body) = request.into_parts();
        let Ok(body) = body.read(self.config.limits.request_bytes_max).await else {
            record.proxy_error = Some("request body too large".into());
            return refusal(StatusCode::PAYLOAD_TOO_LARGE);
        };
        strip_headers(&mut parts.headers, &[pod_secret::HEADER]);
        if let Some(secret) = &self.pod_secret {
            parts
                .headers
                .insert(pod_secret::HEADER, secret.header_value());
        }
        parts
            .headers
            .insert(PEER_IDENTITY_HEADER, peer.header_value.clone());
        parts.headers.insert(
            TRACEPARENT_HEADER,
            record.trace.header_value_for(record.span_id),
        );
        let app_target = target.to_target();
        let protocol = service_config.app_protocol;
        match self
            .forward(parts, body, &host, &app_target, protocol)
            .await
        {
            Ok(response) => response,
            Err(error) => {
                self.env.record("inbound.app_error", error.to_string());
                record.proxy_error = Some("application unavailable".into());
                text(StatusCode::BAD_GATEWAY, "application unavailable")
            }
        }
    }

    /// Normalizes the target and, if the service has a policy, decides:
    /// the normalized target, or the status to refuse with (400 for a path
    /// that cannot be normalized safely, 403 for a denial). Every decision
    /// under a policy is kept for the oracle.
    fn authorize(
        &self,
        request: &Request<RequestBody>,
        service_config: &ServiceConfig,
        version: u64,
        principal: &str,
    ) -> Result<NormalizedTarget, StatusCode> {
        let raw_target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let method = request.method().as_str();
        let normalized = normalize_target(raw_target);
        if let Some(policy) = &service_config.authorization {
            let verdict = match &normalized {
                Ok(target) => authz::evaluate(policy, principal, method, &target.path),
                Err(_) => Verdict::Deny,
            };
            self.config.telemetry.authz(AuthzDecision {
                service: self.config.service.clone(),
                config_version: version,
                principal: principal.to_owned(),
                method: method.to_owned(),
                raw_target: raw_target.to_owned(),
                verdict: match (&normalized, verdict) {
                    (Err(_), _) => "refused".into(),
                    (Ok(_), v) => v.as_str().into(),
                },
            });
            if verdict == Verdict::Deny {
                self.env.record(
                    seam::event::INBOUND_AUTHZ_DENY,
                    format!("peer={principal} method={method} target={raw_target}"),
                );
            }
            if verdict == Verdict::Deny && normalized.is_ok() {
                return Err(StatusCode::FORBIDDEN);
            }
        }
        normalized.map_err(|_| StatusCode::BAD_REQUEST)
    }

    /// Whether the route's and the service's rate limits admit the caller.
    fn admit(
        &self,
        service_config: &ServiceConfig,
        route: Option<&RouteConfig>,
        principal: &str,
    ) -> bool {
        let now = tokio::time::Instant::now();
        let route_admits = route
            .and_then(|r| r.rate_limit.as_ref().map(|limit| (r, limit)))
            .is_none_or(|(r, limit)| self.limiter.admit(&r.name, limit, principal, now));
        route_admits
            && service_config
                .rate_limit
                .as_ref()
                .is_none_or(|limit| self.limiter.admit("", limit, principal, now))
    }

    /// Applies this host's active endpoint faults: sleeps for a delay, and
    /// answers for an abort.
    async fn inject_endpoint_faults(&self, snapshot: Option<&Snapshot>) -> Option<Response<Body>> {
        let snapshot = snapshot?;
        let now = self.config.telemetry.now();
        let injections: Vec<faults::Injection> = {
            let mut rng = self.rng.lock().expect("rng poisoned");
            faults::active_for(&snapshot.config.endpoint_faults, &self.env.name, now)
                .map(|fault| faults::draw(fault, &mut *rng))
                .collect()
        };
        let delay: Duration = injections.iter().filter_map(|i| i.delay).sum();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let status = injections.iter().find_map(|i| i.abort)?;
        Some(refusal(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        ))
    }

    /// Sends the request to the app on this host, and nowhere else.
    async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: bytes::Bytes,
        host: &str,
        target: &str,
        protocol: AppProtocol,
    ) -> Result<Response<Body>, MeshError> {
        let env = &self.env;
        let open = || async move {
            env.net
                .connect(LOCALHOST, ports::APP)
                .await
                .map_err(|source| MeshError::Connect {
                    target: "app".into(),
                    source,
                })
        };
        match protocol {
            AppProtocol::Http1 => {
                parts.uri = target
                    .parse::<Uri>()
                    .map_err(|e| MeshError::BadRequest(e.to_string()))?;
                parts.version = http::Version::HTTP_11;
                let host = HeaderValue::from_str(host)
                    .map_err(|e| MeshError::BadRequest(e.to_string()))?;
                parts.headers.insert(http::header::HOST, host);
                let request = Request::from_parts(parts, Body::from(body));
                self.app_h1.send("app", request, open).await
            }
            AppProtocol::Http2 => {
                parts.uri = format!("http://{host}{target}")
                    .parse::<Uri>()
                    .map_err(|e| MeshError::BadRequest(e.to_string()))?;
                parts.version = http::Version::HTTP_2;
                parts.headers.remove(http::header::HOST);
                let request = Request::from_parts(parts, Body::from(body));
                let connect = || Box::pin(async move { h2pool::handshake(open().await?).await });
                self.app_h2
                    .send(
                        "app",
                        request,
                        APP_CONNECTIONS_MAX,
                        RESPONSE_BYTES_MAX,
                        connect,
                    )
                    .await
                    .map_err(|e| match e {
                        h2pool::PoolError::Mesh(error) => error,
                        saturated => MeshError::BadRequest(saturated.to_string()),
                    })
            }
        }
    }
}
