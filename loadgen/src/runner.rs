//! The open-loop dispatcher: sends each request at its intended time,
//! whatever happened to the ones before it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::Full;
use seam::{Net, Seed};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::LoadError;
use crate::client::{Answer, ConnectionPool, ExchangeError, Target};
use crate::plan::{CompiledOp, LoadPlan, Overflow, Protocol, Schedule, ScheduledRequest};
use crate::stats::{DROP_WARNING_START, LoadReport, record_us};
use crate::template::{RequestVars, idempotency_key};

/// The header that carries each request's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The header that carries each request's sequence number.
pub const SEQ_HEADER: &str = "x-request-seq";

/// One finished request, for observers (trace, ledger checks, live output).
/// Requests dropped at the in-flight bound were never sent and have none.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Sequence number in the schedule.
    pub seq: u64,
    /// Operation name.
    pub op: String,
    /// Intended start, from run start.
    pub intended: Duration,
    /// Latency from intended start.
    pub latency: Duration,
    /// From actual send to completion; `None` if it never got a
    /// connection before its timeout.
    pub service_time: Option<Duration>,
    /// HTTP status, if answered.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<String>,
    /// The `idempotency-key` the request carried.
    pub idempotency_key: String,
    /// The request body as sent (templates filled in).
    pub request_body: Bytes,
    /// The first [`crate::BODY_KEEP_BYTES`] of the response body (what the
    /// target acknowledged).
    pub body: Bytes,
}

/// Everything the request tasks share.
struct Shared {
    pool: ConnectionPool,
    mix: Vec<CompiledOp>,
    report: Mutex<LoadReport>,
    observer: Arc<dyn Fn(&Completion) + Send + Sync>,
    target: Target,
    protocol: Protocol,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Prefix of every idempotency key: from the seed, so a re-run with
    /// the same seed repeats the same keys.
    run_key: u64,
    template_seed: u64,
    start: Instant,
    lag_tolerance: Duration,
    request_timeout: Duration,
}

/// Runs `plan` against `target` and returns what it measured.
///
/// The schedule is drawn from `seed` first; then each request is sent at
/// its intended time, measured from it, and reported to `observer`.
pub async fn run(
    net: Arc<dyn Net>,
    target: Target,
    plan: LoadPlan,
    seed: Seed,
    observer: Arc<dyn Fn(&Completion) + Send + Sync>,
) -> Result<LoadReport, LoadError> {
    run_until(net, target, plan, seed, observer, None).await
}

