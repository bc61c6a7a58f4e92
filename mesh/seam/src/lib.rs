//! The seam between meshsim's components and the world they run in.
//!
//! Every mesh component (proxy, CA, control plane, apps, load generator) is
//! written once against the handful of traits here and receives a [`HostEnv`]
//! from its composition root. The root picks the implementation: [`real`] for
//! tokio sockets on loopback, or `sim::TurmoilNet` for turmoil.
//!
//! This crate owns the network ([`Net`]), the wall clock ([`Clock`]), durable
//! storage ([`Disk`]), the seed tree ([`Seed`]) and the run trace ([`Trace`]).
//!
//! It must never import turmoil or rustls, and uses hyper only for its
//! executor trait ([`task::Executor`]): it is the leaf that both
//! `mesh` and `sim` depend on, so `sim` never needs the proxy internals.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

mod clock;
mod disk;
mod env;
pub mod event;
pub mod faultnet;
pub mod hosts;
pub mod math;
mod net;
pub mod private_file;
pub mod real;
mod seed;
mod slow;
pub mod task;
mod trace;

pub use clock::{Clock, SkewHandle};
pub use disk::{DirDisk, Disk, MemDisk};
pub use env::{HostEnv, HostParts, SEED_LABEL_HOSTS, Shutdown, ShutdownTrigger};
pub use net::{BoxFuture, BoxIo, Io, LOCALHOST, Listener, Net};
pub use seed::Seed;
pub use slow::SlowHandle;
pub use trace::{Trace, TraceEvent, first_divergence};
