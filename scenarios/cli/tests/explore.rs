//! The simulation engine end to end: independent seeds in one process,
//! phases with a liveness check, swarm schedules, exploration that finds
//! the failing seeds, and shrinking to a minimal failing scenario.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use seam::{Seed, Trace};
use search::explore::{ExploreOptions, Outcome, ScenarioSource, explore};
use search::shrink::{ShrinkOptions, Target, shrink};
use sim::FaultAction;
use spec::Scenario;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

fn fixture(name: &str) -> PathBuf {
    workspace().join("scenarios/fixtures").join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshsim-explore-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// smoke.toml with a 3 s workload and `extra` appended.
fn short_smoke(extra: &str) -> Scenario {
    let text = std::fs::read_to_string(workspace().join("scenarios/library/smoke.toml")).unwrap();
    let text = text.replace("duration = \"20s\"", "duration = \"3s\"") + extra;
    Scenario::parse(Path::new("smoke-short.toml"), &text).unwrap()
}

fn hash(scenario: &Scenario, seed: u64) -> String {
    engine::run_sim(scenario, seam::Seed::new(seed), Trace::hash_only())
        .unwrap()
        .trace
        .hash_hex()
}

/// The seed tree has no globals: a run in between, or a run on another
/// thread at the same time, never changes a seed's trace. The crash matters:
/// tokio drops a crashed host's tasks in an order that depends on
/// process-wide task ids, which once leaked into the trace.
#[test]
fn runs_in_one_process_are_independent() {
    let text = std::fs::read_to_string(workspace().join("scenarios/library/smoke.toml")).unwrap();
    let text = text.replace("duration = \"20s\"", "duration = \"8s\"")
        + r#"
[phases]
heal_at = "4s"
converge_within = "2s"
stable_for = "2s"

[[faults]]
at = "2s"
action = "crash"
hosts = ["gateway"]
"#;
    let scenario = Scenario::parse(Path::new("smoke-crash.toml"), &text).unwrap();
    let first = hash(&scenario, 1);
    let other = hash(&scenario, 2);
    let again = hash(&scenario, 1);
    assert_eq!(first, again, "seed 1 replays after seed 2 ran in between");
    assert_ne!(first, other, "different seeds give different runs");
    let concurrent: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = [2, 1]
            .into_iter()
            .map(|seed| {
                scope.spawn({
                    let scenario = &scenario;
                    move || hash(scenario, seed)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(concurrent, [other, first], "runs on two threads at once");
}

/// The partition in the fixture, and when seed `seed` draws it (from the
/// workload start).
fn drawn_partition_time(source: &ScenarioSource, seed: u64) -> Duration {
    let index = source
        .scenario
        .faults
        .iter()
        .position(|f| f.at.get_ref().contains(".."))
        .expect("the fixture draws one fault time");
    source.scenario.fault_times(Seed::new(seed))[index]
}

#[test]
fn explore_finds_exactly_the_seeds_whose_partition_hits_the_workload() {
    let source = ScenarioSource::load(&fixture("partition-window.toml")).unwrap();
    let seeds: Vec<u64> = (1..9).collect();
    let options = ExploreOptions {
        swarm: false,
        jobs: 2,
        recheck: vec![1, 5],
        ..ExploreOptions::default()
    };
    let report = explore(&source, &seeds, &options, |_| {});
    assert_eq!(report.results.len(), seeds.len());
    assert!(report.mismatches().is_empty(), "{:?}", report.rechecks);
    assert!(!report.rechecks.is_empty(), "failing seeds are re-checked");
    let workload = Duration::from_secs(8);
    let mut failing = 0;
    for result in &report.results {
        let at = drawn_partition_time(&source, result.seed);
        match &result.outcome {
            Outcome::Fail(checks) => {
                failing += 1;
                assert_eq!(checks[0].name, "errors_under_1pct");
                assert!(
                    at < workload,
                    "seed {} failed with the partition at {at:?}",
                    result.seed
                );
            }
            Outcome::Pass => assert!(
                at >= workload - Duration::from_millis(500),
                "seed {} passed although the partition at {at:?} cut 1.5 s of the workload",
                result.seed
            ),
            Outcome::Error(error) => panic!("seed {}: {error}", result.seed),
        }
    }
    assert!(failing > 0 && failing < seeds.len(), "{failing} failing");
}

#[test]
fn shrink_keeps_only_the_partition_and_the_result_fails_deterministically() {
    let source = ScenarioSource::load(&fixture("partition-window.toml")).unwrap();
    let seed = (1..50)
        .find(|s| drawn_partition_time(&source, *s) < Duration::from_secs(6))
        .unwrap();
    let options = ShrinkOptions {
        seed,
        swarm: false,
        check: None,
        runs_max: 120,
    };
    let shrunk = shrink(&source, &options, &mut |_| {}).unwrap();
    assert_eq!(shrunk.target, Target::Check("errors_under_1pct".into()));
    assert_eq!(shrunk.actions.0, 9, "five entries, four with an undo");
    assert!(shrunk.actions.1 <= 2, "{:?}", shrunk.actions);
    assert!(shrunk.workload.1 <= shrunk.workload.0);
    let schedule = shrunk.source.scenario.fault_schedule(Seed::new(seed));
    assert!(
        schedule.faults.iter().any(|f| matches!(
            &f.action,
            FaultAction::Partition { a, .. } if a == &["gateway-0"]
        )),
        "{schedule:?}"
    );

    // The written file is a scenario `meshsim run` replays as a failure.
    let dir = temp_dir("shrink");
    let out = dir.join("shrunk.toml");
    let text = shrunk
        .file_text(&fixture("partition-window.toml"), &out, seed, false)
        .unwrap();
    std::fs::write(&out, text).unwrap();
    let replayed = Scenario::load(&out).unwrap();
    assert_eq!(replayed.seed, seed);
    let output = engine::run_sim(&replayed, seam::Seed::new(seed), Trace::hash_only()).unwrap();
    assert_eq!(output.trace.hash_hex(), shrunk.trace_hash);
    assert!(
        output
            .summary
            .checks
            .iter()
            .any(|c| c.name == "errors_under_1pct" && !c.passed)
    );
}

#[test]
fn swarm_schedules_follow_the_seed_and_stay_in_the_safety_phase() {
    let source = ScenarioSource::load(&workspace().join("scenarios/library/smoke.toml")).unwrap();
    let mut schedules = Vec::new();
    for seed in 1..30 {
        let variant = source.with_swarm(seed).unwrap();
        assert_eq!(
            variant.text().unwrap(),
            source.with_swarm(seed).unwrap().text().unwrap()
        );
        let scenario = &variant.scenario;
        let heal = scenario
            .heal_time()
            .expect("swarm adds phases when missing");
        let schedule = scenario.fault_schedule(Seed::new(seed));
        for fault in &schedule.faults {
            assert!(fault.at <= heal, "seed {seed}: {fault:?} after the heal");
        }
        assert_eq!(schedule.faults.last().unwrap().action, FaultAction::Heal);
        schedules.push(schedule.action_count());
    }
    assert!(schedules.iter().any(|n| *n > 0));
    assert!(
        schedules.iter().any(|n| *n != schedules[0]),
        "seeds draw different schedules: {schedules:?}"
    );
}

#[test]
fn heal_restarts_a_crashed_gateway_and_liveness_holds() {
    let scenario = short_smoke(
        r#"
[phases]
heal_at = "1s"
converge_within = "1s"
stable_for = "1s"
slo = "p(99) < 250ms"

[[faults]]
at = "500ms"
action = "crash"
hosts = ["gateway"]
"#,
    );
    let output = engine::run_sim(&scenario, seam::Seed::new(1), Trace::keeping_events()).unwrap();
    let liveness = output
        .summary
        .checks
        .iter()
        .find(|c| c.name == "liveness")
        .expect("phases add a liveness check");
    assert!(liveness.passed, "{}", liveness.detail);
    assert!(output.summary.requests.failed > 0, "the crash did hurt");
    let faults: Vec<String> = output
        .trace
        .events()
        .into_iter()
        .filter(|e| e.kind == seam::event::FAULT)
        .map(|e| e.detail)
        .collect();
    assert_eq!(faults.len(), 2, "{faults:?}");
    assert!(faults[1].contains("restarted=[gateway-0]"), "{faults:?}");
}

#[test]
fn liveness_fails_when_the_slo_cannot_recover() {
    let scenario = short_smoke(
        r#"
[phases]
heal_at = "1s"
converge_within = "1s"
stable_for = "1s"
slo = "p(99) < 1ms"
"#,
    );
    let output = engine::run_sim(&scenario, seam::Seed::new(1), Trace::hash_only()).unwrap();
    let liveness = output
        .summary
        .checks
        .iter()
        .find(|c| c.name == "liveness")
        .unwrap();
    assert!(!liveness.passed, "{}", liveness.detail);
}

#[test]
fn faults_name_services_groups_and_phases() {
    let scenario = short_smoke(
        r#"
[groups]
backends = ["registry", "control"]

[[faults]]
at = "1s"
relative_to = "steady"
action = "partition_oneway"
from = ["gateway"]
to = ["backends"]

[[faults]]
at = "100ms"
relative_to = "start"
duration = "1s"
action = "slow"
hosts = ["registry-1"]
factor = 3.0

[[faults]]
at = "2s"
action = "revoke"
service = "registry"
"#,
    );
    let schedule = scenario.fault_schedule(Seed::new(1));
    let warmup = Duration::from_secs(2);
    assert_eq!(schedule.faults[0].at, warmup + Duration::from_secs(1));
    assert_eq!(
        schedule.faults[0].action,
        FaultAction::PartitionOneway {
            from: vec!["gateway-0".into()],
            to: vec!["registry-0".into(), "registry-1".into(), "control".into()],
        }
    );
    assert_eq!(schedule.faults[1].at, Duration::from_millis(100));
    assert_eq!(schedule.faults[2].at, Duration::from_millis(1100));
    assert_eq!(
        schedule.faults[2].action,
        FaultAction::SlowHost {
            hosts: vec!["registry-1".into()],
            factor: 1.0
        }
    );
    // The engine hands control actions to the operator host: the trace says so.
    let output = engine::run_sim(&scenario, seam::Seed::new(1), Trace::keeping_events()).unwrap();
    let revoke = output
        .trace
        .events()
        .into_iter()
        .find(|e| e.detail.contains("revoke_identity"))
        .unwrap();
    assert!(revoke.detail.contains("applied"), "{}", revoke.detail);
}

#[test]
fn fault_mistakes_are_reported_with_their_location() {
    let base = std::fs::read_to_string(workspace().join("scenarios/library/smoke.toml")).unwrap();
    let error = |extra: &str| {
        Scenario::parse(Path::new("x.toml"), &format!("{base}{extra}"))
            .unwrap_err()
            .to_string()
    };
    let message = error("\n[[faults]]\nat = \"1s\"\naction = \"crash\"\nhosts = [\"nobody\"]\n");
    assert!(
        message.contains("\"nobody\" is not a host, service or group"),
        "{message}"
    );
    assert!(message.starts_with("x.toml:"), "{message}");
    let message = error("\n[[faults]]\nat = \"1s\"\naction = \"crash\"\nhosts = [\"loadgen\"]\n");
    assert!(message.contains("load generator"), "{message}");
    let message = error("\n[[faults]]\nat = \"1s\"\naction = \"crash\"\na = [\"gateway\"]\n");
    assert!(message.contains("does not take `a`"), "{message}");
    let message = error(
        "\n[[faults]]\nat = \"1s\"\naction = \"restart\"\nduration = \"1s\"\nhosts = [\"gateway\"]\n",
    );
    assert!(message.contains("no undo"), "{message}");
    let message = error(
        "\n[[faults]]\nat = \"1s\"\naction = \"partition\"\na = [\"gateway\"]\nb = [\"registry\"]\nbogus = 1\n",
    );
    assert!(message.contains("bogus"), "{message}");
    let message = error(
        "\n[phases]\nheal_at = \"1s\"\nconverge_within = \"1s\"\n\n[[faults]]\nat = \"1s..3s\"\naction = \"crash\"\nhosts = [\"gateway\"]\n",
    );
    assert!(message.contains("safety phase"), "{message}");
    let message = error("\n[phases]\nheal_at = \"19s\"\nconverge_within = \"5s\"\n");
    assert!(message.contains("must fit in the workload"), "{message}");
}

#[test]
fn the_command_line_explores_and_shrinks() {
    let meshsim = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_meshsim"))
            .args(args)
            .current_dir(workspace())
            .output()
            .unwrap()
    };
    let explored = meshsim(&[
        "explore",
        "scenarios/fixtures/partition-window.toml",
        "--seeds",
        "1..4",
        "--jobs",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&explored.stdout);
    assert_eq!(explored.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL seed=1"), "{stdout}");
    assert!(
        stdout.contains("reproduce  meshsim run scenarios/fixtures/partition-window.toml --seed 1"),
        "{stdout}"
    );
    assert!(stdout.contains("0 mismatches"), "{stdout}");

    let out = temp_dir("cli").join("shrunk.toml");
    let shrunk = meshsim(&[
        "shrink",
        "scenarios/fixtures/partition-window.toml",
        "--seed",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        shrunk.status.success(),
        "{}",
        String::from_utf8_lossy(&shrunk.stderr)
    );
    let replay = meshsim(&[
        "run",
        out.to_str().unwrap(),
        "--out",
        temp_dir("cli-run").to_str().unwrap(),
    ]);
    assert_eq!(replay.status.code(), Some(1));

    let passing = meshsim(&[
        "shrink",
        "scenarios/fixtures/partition-window.toml",
        "--seed",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        passing.status.code(),
        Some(2),
        "a passing seed is bad input"
    );
    let bad = meshsim(&["explore", "scenarios/library/smoke.toml", "--seeds", "9..3"]);
    assert_eq!(bad.status.code(), Some(2));
}
