//! A seeded turmoil simulation with a fixed epoch and a fault executor.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use seam::{HostEnv, HostParts, Seed, Trace};

use crate::control::{ControlHook, NoControl};
use crate::executor::{Executor, Target};
use crate::faults::{FaultAction, FaultSchedule};
use crate::{SimClock, TurmoilNet};

/// The fixed epoch of every simulation: 2026-01-01T00:00:00Z. Never
/// `SystemTime::now()` (turmoil's default), or certificates would depend on
/// when the run happened.
pub const SIM_EPOCH_UNIX_S: u64 = 1_767_225_600;

/// The seed-tree label of turmoil's own RNG (link latency draws, loss).
pub const SEED_LABEL_NETWORK: &str = "turmoil";
/// The seed-tree label under which every host's seed hangs (`host/<name>`).
pub use seam::SEED_LABEL_HOSTS;

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
    /// A host returned an error or panicked, or the run hit its duration
    /// limit (the name is historic: the event world reports these too).
    #[error("simulation failed: {0}")]
    Turmoil(String),
    /// Simulated time froze: a host blocked or never yielded (event world).
    #[error("watchdog: host \"{host}\": {reason}")]
    Watchdog {
        /// The host being polled (or polled most) when time froze.
        host: String,
        /// What the watchdog saw.
        reason: String,
    },
    /// The fault schedule names a host the world does not have, or crashes
    /// a client (turmoil can only crash hosts).
    #[error("invalid fault at {at:?} ({action}): {reason}")]
    BadFault {
        /// Sim time of the fault.
        at: Duration,
        /// The action, as displayed in the trace.
        action: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A turmoil `Sim` plus the seam pieces meshsim hands to hosts.
pub struct SimWorld<'a> {
    sim: turmoil::Sim<'a>,
    config: SimConfig,
    trace: Trace,
    /// Hosts, clients, per-host handles and the faults in force.
    executor: Executor,
}

impl<'a> SimWorld<'a> {
    /// Builds the world. Nothing random happens before this point.
    pub fn new(config: SimConfig, trace: Trace) -> Self {
        let sim = turmoil::Builder::new()
            .rng_seed(config.seed.child(SEED_LABEL_NETWORK).value())
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
            executor: Executor::default(),
        }
    }

    /// The environment of `host`. Valid both outside and inside the host.
    pub fn env_for(&mut self, host: &str) -> HostEnv {
        let (skew, slow, disk) = self.executor.handles.of(host);
        let parts = HostParts {
            net: Arc::new(TurmoilNet::new(host)),
            clock: Arc::new(SimClock::new(SimConfig::epoch(), skew)),
            disk: Arc::new(disk),
            trace: self.trace.clone(),
            slow,
        };
        HostEnv::new(host, self.config.seed, parts)
    }

    /// Adds a restartable host; `software` is re-run after a crash.
    pub fn host<F, Fut>(&mut self, name: &str, software: F)
    where
        F: Fn(HostEnv) -> Fut + 'a,
        Fut: Future<Output = Result<(), Box<dyn std::error::Error>>> + 'static,
    {
        let env = self.env_for(name);
        self.executor.hosts.insert(name.to_owned());
        self.sim.host(name, move || software(env.clone()));
    }

    /// Adds a client host; the run ends when every client returns.
    pub fn client<Fut>(&mut self, name: &str, software: impl FnOnce(HostEnv) -> Fut)
    where
        Fut: Future<Output = Result<(), Box<dyn std::error::Error>>> + 'static,
    {
        let env = self.env_for(name);
        self.executor.clients.insert(name.to_owned());
        self.sim.client(name, software(env));
    }

    /// Sim time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Runs until every client finishes, applying `faults` at their times.
    /// Control actions are reported as unsupported (see [`Self::run_with`]).
    pub fn run(&mut self, faults: &FaultSchedule) -> Result<(), SimError> {
        self.run_with(faults, &mut NoControl)
    }

    /// Runs until every client finishes, applying `faults` at their times
    /// and handing control actions to `control`.
    ///
    /// Every action is recorded in the trace (kind `fault`) when applied.
    /// A fault is applied before the first step whose start time is at or
    /// after its time, so its resolution is one tick.
    pub fn run_with(
        &mut self,
        faults: &FaultSchedule,
        control: &mut dyn ControlHook,
    ) -> Result<(), SimError> {
        self.executor.check(faults)?;
        // Host tasks go to each host's LocalSet, so a crash drops them in
        // spawn order rather than process-wide task-id order (seam::task).
        let _local_spawning = seam::task::LocalSpawning::enter();
        let mut pending = faults.sorted();
        pending.reverse();
        loop {
            while pending.last().is_some_and(|f| f.at <= self.sim.elapsed()) {
                let fault = pending.pop().expect("checked above");
                self.apply(&fault.action, control);
            }
            match self.sim.step() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => return Err(SimError::Turmoil(error.to_string())),
            }
        }
    }

    fn record(&self, detail: String) {
        let at_us = self.sim.elapsed().as_micros() as u64;
        self.trace
            .record(at_us, seam::hosts::SIM, seam::event::FAULT, detail);
    }

    fn apply(&mut self, action: &FaultAction, control: &mut dyn ControlHook) {
        match action {
            FaultAction::Control(control_action) => {
                let outcome = control.apply(self.sim.elapsed(), control_action);
                self.record(format!("{action} => {outcome}"));
            }
            FaultAction::Heal => {
                let mut target = TurmoilTarget {
                    sim: &mut self.sim,
                    config: &self.config,
                };
                let summary = self.executor.heal(&mut target);
                self.record(format!("heal: {summary}"));
            }
            _ => {
                self.record(action.to_string());
                let mut target = TurmoilTarget {
                    sim: &mut self.sim,
                    config: &self.config,
                };
                self.executor.apply(action, &mut target);
            }
        }
    }
}

