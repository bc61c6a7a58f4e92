//! The HTTP/2 side of a proxy listener, served with the `h2` crate
//! directly: the server counterpart of `h2pool`.
//!
//! hyper's HTTP/2 server wraps every stream in a task that adapts hyper's
//! body trait to h2's send stream, strips connection headers a second time
//! and polls a boxed body for data meshsim has already buffered. Here each
//! stream is one task that runs the handler and hands h2 the buffered
//! response whole (BENCHMARKS.md, issue 21, session 9).
//!
//! The limits hyper applied are applied here, with hyper's defaults where
//! meshsim had not chosen: `Limits::max_concurrent_streams`, the header-list
//! size, the bound on streams a client resets before they are accepted
//! (rapid reset), flow-control windows and the send buffer. A stream the
//! client resets while its handler runs has its handler dropped, as hyper
//! does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{HeaderValue, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::MeshError;
use crate::http::{Body, RequestBody};
use crate::proxy::h2pool::{LOCAL_ERROR_RESETS_MAX, RESET_STREAM_MEMORY};
use crate::proxy::limits::Limits;
use crate::proxy::strip_headers;

/// hyper's HTTP/2 server defaults, kept when the server moved to `h2`.
const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 1024 * 1024;
const FRAME_BYTES_MAX: u32 = 16 * 1024;
const SEND_BUFFER_BYTES_MAX: usize = 400 * 1024;

/// Streams a client may reset before the server accepts them, before the
/// connection is closed (h2's "rapid reset" defence, CVE-2023-44487).
const PENDING_RESETS_MAX: usize = 20;

/// Serves HTTP/2 on `io` until the client closes it or `stop` resolves;
/// then stops accepting (GOAWAY) and lets the streams in flight finish
/// within `grace`. `handle` turns a request into its response (hyper's
/// service shape, so `limits::Handling` serves both protocols unwrapped).
pub(super) async fn serve<I, S, H>(
    io: I,
    limits: &Limits,
    stop: impl Future<Output = ()>,
    grace: Duration,
    handle: S,
) -> Result<(), MeshError>
where
    I: AsyncRead + AsyncWrite + Unpin,
    S: Fn(Request<RequestBody>) -> H,
    H: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let mut stop = pin!(stop);
    let handshake = builder(limits).handshake::<_, Bytes>(io);
    let mut connection = tokio::select! {
        biased;
        connection = handshake => connection.map_err(MeshError::http2(false))?,
        () = stop.as_mut() => return Ok(()),
    };
    loop {
        tokio::select! {
            biased;
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => spawn_stream(request, respond, &handle),
                Some(Err(error)) => return Err(MeshError::http2(false)(error)),
                None => return Ok(()),
            },
            () = stop.as_mut() => break,
        }
    }
    connection.graceful_shutdown();
    let draining = async {
        while let Some(Ok((request, respond))) = connection.accept().await {
            spawn_stream(request, respond, &handle);
        }
    };
    let _ = tokio::time::timeout(grace, draining).await;
    Ok(())
}

fn builder(limits: &Limits) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(FRAME_BYTES_MAX)
        .max_header_list_size(limits.header_bytes_max as u32)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_pending_accept_reset_streams(PENDING_RESETS_MAX)
        .max_local_error_reset_streams(Some(LOCAL_ERROR_RESETS_MAX))
        .max_send_buffer_size(SEND_BUFFER_BYTES_MAX)
        .reset_stream_duration(RESET_STREAM_MEMORY);
    builder
}

/// Runs one stream's handler in its own task and sends what it answers,
/// unless the client resets the stream first.
fn spawn_stream<S, H>(request: Request<RecvStream>, mut respond: SendResponse<Bytes>, handle: &S)
where
    S: Fn(Request<RequestBody>) -> H,
    H: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let handling = handle(request.map(RequestBody::Http2));
    seam::task::spawn(async move {
        let response = {
            let reset = std::future::poll_fn(|cx| respond.poll_reset(cx));
            tokio::select! {
                biased;
                handled = handling => {
                    let Ok(response) = handled;
                    response
                }
                _ = reset => return,
            }
        };
        send(respond, response);
    });
}

