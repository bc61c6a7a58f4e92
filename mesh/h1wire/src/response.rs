//! Reading one response: head, interim heads, and a body framed as RFC
//! 9112 §6.3 says.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A response head longer than this is refused (hyper's default limit is
/// about 400 KB; the heads meshsim reads are a few hundred bytes).
pub const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Header lines a response head may carry (hyper's default).
const HEADERS_MAX: usize = 100;

/// Bytes asked of the socket per read.
const READ_BYTES: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The connection closed or failed before a byte of the response: on
    /// a reused connection, the server most likely closed it while idle
    /// (see [`crate::may_resend`]).
    #[error("{0}")]
    NoResponse(String),
    /// The head broke off, was malformed, or a sink refused a header.
    #[error("{0}")]
    Head(String),
    /// The body broke off, was malformed, or a sink refused it.
    #[error("{0}")]
    Body(String),
}

/// A response read to its end.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The connection may carry another request.
    pub reusable: bool,
}

/// Where the final head's header lines and the decoded body go. Interim
/// (1xx) heads are not passed on.
pub trait ResponseSink {
    /// One header line of the final head, in the order received.
    fn header(&mut self, name: &str, value: &[u8]) -> Result<(), ReadError>;
    /// The next piece of the decoded body.
    fn body(&mut self, bytes: &[u8]) -> Result<(), ReadError>;
}

/// A sink that keeps nothing (a load generator needs only the status).
pub struct Discard;

impl ResponseSink for Discard {
    fn header(&mut self, _: &str, _: &[u8]) -> Result<(), ReadError> {
        Ok(())
    }

