//! Turns a finished run into `reports::RunData` (files are the reports
//! crate's business; this only translates).

use std::path::Path;
use std::time::Duration;

use loadgen::{LoadReport, OpStats};
use reports::{
    IntervalHistogram, IntervalRow, ROUTE_ALL, RunData, TimelineEvent, Window, WindowKind,
};

use crate::plan::VariantPlan;
use crate::run::RunOutput;

fn row(start_s: f64, end_s: f64, route: &str, stats: &OpStats) -> IntervalRow {
    let h = &stats.latency_us;
    let ms = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    IntervalRow {
        start_s,
        end_s,
        route: route.to_owned(),
        count: stats.total(),
        errors: stats.failed,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: if h.is_empty() {
            0.0
        } else {
            h.max() as f64 / 1000.0
        },
    }
}

/// The load generator's measurements as report data (time series,
/// interval histograms, per-route histograms). Shared by scenario runs and
/// `meshsim load`. Times are seconds from the first intended start.
pub fn load_data(summary: reports::Summary, load: &LoadReport) -> RunData {
    let mut data = RunData::new(summary);
    let step_s = load.interval.as_secs_f64();
    for (i, interval) in load.intervals.iter().enumerate() {
        let (start_s, end_s) = (i as f64 * step_s, (i + 1) as f64 * step_s);
        let total = interval.total();
        data.intervals.push(row(start_s, end_s, ROUTE_ALL, &total));
        for (op, stats) in &interval.ops {
            data.intervals.push(row(start_s, end_s, op, stats));
            data.route_latency_intervals
                .entry(op.clone())
                .or_default()
                .push(IntervalHistogram {
                    start_s,
                    end_s,
                    histogram: stats.latency_us.clone(),
                });
        }
        data.latency_intervals.push(IntervalHistogram {
            start_s,
            end_s,
            histogram: total.latency_us,
        });
    }
    data.overall = load.overall.latency_us.clone();
    data.per_route = load
        .ops
        .iter()
        .map(|(op, stats)| (op.clone(), stats.latency_us.clone()))
        .collect();
    data
}

/// Builds the report data from the run's own plan (phases and faults at
/// the times they ran). Times are seconds from the start of the workload.
pub fn run_data(output: &RunOutput) -> RunData {
    let primary = output.plan.primary();
    let mut data = load_data(output.summary.clone(), &output.load);
    data.windows = phase_windows(primary);
    data.events = timeline(output, primary.scenario.workload.warmup.0);
    data
}

fn phase_windows(plan: &VariantPlan) -> Vec<Window> {
    let scenario = &plan.scenario;
    let mut start = Duration::ZERO;
    let mut windows = Vec::new();
    for phase in &scenario.workload.phases {
        let end = start + phase.duration.0;
        windows.push(Window {
            start_s: start.as_secs_f64(),
            end_s: end.as_secs_f64(),
            label: phase.name.clone(),
            kind: WindowKind::Phase,
        });
        start = end;
    }
    for (start_s, end_s, label) in plan.faults.marks() {
        windows.push(Window {
            start_s,
            end_s,
            label,
            kind: WindowKind::Fault,
        });
    }
    windows
}

/// Certificate and fault events from the trace (kept ones only).
fn timeline(output: &RunOutput, warmup: Duration) -> Vec<TimelineEvent> {
    let offset_s = warmup.as_secs_f64();
    output
        .trace
        .events()
        .into_iter()
        .filter(|e| {
            e.kind.starts_with("cert.") || e.kind.starts_with("ca.") || e.kind == seam::event::FAULT
        })
        .map(|e| TimelineEvent {
            at_s: e.at_us as f64 / 1e6 - offset_s,
            host: e.host,
            kind: e.kind,
            detail: e.detail,
        })
        .collect()
}

/// The run's Prometheus text (every proxy, labelled by `pod`).
pub const METRICS_FILE: &str = "metrics.prom";
/// The run's spans, OTLP JSON.
pub const TRACES_FILE: &str = "traces.otlp.json";

/// Writes the run's telemetry beside the report: `metrics.prom` and
/// `traces.otlp.json` (spans at the run's own times: the simulation's
/// epoch plus simulated time, so a seed's file is the same every run).
pub fn write_telemetry(dir: &Path, output: &RunOutput) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(METRICS_FILE), output.telemetry.prometheus_all())?;
    let mut traces = serde_json::to_vec(&otlp_document(output))?;
    traces.push(b'\n');
    std::fs::write(dir.join(TRACES_FILE), traces)
}

/// The run's spans as one OTLP JSON document.
pub fn otlp_document(output: &RunOutput) -> serde_json::Value {
    let epoch_unix_ns = output
        .epoch
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mesh::telemetry::otlp_json(&output.telemetry.spans(), epoch_unix_ns)
}
