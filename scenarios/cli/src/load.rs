//! `meshsim load URL --rate R --duration D …`: a standalone open-loop load
//! test of any HTTP(S) endpoint, with the same generator, histograms and
//! report files as a scenario run (DESIGN §6, `mode: "real"`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::{HeaderName, HeaderValue, Method, Uri};
use loadgen::{
    Arrival, LoadPlan, LoadReport, OpStats, Operation, Overflow, Phase, Protocol, Target, TlsFiles,
};
use reports::{
    Check, CheckKind, LatencyMs, Mode, RequestCounts, RunData, Summary, Verdict, Window, WindowKind,
};
use seam::real::{RealNet, SystemClock};
use seam::{Clock, Net, Seed, SkewHandle};
use spec::Dur;
use spec::slo::{Measured, Threshold};

use crate::BadInput;

/// Name of the one operation a standalone load sends.
const OP_NAME: &str = "request";

/// Longest run the command accepts (a bound on a typo like `--duration 5h`
/// is not needed, but one on `99999999h` is).
const DURATION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// Arguments of `meshsim load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Target URL, `http://` or `https://`; its path and query are requested.
    url: String,
    /// Requests per second to offer.
    #[arg(long, allow_negative_numbers = true)]
    rate: f64,
    /// How long to offer them: 500ms, 30s, 2m…
    #[arg(long, value_parser = duration)]
    duration: Duration,
    /// Arrival process: evenly spaced or Poisson (both seeded).
    #[arg(long, value_enum, default_value_t = ArrivalArg::Constant)]
    arrival: ArrivalArg,
    /// Connections at most (HTTP/2: multiplexed connections). Default:
    /// twice rate × --expected-latency.
    #[arg(long)]
    connections: Option<usize>,
    /// Speak HTTP/2 (ALPN h2 over TLS, prior knowledge over plain TCP).
    #[arg(long)]
    http2: bool,
    /// Client certificate chain (PEM) for mTLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key of --cert (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// CA certificates (PEM) to verify the server; default: the system bundle.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// A k6-style threshold on all requests, e.g. 'p(99)<250ms',
    /// 'error_rate<0.1%'; repeatable. Any failure exits 1.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<String>,
    /// Output directory (default: results/load-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the arrival schedule and the request templates.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body; may use {{seq}}, {{rand_int:A:B}}, {{rand_choice:a|b}},
    /// {{idempotency_key}}.
    #[arg(long)]
    body: Option<String>,
    /// Extra header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Requests in flight at most; beyond it --overflow decides.
    #[arg(long, default_value_t = 10_000)]
    in_flight_max: usize,
    /// What to do with arrivals beyond --in-flight-max.
    #[arg(long, value_enum, default_value_t = OverflowArg::Drop)]
    overflow: OverflowArg,
    /// Per-request timeout, from dispatch.
    #[arg(long, value_parser = duration, default_value = "30s")]
    timeout: Duration,
    /// Latency the pool is sized for (and warned about).
    #[arg(long, value_parser = duration, default_value = "10ms")]
    expected_latency: Duration,
    /// Time-series interval.
    #[arg(long, value_parser = duration, default_value = "1s")]
    interval: Duration,
    /// A send later than this after its intended start counts as late.
    #[arg(long, value_parser = duration, default_value = "10ms")]
    lag_tolerance: Duration,
    /// Runtime worker threads (default: one per available core).
    #[arg(long)]
    threads: Option<usize>,
}

/// `--arrival`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ArrivalArg {
    /// Evenly spaced (wrk2's schedule), with a seeded phase.
    Constant,
    /// Exponential gaps (independent users).
    Poisson,
}

/// `--overflow`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum OverflowArg {
    /// Drop and count arrivals beyond the bound (k6 dropped_iterations).
    Drop,
    /// Wait for a slot, then catch up (wrk2); lateness is in the latency.
    Wait,
}

