//! A seeded turmoil simulation with a fixed epoch and a fault executor.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use seam::{HostEnv, MemDisk, Seed, SkewHandle, SlowHandle, Trace};

use crate::control::{ControlHook, NoControl};
use crate::faults::{FaultAction, FaultSchedule};
use crate::{SimClock, TurmoilNet};

/// The fixed epoch of every simulation: 2026-01-01T00:00:00Z. Never
/// `SystemTime::now()` (turmoil's default), or certificates would depend on
/// when the run happened.
pub const SIM_EPOCH_UNIX_S: u64 = 1_767_225_600;

/// The seed-tree label of turmoil's own RNG (link latency draws, loss).
pub const SEED_LABEL_NETWORK: &str = "turmoil";
/// The seed-tree label under which every host's seed hangs (`host/<name>`).
pub const SEED_LABEL_HOSTS: &str = "host";

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

/// Faults in force, so that [`FaultAction::Heal`] can undo exactly them.
/// Ordered sets: heal undoes in a stable order, so the trace is too.
#[derive(Default)]
struct InForce {
    /// Host pairs (sorted) whose link was partitioned or held.
    cut_or_held: BTreeSet<(String, String)>,
    /// Host pairs (sorted) with a latency override.
    latency: BTreeSet<(String, String)>,
    /// Host pairs (sorted) with a loss rate.
    loss: BTreeSet<(String, String)>,
    /// Crashed and not restarted.
    crashed: BTreeSet<String>,
    /// Hosts with a clock skew.
    skewed: BTreeSet<String>,
    /// Hosts with a service-time factor.
    slowed: BTreeSet<String>,
}

/// A turmoil `Sim` plus the seam pieces meshsim hands to hosts.
pub struct SimWorld<'a> {
    sim: turmoil::Sim<'a>,
    config: SimConfig,
    trace: Trace,
    skews: BTreeMap<String, SkewHandle>,
    slows: BTreeMap<String, SlowHandle>,
    disks: BTreeMap<String, MemDisk>,
    /// Hosts whose software can crash and restart.
    hosts: BTreeSet<String>,
    /// Clients: their return ends the run; turmoil cannot crash them.
    clients: BTreeSet<String>,
    in_force: InForce,
}

/// Every (x, y) with x in `a`, y in `b`, x != y (turmoil has no self-link).
fn pairs<'s>(a: &'s [String], b: &'s [String]) -> impl Iterator<Item = (&'s str, &'s str)> {
    a.iter().flat_map(move |x| {
        b.iter()
            .filter(move |y| *y != x)
            .map(move |y| (x.as_str(), y.as_str()))
    })
}

