//! `meshsim`: run, check and explore mesh scenarios.
//!
//! Exit codes: 0 every check passed, 1 a check failed, 2 bad input or usage,
//! 3 internal error (an engine or I/O failure of the tool itself), 4
//! stopped by SIGINT/SIGTERM after writing what had finished
//! (`explore`, `load`).

mod calibrate;
mod capacity;
mod certs;
mod determinism;
mod diff;
mod explore;
mod import_isotope;
mod import_mesh;
mod interrupt;
mod logging;
mod otlp;
mod provenance;
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

/// mimalloc instead of glibc's malloc: allocation and free were ~18 % of a
/// sidecar's CPU under load, and a sidecar's heap is a quarter of glibc's
/// (BENCHMARKS.md, "Real mode"). Which addresses blocks get never reaches a
/// trace, so simulated runs replay the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `meshsim --version`: the crate version and the source revision.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MESHSIM_REVISION"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "meshsim",
    version = VERSION,
    about = "A service mesh you can run for real or in a deterministic simulation, and break on purpose."
)]
struct Cli {
    /// Log line format (on stderr).
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    /// Log filter, RUST_LOG syntax (`info,meshsim::access=debug`); default:
    /// $RUST_LOG, else `info`.
    #[arg(long = "log", global = true, value_name = "FILTER")]
    log_filter: Option<String>,
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
        /// With `--real`: every host in a pod of its own (a Linux network
        /// namespace on a bridge the run owns; needs root): partitions
        /// between pods become kernel-level cuts.
        #[arg(long, requires = "real")]
        netns: bool,
        /// With `--real`: derive every CA key, workload key and bootstrap
        /// token from the seed (reproducible, and public to anyone who
        /// knows the seed) instead of the OS CSPRNG. Loopback only.
        #[arg(long, requires = "real", conflicts_with = "netns")]
        insecure_derived_keys: bool,
        /// Output directory (default: results/<scenario>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the trace as JSON Lines to this file.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// With `--real`: also send the run's spans to this OTLP/HTTP JSON
        /// endpoint (`http://HOST:4318/v1/traces`).
        #[arg(long, value_name = "URL", requires = "real", value_parser = otlp::parse_endpoint)]
        otlp_endpoint: Option<http::Uri>,
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
    ///
    /// Exit 0 every seed passed, 1 a seed failed a check or did not replay,
    /// 3 a seed hit an internal error (panic, hung simulation), 4 stopped by
    /// SIGINT/SIGTERM after writing the seeds that finished.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Explore {
        #[command(subcommand)]
        merge: Option<ExploreCommand>,
        /// Scenario file (TOML).
        #[arg(required = true)]
        scenario: Option<PathBuf>,
        /// Seeds: `A..B` (B excluded), `A..=B`, or one seed.
        #[arg(long, required = true)]
        seeds: Option<String>,
        /// Draw each seed's fault schedule within the scenario's `[swarm]` bounds.
        #[arg(long)]
        swarm: bool,
        /// Simulations at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only shard `i` of `n` of the seeds (1-based, round-robin), e.g. `2/4`.
        #[arg(long)]
        shard: Option<String>,
        /// Output directory: `results.jsonl` (a line per seed as it
        /// finishes), `junit.xml`, `summary.json`, `failing-seeds.txt`, swarm
        /// failures' scenario files (default: results/explore/<scenario>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare a run with a baseline run (their --out directories): latency,
    /// errors, throughput per route, checks, comparability. Exit 1 when a
    /// `--fail-on` threshold is crossed.
    Diff(diff::DiffArgs),
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
    /// Translate another mesh's configuration into a scenario's terms.
    #[command(subcommand)]
    Import(ImportKind),
    /// Print a shell completion script (`meshsim completions bash > …`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout (`meshsim man | man -l -`).
    Man,
}

/// What `meshsim import` reads.
#[derive(Subcommand)]
enum ImportKind {
    /// Istio, Linkerd and Gateway API YAML → the equivalent `[mesh]` TOML.
    Mesh(import_mesh::Args),
    /// An isotope topology (istio/tools) → a runnable scenario of
    /// synthetic services.
    Isotope(import_isotope::Args),
}

/// `meshsim explore merge`.
#[derive(Subcommand)]
enum ExploreCommand {
    /// Merge shards' output directories into one summary, junit.xml and
    /// failing-seed list (exit codes as for explore; 4 if seeds are missing).
    Merge {
        /// The shards' `--out` directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged files go.
        #[arg(long)]
        out: PathBuf,
    },
}

impl Command {
    /// Whether the command's events happen inside a simulation.
    fn timeline(&self) -> logging::Timeline {
        match self {
            Command::Run { real: true, .. } => logging::Timeline::Real,
            Command::Run { .. }
            | Command::CheckDeterminism { .. }
            | Command::Explore { .. }
            | Command::Shrink { .. }
            | Command::Capacity(_) => logging::Timeline::Simulated,
            _ => logging::Timeline::Real,
        }
    }
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
    load_as_run(path, overrides).map(|(scenario, _)| scenario)
}

