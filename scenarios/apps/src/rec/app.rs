//! What every REC service shares: an HTTP server with a capacity model.
//!
//! Each request waits for one of `concurrency` slots, then holds it for a
//! service time drawn from the host's seeded stream. That gives every
//! service a real, saturable capacity (an M/M/c or M/D/c server).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use mesh::accept::{Acceptor, Admitted, CONNECTIONS_MAX};
use mesh::http::{Body, read_body, serve_connection, text};
use mesh::pod_secret::PodSecret;
use rand_chacha::ChaCha12Rng;
use seam::{BoxFuture, HostEnv};
use tokio::sync::Semaphore;

use spec::{Distribution, ServiceSpec};

/// Largest request body an app reads.
const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// A buffered request as apps see it.
pub struct AppRequest {
    /// Method.
    pub method: http::Method,
    /// Path without query.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Caller identity, as asserted by the inbound sidecar.
    pub peer: Option<String>,
    /// The bearer token of `Authorization: Bearer …`, if any.
    pub bearer: Option<String>,
    /// The client's `idempotency-key` header, else its `x-request-seq`.
    pub idempotency_key: Option<String>,
    /// Body.
    pub body: bytes::Bytes,
}

/// An application's request handler.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>>;
}

/// Service time per request and concurrency: one distribution per
/// endpoint (a synthetic service's), else the service's own.
pub struct ServiceTimeModel {
    default: Option<Distribution>,
    endpoints: Vec<(http::Method, String, Distribution)>,
    concurrency: usize,
}

impl ServiceTimeModel {
    /// From a scenario's service spec.
    pub fn from_spec(spec: &ServiceSpec) -> Self {
        let endpoints = spec
            .endpoints
            .iter()
            .filter_map(|e| {
                let method = http::Method::from_bytes(e.method.as_bytes()).ok()?;
                let time = e.service_time.as_ref().or(spec.service_time.as_ref())?;
                Some((method, e.path.get_ref().clone(), time.0.clone()))
            })
            .collect();
        ServiceTimeModel {
            default: spec.service_time.as_ref().map(|t| t.0.clone()),
            endpoints,
            concurrency: spec.concurrency as usize,
        }
    }

    /// The service time of one request to `method` `path`; zero for a
    /// request no endpoint matches (it is answered 404 at once).
    fn draw(&self, method: &http::Method, path: &str, rng: &mut ChaCha12Rng) -> Duration {
        let distribution = self
            .endpoints
            .iter()
            .find(|(m, p, _)| m == method && p == path)
            .map(|(_, _, d)| d)
            .or(self.default.as_ref());
        distribution.map_or(Duration::ZERO, |d| d.sample_duration(rng))
    }
}

struct Server {
    handler: Arc<dyn Handler>,
    model: ServiceTimeModel,
    slots: Semaphore,
    rng: Mutex<ChaCha12Rng>,
    /// The host's "slow host" factor, read per request.
    slow: seam::SlowHandle,
    /// Service times sleep on the world's clock, which is exact in the event world.
    clock: std::sync::Arc<dyn seam::Clock>,
    /// What the host's own sidecar presents (loopback deployments): a
    /// request without it came around the sidecar.
    pod_secret: Option<PodSecret>,
}

/// Serves `handler` on `port` until the host stops.
pub async fn serve(
    env: HostEnv,
    port: u16,
    handler: Arc<dyn Handler>,
    model: ServiceTimeModel,
) -> Result<(), mesh::MeshError> {
    let listener = env.net.bind(port).await?;
    let mut acceptor = Acceptor::new(listener, CONNECTIONS_MAX, &env, "app");
    let slots = Semaphore::new(model.concurrency.max(1));
    let server = Arc::new(Server {
        handler,
        model,
        slots,
        rng: Mutex::new(env.seed.child("service-time").rng()),
        slow: env.slow.clone(),
        clock: env.clock.clone(),
        pod_secret: PodSecret::load(env.disk.as_ref()),
    });
    loop {
        let Admitted { io, slot, .. } = acceptor.next().await;
        let server = server.clone();
        seam::task::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(req).await) }
            });
            let _ = serve_connection(io, service).await;
        });
    }
}

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if !mesh::pod_secret::admits(self.pod_secret.as_ref(), req.headers()) {
            return text(
                StatusCode::FORBIDDEN,
                "requests reach this app through its own sidecar only",
            );
        }
        let (parts, body) = req.into_parts();
        let Ok(body) = read_body(body, REQUEST_BYTES_MAX).await else {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        };
        let _slot = self.slots.acquire().await.expect("never closed");
        // Drawn after the slot is taken, so the draw order is the service order.
        let drawn = self.model.draw(
            &parts.method,
            parts.uri.path(),
            &mut self.rng.lock().expect("rng poisoned"),
        );
        let service_time = self.slow.stretch(drawn);
        // The world's exact sleep: a drawn 10.3 ms takes 10.3 ms, not the
        // 11 ms of tokio's millisecond timer wheel.
        self.clock.sleep(service_time).await;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let bearer = header(http::header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
        let idempotency_key = header(super::gateway::IDEMPOTENCY_KEY_HEADER)
            .or_else(|| header(super::gateway::REQUEST_SEQ_HEADER).map(|s| format!("seq-{s}")));
        let request = AppRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            peer: parts
                .headers
                .get(mesh::proxy::PEER_IDENTITY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            bearer,
            idempotency_key,
            body,
        };
        let traceparent = parts.headers.get(mesh::proxy::TRACEPARENT_HEADER).cloned();
        mesh::client::in_trace(traceparent, self.handler.handle(request)).await
    }
}