    fn body(&mut self, _: &[u8]) -> Result<(), ReadError> {
        Ok(())
    }
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
/// bytes already read and keeps any that follow the response), and gives
/// its headers and body to `sink`.
pub async fn read_response<R, S>(
    io: &mut R,
    buf: &mut BytesMut,
    method: &Method,
    sink: &mut S,
) -> Result<Response, ReadError>
where
    R: AsyncRead + Unpin + ?Sized,
    S: ResponseSink + ?Sized,
{
    let mut received_any = !buf.is_empty();
    loop {
        let head = loop {
            if let Some(head) = parse_head(buf, method, sink)? {
                break head;
            }
            if buf.len() > HEAD_BYTES_MAX {
                return Err(ReadError::Head(format!(
                    "the response head is longer than {HEAD_BYTES_MAX} bytes"
                )));
            }
            match fill(io, buf).await {
                Ok(true) => received_any = true,
                Ok(false) if received_any => {
                    return Err(ReadError::Head(
                        "the connection closed inside the response head".into(),
                    ));
                }
                Ok(false) => {
                    return Err(ReadError::NoResponse(
                        "the connection closed before the response".into(),
                    ));
                }
                Err(error) if received_any => return Err(ReadError::Head(error.to_string())),
                Err(error) => return Err(ReadError::NoResponse(error.to_string())),
            }
        };
        buf.advance(head.length);
        // 1xx heads are interim (100 Continue, 103 Early Hints): the final
        // answer follows on the same connection.
        if is_interim(head.status) {
            continue;
        }
        let body_to_close = read_body(io, buf, head.framing, sink).await?;
        return Ok(Response {
            status: head.status,
            reusable: head.keep_alive && !body_to_close && head.status != 101,
        });
    }
}

fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
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
/// A final head's header lines go to `sink`.
fn parse_head<S: ResponseSink + ?Sized>(
    buf: &[u8],
    method: &Method,
    sink: &mut S,
) -> Result<Option<Head>, ReadError> {
    // Uninitialized slots, as hyper parses: initializing a hundred
    // headers for every attempt cost more than parsing a short head.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ReadError::Head(format!("malformed response: {error}"))),
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
                return Err(ReadError::Head(
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
    if !is_interim(status) {
        for header in response.headers.iter() {
            sink.header(header.name, header.value)?;
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

fn parse_content_length(value: &[u8]) -> Result<u64, ReadError> {
    let digits = value.trim_ascii();
    let bad = || ReadError::Head("the response's Content-Length is not a number".into());
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

fn body_error(message: impl Into<String>) -> ReadError {
    ReadError::Body(message.into())
}

/// Reads the body into `sink`; `true` when it ran to the connection's
/// close (so the connection is done).
async fn read_body<R, S>(
    io: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    sink: &mut S,
) -> Result<bool, ReadError>
where
    R: AsyncRead + Unpin + ?Sized,
    S: ResponseSink + ?Sized,
{
    match framing {
        Framing::Empty => Ok(false),
        Framing::Length(length) => take(io, buf, length, sink).await.map(|()| false),
        Framing::Chunked => read_chunked(io, buf, sink).await.map(|()| false),
        Framing::UntilClose => {
            loop {
                sink.body(buf)?;
                buf.clear();
                if !fill(io, buf).await.map_err(|e| body_error(e.to_string()))? {
                    break;
                }
            }
            Ok(true)
        }
    }
}

/// Passes exactly `length` body bytes to `sink`.
async fn take<R, S>(
    io: &mut R,
    buf: &mut BytesMut,
    mut length: u64,
    sink: &mut S,
) -> Result<(), ReadError>
where
    R: AsyncRead + Unpin + ?Sized,
    S: ResponseSink + ?Sized,
{
    loop {
        let part = (buf.len() as u64).min(length) as usize;
        sink.body(&buf[..part])?;
        buf.advance(part);
        length -= part as u64;
        if length == 0 {
            return Ok(());
        }
        if !fill(io, buf).await.map_err(|e| body_error(e.to_string()))? {
            return Err(body_error("the connection closed inside the body"));
        }
    }
}

/// Decodes a chunked body: size lines, chunks, and the trailer section
/// (trailers are dropped).
async fn read_chunked<R, S>(io: &mut R, buf: &mut BytesMut, sink: &mut S) -> Result<(), ReadError>
where
    R: AsyncRead + Unpin + ?Sized,
    S: ResponseSink + ?Sized,
{
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
        take(io, buf, size, sink).await?;
        // The CRLF after the chunk.
        take(io, buf, 2, &mut Discard).await?;
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

    /// Keeps what it is given, as the mesh's pool does.
    #[derive(Default)]
    struct Keep {
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    }

    impl ResponseSink for Keep {
        fn header(&mut self, name: &str, value: &[u8]) -> Result<(), ReadError> {
            self.headers.push((name.to_owned(), value.to_vec()));
            Ok(())
        }

        fn body(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
            if self.body.len() + bytes.len() > 8 {
                return Err(ReadError::Body("longer than 8 bytes".into()));
            }
            self.body.extend_from_slice(bytes);
            Ok(())
        }
    }

    fn read_all(wire: &[u8], method: Method) -> (Result<Response, ReadError>, BytesMut, Keep) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // Feed the bytes in 3-byte reads so every partial state is hit.
            let mut io = Trickle(wire.to_vec(), 0);
            let mut buf = BytesMut::new();
            let mut kept = Keep::default();
            let result = read_response(&mut io, &mut buf, &method, &mut kept).await;
            (result, buf, kept)
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

    #[test]
    fn content_length_body_is_read_to_its_end_and_the_rest_kept() {
        let (result, left, kept) = read_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-ab: 1\r\n\r\nhelloNEXT",
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
        assert_eq!(kept.body, b"hello");
        assert_eq!(
            kept.headers,
            [
                ("content-length".to_owned(), b"5".to_vec()),
                ("x-ab".to_owned(), b"1".to_vec())
            ]
        );
        assert!(
            b"NEXT".starts_with(&left) && !left.is_empty(),
            "the bytes read past the body stay in the buffer: {left:?}"
        );
    }

    #[test]
    fn a_head_of_up_to_a_hundred_headers_is_read_and_one_more_is_refused() {
        let head = |count: usize| {
            let lines: String = (0..count).map(|i| format!("x-h{i}: {i}\r\n")).collect();
            format!("HTTP/1.1 204 No Content\r\n{lines}\r\n").into_bytes()
        };
        let (result, _, kept) = read_all(&head(HEADERS_MAX), Method::GET);
        assert_eq!(result.expect("read").status, 204);
        assert_eq!(kept.headers.len(), HEADERS_MAX);
        assert!(matches!(
            read_all(&head(HEADERS_MAX + 1), Method::GET).0,
            Err(ReadError::Head(_))
        ));
    }

    #[test]
    fn chunked_body_with_trailers_is_decoded_to_its_end() {
        let wire = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n3\r\nped\r\n0\r\nx-trailer: 1\r\n\r\n";
        let (result, left, kept) = read_all(wire, Method::POST);
        assert_eq!(result.expect("read").status, 201);
        assert_eq!(kept.body, b"wikiped");
        assert!(left.is_empty());
    }

    #[test]
    fn interim_heads_are_skipped_and_head_requests_have_no_body() {
        let wire = b"HTTP/1.1 100 Continue\r\nx-interim: 1\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n";
        let (result, _, kept) = read_all(wire, Method::HEAD);
        assert_eq!(result.expect("read").status, 200);
        assert_eq!(kept.headers.len(), 1, "only the final head's headers");
        assert!(kept.body.is_empty());
    }

    #[test]
    fn close_and_http10_end_reuse_and_a_body_to_close_is_read() {
        let wire = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
        assert!(!read_all(wire, Method::GET).0.expect("read").reusable);
        let wire = b"HTTP/1.0 200 OK\r\n\r\nto close";
        let (result, _, kept) = read_all(wire, Method::GET);
        assert_eq!(
            result.expect("read"),
            Response {
                status: 200,
                reusable: false
            }
        );
        assert_eq!(kept.body, b"to close");
    }

    #[test]
    fn an_empty_stream_is_no_response_and_a_cut_or_refused_body_is_a_body_error() {
        assert!(matches!(
            read_all(b"", Method::GET).0,
            Err(ReadError::NoResponse(_))
        ));
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
        assert!(matches!(
            read_all(cut, Method::GET).0,
            Err(ReadError::Body(_))
        ));
        let too_long = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n123456789";
        assert!(matches!(
            read_all(too_long, Method::GET).0,
            Err(ReadError::Body(_))
        ));
        let conflicting = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab";
        assert!(matches!(
            read_all(conflicting, Method::GET).0,
            Err(ReadError::Head(_))
        ));
        assert!(matches!(
            read_all(b"SMTP ready\r\n\r\n", Method::GET).0,
            Err(ReadError::Head(_))
        ));
    }
}
