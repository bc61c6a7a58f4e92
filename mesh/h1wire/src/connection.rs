//! One kept-alive HTTP/1.1 connection, driven by whoever holds it.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use http::Method;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::response::{ReadError, Response, ResponseSink, read_response};

/// Read buffer a connection starts with.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A connection, its read buffer, and when it last went idle.
pub struct Connection<I> {
    io: I,
    read: BytesMut,
    /// When the last exchange ended (or the connection opened).
    pub idle_since: Instant,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Connection<I> {
    pub fn new(io: I, now: Instant) -> Connection<I> {
        Connection {
            io,
            read: BytesMut::with_capacity(READ_BUFFER_BYTES),
            idle_since: now,
        }
    }

    /// Writes `wire` (one whole request) and reads the response to it into
    /// `sink`. A failed write is [`ReadError::NoResponse`]: nothing came
    /// back, whatever reached the server.
    pub async fn round_trip<S: ResponseSink + ?Sized>(
        &mut self,
        wire: &[u8],
        method: &Method,
        sink: &mut S,
    ) -> Result<Response, ReadError> {
        // Bytes nobody asked for (after the last response) are dropped, so
        // they cannot be taken for this request's answer.
        self.read.clear();
        let written = async {
            self.io.write_all(wire).await?;
            self.io.flush().await
        };
        written
            .await
            .map_err(|e| ReadError::NoResponse(e.to_string()))?;
        read_response(&mut self.io, &mut self.read, method, sink).await
    }

    /// Whether the server closed the connection (or sent bytes nobody
    /// asked for) while it sat idle: one read, polled once, that must not
    /// be ready. A kept-alive connection is checked before reuse, so a
    /// request is not written onto one the server has already let go.
    pub fn closed_while_idle(&mut self) -> bool {
        self.read.clear();
        self.read.reserve(1);
        let mut context = Context::from_waker(Waker::noop());
        let spare = self.read.spare_capacity_mut();
        let mut probe = ReadBuf::uninit(&mut spare[..1]);
        !matches!(
            Pin::new(&mut self.io).poll_read(&mut context, &mut probe),
            Poll::Pending
        )
    }
}

/// Whether a request that got [`ReadError::NoResponse`] may be sent once
/// more on a new connection: only after a reused connection failed (the
/// server most likely closed it while idle), only once, and only for an
/// idempotent method (RFC 9110 §9.2.2), as Go's transport does.
pub fn may_resend(error: &ReadError, reused: bool, resent: bool, method: &Method) -> bool {
    matches!(error, ReadError::NoResponse(_)) && reused && !resent && method.is_idempotent()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::Discard;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_connection_carries_requests_until_the_server_closes_it() {
        runtime().block_on(async {
            let (client, mut server) = tokio::io::duplex(4096);
            let mut connection = Connection::new(client, Instant::now());
            assert!(!connection.closed_while_idle(), "open and quiet");
            server
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .expect("server writes");
            let answer = connection
                .round_trip(b"GET / HTTP/1.1\r\n\r\n", &Method::GET, &mut Discard)
                .await
                .expect("answered");
            assert!(answer.reusable);
            server.write_all(b"junk").await.expect("server writes");
            assert!(connection.closed_while_idle(), "unasked-for bytes");
            drop(server);
            assert!(connection.closed_while_idle(), "closed");
            let failed = connection
                .round_trip(b"GET / HTTP/1.1\r\n\r\n", &Method::GET, &mut Discard)
                .await
                .expect_err("nobody answers");
            assert!(matches!(failed, ReadError::NoResponse(_)));
        });
    }

    #[test]
    fn only_an_idempotent_request_on_a_reused_connection_is_resent_once() {
        let gone = ReadError::NoResponse("closed".into());
        assert!(may_resend(&gone, true, false, &Method::GET));
        assert!(may_resend(&gone, true, false, &Method::PUT));
        assert!(!may_resend(&gone, true, false, &Method::POST));
        assert!(!may_resend(&gone, false, false, &Method::GET));
        assert!(!may_resend(&gone, true, true, &Method::GET));
        let broken = ReadError::Body("cut".into());
        assert!(!may_resend(&broken, true, false, &Method::GET));
    }
}
