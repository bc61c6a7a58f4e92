//! The structured access log: one entry per finished request, bounded
//! per proxy (`ACCESS_LOG_MAX`).

use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::metrics::Direction;

/// One finished request, as a proxy saw it.
#[derive(Clone, Debug, Serialize)]
pub struct AccessLogEntry {
    /// Run time at completion, µs.
    pub at_us: u64,
    /// Which listener handled it.
    pub direction: Direction,
    /// Destination service (outbound) or own service (inbound).
    pub service: Arc<str>,
    /// The route that matched, `default` if none.
    pub route: Arc<str>,
    /// HTTP method.
    #[serde(serialize_with = "method_name")]
    pub method: http::Method,
    /// Normalized request target.
    pub path: String,
    /// Status sent back.
    pub status: u16,
    /// The other side's identity (server for outbound, client for inbound).
    pub peer: Arc<str>,
    /// Endpoint host of the last attempt (outbound).
    pub endpoint: Arc<str>,
    /// Attempts made (outbound).
    pub attempts: u32,
    /// Time in the proxy, µs.
    pub latency_us: u64,
    /// Trace id (written as hex), to join the entry with the spans of the
    /// request. Kept as bytes: most entries are overwritten unread.
    #[serde(serialize_with = "trace_hex")]
    pub trace_id: [u8; 16],
    /// Why the proxy answered itself, if it did.
    pub proxy_error: String,
}

fn method_name<S: Serializer>(method: &http::Method, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(method.as_str())
}

fn trace_hex<S: Serializer>(trace_id: &[u8; 16], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&super::trace::hex(trace_id))
}
