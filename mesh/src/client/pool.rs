//! A keep-alive connection pool: idle HTTP/1.1 senders per endpoint.
//!
//! Handshakes dominate a sim that opens a connection per request (notes:
//! ~95 % of CPU), so every hop reuses connections.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use crate::MeshError;
use crate::http::{Body, buffer_response};

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

/// An idle sender and when it became idle.
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// Idle senders, keyed by endpoint, most recently used last.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<BTreeMap<String, Vec<Idle>>>,
}

impl Pool {
    fn checkout(&self, key: &str) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().expect("pool poisoned");
        let senders = idle.get_mut(key)?;
        // The oldest sit first: drop every one past the idle timeout.
        let fresh_from = Instant::now().checked_sub(POOL_IDLE_TIMEOUT);
        senders.retain(|idle| fresh_from.is_none_or(|cut| idle.since > cut));
        while let Some(idle) = senders.pop() {
            if idle.sender.is_ready() {
                return Some(idle.sender);
            }
        }
        None
    }

    fn checkin(&self, key: &str, sender: SendRequest<Body>) {
        if !sender.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool poisoned");
        let senders = idle.entry(key.to_owned()).or_default();
        if senders.len() < IDLE_PER_ENDPOINT_MAX {
            senders.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drops every idle connection (after a certificate change, say).
    pub fn clear(&self) {
        self.idle.lock().expect("pool poisoned").clear();
    }

    /// Sends `request` on a pooled connection to `key`, or on a new one from
    /// `connect`, and buffers the response.
    ///
    /// A pooled connection that the peer closed while idle fails before the
    /// request is written, and hyper hands the request back; that case is
    /// retried once on a fresh connection, which is safe for any method.
    /// (Handed back, not copied beforehand: a copy per request cost more
    /// than the rest of the pool.)
    pub async fn send<F, Fut>(
        &self,
        key: &str,
        request: Request<Body>,
        connect: F,
    ) -> Result<Response<Body>, MeshError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<SendRequest<Body>, MeshError>>,
    {
        let (mut sender, pooled) = match self.checkout(key) {
            Some(sender) => (sender, true),
            None => (connect().await?, false),
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                Some(unsent) if pooled => {
                    sender = connect().await?;
                    sender.send_request(unsent).await?
                }
                _ => return Err(failed.into_error().into()),
            },
        };
        let response = buffer_response(response, RESPONSE_BYTES_MAX).await?;
        self.checkin(key, sender);
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
