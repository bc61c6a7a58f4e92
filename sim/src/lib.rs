//! The deterministic world: turmoil hosts driven by one seed.
//!
//! This crate owns the simulated side of the seam ([`TurmoilNet`],
//! [`SimClock`]), the [`SimWorld`] that builds a seeded turmoil `Sim` with a
//! fixed epoch, the fault vocabulary and its executor ([`faults`]), and the
//! comparison of two runs' traces ([`determinism`]).
//!
//! It is the only crate that imports turmoil. It never imports the mesh's
//! proxy, CA or control plane: it sees components only as host futures that
//! take a [`seam::HostEnv`].

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod determinism;
pub mod faults;
mod net;
mod world;

pub use faults::{Fault, FaultAction, FaultSchedule};
pub use net::{SimClock, TurmoilNet};
pub use world::{SimConfig, SimError, SimWorld};
