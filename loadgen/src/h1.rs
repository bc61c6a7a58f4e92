//! The load generator's HTTP/1.1 requests: each is written from one reused
//! buffer with the run's sequence and idempotency headers. Responses are
//! read by [`h1wire`], in the connection worker's own task
//! ([`crate::connections`]): no channel, no second task, no per-request
//! allocation beyond the rendered templates.

use bytes::{BufMut, BytesMut};
use http::{HeaderName, HeaderValue, Method};

use crate::ExchangeError;

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
    if let Err(h1wire::EncodeError::Target(bad)) = h1wire::check_target(head.path) {
        return Err(ExchangeError::Request(format!(
            "the rendered path holds byte 0x{bad:02x}, which a request target cannot carry"
        )));
    }
    h1wire::put_request_line(wire, head.method, head.path);
    h1wire::put_header(wire, b"host", head.authority.as_bytes());
    wire.put_slice(b"x-request-seq: ");
    h1wire::put_decimal(wire, head.seq);
    wire.put_slice(b"\r\n");
    h1wire::put_header(wire, b"idempotency-key", head.idempotency_key.as_bytes());
    for (name, value) in head.headers.iter().chain(extra_headers) {
        h1wire::put_header(wire, name.as_str().as_bytes(), value.as_bytes());
    }
    h1wire::finish_request(wire, head.method, body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
