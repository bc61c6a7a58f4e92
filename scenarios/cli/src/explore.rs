//! `meshsim explore`: many seeds in parallel, failures with the command
//! that reproduces each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use reports::explore::{
    ExploreHeader, ExploreSummary, ExploreVerdict, RecheckLine, ResultsWriter, SeedLine,
    SeedVerdict, write_explore_end,
};
use search::explore::{
    ExploreOptions, Outcome, Progress, ScenarioSource, SeedRecord, explore, parse_seed_range,
    parse_shard, sampled_for_recheck, shard_seeds,
};

use super::BadInput;
use crate::interrupt;

/// One seed in this many is re-run to check determinism (5 %).
const RECHECK_ONE_IN: u64 = 20;

/// Exit code of an exploration in which a seed hit an internal error.
pub(crate) const EXIT_INTERNAL_ERROR: u8 = 3;

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
    let text = std::fs::read_to_string(&request.scenario)
        .with_context(|| format!("reading {}", request.scenario.display()))?;
    let range = parse_seed_range(&request.seeds).map_err(BadInput)?;
    let shard = request
        .shard
        .as_deref()
        .map(parse_shard)
        .transpose()
        .map_err(BadInput)?;
    let recheck: Vec<u64> = range
        .clone()
        .enumerate()
        .filter(|(i, _)| sampled_for_recheck(*i, RECHECK_ONE_IN))
        .map(|(_, seed)| seed)
        .collect();
    let seeds = shard_seeds(range, shard);
    let jobs = request
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        return Err(BadInput("--jobs must be at least 1".into()).into());
    }
    let out = request.out.clone().unwrap_or_else(|| {
        PathBuf::from("results")
            .join("explore")
            .join(&source.scenario.name)
    });
    let header = ExploreHeader {
        scenario: source.scenario.name.clone(),
        scenario_path: request.scenario.display().to_string(),
        swarm: request.swarm,
        seeds: request.seeds.clone(),
        seeds_planned: seeds.len() as u64,
        shard: request.shard.clone(),
        provenance: crate::provenance::of(Some(&text)),
    };
    let mut writer = ResultsWriter::create(&out, &header)?;
    let options = ExploreOptions {
        swarm: request.swarm,
        jobs,
        recheck: recheck
            .iter()
            .copied()
            .filter(|s| seeds.contains(s))
            .collect(),
        stop: interrupt::on_signal()?,
    };
    let bar = progress_bar(&seeds, &options.recheck, request.swarm);
    // A panicking simulation is reported as a failing seed; keep the
    // default hook from printing over the progress bar.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut lines = Vec::new();
    let mut write_error = None;
    let report = explore(&source, &seeds, &options, |event| match event {
        Progress::Ran(result) => {
            if result.outcome != Outcome::Pass && !options.recheck.contains(&result.seed) {
                bar.inc_length(1);
            }
            bar.inc(1);
        }
        Progress::Invalid(..) | Progress::Rechecked(_) => bar.inc(1),
        Progress::Finished(record) => {
            let line = seed_line(&source, &request, &out, &record);
            let written = line.and_then(|line| {
                writer.append(&line)?;
                lines.push(line);
                Ok(())
            });
            if let Err(e) = written {
                // Stop: a result that cannot be recorded is an I/O failure.
                options
                    .stop
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                write_error.get_or_insert(e);
            }
        }
    });
    std::panic::set_hook(hook);
    bar.finish_and_clear();
    if let Some(error) = write_error {
        return Err(error.context(format!("recording results in {}", out.display())));
    }
    let summary = write_explore_end(&out, &header, &lines, false)?;
    print_report(&summary, &lines, &out, report.interrupted);
    Ok(exit_code(&summary, report.interrupted))
}

/// 4 interrupted, else 3 internal error, 1 a finding, 0 clean.
pub(crate) fn exit_code(summary: &ExploreSummary, interrupted: bool) -> ExitCode {
    if interrupted {
        return ExitCode::from(interrupt::EXIT_INTERRUPTED);
    }
    match summary.verdict {
        ExploreVerdict::Error => ExitCode::from(EXIT_INTERNAL_ERROR),
        ExploreVerdict::Fail => ExitCode::from(1),
        ExploreVerdict::Pass => ExitCode::SUCCESS,
    }
}

