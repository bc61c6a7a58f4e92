//! A seeded turmoil simulation with a fixed epoch and a fault executor.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use seam::{HostEnv, MemDisk, Seed, SkewHandle, Trace};

use crate::faults::{FaultAction, FaultSchedule};
use crate::{SimClock, TurmoilNet};

/// The fixed epoch of every simulation: 2026-01-01T00:00:00Z. Never
/// `SystemTime::now()` (turmoil's default), or certificates would depend on
/// when the run happened.
pub const SIM_EPOCH_UNIX_S: u64 = 1_767_225_600;

/// How the world is built.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The run seed; turmoil's RNG and every host seed derive from it.
    pub seed: Seed,
    /// turmoil tick (time resolution of the simulation).
    pub tick: Duration,
    /// Fastest one-way link latency.
    pub link_latency_min: Duration,
    /// Slowest one-way link latency (the jitter is seeded).
    pub link_latency_max: Duration,
    /// Hard stop, in sim time.
    pub duration_limit: Duration,
    /// Socket buffer / accept backlog per socket (turmoil panics past it).
    pub tcp_capacity: usize,
}

impl SimConfig {
    /// The epoch as a wall time.
    pub fn epoch() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(SIM_EPOCH_UNIX_S)
    }
}

/// Why a simulation stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A host returned an error or turmoil hit its duration limit.
    #[error("simulation failed: {0}")]
    Turmoil(String),
}

/// A turmoil `Sim` plus the seam pieces meshsim hands to hosts.
pub struct SimWorld<'a> {
    sim: turmoil::Sim<'a>,
    config: SimConfig,
    trace: Trace,
    skews: BTreeMap<String, SkewHandle>,
    disks: BTreeMap<String, MemDisk>,
}

impl<'a> SimWorld<'a> {
    /// Builds the world. Nothing random happens before this point.
    pub fn new(config: SimConfig, trace: Trace) -> Self {
        let sim = turmoil::Builder::new()
            .rng_seed(config.seed.child("turmoil").value())
            .epoch(SimConfig::epoch())
            .tick_duration(config.tick)
            .min_message_latency(config.link_latency_min)
            .max_message_latency(config.link_latency_max)
            .simulation_duration(config.duration_limit)
            .tcp_capacity(config.tcp_capacity)
            .build();
        SimWorld {
            sim,
            config,
            trace,
            skews: BTreeMap::new(),
            disks: BTreeMap::new(),
        }
    }

    /// The environment of `host`. Valid both outside and inside the host.
    pub fn env_for(&mut self, host: &str) -> HostEnv {
        let skew = self.skews.entry(host.to_owned()).or_default().clone();
        let disk = self.disks.entry(host.to_owned()).or_default().clone();
        HostEnv {
            name: host.to_owned(),
            net: Arc::new(TurmoilNet::new(host)),
            clock: Arc::new(SimClock::new(SimConfig::epoch(), skew)),
            disk: Arc::new(disk),
            seed: self.config.seed.child("host").child(host),
            trace: self.trace.clone(),
        }
    }

    /// Adds a restartable host; `software` is re-run after a crash.
    pub fn host<F, Fut>(&mut self, name: &str, software: F)
    where
        F: Fn(HostEnv) -> Fut + 'a,
        Fut: Future<Output = Result<(), Box<dyn std::error::Error>>> + 'static,
    {
        let env = self.env_for(name);
        self.sim.host(name, move || software(env.clone()));
    }

    /// Adds a client host; the run ends when every client returns.
    pub fn client<Fut>(&mut self, name: &str, software: impl FnOnce(HostEnv) -> Fut)
    where
        Fut: Future<Output = Result<(), Box<dyn std::error::Error>>> + 'static,
    {
        let env = self.env_for(name);
        self.sim.client(name, software(env));
    }

    /// Sim time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Runs until every client finishes, applying `faults` at their times.
    pub fn run(&mut self, faults: &FaultSchedule) -> Result<(), SimError> {
        let mut pending = faults.sorted();
        pending.reverse();
        loop {
            while pending.last().is_some_and(|f| f.at <= self.sim.elapsed()) {
                let fault = pending.pop().expect("checked above");
                self.apply(&fault.action);
            }
            match self.sim.step() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => return Err(SimError::Turmoil(error.to_string())),
            }
        }
    }

    fn apply(&mut self, action: &FaultAction) {
        let at_us = self.sim.elapsed().as_micros() as u64;
        self.trace.record(at_us, "sim", "fault", action.to_string());
        match action {
            FaultAction::Partition { a, b } => a.iter().for_each(|x| {
                b.iter()
                    .for_each(|y| self.sim.partition(x.as_str(), y.as_str()))
            }),
            FaultAction::PartitionOneway { from, to } => from.iter().for_each(|x| {
                to.iter()
                    .for_each(|y| self.sim.partition_oneway(x.as_str(), y.as_str()))
            }),
            FaultAction::Repair { a, b } => a.iter().for_each(|x| {
                b.iter()
                    .for_each(|y| self.sim.repair(x.as_str(), y.as_str()))
            }),
            FaultAction::Crash { hosts } => hosts.iter().for_each(|h| self.sim.crash(h.as_str())),
            FaultAction::Restart { hosts } => {
                hosts.iter().for_each(|h| self.sim.bounce(h.as_str()))
            }
            FaultAction::LinkLatency { a, b, latency_ms } => a.iter().for_each(|x| {
                b.iter().for_each(|y| {
                    self.sim.set_link_latency(
                        x.as_str(),
                        y.as_str(),
                        Duration::from_millis(*latency_ms),
                    )
                })
            }),
            FaultAction::LinkLoss { a, b, loss } => {
                let (a, b) = (a.clone(), b.clone());
                a.iter().for_each(|x| {
                    b.iter()
                        .for_each(|y| self.sim.set_link_fail_rate(x.as_str(), y.as_str(), *loss))
                })
            }
            FaultAction::ClockSkew { host, skew_ms } => {
                self.skews.entry(host.clone()).or_default().set_ms(*skew_ms);
            }
        }
    }
}
