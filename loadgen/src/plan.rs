//! What to send and when: the load plan, its validation, pool sizing, and
//! the schedule drawn from the seed.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use rand::Rng;
use seam::Seed;

use crate::LoadError;
use crate::arrivals::Arrival;
use crate::template::Template;

/// Requests one run may schedule: 16 bytes each, so at most 320 MB of
/// schedule. A bigger test is several runs.
pub const SCHEDULE_MAX: u64 = 20_000_000;

/// Concurrent streams assumed per HTTP/2 connection when sizing the pool
/// (servers advertise 100–250; nginx 128, Go 250).
pub const H2_STREAMS_ASSUMED: usize = 100;

/// One kind of request in the mix.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Name used in statistics and SLO scopes.
    pub name: String,
    /// HTTP method.
    pub method: Method,
    /// Path and query; may hold placeholders (see [`crate::template`]).
    pub path: String,
    /// Request body; may hold placeholders (see [`crate::template`]).
    pub body: Bytes,
    /// Headers of this operation only (e.g. a participant's bearer token).
    pub headers: Vec<(String, String)>,
    /// Relative weight in the mix (ignored by trace replay, whose rows
    /// name their operation).
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

/// HTTP version spoken to the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 keep-alive: one request per connection at a time.
    #[default]
    Http1,
    /// HTTP/2: requests multiplexed as streams (ALPN `h2` over TLS,
    /// prior knowledge over plain TCP).
    Http2,
}

/// What happens to an arrival when `in_flight_max` requests are already
/// out. Either way memory stays bounded and latency counts from the
/// intended start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop it and count it (k6's `dropped_iterations`): the schedule keeps
    /// its times, and the summary shows how much load was never offered.
    #[default]
    Drop,
    /// Hold the dispatcher until a request finishes, then catch up (as
    /// wrk2 does): every arrival is sent, late, and its lateness is in
    /// both its latency and the schedule lag.
    Wait,
}

/// What to send, when.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// Phases, back to back.
    pub phases: Vec<Phase>,
    /// The request mix.
    pub mix: Vec<Operation>,
    /// Requests in flight at most; beyond that `overflow` decides.
    pub in_flight_max: usize,
    /// Connections to the target at most; 0 sizes the pool from the peak
    /// rate × `expected_latency` (Little's law) with 2× headroom.
    pub connections_max: usize,
    /// Time-series interval.
    pub interval: Duration,
    /// A send later than this after its intended start counts as late.
    pub lag_tolerance: Duration,
    /// What to do with arrivals beyond `in_flight_max`.
    pub overflow: Overflow,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: Protocol,
    /// A request with no complete response this long after it was
    /// dispatched fails as a timeout (its latency still counts).
    pub request_timeout: Duration,
    /// The latency the pool is sized for: below rate × this many
    /// connections, requests queue for a connection (a warning says so).
    pub expected_latency: Duration,
    /// Headers added to every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Default for LoadPlan {
    fn default() -> Self {
        LoadPlan {
            phases: Vec::new(),
            mix: Vec::new(),
            in_flight_max: 10_000,
            connections_max: 0,
            interval: Duration::from_secs(1),
            lag_tolerance: Duration::from_millis(10),
            overflow: Overflow::Drop,
            protocol: Protocol::Http1,
            request_timeout: Duration::from_secs(30),
            expected_latency: Duration::from_millis(10),
            headers: Vec::new(),
        }
    }
}

/// One scheduled request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledRequest {
    /// Sequence number (its index in the schedule).
    pub seq: u64,
    /// Intended start, from the start of the run.
    pub intended: Duration,
    /// Index of its operation in the mix.
    pub op: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Planned {
    intended_ns: u64,
    op: u32,
}

/// Every request of a run, drawn from the seed before the first send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    planned: Vec<Planned>,
}

impl Schedule {
    /// Number of requests.
    pub fn len(&self) -> usize {
        self.planned.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.planned.is_empty()
    }

    /// Request `seq`, if scheduled.
    pub fn get(&self, seq: usize) -> Option<ScheduledRequest> {
        self.planned.get(seq).map(|p| ScheduledRequest {
            seq: seq as u64,
            intended: Duration::from_nanos(p.intended_ns),
            op: p.op as usize,
        })
    }

    /// The requests in intended order.
    pub fn iter(&self) -> impl Iterator<Item = ScheduledRequest> + '_ {
        (0..self.len()).filter_map(|seq| self.get(seq))
    }
}

fn invalid(message: impl Into<String>) -> LoadError {
    LoadError::InvalidPlan(message.into())
}

