//! `meshsim capacity`: the highest rate, or the fewest replicas, that meets
//! an SLO. The search lives in `search::capacity`; this is the screen
//! and the files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use search::capacity::{self, Bound, CapacityError, CapacityReport, Settings, Step, Vary};
use spec::Dur;
use spec::slo::Threshold;

use crate::BadInput;

mod plan;

/// The summary file next to `capacity.csv` and `capacity.svg`.
const SUMMARY_JSON: &str = "capacity.json";

/// Arguments of `meshsim capacity`.
#[derive(clap::Args)]
pub struct Args {
    /// Scenario file (TOML).
    scenario: PathBuf,
    /// A threshold every step must meet, in k6 syntax, e.g. 'p(99)<250ms'
    /// or 'error_rate<1%'. Repeat for several; all must hold.
    #[arg(long = "slo", required = true)]
    slos: Vec<String>,
    /// What to vary: `rate`, `replicas:SERVICE` or `concurrency:SERVICE`
    /// (a rate search at each size).
    #[arg(long, default_value = "rate")]
    vary: String,
    /// Sizes to sweep with `replicas:` or `concurrency:`, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6")]
    sizes: Vec<u32>,
    /// Run seed of every step (default: the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Every phase of every step lasts this long (e.g. 5s) instead of the
    /// scenario's durations: shorter steps, faster search.
    #[arg(long)]
    step_duration: Option<String>,
    /// Stop bisecting when failing and passing rates are this close
    /// (relative; 0.01 is 1 %).
    #[arg(long, default_value_t = 0.01)]
    precision: f64,
    /// At most this many runs per rate search.
    #[arg(long, default_value_t = 40)]
    steps_max: u32,
    /// Size the synthetic services for this peak rate (requests per
    /// second) instead of searching for the maximum rate: the replicas
    /// per service of the first plan that meets the SLO at the peak.
    #[arg(long)]
    peak: Option<f64>,
    /// Output directory (default: results/<scenario>-capacity-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn bad(message: impl ToString) -> anyhow::Error {
    BadInput(message.to_string()).into()
}

fn settings(args: &Args, seed: u64) -> anyhow::Result<Settings> {
    let slos = args
        .slos
        .iter()
        .map(|text| {
            text.parse::<Threshold>()
                .map_err(|e| bad(format!("--slo `{text}`: {e}")))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let vary: Vary = args.vary.parse().map_err(bad)?;
    let step_duration = match &args.step_duration {
        Some(text) => Some(
            text.parse::<Dur>()
                .map_err(|e| bad(format!("--step-duration: {e}")))?
                .0,
        ),
        None => None,
    };
    Ok(Settings {
        slos,
        vary,
        seed,
        step_duration,
        precision: args.precision,
        sizes: args.sizes.clone(),
        steps_max: args.steps_max,
    })
}

/// Runs the search, writes the files, prints the answer last.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scenario = crate::load(&args.scenario, &[])?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let settings = settings(&args, seed)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("{}-capacity-{seed}", scenario.name))
    });
    println!(
        "capacity  {} seed={seed} vary={} slo: {}",
        scenario.name,
        settings.vary,
        args.slos.join(", ")
    );
    println!(
        "  scenario peak rate {:.1} rps; every step is a full simulated run with this seed",
        capacity::peak_rate(&scenario)
    );
    if let Some(peak_rps) = args.peak {
        return plan::run(&scenario, &settings, peak_rps, &out);
    }
    let progress = progress_bar();
    let result = capacity::run(&scenario, &settings, &mut |step| {
        progress.inc(1);
        progress.set_message(format!(
            "last: {:.1} rps {}",
            step.offered_rps,
            if step.passed { "pass" } else { "fail" }
        ));
        progress.suspend(|| println!("{}", step_line(step)));
    });
    progress.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(CapacityError::Invalid(message)) => return Err(bad(message)),
        Err(error) => return Err(error.into()),
    };
    write_files(&out, &report)?;
    print!("{}", conclusion(&report, &out));
    Ok(if report.max_rate_rps.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A spinner with the step count; hidden when stderr is not a terminal.
pub(crate) fn progress_bar() -> ProgressBar {
    let progress = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} capacity search · runs done: {pos} · {elapsed} · {msg}",
    ) {
        progress.set_style(style);
    }
    progress.enable_steady_tick(Duration::from_millis(120));
    progress
}

fn step_line(step: &Step) -> String {
    let size = step
        .size
        .map_or(String::new(), |n| format!("size {n:>3}  "));
    let first_failure = step
        .verdicts
        .iter()
        .find(|v| v.starts_with("FAIL"))
        .map_or(String::new(), |v| format!("  {v}"));
    format!(
        "  step {:>3}  {size}×{:<8.4} {:>9.1} rps → {:>9.1} rps  p99 {:>9.2} ms  errors {:>6.2}%  {}  ({:.1}s){first_failure}",
        step.index,
        step.factor,
        step.offered_rps,
        step.throughput_rps,
        step.p99_ms,
        step.error_rate * 100.0,
        if step.passed { "pass" } else { "FAIL" },
        step.wall_seconds,
    )
}

