//! Evaluating a run: the scenario's SLOs, then the summary.

use loadgen::{LoadReport, OpStats};
use reports::{Check, CheckKind, LatencyMs, Mode, RequestCounts, Summary};
use seam::Trace;

use crate::slo::{Measured, Threshold};
use crate::spec::{Operation, Scenario};

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Quote => "quote",
        Operation::Order => "order",
    }
}

fn latency_ms(stats: &OpStats, quantile: Option<f64>) -> f64 {
    let h = &stats.latency_us;
    match quantile {
        Some(q) => h.value_at_quantile(q) as f64 / 1000.0,
        None => h.mean() / 1000.0,
    }
}

/// Evaluates the scenario's SLO checks against the load report.
pub fn slo_checks(scenario: &Scenario, load: &LoadReport) -> Vec<Check> {
    let empty = OpStats::default();
    scenario
        .checks
        .iter()
        .map(|spec| {
            let threshold: Threshold = spec
                .slo
                .get_ref()
                .parse()
                .expect("validated when the scenario was loaded");
            let (scope, stats) = match spec.operation {
                Some(op) => (op_name(op), load.ops.get(op_name(op)).unwrap_or(&empty)),
                None => ("all", &load.overall),
            };
            let counts = Measured {
                total: stats.total(),
                failed: stats.failed,
                window_s: load.duration.as_secs_f64(),
            };
            let (passed, measured) = threshold.evaluate(counts, |q| latency_ms(stats, q));
            let detail = format!(
                "{threshold} on {scope}: measured {} over {} requests",
                threshold.format_measured(measured),
                stats.total()
            );
            Check {
                name: spec.name.clone(),
                kind: CheckKind::Slo,
                passed,
                detail,
            }
        })
        .collect()
}

/// The run summary (summary.json).
pub fn summarize(
    scenario: &Scenario,
    seed: u64,
    mode: Mode,
    load: &LoadReport,
    trace: &Trace,
    sim_seconds: f64,
    wall_seconds: f64,
) -> Summary {
    let mut checks = slo_checks(scenario, load);
    checks.extend(crate::liveness::check(scenario, load));
    let overall = &load.overall;
    let at = |q: f64| {
        if overall.total() == 0 {
            0.0
        } else {
            load.latency_ms_at(q)
        }
    };
    let mode_flag = if mode == Mode::Real { " --real" } else { "" };
    Summary {
        scenario: scenario.name.clone(),
        seed,
        mode,
        verdict: Summary::verdict_of(&checks),
        trace_hash: (mode == Mode::Sim).then(|| trace.hash_hex()),
        sim_seconds,
        wall_seconds,
        requests: RequestCounts {
            total: overall.total(),
            ok: overall.ok,
            failed: overall.failed,
        },
        latency_ms: LatencyMs {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        },
        checks,
        reproduce: format!(
            "meshsim run {} --seed {seed}{mode_flag}",
            scenario_path_hint(scenario)
        ),
        generator_late: load.late,
        generator_dropped: load.dropped,
    }
}

fn scenario_path_hint(scenario: &Scenario) -> String {
    format!("scenarios/library/{}.toml", scenario.name)
}
