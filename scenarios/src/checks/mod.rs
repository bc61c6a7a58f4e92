//! Evaluating a run: the scenario's SLOs, then the summary.

use loadgen::{LoadReport, OpStats};
use reports::{Check, CheckKind, LatencyMs, Mode, RequestCounts, Summary};
use seam::{Trace, TraceEvent};

mod control;
pub mod identity;

use crate::slo::{Measured, Threshold};
use crate::spec::{Operation, Property, Scenario};

fn op_name(op: Operation) -> &'static str {
    op.name()
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
    scenario
        .checks
        .iter()
        .filter_map(|spec| {
            Some(slo_check(
                spec.name.get_ref(),
                spec.slo.as_ref()?.get_ref(),
                spec.operation,
                load,
            ))
        })
        .collect()
}

fn slo_check(name: &str, slo: &str, operation: Option<Operation>, load: &LoadReport) -> Check {
    let empty = OpStats::default();
    let threshold: Threshold = slo.parse().expect("validated when the scenario was loaded");
    let (scope, stats) = match operation {
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
        name: name.to_owned(),
        kind: CheckKind::Slo,
        passed,
        detail,
    }
}

/// Evaluates the property checks from the trace's lifecycle events.
pub fn property_checks(scenario: &Scenario, seed: u64, events: &[TraceEvent]) -> Vec<Check> {
    // The last repair (or the phases' heal): what "after the heal" means.
    let schedule = scenario.fault_schedule(seam::Seed::new(seed));
    let last_repair = schedule
        .faults
        .iter()
        .filter(|f| matches!(f.action, sim::FaultAction::Repair { .. }))
        .map(|f| f.at)
        .max();
    let heal_us = last_repair
        .or(scenario.heal_time())
        .map(|at| at.as_micros() as u64);
    scenario
        .checks
        .iter()
        .filter_map(|spec| {
            let bound = spec.within?.0;
            let name = spec.name.get_ref();
            Some(match spec.property? {
                Property::ControlPlaneReconverged => {
                    control::reconverged(name, events, heal_us, bound)
                }
                Property::ConfigPropagated => control::propagated(name, events, bound),
                _ => return None, // identity::checks
            })
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
    let events = trace.events();
    checks.extend(property_checks(scenario, seed, &events));
    checks.extend(identity::checks(scenario, seed, load, &events));
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
        config_versions: control::version_timeline(&events),
    }
}

fn scenario_path_hint(scenario: &Scenario) -> String {
    format!("scenarios/library/{}.toml", scenario.name)
}