/// The pair in a canonical order (links are undirected for heal's purposes).
fn link(x: &str, y: &str) -> (String, String) {
    if x <= y {
        (x.to_owned(), y.to_owned())
    } else {
        (y.to_owned(), x.to_owned())
    }
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
            skews: BTreeMap::new(),
            slows: BTreeMap::new(),
            disks: BTreeMap::new(),
            hosts: BTreeSet::new(),
            clients: BTreeSet::new(),
            in_force: InForce::default(),
        }
    }

    /// The environment of `host`. Valid both outside and inside the host.
    pub fn env_for(&mut self, host: &str) -> HostEnv {
        let skew = self.skews.entry(host.to_owned()).or_default().clone();
        let slow = self.slows.entry(host.to_owned()).or_default().clone();
        let disk = self.disks.entry(host.to_owned()).or_default().clone();
        HostEnv {
            name: host.to_owned(),
            net: Arc::new(TurmoilNet::new(host)),
            clock: Arc::new(SimClock::new(SimConfig::epoch(), skew)),
            disk: Arc::new(disk),
            seed: self.config.seed.child(SEED_LABEL_HOSTS).child(host),
            trace: self.trace.clone(),
            slow,
        }
    }

    /// Adds a restartable host; `software` is re-run after a crash.
    pub fn host<F, Fut>(&mut self, name: &str, software: F)
    where
        F: Fn(HostEnv) -> Fut + 'a,
        Fut: Future<Output = Result<(), Box<dyn std::error::Error>>> + 'static,
    {
        let env = self.env_for(name);
        self.hosts.insert(name.to_owned());
        self.sim.host(name, move || software(env.clone()));
    }

    /// Adds a client host; the run ends when every client returns.
    pub fn client<Fut>(&mut self, name: &str, software: impl FnOnce(HostEnv) -> Fut)
    where
        Fut: Future<Output = Result<(), Box<dyn std::error::Error>>> + 'static,
    {
        let env = self.env_for(name);
        self.clients.insert(name.to_owned());
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
        self.check(faults)?;
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

    /// Refuses a schedule turmoil would panic on, before anything runs.
    fn check(&self, faults: &FaultSchedule) -> Result<(), SimError> {
        for fault in &faults.faults {
            let bad = |reason: String| SimError::BadFault {
                at: fault.at,
                action: fault.action.to_string(),
                reason,
            };
            for host in fault.action.hosts() {
                let known = self.hosts.contains(host) || self.clients.contains(host);
                if !known {
                    return Err(bad(format!("no host named \"{host}\"")));
                }
                if fault.action.is_lifecycle() && self.clients.contains(host) {
                    return Err(bad(format!(
                        "\"{host}\" is a client; only hosts can crash and restart"
                    )));
                }
            }
            if let FaultAction::LinkLoss { loss, .. } = fault.action
                && !(0.0..=1.0).contains(&loss)
            {
                return Err(bad(format!("loss {loss} is not a probability")));
            }
        }
        Ok(())
    }

    fn record(&self, detail: String) {
        let at_us = self.sim.elapsed().as_micros() as u64;
        self.trace.record(at_us, "sim", seam::event::FAULT, detail);
    }

    fn apply(&mut self, action: &FaultAction, control: &mut dyn ControlHook) {
        match action {
            FaultAction::Control(control_action) => {
                let outcome = control.apply(self.sim.elapsed(), control_action);
                self.record(format!("{action} => {outcome}"));
            }
            FaultAction::Heal => {
                let summary = self.heal();
                self.record(format!("heal: {summary}"));
            }
            _ => {
                self.record(action.to_string());
                self.apply_network_or_host(action);
            }
        }
    }

    fn apply_network_or_host(&mut self, action: &FaultAction) {
        match action {
            FaultAction::Partition { a, b } => {
                for (x, y) in pairs(a, b) {
                    self.sim.partition(x, y);
                    self.in_force.cut_or_held.insert(link(x, y));
                }
            }
            FaultAction::PartitionOneway { from, to } => {
                for (x, y) in pairs(from, to) {
                    self.sim.partition_oneway(x, y);
                    self.in_force.cut_or_held.insert(link(x, y));
                }
            }
            FaultAction::Repair { a, b } => pairs(a, b).for_each(|(x, y)| self.sim.repair(x, y)),
            FaultAction::RepairOneway { from, to } => {
                pairs(from, to).for_each(|(x, y)| self.sim.repair_oneway(x, y))
            }
            FaultAction::Hold { a, b } => {
                for (x, y) in pairs(a, b) {
                    self.sim.hold(x, y);
                    self.in_force.cut_or_held.insert(link(x, y));
                }
            }
            FaultAction::Release { a, b } => pairs(a, b).for_each(|(x, y)| self.sim.release(x, y)),
            FaultAction::LinkLatency {
                a,
                b,
                latency,
                jitter,
            } => {
                for (x, y) in pairs(a, b) {
                    self.set_latency(x, y, *latency, *latency + *jitter);
                    self.in_force.latency.insert(link(x, y));
                }
            }
            FaultAction::LinkLatencyReset { a, b } => {
                let (min, max) = (self.config.link_latency_min, self.config.link_latency_max);
                pairs(a, b).for_each(|(x, y)| self.set_latency(x, y, min, max));
            }
            FaultAction::LinkLoss { a, b, loss } => {
                for (x, y) in pairs(a, b) {
                    self.sim.set_link_fail_rate(x, y, *loss);
                    self.in_force.loss.insert(link(x, y));
                }
            }
            FaultAction::Crash { hosts } => {
                for host in hosts {
                    self.sim.crash(host.as_str());
                    self.in_force.crashed.insert(host.clone());
                }
            }
            FaultAction::Restart { hosts } => {
                for host in hosts {
                    self.sim.bounce(host.as_str());
                    self.in_force.crashed.remove(host);
                }
            }
            FaultAction::ClockSkew { hosts, skew_ms } => {
                for host in hosts {
                    self.skews.entry(host.clone()).or_default().set_ms(*skew_ms);
                    self.in_force.skewed.insert(host.clone());
                }
            }
            FaultAction::SlowHost { hosts, factor } => {
                for host in hosts {
                    self.slows
                        .entry(host.clone())
                        .or_default()
                        .set_factor(*factor);
                    self.in_force.slowed.insert(host.clone());
                }
            }
            FaultAction::Control(_) | FaultAction::Heal => {
                unreachable!("handled by apply")
            }
        }
    }

    /// turmoil draws per-message latency in `[min, max]` (exponential,
    /// millisecond granularity); `set_link_latency` pins both ends, then
    /// the max is raised for jitter.
    fn set_latency(&self, x: &str, y: &str, min: Duration, max: Duration) {
        self.sim.set_link_latency(x, y, min);
        if max > min {
            self.sim.set_link_max_message_latency(x, y, max);
        }
    }

    /// Undoes every fault in force; returns what it did, for the trace.
    fn heal(&mut self) -> String {
        let in_force = std::mem::take(&mut self.in_force);
        // `release` makes both directions healthy and delivers held
        // messages; `repair` alone would leave held messages stuck.
        for (x, y) in &in_force.cut_or_held {
            self.sim.release(x.as_str(), y.as_str());
        }
        let (min, max) = (self.config.link_latency_min, self.config.link_latency_max);
        for (x, y) in &in_force.latency {
            self.set_latency(x, y, min, max);
        }
        for (x, y) in &in_force.loss {
            self.sim.set_link_fail_rate(x.as_str(), y.as_str(), 0.0);
        }
        for host in &in_force.skewed {
            self.skews.entry(host.clone()).or_default().set_ms(0);
        }
        for host in &in_force.slowed {
            self.slows.entry(host.clone()).or_default().set_factor(1.0);
        }
        // Restart last: rebooted software finds the network already healed.
        for host in &in_force.crashed {
            self.sim.bounce(host.as_str());
        }
        let names = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
        format!(
            "links={} latency={} loss={} restarted=[{}] unskewed=[{}] unslowed=[{}]",
            in_force.cut_or_held.len(),
            in_force.latency.len(),
            in_force.loss.len(),
            names(&in_force.crashed),
            names(&in_force.skewed),
            names(&in_force.slowed),
        )
    }
}