/// turmoil's operations behind the shared executor.
struct TurmoilTarget<'w, 'a> {
    sim: &'w mut turmoil::Sim<'a>,
    config: &'w SimConfig,
}

impl TurmoilTarget<'_, '_> {
    /// turmoil draws per-message latency in `[min, max]` (exponential,
    /// millisecond granularity); `set_link_latency` pins both ends, then
    /// the max is raised for jitter.
    fn latency_range(&self, x: &str, y: &str, min: Duration, max: Duration) {
        self.sim.set_link_latency(x, y, min);
        if max > min {
            self.sim.set_link_max_message_latency(x, y, max);
        }
    }
}

impl Target for TurmoilTarget<'_, '_> {
    fn partition(&mut self, x: &str, y: &str) {
        self.sim.partition(x, y);
    }
    fn partition_oneway(&mut self, from: &str, to: &str) {
        self.sim.partition_oneway(from, to);
    }
    fn repair(&mut self, x: &str, y: &str) {
        self.sim.repair(x, y);
    }
    fn repair_oneway(&mut self, from: &str, to: &str) {
        self.sim.repair_oneway(from, to);
    }
    fn hold(&mut self, x: &str, y: &str) {
        self.sim.hold(x, y);
    }
    fn release(&mut self, x: &str, y: &str) {
        self.sim.release(x, y);
    }
    fn set_latency(&mut self, x: &str, y: &str, latency: Duration, jitter: Duration) {
        self.latency_range(x, y, latency, latency + jitter);
    }
    fn reset_latency(&mut self, x: &str, y: &str) {
        let (min, max) = (self.config.link_latency_min, self.config.link_latency_max);
        self.latency_range(x, y, min, max);
    }
    fn set_loss(&mut self, x: &str, y: &str, loss: f64) {
        self.sim.set_link_fail_rate(x, y, loss);
    }
    fn crash(&mut self, host: &str) {
        self.sim.crash(host);
    }
    fn restart(&mut self, host: &str) {
        self.sim.bounce(host);
    }
}
