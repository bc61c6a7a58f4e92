//! Many runs of one scenario: [`explore`] (seeds and swarm schedules),
//! [`shrink`] (the smallest file that still fails) and [`capacity`] (the
//! highest rate or fewest replicas that meet an SLO).
//!
//! May import `engine`, `spec` and everything below them. Must never import
//! the CLI.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod capacity;
pub mod explore;
pub mod shrink;
