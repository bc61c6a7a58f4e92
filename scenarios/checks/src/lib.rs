//! Every check a run is judged by: the scenario's SLOs, liveness after the
//! heal, data-plane and security properties, the identity lifecycle and the
//! control plane, then the summary.
//!
//! May import `spec`, `mesh` (its evidence types), `sim`, `loadgen` and
//! `reports`. Must never import the engine or the apps: a check judges
//! evidence, it never runs anything. The authorization oracle ([`oracle`])
//! must never share code with the proxy's matcher, or a bug in one would
//! hide in the other.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

use loadgen::{LoadReport, OpStats};
use reports::{Check, CheckKind, LatencyMs, Mode, RequestCounts, Summary};
use seam::TraceEvent;
use spec::FaultPlan;

pub use evidence::{RunEvidence, judge};

pub mod abort;
pub(crate) mod control;
pub mod dataplane;
pub mod evidence;
pub mod identity;
pub mod liveness;
pub mod oracle;
pub mod rogue;

use spec::slo::{Measured, Threshold};
use std::time::Duration;

use spec::{CheckSpec, Property, Scenario};

fn latency_ms(stats: &OpStats, quantile: Option<f64>) -> f64 {
    let h = &stats.latency_us;
    match quantile {
        Some(q) => h.value_at_quantile(q) as f64 / 1000.0,
        None => h.mean() / 1000.0,
    }
}

/// Evaluates the scenario's SLO checks against the load report. SLOs
/// scoped to a route are measured by the sidecars and evaluated with the
/// data-plane checks ([`crate::dataplane`]).
pub fn slo_checks(scenario: &Scenario, load: &LoadReport) -> Vec<Check> {
    scenario
        .checks
        .iter()
        .filter(|spec| spec.route.is_none())
        .filter_map(|spec| {
            let threshold: Threshold = spec
                .slo
                .as_ref()?
                .get_ref()
                .parse()
                .expect("validated when the scenario was loaded");
            let scope = Scope::of(scenario, spec);
            let (mut passed, mut detail, _) = evaluate_scoped(&threshold, &scope, load);
            if let Some(abort) = abort::aborted_by(load, spec.name.get_ref()) {
                passed = false;
                detail = format!("{abort}; over the whole run: {detail}");
            }
            Some(Check {
                name: spec.name.get_ref().clone(),
                kind: CheckKind::Slo,
                passed,
                detail,
            })
        })
        .collect()
}

/// What part of the load an SLO is about: an operation, a phase, or both.
pub struct Scope {
    /// Only this operation.
    pub operation: Option<String>,
    /// Only requests intended to start in `[from, until)` of workload time,
    /// and the phase's name.
    pub phase: Option<(String, Duration, Duration)>,
}

impl Scope {
    /// The scope a check declares.
    pub fn of(scenario: &Scenario, spec: &CheckSpec) -> Scope {
        Scope {
            operation: spec.operation.as_ref().map(|o| o.get_ref().clone()),
            phase: spec
                .phase
                .as_ref()
                .and_then(|name| phase_window(scenario, name.get_ref())),
        }
    }

    fn describe(&self) -> String {
        let op = self.operation.as_deref().unwrap_or("all");
        match &self.phase {
            Some((name, ..)) => format!("{op} in phase {name}"),
            None => op.to_owned(),
        }
    }
}

/// `[from, until)` of a workload phase, from the workload start.
pub fn phase_window(scenario: &Scenario, name: &str) -> Option<(String, Duration, Duration)> {
    let mut start = Duration::ZERO;
    for phase in &scenario.workload.phases {
        let end = start + phase.duration.0;
        if phase.name == name {
            return Some((name.to_owned(), start, end));
        }
        start = end;
    }
    None
}

/// The statistics in `scope`, and the length of its window in seconds.
fn scoped_stats(scope: &Scope, load: &LoadReport) -> (OpStats, f64) {
    let name = scope.operation.as_deref();
    let pick = |ops: &std::collections::BTreeMap<String, OpStats>, total: &OpStats| match name {
        Some(op) => ops.get(op).cloned().unwrap_or_default(),
        None => total.clone(),
    };
    match &scope.phase {
        None => (pick(&load.ops, &load.overall), load.duration.as_secs_f64()),
        Some((_, from, until)) => {
            let mut stats = OpStats::default();
            for interval in load
                .intervals
                .iter()
                .filter(|i| i.start >= *from && i.start < *until)
            {
                stats.add(&pick(&interval.ops, &interval.total()));
            }
            (stats, (*until - *from).as_secs_f64())
        }
    }
}

/// Evaluates `threshold` on the requests in `scope`: (passed, detail,
/// requests in scope).
pub fn evaluate_scoped(
    threshold: &Threshold,
    scope: &Scope,
    load: &LoadReport,
) -> (bool, String, u64) {
    let (stats, window_s) = scoped_stats(scope, load);
    let counts = Measured {
        total: stats.total(),
        failed: stats.failed,
        window_s,
    };
    let (passed, measured) = threshold.evaluate(counts, |q| latency_ms(&stats, q));
    let detail = format!(
        "{threshold} on {}: measured {} over {} requests",
        scope.describe(),
        threshold.format_measured(measured),
        stats.total()
    );
    (passed, detail, stats.total())
}

/// Evaluates the property checks from the trace's lifecycle events.
pub fn property_checks(
    scenario: &Scenario,
    faults: &FaultPlan,
    events: &[TraceEvent],
) -> Vec<Check> {
    // The last repair (or the phases' heal): what "after the heal" means.
    let schedule = faults.schedule();
    let last_repair = schedule
        .faults
        .iter()
        .filter(|f| matches!(f.action, sim::FaultAction::Repair { .. }))
        .map(|f| f.at)
        .max();
    let heal_us = last_repair
        .or(faults.heal_at)
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
                // Needs the sidecars' evidence: see `crate::dataplane`.
                Property::CallerCutOff => return None,
                _ => return None, // identity::checks
            })
        })
        .collect()
}

/// The run summary (summary.json) with every check but the data-plane
/// ones (see [`evidence::judge`]).
fn summarize(evidence: &RunEvidence, events: &[TraceEvent]) -> Summary {
    let RunEvidence {
        scenario,
        mode,
        trace,
        sim_seconds,
        wall_seconds,
        ..
    } = evidence;
    let (seed, mode) = (evidence.seed.value(), *mode);
    let load = &evidence.primary().load;
    let mut checks = slo_checks(scenario, load);
    checks.extend(crate::liveness::check(scenario, load));
    checks.extend(property_checks(scenario, &evidence.faults, events));
    checks.extend(identity::checks(scenario, &evidence.faults, load, events));
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
        sim_seconds: *sim_seconds,
        wall_seconds: *wall_seconds,
        requests: RequestCounts {
            total: overall.total(),
            ok: overall.ok,
            failed: overall.failed,
        },
        latency_ms: LatencyMs::from_quantiles(at),
        checks,
        reproduce: format!(
            "meshsim run {} --seed {seed}{mode_flag}",
            scenario_path_hint(scenario)
        ),
        generator_late: load.late,
        generator_dropped: load.dropped,
        config_versions: control::version_timeline(events),
        // The engine knows no file or binary; the cli fills this in.
        provenance: Default::default(),
    }
}

fn scenario_path_hint(scenario: &Scenario) -> String {
    format!("scenarios/library/{}.toml", scenario.name)
}
