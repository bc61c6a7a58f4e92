//! Checks on what the data plane did: the scenario's `[[mesh.checks]]`
//! (retry amplification, latency across load-balancer variants, ejection
//! and restoration times), and two security checks that run whenever they
//! apply:
//! * `authz_matches_oracle`: every distinct authorization decision a proxy
//!   made agrees with [`crate::oracle`], evaluated on the policy as written
//!   *for the config version the deciding proxy held*: the scenario's
//!   `[mesh]` policy, or the one an `apply_config` fault wrote. The sidecars
//!   report the config of every version they held; each is matched to the
//!   written policy it came from, and a policy the scenario never wrote is
//!   itself a disagreement;
//! * `rogue_never_succeeds`: no rogue host got an answer from an app, and
//!   the rogue with a mesh identity did reach the app on its allowed
//!   control path (so the policy, not a broken rogue, refused the rest).
//!
//! The scenario's `[[checks]]` that need the sidecars' evidence are here
//! too: SLOs scoped to a route, and `caller_cut_off`.

use std::time::Duration;

use std::collections::BTreeMap;

use loadgen::LoadReport;
use mesh::config::AuthorizationPolicy;
use mesh::telemetry::TelemetryReport;
use reports::{Check, CheckKind};
use seam::TraceEvent;

use crate::oracle;
use crate::rogue::{RogueAttempt, RogueOutcome};
use spec::mesh::{
    AuthorizationSpec, Expectation, MeshCheckKind, MeshCheckSpec, MeshMetric, RogueKind,
};
use spec::slo::{Measured, Threshold};
use spec::{ActionKind, CheckSpec, Property, Scenario};

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
    /// Sequence number of this run's first trace event (variants share
    /// one trace, one after another).
    pub trace_from_seq: u64,
}

