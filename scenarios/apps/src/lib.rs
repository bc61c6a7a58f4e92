//! The applications a scenario runs behind the mesh.
//!
//! Owns the REC trading application ([`rec`]), the two-tier edge/backend
//! app, the capacity model every app shares (concurrency slots, seeded
//! service times, the slow-host factor) and the independent [`ledger`]
//! checker that judges REC runs.
//!
//! May import `spec`, `mesh` (its client side), `seam`, `loadgen` (the
//! client mix) and `reports` (check records). Must never import the engine,
//! the checks crate or `sim`: an app is host software, and knows nothing of
//! the world it runs in.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod ledger;
pub mod rec;
