//! The deterministic world: turmoil hosts driven by one seed.
//!
//! This crate owns the simulated side of the seam ([`TurmoilNet`],
//! [`SimClock`], [`EventNet`]), the [`SimWorld`] that builds a seeded
//! turmoil `Sim` with a fixed epoch, the event-driven [`EventWorld`] with
//! the same surface and exact time, the [`World`] trait over both, the
//! fault vocabulary and its executor ([`faults`]), the hook
//! through which control-plane actions reach the mesh ([`ControlHook`]), and
//! the comparison of two runs' traces ([`determinism`]).
//!
//! It is the only crate that imports turmoil. It never imports the mesh's
//! proxy, CA or control plane: it sees components only as host futures that
//! take a [`seam::HostEnv`].
//!
//! # The seed tree
//!
//! One `u64` run seed fixes a run. Each subsystem draws from its own child,
//! so a new draw in one never shifts another:
//!
//! | stream | label path | owner |
//! |---|---|---|
//! | network (latency jitter, loss, tokio's per-host RNG) | `turmoil` | [`SimWorld::new`] |
//! | event network (latency, jitter, loss) | `network` | [`EventWorld::new`] |
//! | tokio's RNG in the event world (`select!`) | `tokio` | [`EventWorld::new`] |
//! | per-host streams | `host/<name>/…` | [`SimWorld::env_for`] |
//! | service times | `host/<name>/service-time` | the REC apps |
//! | crypto (identity keys) | `host/<name>/identity-key/<attempt>`, `host/<name>/ca-server-key`, `ca/root`, `ca/issuer`, `bootstrap-token/<id>` | mesh |
//! | backoff jitter | `host/<name>/certify-jitter`, `host/<name>/discovery-jitter` | mesh |
//! | workload arrivals and mix | `workload/arrivals`, `workload/mix` | loadgen |
//! | fault times drawn from ranges | `faults/<index>` | the scenario's fault list |
//! | swarm schedules | `swarm/…` | exploration |
//!
//! Nothing is global: several worlds, on one thread or many, never share
//! state.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

mod control;
pub mod determinism;
mod event;
mod executor;
pub mod faults;
mod net;
mod world;
mod worlds;

pub use control::{ControlHook, ControlOutcome, NoControl};
pub use event::{
    DEFAULT_WATCHDOG, EventNet, EventWorld, HostFuture, HostResult, PIPE_BYTES,
    SEED_LABEL_EVENT_NETWORK, SEED_LABEL_TOKIO,
};
pub use faults::{ControlAction, Fault, FaultAction, FaultSchedule};
pub use net::{SimClock, TurmoilNet};
pub use world::{SEED_LABEL_HOSTS, SEED_LABEL_NETWORK, SimConfig, SimError, SimWorld};
pub use worlds::World;