fn write_files(out: &Path, report: &CapacityReport) -> anyhow::Result<()> {
    reports::write_capacity(out, &report.points(), &report.slo)
        .context("writing capacity.csv and capacity.svg")?;
    let path = out.join(SUMMARY_JSON);
    let json = serde_json::to_string_pretty(report).context("encoding the summary")?;
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The closing lines; the last is always "max sustainable rate under SLO = …".
fn conclusion(report: &CapacityReport, out: &Path) -> String {
    let mut text = String::new();
    let wall: f64 = report.steps.iter().map(|s| s.wall_seconds).sum();
    let _ = writeln!(
        text,
        "  runs       {} simulated runs in {wall:.1}s wall",
        report.steps.len()
    );
    if let Some((kind, service)) = report.vary.split_once(':') {
        for size in &report.sizes {
            let _ = writeln!(
                text,
                "  {kind} {:>3}  max {}  throughput {:.1} rps  at {:.1} rps: p99 {:.2} ms {}",
                size.size.unwrap_or(0),
                rate_text(size.max_rate_rps, size.bound),
                size.throughput_rps,
                report.scenario_rate_rps,
                size.p99_ms_at_scenario_rate,
                if size.passes_at_scenario_rate {
                    "pass"
                } else {
                    "FAIL"
                },
            );
        }
        match &report.usl {
            Some(fit) => {
                let n_max = fit
                    .n_max
                    .map_or("none (κ = 0)".to_owned(), |n| format!("{n:.1}"));
                let knee = fit.knee.map_or("none".to_owned(), |k| k.to_string());
                let _ = writeln!(
                    text,
                    "  usl        λ={:.1} rps  σ={:.4}  κ={:.6}  N_max={n_max}  knee at {kind}={knee}  (R²={:.3})",
                    fit.lambda, fit.sigma, fit.kappa, fit.r_squared
                );
            }
            None => {
                let _ = writeln!(
                    text,
                    "  usl        not fitted (needs three sizes with a passing rate)"
                );
            }
        }
        let fewest = report
            .fewest_size
            .map_or("none of the sizes tried".to_owned(), |n| n.to_string());
        let _ = writeln!(
            text,
            "  fewest {kind} of {service} meeting the SLO at {:.1} rps = {fewest}",
            report.scenario_rate_rps
        );
    } else if let Some(size) = report.sizes.first() {
        let failing = report
            .steps
            .iter()
            .filter(|s| !s.passed)
            .map(|s| s.offered_rps)
            .fold(f64::INFINITY, f64::min);
        if size.bound == Bound::Bracketed {
            let _ = writeln!(
                text,
                "  bracket    passes at {:.1} rps, fails at {failing:.1} rps (precision {} %)",
                size.max_rate_rps.unwrap_or(0.0),
                report.precision * 100.0
            );
        }
    }
    if let Some(bottleneck) = report.demands.first() {
        let _ = writeln!(
            text,
            "  bottleneck {} (demand {:.3} ms of {} slots per request: busy at {:.1} rps; its queue grows first)",
            bottleneck.service,
            bottleneck.demand_s * 1e3,
            bottleneck.slots,
            bottleneck.saturation_rps
        );
    }
    if let Some(note) = falling_behind_note(report) {
        let _ = writeln!(text, "  note       {note}");
    }
    let _ = writeln!(text, "  output     {}", out.display());
    let at = match (&report.vary.split_once(':'), report.max_rate_size) {
        (Some((kind, service)), Some(n)) => format!(" ({service} {kind} = {n})"),
        _ => String::new(),
    };
    let _ = writeln!(
        text,
        "max sustainable rate under SLO = {}{at}",
        rate_text(report.max_rate_rps, report.bound)
    );
    text
}

/// A warning when the answer's own step was already losing ground: a step
/// too short for the queue to grow past the SLO overstates capacity.
fn falling_behind_note(report: &CapacityReport) -> Option<String> {
    let best = report.max_rate_rps?;
    let step = report
        .steps
        .iter()
        .rfind(|s| s.passed && s.offered_rps == best && s.size == report.max_rate_size)?;
    (step.throughput_ratio < FALLING_BEHIND).then(|| {
        format!(
            "at {best:.1} rps the system served only {:.1} % of the arrivals per second; \
             longer steps (--step-duration) would let that queue grow into the SLO",
            step.throughput_ratio * 100.0
        )
    })
}

/// Throughput ratio under which a passing step is flagged as falling behind.
const FALLING_BEHIND: f64 = 0.97;

fn rate_text(rate: Option<f64>, bound: Bound) -> String {
    match (rate, bound) {
        (None, _) => "none (fails even at the lowest rate tried)".to_owned(),
        (Some(r), Bound::Bracketed) => format!("{r:.1} rps"),
        (Some(r), Bound::NeverFailed) => {
            format!("at least {r:.1} rps (still passing at the search limit)")
        }
        (Some(r), _) => format!("at least {r:.1} rps (steps ran out before the bracket closed)"),
    }
}
