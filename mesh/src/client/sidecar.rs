//! An app's client of its own host's outbound sidecar.
//!
//! Apps never dial a peer: they send plain HTTP/1.1 to
//! `LOCALHOST:`[`ports::PROXY_OUTBOUND`] and name the service in the `Host`
//! header; the sidecar resolves, balances, retries and adds mTLS. This is
//! the one place that connection is opened, so every app reaches the mesh
//! the same way.

use std::future::Future;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response};
use seam::{HostEnv, LOCALHOST};

use crate::client::pool::Pool;
use crate::http::Body;
use crate::pod_secret::PodSecret;
use crate::{MeshError, ports};

/// Header on answers the outbound sidecar made itself (no endpoints,
/// circuit open, per-try timeout, …), saying why. An app's own responses
/// never carry it, so a caller can tell "the mesh refused" from "the
/// service answered".
pub const PROXY_ERROR_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-meshsim-proxy-error");

tokio::task_local! {
    /// The `traceparent` of the request the current task is serving.
    static TRACE_CONTEXT: HeaderValue;
}

/// Runs `work` on behalf of a request that arrived with `traceparent`:
/// every call it makes through a [`Sidecar`] carries the same context, so
/// one request's spans form one tree across services (W3C propagation, as
/// an instrumented app would do it).
pub async fn in_trace<F: Future>(traceparent: Option<HeaderValue>, work: F) -> F::Output {
    match traceparent {
        Some(context) => TRACE_CONTEXT.scope(context, work).await,
        None => work.await,
    }
}

/// The pool key of the one local sidecar connection set.
const SIDECAR_KEY: &str = "sidecar";

/// Keep-alive HTTP/1.1 connections to this host's outbound sidecar.
pub struct Sidecar {
    /// The app's host: its network reaches the sidecar on the loopback.
    env: HostEnv,
    /// Idle connections to the sidecar, reused across requests.
    pool: Pool,
    /// What the sidecar wants to see (loopback deployments).
    pod_secret: Option<PodSecret>,
}

impl Sidecar {
    /// A client of `env`'s own outbound sidecar (connects lazily).
    pub fn new(env: HostEnv) -> Self {
        Sidecar {
            pod_secret: PodSecret::load(env.disk.as_ref()),
            env,
            pool: Pool::default(),
        }
    }

    /// A request builder for `service`: method, path and the `Host` header
    /// that tells the sidecar where to route. Add headers and a body.
    pub fn request(service: &str, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, service)
    }

    /// Sends `request` (which must carry `Host: <service>`) through the
    /// sidecar and buffers the answer. No deadline: the sidecar's own
    /// request timeout bounds it.
    pub async fn send(&self, mut request: Request<Body>) -> Result<Response<Body>, MeshError> {
        let traceparent = crate::telemetry::TRACEPARENT_HEADER;
        if !request.headers().contains_key(&traceparent)
            && let Ok(context) = TRACE_CONTEXT.try_with(HeaderValue::clone)
        {
            request.headers_mut().insert(traceparent, context);
        }
        if let Some(secret) = &self.pod_secret {
            request
                .headers_mut()
                .insert(crate::pod_secret::HEADER, secret.header_value());
        }
        let env = &self.env;
        let connect = || async move {
            let io = env
                .net
                .connect(LOCALHOST, ports::PROXY_OUTBOUND)
                .await
                .map_err(|source| MeshError::Connect {
                    target: SIDECAR_KEY.into(),
                    source,
                })?;
            Ok(io)
        };
        self.pool.send(SIDECAR_KEY, request, connect).await
    }

    /// Like [`Sidecar::send`], giving up after `timeout` with
    /// [`MeshError::Timeout`] (which `send` itself never returns, so a
    /// caller can tell the deadline from a failure).
    pub async fn send_with_timeout(
        &self,
        request: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Body>, MeshError> {
        match tokio::time::timeout(timeout, self.send(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(MeshError::Timeout(timeout.as_millis() as u64)),
        }
    }

    /// Whether the sidecar made `response` itself instead of relaying the
    /// service's answer.
    pub fn is_proxy_error(response: &Response<Body>) -> bool {
        response.headers().contains_key(PROXY_ERROR_HEADER)
    }
}
