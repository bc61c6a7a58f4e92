//! Open-loop load generation, free of coordinated omission.
//!
//! Intended start times come from a seeded [`arrivals`] process before the
//! first request is sent, and never depend on responses: when the target
//! stalls, requests keep being issued on schedule and their latency is
//! measured from the *intended* start (as wrk2 does), so the stall shows up
//! in the percentiles. The generator's own lag and drops are reported, never
//! hidden ([`LoadReport::late`], [`LoadReport::dropped`],
//! [`LoadReport::warnings`]).
//!
//! It runs over the [`seam::Net`] seam, so the same code loads a simulated
//! mesh or any real HTTP(S) URL. It must never import turmoil or the mesh.
//!
//! Layout:
//! - [`arrivals`]: constant, Poisson, ramps, rate curves (thinning),
//!   Markov-modulated bursts, trace replay;
//! - `plan`: [`LoadPlan`], its validation, pool sizing and the [`Schedule`];
//! - `runner`: the dispatcher ([`run`]) and per-request recording;
//! - `client`: the HTTP/1.1 and HTTP/2 connection pools, optional (m)TLS;
//! - `connections`: [`run_connections`], the dispatcher for real HTTP/1.1
//!   targets: one task per connection on N current-thread runtimes;
//! - `h1`: the lean HTTP/1.1 codec those connection tasks speak;
//! - `pacer`: their sub-millisecond waits for each intended start;
//! - [`template`]: `{{seq}}`, `{{rand_int:A:B}}`… in paths and bodies;
//! - `tls`: client settings from PEM files ([`TlsFiles`]);
//! - `stats`: HdrHistograms per operation and interval ([`LoadReport`]).

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod arrivals;
mod client;
mod connections;
mod h1;
mod pacer;
mod plan;
mod runner;
mod stats;
pub mod template;
mod tls;

pub use arrivals::{Arrival, ArrivalError, RampStage, RatePoint};
pub use client::{BODY_KEEP_BYTES, ExchangeError, POOL_IDLE_TIMEOUT, Target, TlsTarget};
pub use connections::run_connections;
pub use plan::{
    H2_STREAMS_ASSUMED, LoadPlan, Operation, Overflow, Phase, Protocol, SCHEDULE_MAX, Schedule,
    ScheduledRequest,
};
pub use runner::{Completion, IDEMPOTENCY_HEADER, SEQ_HEADER, run, run_stoppable, run_until};
pub use stats::{
    HISTOGRAM_SIGFIG, IntervalStats, LATENCY_MAX_US, LoadReport, OpStats, new_histogram,
};
pub use tls::{TlsFiles, TlsSetupError};

/// Errors at the load generator's boundary.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The plan cannot run (empty mix, bad arrival, bad template…).
    #[error("invalid load plan: {0}")]
    InvalidPlan(String),
}
