//! Multiplexed HTTP/2 connections per endpoint, for the mesh hop and for
//! HTTP/2 apps.
//!
//! One connection normally carries every request to an endpoint; another is
//! opened only when all of an endpoint's connections have
//! `streams_per_connection` requests in flight, up to the circuit
//! breaker's `max_connections`. Beyond that the request fails fast.
//! Connecting is serialized per endpoint, so a burst of first requests
//! shares one handshake instead of opening one each.
//!
//! The client is the `h2` crate itself, not hyper's wrapper of it. hyper's
//! HTTP/2 client hands every request through a channel to a connection task
//! and spawns one more task per request to wait for its response; here the
//! request is written and its response awaited in the caller's own task
//! (BENCHMARKS.md, issue 21, session 8).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderValue, Request, Response};
use seam::Io;

use crate::MeshError;
use crate::http::{Body, read_h2_stream};

/// Streams the client puts on one connection before opening another (the
/// server's own limit is `Limits::max_concurrent_streams`).
pub const STREAMS_PER_CONNECTION: usize = 100;

/// hyper's HTTP/2 client defaults, kept when the client moved to `h2`.
const STREAM_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 5 * 1024 * 1024;
const HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;
const SEND_BUFFER_BYTES_MAX: usize = 1024 * 1024;
/// Streams a peer may make us reset for its errors before the connection
/// is closed (hyper's default for its client and server alike; `h2server`
/// uses it too).
pub(super) const LOCAL_ERROR_RESETS_MAX: usize = 1024;

/// How long h2 remembers a locally reset stream: longer than any run
/// (both ends of the mesh hop; the reason is at the client's builder).
pub(super) const RESET_STREAM_MEMORY: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

