//! The input model: everything a report is drawn from.
//!
//! Plain data with public fields so producers (scenarios, benches) can fill
//! it without builders, and so a test can write one by hand.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::Summary;

/// Significant digits of every latency histogram: 0.1% value resolution,
/// the HdrHistogram default and what wrk2 uses.
pub const LATENCY_SIGFIG: u8 = 3;

/// Route name of the aggregate row in [`IntervalRow`]s.
pub const ROUTE_ALL: &str = "all";

/// A fresh auto-resizing latency histogram (values in microseconds).
pub fn latency_histogram() -> Histogram<u64> {
    // Only the significant-digit count can make creation fail, and it is a
    // valid constant, so this cannot panic at run time.
    Histogram::new(LATENCY_SIGFIG).expect("3 significant digits is a valid histogram")
}

/// Everything one run produced, as the report sees it.
#[derive(Clone, Debug)]
pub struct RunData {
    /// The `summary.json` contract: verdict, checks, counts, reproduce command.
    pub summary: Summary,
    /// Wall-clock start of the run in seconds since the Unix epoch, written
    /// as the interval log's StartTime/BaseTime so standard HdrHistogram
    /// tools can place intervals on a clock. 0.0 in sim mode, where time
    /// starts at zero.
    pub start_unix_s: f64,
    /// One row per interval and route (route [`ROUTE_ALL`] is the aggregate);
    /// the latency and throughput charts are drawn from the aggregate rows.
    pub intervals: Vec<IntervalRow>,
    /// Aggregate latency histogram per interval, saved as `latency.hlog` so
    /// any percentile over any time range can be recomputed later.
    pub latency_intervals: Vec<IntervalHistogram>,
    /// The same per route, saved in `latency.hlog` as tagged intervals
    /// (`Tag=<route>`), so `meshsim diff` merges a route's histograms
    /// exactly instead of averaging its percentiles.
    pub route_latency_intervals: BTreeMap<String, Vec<IntervalHistogram>>,
    /// Whole-run latency histogram (microseconds): the percentile spectrum.
    pub overall: Histogram<u64>,
    /// Whole-run latency histogram per route (microseconds): route comparison.
    pub per_route: BTreeMap<String, Histogram<u64>>,
    /// Fault and phase windows, shaded and marked on the time charts.
    pub windows: Vec<Window>,
    /// Point events such as certificate issue/renew/expiry, for the timeline.
    pub events: Vec<TimelineEvent>,
}

impl RunData {
    /// Run data with only a summary: no intervals, histograms or events.
    pub fn new(summary: Summary) -> Self {
        RunData {
            summary,
            start_unix_s: 0.0,
            intervals: Vec::new(),
            latency_intervals: Vec::new(),
            route_latency_intervals: BTreeMap::new(),
            overall: latency_histogram(),
            per_route: BTreeMap::new(),
            windows: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// Latency and counts of one route over one interval: one `timeseries.csv` row.
///
/// Field order is the CSV column order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalRow {
    /// Interval start, seconds since run start.
    pub start_s: f64,
    /// Interval end, seconds since run start (exclusive).
    pub end_s: f64,
    /// Route name, or [`ROUTE_ALL`] for the aggregate over all routes.
    pub route: String,
    /// Requests that finished in the interval, failed ones included; divided
    /// by the interval length it is the throughput.
    pub count: u64,
    /// Of `count`, requests that failed or were never answered.
    pub errors: u64,
    /// Median latency (ms, from intended start, so coordinated omission
    /// shows up as latency rather than as missing samples).
    pub p50_ms: f64,
    /// 90th percentile latency (ms).
    pub p90_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
    /// 99.9th percentile latency (ms).
    pub p999_ms: f64,
    /// Maximum latency (ms).
    pub max_ms: f64,
}

/// The aggregate latency histogram of one interval: one `latency.hlog` line.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalHistogram {
    /// Interval start, seconds since run start (the log keeps milliseconds).
    pub start_s: f64,
    /// Interval end, seconds since run start (the log keeps milliseconds).
    pub end_s: f64,
    /// Latencies that finished in the interval, microseconds.
    pub histogram: Histogram<u64>,
}

/// What a [`Window`] marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// An injected fault (partition, latency, clock skew…): shaded on charts
    /// so a latency spike can be matched to its cause at a glance.
    Fault,
    /// A load phase (warm-up, steady, ramp…): its start is marked with a
    /// vertical line, because phase changes explain throughput steps.
    Phase,
}

/// A labelled time span of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Start, seconds since run start.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub start_s: f64,
    /// End, seconds since run start.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub end_s: f64,
    /// Short text drawn on the chart, e.g. "partition a|b".
    pub label: String,
    /// Fault (shaded) or phase (boundary line).
    pub kind: WindowKind,
}

/// A point event on one host, e.g. a certificate being issued or expiring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// When, seconds since run start.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub at_s: f64,
    /// Host (or workload identity) the event happened on: one timeline row each.
    pub host: String,
    /// Event kind such as "issue", "renew", "expire"; free text so this crate
    /// needs no knowledge of the mesh. One colour per kind.
    pub kind: String,
    /// Human-readable detail (serial, not-after…), shown in the report table.
    pub detail: String,
}
