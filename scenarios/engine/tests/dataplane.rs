//! The data-plane scenarios of the library, run whole in the simulator, and
//! proof that their checks can fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use checks::dataplane::{VariantRun, mesh_checks};
use checks::rogue::{RogueAttempt, RogueOutcome};
use engine::run_sim;
use loadgen::LoadReport;
use mesh::telemetry::{AuthzDecision, TelemetryReport};
use reports::{CheckKind, Summary, Verdict};
use seam::Trace;
use spec::Scenario;
use spec::mesh::RogueKind;

fn library(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../library")
        .join(format!("{name}.toml"))
}

fn load(name: &str) -> Scenario {
    Scenario::load(&library(name)).unwrap()
}

fn run(scenario: &Scenario) -> Summary {
    run_sim(scenario, seam::Seed::new(scenario.seed), Trace::hash_only())
        .unwrap()
        .summary
}

fn assert_passes(summary: &Summary, expected: &[(&str, CheckKind)]) {
    let report: Vec<String> = summary
        .checks
        .iter()
        .map(|c| format!("{} {:?} {}: {}", c.name, c.kind, c.passed, c.detail))
        .collect();
    assert_eq!(summary.verdict, Verdict::Pass, "{report:#?}");
    for (name, kind) in expected {
        let check = summary
            .checks
            .iter()
            .find(|c| c.name == *name)
            .unwrap_or_else(|| panic!("no check {name}: {report:#?}"));
        assert_eq!(check.kind, *kind, "{name}");
        assert!(check.passed, "{name}: {}", check.detail);
    }
}

#[test]
fn retry_storm_amplifies_without_a_budget_and_not_with_one() {
    let summary = run(&load("retry-storm"));
    assert_passes(&summary, &[("retry_amplification", CheckKind::Slo)]);
    let detail = &summary
        .checks
        .iter()
        .find(|c| c.name == "retry_amplification")
        .unwrap()
        .detail;
    assert!(
        detail.contains("without_budget=") && detail.contains("with_budget="),
        "both numbers are reported: {detail}"
    );
}

#[test]
fn retry_amplification_fails_when_the_budget_is_too_generous() {
    let text = std::fs::read_to_string(library("retry-storm"))
        .unwrap()
        .replace(
            "retry_budget = { ratio = 0.1, min_retries_per_s = 5, ttl = \"10s\" }",
            "retry_budget = { ratio = 5.0, min_retries_per_s = 1000, ttl = \"10s\" }",
        );
    let scenario = Scenario::parse(Path::new("generous.toml"), &text).unwrap();
    let summary = run(&scenario);
    let check = summary
        .checks
        .iter()
        .find(|c| c.name == "retry_amplification")
        .unwrap();
    assert!(!check.passed, "{}", check.detail);
    assert_eq!(summary.verdict, Verdict::Fail);
}

#[test]
fn gray_failure_peak_ewma_beats_round_robin_threefold() {
    let summary = run(&load("gray-failure"));
    assert_passes(
        &summary,
        &[("ewma_p99_3x_lower_than_round_robin", CheckKind::Slo)],
    );
}

#[test]
fn replica_crash_is_ejected_and_restored() {
    let summary = run(&load("replica-crash"));
    assert_passes(
        &summary,
        &[
            ("crashed_replica_ejected_within_2s", CheckKind::Slo),
            ("restarted_replica_restored_within_15s", CheckKind::Liveness),
            ("no_errors_in_the_last_10s", CheckKind::Liveness),
        ],
    );
}

#[test]
fn rogue_workload_never_succeeds_and_matches_the_oracle() {
    let summary = run(&load("rogue-workload"));
    assert_passes(
        &summary,
        &[
            ("rogue_never_succeeds", CheckKind::Security),
            ("authz_matches_oracle", CheckKind::Security),
        ],
    );
}

#[test]
fn dataplane_scenarios_replay_identically() {
    for name in ["replica-crash", "rogue-workload"] {
        let scenario = load(name);
        let first = run(&scenario).trace_hash;
        let second = run(&scenario).trace_hash;
        assert!(first.is_some());
        assert_eq!(first, second, "{name}");
    }
}

fn empty_load() -> LoadReport {
    LoadReport::new(Duration::from_secs(1), Duration::from_secs(1))
}

