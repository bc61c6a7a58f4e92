//! HdrHistograms per operation and per interval, and the generator's own
//! saturation counters.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Significant digits of every histogram: 0.1 % value resolution, as wrk2.
pub const HISTOGRAM_SIGFIG: u8 = 3;

/// Longest latency a histogram records; longer ones are clamped to it
/// (they count, they just cannot be told apart).
pub const LATENCY_MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits. It grows as
/// values arrive, so a quiet interval costs a few hundred bytes instead of
/// the ~190 KB a histogram pre-sized to one hour would take.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(HISTOGRAM_SIGFIG).expect("3 significant digits is valid")
}

/// How the warning about a run's first dropped request starts.
pub(crate) const DROP_WARNING_START: &str = "requests dropped:";

/// Records `value` in µs (at least 1, at most [`LATENCY_MAX_US`]).
pub(crate) fn record_us(histogram: &mut Histogram<u64>, value: Duration) {
    let us = (value.as_micros() as u64).clamp(1, LATENCY_MAX_US);
    // Auto-resizing histograms only refuse values beyond u64 range.
    let _ = histogram.record(us);
}

/// Counts and latency for one operation.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Latency from intended start to completion (µs).
    pub latency_us: Histogram<u64>,
    /// Requests answered 2xx/3xx.
    pub ok: u64,
    /// Requests answered otherwise, not at all, or never sent (dropped).
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
            record_us(&mut self.latency_us, latency);
        }
        if ok { self.ok += 1 } else { self.failed += 1 }
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }

    /// Adds `other` into this one.
    pub fn add(&mut self, other: &OpStats) {
        // Both grow automatically, so adding cannot run out of range.
        let _ = self.latency_us.add(&other.latency_us);
        self.ok += other.ok;
        self.failed += other.failed;
    }
}

/// The entry for `op`, allocating its name only the first time.
fn stats_for<'a>(ops: &'a mut BTreeMap<String, OpStats>, op: &str) -> &'a mut OpStats {
    if !ops.contains_key(op) {
        ops.insert(op.to_owned(), OpStats::default());
    }
    ops.get_mut(op).expect("inserted above")
}

/// One reporting interval.
#[derive(Clone, Debug)]
pub struct IntervalStats {
    /// Interval start, from the start of the run.
    pub start: Duration,
    /// Per operation, for requests *intended* to start in this interval
    /// (so a stall shows at the time it hit, not when it was noticed).
    pub ops: BTreeMap<String, OpStats>,
}

impl IntervalStats {
    /// All operations of the interval together.
    pub fn total(&self) -> OpStats {
        let mut total = OpStats::default();
        for stats in self.ops.values() {
            total.add(stats);
        }
        total
    }
}

/// Everything one load run measured.
#[derive(Clone, Debug)]
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
    /// Generator lag: actual send minus intended start (µs). Waiting for a
    /// free connection counts, so an undersized pool shows here.
    pub schedule_lag_us: Histogram<u64>,
    /// Requests scheduled.
    pub scheduled: u64,
    /// Requests that got a connection and went on the wire.
    pub sent: u64,
    /// Requests sent more than the lag tolerance after their intended start.
    pub late: u64,
    /// Requests never sent because the in-flight bound was hit.
    pub dropped: u64,
    /// Most requests in flight at once.
    pub in_flight_peak: u64,
    /// Status code counts (0 = no response).
    pub statuses: BTreeMap<u16, u64>,
    /// Failures without a response, by kind (connect, tls, http, body,
    /// timeout, dropped).
    pub errors: BTreeMap<String, u64>,
    /// Planned run length.
    pub duration: Duration,
    /// From the first intended start to the last completion.
    pub elapsed: Duration,
    /// What the generator noticed about itself (pool too small, fell
    /// behind, dropped): printed, never hidden.
    pub warnings: Vec<String>,
}

impl LoadReport {
    /// An empty report (nothing scheduled yet).
    pub fn new(interval: Duration, duration: Duration) -> Self {
        LoadReport {
            overall: OpStats::default(),
            ops: BTreeMap::new(),
            intervals: Vec::new(),
            interval,
            service_time_us: new_histogram(),
            schedule_lag_us: new_histogram(),
            scheduled: 0,
            sent: 0,
            late: 0,
            dropped: 0,
            in_flight_peak: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            duration,
            elapsed: Duration::ZERO,
            warnings: Vec::new(),
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
        stats_for(&mut self.ops, op).record(latency, ok);
        let index = (intended.as_nanos() / self.interval.as_nanos().max(1)) as usize;
        while self.intervals.len() <= index {
            let start = self.interval * self.intervals.len() as u32;
            self.intervals.push(IntervalStats {
                start,
                ops: BTreeMap::new(),
            });
        }
        stats_for(&mut self.intervals[index].ops, op).record(latency, ok);
    }

    /// Adds a report of the same plan measured elsewhere (another thread's
    /// share of the schedule). The in-flight peak becomes the sum of the
    /// peaks: an upper bound, as the two need not have peaked together.
    pub fn merge(&mut self, other: LoadReport) {
        self.overall.add(&other.overall);
        for (op, stats) in &other.ops {
            stats_for(&mut self.ops, op).add(stats);
        }
        for (index, interval) in other.intervals.into_iter().enumerate() {
            while self.intervals.len() <= index {
                let start = self.interval * self.intervals.len() as u32;
                self.intervals.push(IntervalStats {
                    start,
                    ops: BTreeMap::new(),
                });
            }
            for (op, stats) in &interval.ops {
                stats_for(&mut self.intervals[index].ops, op).add(stats);
            }
        }
        // Both grow automatically, so adding cannot run out of range.
        let _ = self.service_time_us.add(&other.service_time_us);
        let _ = self.schedule_lag_us.add(&other.schedule_lag_us);
        self.scheduled += other.scheduled;
        self.sent += other.sent;
        self.late += other.late;
        self.in_flight_peak += other.in_flight_peak;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        // Each share warns of its first drop; the run's first is enough.
        let first_drop = self.dropped == 0;
        self.dropped += other.dropped;
        self.warnings.extend(
            other
                .warnings
                .into_iter()
                .filter(|w| first_drop || !w.starts_with(DROP_WARNING_START)),
        );
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// Latency at `quantile` (0..=1) over all requests, in milliseconds.
    pub fn latency_ms_at(&self, quantile: f64) -> f64 {
        self.overall.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Requests sent and finished (answered or failed, not dropped) per
    /// second of planned run time.
    pub fn achieved_rate_per_s(&self) -> f64 {
        self.overall.total().saturating_sub(self.dropped) as f64
            / self.duration.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}
