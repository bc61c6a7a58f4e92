//! A lean HTTP/1.1 client codec for the connection workers
//! ([`crate::connections`]): each request is written from one reused
//! buffer, the response head is parsed by `httparse` (the parser hyper
//! itself uses), and the body is framed by Content-Length, chunked coding
//! or the connection's close (RFC 9112 §6.3) and read into a reused
//! buffer. The connection's own task does the I/O: no channel, no second
//! task, no per-request allocation beyond the rendered templates.

use bytes::{Buf, BufMut, BytesMut};
use http::{HeaderName, HeaderValue, Method};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::ExchangeError;

/// A response head longer than this is refused (hyper's default limit is
/// about 400 KB; a load target's heads are a few hundred bytes).
pub(crate) const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Header lines a response head may carry.
const HEADERS_MAX: usize = 64;

/// Bytes asked of the socket per read.
const READ_BYTES: usize = 16 * 1024;

/// What one request puts on the wire besides its method and path.
pub(crate) struct RequestHead<'a> {
    pub method: &'a Method,
    pub path: &'a [u8],
    pub authority: &'a str,
    pub seq: u64,
    pub idempotency_key: &'a str,
    pub headers: &'a [(HeaderName, HeaderValue)],
}

/// Writes the request into `wire` (cleared first): request line, `Host`,
/// the sequence and idempotency headers, the plan's and operation's
/// headers, `Content-Length` when there is a body or the method implies
/// one, then the body.
pub(crate) fn encode_request(
    wire: &mut BytesMut,
    head: &RequestHead<'_>,
    extra_headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
) -> Result<(), ExchangeError> {
    if let Some(bad) = head.path.iter().find(|&&b| !is_request_target_byte(b)) {
        return Err(ExchangeError::Request(format!(
            "the rendered path holds byte 0x{bad:02x}, which a request target cannot carry"
        )));
    }
    wire.clear();
    wire.put_slice(head.method.as_str().as_bytes());
    wire.put_u8(b' ');
    wire.put_slice(head.path);
    wire.put_slice(b" HTTP/1.1\r\nhost: ");
    wire.put_slice(head.authority.as_bytes());
    wire.put_slice(b"\r\nx-request-seq: ");
    put_decimal(wire, head.seq);
    wire.put_slice(b"\r\nidempotency-key: ");
    wire.put_slice(head.idempotency_key.as_bytes());
    wire.put_slice(b"\r\n");
    for (name, value) in head.headers.iter().chain(extra_headers) {
        wire.put_slice(name.as_str().as_bytes());
        wire.put_slice(b": ");
        wire.put_slice(value.as_bytes());
        wire.put_slice(b"\r\n");
    }
    let body_expected = matches!(*head.method, Method::POST | Method::PUT | Method::PATCH);
    if !body.is_empty() || body_expected {
        wire.put_slice(b"content-length: ");
        put_decimal(wire, body.len() as u64);
        wire.put_slice(b"\r\n");
    }
    wire.put_slice(b"\r\n");
    wire.put_slice(body);
    Ok(())
}

/// Visible ASCII: what `http::Uri` accepts in a path and query.
fn is_request_target_byte(byte: u8) -> bool {
    (0x21..0x7f).contains(&byte)
}

fn put_decimal(wire: &mut BytesMut, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    wire.put_slice(&digits[at..]);
}

/// Why a response could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection closed or reset before a byte of the response: on a
    /// reused connection, the server most likely closed it while idle, so
    /// an idempotent request may be sent again on a new one.
    NoResponse(String),
    /// The response broke off or was malformed.
    Broken(ExchangeError),
}

/// A response read to its end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    /// The connection may carry another request.
    pub reusable: bool,
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A parsed head: status, framing, keep-alive, and its length in bytes.
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    length: usize,
}

