//! The open-loop scheduler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use rand::Rng;
use seam::{Net, Seed};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::LoadError;
use crate::arrivals::Arrival;
use crate::client::{ConnectionPool, Exchange, Target};
use crate::stats::LoadReport;

/// One kind of request in the mix.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Name used in statistics and SLO scopes.
    pub name: String,
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Request body.
    pub body: Bytes,
    /// Extra request headers (e.g. `authorization`).
    pub headers: Vec<(String, String)>,
    /// Relative weight in the mix.
    pub weight: u32,
}

/// A stretch of the run with one arrival process.
#[derive(Clone, Debug)]
pub struct Phase {
    /// Name (for SLO scopes and reports).
    pub name: String,
    /// How long it lasts.
    pub duration: Duration,
    /// When requests are meant to start.
    pub arrival: Arrival,
}

/// What to send, when.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// Phases, back to back.
    pub phases: Vec<Phase>,
    /// The request mix.
    pub mix: Vec<Operation>,
    /// Requests in flight at most; beyond that new arrivals are dropped and
    /// counted (an explicit overflow policy instead of silent queueing).
    pub in_flight_max: usize,
    /// Connections to the target at most.
    pub connections_max: usize,
    /// Time-series interval.
    pub interval: Duration,
    /// A send later than this after its intended start counts as late.
    pub lag_tolerance: Duration,
}

/// One finished request, for observers (trace, live output).
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
    /// HTTP status, if answered.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<String>,
    /// The response body (empty when there was no answer).
    pub response_body: Bytes,
}

struct Planned {
    seq: u64,
    intended: Duration,
    op: usize,
}

impl LoadPlan {
    fn validate(&self) -> Result<(), LoadError> {
        if self.mix.is_empty() || self.mix.iter().all(|op| op.weight == 0) {
            return Err(LoadError::InvalidPlan("the request mix is empty".into()));
        }
        if self.phases.is_empty() {
            return Err(LoadError::InvalidPlan("no phases".into()));
        }
        Ok(())
    }

    /// Total length of all phases.
    pub fn duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// The whole schedule, drawn before anything is sent.
    fn schedule(&self, seed: Seed) -> Vec<Planned> {
        let mut arrivals_rng = seed.child("arrivals").rng();
        let mut mix_rng = seed.child("mix").rng();
        let weight_total: u32 = self.mix.iter().map(|op| op.weight).sum();
        let mut planned = Vec::new();
        let mut phase_start = Duration::ZERO;
        for phase in &self.phases {
            for offset in phase.arrival.schedule(phase.duration, &mut arrivals_rng) {
                let mut pick = mix_rng.random_range(0..weight_total);
                let op = self.mix.iter().position(|op| {
                    let hit = pick < op.weight;
                    pick = pick.saturating_sub(op.weight);
                    hit
                });
                let seq = planned.len() as u64;
                planned.push(Planned {
                    seq,
                    intended: phase_start + offset,
                    op: op.unwrap_or(0),
                });
            }
            phase_start += phase.duration;
        }
        planned
    }
}

/// Runs `plan` against `target` and returns what it measured.
pub async fn run(
    net: Arc<dyn Net>,
    target: Target,
    plan: LoadPlan,
    seed: Seed,
    observer: Arc<dyn Fn(&Completion) + Send + Sync>,
) -> Result<LoadReport, LoadError> {
    plan.validate()?;
    let schedule = plan.schedule(seed);
    let pool = Arc::new(ConnectionPool::new(
        net,
        target.clone(),
        plan.connections_max,
    ));
    let report = Arc::new(Mutex::new(LoadReport::new(plan.interval, plan.duration())));
    let in_flight = Arc::new(Semaphore::new(plan.in_flight_max.max(1)));
    let mix = Arc::new(plan.mix.clone());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for planned in schedule {
        tokio::time::sleep_until(start + planned.intended).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let op = &mix[planned.op].name;
            let mut report = report.lock().expect("report poisoned");
            report.dropped += 1;
            report.record(op, planned.intended, None, false);
            continue;
        };
        let (pool, report, mix, observer, authority) = (
            pool.clone(),
            report.clone(),
            mix.clone(),
            observer.clone(),
            target.authority.clone(),
        );
        let lag_tolerance = plan.lag_tolerance;
        tasks.spawn(async move {
            let _permit = permit;
            let op = &mix[planned.op];
            let request = build_request(op, &authority, planned.seq);
            let outcome = pool.exchange(request).await;
            let done = Instant::now();
            let latency = done.duration_since(start + planned.intended);
            let (status, error, sent, response_body) = match outcome {
                Exchange::Answered { status, sent, body } => (Some(status), None, sent, body),
                Exchange::Failed { reason, sent } => (None, Some(reason), sent, Bytes::new()),
            };
            let lag = sent.duration_since(start + planned.intended);
            let ok = status.is_some_and(|s| s < 400);
            {
                let mut report = report.lock().expect("report poisoned");
                report.record(&op.name, planned.intended, Some(latency), ok);
                let _ = report
                    .service_time_us
                    .record((done.duration_since(sent).as_micros() as u64).max(1));
                let _ = report
                    .schedule_lag_us
                    .record((lag.as_micros() as u64).max(1));
                report.late += u64::from(lag > lag_tolerance);
                *report.statuses.entry(status.unwrap_or(0)).or_default() += 1;
            }
            observer(&Completion {
                seq: planned.seq,
                op: op.name.clone(),
                intended: planned.intended,
                latency,
                status,
                error,
                response_body,
            });
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let report = report.lock().expect("report poisoned").clone();
    Ok(report)
}

fn build_request(op: &super::Operation, authority: &str, seq: u64) -> Request<Full<Bytes>> {
    let mut builder = Request::builder();
    for (name, value) in &op.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .method(op.method.clone())
        .uri(op.path.as_str())
        .header(http::header::HOST, authority)
        .header("x-request-seq", seq)
        .body(Full::new(op.body.clone()))
        .expect("operation paths are validated when the plan is built")
}
