//! The structured access log: one entry per finished request, bounded
//! per proxy (`ACCESS_LOG_MAX`).

use serde::Serialize;

use super::metrics::Direction;

/// One finished request, as a proxy saw it.
#[derive(Clone, Debug, Serialize)]
pub struct AccessLogEntry {
    /// Run time at completion, µs.
    pub at_us: u64,
    /// Which listener handled it.
    pub direction: Direction,
    /// Destination service (outbound) or own service (inbound).
    pub service: String,
    /// The route that matched, `default` if none.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Normalized request target.
    pub path: String,
    /// Status sent back.
    pub status: u16,
    /// The other side's identity (server for outbound, client for inbound).
    pub peer: String,
    /// Endpoint host of the last attempt (outbound).
    pub endpoint: String,
    /// Attempts made (outbound).
    pub attempts: u32,
    /// Time in the proxy, µs.
    pub latency_us: u64,
    /// Trace id (hex), to join the entry with the spans of the request.
    pub trace_id: String,
    /// Why the proxy answered itself, if it did.
    pub proxy_error: String,
}
