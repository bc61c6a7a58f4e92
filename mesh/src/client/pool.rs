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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::Method;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// What the fake app does with each request on one connection.
    #[derive(Clone, Copy)]
    enum Step {
        Answer(&'static [u8]),
        /// Answers, then closes the connection at once.
        AnswerAndClose(&'static [u8]),
        /// Reads the request and closes the connection without an answer.
        Close,
    }

    type Script = Vec<Step>;

    /// Serves `script` on one end of an in-memory connection.
    async fn app(mut io: DuplexStream, script: Script) {
        let mut request = Vec::new();
        for step in script {
            request.clear();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if io.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                request.push(byte[0]);
            }
            match step {
                Step::Answer(answer) => io.write_all(answer).await.expect("app writes"),
                Step::AnswerAndClose(answer) => {
                    io.write_all(answer).await.expect("app writes");
                    return;
                }
                Step::Close => return,
            }
        }
    }

    /// A pool test: each new connection gets the next script; returns what
    /// `body` returns and how many connections were opened.
    fn with_app<T>(
        scripts: Vec<Script>,
        body: impl AsyncFnOnce(&dyn Fn() -> Connect) -> T,
    ) -> (T, usize) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let opened = Arc::new(AtomicUsize::new(0));
        let scripts = Arc::new(Mutex::new(scripts.into_iter()));
        let connect = {
            let opened = opened.clone();
            move || -> Connect {
                let script = scripts.lock().expect("scripts").next().expect("a script");
                opened.fetch_add(1, Ordering::SeqCst);
                let (client, server) = tokio::io::duplex(4096);
                seam::task::spawn(app(server, script));
                Box::pin(async move { Ok(Box::new(client) as BoxIo) })
            }
        };
        let result = runtime.block_on(body(&connect));
        (result, opened.load(Ordering::SeqCst))
    }

    type Connect = std::pin::Pin<Box<dyn Future<Output = Result<BoxIo, MeshError>>>>;

    fn request(method: Method) -> Request<Body> {
        let mut request = Request::new(Body::default());
        *request.method_mut() = method;
        *request.uri_mut() = "/ping".parse().expect("uri");
        request
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[test]
    fn a_kept_alive_connection_carries_the_next_request() {
        let (statuses, opened) = with_app(
            vec![vec![Step::Answer(OK), Step::Answer(OK)]],
            async |connect| {
                let pool = Pool::default();
                let mut statuses = Vec::new();
                for _ in 0..2 {
                    let answer = pool.send("app", request(Method::GET), connect).await;
                    statuses.push(answer.expect("answered").status().as_u16());
                }
                statuses
            },
        );
        assert_eq!((statuses, opened), (vec![200, 200], 1));
    }

    #[test]
    fn a_connection_the_app_closed_while_idle_is_not_reused() {
        let script = || vec![Step::AnswerAndClose(OK)];
        let (answered, opened) = with_app(vec![script(), script()], async |connect| {
            let pool = Pool::default();
            let mut answered = Vec::new();
            for _ in 0..2 {
                let answer = pool.send("app", request(Method::POST), connect).await;
                answered.push(answer.is_ok());
            }
            answered
        });
        // Reused, the closed connection would have failed the POST (which
        // is never resent): the pool saw the close and opened another.
        assert_eq!((answered, opened), (vec![true, true], 2));
    }

    #[test]
    fn a_reused_connection_that_dies_resends_a_get_but_never_a_post() {
        let dies_on_second = || vec![Step::Answer(OK), Step::Close];
        let (results, opened) = with_app(
            vec![dies_on_second(), dies_on_second(), vec![Step::Answer(OK)]],
            async |connect| {
                let pool = Pool::default();
                // Connection 1: a GET, then a POST it dies on (not resent).
                // Connection 2: a GET, then a GET it dies on, resent on 3.
                let mut results = Vec::new();
                for method in [Method::GET, Method::POST, Method::GET, Method::GET] {
                    results.push(pool.send("app", request(method), connect).await.is_ok());
                }
                results
            },
        );
        assert_eq!((results, opened), (vec![true, false, true, true], 3));
    }

    #[test]
    fn a_response_loses_its_framing_headers_and_keeps_the_rest() {
        let chunked: &[u8] = b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\nx-app: 1\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        let (response, _) = with_app(vec![vec![Step::Answer(chunked)]], async |connect| {
            Pool::default()
                .send("app", request(Method::GET), connect)
                .await
                .expect("answered")
        });
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(body_bytes(response.body()), "hi");
        let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-app"]);
    }

    #[test]
    fn a_body_over_the_limit_is_refused() {
        let long: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n12345";
        let (refused, _) = with_app(vec![vec![Step::Answer(long)]], async |connect| {
            let io = connect().await.expect("connects");
            send_once(io, &request(Method::GET), 4).await
        });
        assert!(matches!(refused, Err(MeshError::Http1(ReadError::Body(_)))));
    }
}