/// Hands h2 the response: headers, and the buffered body in one DATA
/// frame sequence that h2 paces by the client's flow-control window.
fn send(mut respond: SendResponse<Bytes>, response: Response<Body>) {
    let (mut parts, body) = response.into_parts();
    // HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2); h2
    // refuses a response that carries one.
    strip_headers(&mut parts.headers, &[]);
    let body = body.into_inner().unwrap_or_default();
    let end_of_stream = body.is_empty();
    if !end_of_stream {
        parts
            .headers
            .entry(http::header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(body.len()));
    }
    match respond.send_response(Response::from_parts(parts, ()), end_of_stream) {
        Ok(mut stream) if !end_of_stream => {
            let _ = stream.send_data(body, true);
        }
        Ok(_) => {}
        Err(_) => respond.send_reset(Reason::INTERNAL_ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const CONTINUATION: u8 = 0x9;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        bytes.extend([kind, flags]);
        bytes.extend(stream.to_be_bytes());
        bytes.extend(payload);
        bytes
    }

    /// `GET /` with `:authority a`, from HPACK's static table.
    const GET_BLOCK: [u8; 6] = [0x82, 0x86, 0x84, 0x01, 0x01, b'a'];

    /// A raw client: preface and empty SETTINGS, then `frames`.
    async fn raw_client(frames: Vec<u8>) -> DuplexStream {
        let (mut client, server) = duplex(1 << 20);
        let limits = Limits {
            max_concurrent_streams: 2,
            header_bytes_max: 1024,
            ..Limits::default()
        };
        seam::task::spawn(async move {
            let never = |_| std::future::pending::<Result<Response<Body>, Infallible>>();
            let _ = serve(server, &limits, std::future::pending(), GRACE, never).await;
        });
        client.write_all(PREFACE).await.unwrap();
        client.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        client.write_all(&frames).await.unwrap();
        client
    }

    /// Frames the server sent until it stopped sending for a second:
    /// (type, flags, stream, payload).
    async fn frames_from(io: &mut DuplexStream) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut frames = Vec::new();
        loop {
            let mut head = [0u8; 9];
            let read = tokio::time::timeout(Duration::from_secs(1), io.read_exact(&mut head));
            let Ok(Ok(_)) = read.await else {
                return frames;
            };
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            io.read_exact(&mut payload).await.unwrap();
            frames.push((head[3], head[4], stream, payload));
        }
    }

    const GRACE: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn streams_beyond_the_cap_are_refused() {
        let mut requests = Vec::new();
        for stream in [1, 3, 5] {
            requests.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &GET_BLOCK));
        }
        let mut client = raw_client(requests).await;
        let refused: Vec<u32> = frames_from(&mut client)
            .await
            .into_iter()
            .filter(|(kind, _, _, payload)| *kind == RST_STREAM && payload[..] == [0, 0, 0, 7])
            .map(|(_, _, stream, _)| stream)
            .collect();
        assert_eq!(refused, [5], "REFUSED_STREAM for the third of a cap of two");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rapid_reset_flood_is_sent_away() {
        let mut flood = Vec::new();
        for stream in (1..).step_by(2).take(PENDING_RESETS_MAX + 10) {
            flood.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &GET_BLOCK));
            flood.extend(frame(RST_STREAM, 0, stream, &[0, 0, 0, 8]));
        }
        let mut client = raw_client(flood).await;
        let frames = frames_from(&mut client).await;
        let goaway = frames.iter().find(|(kind, ..)| *kind == GOAWAY);
        let code = goaway.map(|(_, _, _, payload)| payload[4..8].to_vec());
        assert_eq!(code, Some(vec![0, 0, 0, 0xb]), "ENHANCE_YOUR_CALM");
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversized_header_block_is_answered_without_the_handler() {
        // A literal header, new name, with a 2,000-byte value: over the
        // 1,024-byte list the server allows. Split in two frames.
        let mut block = GET_BLOCK.to_vec();
        block.extend([0x00, 0x05]);
        block.extend(b"x-big");
        let value_len = 2000 - 127;
        block.extend([
            0x7f,
            0x80 | (value_len & 0x7f) as u8,
            (value_len >> 7) as u8,
        ]);
        block.extend(vec![b'a'; 2000]);
        let (first, rest) = block.split_at(1000);
        let mut request = frame(HEADERS, END_STREAM, 1, first);
        request.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
        let mut client = raw_client(request).await;
        let answered =
            frames_from(&mut client)
                .await
                .into_iter()
                .any(|(kind, flags, stream, _)| {
                    kind == HEADERS && stream == 1 && flags & END_STREAM != 0
                });
        assert!(answered, "h2 answers 431 itself; the handler never sees it");
    }

    /// A server on the other end of a connection whose handler echoes the
    /// request body's length, adds connection headers HTTP/2 forbids, and
    /// counts its calls and its dropped futures.
    struct Echo {
        calls: Arc<AtomicUsize>,
        dropped: Arc<AtomicUsize>,
    }

    struct CountsDrop(Arc<AtomicUsize>);

    impl Drop for CountsDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn echo_server(stop: tokio::sync::oneshot::Receiver<()>) -> (DuplexStream, Echo) {
        let (client, server) = duplex(1 << 20);
        let echo = Echo {
            calls: Arc::default(),
            dropped: Arc::default(),
        };
        let (calls, dropped) = (echo.calls.clone(), echo.dropped.clone());
        let handle = move |request: Request<RequestBody>| {
            calls.fetch_add(1, Ordering::Relaxed);
            let guard = CountsDrop(dropped.clone());
            async move {
                let _guard = guard;
                let wait_ms: u64 = request.uri().path()[1..].parse().unwrap_or(0);
                let body = request.into_body().read(1 << 20).await.unwrap();
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                let mut response = Response::new(Body::from(Bytes::from(body.len().to_string())));
                let headers = response.headers_mut();
                headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
                Ok(response)
            }
        };
        seam::task::spawn(async move {
            let stop = async {
                let _ = stop.await;
            };
            let _ = serve(server, &Limits::default(), stop, GRACE, handle).await;
        });
        (client, echo)
    }

    /// A client connected to an echo server, with `body` posted to `path`:
    /// the response to come, the request's stream, the server's counts and
    /// the client connection's task.
    async fn post_to_echo(
        stop: tokio::sync::oneshot::Receiver<()>,
        path: &str,
        body: &'static [u8],
    ) -> (
        h2::client::ResponseFuture,
        h2::SendStream<Bytes>,
        Echo,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ) {
        let (io, echo) = echo_server(stop);
        let (mut sender, connection) = h2::client::handshake(io).await.unwrap();
        let connection = seam::task::spawn(connection);
        let request = Request::post(format!("http://a{path}")).body(()).unwrap();
        let (response, mut stream) = sender.send_request(request, false).unwrap();
        stream.send_data(Bytes::from_static(body), true).unwrap();
        (response, stream, echo, connection)
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_is_answered_whole_without_connection_headers() {
        let (_stop, stop) = tokio::sync::oneshot::channel();
        let (response, _stream, echo, _) = post_to_echo(stop, "/0", b"twelve bytes").await;
        let response = response.await.unwrap();
        assert_eq!(response.headers()[http::header::CONTENT_LENGTH], "2");
        assert!(!response.headers().contains_key(http::header::CONNECTION));
        let body = crate::http::read_h2_stream(response.into_body(), 64).await;
        assert_eq!(body.unwrap(), "12");
        assert_eq!(echo.calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_stream_drops_its_handler() {
        let (_stop, stop) = tokio::sync::oneshot::channel();
        let (_response, mut body, echo, _) = post_to_echo(stop, "/60000", b"").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(echo.calls.load(Ordering::Relaxed), 1);
        assert_eq!(echo.dropped.load(Ordering::Relaxed), 0, "still running");
        body.send_reset(h2::Reason::CANCEL);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(echo.dropped.load(Ordering::Relaxed), 1, "dropped on reset");
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_lets_the_requests_in_flight_finish() {
        let (stop_now, stop) = tokio::sync::oneshot::channel();
        let (response, body, echo, connection) = post_to_echo(stop, "/1000", b"abc").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_now.send(()).unwrap();
        let response = response.await.expect("answered after the stop");
        assert_eq!(response.status(), http::StatusCode::OK);
        drop((response, body));
        let ended = tokio::time::timeout(GRACE * 2, connection).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "closed cleanly: {ended:?}");
        assert_eq!(echo.calls.load(Ordering::Relaxed), 1);
    }
}
