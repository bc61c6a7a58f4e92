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
    Arrival, LoadPlan, LoadReport, OpStats, Operation, Overflow, Phase, Protocol, RampStage,
    Target, TlsFiles,
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

/// Exit code of a run stopped by SIGINT or SIGTERM, after it wrote its
/// summary and every output file (README.md, "Exit codes").
pub const EXIT_ABORTED: u8 = 4;

/// Arguments of `meshsim load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Target URL, `http://` or `https://`; its path and query are requested.
    #[arg(required_unless_present = "targets")]
    url: Option<String>,
    /// A file of targets, one per line: `[METHOD] URL` (`#` comments). Every
    /// URL shares one scheme, host and port; each request picks a line with
    /// equal weight (seeded), each line reported as its own operation.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    targets: Option<PathBuf>,
    /// Requests per second to offer (with --stage: the starting rate,
    /// default 0, as k6's startRate).
    #[arg(
        long,
        allow_negative_numbers = true,
        required_unless_present = "stages"
    )]
    rate: Option<f64>,
    /// How long to offer them: 500ms, 30s, 2m…
    #[arg(short = 'd', long, value_parser = duration,
          required_unless_present_any = ["requests", "stages"],
          conflicts_with_all = ["requests", "stages"])]
    duration: Option<Duration>,
    /// Send this many requests at --rate (instead of --duration).
    #[arg(short = 'n', long, conflicts_with = "stages")]
    requests: Option<u64>,
    /// A k6 stage, `DURATION:RATE`: the rate moves linearly to RATE over
    /// DURATION (`--stage 30s:100 --stage 1m:500`); repeatable.
    #[arg(long = "stage", value_name = "DURATION:RATE", value_parser = stage)]
    stages: Vec<RampStage>,
    /// Arrival process: evenly spaced or Poisson (both seeded).
    #[arg(long, value_enum, default_value_t = ArrivalArg::Constant)]
    arrival: ArrivalArg,
    /// Connections at most (HTTP/2: multiplexed connections). Default:
    /// twice rate × --expected-latency.
    #[arg(short = 'c', long)]
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
    /// Do not verify the server's certificate (a test server's self-signed
    /// one); the client certificate is still offered.
    #[arg(short = 'k', long, conflicts_with = "cacert")]
    insecure: bool,
    /// Dial ADDR for HOST:PORT, keeping HOST as the TLS server name and the
    /// authority (curl's --resolve); repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    resolve: Vec<String>,
    /// The name to verify the server's certificate against (default: the
    /// URL's host).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// A k6-style threshold on all requests, e.g. 'p(99)<250ms',
    /// 'error_rate<0.1%'; repeatable. Any failure exits 1.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<String>,
    /// Output directory (default: results/load-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write summary.json to FILE (k6's --summary-export).
    #[arg(long, value_name = "FILE")]
    summary_export: Option<PathBuf>,
    /// Print the summary as JSON on stdout (the text summary goes to stderr).
    #[arg(long)]
    json: bool,
    /// After Ctrl-C, how long to wait for requests in flight before the
    /// summary is written.
    #[arg(long, value_parser = duration, default_value = "5s")]
    drain_timeout: Duration,
    /// Seed of the arrival schedule and the request templates.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    method: String,
    /// Request body; may use {{seq}}, {{rand_int:A:B}}, {{rand_choice:a|b}},
    /// {{idempotency_key}}.
    #[arg(long)]
    body: Option<String>,
    /// Request body from a file (templates as for --body).
    #[arg(long, value_name = "FILE", conflicts_with = "body")]
    body_file: Option<PathBuf>,
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
    /// Threads (default: one per available core). HTTP/1.1: each thread
    /// is a runtime with its share of the connections and every N-th
    /// request of the schedule; HTTP/2: the runtime's worker threads.
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

/// `DURATION:RATE`, one k6 stage.
fn stage(text: &str) -> Result<RampStage, String> {
    let (length, rate) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("stage \"{text}\": expected DURATION:RATE, e.g. 30s:100"))?;
    let length = duration(length)?;
    let rate: f64 = rate
        .trim()
        .parse()
        .map_err(|_| format!("stage \"{text}\": \"{rate}\" is not a rate"))?;
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(format!("stage \"{text}\": the rate must be 0 or more"));
    }
    Ok(RampStage {
        duration_s: length.as_secs_f64(),
        target_rate_per_s: rate,
    })
}

