//! A bounded pool of connections to one target, over the seam: keep-alive
//! HTTP/1.1 (one request per connection at a time) or HTTP/2 (requests
//! multiplexed over a few connections), either with optional (m)TLS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use seam::{BoxIo, Net};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::Protocol;

/// Bytes of each response body kept for observers (the rest is read and
/// discarded, so the connection stays reusable).
pub const BODY_KEEP_BYTES: usize = 4096;

/// TLS settings for an HTTPS target.
#[derive(Clone, Debug)]
pub struct TlsTarget {
    /// Client config (roots, optional client certificate, ALPN).
    pub config: Arc<rustls::ClientConfig>,
    /// Name to verify the server against.
    pub server_name: ServerName<'static>,
}

/// Where the load goes.
#[derive(Clone, Debug)]
pub struct Target {
    /// Host to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// `Host` header (HTTP/1.1) or `:authority` (HTTP/2) value.
    pub authority: String,
    /// TLS, if HTTPS.
    pub tls: Option<TlsTarget>,
}

impl Target {
    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

type Body = Full<Bytes>;

/// Why an exchange produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The request could not be built (a rendered path is not a URI…).
    #[error("request: {0}")]
    Request(String),
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The TLS handshake failed (or ALPN did not agree on HTTP/2).
    #[error("tls: {0}")]
    Tls(String),
    /// The HTTP exchange failed (handshake, reset, protocol error).
    #[error("http: {0}")]
    Http(String),
    /// The response body broke off.
    #[error("body: {0}")]
    Body(String),
    /// No answer within the request timeout.
    #[error("timeout after {0} ms")]
    Timeout(u64),
}

impl ExchangeError {
    /// A short stable name for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ExchangeError::Request(_) => "request",
            ExchangeError::Connect(_) => "connect",
            ExchangeError::Tls(_) => "tls",
            ExchangeError::Http(_) => "http",
            ExchangeError::Body(_) => "body",
            ExchangeError::Timeout(_) => "timeout",
        }
    }
}

/// What a response carried.
pub(crate) struct Answer {
    pub status: u16,
    /// The first [`BODY_KEEP_BYTES`] of the body.
    pub body: Bytes,
}

/// What one exchange produced.
pub(crate) struct Exchange {
    /// When the request got a connection and started on the wire; `None`
    /// if it timed out before it got one.
    pub sent: Option<Instant>,
    /// The response, or why there was none.
    pub result: Result<Answer, ExchangeError>,
}

/// A kept-alive connection idle this long is closed instead of reused. It
/// stays below the usual server keep-alive cuts (meshsim's sidecar: 10 s;
/// nginx: 75 s; Go: 90 s…): a request written onto a connection at the
/// instant the server closes it fails although the server never saw it.
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An idle keep-alive connection and when it became idle.
struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// HTTP/1.1: idle keep-alive connections; a semaphore bounds how many are
/// in use, and waiting for one is part of the request's latency.
struct Http1Pool {
    idle: Mutex<Vec<Idle>>,
    permits: Semaphore,
}

/// HTTP/2: a fixed set of slots, each holding one multiplexed connection
/// (reopened when it closes), used round robin.
struct Http2Pool {
    slots: Vec<tokio::sync::Mutex<Option<http2::SendRequest<Body>>>>,
    next: AtomicUsize,
}

enum Pool {
    Http1(Http1Pool),
    Http2(Http2Pool),
}

/// Connections to the target.
pub(crate) struct ConnectionPool {
    net: Arc<dyn Net>,
    target: Target,
    pool: Pool,
}

impl ConnectionPool {
    pub(crate) fn new(
        net: Arc<dyn Net>,
        target: Target,
        protocol: Protocol,
        connections_max: usize,
    ) -> Self {
        let connections = connections_max.max(1);
        let pool = match protocol {
            Protocol::Http1 => Pool::Http1(Http1Pool {
                idle: Mutex::new(Vec::with_capacity(connections)),
                permits: Semaphore::new(connections),
            }),
            Protocol::Http2 => Pool::Http2(Http2Pool {
                slots: (0..connections)
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect(),
                next: AtomicUsize::new(0),
            }),
        };
        ConnectionPool { net, target, pool }
    }

    async fn open(&self, http2: bool) -> Result<BoxIo, ExchangeError> {
        open(self.net.as_ref(), &self.target, http2).await
    }