/// An open HTTP/2 client connection. Dropping it lets the connection close
/// once its last stream ends.
pub struct H2Connection {
    sender: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl H2Connection {
    /// Whether the connection has ended (the peer closed it, or it failed).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// Opens an HTTP/2 client connection over `io` (prior knowledge or ALPN
/// `h2`); the connection task runs until the connection ends.
pub async fn handshake<I: Io>(io: I) -> Result<H2Connection, MeshError> {
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_header_list_size(HEADER_LIST_BYTES_MAX)
        .max_send_buffer_size(SEND_BUFFER_BYTES_MAX)
        .max_local_error_reset_streams(Some(LOCAL_ERROR_RESETS_MAX))
        .enable_push(false)
        // h2 forgets a stream it reset after `reset_stream_duration` of the
        // OS clock (`std::time::Instant`, not the seam's), which made a
        // simulation's bytes depend on how fast it ran. A day never elapses
        // in a run; the count bound (`max_concurrent_reset_streams`) alone
        // limits the memory, and it depends only on what happened.
        .reset_stream_duration(RESET_STREAM_MEMORY)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(MeshError::http2(true))?;
    let closed = Arc::new(AtomicBool::new(false));
    let ended = closed.clone();
    // The connection ends when the peer closes it, or once every sender
    // and stream is gone (h2 wakes it when its last sender drops; the
    // eviction test below holds it to that).
    seam::task::spawn(async move {
        let _ = connection.await;
        ended.store(true, Ordering::Relaxed);
    });
    Ok(H2Connection { sender, closed })
}

/// Sends one buffered request on `sender` and buffers the response, in the
/// caller's task.
pub async fn exchange(
    sender: SendRequest<Bytes>,
    request: Request<Body>,
    response_bytes_max: usize,
) -> Result<Response<Body>, MeshError> {
    let (mut parts, body) = request.into_parts();
    let body = body.into_inner().unwrap_or_default();
    if !body.is_empty() && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let mut sender = sender.ready().await.map_err(MeshError::http2(true))?;
    let end_of_stream = body.is_empty();
    let (response, mut stream) = sender
        .send_request(Request::from_parts(parts, ()), end_of_stream)
        .map_err(MeshError::http2(true))?;
    if !end_of_stream {
        // h2 buffers what exceeds the flow-control window and asks the
        // peer for the rest; the body is already bounded by the listener.
        stream
            .send_data(body, true)
            .map_err(MeshError::http2(false))?;
    }
    let response = response.await.map_err(MeshError::http2(false))?;
    let (parts, body) = response.into_parts();
    let body = read_h2_stream(body, response_bytes_max).await?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

struct Connection {
    connection: H2Connection,
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
        endpoint.connections.try_lock().map_or(0, |c| {
            c.iter().filter(|c| !c.connection.is_closed()).count()
        })
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
        Fut: Future<Output = Result<H2Connection, MeshError>>,
    {
        let endpoint = self.endpoint(key);
        let (sender, in_flight) = {
            let mut connections = endpoint.connections.lock().await;
            connections.retain(|c| !c.connection.is_closed());
            let least = connections
                .iter()
                .min_by_key(|c| c.in_flight.load(Ordering::Relaxed))
                .filter(|c| c.in_flight.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION);
            match least {
                Some(c) => (c.connection.sender.clone(), c.in_flight.clone()),
                None if connections.len() < max_connections.max(1) => {
                    let connection = connect().await?;
                    let in_flight = Arc::new(AtomicUsize::new(0));
                    let sender = connection.sender.clone();
                    connections.push(Connection {
                        connection,
                        in_flight: in_flight.clone(),
                    });
                    (sender, in_flight)
                }
                None => return Err(PoolError::Saturated),
            }
        };
        in_flight.fetch_add(1, Ordering::Relaxed);
        let _stream = StreamGuard(in_flight);
        Ok(exchange(sender, request, response_bytes_max).await?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An h2 server on the other end of `io`: answers each request with
    /// `response_bytes` bytes in several DATA frames, after checking the
    /// request's body arrived whole with its length; returns how many it
    /// served once the client closes the connection.
    async fn serve(io: tokio::io::DuplexStream, response_bytes: usize) -> usize {
        let mut connection = h2::server::handshake(io).await.unwrap();
        let mut served = 0;
        while let Some(accepted) = connection.accept().await {
            let (request, mut respond) = accepted.unwrap();
            let length = request.headers()[http::header::CONTENT_LENGTH].clone();
            let body = crate::http::read_h2_stream(request.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!((length.to_str().unwrap(), &body[..]), ("5", &b"hello"[..]));
            let mut stream = respond.send_response(Response::new(()), false).unwrap();
            stream
                .send_data(Bytes::from(vec![b'x'; response_bytes]), true)
                .unwrap();
            served += 1;
        }
        served
    }

    fn request() -> Request<Body> {
        Request::builder()
            .uri("http://svc/x")
            .body(Body::from(Bytes::from_static(b"hello")))
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_response_is_read_whole_and_an_evicted_connection_closes() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = seam::task::spawn(serve(server_io, 100_000));
        let pool = H2Pool::default();
        let response = pool
            .send("svc", request(), 1, 1 << 20, move || handshake(client_io))
            .await
            .unwrap();
        let body = crate::http::body_bytes(response.body());
        assert_eq!(body.len(), 100_000, "joined from several DATA frames");
        assert_eq!(pool.connections("svc"), 1);
        // Every frame exchanged, so the connection task is parked: only
        // the eviction itself can wake it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.evict("svc");
        let served = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the evicted connection closed")
            .unwrap();
        assert_eq!(served, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_response_over_the_limit_is_refused() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        seam::task::spawn(serve(server_io, 5_000));
        let pool = H2Pool::default();
        let error = pool
            .send("svc", request(), 1, 4_096, move || handshake(client_io))
            .await
            .unwrap_err();
        assert!(
            matches!(error, PoolError::Mesh(MeshError::BadRequest(_))),
            "{error}"
        );
    }
}
