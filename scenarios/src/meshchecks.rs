//! Checks on what the data plane did: the scenario's `[[mesh.checks]]`
//! (retry amplification, latency across load-balancer variants, ejection
//! and restoration times), and two security checks that run whenever they
//! apply:
//! * `authz_matches_oracle`: every distinct authorization decision a proxy
//!   made agrees with [`crate::oracle`], evaluated on the policy as written;
//! * `rogue_never_succeeds`: no rogue host got an answer from an app, and
//!   the rogue with a mesh identity did reach the app on its allowed
//!   control path (so the policy, not a broken rogue, refused the rest).

use std::time::Duration;

use loadgen::LoadReport;
use mesh::telemetry::TelemetryReport;
use reports::{Check, CheckKind};

use crate::oracle;
use crate::rogue::{RogueAttempt, RogueOutcome};
use crate::spec::Scenario;
use crate::spec::mesh::{Expectation, MeshCheckKind, MeshCheckSpec, MeshMetric, RogueKind};

/// What one run (one variant) of a scenario produced.
pub struct VariantRun {
    /// Variant name (`value` when the scenario has none).
    pub name: String,
    /// The scenario as this variant ran it.
    pub scenario: Scenario,
    /// The load generator's report.
    pub load: LoadReport,
    /// The proxies' evidence.
    pub telemetry: TelemetryReport,
    /// The rogues' attempts.
    pub rogues: Vec<RogueAttempt>,
}

/// Every data-plane check that applies to `runs` of `scenario`.
pub fn mesh_checks(scenario: &Scenario, runs: &[VariantRun]) -> Vec<Check> {
    let mut checks: Vec<Check> = scenario
        .mesh
        .checks
        .iter()
        .map(|spec| evaluate(spec, runs))
        .collect();
    let has_policy = runs.iter().any(|run| {
        run.scenario
            .mesh
            .services
            .values()
            .any(|p| p.authorization.is_some())
    });
    if has_policy {
        checks.push(authz_matches_oracle(runs));
    }
    if !scenario.mesh.rogues.is_empty() {
        checks.push(rogue_never_succeeds(scenario, runs));
    }
    checks
}

fn measure(spec: &MeshCheckSpec, run: &VariantRun) -> f64 {
    let warmup = run.scenario.workload.warmup.0;
    let window = spec
        .window
        .as_ref()
        .map(|w| (warmup + w.from.0, warmup + w.until.0));
    let since = |kind: &str| {
        let after = warmup + spec.after.map_or(Duration::ZERO, |a| a.0);
        let endpoint = spec.endpoint.as_ref().map_or("", |e| e.get_ref().as_str());
        run.telemetry
            .first_event(kind, endpoint, after)
            .map_or(f64::NAN, |e| {
                (e.at_us as f64 - after.as_micros() as f64) / 1000.0
            })
    };
    let quantile = |q: f64| run.load.overall.latency_us.value_at_quantile(q) as f64 / 1000.0;
    match spec.metric {
        MeshMetric::RetryAmplification => {
            let service = spec.service.as_ref().map_or("", |s| s.get_ref().as_str());
            let (from, until) = window.unwrap_or_default();
            let total = run.telemetry.service_total(service, from, until);
            if total.requests == 0 {
                f64::NAN
            } else {
                total.attempts as f64 / total.requests as f64
            }
        }
        MeshMetric::P50Ms => quantile(0.5),
        MeshMetric::P99Ms => quantile(0.99),
        MeshMetric::P999Ms => quantile(0.999),
        MeshMetric::ErrorRate => error_rate(&run.load, spec),
        MeshMetric::EjectionDelayMs => since("outlier.eject"),
        MeshMetric::RestoredAfterMs => since("outlier.restore"),
    }
}

/// Failed ÷ total, over the window (by intended start) if there is one.
fn error_rate(load: &LoadReport, spec: &MeshCheckSpec) -> f64 {
    let (failed, total) = match &spec.window {
        None => (load.overall.failed, load.overall.total()),
        Some(window) => load
            .intervals
            .iter()
            .filter(|i| i.start >= window.from.0 && i.start < window.until.0)
            .flat_map(|i| i.ops.values())
            .fold((0, 0), |(f, t), s| (f + s.failed, t + s.total())),
    };
    if total == 0 {
        f64::NAN
    } else {
        failed as f64 / total as f64
    }
}