/// A finished seed as a `results.jsonl` line, with its reproduce command
/// (a swarm failure's schedule is written out first, so plain `meshsim
/// run` replays it).
fn seed_line(
    source: &ScenarioSource,
    request: &Request,
    out: &Path,
    record: &SeedRecord,
) -> anyhow::Result<SeedLine> {
    let seed = record.seed;
    let path = request.scenario.display();
    let mode = if request.swarm { " --swarm" } else { "" };
    let plain = format!("meshsim run {path} --seed {seed}");
    let recheck = record.recheck.as_ref().map(|r| RecheckLine {
        second: r.second.clone(),
        agreed: r.agreed(),
    });
    let result = match &record.first {
        Ok(result) => result,
        Err(invalid) => {
            return Ok(SeedLine {
                seed,
                verdict: SeedVerdict::Error,
                failed_checks: vec![],
                error: Some(format!(
                    "the swarm variant is not a valid scenario: {invalid}"
                )),
                trace_hash: String::new(),
                actions: 0,
                excused: vec![],
                recheck,
                wall_seconds: 0.0,
                reproduce: format!("meshsim explore {path} --seeds {seed}{mode}"),
                shrink: None,
            });
        }
    };
    let (verdict, failed_checks, error) = match &result.outcome {
        Outcome::Pass => (SeedVerdict::Pass, vec![], None),
        Outcome::Fail(checks) => (SeedVerdict::Fail, checks.clone(), None),
        Outcome::Error(error) => (SeedVerdict::Error, vec![], Some(error.clone())),
    };
    let reproduce = if request.swarm && verdict != SeedVerdict::Pass {
        let file = write_swarm_variant(source, seed, out)?;
        format!("meshsim run {} --seed {seed}", file.display())
    } else {
        plain
    };
    let shrink = (verdict == SeedVerdict::Fail)
        .then(|| format!("meshsim shrink {path} --seed {seed}{mode} --out shrunk-{seed}.toml"));
    Ok(SeedLine {
        seed,
        verdict,
        failed_checks,
        error,
        trace_hash: result.trace_hash.clone(),
        actions: result.actions,
        excused: result.excused.clone(),
        recheck,
        wall_seconds: result.wall_seconds,
        reproduce,
        shrink,
    })
}

fn progress_bar(seeds: &[u64], recheck: &[u64], swarm: bool) -> ProgressBar {
    let bar = ProgressBar::new((seeds.len() + recheck.len()) as u64);
    let style =
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} runs ({per_sec}, eta {eta})")
            .expect("static template")
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(if swarm { "explore --swarm" } else { "explore" });
    bar
}

/// Prints every failing seed with its reproduce (and shrink) command, then
/// the totals. Also used by `explore merge`.
pub(crate) fn print_report(
    summary: &ExploreSummary,
    lines: &[SeedLine],
    out: &Path,
    interrupted: bool,
) {
    use std::fmt::Write as _;
    let mut text = String::new();
    let mut lines: Vec<&SeedLine> = lines.iter().collect();
    lines.sort_by_key(|l| l.seed);
    for line in lines.iter().filter(|l| l.verdict != SeedVerdict::Pass) {
        let why = match &line.error {
            Some(error) => format!("error: {error}"),
            None => line
                .failed_checks
                .iter()
                .map(|c| format!("{} ({})", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let label = if line.verdict == SeedVerdict::Error {
            "ERROR"
        } else {
            "FAIL"
        };
        let _ = writeln!(
            text,
            "{label} seed={} actions={}: {why}",
            line.seed, line.actions
        );
        let _ = writeln!(text, "  reproduce  {}", line.reproduce);
        if let Some(shrink) = &line.shrink {
            let _ = writeln!(text, "  shrink     {shrink}");
        }
    }
    let h = &summary.header;
    for line in lines.iter().filter(|l| l.nondeterministic()) {
        let second = line.recheck.as_ref().map_or("", |r| r.second.as_str());
        let _ = writeln!(
            text,
            "NON-DETERMINISTIC seed={}: {} then {second}\n  investigate  meshsim check-determinism {} --seed {}",
            line.seed, line.trace_hash, h.scenario_path, line.seed
        );
    }
    let mode = if h.swarm { " --swarm" } else { "" };
    let _ = writeln!(
        text,
        "explored {} seeds of {}{mode}: {} passed, {} failed, {} errors; determinism: {} re-runs, {} mismatches",
        summary.seeds_finished,
        h.scenario,
        summary.passed,
        summary.failed,
        summary.errors,
        summary.rechecked,
        summary.nondeterministic.len()
    );
    if summary.seeds_missing > 0 {
        let why = if interrupted {
            "interrupted"
        } else {
            "no result"
        };
        let _ = writeln!(
            text,
            "{} planned seeds not run ({why})",
            summary.seeds_missing
        );
    }
    if h.swarm {
        let excused = lines.iter().filter(|l| !l.excused.is_empty()).count();
        let _ = writeln!(
            text,
            "(swarm runs are judged by security, ledger and liveness checks; the injected faults broke whole-run SLOs in {excused} seeds, as expected)"
        );
    }
    let _ = writeln!(text, "results    {}", out.display());
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
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

/// `meshsim explore merge DIR… --out DIR`: the shards' lines in seed order,
/// and the summary, `junit.xml` and failing-seed list one unsharded run of
/// the whole range would have written. Shards must share the scenario (by
/// hash), the seed range, swarm and the meshsim build; a seed in two
/// shards is an error.
pub(crate) fn merge(dirs: &[PathBuf], out: &Path) -> anyhow::Result<ExitCode> {
    let planned = |header: &ExploreHeader| {
        parse_seed_range(&header.seeds).map_or(header.seeds_planned, |r| r.end - r.start)
    };
    let (header, lines) =
        reports::explore::merge_explore(dirs, planned).map_err(|e| BadInput(e.to_string()))?;
    let summary = write_explore_end(out, &header, &lines, true)?;
    print_report(&summary, &lines, out, false);
    Ok(exit_code(&summary, summary.seeds_missing > 0))
}
