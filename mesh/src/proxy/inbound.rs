//! The inbound listener: mesh → local app.
//!
//! mTLS is mandatory: plaintext, no certificate, an unknown CA, an expired or
//! revoked certificate all fail the handshake, and nothing reaches the app.
//! The caller's verified identity is passed on in [`PEER_IDENTITY_HEADER`].

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use seam::{HostEnv, LOCALHOST};

use crate::http::{Body, read_body, serve_connection, text};
use crate::proxy::PEER_IDENTITY_HEADER;
use crate::proxy::pool::Pool;
use crate::tls::{ClientAuth, MeshTls};
use crate::{MeshError, SpiffeId, http as mesh_http, ports};

/// Largest request body forwarded.
const REQUEST_BYTES_MAX: usize = 1024 * 1024;

struct Inbound {
    env: HostEnv,
    app_pool: Pool,
}

/// Accepts mesh connections until the host stops.
pub async fn serve(env: HostEnv, tls: Arc<MeshTls>) -> Result<(), MeshError> {
    let mut listener = env.net.bind(ports::PROXY_INBOUND).await?;
    let inbound = Arc::new(Inbound {
        env: env.clone(),
        app_pool: Pool::default(),
    });
    loop {
        let (io, peer_addr) = listener.accept().await?;
        let (inbound, tls) = (inbound.clone(), tls.clone());
        tokio::spawn(async move {
            let peer = match tls.accept(io, ClientAuth::Required, &[b"http/1.1"]).await {
                Ok((stream, Some(peer))) => {
                    inbound
                        .env
                        .record("inbound.tls_accept", format!("peer={peer}"));
                    (stream, peer)
                }
                Ok((_, None)) => return,
                Err(error) => {
                    inbound.env.record(
                        "inbound.tls_reject",
                        format!("from={} err={error}", peer_addr.ip()),
                    );
                    return;
                }
            };
            let (stream, peer) = peer;
            let service = hyper::service::service_fn(move |req| {
                let (inbound, peer) = (inbound.clone(), peer.clone());
                async move { Ok::<_, Infallible>(inbound.handle(req, &peer).await) }
            });
            let _ = serve_connection(stream, service).await;
        });
    }
}

impl Inbound {
    async fn handle(&self, req: Request<Incoming>, peer: &SpiffeId) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let body = match read_body(body, REQUEST_BYTES_MAX).await {
            Ok(body) => body,
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let identity =
            HeaderValue::from_str(&peer.to_string()).expect("SPIFFE IDs are valid header values");
        parts.headers.insert(PEER_IDENTITY_HEADER, identity);
        let request = Request::from_parts(parts, Body::from(body));
        let env = &self.env;
        let connect = || async move {
            let io = env
                .net
                .connect(LOCALHOST, ports::APP)
                .await
                .map_err(|source| MeshError::Connect {
                    target: "app".into(),
                    source,
                })?;
            mesh_http::handshake(io).await
        };
        match self.app_pool.send("app", request, connect).await {
            Ok(response) => response,
            Err(error) => {
                self.env.record("inbound.app_error", error.to_string());
                text(StatusCode::BAD_GATEWAY, "application unavailable")
            }
        }
    }
}