fn duration(text: &str) -> Result<Duration, String> {
    // Dur parses with Duration::from_secs_f64, which panics on overflow:
    // refuse absurd numbers before it sees them.
    let digits = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    if digits > 9 {
        return Err(format!("duration \"{text}\" is out of range"));
    }
    let parsed = text.parse::<Dur>()?.0;
    if parsed > DURATION_MAX {
        return Err(format!("duration \"{text}\" is longer than a week"));
    }
    Ok(parsed)
}

fn bad(message: impl Into<String>) -> anyhow::Error {
    BadInput(message.into()).into()
}

/// Runs `meshsim load`. Exit 0 when every threshold held, 1 when one
/// failed; bad input is an error (exit 2).
pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let thresholds = parse_thresholds(&args.thresholds)?;
    let protocol = if args.http2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let (mut target, path) = target(&args, protocol)?;
    let mut plan = plan(&args, path, protocol)?;
    // `-H 'Host: x'` names the authority (as with curl) instead of sending
    // a second Host header: how a sidecar's outbound listener is addressed.
    if let Some(index) = plan
        .headers
        .iter()
        .position(|(name, _)| name == http::header::HOST)
    {
        let (_, value) = plan.headers.remove(index);
        target.authority = value
            .to_str()
            .map_err(|_| crate::BadInput("-H Host: the value is not text".into()))?
            .to_owned();
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(format!("load-{}", args.seed)));
    if let Some(warning) = plan.pool_warning() {
        eprintln!("warning: {warning}");
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let clock = SystemClock::new(SkewHandle::default());
    let start_unix_s = clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // The dispatcher runs as a task on a worker, not on this thread: its
    // spawns then go to the worker's local queue, with no cross-thread
    // wake-up per request (one core: 2 threads would take turns).
    let run_plan = plan.clone();
    let seed = Seed::new(args.seed);
    let load = runtime.spawn(async move {
        let started = tokio::time::Instant::now();
        let net: Arc<dyn Net> = Arc::new(RealNet::standalone());
        let report = loadgen::run(net, target, run_plan, seed, Arc::new(|_: &_| {})).await;
        (report, started.elapsed().as_secs_f64())
    });
    let (report, wall_seconds) = runtime
        .block_on(load)
        .context("the load generator task failed")?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let report = report.map_err(|e| bad(e.to_string()))?;
    let checks = evaluate(&thresholds, &report);
    let summary = summary(&args, &report, checks, wall_seconds);
    let mut data = run_data(summary.clone(), &report);
    data.start_unix_s = start_unix_s;
    reports::write_all(&out, &data).context("writing the report")?;
    print(&args, &plan, &report, &summary, &out);
    Ok(if summary.verdict == Verdict::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn parse_thresholds(texts: &[String]) -> anyhow::Result<Vec<Threshold>> {
    texts
        .iter()
        .map(|text| {
            text.parse::<Threshold>()
                .map_err(|e| bad(format!("--threshold '{text}': {e}")))
        })
        .collect()
}

/// Where to connect and what to ask for, from the URL and TLS flags.
fn target(args: &LoadArgs, protocol: Protocol) -> anyhow::Result<(Target, String)> {
    let uri: Uri = args
        .url
        .parse()
        .map_err(|e| bad(format!("URL '{}': {e}", args.url)))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(bad(format!(
                "URL '{}' must start with http:// or https://",
                args.url
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| bad(format!("URL '{}' has no host", args.url)))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "user:password@ in the URL is not supported; use -H 'authorization: …'",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    if !https && (args.cert.is_some() || args.cacert.is_some()) {
        return Err(bad("--cert, --key and --cacert need an https:// URL"));
    }
    let tls = if https {
        let files = TlsFiles {
            cacert: args.cacert.clone(),
            cert: args.cert.clone(),
            key: args.key.clone(),
        };
        Some(
            files
                .target(host, protocol)
                .map_err(|e| bad(e.to_string()))?,
        )
    } else {
        None
    };
    let path = uri.path_and_query().map_or("/".into(), |p| p.to_string());
    let target = Target {
        host: host.to_owned(),
        port,
        authority: authority.as_str().to_owned(),
        tls,
    };
    Ok((target, path))
}

fn plan(args: &LoadArgs, path: String, protocol: Protocol) -> anyhow::Result<LoadPlan> {
    let arrival = match args.arrival {
        ArrivalArg::Constant => Arrival::Constant { rate: args.rate },
        ArrivalArg::Poisson => Arrival::Poisson { rate: args.rate },
    };
    arrival
        .validate()
        .map_err(|e| bad(format!("--rate: {e}")))?;
    if args.duration.is_zero() {
        return Err(bad("--duration must be longer than 0"));
    }
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| bad(format!("--method '{}' is not an HTTP method", args.method)))?;
    let headers = args
        .headers
        .iter()
        .map(|h| header(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plan = LoadPlan {
        phases: vec![Phase {
            name: "load".into(),
            duration: args.duration,
            arrival,
        }],
        mix: vec![Operation {
            name: OP_NAME.into(),
            method,
            path,
            body: Bytes::from(args.body.clone().unwrap_or_default()),
            headers: Vec::new(),
            weight: 1,
        }],
        in_flight_max: args.in_flight_max,
        connections_max: args.connections.unwrap_or(0),
        interval: args.interval,
        lag_tolerance: args.lag_tolerance,
        overflow: match args.overflow {
            OverflowArg::Drop => Overflow::Drop,
            OverflowArg::Wait => Overflow::Wait,
        },
        protocol,
        request_timeout: args.timeout,
        expected_latency: args.expected_latency,
        headers,
    };
    plan.validate().map_err(|e| bad(e.to_string()))?;
    Ok(plan)
}

fn header(text: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| bad(format!("-H '{text}': expected 'Name: value'")))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| bad(format!("-H '{text}': {e}")))?;
    let value =
        HeaderValue::from_str(value.trim()).map_err(|e| bad(format!("-H '{text}': {e}")))?;
    Ok((name, value))
}

fn latency_ms(stats: &OpStats, quantile: Option<f64>) -> f64 {
    let h = &stats.latency_us;
    if h.is_empty() {
        return 0.0;
    }
    match quantile {
        Some(q) => h.value_at_quantile(q) as f64 / 1000.0,
        None => h.mean() / 1000.0,
    }
}

/// Every threshold against all requests (dropped ones count as failed).
fn evaluate(thresholds: &[Threshold], report: &LoadReport) -> Vec<Check> {
    let stats = &report.overall;
    let counts = Measured {
        total: stats.total(),
        failed: stats.failed,
        window_s: report.duration.as_secs_f64(),
    };
    thresholds
        .iter()
        .map(|threshold| {
            let (passed, measured) = threshold.evaluate(counts, |q| latency_ms(stats, q));
            Check {
                name: threshold.to_string(),
                kind: CheckKind::Slo,
                passed,
                detail: format!(
                    "{threshold} on all: measured {} over {} requests",
                    threshold.format_measured(measured),
                    stats.total()
                ),
            }
        })
        .collect()
}

fn summary(args: &LoadArgs, report: &LoadReport, checks: Vec<Check>, wall_seconds: f64) -> Summary {
    let overall = &report.overall;
    let at = |q: f64| latency_ms(overall, Some(q));
    Summary {
        scenario: "load".into(),
        seed: args.seed,
        mode: Mode::Real,
        verdict: Summary::verdict_of(&checks),
        trace_hash: None,
        sim_seconds: wall_seconds,
        wall_seconds,
        requests: RequestCounts {
            total: overall.total(),
            ok: overall.ok,
            failed: overall.failed,
        },
        latency_ms: LatencyMs::from_quantiles(at),
        checks,
        reproduce: reproduce_command(),
        generator_late: report.late,
        config_versions: Default::default(),
        provenance: crate::provenance::of(None),
        generator_dropped: report.dropped,
    }
}

/// The command line as given, quoted for a POSIX shell.
fn reproduce_command() -> String {
    let quote = |arg: String| {
        let plain = arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,%+".contains(c));
        if plain && !arg.is_empty() {
            arg
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    };
    std::iter::once("meshsim".to_owned())
        .chain(std::env::args().skip(1).map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The report crate's view of the run (intervals by intended start).
fn run_data(summary: Summary, report: &LoadReport) -> RunData {
    let mut data = engine::output::load_data(summary, report);
    data.windows = vec![Window {
        start_s: 0.0,
        end_s: report.duration.as_secs_f64(),
        label: "load".into(),
        kind: WindowKind::Phase,
    }];
    data
}

/// The wrk2-style spectrum, then the one-screen summary. Write errors (a
/// closed pipe) are ignored: the files in `out` are the record.
fn print(
    args: &LoadArgs,
    plan: &LoadPlan,
    report: &LoadReport,
    summary: &Summary,
    out: &std::path::Path,
) {
    use std::fmt::Write as _;
    let mut text = reports::percentile_spectrum_text(&report.overall.latency_us);
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let verdict = if summary.verdict == Verdict::Pass {
        "PASS"
    } else {
        "FAIL"
    };
    let protocol = if args.http2 { "HTTP/2" } else { "HTTP/1.1" };
    let arrival = plan.phases.first().map_or("?", |p| p.arrival.kind());
    let _ = writeln!(
        text,
        "\n{verdict}  load {} ({arrival} {}/s for {:?}, seed {}, {protocol}, {} connections)",
        args.url,
        args.rate,
        args.duration,
        args.seed,
        plan.connections()
    );
    let _ = writeln!(
        text,
        "  requests   {} scheduled, {} sent, {} ok, {} failed; {:.1}/s achieved",
        report.scheduled,
        report.sent,
        report.overall.ok,
        report.overall.failed,
        report.achieved_rate_per_s()
    );
    let _ = writeln!(
        text,
        "  generator  {} late (> {:?}), {} dropped, {} in flight at most",
        report.late, plan.lag_tolerance, report.dropped, report.in_flight_peak
    );
    let l = &summary.latency_ms;
    let _ = writeln!(
        text,
        "  latency    p50 {:.2}ms  p90 {:.2}ms  p99 {:.2}ms  p99.9 {:.2}ms  max {:.2}ms  (from intended start)",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    let service = &report.service_time_us;
    let _ = writeln!(
        text,
        "  service    p50 {:.2}ms  p99 {:.2}ms  max {:.2}ms  (from actual send: what a closed-loop tool reports)",
        ms(service, 0.5),
        ms(service, 0.99),
        ms(service, 1.0)
    );
    let lag = &report.schedule_lag_us;
    let _ = writeln!(
        text,
        "  lag        p50 {:.2}ms  p99 {:.2}ms  max {:.2}ms  (actual send − intended start)",
        ms(lag, 0.5),
        ms(lag, 0.99),
        ms(lag, 1.0)
    );
    let statuses: Vec<String> = report
        .statuses
        .iter()
        .map(|(status, n)| match status {
            0 => format!("none: {n}"),
            s => format!("{s}: {n}"),
        })
        .collect();
    let _ = writeln!(text, "  statuses   {}", statuses.join(", "));
    if !report.errors.is_empty() {
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(text, "  errors     {}", errors.join(", "));
    }
    for warning in &report.warnings {
        let _ = writeln!(text, "  warning    {warning}");
    }
    for check in &summary.checks {
        let _ = writeln!(
            text,
            "  [{}] {:<28} {}",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    let _ = writeln!(text, "  output     {}", out.display());
    let _ = writeln!(text, "  reproduce  {}", summary.reproduce);
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
}
