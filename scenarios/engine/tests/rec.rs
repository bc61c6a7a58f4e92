//! The REC application in the simulator: the ledger checks are present and
//! pass on the library scenarios (shortened), runs are deterministic, and
//! turning idempotency off is caught by the ledger.

use std::path::{Path, PathBuf};

use apps::ledger::CHECK_NAMES;
use engine::run_sim;
use reports::{Check, CheckKind};
use seam::Trace;
use spec::Scenario;

fn library(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../library")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// The scenario with its phases replaced by `phases` (TOML), so a test
/// runs the same topology, app settings, mix and checks for less time.
fn with_phases(text: &str, phases: &str) -> String {
    let start = text.find("[[workload.phases]]").unwrap();
    let end = text.find("# The mix").unwrap();
    format!("{}{phases}\n{}", &text[..start], &text[end..])
}

fn phase(name: &str, seconds: u32, rate: u32) -> String {
    format!(
        "[[workload.phases]]\nname = \"{name}\"\nduration = \"{seconds}s\"\narrival = {{ kind = \"poisson\", rate = {rate} }}\n"
    )
}

fn parse(path: &Path, text: &str) -> Scenario {
    Scenario::parse(path, text).unwrap_or_else(|e| panic!("{e}"))
}

fn ledger_checks(checks: &[Check]) -> Vec<&Check> {
    checks
        .iter()
        .filter(|c| c.kind == CheckKind::Ledger)
        .collect()
}

fn assert_all_ledger_checks_pass(checks: &[Check]) {
    let ledger = ledger_checks(checks);
    let names: Vec<&str> = ledger.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, CHECK_NAMES, "every ledger check is reported");
    for check in ledger {
        assert!(check.passed, "{}: {}", check.name, check.detail);
    }
}

#[test]
fn rec_peak_shortened_passes_slos_and_every_ledger_check() {
    let (path, text) = library("rec-peak.toml");
    let phases = [phase("steady", 10, 20), phase("deadline", 10, 100)].concat();
    let scenario = parse(&path, &with_phases(&text, &phases));
    let run = run_sim(&scenario, seam::Seed::new(1), Trace::hash_only()).unwrap();
    assert_all_ledger_checks_pass(&run.summary.checks);
    let failed: Vec<_> = run.summary.checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:?}");
    // The mix is exercised: trades settle, cancels and retirements happen.
    for op in ["quote", "order", "cancel", "retire"] {
        assert!(run.load.ops.get(op).is_some_and(|s| s.ok > 0), "{op}");
    }
}

#[test]
fn partition_settlement_shortened_holds_the_ledger_and_is_deterministic() {
    let (path, text) = library("partition-settlement.toml");
    let phases = [
        phase("steady", 60, 10),
        phase("auction-open", 70, 60),
        phase("after-heal", 20, 10),
    ]
    .concat();
    let scenario = parse(&path, &with_phases(&text, &phases));
    let first = run_sim(&scenario, seam::Seed::new(7), Trace::hash_only()).unwrap();
    assert_all_ledger_checks_pass(&first.summary.checks);
    let second = run_sim(&scenario, seam::Seed::new(7), Trace::hash_only()).unwrap();
    assert_eq!(first.summary.trace_hash, second.summary.trace_hash);
    assert_eq!(first.summary.requests, second.summary.requests);
}

/// A registry database slow enough (exponential, mean 30 ms) that some
/// calls time out (60 ms) after the database applied them but before the
/// answer is back: the caller retries a write that already happened. With
/// idempotency keys the retry is absorbed; without them it applies twice.
fn impatient(idempotency: bool) -> Scenario {
    let (path, text) = library("rec-peak.toml");
    let text = with_phases(&text, &phase("steady", 30, 40))
        // The event world's exact time: the race is between a 60 ms timeout
        // and answers a few milliseconds late.
        .replace("idempotency = true", &format!("idempotency = {idempotency}"))
        .replace("call_timeout = \"2s\"", "call_timeout = \"60ms\"")
        .replace(
            "name = \"registry-db\"\napp = \"registry_db\"\nservice_time = { distribution = \"exponential\", mean = \"2ms\" }",
            "name = \"registry-db\"\napp = \"registry_db\"\nservice_time = { distribution = \"exponential\", mean = \"30ms\" }",
        );
    assert!(
        text.contains("mean = \"30ms\"") && text.contains("call_timeout = \"60ms\""),
        "rec-peak.toml changed shape: update this test's replacements"
    );
    parse(&path, &text)
}

#[test]
fn the_ledger_catches_double_application_when_idempotency_is_off() {
    let safe = run_sim(&impatient(true), seam::Seed::new(1), Trace::hash_only()).unwrap();
    assert_all_ledger_checks_pass(&safe.summary.checks);
    assert!(safe.load.ops["order"].ok > 100, "orders went through");

    let buggy = run_sim(&impatient(false), seam::Seed::new(1), Trace::hash_only()).unwrap();
    let failed: Vec<&str> = ledger_checks(&buggy.summary.checks)
        .into_iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        failed.contains(&"trades_settled_exactly_once") && failed.contains(&"no_double_sale"),
        "expected double application to be caught, failed checks: {failed:?}\n{:#?}",
        buggy.summary.checks
    );
    assert_eq!(buggy.summary.verdict, reports::Verdict::Fail);
}