fn decision(principal: &str, target: &str, verdict: &str) -> (AuthzDecision, u64) {
    let decision = AuthzDecision {
        service: "registry".into(),
        config_version: 1,
        principal: principal.into(),
        method: "GET".into(),
        raw_target: target.into(),
        verdict: verdict.into(),
    };
    (decision, 1)
}

fn attempt(
    rogue: &str,
    kind: RogueKind,
    target: &str,
    control: bool,
    outcome: RogueOutcome,
) -> RogueAttempt {
    RogueAttempt {
        rogue: rogue.into(),
        kind,
        principal: None,
        service: "registry".into(),
        host: "registry-0".into(),
        method: "GET".into(),
        target: target.into(),
        control,
        outcome,
    }
}

/// The security checks on evidence made up to be wrong: they must fail.
#[test]
fn security_checks_fail_on_a_breach_and_on_a_disagreement() {
    let scenario = load("rogue-workload");
    let insider = "spiffe://rec.meshsim/ns/rec/sa/rogue-insider";
    let honest = |decisions, attempts| VariantRun {
        name: "value".into(),
        scenario: scenario.clone(),
        load: empty_load(),
        telemetry: TelemetryReport {
            authz: decisions,
            // The sidecars held the scenario's own config at v1.
            configs: [(1, scenario.mesh.to_config(scenario.workload.warmup.0))].into(),
            ..TelemetryReport::default()
        },
        rogues: attempts,
        trace_from_seq: 0,
    };
    let good_attempts = vec![
        attempt(
            "rogue-nocert",
            RogueKind::NoCertificate,
            "/recs/available",
            false,
            RogueOutcome::NoResponse("handshake".into()),
        ),
        attempt(
            "rogue-foreign",
            RogueKind::ForeignCa,
            "/recs/available",
            false,
            RogueOutcome::NoResponse("read".into()),
        ),
        attempt(
            "rogue-insider",
            RogueKind::DisallowedIdentity,
            "/public/../recs/available",
            false,
            RogueOutcome::Status(403),
        ),
        attempt(
            "rogue-insider",
            RogueKind::DisallowedIdentity,
            "/public/status",
            true,
            RogueOutcome::Status(404),
        ),
    ];
    let good_decisions = vec![
        decision(insider, "/recs/available", "deny"),
        decision(insider, "/public/status", "allow"),
    ];
    let verdicts = |run: VariantRun| {
        mesh_checks(&scenario, &[run], &[])
            .into_iter()
            .map(|c| (c.name, c.passed))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        verdicts(honest(good_decisions.clone(), good_attempts.clone())),
        [
            ("authz_matches_oracle".to_owned(), true),
            ("rogue_never_succeeds".to_owned(), true)
        ]
    );
    // The proxy allowed a traversal the oracle denies.
    let mut wrong = good_decisions.clone();
    wrong.push(decision(insider, "/public/%2e%2e/recs/available", "allow"));
    assert_eq!(
        verdicts(honest(wrong, good_attempts.clone()))[0],
        ("authz_matches_oracle".to_owned(), false)
    );
    // A certificate-less rogue got an HTTP answer.
    let mut breached = good_attempts.clone();
    breached.push(attempt(
        "rogue-nocert",
        RogueKind::NoCertificate,
        "/recs/available",
        false,
        RogueOutcome::Status(403),
    ));
    assert_eq!(
        verdicts(honest(good_decisions.clone(), breached))[1],
        ("rogue_never_succeeds".to_owned(), false)
    );
    // The insider reached the app on a private path.
    let mut breached = good_attempts.clone();
    breached.push(attempt(
        "rogue-insider",
        RogueKind::DisallowedIdentity,
        "//recs/available",
        false,
        RogueOutcome::Status(200),
    ));
    assert_eq!(
        verdicts(honest(good_decisions.clone(), breached))[1],
        ("rogue_never_succeeds".to_owned(), false)
    );
    // A control that never got through means the rogue proved nothing.
    let unexercised: Vec<_> = good_attempts.into_iter().filter(|a| !a.control).collect();
    assert_eq!(
        verdicts(honest(good_decisions, unexercised))[1],
        ("rogue_never_succeeds".to_owned(), false)
    );
    // No decisions at all: not exercised.
    assert_eq!(
        verdicts(honest(vec![], vec![]))[0],
        ("authz_matches_oracle".to_owned(), false)
    );
}