/// Every data-plane check that applies to `runs` of `scenario`; `events`
/// is the (shared) trace's kept events.
pub fn mesh_checks(scenario: &Scenario, runs: &[VariantRun], events: &[TraceEvent]) -> Vec<Check> {
    let mut checks: Vec<Check> = scenario
        .mesh
        .checks
        .iter()
        .map(|spec| evaluate(spec, runs))
        .collect();
    if let Some(primary) = runs.last() {
        let events: Vec<&TraceEvent> = events
            .iter()
            .filter(|e| e.seq >= primary.trace_from_seq)
            .collect();
        checks.extend(
            scenario
                .checks
                .iter()
                .filter_map(|spec| scenario_check(spec, primary, &events)),
        );
    }
    let has_policy = runs.iter().any(|run| {
        let written = &run.scenario;
        written
            .mesh
            .services
            .values()
            .any(|p| p.authorization.is_some())
            || applied_tables(written).any(|(_, table)| {
                table
                    .get("services")
                    .and_then(toml::Value::as_table)
                    .is_some_and(|services| {
                        services.values().any(|s| s.get("authorization").is_some())
                    })
            })
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

/// The `config` tables of the scenario's `apply_config` faults, with a
/// label for messages.
fn applied_tables(scenario: &Scenario) -> impl Iterator<Item = (String, &toml::Table)> {
    scenario.faults.iter().filter_map(|fault| {
        if *fault.action.get_ref() != ActionKind::ApplyConfig {
            return None;
        }
        let label = format!("apply_config at {}", fault.at.get_ref());
        Some((label, fault.config.as_ref()?))
    })
}

/// One policy the scenario wrote for a service: where, as written (what
/// the oracle reads), and as the mesh receives it (only to recognise which
/// written policy a proxy held).
struct WrittenPolicy {
    source: String,
    as_written: Option<AuthorizationSpec>,
    as_sent: Option<AuthorizationPolicy>,
}

/// Every policy the scenario wrote for `service`: `[mesh]`, then each
/// `apply_config` in file order.
fn written_policies(scenario: &Scenario, service: &str) -> Vec<WrittenPolicy> {
    let initial = scenario.mesh.policy(service);
    let mut written = vec![WrittenPolicy {
        source: "[mesh]".into(),
        as_written: initial.and_then(|p| p.authorization.clone()),
        as_sent: initial.and_then(|p| p.to_config().authorization),
    }];
    for (source, table) in applied_tables(scenario) {
        let value = table
            .get("services")
            .and_then(|s| s.get(service))
            .and_then(|s| s.get("authorization"));
        written.push(WrittenPolicy {
            source,
            as_written: value.and_then(|v| v.clone().try_into().ok()),
            as_sent: value.and_then(|v| v.clone().try_into().ok()),
        });
    }
    written
}

/// The written policy `service`'s proxies held at `version`, or why there
/// is none.
fn policy_at<'a>(
    written: &'a [WrittenPolicy],
    telemetry: &TelemetryReport,
    service: &str,
    version: u64,
) -> Result<&'a WrittenPolicy, String> {
    let config = telemetry
        .configs
        .get(&version)
        .ok_or_else(|| format!("no sidecar reported the config of v{version}"))?;
    let held = config
        .services
        .get(service)
        .and_then(|s| s.authorization.as_ref());
    written
        .iter()
        .find(|w| w.as_sent.as_ref() == held)
        .ok_or_else(|| {
            format!("at v{version} the proxy held a {service} policy the scenario never wrote")
        })
}

fn authz_matches_oracle(runs: &[VariantRun]) -> Check {
    let mut distinct = 0u64;
    let mut requests = 0u64;
    let mut disagreements = Vec::new();
    let mut sources_used: BTreeMap<String, u64> = BTreeMap::new();
    for run in runs {
        let mut written: BTreeMap<&str, Vec<WrittenPolicy>> = BTreeMap::new();
        for (decision, count) in &run.telemetry.authz {
            distinct += 1;
            requests += count;
            let service = decision.service.as_str();
            let candidates = written
                .entry(service)
                .or_insert_with(|| written_policies(&run.scenario, service));
            let describe = |outcome: String| {
                format!(
                    "[{}] {} {} {} by {} at v{}: {outcome}",
                    run.name,
                    decision.service,
                    decision.method,
                    decision.raw_target,
                    decision.principal,
                    decision.config_version,
                )
            };
            let policy =
                match policy_at(candidates, &run.telemetry, service, decision.config_version) {
                    Ok(policy) => policy,
                    Err(why) => {
                        disagreements.push(describe(why));
                        continue;
                    }
                };
            *sources_used.entry(policy.source.clone()).or_default() += count;
            let oracle_allows = oracle::allows(
                policy.as_written.as_ref(),
                &decision.principal,
                &decision.method,
                &decision.raw_target,
            );
            if oracle_allows != (decision.verdict == "allow") {
                disagreements.push(describe(format!(
                    "proxy {}, oracle {} (policy of {})",
                    decision.verdict,
                    if oracle_allows { "allow" } else { "deny" },
                    policy.source
                )));
            }
        }
    }
    let passed = distinct > 0 && disagreements.is_empty();
    let by_policy = sources_used
        .iter()
        .map(|(source, n)| format!("{n} under {source}"))
        .collect::<Vec<_>>()
        .join(", ");
    let detail = if distinct == 0 {
        "a policy exists but no proxy made a decision: the check was not exercised".into()
    } else if disagreements.is_empty() {
        format!(
            "{distinct} distinct decisions ({requests} requests: {by_policy}) all agree with the oracle on the policy of the version each proxy held"
        )
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

/// A scenario `[[checks]]` entry that needs the sidecars' evidence.
fn scenario_check(spec: &CheckSpec, run: &VariantRun, events: &[&TraceEvent]) -> Option<Check> {
    if let Some(route) = &spec.route {
        let slo = spec.slo.as_ref()?.get_ref();
        return Some(route_slo(spec.name.get_ref(), slo, route.get_ref(), run));
    }
    if spec.property? == Property::CallerCutOff {
        return Some(caller_cut_off(spec, run, events));
    }
    None
}

/// An SLO on one route, over what every calling sidecar saw on it.
fn route_slo(name: &str, slo: &str, route: &str, run: &VariantRun) -> Check {
    let threshold: Threshold = slo.parse().expect("validated when the scenario was loaded");
    let empty = mesh::telemetry::RouteStats::default();
    let stats = run.telemetry.routes.get(route).unwrap_or(&empty);
    let counts = Measured {
        total: stats.total,
        failed: stats.failed,
        window_s: run.load.duration.as_secs_f64(),
    };
    let (passed, measured) = threshold.evaluate(counts, |q| match q {
        Some(q) => stats.latency_us.value_at_quantile(q) as f64 / 1000.0,
        None => stats.latency_us.mean() / 1000.0,
    });
    Check {
        name: name.to_owned(),
        kind: CheckKind::Slo,
        passed,
        detail: format!(
            "{threshold} on route {route} (as the calling sidecars measured it): measured {} over {} requests",
            threshold.format_measured(measured),
            stats.total
        ),
    }
}

/// After the first config the control plane accepted, `service`'s proxies
/// admit `caller` for at most `within`; `caller` was admitted before and
/// kept calling after (else the check proves nothing).
fn caller_cut_off(spec: &CheckSpec, run: &VariantRun, events: &[&TraceEvent]) -> Check {
    let name = spec.name.get_ref().clone();
    let caller = spec.caller.as_ref().map_or("", |c| c.get_ref().as_str());
    let service = spec.service.as_ref().map_or("", |s| s.get_ref().as_str());
    let bound = spec.within.map_or(Duration::ZERO, |w| w.0);
    let mesh = &run.scenario.mesh;
    let principal = format!(
        "spiffe://{}/ns/{}/sa/{caller}",
        mesh.trust_domain.to_ascii_lowercase(),
        mesh.namespace
    );
    let check = |passed: bool, detail: String| Check {
        name: name.clone(),
        kind: CheckKind::Security,
        passed,
        detail,
    };
    let Some(applied_us) = events
        .iter()
        .find(|e| e.kind == seam::event::CONTROL_APPLY)
        .map(|e| e.at_us)
    else {
        return check(
            false,
            "no config was applied during the run (or the trace kept no control.* events)".into(),
        );
    };
    let tally = run
        .telemetry
        .callers
        .get(&(service.to_owned(), principal.clone()))
        .copied()
        .unwrap_or_default();
    let seconds = |us: u64| us as f64 / 1e6;
    let deadline_us = applied_us + bound.as_micros() as u64;
    let last_allowed = tally.last_allowed_us.unwrap_or(0);
    let denied_after = tally.last_denied_us.is_some_and(|d| d >= applied_us);
    let passed = tally.allowed > 0 && denied_after && last_allowed <= deadline_us;
    let late = last_allowed.saturating_sub(applied_us);
    let detail = format!(
        "config accepted at {:.3}s; {service} last admitted {caller} at {:.3}s ({}; bound {bound:?} after); {} admitted, {} denied in all{}",
        seconds(applied_us),
        seconds(last_allowed),
        if last_allowed >= applied_us {
            format!("{:.3}s after", seconds(late))
        } else {
            format!("{:.3}s before", seconds(applied_us - last_allowed))
        },
        tally.allowed,
        tally.denied,
        if tally.allowed == 0 {
            "; never admitted, so nothing was cut off: not exercised"
        } else if !denied_after {
            "; no denial after the change: the caller stopped calling, which proves nothing"
        } else {
            ""
        }
    );
    check(passed, detail)
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mesh::config::MeshConfig;
    use mesh::telemetry::{AuthzDecision, CallerTally};

    use super::*;

    const GATEWAY: &str = "spiffe://rec.meshsim/ns/rec/sa/gateway";
    const PARTNER: &str = "spiffe://rec.meshsim/ns/rec/sa/partner";

    fn rollout() -> Scenario {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../library/config-rollout.toml");
        Scenario::load(&path).unwrap()
    }

    /// The config the operator's `apply_config` sent, as the mesh reads it.
    fn applied(scenario: &Scenario) -> MeshConfig {
        let (_, table) = applied_tables(scenario).next().unwrap();
        table.clone().try_into().unwrap()
    }

    fn decision(version: u64, principal: &str, verdict: &str) -> (AuthzDecision, u64) {
        let decision = AuthzDecision {
            service: "registry".into(),
            config_version: version,
            principal: principal.into(),
            method: "GET".into(),
            raw_target: "/recs/available".into(),
            verdict: verdict.into(),
        };
        (decision, 1)
    }

    fn run_with(telemetry: TelemetryReport) -> VariantRun {
        let scenario = rollout();
        VariantRun {
            name: "value".into(),
            load: LoadReport::new(Duration::from_secs(1), Duration::from_secs(1)),
            telemetry,
            rogues: Vec::new(),
            scenario,
            trace_from_seq: 0,
        }
    }

    /// v1 holds the file's `[mesh]` config, v7 the applied one.
    fn versions(scenario: &Scenario) -> BTreeMap<u64, MeshConfig> {
        let initial = scenario.mesh.to_config(scenario.workload.warmup.0);
        [(1, initial), (7, applied(scenario))].into()
    }

    #[test]
    fn each_decision_is_judged_by_the_policy_of_its_version() {
        let scenario = rollout();
        let honest = vec![
            decision(1, PARTNER, "allow"),
            decision(7, PARTNER, "deny"),
            decision(7, GATEWAY, "allow"),
        ];
        let check = authz_matches_oracle(&[run_with(TelemetryReport {
            authz: honest,
            configs: versions(&scenario),
            ..TelemetryReport::default()
        })]);
        assert!(check.passed, "{}", check.detail);
        assert!(
            check.detail.contains("under apply_config at 10s"),
            "{}",
            check.detail
        );
        // A proxy that still admitted partner at the tightened version.
        let late = vec![decision(7, PARTNER, "allow")];
        let check = authz_matches_oracle(&[run_with(TelemetryReport {
            authz: late,
            configs: versions(&scenario),
            ..TelemetryReport::default()
        })]);
        assert!(!check.passed, "{}", check.detail);
        // Judging v1's allow by the new policy would also be wrong.
        let early = vec![decision(1, PARTNER, "deny")];
        assert!(
            !authz_matches_oracle(&[run_with(TelemetryReport {
                authz: early,
                configs: versions(&scenario),
                ..TelemetryReport::default()
            })])
            .passed
        );
    }

    #[test]
    fn a_policy_the_scenario_never_wrote_is_a_disagreement() {
        let scenario = rollout();
        let mut configs = versions(&scenario);
        let mut foreign = applied(&scenario);
        foreign.services.get_mut("registry").unwrap().authorization = Some(Default::default());
        configs.insert(9, foreign);
        let check = authz_matches_oracle(&[run_with(TelemetryReport {
            authz: vec![decision(9, PARTNER, "deny")],
            configs,
            ..TelemetryReport::default()
        })]);
        assert!(!check.passed);
        assert!(check.detail.contains("never wrote"), "{}", check.detail);
    }

    #[test]
    fn caller_cut_off_needs_the_caller_cut_off_in_time_and_still_calling() {
        let scenario = rollout();
        let spec = scenario
            .checks
            .iter()
            .find(|c| c.property == Some(Property::CallerCutOff))
            .unwrap();
        let apply = TraceEvent {
            seq: 0,
            at_us: 13_000_000,
            host: "control".into(),
            kind: seam::event::CONTROL_APPLY.into(),
            detail: "v=7".into(),
        };
        let verdict = |tally: CallerTally| {
            let telemetry = TelemetryReport {
                callers: [(("registry".to_owned(), PARTNER.to_owned()), tally)].into(),
                ..TelemetryReport::default()
            };
            caller_cut_off(spec, &run_with(telemetry), &[&apply]).passed
        };
        let cut = CallerTally {
            allowed: 10,
            denied: 10,
            last_allowed_us: Some(13_050_000),
            first_denied_us: Some(13_060_000),
            last_denied_us: Some(20_000_000),
        };
        assert!(verdict(cut));
        let late = CallerTally {
            last_allowed_us: Some(13_500_000),
            ..cut
        };
        assert!(!verdict(late), "admitted 500 ms after a 100 ms bound");
        let silent = CallerTally {
            denied: 0,
            first_denied_us: None,
            last_denied_us: None,
            ..cut
        };
        assert!(
            !verdict(silent),
            "a caller that stopped calling proves nothing"
        );
        assert!(!verdict(CallerTally::default()));
    }
}
