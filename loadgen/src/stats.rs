//! HdrHistograms per operation and per interval.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in microseconds, 3 significant digits, up to 1 hour.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// Counts and latency for one operation.
#[derive(Clone)]
pub struct OpStats {
    /// Latency from intended start to completion (µs).
    pub latency_us: Histogram<u64>,
    /// Requests answered 2xx/3xx.
    pub ok: u64,
    /// Requests answered otherwise or not at all.
    pub failed: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency_us: new_histogram(),
            ok: 0,
            failed: 0,
        }
    }
}

impl OpStats {
    /// `latency` is `None` for a request that was never sent (dropped): it
    /// counts as failed but has no latency to pull the percentiles down.
    fn record(&mut self, latency: Option<Duration>, ok: bool) {
        if let Some(latency) = latency {
            let _ = self.latency_us.record((latency.as_micros() as u64).max(1));
        }
        if ok { self.ok += 1 } else { self.failed += 1 }
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }
}

/// One reporting interval.
#[derive(Clone)]
pub struct IntervalStats {
    /// Interval start, from the start of the run.
    pub start: Duration,
    /// Per operation, for requests *intended* to start in this interval.
    pub ops: BTreeMap<String, OpStats>,
}

/// Everything one load run measured.
#[derive(Clone)]
pub struct LoadReport {
    /// All operations together.
    pub overall: OpStats,
    /// Per operation name.
    pub ops: BTreeMap<String, OpStats>,
    /// Per interval (intended start), for time series.
    pub intervals: Vec<IntervalStats>,
    /// Interval length.
    pub interval: Duration,
    /// Time from actual send to completion (µs): what a closed-loop tool
    /// would report. Kept to show the difference, never for SLOs.
    pub service_time_us: Histogram<u64>,
    /// Generator lag: actual send minus intended start (µs).
    pub schedule_lag_us: Histogram<u64>,
    /// Requests sent more than the lag tolerance after their intended start.
    pub late: u64,
    /// Requests never sent because the in-flight bound was hit.
    pub dropped: u64,
    /// Status code counts.
    pub statuses: BTreeMap<u16, u64>,
    /// Planned run length.
    pub duration: Duration,
}

impl LoadReport {
    pub(crate) fn new(interval: Duration, duration: Duration) -> Self {
        LoadReport {
            overall: OpStats::default(),
            ops: BTreeMap::new(),
            intervals: Vec::new(),
            interval,
            service_time_us: new_histogram(),
            schedule_lag_us: new_histogram(),
            late: 0,
            dropped: 0,
            statuses: BTreeMap::new(),
            duration,
        }
    }

    pub(crate) fn record(
        &mut self,
        op: &str,
        intended: Duration,
        latency: Option<Duration>,
        ok: bool,
    ) {
        self.overall.record(latency, ok);
        self.ops
            .entry(op.to_owned())
            .or_default()
            .record(latency, ok);
        let index = (intended.as_nanos() / self.interval.as_nanos().max(1)) as usize;
        while self.intervals.len() <= index {
            let start = self.interval * self.intervals.len() as u32;
            self.intervals.push(IntervalStats {
                start,
                ops: BTreeMap::new(),
            });
        }
        self.intervals[index]
            .ops
            .entry(op.to_owned())
            .or_default()
            .record(latency, ok);
    }

    /// Latency at `quantile` (0..=1) over all requests, in milliseconds.
    pub fn latency_ms_at(&self, quantile: f64) -> f64 {
        self.overall.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}
