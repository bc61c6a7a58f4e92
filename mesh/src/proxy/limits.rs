//! Limits every proxy listener enforces, and the one function that serves a
//! connection under them, over HTTP/1.1 or HTTP/2.
//!
//! * Header size: HTTP/1.1 read buffer, HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`;
//!   over it, hyper answers 431.
//! * Concurrent streams per HTTP/2 connection (the `h2` exhaustion bugs,
//!   CVE-2023-26964, are why this is bounded), plus a bound on streams a
//!   client may reset before being disconnected (`h2server`).
//! * Header-read timeout (slowloris) and idle timeout: a connection with no
//!   bytes either way and no request in flight for that long is closed.
//! * Malformed HTTP: hyper answers 400 (HTTP/1.1), h2 resets the stream or
//!   closes the connection (HTTP/2), and the handler is never called.
//!   Nothing here panics on input.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use seam::Io;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::MeshError;
use crate::http::{Body, RequestBody};
use crate::proxy::h2server;

/// Resource limits of a listener.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest header block accepted.
    pub header_bytes_max: usize,
    /// Largest request body accepted (bodies are buffered, so retries can
    /// resend them).
    pub request_bytes_max: usize,
    /// HTTP/2 streams one connection may have open.
    pub max_concurrent_streams: u32,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// A connection with nothing in flight and no bytes for this long is
    /// closed. meshsim's choice (the meshes differ: Envoy 1 h, Linkerd
    /// none by default): long enough for a pooled HTTP/2 mesh connection to
    /// outlive ordinary gaps in traffic, short enough that abandoned ones do
    /// not pile up. (An idle HTTP/1.1 keep-alive connection is closed
    /// sooner, by hyper's header-read timeout, which also runs between
    /// requests; callers' pools reconnect.)
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_bytes_max: 16 * 1024,
            request_bytes_max: 1024 * 1024,
            max_concurrent_streams: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// HTTP version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

/// Time after a graceful shutdown starts before the connection is dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Last activity and requests in flight on one connection.
#[derive(Clone)]
struct Activity {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last_ms: Arc::default(),
            in_flight: Arc::default(),
        }
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once the connection has been idle for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            let wake = if Instant::now() >= deadline {
                Instant::now() + idle
            } else {
                deadline
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// One request's handler future, boxed as soon as it exists, and its
/// in-flight mark (dropped with it, when hyper has the response).
///
/// A proxy's handler future is kilobytes (the outbound one about 10 KB:
/// every await of routing, retries and the pooled send lives in it), and
/// hyper moves what a service returns: into the HTTP/1.1 dispatcher's slot,
/// or into the task it spawns per HTTP/2 stream. Boxing here makes each of
/// those moves a pointer; an `async` block around the handler's future
/// would instead be twice its size and copy it again on its first poll.
/// Callgrind counted memcpy at 61 % of the HTTP/2 side's instructions
/// before this (BENCHMARKS.md, "Issue 21").
struct Handling<Fut> {
    response: Pin<Box<Fut>>,
    _in_flight: InFlight,
}

impl<Fut> Handling<Fut> {
    /// Counts the request in flight on `activity` until the handler's
    /// future is dropped.
    fn new(response: Fut, activity: &Activity) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Handling {
            response: Box::pin(response),
            _in_flight: InFlight(activity.clone()),
        }
    }
}

impl<Fut: Future<Output = Response<Body>>> Future for Handling<Fut> {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.response.as_mut().poll(cx).map(Ok)
    }
}

/// A stream that records when bytes last moved.
struct Tracked<I> {
    inner: I,
    activity: Activity,
}

impl<I: Io> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: Io> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one connection under `limits`, calling `handler` per request.
pub async fn serve<I, F, Fut>(
    io: I,
    protocol: Protocol,
    limits: &Limits,
    handler: F,
) -> Result<(), MeshError>
where
    I: Io,
    F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = Activity::new();
    let tracked = Tracked {
        inner: io,
        activity: activity.clone(),
    };
    let idle = activity.idle_for(limits.idle_timeout);
    let counted = activity.clone();
    match protocol {
        Protocol::Http1 => {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                Handling::new(handler(request.map(RequestBody::Http1)), &counted)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .auto_date_header(false)
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.header_bytes_max.max(8192))
                .serve_connection(TokioIo::new(tracked), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                biased;
                result = connection.as_mut() => return result.map_err(MeshError::from),
                _ = idle => connection.as_mut().graceful_shutdown(),
            }
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
            Ok(())
        }
        Protocol::Http2 => {
            let handle = move |request| Handling::new(handler(request), &counted);
            h2server::serve(tracked, limits, idle, SHUTDOWN_GRACE, handle).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::pool::POOL_IDLE_TIMEOUT;

    #[test]
    fn the_pool_gives_up_a_connection_before_a_server_would_close_it() {
        assert!(POOL_IDLE_TIMEOUT < Limits::default().header_read_timeout);
    }
}
