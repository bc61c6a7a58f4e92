//! `meshsim diff BASELINE_DIR RUN_DIR`: what changed between two runs'
//! saved outputs, and whether a regression threshold was crossed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reports::Verdict;
use reports::diff::{RouteSample, RunDiff, ThresholdResult, diff_runs, route_samples};
use spec::slo::{ChangeThreshold, Measured};

use crate::BadInput;

/// `meshsim diff`'s arguments.
#[derive(clap::Args)]
pub(crate) struct DiffArgs {
    /// The baseline run's output directory (e.g. the last good run of main).
    baseline: PathBuf,
    /// The run to judge.
    run: PathBuf,
    /// Fail (exit 1) when a change crosses this, on any route or `all`:
    /// `p(99) > +10%`, `p(99.9) > +20ms`, `error_rate > +0.5pp`,
    /// `rate < -5%` (repeatable).
    #[arg(long = "fail-on", value_name = "EXPR")]
    fail_on: Vec<String>,
    /// Exit 2 unless both runs had the same scenario hash, seed and meshsim
    /// version.
    #[arg(long)]
    require_comparable: bool,
    /// Also write diff.json and report.html (the run's, with a section
    /// comparing it with the baseline) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let thresholds = args
        .fail_on
        .iter()
        .map(|text| {
            text.parse::<ChangeThreshold>()
                .map_err(|e| BadInput(format!("--fail-on '{text}': {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let read = |dir: &Path| reports::read_run(dir).map_err(|e| BadInput(e.to_string()));
    let (baseline, run) = (read(&args.baseline)?, read(&args.run)?);
    let mut diff = diff_runs(&args.baseline, &baseline, &args.run, &run);
    if args.require_comparable && !diff.comparable {
        print!("{}", diff.table());
        return Err(BadInput(
            "the runs are not comparable (--require-comparable): see the fields above".into(),
        )
        .into());
    }
    diff.thresholds = evaluate(&thresholds, &route_samples(&baseline), &route_samples(&run));
    if diff.thresholds.iter().any(|t| t.crossed) {
        diff.verdict = Verdict::Fail;
    }
    print!("{}", diff.table());
    if let Some(out) = &args.out {
        reports::diff::write_diff(out, &run, &diff)?;
        println!("output     {}", out.display());
    }
    Ok(exit_code(&diff))
}

/// Every threshold on every route either run has.
fn evaluate(
    thresholds: &[ChangeThreshold],
    baseline: &std::collections::BTreeMap<String, RouteSample>,
    run: &std::collections::BTreeMap<String, RouteSample>,
) -> Vec<ThresholdResult> {
    let mut results = Vec::new();
    for threshold in thresholds {
        for (route, now) in run {
            let Some(then) = baseline.get(route) else {
                continue;
            };
            let (a, b) = (measure(threshold, then), measure(threshold, now));
            let (crossed, change) = threshold.crossed(a, b);
            results.push(ThresholdResult {
                expression: threshold.to_string(),
                route: route.clone(),
                baseline: a,
                run: b,
                change,
                crossed,
            });
        }
    }
    results
}

/// The threshold's metric on one route, measured as SLOs measure it.
fn measure(threshold: &ChangeThreshold, sample: &RouteSample) -> f64 {
    let counts = Measured {
        total: sample.requests,
        failed: sample.errors,
        window_s: sample.seconds,
    };
    threshold.metric.measure(counts, |q| sample.latency_ms(q))
}

fn exit_code(diff: &RunDiff) -> ExitCode {
    if diff.verdict == Verdict::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