fn evaluate(spec: &MeshCheckSpec, runs: &[VariantRun]) -> Check {
    let values: Vec<(String, f64)> = runs
        .iter()
        .map(|r| (r.name.clone(), measure(spec, r)))
        .collect();
    let value_of = |name: &str| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    let mut passed = true;
    let mut verdicts = Vec::new();
    for condition in &spec.expect {
        let Ok(expectation) = condition.get_ref().parse::<Expectation>() else {
            passed = false;
            continue;
        };
        let left = value_of(&expectation.left);
        let value = match &expectation.over {
            Some(over) => left / value_of(over),
            None => left,
        };
        let holds = value.is_finite() && expectation.op.holds(value, expectation.bound);
        passed &= holds;
        verdicts.push(format!(
            "{} = {} {} {} {}",
            condition
                .get_ref()
                .split(['<', '>'])
                .next()
                .unwrap_or("")
                .trim(),
            format_value(value),
            if holds { "holds:" } else { "FAILS:" },
            expectation.op.symbol(),
            expectation.bound
        ));
    }
    let measured: Vec<String> = values
        .iter()
        .map(|(n, v)| format!("{n}={}", format_value(*v)))
        .collect();
    Check {
        name: spec.name.clone(),
        kind: match spec.kind {
            MeshCheckKind::Slo => CheckKind::Slo,
            MeshCheckKind::Liveness => CheckKind::Liveness,
        },
        passed,
        detail: format!(
            "{:?}: {}; {}",
            spec.metric,
            measured.join(", "),
            verdicts.join("; ")
        ),
    }
}

fn format_value(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3}")
    } else {
        "never".into()
    }
}

fn authz_matches_oracle(runs: &[VariantRun]) -> Check {
    let mut distinct = 0u64;
    let mut requests = 0u64;
    let mut disagreements = Vec::new();
    for run in runs {
        for (decision, count) in &run.telemetry.authz {
            distinct += 1;
            requests += count;
            let policy = run
                .scenario
                .mesh
                .policy(&decision.service)
                .and_then(|p| p.authorization.as_ref());
            let oracle_allows = oracle::allows(
                policy,
                &decision.principal,
                &decision.method,
                &decision.raw_target,
            );
            if oracle_allows != (decision.verdict == "allow") {
                disagreements.push(format!(
                    "[{}] {} {} {} by {}: proxy {}, oracle {}",
                    run.name,
                    decision.service,
                    decision.method,
                    decision.raw_target,
                    decision.principal,
                    decision.verdict,
                    if oracle_allows { "allow" } else { "deny" }
                ));
            }
        }
    }
    let passed = distinct > 0 && disagreements.is_empty();
    let detail = if distinct == 0 {
        "a policy exists but no proxy made a decision: the check was not exercised".into()
    } else if disagreements.is_empty() {
        format!("{distinct} distinct decisions ({requests} requests) all agree with the oracle")
    } else {
        format!(
            "{} of {distinct} distinct decisions disagree; first: {}",
            disagreements.len(),
            disagreements[0]
        )
    };
    Check {
        name: "authz_matches_oracle".into(),
        kind: CheckKind::Security,
        passed,
        detail,
    }
}

/// A status the inbound proxy itself answers with when it refuses.
fn refused_by_mesh(status: u16) -> bool {
    matches!(status, 400 | 403)
}

fn rogue_never_succeeds(scenario: &Scenario, runs: &[VariantRun]) -> Check {
    let mut breaches = Vec::new();
    let mut parts = Vec::new();
    let mut exercised = true;
    for rogue in &scenario.mesh.rogues {
        let name = rogue.name.get_ref();
        let attempts: Vec<&RogueAttempt> = runs
            .iter()
            .flat_map(|r| &r.rogues)
            .filter(|a| &a.rogue == name)
            .collect();
        let probes = attempts.iter().filter(|a| !a.control).count();
        let mut refused_handshakes = 0;
        for attempt in attempts.iter().filter(|a| !a.control) {
            let breach = match (&attempt.outcome, rogue.kind) {
                (RogueOutcome::NoResponse(_), _) => {
                    refused_handshakes += 1;
                    false
                }
                // Without a mesh identity, any HTTP answer means the
                // handshake was accepted.
                (RogueOutcome::Status(_), RogueKind::NoCertificate | RogueKind::ForeignCa) => true,
                (RogueOutcome::Status(status), RogueKind::DisallowedIdentity) => {
                    !refused_by_mesh(*status)
                }
            };
            if breach {
                breaches.push(format!(
                    "{name} ({:?}) {} {} on {} got {:?}",
                    rogue.kind, attempt.method, attempt.target, attempt.host, attempt.outcome
                ));
            }
        }
        let controls: Vec<&&RogueAttempt> = attempts.iter().filter(|a| a.control).collect();
        let controls_through = controls
            .iter()
            .filter(|a| matches!(a.outcome, RogueOutcome::Status(s) if !refused_by_mesh(s)))
            .count();
        if probes == 0 || (rogue.allowed_path.is_some() && controls_through == 0) {
            exercised = false;
        }
        parts.push(format!(
            "{name} ({:?}): {probes} probes, {refused_handshakes} refused before HTTP{}",
            rogue.kind,
            if rogue.allowed_path.is_some() {
                format!(
                    ", control reached the app {controls_through}/{}",
                    controls.len()
                )
            } else {
                String::new()
            }
        ));
    }
    let passed = breaches.is_empty() && exercised;
    let mut detail = parts.join("; ");
    if !breaches.is_empty() {
        detail = format!(
            "{} breaches, first: {}; {detail}",
            breaches.len(),
            breaches[0]
        );
    } else if !exercised {
        detail = format!(
            "not exercised (a rogue made no probe, or its control never got through); {detail}"
        );
    }
    Check {
        name: "rogue_never_succeeds".into(),
        kind: CheckKind::Security,
        passed,
        detail,
    }
}