fn bad(message: impl Into<String>) -> anyhow::Error {
    BadInput(message.into()).into()
}

/// Runs `meshsim load`. Exit 0 when every threshold held, 1 when one
/// failed, 4 when SIGINT or SIGTERM stopped it (after writing everything);
/// bad input is an error (exit 2).
pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let thresholds = parse_thresholds(&args.thresholds)?;
    let protocol = if args.http2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let requests = requests(&args)?;
    let (mut target, ops) = target(&args, &requests, protocol)?;
    let mut plan = plan(&args, ops, protocol)?;
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
    let clock = SystemClock::new(SkewHandle::default());
    let start_unix_s = clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // One small runtime watches for Ctrl-C (or SIGTERM), which stops the
    // offer; what ran is reported as usual.
    let signals = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("signals")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    signals.spawn(async move {
        crate::serve::terminated().await;
        eprintln!("stopping: no new requests; waiting for those in flight");
        let _ = stop_tx.send(true);
    });
    let net: Arc<dyn Net> = Arc::new(RealNet::standalone());
    let seed = Seed::new(args.seed);
    let started = tokio::time::Instant::now();
    let report = match protocol {
        Protocol::Http1 => loadgen::run_connections(
            net,
            target,
            plan.clone(),
            seed,
            threads,
            Some(stop_rx.clone()),
            args.drain_timeout,
        ),
        Protocol::Http2 => http2_load(
            net,
            target,
            &plan,
            seed,
            threads,
            &stop_rx,
            args.drain_timeout,
        )?,
    };
    let wall_seconds = started.elapsed().as_secs_f64();
    signals.shutdown_timeout(Duration::from_secs(1));
    let stopped = stop_rx;
    let aborted = *stopped.borrow();
    let report = report.map_err(|e| bad(e.to_string()))?;
    let window_s = if aborted {
        report.elapsed.as_secs_f64()
    } else {
        report.duration.as_secs_f64()
    };
    let checks = evaluate(&thresholds, &report, window_s);
    let summary = summary(&args, &report, checks, wall_seconds);
    let mut data = run_data(summary.clone(), &report, window_s);
    data.start_unix_s = start_unix_s;
    reports::write_all(&out, &data).context("writing the report")?;
    if let Some(file) = &args.summary_export {
        let json = serde_json::to_vec_pretty(&summary)?;
        std::fs::write(file, json).with_context(|| format!("writing {}", file.display()))?;
    }
    print(&args, &plan, &report, &summary, &out);
    Ok(if aborted {
        ExitCode::from(EXIT_ABORTED)
    } else if summary.verdict == Verdict::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// An HTTP/2 load: requests multiplexed over a few connections by hyper,
/// a task per request on a `threads`-worker runtime.
fn http2_load(
    net: Arc<dyn Net>,
    target: Target,
    plan: &LoadPlan,
    seed: Seed,
    threads: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> anyhow::Result<Result<LoadReport, loadgen::LoadError>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (plan, stop) = (plan.clone(), stop.clone());
    // The dispatcher runs as a task on a worker, not on this thread: its
    // spawns then go to the worker's local queue, with no cross-thread
    // wake-up per request.
    let load = runtime.spawn(async move {
        let observer = Arc::new(|_: &_| {});
        loadgen::run_stoppable(net, target, plan, seed, observer, Some(stop), Some(drain)).await
    });
    let report = runtime
        .block_on(load)
        .context("the load generator task failed")?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}

/// What to request: the URL (with --method), or every line of --targets.
fn requests(args: &LoadArgs) -> anyhow::Result<Vec<(Method, String)>> {
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| bad(format!("--method '{}' is not an HTTP method", args.method)))?;
    let Some(file) = &args.targets else {
        let url = args
            .url
            .clone()
            .ok_or_else(|| bad("give a URL or --targets"))?;
        return Ok(vec![(method, url)]);
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| bad(format!("--targets {}: {e}", file.display())))?;
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}:1", file.display(), index + 1);
        let request = match line.split_once(char::is_whitespace) {
            Some((verb, url)) => {
                let verb = Method::from_bytes(verb.as_bytes())
                    .map_err(|_| bad(format!("{}: '{verb}' is not an HTTP method", at())))?;
                (verb, url.trim().to_owned())
            }
            None => (method.clone(), line.to_owned()),
        };
        if !request.1.starts_with("http://") && !request.1.starts_with("https://") {
            return Err(bad(format!(
                "{}: expected `[METHOD] URL` with an http:// or https:// URL",
                at()
            )));
        }
        requests.push(request);
    }
    if requests.is_empty() {
        return Err(bad(format!(
            "--targets {}: no targets in the file",
            file.display()
        )));
    }
    Ok(requests)
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

