//! Open-loop load generation, free of coordinated omission.
//!
//! Intended start times come from a seeded [`arrivals`] process before the
//! first request is sent, and never depend on responses: when the target
//! stalls, requests keep being issued on schedule and their latency is
//! measured from the *intended* start (as wrk2 does), so the stall shows up
//! in the percentiles. The generator's own lag and drops are reported, never
//! hidden ([`LoadReport::late`], [`LoadReport::dropped`]).
//!
//! It runs over the [`seam::Net`] seam, so the same code loads a simulated
//! mesh or any real HTTP(S) URL. It must never import turmoil or the mesh.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod arrivals;
mod client;
mod runner;
mod stats;

pub use arrivals::Arrival;
pub use client::{Target, TlsTarget};
pub use runner::{Completion, LoadPlan, Operation, Phase, run};
pub use stats::{IntervalStats, LoadReport, OpStats, new_histogram};

/// Errors at the load generator's boundary.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The plan cannot run (empty mix, zero duration, bad URL…).
    #[error("invalid load plan: {0}")]
    InvalidPlan(String),
}