/// Reads one response to `method` from `io`, using `buf` (which may hold
/// bytes already read and keeps any that follow the response).
pub(crate) async fn read_response<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Response, ReadError> {
    let mut received_any = !buf.is_empty();
    loop {
        let head = loop {
            if let Some(head) = parse_head(buf, method).map_err(ReadError::Broken)? {
                break head;
            }
            if buf.len() > HEAD_BYTES_MAX {
                return Err(broken(format!(
                    "the response head is longer than {HEAD_BYTES_MAX} bytes"
                )));
            }
            match fill(io, buf).await {
                Ok(true) => received_any = true,
                Ok(false) if received_any => {
                    return Err(broken("the connection closed inside the response head"));
                }
                Ok(false) => {
                    return Err(ReadError::NoResponse(
                        "the connection closed before the response".into(),
                    ));
                }
                Err(error) if received_any => return Err(broken(error.to_string())),
                Err(error) => return Err(ReadError::NoResponse(error.to_string())),
            }
        };
        buf.advance(head.length);
        // 1xx heads are interim (100 Continue, 103 Early Hints): the final
        // answer follows on the same connection.
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        let body_to_close = read_body(io, buf, head.framing).await?;
        return Ok(Response {
            status: head.status,
            reusable: head.keep_alive && !body_to_close && head.status != 101,
        });
    }
}

fn broken(message: impl Into<String>) -> ReadError {
    ReadError::Broken(ExchangeError::Http(message.into()))
}

fn body_error(message: impl Into<String>) -> ReadError {
    ReadError::Broken(ExchangeError::Body(message.into()))
}

/// Reads more bytes into `buf`; `false` at end of stream.
async fn fill<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<bool> {
    buf.reserve(READ_BYTES);
    Ok(io.read_buf(buf).await? > 0)
}

/// The head at the start of `buf`, or `None` if it is not complete yet.
fn parse_head(buf: &[u8], method: &Method) -> Result<Option<Head>, ExchangeError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ExchangeError::Http(format!("malformed response: {error}"))),
    };
    let status = response.code.unwrap_or(0);
    let mut keep_alive = response.version == Some(1);
    let mut content_length = None;
    let mut chunked = false;
    let mut encoded = false;
    for header in response.headers.iter() {
        let value = header.value;
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = parse_content_length(value)?;
            if content_length.is_some_and(|seen| seen != parsed) {
                return Err(ExchangeError::Http(
                    "the response has two different Content-Length values".into(),
                ));
            }
            content_length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            // Only a final `chunked` frames the body (RFC 9112 §6.3).
            chunked = last_token(value).eq_ignore_ascii_case(b"chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let bodiless = *method == Method::HEAD || status == 204 || status == 304 || status < 200;
    let framing = match (bodiless, encoded, chunked, content_length) {
        (true, ..) => Framing::Empty,
        (false, true, true, _) => Framing::Chunked,
        (false, true, false, _) => Framing::UntilClose,
        (false, false, _, Some(length)) => Framing::Length(length),
        (false, false, _, None) => Framing::UntilClose,
    };
    Ok(Some(Head {
        status,
        framing,
        keep_alive,
        length,
    }))
}

fn parse_content_length(value: &[u8]) -> Result<u64, ExchangeError> {
    let digits = value.trim_ascii();
    let bad = || ExchangeError::Http("the response's Content-Length is not a number".into());
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(bad)
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// Reads and discards the body; `true` when it ran to the connection's
/// close (so the connection is done).
async fn read_body<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
) -> Result<bool, ReadError> {
    match framing {
        Framing::Empty => Ok(false),
        Framing::Length(length) => skip(io, buf, length).await.map(|()| false),
        Framing::Chunked => read_chunked(io, buf).await.map(|()| false),
        Framing::UntilClose => {
            buf.clear();
            while fill(io, buf).await.map_err(|e| body_error(e.to_string()))? {
                buf.clear();
            }
            Ok(true)
        }
    }
}

/// Discards exactly `length` body bytes.
async fn skip<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
    mut length: u64,
) -> Result<(), ReadError> {
    loop {
        let take = (buf.len() as u64).min(length) as usize;
        buf.advance(take);
        length -= take as u64;
        if length == 0 {
            return Ok(());
        }
        if !fill(io, buf).await.map_err(|e| body_error(e.to_string()))? {
            return Err(body_error("the connection closed inside the body"));
        }
    }
}

/// Discards a chunked body: size lines, chunks, and the trailer section.
async fn read_chunked<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
) -> Result<(), ReadError> {
    loop {
        let size = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((length, size))) => {
                    buf.advance(length);
                    break size;
                }
                Ok(httparse::Status::Partial) => more(io, buf).await?,
                Err(_) => return Err(body_error("malformed chunk size")),
            }
        };
        if size == 0 {
            return skip_trailers(io, buf).await;
        }
        // The chunk, then its CRLF.
        skip(io, buf, size.saturating_add(2)).await?;
    }
}

