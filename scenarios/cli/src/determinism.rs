//! `meshsim check-determinism`: one seed, two runs, one verdict.

use std::path::Path;
use std::process::ExitCode;

use seam::Trace;
use sim::determinism::{Comparison, compare};
use spec::Scenario;

/// Width of each run's column in the side-by-side view.
const COLUMN_CHARS: usize = 64;

/// Replays one seed and compares trace hashes: two runs at once on two
/// threads, or, given `against` (a run's output directory), one run compared
/// with the hash that run recorded. Hashes first (cheap); only on a mismatch
/// are two runs repeated keeping every event, to show where they part.
pub(crate) fn check(
    scenario: &Scenario,
    text: &str,
    seed: Option<u64>,
    against: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let scenario = scenario.clone();
    let (seed, a, b, events) = match against {
        Some(dir) => {
            let recorded =
                reports::read_summary(dir).map_err(|e| crate::BadInput(e.to_string()))?;
            let seed = seed.unwrap_or(recorded.seed);
            if seed != recorded.seed {
                return Err(crate::BadInput(format!(
                    "{} was run with seed {}, not {seed}",
                    dir.display(),
                    recorded.seed
                ))
                .into());
            }
            refuse_other_scenario(&recorded.provenance.scenario_sha256, text, dir)?;
            let Some(a) = recorded.trace_hash else {
                return Err(crate::BadInput(format!(
                    "{} records no trace hash (a --real run?)",
                    dir.display()
                ))
                .into());
            };
            let replay = engine::run_sim(&scenario, seam::Seed::new(seed), Trace::hash_only())?;
            (seed, a, replay.trace.hash_hex(), replay.trace.count())
        }
        None => {
            let seed = seed.unwrap_or(scenario.seed);
            let ((a, events), (b, _)) = two_runs_at_once(&scenario, seed)?;
            (seed, a, b, events)
        }
    };
    if a == b {
        println!(
            "deterministic: {} seed={seed} trace_hash={a} ({events} events)",
            scenario.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "NON-DETERMINISTIC: {} seed={seed}: trace {a} vs {b}",
        scenario.name
    );
    println!("  re-running both, keeping every event, to find the first divergence…");
    let first = engine::run_sim(&scenario, seam::Seed::new(seed), Trace::keeping_events())?;
    let second = engine::run_sim(&scenario, seam::Seed::new(seed), Trace::keeping_events())?;
    match compare(
        &first.trace.hash_hex(),
        &first.trace.events(),
        &second.trace.hash_hex(),
        &second.trace.events(),
    ) {
        Comparison::Identical { hash } => println!(
            "  the re-runs agreed on {hash}: the divergence depends on something outside the seed (another run in the process, the OS)"
        ),
        Comparison::Diverged {
            divergence: None, ..
        } => println!("  the hashes differ but every kept event matches"),
        Comparison::Diverged {
            divergence: Some(divergence),
            ..
        } => {
            println!(
                "  first divergence at event #{} ({} and {} events in all):",
                divergence.index,
                first.trace.count(),
                second.trace.count()
            );
            print!("{}", divergence.side_by_side(COLUMN_CHARS));
        }
    }
    Ok(ExitCode::from(1))
}

/// A replay of another scenario (or the same file with other `--set`
/// values) would report a divergence that is no bug: refuse it (exit 2).
/// A run recorded before summaries carried the hash is compared anyway.
fn refuse_other_scenario(recorded_sha256: &str, text: &str, dir: &Path) -> anyhow::Result<()> {
    let now = spec::scenario_sha256(text);
    if recorded_sha256.is_empty() || recorded_sha256 == now {
        return Ok(());
    }
    Err(crate::BadInput(format!(
        "{} ran a different scenario: its scenario_sha256 is {recorded_sha256}, this file (after --set) hashes to {now}; \
         replay the file and --set values that run used (its summary.json's `reproduce`)",
        dir.display()
    ))
    .into())
}

/// Two runs of one seed on two threads (runs in one process are
/// independent: nothing is global). Each is (trace hash, event count).
fn two_runs_at_once(
    scenario: &Scenario,
    seed: u64,
) -> anyhow::Result<((String, u64), (String, u64))> {
    let run = || -> Result<(String, u64), engine::EngineError> {
        let output = engine::run_sim(scenario, seam::Seed::new(seed), Trace::hash_only())?;
        Ok((output.trace.hash_hex(), output.trace.count()))
    };
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(run);
        let second = run();
        (first.join(), second)
    });
    let first = first.map_err(|_| anyhow::anyhow!("the first run panicked"))?;
    Ok((first?, second?))
}