/// One scheme, host and port parsed from a URL.
struct Origin {
    https: bool,
    host: String,
    port: u16,
    authority: String,
}

fn origin(url: &str) -> anyhow::Result<(Origin, String)> {
    let uri: Uri = url.parse().map_err(|e| bad(format!("URL '{url}': {e}")))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(bad(format!(
                "URL '{url}' must start with http:// or https://"
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| bad(format!("URL '{url}' has no host")))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "user:password@ in the URL is not supported; use -H 'authorization: …'",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/".into(), |p| p.to_string());
    let origin = Origin {
        https,
        host,
        port,
        authority: authority.as_str().to_owned(),
    };
    Ok((origin, path))
}

/// The address to dial for `host:port` under curl-style `--resolve`
/// entries (`HOST:PORT:ADDR`, `[v6]` allowed for ADDR).
fn resolved(entries: &[String], host: &str, port: u16) -> anyhow::Result<Option<String>> {
    for entry in entries {
        let mut parts = entry.splitn(3, ':');
        let (Some(name), Some(entry_port), Some(address)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(format!("--resolve '{entry}': expected HOST:PORT:ADDR")));
        };
        let entry_port: u16 = entry_port
            .parse()
            .map_err(|_| bad(format!("--resolve '{entry}': '{entry_port}' is not a port")))?;
        let address = address.trim_start_matches('[').trim_end_matches(']');
        if address.parse::<std::net::IpAddr>().is_err() {
            return Err(bad(format!(
                "--resolve '{entry}': '{address}' is not an IP address"
            )));
        }
        if name.eq_ignore_ascii_case(host) && entry_port == port {
            return Ok(Some(address.to_owned()));
        }
    }
    Ok(None)
}

/// Where to connect (one origin for every request) and each request's
/// method and path, from the URLs and the TLS flags.
fn target(
    args: &LoadArgs,
    requests: &[(Method, String)],
    protocol: Protocol,
) -> anyhow::Result<(Target, Vec<(Method, String)>)> {
    let mut origin_of_all: Option<Origin> = None;
    let mut ops = Vec::new();
    for (method, url) in requests {
        let (origin, path) = origin(url)?;
        if let Some(first) = &origin_of_all {
            if (first.https, &first.authority) != (origin.https, &origin.authority) {
                return Err(bad(format!(
                    "every target must share one scheme, host and port: '{url}' differs from the first"
                )));
            }
        } else {
            origin_of_all = Some(origin);
        }
        ops.push((method.clone(), path));
    }
    let origin = origin_of_all.ok_or_else(|| bad("no target"))?;
    if !origin.https
        && (args.cert.is_some()
            || args.cacert.is_some()
            || args.insecure
            || args.server_name.is_some())
    {
        return Err(bad(
            "--cert, --key, --cacert, --insecure and --server-name need an https:// URL",
        ));
    }
    let server_name = args.server_name.as_deref().unwrap_or(&origin.host);
    let tls = if origin.https {
        let files = TlsFiles {
            cacert: args.cacert.clone(),
            cert: args.cert.clone(),
            key: args.key.clone(),
        };
        let built = if args.insecure {
            files.insecure_target(server_name, protocol)
        } else {
            files.target(server_name, protocol)
        };
        Some(built.map_err(|e| bad(e.to_string()))?)
    } else {
        None
    };
    let dial = resolved(&args.resolve, &origin.host, origin.port)?.unwrap_or(origin.host);
    let target = Target {
        host: dial,
        port: origin.port,
        authority: origin.authority,
        tls,
    };
    Ok((target, ops))
}

/// The arrival process and how long it runs, from --rate with --duration
/// or --requests, or from --stage.
fn arrival(args: &LoadArgs) -> anyhow::Result<(Arrival, Duration)> {
    if !args.stages.is_empty() {
        let start_rate_per_s = args.rate.unwrap_or(0.0);
        let length_s: f64 = args.stages.iter().map(|s| s.duration_s).sum();
        let arrival = Arrival::Ramp {
            start_rate_per_s,
            stages: args.stages.clone(),
        };
        arrival
            .validate()
            .map_err(|e| bad(format!("--stage: {e}")))?;
        return Ok((arrival, Duration::from_secs_f64(length_s)));
    }
    let rate = args.rate.ok_or_else(|| bad("--rate is required"))?;
    let arrival = match args.arrival {
        ArrivalArg::Constant => Arrival::Constant { rate },
        ArrivalArg::Poisson => Arrival::Poisson { rate },
    };
    arrival
        .validate()
        .map_err(|e| bad(format!("--rate: {e}")))?;
    let length = match (args.duration, args.requests) {
        (Some(length), _) => length,
        // Evenly spaced arrivals at `rate` over n/rate seconds are exactly
        // n requests (Poisson: n on average).
        (None, Some(n)) if n > 0 => Duration::from_secs_f64(n as f64 / rate),
        (None, Some(_)) => return Err(bad("--requests must be at least 1")),
        (None, None) => return Err(bad("give --duration, --requests or --stage")),
    };
    if length > DURATION_MAX {
        return Err(bad("the run would be longer than a week"));
    }
    Ok((arrival, length))
}

fn plan(
    args: &LoadArgs,
    ops: Vec<(Method, String)>,
    protocol: Protocol,
) -> anyhow::Result<LoadPlan> {
    let (arrival, length) = arrival(args)?;
    if length.is_zero() {
        return Err(bad("--duration must be longer than 0"));
    }
    let headers = args
        .headers
        .iter()
        .map(|h| header(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = match &args.body_file {
        Some(file) => Bytes::from(
            std::fs::read(file).map_err(|e| bad(format!("--body-file {}: {e}", file.display())))?,
        ),
        None => Bytes::from(args.body.clone().unwrap_or_default()),
    };
    let single = ops.len() == 1;
    let mix = ops
        .into_iter()
        .map(|(method, path)| Operation {
            name: if single {
                OP_NAME.into()
            } else {
                format!("{method} {path}")
            },
            method,
            path,
            body: body.clone(),
            headers: Vec::new(),
            weight: 1,
        })
        .collect();
    let plan = LoadPlan {
        phases: vec![Phase {
            name: "load".into(),
            duration: length,
            arrival,
        }],
        mix,
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

/// Every threshold against all requests (dropped ones count as failed),
/// over `window_s` seconds of offered load.
fn evaluate(thresholds: &[Threshold], report: &LoadReport, window_s: f64) -> Vec<Check> {
    let stats = &report.overall;
    let counts = Measured {
        total: stats.total(),
        failed: stats.failed,
        window_s,
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
fn run_data(summary: Summary, report: &LoadReport, window_s: f64) -> RunData {
    let mut data = engine::output::load_data(summary, report);
    data.windows = vec![Window {
        start_s: 0.0,
        end_s: window_s,
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
    let what = match (&args.url, &args.targets) {
        (Some(url), _) => url.clone(),
        (None, Some(file)) => format!("{} targets from {}", plan.mix.len(), file.display()),
        (None, None) => String::new(),
    };
    let rate = args
        .rate
        .map_or_else(|| "ramping".to_owned(), |r| format!("{r}/s"));
    let _ = writeln!(
        text,
        "\n{verdict}  load {what} ({arrival} {rate} for {:?}, seed {}, {protocol}, {} connections)",
        plan.duration(),
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
    if args.json {
        // The machine-readable summary alone on stdout; people read stderr.
        let _ = std::io::stderr().write_all(text.as_bytes());
        if let Ok(mut json) = serde_json::to_vec_pretty(summary) {
            json.push(b'\n');
            let _ = std::io::stdout().write_all(&json);
        }
    } else {
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
}