/// Trailer lines up to the empty line that ends the message.
async fn skip_trailers<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
) -> Result<(), ReadError> {
    let mut trailer_bytes = 0;
    loop {
        match buf.windows(2).position(|pair| pair == b"\r\n") {
            Some(0) => {
                buf.advance(2);
                return Ok(());
            }
            Some(end) => {
                trailer_bytes += end + 2;
                buf.advance(end + 2);
            }
            None => more(io, buf).await?,
        }
        if trailer_bytes + buf.len() > HEAD_BYTES_MAX {
            return Err(body_error("the trailers are too long"));
        }
    }
}

/// Reads more, where the end of stream breaks the body.
async fn more<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
) -> Result<(), ReadError> {
    match fill(io, buf).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(body_error("the connection closed inside the body")),
        Err(error) => Err(body_error(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(wire: &[u8], method: Method) -> (Result<Response, ReadError>, BytesMut) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // Feed the bytes in 3-byte reads so every partial state is hit.
            let mut io = tokio_test_reader(wire);
            let mut buf = BytesMut::new();
            let result = read_response(&mut io, &mut buf, &method).await;
            (result, buf)
        })
    }

    /// A reader that hands out at most 3 bytes per read.
    struct Trickle(Vec<u8>, usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let at = self.1;
            let end = (at + 3).min(self.0.len()).min(at + out.remaining());
            out.put_slice(&self.0[at..end]);
            self.1 = end;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn tokio_test_reader(wire: &[u8]) -> Trickle {
        Trickle(wire.to_vec(), 0)
    }

    #[test]
    fn content_length_body_is_read_to_its_end_and_the_rest_kept() {
        let (result, left) = read_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloNEXT",
            Method::GET,
        );
        let response = result.expect("read");
        assert_eq!(
            response,
            Response {
                status: 200,
                reusable: true
            }
        );
        assert!(
            b"NEXT".starts_with(&left) && !left.is_empty(),
            "the bytes read past the body stay in the buffer: {left:?}"
        );
    }

    #[test]
    fn chunked_body_with_trailers_is_read_to_its_end() {
        let wire = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nx-trailer: 1\r\n\r\n";
        let (result, left) = read_all(wire, Method::POST);
        assert_eq!(result.expect("read").status, 201);
        assert!(left.is_empty());
    }

    #[test]
    fn interim_heads_are_skipped_and_head_requests_have_no_body() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n";
        let (result, _) = read_all(wire, Method::HEAD);
        assert_eq!(result.expect("read").status, 200);
    }

    #[test]
    fn close_and_http10_end_reuse_and_a_body_to_close_is_read() {
        let wire = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
        assert!(!read_all(wire, Method::GET).0.expect("read").reusable);
        let wire = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
        assert_eq!(
            read_all(wire, Method::GET).0.expect("read"),
            Response {
                status: 200,
                reusable: false
            }
        );
    }

    #[test]
    fn an_empty_stream_is_no_response_and_a_cut_body_is_broken() {
        assert!(matches!(
            read_all(b"", Method::GET).0,
            Err(ReadError::NoResponse(_))
        ));
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
        assert!(matches!(
            read_all(cut, Method::GET).0,
            Err(ReadError::Broken(ExchangeError::Body(_)))
        ));
        let conflicting = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab";
        assert!(matches!(
            read_all(conflicting, Method::GET).0,
            Err(ReadError::Broken(ExchangeError::Http(_)))
        ));
        assert!(matches!(
            read_all(b"SMTP ready\r\n\r\n", Method::GET).0,
            Err(ReadError::Broken(ExchangeError::Http(_)))
        ));
    }

    #[test]
    fn requests_are_encoded_with_their_headers_and_length() {
        let mut wire = BytesMut::new();
        let headers = [(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer t"),
        )];
        let head = RequestHead {
            method: &Method::POST,
            path: b"/orders?x=1",
            authority: "api:8080",
            seq: 42,
            idempotency_key: "k-42",
            headers: &headers,
        };
        encode_request(&mut wire, &head, &[], b"{}").expect("encodes");
        assert_eq!(
            &wire[..],
            &b"POST /orders?x=1 HTTP/1.1\r\nhost: api:8080\r\nx-request-seq: 42\r\nidempotency-key: k-42\r\nauthorization: Bearer t\r\ncontent-length: 2\r\n\r\n{}"[..]
        );
        let bad = RequestHead {
            path: b"/a b",
            ..head
        };
        assert!(matches!(
            encode_request(&mut wire, &bad, &[], b""),
            Err(ExchangeError::Request(_))
        ));
    }
}