/// Like [`run`], but when `stop` turns `true` the generator sends nothing
/// more, waits for what is in flight, and reports what ran (with a
/// warning saying when it stopped): a scenario's `abort_on_fail`.
pub async fn run_until(
    net: Arc<dyn Net>,
    target: Target,
    plan: LoadPlan,
    seed: Seed,
    observer: Arc<dyn Fn(&Completion) + Send + Sync>,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<LoadReport, LoadError> {
    run_stoppable(net, target, plan, seed, observer, stop, None).await
}

/// Like [`run_until`], but once stopped it waits at most `drain_max` for
/// the requests in flight (a user's Ctrl-C); the ones still unanswered are
/// abandoned, not recorded, and a warning counts them.
pub async fn run_stoppable(
    net: Arc<dyn Net>,
    target: Target,
    plan: LoadPlan,
    seed: Seed,
    observer: Arc<dyn Fn(&Completion) + Send + Sync>,
    mut stop: Option<tokio::sync::watch::Receiver<bool>>,
    drain_max: Option<Duration>,
) -> Result<LoadReport, LoadError> {
    let (schedule, mix, report) = prepare(&plan, seed)?;
    let shared = Arc::new(Shared {
        pool: ConnectionPool::new(net, target.clone(), plan.protocol, plan.connections()),
        mix,
        report: Mutex::new(report),
        observer,
        target,
        protocol: plan.protocol,
        headers: plan.headers.clone(),
        run_key: seed.child("idempotency").value(),
        template_seed: seed.child("template").value(),
        start: Instant::now(),
        lag_tolerance: plan.lag_tolerance,
        request_timeout: plan.request_timeout,
    });
    let in_flight = Arc::new(Semaphore::new(plan.in_flight_max));
    let mut tasks = tokio::task::JoinSet::new();
    let mut stopped_at = None;
    for planned in schedule.iter() {
        let due = shared.start + planned.intended;
        if Instant::now() < due && !wait_until(due, stop.as_mut()).await {
            stopped_at = Some(shared.start.elapsed());
            break;
        }
        let Some(permit) = admit(&in_flight, plan.overflow).await else {
            drop_request(&shared, planned, plan.in_flight_max);
            continue;
        };
        let in_flight_now = (plan.in_flight_max - in_flight.available_permits()) as u64;
        {
            let mut report = shared.report.lock().expect("report poisoned");
            report.in_flight_peak = report.in_flight_peak.max(in_flight_now);
        }
        seam::task::spawn_into(&mut tasks, send(shared.clone(), planned, permit));
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    let abandoned = match drain_max.filter(|_| stopped_at.is_some()) {
        Some(limit) => {
            let drained = tokio::time::timeout(limit, drain).await.is_ok();
            let left = if drained { 0 } else { tasks.len() };
            tasks.abort_all();
            left
        }
        None => {
            drain.await;
            0
        }
    };
    let report = shared.report.lock().expect("report poisoned").clone();
    Ok(finish(report, &plan, shared.start, stopped_at, abandoned))
}

/// The report of a finished run: how it ended, and what the generator
/// says about itself.
pub(crate) fn finish(
    mut report: LoadReport,
    plan: &LoadPlan,
    start: Instant,
    stopped_at: Option<Duration>,
    abandoned: usize,
) -> LoadReport {
    if abandoned > 0 {
        report.warnings.push(format!(
            "{abandoned} requests were still in flight after the stop and were abandoned"
        ));
    }
    if let Some(at) = stopped_at {
        report.warnings.push(format!(
            "stopped early at {:.3}s: {} of {} scheduled requests were sent",
            at.as_secs_f64(),
            report.overall.total(),
            report.scheduled
        ));
    }
    report.elapsed = start.elapsed();
    report.warnings.extend(saturation_warnings(&report, plan));
    report
}

/// What both dispatchers need before the first send: the schedule drawn
/// from `seed`, the mix with its templates parsed, and an empty report
/// that knows how many requests are scheduled (and any pool warning).
pub(crate) fn prepare(
    plan: &LoadPlan,
    seed: Seed,
) -> Result<(Schedule, Vec<CompiledOp>, LoadReport), LoadError> {
    let schedule = plan.schedule(seed)?;
    let mix = plan
        .mix
        .iter()
        .map(|op| op.compile())
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = LoadReport::new(plan.interval, plan.duration());
    report.scheduled = schedule.len() as u64;
    report.warnings.extend(plan.pool_warning());
    Ok((schedule, mix, report))
}

/// Sleeps until `due`; `false` if `stop` turned `true` first.
async fn wait_until(due: Instant, stop: Option<&mut tokio::sync::watch::Receiver<bool>>) -> bool {
    let Some(stop) = stop else {
        tokio::time::sleep_until(due).await;
        return true;
    };
    if *stop.borrow() {
        return false;
    }
    let stopped = tokio::select! {
        biased;
        changed = stop.wait_for(|stopped| *stopped) => changed.is_ok(),
        () = tokio::time::sleep_until(due) => return true,
    };
    if !stopped {
        // The stop signal is gone, so nothing can stop the run: just wait.
        tokio::time::sleep_until(due).await;
    }
    !stopped
}

/// A slot for one more request in flight, or `None` to drop it.
async fn admit(in_flight: &Arc<Semaphore>, overflow: Overflow) -> Option<OwnedSemaphorePermit> {
    match overflow {
        Overflow::Drop => in_flight.clone().try_acquire_owned().ok(),
        Overflow::Wait => in_flight.clone().acquire_owned().await.ok(),
    }
}

fn drop_request(shared: &Shared, planned: ScheduledRequest, in_flight_max: usize) {
    let op = &shared.mix[planned.op].name;
    let mut report = shared.report.lock().expect("report poisoned");
    record_drop(&mut report, op, planned, in_flight_max);
}

/// Counts `planned` as dropped at the in-flight bound (never sent).
pub(crate) fn record_drop(
    report: &mut LoadReport,
    op: &str,
    planned: ScheduledRequest,
    in_flight_max: usize,
) {
    report.dropped += 1;
    *report.errors.entry("dropped".into()).or_default() += 1;
    report.record(op, planned.intended, None, false);
    if report.dropped == 1 {
        let message = format!(
            "{DROP_WARNING_START} {in_flight_max} were already in flight at {:.3}s",
            planned.intended.as_secs_f64()
        );
        report.warnings.push(message);
    }
}

/// Sends one request and records what happened to it.
async fn send(shared: Arc<Shared>, planned: ScheduledRequest, _permit: OwnedSemaphorePermit) {
    let op = &shared.mix[planned.op];
    let deadline = Instant::now() + shared.request_timeout;
    let Rendered {
        key,
        path,
        body: request_body,
    } = Rendered::new(op, planned.seq, shared.run_key, shared.template_seed);
    let request = build_request(&shared, op, &path, request_body.clone(), planned.seq, &key);
    let (sent, result) = match request {
        Ok(request) => {
            let exchange = shared.pool.exchange(request, deadline).await;
            (exchange.sent, exchange.result)
        }
        Err(e) => (None, Err(e)),
    };
    let outcome = Outcome::of(shared.start, planned, sent, result);
    outcome.record(
        &mut shared.report.lock().expect("report poisoned"),
        &op.name,
        shared.lag_tolerance,
    );
    let Outcome {
        latency,
        service_time,
        status,
        body,
        error,
        ..
    } = outcome;
    (shared.observer)(&Completion {
        seq: planned.seq,
        op: op.name.clone(),
        intended: planned.intended,
        latency,
        service_time,
        status,
        error: error.map(|e| e.to_string()),
        idempotency_key: key,
        request_body,
        body,
    });
}

/// One request's idempotency key, path and body, templates filled in.
pub(crate) struct Rendered {
    pub key: String,
    pub path: Bytes,
    pub body: Bytes,
}

impl Rendered {
    pub(crate) fn new(op: &CompiledOp, seq: u64, run_key: u64, template_seed: u64) -> Rendered {
        let key = idempotency_key(run_key, seq);
        let mut vars = RequestVars::new(seq, &key, template_seed);
        // Path first, then body: the draw order is part of the seed contract.
        let path = op.path.render(&mut vars);
        let body = op.body.render(&mut vars);
        Rendered { key, path, body }
    }
}

/// What happened to one sent (or attempted) request: what both
/// dispatchers record, the same way.
pub(crate) struct Outcome {
    pub planned: ScheduledRequest,
    /// From intended start to completion.
    pub latency: Duration,
    /// From actual send to completion; `None` if it never got a
    /// connection before its timeout.
    pub service_time: Option<Duration>,
    /// Actual send minus intended start (the whole latency if never sent).
    pub lag: Duration,
    pub status: Option<u16>,
    pub body: Bytes,
    pub error: Option<ExchangeError>,
    /// When it finished.
    pub done: Instant,
}

impl Outcome {
    /// The outcome of `planned`, finished now, sent at `sent`.
    pub(crate) fn of(
        start: Instant,
        planned: ScheduledRequest,
        sent: Option<Instant>,
        result: Result<Answer, ExchangeError>,
    ) -> Outcome {
        let done = Instant::now();
        let intended_at = start + planned.intended;
        let latency = done.saturating_duration_since(intended_at);
        // A request that never got a connection waited its whole latency.
        let lag = sent.map_or(latency, |s| s.saturating_duration_since(intended_at));
        let (status, body, error) = match result {
            Ok(answer) => (Some(answer.status), answer.body, None),
            Err(error) => (None, Bytes::new(), Some(error)),
        };
        Outcome {
            planned,
            latency,
            service_time: sent.map(|s| done.saturating_duration_since(s)),
            lag,
            status,
            body,
            error,
            done,
        }
    }

    /// Adds this request to `report` under operation `op`.
    pub(crate) fn record(&self, report: &mut LoadReport, op: &str, lag_tolerance: Duration) {
        let ok = self.status.is_some_and(|s| s < 400);
        report.record(op, self.planned.intended, Some(self.latency), ok);
        if let Some(service_time) = self.service_time {
            report.sent += 1;
            record_us(&mut report.service_time_us, service_time);
        }
        record_us(&mut report.schedule_lag_us, self.lag);
        report.late += u64::from(self.lag > lag_tolerance);
        *report.statuses.entry(self.status.unwrap_or(0)).or_default() += 1;
        if let Some(error) = &self.error {
            *report.errors.entry(error.kind().into()).or_default() += 1;
        }
    }
}

fn build_request(
    shared: &Shared,
    op: &CompiledOp,
    path: &[u8],
    body: Bytes,
    seq: u64,
    key: &str,
) -> Result<Request<Full<Bytes>>, ExchangeError> {
    let path = std::str::from_utf8(path)
        .map_err(|_| ExchangeError::Request("the rendered path is not UTF-8".into()))?;
    let target = &shared.target;
    let mut builder = Request::builder().method(op.method.clone());
    builder = match shared.protocol {
        Protocol::Http1 => builder
            .uri(path)
            .header(http::header::HOST, target.authority.as_str()),
        // HTTP/2 carries scheme and authority as pseudo-headers, which
        // hyper takes from an absolute URI.
        Protocol::Http2 => builder.uri(format!("{}://{}{path}", target.scheme(), target.authority)),
    };
    builder = builder
        .header(SEQ_HEADER, seq)
        .header(IDEMPOTENCY_HEADER, key);
    for (name, value) in shared.headers.iter().chain(&op.headers) {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(body))
        .map_err(|e| ExchangeError::Request(format!("{path}: {e}")))
}

/// What the run says about the generator itself.
fn saturation_warnings(report: &LoadReport, plan: &LoadPlan) -> Vec<String> {
    let mut warnings = Vec::new();
    if report.dropped > 0 {
        warnings.push(format!(
            "{} of {} requests were dropped at the in-flight bound ({}): load the target never saw",
            report.dropped, report.scheduled, plan.in_flight_max
        ));
    }
    let sent = report.sent.max(1);
    if report.late * 100 > sent {
        warnings.push(format!(
            "the generator fell behind: {} of {} requests went out more than {} ms late (p99 lag {:.1} ms); their latency still counts from the intended start",
            report.late,
            report.sent,
            plan.lag_tolerance.as_millis(),
            report.schedule_lag_us.value_at_quantile(0.99) as f64 / 1000.0
        ));
    }
    if plan.protocol == Protocol::Http1 && !report.service_time_us.is_empty() {
        let service_s = report.service_time_us.mean() / 1e6;
        let concurrency = report.achieved_rate_per_s() * service_s;
        let connections = plan.connections();
        if concurrency > 0.9 * connections as f64 {
            warnings.push(format!(
                "connection pool saturated: {:.0} requests/s × {:.1} ms mean service time = {concurrency:.1} requests in flight on {connections} connections; use at least {} connections",
                report.achieved_rate_per_s(),
                service_s * 1e3,
                (concurrency * 2.0).ceil()
            ));
        }
    }
    warnings
}
