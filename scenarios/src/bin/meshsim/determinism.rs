//! `meshsim check-determinism`: one seed, two runs, one verdict.

use std::process::ExitCode;

use scenarios::engine;
use scenarios::spec::Scenario;
use seam::Trace;
use sim::determinism::{Comparison, compare};

/// Width of each run's column in the side-by-side view.
const COLUMN_CHARS: usize = 64;

/// Runs `path` twice with one seed and compares the traces. Hashes first
/// (cheap); only on a mismatch are both runs repeated keeping every event,
/// to show where they part.
pub(crate) fn check(scenario: &Scenario, seed: Option<u64>) -> anyhow::Result<ExitCode> {
    let scenario = scenario.clone();
    let seed = seed.unwrap_or(scenario.seed);
    let first = engine::run_sim(&scenario, seed, Trace::hash_only())?;
    let second = engine::run_sim(&scenario, seed, Trace::hash_only())?;
    let (a, b) = (first.trace.hash_hex(), second.trace.hash_hex());
    if a == b {
        println!(
            "deterministic: {} seed={seed} trace_hash={a} ({} events)",
            scenario.name,
            first.trace.count()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "NON-DETERMINISTIC: {} seed={seed}: trace {a} vs {b}",
        scenario.name
    );
    println!("  re-running both, keeping every event, to find the first divergence…");
    let first = engine::run_sim(&scenario, seed, Trace::keeping_events())?;
    let second = engine::run_sim(&scenario, seed, Trace::keeping_events())?;
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
