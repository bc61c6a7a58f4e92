//! W3C trace context (`traceparent`) and the spans each hop records.

use rand::Rng;
use serde::Serialize;

/// The W3C trace context header. A `HeaderName`, not a string: a map
/// looked up by `&str` parses the name again on every request.
pub const TRACEPARENT_HEADER: http::HeaderName = http::HeaderName::from_static("traceparent");

/// A span: one hop of one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The caller's span, if any.
    pub parent_id: Option<String>,
    /// `outbound registry` or `inbound registry`.
    pub name: String,
    /// Host that recorded it.
    pub host: String,
    /// Which listener: an inbound hop is a server span, outbound a client.
    pub direction: super::Direction,
    /// Run time at start, µs.
    pub start_us: u64,
    /// Run time at end, µs.
    pub end_us: u64,
    /// Status the hop answered, so a span shows where a failure began.
    pub status: u16,
}

/// A W3C trace context (`traceparent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// Trace id (never all zero).
    pub trace_id: [u8; 16],
    /// The caller's span id (never all zero).
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Lower-case hex, by table: `write!` per byte was a visible share of a
/// sidecar's CPU (every request hexes a trace id and span ids).
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    write_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Writes `bytes` as lower-case hex into `out`, which is twice as long.
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, &byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// Decodes exactly `2 * N` lower-case hex digits (the spec allows no
/// upper case).
fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;

impl TraceContext {
    /// Parses a `traceparent` header (version 00; ids lower-case hex and not
    /// all zero). Anything else is ignored, as the spec asks.
    pub fn parse(value: &[u8]) -> Option<TraceContext> {
        let value = value.trim_ascii();
        if value.len() != TRACEPARENT_LEN
            || !value.starts_with(b"00-")
            || value[35] != b'-'
            || value[52] != b'-'
        {
            return None;
        }
        let trace_id = unhex::<16>(&value[3..35])?;
        let parent_id = unhex::<8>(&value[36..52])?;
        let [flags] = unhex::<1>(&value[53..])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The header value naming `span_id` as the parent of the next hop.
    ///
    /// Marked sensitive, so HPACK sends it as a never-indexed literal: it is
    /// new on every request, and indexing it evicted the stable headers
    /// from both ends' tables and walked a chain of stale `traceparent`
    /// entries on every encode (about 3.5k instructions a request in the
    /// client sidecar, BENCHMARKS.md "Session 9").
    pub fn header_value_for(&self, span_id: [u8; 8]) -> http::HeaderValue {
        let mut text = [b'-'; TRACEPARENT_LEN];
        text[..2].copy_from_slice(b"00");
        write_hex(&mut text[3..35], &self.trace_id);
        write_hex(&mut text[36..52], &span_id);
        write_hex(&mut text[53..], &[self.flags]);
        let mut value =
            http::HeaderValue::from_bytes(&text).expect("hex digits and dashes are a header value");
        value.set_sensitive(true);
        value
    }

    /// Whether this hop records its span (the `sampled` flag).
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Trace id as hex.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// Draws a non-zero span id.
pub fn new_span_id(rng: &mut impl Rng) -> [u8; 8] {
    loop {
        let id: [u8; 8] = rng.random();
        if id != [0; 8] {
            return id;
        }
    }
}

/// A new trace is sampled when its id's first byte is below this: one in
/// four (head sampling by trace id, as OpenTelemetry's `TraceIdRatioBased`).
/// Every hop honours the caller's `sampled` flag, so a trace is kept whole
/// or not at all, and the per-proxy span cap holds a few thousand whole
/// requests instead of fragments of many.
pub const SAMPLED_BELOW: u8 = 64;

/// W3C trace flag: the trace is recorded.
pub const FLAG_SAMPLED: u8 = 1;

/// The context of a request that arrives without one.
pub fn new_trace(rng: &mut impl Rng) -> TraceContext {
    loop {
        let trace_id: [u8; 16] = rng.random();
        if trace_id != [0; 16] {
            return TraceContext {
                trace_id,
                parent_id: [0; 8],
                flags: if trace_id[0] < SAMPLED_BELOW {
                    FLAG_SAMPLED
                } else {
                    0
                },
            };
        }
    }
}

/// Hex form of a span id.
pub fn span_hex(id: [u8; 8]) -> String {
    hex(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_and_refuses_what_the_spec_refuses() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(good.as_bytes()).unwrap();
        assert_eq!(context.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.flags, 1);
        assert_eq!(context.header_value_for(context.parent_id), good);
        assert!(context.header_value_for(context.parent_id).is_sensitive());
        assert_eq!(
            TraceContext::parse(format!(" {good} ").as_bytes()),
            Some(context)
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(TraceContext::parse(bad.as_bytes()), None, "{bad}");
        }
        let mut rng = seam::Seed::new(7).rng();
        let fresh = new_trace(&mut rng);
        assert_eq!(fresh.sampled(), fresh.trace_id[0] < SAMPLED_BELOW);
        let header = fresh.header_value_for(new_span_id(&mut rng));
        assert_eq!(
            TraceContext::parse(header.as_bytes()).map(|c| c.trace_id),
            Some(fresh.trace_id)
        );
    }
}
