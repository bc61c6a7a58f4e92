//! A keep-alive connection pool: idle HTTP/1.1 connections per endpoint,
//! each driven by the task that sends on it (`h1wire`), not by a
//! connection task of its own.
//!
//! Handshakes dominate a sim that opens a connection per request (notes:
//! ~95 % of CPU), so every hop reuses connections.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use h1wire::{Connection, ReadError, ResponseSink};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use seam::BoxIo;
use tokio::time::Instant;

use crate::MeshError;
use crate::http::{Body, body_bytes};
use crate::proxy::strip_headers;

/// Idle connections kept per endpoint.
const IDLE_PER_ENDPOINT_MAX: usize = 64;

/// A pooled connection idle this long is dropped instead of reused. It must
/// stay below the servers' keep-alive cut (`Limits::header_read_timeout`,
/// 10 s): otherwise the pool can write a request onto a connection at the
/// instant the server closes it, and the request fails with "connection
/// closed before message completed" after it may have been sent — the
/// classic keep-alive race (Envoy and Go's transport avoid it the same way).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response body a hop buffers.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Idle connections, keyed by endpoint, most recently used last.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<BTreeMap<String, Vec<Connection<BoxIo>>>>,
}

impl Pool {
    /// The most recently used idle connection to `key` that is still
    /// fresh and that the server has not closed meanwhile.
    fn checkout(&self, key: &str) -> Option<Connection<BoxIo>> {
        let mut idle = self.idle.lock().expect("pool poisoned");
        let connections = idle.get_mut(key)?;
        // The oldest sit first: drop every one past the idle timeout.
        let fresh_from = Instant::now().checked_sub(POOL_IDLE_TIMEOUT);
        connections.retain(|c| fresh_from.is_none_or(|cut| c.idle_since > cut));
        while let Some(mut connection) = connections.pop() {
            if !connection.closed_while_idle() {
                return Some(connection);
            }
        }
        None
    }

    fn checkin(&self, key: &str, mut connection: Connection<BoxIo>) {
        connection.idle_since = Instant::now();
        let mut idle = self.idle.lock().expect("pool poisoned");
        match idle.get_mut(key) {
            Some(connections) if connections.len() < IDLE_PER_ENDPOINT_MAX => {
                connections.push(connection);
            }
            Some(_) => {}
            None => {
                idle.insert(key.to_owned(), vec![connection]);
            }
        }
    }

    /// Drops every idle connection (after a certificate change, say).
    pub fn clear(&self) {
        self.idle.lock().expect("pool poisoned").clear();
    }

    /// Sends `request` on a pooled connection to `key`, or on a new one from
    /// `connect`, and reads the whole response (at most
    /// [`RESPONSE_BYTES_MAX`] of body).
    ///
    /// A pooled connection that yields no response at all was most likely
    /// closed by the server while idle: an idempotent request is then sent
    /// once more, on a new connection (`h1wire::may_resend`). Any other
    /// request fails, since the server may have acted on it.
    pub async fn send<F, Fut>(
        &self,
        key: &str,
        request: Request<Body>,
        connect: F,
    ) -> Result<Response<Body>, MeshError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<BoxIo, MeshError>>,
    {
        let wire = encode(&request)?;
        let method = request.method();
        let mut resent = false;
        loop {
            let (mut connection, reused) = match self.checkout(key) {
                Some(connection) => (connection, true),
                None => (Connection::new(connect().await?, Instant::now()), false),
            };
            let mut kept = Kept::new(RESPONSE_BYTES_MAX);
            match connection.round_trip(&wire, method, &mut kept).await {
                Ok(answer) => {
                    if answer.reusable {
                        self.checkin(key, connection);
                    }
                    return kept.into_response(answer.status);
                }
                Err(error) if h1wire::may_resend(&error, reused, resent, method) => resent = true,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Sends `request` on `io`, a connection of its own that is dropped
/// afterwards, and reads the whole response (at most `limit` bytes of
/// body).
pub async fn send_once(
    io: BoxIo,
    request: &Request<Body>,
    limit: usize,
) -> Result<Response<Body>, MeshError> {
    let wire = encode(request)?;
    let mut connection = Connection::new(io, Instant::now());
    let mut kept = Kept::new(limit);
    let answer = connection
        .round_trip(&wire, request.method(), &mut kept)
        .await?;
    kept.into_response(answer.status)
}

/// The request on the wire: its target as hyper writes it (origin form,
/// or absolute form when the URI has a scheme), its headers, its body.
fn encode(request: &Request<Body>) -> Result<BytesMut, MeshError> {
    let body = body_bytes(request.body());
    let uri = request.uri();
    let absolute;
    let target = match (uri.scheme(), uri.path_and_query()) {
        (None, Some(path)) => path.as_str(),
        (None, None) => "/",
        (Some(_), _) => {
            absolute = uri.to_string();
            &absolute
        }
    };
    let mut wire = BytesMut::with_capacity(256 + body.len());
    h1wire::encode_request(
        &mut wire,
        request.method(),
        target.as_bytes(),
        request.headers(),
        &body,
    )
    .map_err(|e| MeshError::BadRequest(e.to_string()))?;
    Ok(wire)
}

/// A response's headers and body (at most `limit` bytes), as they arrive.
struct Kept {
    headers: HeaderMap,
    body: BytesMut,
    limit: usize,
}

impl ResponseSink for Kept {
    fn header(&mut self, name: &str, value: &[u8]) -> Result<(), ReadError> {
        let name = HeaderName::from_bytes(name.as_bytes());
        let value = HeaderValue::from_bytes(value);
        let (Ok(name), Ok(value)) = (name, value) else {
            return Err(ReadError::Head("a response header is not valid".into()));
        };
        self.headers.append(name, value);
        Ok(())
    }

    fn body(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        if self.body.len() + bytes.len() > self.limit {
            return Err(ReadError::Body(format!(
                "the response body is longer than {} bytes",
                self.limit
            )));
        }
        self.body.extend_from_slice(bytes);
        Ok(())
    }
}

impl Kept {
    fn new(limit: usize) -> Kept {
        Kept {
            headers: HeaderMap::new(),
            body: BytesMut::new(),
            limit,
        }
    }

    /// The buffered response, without the hop-by-hop headers that framed
    /// it on this connection (the body is whole now).
    fn into_response(self, status: u16) -> Result<Response<Body>, MeshError> {
        let status = StatusCode::from_u16(status)
            .map_err(|_| ReadError::Head(format!("{status} is not a status code")))?;
        let mut response = Response::new(Body::from(self.body.freeze()));
        *response.status_mut() = status;
        *response.headers_mut() = self.headers;
        strip_headers(response.headers_mut(), &[]);
        Ok(response)
    }
}

/// A copy of a buffered request (bodies are `Full`, so this is cheap).
pub fn clone_request(request: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}
