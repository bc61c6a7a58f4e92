//! Multiplexed HTTP/2 connections per endpoint, for the mesh hop and for
//! HTTP/2 apps.
//!
//! One connection normally carries every request to an endpoint; another is
//! opened only when all of an endpoint's connections have
//! `streams_per_connection` requests in flight, up to the circuit
//! breaker's `max_connections`. Beyond that the request fails fast.
//! Connecting is serialized per endpoint, so a burst of first requests
//! shares one handshake instead of opening one each.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use seam::Io;

use crate::MeshError;
use crate::http::{Body, buffer_response};

/// Streams the client puts on one connection before opening another (the
/// server's own limit is `Limits::max_concurrent_streams`).
pub const STREAMS_PER_CONNECTION: usize = 100;

struct Connection {
    sender: SendRequest<Body>,
    in_flight: Arc<AtomicUsize>,
}

#[derive(Default)]
struct EndpointConnections {
    connections: tokio::sync::Mutex<Vec<Connection>>,
}

/// Why a request was not sent.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every connection is full and no new one may be opened.
    #[error("circuit open: max connections")]
    Saturated,
    /// Connecting or sending failed.
    #[error(transparent)]
    Mesh(#[from] MeshError),
}

/// HTTP/2 connections keyed by endpoint.
#[derive(Default)]
pub struct H2Pool {
    endpoints: Mutex<BTreeMap<String, Arc<EndpointConnections>>>,
}

struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long h2 remembers a locally reset stream: longer than any run.
const RESET_STREAM_MEMORY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Opens an HTTP/2 client connection over `io` (prior knowledge or ALPN
/// `h2`); the connection task runs until every sender is dropped.
pub async fn handshake<I: Io>(io: I) -> Result<SendRequest<Body>, MeshError> {
    let (sender, connection) = hyper::client::conn::http2::Builder::new(seam::task::Executor)
        .timer(TokioTimer::new())
        // h2 forgets a stream it reset after `reset_stream_duration` of the
        // OS clock (`std::time::Instant`, not the seam's), which made a
        // simulation's bytes depend on how fast it ran. A day never elapses
        // in a run; the count bound (`max_concurrent_reset_streams`) alone
        // limits the memory, and it depends only on what happened.
        .reset_stream_duration(RESET_STREAM_MEMORY)
        .handshake(TokioIo::new(io))
        .await?;
    seam::task::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

impl H2Pool {
    fn endpoint(&self, key: &str) -> Arc<EndpointConnections> {
        let mut endpoints = self.endpoints.lock().expect("pool poisoned");
        // Looked up first: the key is allocated once per endpoint, not per
        // request.
        if let Some(connections) = endpoints.get(key) {
            return connections.clone();
        }
        endpoints.entry(key.to_owned()).or_default().clone()
    }

    /// Connections currently open to `key`.
    pub fn connections(&self, key: &str) -> usize {
        let endpoint = self.endpoint(key);
        endpoint
            .connections
            .try_lock()
            .map_or(0, |c| c.iter().filter(|c| !c.sender.is_closed()).count())
    }

    /// Sends `request` to `key` and buffers the response.
    pub async fn send<F, Fut>(
        &self,
        key: &str,
        request: Request<Body>,
        max_connections: usize,
        response_bytes_max: usize,
        connect: F,
    ) -> Result<Response<Body>, PoolError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SendRequest<Body>, MeshError>>,
    {
        let endpoint = self.endpoint(key);
        let (mut sender, in_flight) = {
            let mut connections = endpoint.connections.lock().await;
            connections.retain(|c| !c.sender.is_closed());
            let least = connections
                .iter()
                .min_by_key(|c| c.in_flight.load(Ordering::Relaxed))
                .filter(|c| c.in_flight.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION);
            match least {
                Some(c) => (c.sender.clone(), c.in_flight.clone()),
                None if connections.len() < max_connections.max(1) => {
                    let sender = connect().await?;
                    let in_flight = Arc::new(AtomicUsize::new(0));
                    connections.push(Connection {
                        sender: sender.clone(),
                        in_flight: in_flight.clone(),
                    });
                    (sender, in_flight)
                }
                None => return Err(PoolError::Saturated),
            }
        };
        in_flight.fetch_add(1, Ordering::Relaxed);
        let _stream = StreamGuard(in_flight);
        let response = sender
            .send_request(request)
            .await
            .map_err(MeshError::from)?;
        Ok(buffer_response(response, response_bytes_max).await?)
    }

    /// Drops the connections to `key`: after a timeout or reset they may be
    /// dead without knowing it (a crashed peer never closes them), and a
    /// restarted peer must get a fresh connection.
    pub fn evict(&self, key: &str) {
        self.endpoints.lock().expect("pool poisoned").remove(key);
    }

    /// Drops every connection (after a certificate change, say).
    pub fn clear(&self) {
        self.endpoints.lock().expect("pool poisoned").clear();
    }
}
