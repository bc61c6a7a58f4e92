//! A bounded pool of keep-alive HTTP/1.1 connections to one target, over
//! the seam, with optional (m)TLS.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use seam::{BoxIo, Net};
use tokio::sync::Semaphore;

/// TLS settings for an HTTPS target.
#[derive(Clone)]
pub struct TlsTarget {
    /// Client config (roots, optional client certificate).
    pub config: Arc<rustls::ClientConfig>,
    /// Name to verify the server against.
    pub server_name: ServerName<'static>,
}

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    /// Host to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// `Host` header value.
    pub authority: String,
    /// TLS, if HTTPS.
    pub tls: Option<TlsTarget>,
}

type Body = Full<bytes::Bytes>;

/// Connections to the target; at most `permits` in use at once.
pub(crate) struct ConnectionPool {
    net: Arc<dyn Net>,
    target: Target,
    idle: Mutex<Vec<SendRequest<Body>>>,
    permits: Semaphore,
}

/// What one exchange produced.
pub(crate) enum Exchange {
    /// Status and the time the request was actually written.
    Answered {
        status: u16,
        sent: tokio::time::Instant,
        body: bytes::Bytes,
    },
    /// No response (connect, TLS or protocol failure).
    Failed {
        reason: String,
        sent: tokio::time::Instant,
    },
}

impl ConnectionPool {
    pub(crate) fn new(net: Arc<dyn Net>, target: Target, connections_max: usize) -> Self {
        ConnectionPool {
            net,
            target,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(connections_max.max(1)),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, String> {
        let io: BoxIo = self
            .net
            .connect(&self.target.host, self.target.port)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let io: BoxIo = match &self.target.tls {
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                Box::new(
                    connector
                        .connect(tls.server_name.clone(), io)
                        .await
                        .map_err(|e| format!("tls: {e}"))?,
                )
            }
            None => io,
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Waits for a connection slot (that wait is part of the latency), sends,
    /// and reads the whole response.
    pub(crate) async fn exchange(&self, request: Request<Body>) -> Exchange {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        let sent = tokio::time::Instant::now();
        let idle = self
            .idle
            .lock()
            .expect("pool poisoned")
            .pop()
            .filter(|s| s.is_ready());
        let mut sender = match idle {
            Some(sender) => sender,
            None => match self.connect().await {
                Ok(sender) => sender,
                Err(reason) => return Exchange::Failed { reason, sent },
            },
        };
        let response: Response<hyper::body::Incoming> = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                return Exchange::Failed {
                    reason: format!("http: {e}"),
                    sent,
                };
            }
        };
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return Exchange::Failed {
                    reason: format!("body: {e}"),
                    sent,
                };
            }
        };
        self.idle.lock().expect("pool poisoned").push(sender);
        Exchange::Answered { status, sent, body }
    }
}