impl LoadPlan {
    /// Checks everything that can be checked before sending.
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.mix.is_empty() || self.mix.iter().all(|op| op.weight == 0) {
            return Err(invalid("the request mix is empty"));
        }
        if self.phases.is_empty() {
            return Err(invalid("no phases"));
        }
        for phase in &self.phases {
            phase
                .arrival
                .validate()
                .map_err(|e| invalid(format!("phase \"{}\": {e}", phase.name)))?;
            self.check_trace_operations(phase)?;
        }
        if self.interval.is_zero() || self.request_timeout.is_zero() || self.in_flight_max == 0 {
            return Err(invalid(
                "interval, request timeout and in-flight bound must be positive",
            ));
        }
        let planned_max: f64 = self
            .phases
            .iter()
            .map(|p| p.arrival.rate() * p.duration.as_secs_f64())
            .sum();
        if planned_max > SCHEDULE_MAX as f64 {
            return Err(invalid(format!(
                "the plan asks for up to {planned_max:.0} requests; one run holds at most {SCHEDULE_MAX}"
            )));
        }
        for op in &self.mix {
            op.compile()?;
        }
        Ok(())
    }

    fn check_trace_operations(&self, phase: &Phase) -> Result<(), LoadError> {
        let Some(rows) = phase.arrival.trace_rows() else {
            return Ok(());
        };
        for (i, row) in rows.rows().iter().enumerate() {
            if !self.mix.iter().any(|op| op.name == row.operation) {
                return Err(invalid(format!(
                    "phase \"{}\": trace row {} names operation \"{}\", which is not in the mix {:?}",
                    phase.name,
                    i + 1,
                    row.operation,
                    self.mix
                        .iter()
                        .map(|op| op.name.as_str())
                        .collect::<Vec<_>>()
                )));
            }
        }
        Ok(())
    }

    /// Total length of all phases.
    pub fn duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// The highest rate any phase asks for, requests per second.
    pub fn peak_rate_per_s(&self) -> f64 {
        self.phases
            .iter()
            .map(|p| p.arrival.rate())
            .fold(0.0, f64::max)
    }

    /// Connections the peak rate needs at the expected latency (Little's
    /// law: concurrency = rate × latency), at least 1. HTTP/2 divides by
    /// [`H2_STREAMS_ASSUMED`] streams per connection.
    pub fn connections_needed(&self) -> usize {
        let concurrency = self.peak_rate_per_s() * self.expected_latency.as_secs_f64();
        let per_connection = match self.protocol {
            Protocol::Http1 => 1.0,
            Protocol::Http2 => H2_STREAMS_ASSUMED as f64,
        };
        ((concurrency / per_connection).ceil() as usize).max(1)
    }

    /// The pool size the run uses: `connections_max`, or twice what is
    /// needed when it is 0.
    pub fn connections(&self) -> usize {
        match self.connections_max {
            0 => self.connections_needed() * 2,
            set => set,
        }
    }

    /// A warning when the pool cannot hold the peak rate at the expected
    /// latency; requests would then queue for connections inside the
    /// generator (oha#211), which shows as schedule lag.
    pub fn pool_warning(&self) -> Option<String> {
        let (needed, have) = (self.connections_needed(), self.connections());
        (have < needed).then(|| {
            format!(
                "connection pool too small: {:.0} requests/s × {} ms expected latency needs {needed} connections, the pool has {have}; requests will queue in the generator (use more connections)",
                self.peak_rate_per_s(),
                self.expected_latency.as_millis()
            )
        })
    }

    /// The whole schedule, drawn from `seed` before anything is sent.
    /// Arrivals come from `seed/arrivals`, operations from `seed/mix`.
    pub fn schedule(&self, seed: Seed) -> Result<Schedule, LoadError> {
        self.validate()?;
        let mut arrivals_rng = seed.child("arrivals").rng();
        let mut mix_rng = seed.child("mix").rng();
        let weight_total: u32 = self.mix.iter().map(|op| op.weight).sum();
        let mut planned = Vec::new();
        let mut phase_start = Duration::ZERO;
        for phase in &self.phases {
            let offsets = phase.arrival.schedule(phase.duration, &mut arrivals_rng);
            let trace = phase.arrival.trace_rows().map(|rows| rows.rows());
            for (i, offset) in offsets.into_iter().enumerate() {
                let op = match trace {
                    Some(rows) => self.op_named(&rows[i].operation),
                    None => pick(&self.mix, weight_total, &mut mix_rng),
                };
                planned.push(Planned {
                    intended_ns: (phase_start + offset).as_nanos() as u64,
                    op: op as u32,
                });
            }
            phase_start += phase.duration;
        }
        Ok(Schedule { planned })
    }

    fn op_named(&self, name: &str) -> usize {
        self.mix
            .iter()
            .position(|op| op.name == name)
            .expect("trace operations are validated against the mix")
    }
}

/// A weighted draw from the mix.
fn pick(mix: &[Operation], weight_total: u32, rng: &mut impl Rng) -> usize {
    let mut remaining = rng.random_range(0..weight_total);
    for (i, op) in mix.iter().enumerate() {
        if remaining < op.weight {
            return i;
        }
        remaining -= op.weight;
    }
    unreachable!("the draw is below the total weight")
}

/// An operation with its templates parsed.
pub(crate) struct CompiledOp {
    pub name: String,
    pub method: Method,
    pub path: Template,
    pub body: Template,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Operation {
    pub(crate) fn compile(&self) -> Result<CompiledOp, LoadError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            invalid(format!("operation \"{}\": {what}: {e}", self.name))
        };
        let path = Template::parse(self.path.as_bytes()).map_err(|e| bad("path", &e))?;
        let body = Template::parse(&self.body).map_err(|e| bad("body", &e))?;
        if !self.path.starts_with('/') {
            return Err(bad("path", &format!("`{}` must start with /", self.path)));
        }
        if path.is_literal() {
            self.path
                .parse::<Uri>()
                .map_err(|e| bad(&format!("path `{}`", self.path), &e))?;
        }
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|e| bad(&format!("header name `{name}`"), &e))?;
                let value =
                    HeaderValue::try_from(value.as_str()).map_err(|e| bad("header value", &e))?;
                Ok((name, value))
            })
            .collect::<Result<_, LoadError>>()?;
        Ok(CompiledOp {
            name: self.name.clone(),
            method: self.method.clone(),
            path,
            body,
            headers,
        })
    }
}
