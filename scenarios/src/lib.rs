//! The scenario engine, the REC reference application, the checks, and the
//! `meshsim` command line.
//!
//! This crate is the composition root: it alone knows the scenario file
//! format ([`spec`]), chooses tokio or turmoil for a run ([`engine`]), and
//! wires mesh, sim, loadgen and reports together. Nothing else imports it.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod capacity;
pub mod checks;
pub mod deploy;
pub mod engine;
pub mod explore;
pub mod ledger;
pub mod liveness;
pub mod meshchecks;
pub mod operator;
pub mod oracle;
pub mod output;
pub mod realworld;
pub mod rec;
pub mod rogue;
pub mod shrink;
pub mod slo;
pub mod spec;
pub mod topology;
