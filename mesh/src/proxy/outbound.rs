//! The outbound listener: local app → mesh.
//!
//! The app sends plain HTTP to its own sidecar with `Host: <service>`. The
//! proxy resolves the service through discovery, balances across endpoints,
//! and sends the request over pooled mTLS, verifying that the endpoint proves
//! the identity discovery lists for it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use seam::HostEnv;

use crate::control::{Discovery, Endpoint};
use crate::http::{Body, read_body, serve_connection, text};
use crate::proxy::PEER_IDENTITY_HEADER;
use crate::proxy::pool::Pool;
use crate::tls::MeshTls;
use crate::{MeshError, http as mesh_http, ports};

/// Largest request body forwarded.
const REQUEST_BYTES_MAX: usize = 1024 * 1024;

/// Header on proxy-generated errors saying why (never on app responses).
pub const PROXY_ERROR_HEADER: &str = "x-meshsim-proxy-error";

struct Outbound {
    env: HostEnv,
    tls: Arc<MeshTls>,
    discovery: Discovery,
    pool: Pool,
    next_endpoint: Mutex<BTreeMap<String, usize>>,
    request_timeout: Duration,
}

/// Serves the local app until the host stops.
pub async fn serve(
    env: HostEnv,
    tls: Arc<MeshTls>,
    discovery: Discovery,
    request_timeout: Duration,
) -> Result<(), MeshError> {
    let mut listener = env.net.bind(ports::PROXY_OUTBOUND).await?;
    let outbound = Arc::new(Outbound {
        env,
        tls,
        discovery,
        pool: Pool::default(),
        next_endpoint: Mutex::default(),
        request_timeout,
    });
    loop {
        let (io, _) = listener.accept().await?;
        let outbound = outbound.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let outbound = outbound.clone();
                async move { Ok::<_, Infallible>(outbound.handle(req).await) }
            });
            let _ = serve_connection(io, service).await;
        });
    }
}

/// The service named by a request's authority, without port.
fn target_service(req: &Request<Incoming>) -> Option<String> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
            Some(host.split(':').next().unwrap_or(host).to_owned())
        })?;
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

fn proxy_error(status: StatusCode, reason: &str) -> Response<Body> {
    let mut response = text(status, reason);
    response.headers_mut().insert(
        PROXY_ERROR_HEADER,
        http::HeaderValue::from_str(reason).unwrap_or(http::HeaderValue::from_static("error")),
    );
    response
}

impl Outbound {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let Some(service) = target_service(&req) else {
            return proxy_error(StatusCode::BAD_REQUEST, "no target service in Host");
        };
        let (mut parts, body) = req.into_parts();
        let Ok(body) = read_body(body, REQUEST_BYTES_MAX).await else {
            return proxy_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        };
        // Only the inbound proxy may assert a caller's identity.
        parts.headers.remove(PEER_IDENTITY_HEADER);
        parts.uri = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_default();
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&service).expect("service names are header-safe"),
        );
        let request = Request::from_parts(parts, Body::from(body));
        let timeout_ms = self.request_timeout.as_millis() as u64;
        match tokio::time::timeout(self.request_timeout, self.forward(&service, request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                self.env
                    .record("outbound.error", format!("svc={service} err={error}"));
                let status = if matches!(error, MeshError::NoEndpoints(_)) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_GATEWAY
                };
                proxy_error(status, &error.to_string())
            }
            Err(_) => {
                self.env.record(
                    "outbound.timeout",
                    format!("svc={service} after_ms={timeout_ms}"),
                );
                proxy_error(StatusCode::GATEWAY_TIMEOUT, "request timeout")
            }
        }
    }

    async fn forward(
        &self,
        service: &str,
        request: Request<Body>,
    ) -> Result<Response<Body>, MeshError> {
        if !self.tls.has_valid_leaf() {
            return Err(MeshError::NoIdentity);
        }
        let endpoint = self.pick(service)?;
        let key = format!("{}:{}", endpoint.host, endpoint.port);
        let (env, tls, ep) = (&self.env, &self.tls, &endpoint);
        let connect =
            || async move {
                let io = env.net.connect(&ep.host, ep.port).await.map_err(|source| {
                    MeshError::Connect {
                        target: format!("{}:{}", ep.host, ep.port),
                        source,
                    }
                })?;
                let stream = tls.connect(io, &ep.identity, &[b"http/1.1"], true).await?;
                env.record(
                    "outbound.connect",
                    format!("ep={} id={}", ep.host, ep.identity),
                );
                mesh_http::handshake(stream).await
            };
        let response = self.pool.send(&key, request, connect).await?;
        self.env.record(
            "outbound.response",
            format!(
                "svc={service} ep={} status={}",
                endpoint.host,
                response.status().as_u16()
            ),
        );
        Ok(response)
    }

    /// Round robin over the endpoints discovery lists.
    fn pick(&self, service: &str) -> Result<Endpoint, MeshError> {
        let endpoints = self.discovery.endpoints(service);
        if endpoints.is_empty() {
            return Err(MeshError::NoEndpoints(service.to_owned()));
        }
        let mut next = self.next_endpoint.lock().expect("balancer poisoned");
        let counter = next.entry(service.to_owned()).or_default();
        let endpoint = endpoints[*counter % endpoints.len()].clone();
        *counter = counter.wrapping_add(1);
        Ok(endpoint)
    }
}
