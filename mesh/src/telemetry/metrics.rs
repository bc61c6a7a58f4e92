//! Golden metrics in Linkerd's shape: `request_total` and `response_total`
//! by direction × authority × destination × peer identity (× status), and
//! `response_latency_ms` in Linkerd's fixed buckets; TCP connection counts;
//! meshsim's own counters (retries, ejections…) under `meshsim_`.
//!
//! Fixed buckets, not HdrHistograms, back the Prometheus series: a series
//! costs 27 words whatever the latency range, so a proxy's memory grows
//! with its label sets only (and those are capped, [`SERIES_MAX`]). The
//! outbound per-route HdrHistograms the SLO checks read are kept apart.

use std::sync::Arc;

use serde::Serialize;

/// Linkerd's latency buckets, in milliseconds.
pub(super) const LATENCY_BUCKETS_MS: &[u64] = &[
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
    10_000, 20_000, 30_000, 40_000, 50_000,
];

/// Distinct label sets a proxy keeps per family. Beyond it, new sets are
/// folded into one whose authority is [`OVERFLOW_AUTHORITY`]: the authority
/// comes from the caller's `Host` header, so without a cap a client could
/// grow a proxy's memory without bound.
pub(super) const SERIES_MAX: usize = 1000;

/// The authority of the series that absorbs label sets beyond the cap.
pub(super) const OVERFLOW_AUTHORITY: &str = "_overflow";

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
    /// `outbound` or `inbound`, as the `direction` label spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// The labels of a request series (Linkerd's, plus meshsim's `route`).
/// Shared strings: a key is built for every request, and cloning five
/// labels should not mean five allocations.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SeriesKey {
    pub(super) direction: Direction,
    /// `Host`/`:authority` as the proxy received it, port stripped.
    pub(super) authority: Arc<str>,
    pub(super) dst_service: Arc<str>,
    pub(super) dst_namespace: Arc<str>,
    /// The other side's SPIFFE ID: `client_id` inbound, `server_id` outbound.
    pub(super) peer_id: Arc<str>,
    /// The route that matched (meshsim's label; `default` if none).
    pub(super) route: Arc<str>,
}

/// A response series: a request series and the status sent back.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ResponseKey {
    pub(super) series: SeriesKey,
    pub(super) status_code: u16,
}

/// Count, sum and fixed-bucket latency of one response series.
#[derive(Clone, Debug, Default)]
pub(super) struct ResponseStats {
    pub(super) count: u64,
    pub(super) latency_sum_us: u64,
    /// Responses whose latency fell in each bucket (not cumulative); the
    /// last slot is above the largest bucket.
    pub(super) buckets: [u64; LATENCY_BUCKET_SLOTS],
}

pub(super) const LATENCY_BUCKET_SLOTS: usize = 26;
const _: () = assert!(LATENCY_BUCKETS_MS.len() + 1 == LATENCY_BUCKET_SLOTS);

impl ResponseStats {
    pub(super) fn record(&mut self, latency_us: u64) {
        self.count += 1;
        self.latency_sum_us = self.latency_sum_us.saturating_add(latency_us);
        let slot = LATENCY_BUCKETS_MS
            .iter()
            .position(|&bound_ms| latency_us <= bound_ms * 1000)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[slot] += 1;
    }
}

/// Linkerd's classification: a 5xx is a failure, anything else a success
/// (a 4xx is the caller's mistake or a policy decision).
pub(super) fn classification(status: u16) -> &'static str {
    if status >= 500 { "failure" } else { "success" }
}

/// The labels of a TCP connection series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct TcpKey {
    pub(super) direction: Direction,
    /// Whether the connection is mTLS (inbound) or the app's plaintext
    /// loopback connection (outbound).
    pub(super) tls: bool,
}

/// Open connections now and accepted ever.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TcpStats {
    pub(super) open: u64,
    pub(super) total: u64,
}

/// meshsim's own counters, per proxy and destination service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum MeshCounter {
    /// `meshsim_retries_total`.
    Retries,
    /// `meshsim_retry_budget_exhausted_total`.
    BudgetExhausted,
    /// `meshsim_circuit_open_total`.
    CircuitOpen,
    /// `meshsim_outlier_ejections_total`.
    Ejections,
}

impl MeshCounter {
    pub(super) const ALL: [MeshCounter; 4] = [
        MeshCounter::Retries,
        MeshCounter::BudgetExhausted,
        MeshCounter::CircuitOpen,
        MeshCounter::Ejections,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            MeshCounter::Retries => "meshsim_retries_total",
            MeshCounter::BudgetExhausted => "meshsim_retry_budget_exhausted_total",
            MeshCounter::CircuitOpen => "meshsim_circuit_open_total",
            MeshCounter::Ejections => "meshsim_outlier_ejections_total",
        }
    }

    pub(super) fn help(self) -> &'static str {
        match self {
            MeshCounter::Retries => "Retries sent, by destination service.",
            MeshCounter::BudgetExhausted => "Retries the retry budget refused.",
            MeshCounter::CircuitOpen => "Requests failed fast by an open circuit breaker.",
            MeshCounter::Ejections => "Endpoints ejected by outlier detection.",
        }
    }
}

pub(super) fn new_latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_linkerd_s_bucket_bounds_inclusive() {
        let mut stats = ResponseStats::default();
        for latency_us in [1, 1000, 1001, 50_000_000, 60_000_000] {
            stats.record(latency_us);
        }
        assert_eq!(stats.buckets[0], 2, "≤ 1 ms");
        assert_eq!(stats.buckets[1], 1, "≤ 2 ms");
        assert_eq!(stats.buckets[LATENCY_BUCKETS_MS.len() - 1], 1, "≤ 50 s");
        assert_eq!(stats.buckets[LATENCY_BUCKETS_MS.len()], 1, "above");
        assert_eq!(stats.count, 5);
        assert_eq!(classification(503), "failure");
        assert_eq!(classification(403), "success");
    }
}
