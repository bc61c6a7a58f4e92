//! Golden metrics, Linkerd-style: request counts by direction × service ×
//! route × peer × status class, and latency in HdrHistograms.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Linkerd's latency buckets, in milliseconds.
pub(super) const LATENCY_BUCKETS_MS: &[u64] = &[
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
    10_000, 20_000, 30_000, 40_000, 50_000,
];

/// Which listener handled a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Local app → mesh.
    Outbound,
    /// Mesh → local app.
    Inbound,
}

impl Direction {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CounterKey {
    pub(super) direction: Direction,
    pub(super) service: String,
    pub(super) route: String,
    pub(super) peer: String,
    pub(super) status_class: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LatencyKey {
    pub(super) direction: Direction,
    pub(super) service: String,
    pub(super) route: String,
}

pub(super) fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

pub(super) fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
