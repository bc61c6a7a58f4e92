//! The admin listener: Prometheus `/metrics`, `/ready` and `/access-log`.
//!
//! It serves only on a loopback address: if the address the network gave
//! it is not loopback (every simulated host, or a real host bound to a
//! routable address), it refuses to start and says so in the trace. It has
//! no state-changing endpoints, and neither proxy listener ever forwards to
//! it: the inbound side forwards only to the app port, and the outbound side
//! only to discovered endpoints (Linkerd CVE-2024-40632 was an SSRF from the
//! proxy to its own admin port's `/shutdown`).

use http::{Method, Request, Response, StatusCode};
use seam::HostEnv;
use tokio::sync::watch;

use crate::accept::{Acceptor, Admitted};
use crate::http::{Body, RequestBody, json, text};

/// Scrapers and probes are few: the admin port needs few connections.
const ADMIN_CONNECTIONS_MAX: usize = 64;
use crate::proxy::limits::{self, Limits, Protocol};
use crate::telemetry::Telemetry;
use crate::{MeshError, ports};

/// Serves the admin endpoints until the host stops; returns at once if the
/// listener would not be loopback-only.
pub async fn serve(
    env: HostEnv,
    telemetry: Telemetry,
    ready: watch::Receiver<bool>,
) -> Result<(), MeshError> {
    let listener = env.net.bind(ports::PROXY_ADMIN).await?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        env.record(
            seam::event::ADMIN_REFUSED,
            format!("addr={address} is not loopback"),
        );
        return Ok(());
    }
    env.record(seam::event::ADMIN_LISTEN, format!("addr={address}"));
    let limits = Limits::default();
    let mut acceptor = Acceptor::new(listener, ADMIN_CONNECTIONS_MAX, &env, "admin");
    loop {
        let Admitted { io, slot, .. } = acceptor.next().await;
        let (host, telemetry, ready) = (env.name.clone(), telemetry.clone(), ready.clone());
        let limits = limits.clone();
        seam::task::spawn(async move {
            let _slot = slot;
            let handler = move |request: Request<RequestBody>| {
                let response = answer(&request, &host, &telemetry, *ready.borrow());
                async move { response }
            };
            let _ = limits::serve(io, Protocol::Http1, &limits, handler).await;
        });
    }
}

fn answer(
    request: &Request<RequestBody>,
    host: &str,
    telemetry: &Telemetry,
    ready: bool,
) -> Response<Body> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "read-only");
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, &telemetry.prometheus(host));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        "/ready" if ready => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/access-log" => json(StatusCode::OK, &telemetry.access_log(host)),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}
