//! The small HTTP toolkit every component shares: one body type, one way to
//! serve a connection, one way to open a client connection.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use seam::Io;

use crate::MeshError;

/// Every body meshsim sends is buffered: bounded, cheap to retry, and the
/// service-time model does not care about streaming.
pub type Body = Full<Bytes>;

/// How long a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest header block a server accepts.
pub const HEADER_BYTES_MAX: usize = 16 * 1024;

/// A plain-text response.
pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(Bytes::from(message.to_owned())));
    *response.status_mut() = status;
    response
}

/// A JSON response.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::from(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// How long a whole body may take to arrive, once its headers have: a
/// body that never comes is not awaited forever (slowloris in the body).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The body of a request a proxy listener received: hyper's for HTTP/1.1,
/// h2's own stream for HTTP/2 (the mesh-facing listener serves HTTP/2
/// with `h2` directly, `proxy::h2server`).
pub enum RequestBody {
    /// From hyper's HTTP/1.1 server.
    Http1(Incoming),
    /// From an `h2` server stream.
    Http2(RecvStream),
}

impl RequestBody {
    /// Reads the whole body, as [`read_body`] and [`read_h2_stream`] do.
    pub async fn read(self, limit: usize) -> Result<Bytes, MeshError> {
        match self {
            RequestBody::Http1(body) => read_body(body, limit).await,
            RequestBody::Http2(stream) => read_h2_stream(stream, limit).await,
        }
    }
}

/// Reads a whole body, refusing more than `limit` bytes or a body that
/// takes longer than [`BODY_READ_TIMEOUT`].
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, MeshError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error:
        std::fmt::Display + Send + Sync + 'static + Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Most requests carry none: no collector, no deadline.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let collecting = Limited::new(body, limit).collect();
    within_body_deadline(async {
        match collecting.await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) => Err(MeshError::BadRequest(e.to_string())),
        }
    })
    .await
}

/// Reads a whole HTTP/2 body, returning flow-control credit as it goes,
/// refusing more than `limit` bytes or a body slower than
/// [`crate::http::BODY_READ_TIMEOUT`]. A body in one frame is returned
/// without a copy; only a second frame starts a buffer.
pub async fn read_h2_stream(mut body: RecvStream, limit: usize) -> Result<Bytes, MeshError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    within_body_deadline(async {
        let mut first = Bytes::new();
        let mut joined: Option<BytesMut> = None;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(MeshError::http2(false))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            let so_far = joined.as_ref().map_or(first.len(), BytesMut::len);
            if so_far + chunk.len() > limit {
                return Err(MeshError::BadRequest("length limit exceeded".into()));
            }
            match &mut joined {
                None if first.is_empty() => first = chunk,
                None => {
                    let mut buffer = BytesMut::from(&first[..]);
                    buffer.extend_from_slice(&chunk);
                    joined = Some(buffer);
                }
                Some(buffer) => buffer.extend_from_slice(&chunk),
            }
        }
        Ok(joined.map_or(first, BytesMut::freeze))
    })
    .await
}

/// Bounds a whole-body read by [`BODY_READ_TIMEOUT`]; every reader of a
/// body (hyper's, and h2's) goes through it.
pub async fn within_body_deadline<F>(reading: F) -> Result<Bytes, MeshError>
where
    F: std::future::Future<Output = Result<Bytes, MeshError>>,
{
    tokio::time::timeout(BODY_READ_TIMEOUT, reading)
        .await
        .unwrap_or_else(|_| {
            Err(MeshError::BadRequest(format!(
                "the body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            )))
        })
}

/// Serves HTTP/1.1 on one connection. The `Date` header is off: it reads the
/// OS clock, which would make the simulation's bytes depend on when it ran.
pub async fn serve_connection<I, S>(io: I, service: S) -> Result<(), MeshError>
where
    I: Io,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .auto_date_header(false)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HEADER_BYTES_MAX.max(8192))
        .serve_connection(TokioIo::new(io), service)
        .await
        .map_err(MeshError::from)
}

/// Opens an HTTP/1.1 client connection over `io`; the connection task runs
/// in the background until the sender is dropped.
pub async fn handshake<I: Io>(io: I) -> Result<SendRequest<Body>, MeshError> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    seam::task::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The bytes of a buffered body.
pub fn body_bytes(body: &Body) -> Bytes {
    body.clone().into_inner().unwrap_or_default()
}

/// A buffered response: status, headers and the whole body.
pub async fn buffer_response(
    response: Response<Incoming>,
    limit: usize,
) -> Result<Response<Body>, MeshError> {
    let (parts, body) = response.into_parts();
    let bytes = read_body(body, limit).await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
