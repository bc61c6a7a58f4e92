//! `gateway`: the client-facing API. It calls `registry` through the local
//! sidecar, never directly.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use mesh::http::{Body, text};
use mesh::proxy::pool::Pool;
use mesh::{MeshError, ports};
use seam::{BoxFuture, HostEnv, LOCALHOST};

use super::app::{AppRequest, Handler};
use super::registry::{ISSUER_ACCOUNT, Transfer};

/// The gateway app.
pub struct Gateway {
    env: HostEnv,
    sidecar: Pool,
}

impl Gateway {
    /// A gateway whose calls go through this host's sidecar.
    pub fn new(env: HostEnv) -> Self {
        Gateway {
            env,
            sidecar: Pool::default(),
        }
    }

    /// Sends a request to `service` via the local outbound proxy.
    async fn call(
        &self,
        service: &str,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Body>, MeshError> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, service)
            .body(Body::from(body))
            .map_err(|e| MeshError::BadRequest(e.to_string()))?;
        let env = &self.env;
        let connect = || async move {
            let io = env
                .net
                .connect(LOCALHOST, ports::PROXY_OUTBOUND)
                .await
                .map_err(|source| MeshError::Connect {
                    target: "sidecar".into(),
                    source,
                })?;
            mesh::http::handshake(io).await
        };
        self.sidecar.send("sidecar", request, connect).await
    }

    async fn quote(&self) -> Response<Body> {
        self.relay(
            self.call("registry", Method::GET, "/recs/available", Bytes::new())
                .await,
        )
    }

    async fn order(&self, body: &[u8]) -> Response<Body> {
        #[derive(serde::Deserialize)]
        struct Order {
            buyer: String,
        }
        let Ok(order) = serde_json::from_slice::<Order>(body) else {
            return text(StatusCode::BAD_REQUEST, "expected {\"buyer\": …}");
        };
        let transfer = Transfer {
            from: ISSUER_ACCOUNT.into(),
            to: order.buyer,
            count: 1,
        };
        let body = Bytes::from(serde_json::to_vec(&transfer).expect("serialisable"));
        self.relay(
            self.call("registry", Method::POST, "/transfers", body)
                .await,
        )
    }

    fn relay(&self, result: Result<Response<Body>, MeshError>) -> Response<Body> {
        match result {
            Ok(response) => response,
            Err(error) => {
                self.env.record("gateway.upstream_error", error.to_string());
                text(StatusCode::BAD_GATEWAY, "upstream unavailable")
            }
        }
    }
}

impl Handler for Gateway {
    fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(async move {
            match (&request.method, request.path.as_str()) {
                (&Method::GET, "/quote") => self.quote().await,
                (&Method::POST, "/orders") => self.order(&request.body).await,
                _ => text(StatusCode::NOT_FOUND, "not found"),
            }
        })
    }
}
