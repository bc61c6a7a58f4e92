//! `meshsim explore`: many seeds in parallel, failures with the command
//! that reproduces each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use search::explore::{
    ExploreOptions, ExploreReport, Outcome, Progress, ScenarioSource, explore, parse_seed_range,
    parse_shard, sampled_for_recheck, shard_seeds,
};

use super::BadInput;

/// One seed in this many is re-run to check determinism (5 %).
const RECHECK_ONE_IN: u64 = 20;

/// What `meshsim explore` was asked.
pub(crate) struct Request {
    pub scenario: PathBuf,
    pub seeds: String,
    pub swarm: bool,
    pub jobs: Option<usize>,
    pub shard: Option<String>,
    pub out: Option<PathBuf>,
}

pub(crate) fn run(request: Request) -> anyhow::Result<ExitCode> {
    let source = ScenarioSource::load(&request.scenario).map_err(|e| BadInput(e.to_string()))?;
    let range = parse_seed_range(&request.seeds).map_err(BadInput)?;
    let shard = request
        .shard
        .as_deref()
        .map(parse_shard)
        .transpose()
        .map_err(BadInput)?;
    let seeds = shard_seeds(range, shard);
    let jobs = request
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        return Err(BadInput("--jobs must be at least 1".into()).into());
    }
    let options = ExploreOptions {
        swarm: request.swarm,
        jobs,
        recheck_one_in: RECHECK_ONE_IN,
    };
    let bar = progress_bar(&seeds, request.swarm);
    // A panicking simulation is reported as a failing seed; keep the
    // default hook from printing over the progress bar.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let sampled: Vec<u64> = seeds
        .iter()
        .enumerate()
        .filter(|(i, _)| sampled_for_recheck(*i, RECHECK_ONE_IN))
        .map(|(_, seed)| *seed)
        .collect();
    let report = explore(&source, &seeds, &options, |event| match event {
        Progress::Ran(result) => {
            if result.outcome != Outcome::Pass && !sampled.contains(&result.seed) {
                bar.inc_length(1);
            }
            bar.inc(1);
        }
        Progress::Invalid(..) => bar.inc(1),
        Progress::Rechecked(_) => bar.inc(1),
    });
    std::panic::set_hook(hook);
    bar.finish_and_clear();
    let out = request.out.unwrap_or_else(|| {
        PathBuf::from("results")
            .join("explore")
            .join(&source.scenario.name)
    });
    print_report(&source, &request.scenario, &report, request.swarm, &out)?;
    let clean =
        report.failures().is_empty() && report.mismatches().is_empty() && report.invalid.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn progress_bar(seeds: &[u64], swarm: bool) -> ProgressBar {
    let sampled = (0..seeds.len())
        .filter(|i| sampled_for_recheck(*i, RECHECK_ONE_IN))
        .count();
    let bar = ProgressBar::new((seeds.len() + sampled) as u64);
    let style =
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} runs ({per_sec}, eta {eta})")
            .expect("static template")
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(if swarm { "explore --swarm" } else { "explore" });
    bar
}

fn print_report(
    source: &ScenarioSource,
    path: &Path,
    report: &ExploreReport,
    swarm: bool,
    out: &Path,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut text = String::new();
    let failures = report.failures();
    let mode = if swarm { " --swarm" } else { "" };
    for result in &failures {
        let why = match &result.outcome {
            Outcome::Fail(checks) => checks
                .iter()
                .map(|c| format!("{} ({})", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; "),
            Outcome::Error(error) => format!("error: {error}"),
            Outcome::Pass => unreachable!("failures only"),
        };
        let _ = writeln!(
            text,
            "FAIL seed={} actions={}: {why}",
            result.seed, result.actions
        );
        let replay = if swarm {
            let file = write_swarm_variant(source, result.seed, out)?;
            format!("meshsim run {} --seed {}", file.display(), result.seed)
        } else {
            format!("meshsim run {} --seed {}", path.display(), result.seed)
        };
        let _ = writeln!(text, "  reproduce  {replay}");
        let _ = writeln!(
            text,
            "  shrink     meshsim shrink {} --seed {}{mode} --out shrunk-{}.toml",
            path.display(),
            result.seed,
            result.seed
        );
    }
    for (seed, message) in &report.invalid {
        let _ = writeln!(text, "INVALID seed={seed}: {message}");
    }
    for mismatch in report.mismatches() {
        let _ = writeln!(
            text,
            "NON-DETERMINISTIC seed={}: {} then {}\n  investigate  meshsim check-determinism {} --seed {}",
            mismatch.seed,
            mismatch.first,
            mismatch.second,
            path.display(),
            mismatch.seed
        );
    }
    let errors = failures
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Error(_)))
        .count();
    let _ = writeln!(
        text,
        "explored {} seeds of {}{mode}: {} passed, {} failed, {} errors, {} invalid; determinism: {} re-runs, {} mismatches",
        report.results.len() + report.invalid.len(),
        source.scenario.name,
        report.results.len() - failures.len(),
        failures.len() - errors,
        errors,
        report.invalid.len(),
        report.rechecks.len(),
        report.mismatches().len()
    );
    if swarm {
        let excused = report
            .results
            .iter()
            .filter(|r| !r.excused.is_empty())
            .count();
        let _ = writeln!(
            text,
            "(swarm runs are judged by security, ledger and liveness checks; the injected faults broke whole-run SLOs in {excused} seeds, as expected)"
        );
    }
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

/// Writes the scenario with `seed`'s swarm schedule fixed into it, so that
/// plain `meshsim run` replays the failure.
fn write_swarm_variant(source: &ScenarioSource, seed: u64, out: &Path) -> anyhow::Result<PathBuf> {
    let variant = source
        .with_swarm(seed)
        .context("rebuilding the swarm schedule")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let file = out.join(format!("{}-seed-{seed}.toml", source.scenario.name));
    let header = format!(
        "# The swarm schedule of seed {seed} of {}, written out by `meshsim explore --swarm`.\n\n",
        source.path.display()
    );
    std::fs::write(&file, header + &variant.text()?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}
