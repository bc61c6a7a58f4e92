//! What a component gets from its composition root.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{Clock, Disk, Net, Seed, SlowHandle, Trace};

/// Everything one host's components need from the world.
#[derive(Clone)]
pub struct HostEnv {
    /// The host's name (`gateway-0`, `ca`, …); also its DNS name.
    pub name: String,
    /// The network as seen from this host.
    pub net: Arc<dyn Net>,
    /// This host's clocks.
    pub clock: Arc<dyn Clock>,
    /// This host's durable storage (survives crash and restart).
    pub disk: Arc<dyn Disk>,
    /// This host's node in the seed tree.
    pub seed: Seed,
    /// The run trace.
    pub trace: Trace,
    /// Service-time factor of this host (the "slow host" fault); apps
    /// multiply their drawn service times by it.
    pub slow: SlowHandle,
}

/// The seed-tree label under which every host's seed hangs (`host/<name>`).
pub const SEED_LABEL_HOSTS: &str = "host";

/// What a world supplies for one host; [`HostEnv::new`] adds the name and
/// the host's seed.
pub struct HostParts {
    pub net: Arc<dyn Net>,
    pub clock: Arc<dyn Clock>,
    pub disk: Arc<dyn Disk>,
    pub trace: Trace,
    pub slow: SlowHandle,
}

impl HostEnv {
    /// The environment of `name` in a run of `run_seed`. Every world (both
    /// simulations, real mode, the deployed processes) builds hosts here, so
    /// the host's seed path `host/<name>` is spelled once and a host draws
    /// the same streams in every mode.
    pub fn new(name: &str, run_seed: Seed, parts: HostParts) -> HostEnv {
        HostEnv {
            name: name.to_owned(),
            net: parts.net,
            clock: parts.clock,
            disk: parts.disk,
            seed: run_seed.child(SEED_LABEL_HOSTS).child(name),
            trace: parts.trace,
            slow: parts.slow,
        }
    }

    /// Records a trace event stamped with run time and this host.
    pub fn record(&self, kind: &str, detail: impl Into<String>) {
        let at_us = self.clock.run_elapsed().as_micros() as u64;
        self.trace.record(at_us, &self.name, kind, detail);
    }

    /// As [`HostEnv::record`], building the detail only if the trace is on:
    /// for events on every request's path.
    pub fn record_with(&self, kind: &str, detail: impl FnOnce() -> String) {
        if self.trace.is_on() {
            self.record(kind, detail());
        }
    }
}

/// A shutdown signal a component polls or awaits.
#[derive(Clone)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

/// The sending side of [`Shutdown`].
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A linked trigger and signal.
    pub fn pair() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(Some(rx)))
    }

    /// A signal that never fires (in the sim, hosts stop by crashing).
    pub fn never() -> Shutdown {
        Shutdown(None)
    }

    /// Resolves once shutdown is requested (or the trigger is dropped).
    pub async fn wait(&mut self) {
        match &mut self.0 {
            Some(rx) => {
                let _ = rx.wait_for(|stop| *stop).await;
            }
            None => std::future::pending().await,
        }
    }
}

impl ShutdownTrigger {
    /// Asks every linked component to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}
