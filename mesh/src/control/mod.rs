//! The control plane: a versioned store of endpoints and mesh config,
//! served to proxies over an mTLS long-poll watch, and the [`Discovery`]
//! client every proxy runs.
//!
//! * Every change (an endpoint up or down, a new config) gets the next
//!   version and is appended to a log on the host's disk before it is
//!   acknowledged, so a crash and restart recovers it ([`store`]).
//! * A watcher that is behind gets the missed changes in order, or a full
//!   snapshot when the history no longer covers it. Both sides apply a
//!   change with the same [`Snapshot::apply`].
//! * Endpoints keep themselves alive with heartbeats. Missed heartbeats
//!   remove an endpoint, unless most endpoints went quiet at once: then the
//!   control plane is the one cut off, and it keeps them (Eureka's
//!   self-preservation) rather than emptying every proxy's view.
//! * A proxy keeps serving from its last good snapshot while the control
//!   plane is unreachable, and reports how stale it is.

mod discovery;
mod server;
pub mod store;

use std::collections::BTreeMap;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use discovery::{Discovery, apply_config};
pub use server::{ControlConfig, run};

use crate::SpiffeId;
use crate::config::MeshConfig;

/// How long the control plane holds a watch open waiting for a change.
pub(crate) const WATCH_HOLD: Duration = Duration::from_secs(5);

/// One reachable endpoint of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// Host name, as the [`seam::Net`] resolves it.
    pub host: String,
    /// The port of the endpoint's inbound sidecar, where mTLS is required.
    pub port: u16,
    /// The identity the endpoint must prove.
    pub identity: SpiffeId,
}

/// A workload announcing (or refreshing) itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The service whose endpoint list it joins.
    pub service: String,
    /// Where and who it is.
    pub endpoint: Endpoint,
}

/// One change to the state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Delta {
    /// A new mesh config replaces the old one.
    Config { config: MeshConfig },
    /// An endpoint joined (or changed).
    Up { service: String, endpoint: Endpoint },
    /// An endpoint left or expired.
    Down { service: String, host: String },
}

/// A change with its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The version this change produced.
    pub version: u64,
    /// What changed.
    pub delta: Delta,
}

/// The versioned state proxies watch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Monotonic version; bumps on every change, survives restarts.
    pub version: u64,
    /// Endpoints by service, in a stable order.
    pub services: BTreeMap<String, Vec<Endpoint>>,
    /// Policy and revocations.
    pub config: MeshConfig,
}

impl Snapshot {
    /// Applies one change. The control plane and every proxy use this same
    /// function, so they cannot disagree on what a change means.
    pub fn apply(&mut self, change: &Change) {
        match &change.delta {
            Delta::Config { config } => self.config = config.clone(),
            Delta::Up { service, endpoint } => {
                let endpoints = self.services.entry(service.clone()).or_default();
                endpoints.retain(|e| e.host != endpoint.host);
                endpoints.push(endpoint.clone());
                endpoints.sort();
            }
            Delta::Down { service, host } => {
                if let Some(endpoints) = self.services.get_mut(service) {
                    endpoints.retain(|e| &e.host != host);
                    if endpoints.is_empty() {
                        self.services.remove(service);
                    }
                }
            }
        }
        self.version = change.version;
    }

    /// Whether `registration` is listed exactly as given.
    pub fn lists(&self, registration: &Registration) -> bool {
        self.services
            .get(&registration.service)
            .is_some_and(|eps| eps.contains(&registration.endpoint))
    }
}

/// What a watch returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WatchUpdate {
    /// Everything (the watcher was too far behind, or new).
    Full { snapshot: Snapshot },
    /// The changes after the watcher's version, in order.
    Changes { changes: Vec<Change> },
}

impl WatchUpdate {
    /// Applies the update to `snapshot` (a copy the caller swaps in whole).
    pub fn apply_to(self, snapshot: &mut Snapshot) {
        match self {
            WatchUpdate::Full { snapshot: full } => *snapshot = full,
            WatchUpdate::Changes { changes } => changes.iter().for_each(|c| snapshot.apply(c)),
        }
    }
}
