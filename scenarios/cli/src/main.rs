//! `meshsim`: run, check and explore mesh scenarios.
//!
//! Exit codes: 0 every check passed, 1 a check failed, 2 bad input or usage.

mod calibrate;
mod capacity;
mod certs;
mod determinism;
mod explore;
mod report;
mod serve;
mod shrink;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use engine::{self, RunOutput};
use reports::{Summary, Verdict};
use seam::Trace;
use spec::{Override, Scenario};

mod load;

#[derive(Parser)]
#[command(
    name = "meshsim",
    version,
    about = "A service mesh you can run for real or in a deterministic simulation, and break on purpose."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario and check it.
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Override a value: `--set workload.peak.rate=2000` (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
        /// Run seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Run on real loopback sockets instead of the simulator.
        #[arg(long)]
        real: bool,
        /// With `--real`: multiply every scheduled time (phases, faults,
        /// check windows) by this factor, e.g. 0.5 to halve a long run.
        #[arg(long, default_value_t = 1.0, requires = "real")]
        time_scale: f64,
        /// Output directory (default: results/<scenario>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the trace as JSON Lines to this file.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Run a scenario twice with one seed and compare the traces.
    CheckDeterminism {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Override a value: `--set workload.peak.rate=2000` (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
        /// Run seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Compare one replay with the trace hash a `meshsim run` recorded
        /// in this output directory, instead of running twice.
        #[arg(long, value_name = "RUN_DIR")]
        against: Option<PathBuf>,
    },
    /// Run many seeds in parallel; print each failing seed and how to reproduce it.
    Explore {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Seeds: `A..B` (B excluded), `A..=B`, or one seed.
        #[arg(long)]
        seeds: String,
        /// Draw each seed's fault schedule within the scenario's `[swarm]` bounds.
        #[arg(long)]
        swarm: bool,
        /// Simulations at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only shard `i` of `n` of the seeds (1-based, round-robin), e.g. `2/4`.
        #[arg(long)]
        shard: Option<String>,
        /// Where swarm failures' scenario files go (default: results/explore/<scenario>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Shrink a failing seed to a minimal scenario file that still fails.
    Shrink {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// Where to write the minimal scenario.
        #[arg(long)]
        out: PathBuf,
        /// The seed failed under `explore --swarm`: shrink its swarm schedule.
        #[arg(long)]
        swarm: bool,
        /// The check to keep failing (default: the most severe failing one).
        #[arg(long)]
        check: Option<String>,
        /// Most simulations to spend.
        #[arg(long, default_value_t = 300)]
        runs_max: usize,
    },
    /// Parse and validate a scenario without running it.
    Validate {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Override a value: `--set workload.peak.rate=2000` (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
    },
    /// Open-loop load test of any HTTP(S) endpoint (exit 1 if a threshold fails).
    Load(Box<load::LoadArgs>),
    /// Search for the highest rate (or fewest replicas) that meets an SLO.
    Capacity(capacity::Args),
    /// Fit service-time distributions to measurements; print the table to paste.
    Calibrate(calibrate::Args),
    /// Rebuild every chart, report.html and junit.xml from a run's saved files.
    Report {
        /// A run's output directory.
        dir: PathBuf,
    },
    /// Start the scenario's mesh as separate processes on 127.a.b.x until interrupted.
    Up(up::UpArgs),
    /// The certificate authority of a mesh `meshsim up` prepared.
    #[command(subcommand)]
    Ca(serve::ServeCommand),
    /// The control plane of a mesh `meshsim up` prepared.
    #[command(subcommand)]
    Control(serve::ServeCommand),
    /// One workload's sidecar (`meshsim proxy SERVICE --replica N --state-dir DIR`).
    Proxy(serve::WorkloadArgs),
    /// One workload's app (`meshsim app SERVICE --replica N --state-dir DIR`).
    App(serve::WorkloadArgs),
    /// Certificates from a running mesh's CA.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
}

/// Failures that are the user's input, not the run: exit 2.
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Events kept for reports even without `--trace` (the hash covers all).
const LIFECYCLE_EVENTS: &[&str] = &[
    "cert.",
    "ca.",
    seam::event::FAULT,
    "control.",
    "discovery.",
    "proxy.",
];

fn load(path: &Path, overrides: &[Override]) -> anyhow::Result<Scenario> {
    Scenario::load_with(path, overrides).map_err(|e| BadInput(e.to_string()).into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) if error.is::<BadInput>() => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            scenario,
            set,
            seed,
            real,
            time_scale,
            out,
            trace,
        } => {
            if !(time_scale.is_finite() && time_scale > 0.0) {
                return Err(
                    BadInput(format!("--time-scale must be positive, not {time_scale}")).into(),
                );
            }
            let mode = if real { Some(time_scale) } else { None };
            run(
                load(&scenario, &set)?,
                &scenario,
                &set,
                seed,
                mode,
                out,
                trace,
            )
        }
        Command::CheckDeterminism {
            scenario,
            set,
            seed,
            against,
        } => determinism::check(&load(&scenario, &set)?, seed, against.as_deref()),
        Command::Explore {
            scenario,
            seeds,
            swarm,
            jobs,
            shard,
            out,
        } => explore::run(explore::Request {
            scenario,
            seeds,
            swarm,
            jobs,
            shard,
            out,
        }),
        Command::Shrink {
            scenario,
            seed,
            out,
            swarm,
            check,
            runs_max,
        } => shrink::run(shrink::Request {
            scenario,
            seed,
            out,
            swarm,
            check,
            runs_max,
        }),
        Command::Load(args) => load::run(*args),
        Command::Capacity(args) => capacity::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Report { dir } => report::run(&dir),
        Command::Up(args) => up::run(args),
        Command::Ca(command) => serve::ca(command),
        Command::Control(command) => serve::control(command),
        Command::Proxy(args) => serve::proxy(args),
        Command::App(args) => serve::app(args),
        Command::Certs(command) => certs::run(command),
        Command::Validate { scenario, set } => {
            let parsed = load(&scenario, &set)?;
            println!(
                "{}: ok ({} hosts)",
                scenario.display(),
                parsed.host_names().len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run(
    scenario: Scenario,
    path: &Path,
    set: &[Override],
    seed: Option<u64>,
    real_time_scale: Option<f64>,
    out: Option<PathBuf>,
    trace_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let seed = seed.unwrap_or(scenario.seed);
    let trace = if trace_file.is_some() {
        Trace::keeping_events()
    } else {
        Trace::keeping_kinds(LIFECYCLE_EVENTS)
    };
    let seed_root = seam::Seed::new(seed);
    let output = match real_time_scale {
        Some(time_scale) => engine::run_real_scaled(&scenario, seed_root, time_scale, trace)?,
        None => engine::run_sim(&scenario, seed_root, trace)?,
    };
    let mut summary = output.summary.clone();
    let sets: String = set.iter().map(|o| format!(" --set '{o}'")).collect();
    let mode = match real_time_scale {
        Some(scale) if scale != 1.0 => format!(" --real --time-scale {scale}"),
        Some(_) => " --real".to_owned(),
        None => String::new(),
    };
    summary.reproduce = format!("meshsim run {}{sets} --seed {seed}{mode}", path.display());
    let out =
        out.unwrap_or_else(|| PathBuf::from("results").join(format!("{}-{seed}", scenario.name)));
    let mut data = engine::output::run_data(&output);
    data.summary = summary.clone();
    reports::write_all(&out, &data).context("writing the report")?;
    if let Some(file) = trace_file {
        write_trace(&file, &output)?;
    }
    print_summary(&summary, &out);
    Ok(exit_code(&summary))
}

fn write_trace(file: &Path, output: &RunOutput) -> anyhow::Result<()> {
    let mut writer = std::io::BufWriter::new(
        std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?,
    );
    output
        .trace
        .write_jsonl(&mut writer)
        .with_context(|| format!("writing {}", file.display()))
}

fn exit_code(summary: &Summary) -> ExitCode {
    if summary.verdict == Verdict::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints the one-screen summary. Write errors (a closed pipe) are ignored:
/// the files in `out` are the record, the screen is a courtesy.
fn print_summary(summary: &Summary, out: &Path) {
    use std::fmt::Write as _;
    let mut text = String::new();
    let verdict = if summary.verdict == Verdict::Pass {
        "PASS"
    } else {
        "FAIL"
    };
    let _ = writeln!(
        text,
        "{verdict}  {} seed={} mode={:?}",
        summary.scenario, summary.seed, summary.mode
    );
    let _ = writeln!(
        text,
        "  requests   {} total, {} ok, {} failed (generator: {} late, {} dropped)",
        summary.requests.total,
        summary.requests.ok,
        summary.requests.failed,
        summary.generator_late,
        summary.generator_dropped
    );
    let l = &summary.latency_ms;
    let _ = writeln!(
        text,
        "  latency    p50 {:.2}ms  p90 {:.2}ms  p99 {:.2}ms  p99.9 {:.2}ms  max {:.2}ms",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    let _ = writeln!(
        text,
        "  time       {:.1}s simulated in {:.2}s wall",
        summary.sim_seconds, summary.wall_seconds
    );
    if let Some(hash) = &summary.trace_hash {
        let _ = writeln!(text, "  trace      {hash}");
    }
    for check in &summary.checks {
        let _ = writeln!(
            text,
            "  [{}] {:<28} {:?}  {}",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            check.kind,
            check.detail
        );
    }
    let _ = writeln!(text, "  output     {}", out.display());
    let _ = writeln!(text, "  reproduce  {}", summary.reproduce);
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
}
