//! Writing one request into a reused buffer.

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, Method, header};

/// Why a request cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The request target holds a byte a request line cannot carry.
    #[error("the request target holds byte 0x{0:02x}, which a request line cannot carry")]
    Target(u8),
}

/// Visible ASCII: what `http::Uri` accepts in a path and query.
pub fn is_request_target_byte(byte: u8) -> bool {
    (0x21..0x7f).contains(&byte)
}

/// Refuses a target with a byte outside [`is_request_target_byte`].
pub fn check_target(target: &[u8]) -> Result<(), EncodeError> {
    match target.iter().find(|&&b| !is_request_target_byte(b)) {
        Some(&bad) => Err(EncodeError::Target(bad)),
        None => Ok(()),
    }
}

/// Writes `value` in decimal, without allocating.
pub fn put_decimal(wire: &mut BytesMut, mut value: u64) {
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

/// Whether a request with this method and body carries a length: one
/// with a body, and a POST, PUT or PATCH without one (RFC 9110 §8.6
/// recommends `Content-Length: 0` where a body is expected).
pub fn needs_length(method: &Method, body: &[u8]) -> bool {
    !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Writes `method target HTTP/1.1`, `headers` in their order (except any
/// `Content-Length` or `Transfer-Encoding`: the body is sent whole, so
/// this writes its own length), then `body`, into `wire` (cleared first).
/// The caller supplies `Host` and strips hop-by-hop headers.
pub fn encode_request(
    wire: &mut BytesMut,
    method: &Method,
    target: &[u8],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), EncodeError> {
    check_target(target)?;
    put_request_line(wire, method, target);
    for (name, value) in headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            put_header(wire, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    finish_request(wire, method, body);
    Ok(())
}

/// Clears `wire` and writes `method target HTTP/1.1` (the caller checked
/// the target).
pub fn put_request_line(wire: &mut BytesMut, method: &Method, target: &[u8]) {
    wire.clear();
    wire.put_slice(method.as_str().as_bytes());
    wire.put_u8(b' ');
    wire.put_slice(target);
    wire.put_slice(b" HTTP/1.1\r\n");
}

/// Writes one header line.
pub fn put_header(wire: &mut BytesMut, name: &[u8], value: &[u8]) {
    wire.put_slice(name);
    wire.put_slice(b": ");
    wire.put_slice(value);
    wire.put_slice(b"\r\n");
}

/// Ends the head (with `Content-Length` where [`needs_length`] says so)
/// and appends the body.
pub fn finish_request(wire: &mut BytesMut, method: &Method, body: &[u8]) {
    if needs_length(method, body) {
        wire.put_slice(b"content-length: ");
        put_decimal(wire, body.len() as u64);
        wire.put_slice(b"\r\n");
    }
    wire.put_slice(b"\r\n");
    wire.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_request_carries_its_headers_in_order_and_its_own_length() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("app"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.append("x-b", HeaderValue::from_static("1"));
        headers.append("x-b", HeaderValue::from_static("2"));
        let mut wire = BytesMut::from(&b"stale"[..]);
        encode_request(&mut wire, &Method::PUT, b"/a?b=c", &headers, b"{}").expect("encodes");
        assert_eq!(
            &wire[..],
            &b"PUT /a?b=c HTTP/1.1\r\nhost: app\r\nx-b: 1\r\nx-b: 2\r\ncontent-length: 2\r\n\r\n{}"
                [..]
        );
        encode_request(&mut wire, &Method::GET, b"/", &HeaderMap::new(), b"").expect("encodes");
        assert_eq!(&wire[..], &b"GET / HTTP/1.1\r\n\r\n"[..]);
        encode_request(&mut wire, &Method::POST, b"/", &HeaderMap::new(), b"").expect("encodes");
        assert_eq!(
            &wire[..],
            &b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"[..]
        );
    }

    #[test]
    fn a_target_with_a_space_or_control_byte_is_refused() {
        let mut wire = BytesMut::new();
        for bad in [&b"/a b"[..], b"/a\r\nx: y", b"/\x7f"] {
            assert!(matches!(
                encode_request(&mut wire, &Method::GET, bad, &HeaderMap::new(), b""),
                Err(EncodeError::Target(_))
            ));
        }
        let mut decimal = BytesMut::new();
        put_decimal(&mut decimal, 0);
        put_decimal(&mut decimal, u64::MAX);
        assert_eq!(&decimal[..], b"018446744073709551615");
    }
}