/// The scenario and its text as run (after `--set`), for provenance.
/// Warnings from imported mesh YAML go to stderr once, here.
fn load_as_run(path: &Path, overrides: &[Override]) -> anyhow::Result<(Scenario, String)> {
    let (scenario, text) =
        Scenario::load_as_run(path, overrides).map_err(|e| BadInput(e.to_string()))?;
    for warning in scenario.import_warnings() {
        eprintln!("warning: {warning}");
    }
    Ok((scenario, text))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let timeline = cli.command.timeline();
    if let Err(error) = logging::install(cli.log_format, cli.log_filter.as_deref(), timeline) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) if error.is::<BadInput>() => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(3)
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
            netns,
            insecure_derived_keys,
            out,
            trace,
            otlp_endpoint,
        } => {
            if !(time_scale.is_finite() && time_scale > 0.0) {
                return Err(
                    BadInput(format!("--time-scale must be positive, not {time_scale}")).into(),
                );
            }
            if netns && let Err(why) = engine::netns::available() {
                // Asked for kernel cuts: a loopback run would not test them.
                return Err(BadInput(format!("--netns: {why}")).into());
            }
            let keys = if insecure_derived_keys {
                eprintln!("{}", engine::deploy::DERIVED_KEYS_WARNING);
                mesh::KeyMode::Derived
            } else {
                mesh::KeyMode::Os
            };
            let mode = real.then_some(engine::RealOptions {
                time_scale,
                netns,
                keys,
            });
            run(
                load_as_run(&scenario, &set)?,
                &scenario,
                &set,
                seed,
                mode,
                out,
                Exports {
                    trace_file: trace,
                    otlp_endpoint,
                },
            )
        }
        Command::CheckDeterminism {
            scenario,
            set,
            seed,
            against,
        } => {
            let (parsed, text) = load_as_run(&scenario, &set)?;
            determinism::check(&parsed, &text, seed, against.as_deref())
        }
        Command::Explore {
            merge: Some(ExploreCommand::Merge { dirs, out }),
            ..
        } => explore::merge(&dirs, &out),
        Command::Explore {
            merge: None,
            scenario,
            seeds,
            swarm,
            jobs,
            shard,
            out,
        } => explore::run(explore::Request {
            scenario: scenario.context("explore needs a scenario file")?,
            seeds: seeds.context("explore needs --seeds")?,
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
        Command::Diff(args) => diff::run(args),
        Command::Capacity(args) => capacity::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Report { dir } => report::run(&dir),
        Command::Up(args) => up::run(args),
        Command::Ca(command) => serve::ca(command),
        Command::Control(command) => serve::control(command),
        Command::Proxy(args) => serve::proxy(args),
        Command::App(args) => serve::app(args),
        Command::Certs(command) => certs::run(command),
        Command::Import(ImportKind::Mesh(args)) => import_mesh::run(args),
        Command::Import(ImportKind::Isotope(args)) => import_isotope::run(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "meshsim", &mut script);
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(&script);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            let mut roff = Vec::new();
            page.render(&mut roff).context("rendering the man page")?;
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(&roff);
            Ok(ExitCode::SUCCESS)
        }
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

/// The flags that repeat a real run.
fn real_flags(options: engine::RealOptions) -> String {
    let mut flags = " --real".to_owned();
    if options.time_scale != 1.0 {
        flags.push_str(&format!(" --time-scale {}", options.time_scale));
    }
    if options.netns {
        flags.push_str(" --netns");
    }
    if options.keys == mesh::KeyMode::Derived {
        flags.push_str(" --insecure-derived-keys");
    }
    flags
}

/// Where a run's trace and spans go besides its output directory.
struct Exports {
    /// `--trace FILE`: every event, JSON Lines.
    trace_file: Option<PathBuf>,
    /// `--otlp-endpoint URL`: the spans, OTLP/HTTP JSON.
    otlp_endpoint: Option<http::Uri>,
}

fn run(
    (scenario, text): (Scenario, String),
    path: &Path,
    set: &[Override],
    seed: Option<u64>,
    real: Option<engine::RealOptions>,
    out: Option<PathBuf>,
    exports: Exports,
) -> anyhow::Result<ExitCode> {
    let Exports {
        trace_file,
        otlp_endpoint,
    } = exports;
    let seed = seed.unwrap_or(scenario.seed);
    let trace = if trace_file.is_some() {
        Trace::keeping_events()
    } else {
        Trace::keeping_kinds(LIFECYCLE_EVENTS)
    };
    let seed_root = seam::Seed::new(seed);
    let output = match real {
        Some(options) => engine::run_real_with(&scenario, seed_root, options, trace)?,
        None => engine::run_sim(&scenario, seed_root, trace)?,
    };
    let mut summary = output.summary.clone();
    let sets: String = set.iter().map(|o| format!(" --set '{o}'")).collect();
    let mode = match real {
        Some(options) => real_flags(options),
        None => String::new(),
    };
    summary.reproduce = format!("meshsim run {}{sets} --seed {seed}{mode}", path.display());
    summary.provenance = provenance::of(Some(&text));
    let out =
        out.unwrap_or_else(|| PathBuf::from("results").join(format!("{}-{seed}", scenario.name)));
    let mut data = engine::output::run_data(&output);
    data.summary = summary.clone();
    reports::write_all(&out, &data).context("writing the report")?;
    engine::output::write_telemetry(&out, &output).context("writing metrics and traces")?;
    if let Some(endpoint) = &otlp_endpoint {
        otlp::export(endpoint, &engine::output::otlp_document(&output))?;
    }
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