    async fn connect_http1(&self) -> Result<http1::SendRequest<Body>, ExchangeError> {
        let io = self.open(false).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ExchangeError::Http(e.to_string()))?;
        seam::task::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn connect_http2(&self) -> Result<http2::SendRequest<Body>, ExchangeError> {
        let io = self.open(true).await?;
        let (sender, connection) = http2::handshake(seam::task::Executor, TokioIo::new(io))
            .await
            .map_err(|e| ExchangeError::Http(e.to_string()))?;
        seam::task::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends `request` and reads the whole response, giving up at
    /// `deadline` (tokio time, so simulated time in the sim).
    pub(crate) async fn exchange(&self, request: Request<Body>, deadline: Instant) -> Exchange {
        let mut sent = None;
        let result = match tokio::time::timeout_at(
            deadline,
            self.exchange_inner(request, &mut sent),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => {
                let waited = deadline.duration_since(sent.unwrap_or(deadline));
                Err(ExchangeError::Timeout(waited.as_millis() as u64))
            }
        };
        Exchange { sent, result }
    }

    async fn exchange_inner(
        &self,
        request: Request<Body>,
        sent: &mut Option<Instant>,
    ) -> Result<Answer, ExchangeError> {
        match &self.pool {
            Pool::Http1(pool) => {
                let _permit = pool
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                *sent = Some(Instant::now());
                let (mut sender, pooled) = self.idle_http1(pool).await?;
                let retry_copy = pooled.then(|| clone_request(&request));
                let response = match sender.send_request(request).await {
                    // The peer closed the kept-alive connection before a
                    // byte of the request was written (`is_canceled`): the
                    // server never saw it, so resending is safe for any
                    // method. Once, on a fresh connection.
                    Err(error) if error.is_canceled() && retry_copy.is_some() => {
                        sender = self.connect_http1().await?;
                        sender.send_request(retry_copy.expect("checked")).await
                    }
                    response => response,
                };
                let answer = read(response).await?;
                pool.idle.lock().expect("pool poisoned").push(Idle {
                    sender,
                    since: Instant::now(),
                });
                Ok(answer)
            }
            Pool::Http2(pool) => {
                *sent = Some(Instant::now());
                let slot = pool.next.fetch_add(1, Ordering::Relaxed) % pool.slots.len();
                let mut sender = {
                    let mut held = pool.slots[slot].lock().await;
                    match held.as_ref().filter(|s| !s.is_closed()) {
                        Some(sender) => sender.clone(),
                        None => {
                            let sender = self.connect_http2().await?;
                            *held = Some(sender.clone());
                            sender
                        }
                    }
                };
                sender
                    .ready()
                    .await
                    .map_err(|e| ExchangeError::Http(e.to_string()))?;
                read(sender.send_request(request).await).await
            }
        }
    }

    /// An idle connection that is ready for a request (`true`: it was
    /// pooled), or a new one. Connections idle past [`POOL_IDLE_TIMEOUT`]
    /// are closed first.
    async fn idle_http1(
        &self,
        pool: &Http1Pool,
    ) -> Result<(http1::SendRequest<Body>, bool), ExchangeError> {
        loop {
            let idle = {
                let mut idle = pool.idle.lock().expect("pool poisoned");
                let fresh_from = Instant::now().checked_sub(POOL_IDLE_TIMEOUT);
                idle.retain(|idle| fresh_from.is_none_or(|cut| idle.since > cut));
                idle.pop()
            };
            let Some(Idle { mut sender, .. }) = idle else {
                return Ok((self.connect_http1().await?, false));
            };
            // A connection finishing its previous response becomes ready
            // in a moment; one the server closed errors and is dropped.
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
    }
}

/// Connects to `target`: TCP, then TLS if configured. With HTTP/2 over TLS
/// the server must agree to `h2` by ALPN, or nothing it says could be
/// parsed.
pub(crate) async fn open(
    net: &dyn Net,
    target: &Target,
    http2: bool,
) -> Result<BoxIo, ExchangeError> {
    let io = net
        .connect(&target.host, target.port)
        .await
        .map_err(|e| ExchangeError::Connect(e.to_string()))?;
    let Some(tls) = &target.tls else {
        return Ok(io);
    };
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let stream = connector
        .connect(tls.server_name.clone(), io)
        .await
        .map_err(|e| ExchangeError::Tls(e.to_string()))?;
    if http2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(ExchangeError::Tls(
            "the server did not agree to HTTP/2 (ALPN h2)".into(),
        ));
    }
    Ok(Box::new(stream))
}

/// A copy of a request (bodies are `Full`, so this is cheap).
fn clone_request(request: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Reads the status and the body, keeping its first [`BODY_KEEP_BYTES`].
async fn read(
    response: Result<Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<Answer, ExchangeError> {
    let response = response.map_err(|e| ExchangeError::Http(e.to_string()))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut kept = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ExchangeError::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            let room = BODY_KEEP_BYTES - kept.len();
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(Answer {
        status,
        body: kept.freeze(),
    })
}
