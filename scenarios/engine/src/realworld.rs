//! The real-sockets counterpart of `sim::SimWorld`: every host of a run on
//! its own thread and single-threaded tokio runtime over loopback, with the
//! scenario's faults applied at their times through the seam's fault layer
//! ([`seam::faultnet`]).
//!
//! The fault layer is always under every host, even in a run without
//! faults: its base state is the scenario's `[sim] link_latency_min`..`max`
//! (one-way latency plus seeded jitter per chunk, as the event world draws
//! it), so a real run and a simulated run of one file model the same
//! network. A host's own loopback connections (sidecar ↔ app) never get it.
//!
//! A crash drops the host's runtime, which cancels every task the host
//! spawned and closes its sockets (peers see resets, as after `kill -9`);
//! a restart runs the host's software again with the same disk, skew and
//! slowness handles, as turmoil's bounce does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use seam::faultnet::{FaultTable, FaultyNet, LinkFaults};
use seam::real::{AddressBook, SystemClock};
use seam::{Clock, HostEnv, MemDisk, Net, Seed, SkewHandle, SlowHandle, Trace};
use sim::{ControlHook, FaultAction, FaultSchedule};
use tokio::sync::oneshot;

use crate::install::{Install, Role};

/// One running host: a thread that owns its runtime.
struct HostThread {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// The hosts of one real run and the faults in force.
pub struct RealWorld {
    install: Arc<Install>,
    book: AddressBook,
    table: FaultTable,
    clock: SystemClock,
    seed: Seed,
    trace: Trace,
    roles: BTreeMap<String, Role>,
    skews: BTreeMap<String, SkewHandle>,
    slows: BTreeMap<String, SlowHandle>,
    disks: BTreeMap<String, Arc<MemDisk>>,
    running: BTreeMap<String, HostThread>,
    crashed: BTreeSet<String>,
}

impl RealWorld {
    /// A world for `install`, every link starting at the scenario's
    /// latency range.
    pub fn new(install: Arc<Install>, seed: Seed, trace: Trace) -> Self {
        let table = FaultTable::with_base(base_link(&install.scenario));
        RealWorld {
            install,
            book: AddressBook::ephemeral(),
            table,
            clock: SystemClock::new(SkewHandle::default()),
            seed,
            trace,
            roles: BTreeMap::new(),
            skews: BTreeMap::new(),
            slows: BTreeMap::new(),
            disks: BTreeMap::new(),
            running: BTreeMap::new(),
            crashed: BTreeSet::new(),
        }
    }

    /// The environment of `host` (its handles survive crash and restart).
    pub fn env_for(&mut self, host: &str) -> HostEnv {
        let skew = self.skews.entry(host.to_owned()).or_default().clone();
        let slow = self.slows.entry(host.to_owned()).or_default().clone();
        let disk = self.disks.entry(host.to_owned()).or_default().clone();
        let real: Arc<dyn Net> = Arc::new(self.book.net_for(host));
        let net: Arc<dyn Net> = Arc::new(FaultyNet::new(
            real,
            self.table.clone(),
            self.seed.child("faultnet").child(host),
        ));
        HostEnv {
            name: host.to_owned(),
            net,
            clock: Arc::new(self.clock.sibling(skew)),
            disk,
            seed: self.seed.child("host").child(host),
            trace: self.trace.clone(),
            slow,
        }
    }

    /// Starts every host of the install.
    pub fn start_all(&mut self) {
        for (host, role) in self.install.hosts() {
            self.roles.insert(host.clone(), role);
            self.start(&host);
        }
    }

    fn start(&mut self, host: &str) {
        let Some(role) = self.roles.get(host).cloned() else {
            return;
        };
        if self.running.contains_key(host) {
            return;
        }
        let env = self.env_for(host);
        let software = self.install.software(&role, env);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(host.to_owned())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    tokio::select! {
                        biased;
                        _ = stopped => {}
                        _ = software => {}
                    }
                });
                // Dropping the runtime cancels every task the host spawned.
            })
            .expect("spawning a host thread");
        self.running
            .insert(host.to_owned(), HostThread { stop, thread });
    }

    fn crash(&mut self, host: &str) {
        if let Some(running) = self.running.remove(host) {
            let _ = running.stop.send(());
            let _ = running.thread.join();
            self.crashed.insert(host.to_owned());
        }
    }

    fn restart(&mut self, host: &str) {
        self.crash(host);
        self.crashed.remove(host);
        self.start(host);
    }

    /// Stops every host.
    pub fn stop_all(&mut self) {
        let hosts: Vec<String> = self.running.keys().cloned().collect();
        for host in hosts {
            self.crash(&host);
        }
    }

    fn record(&self, detail: String) {
        let at_us = self.clock.run_elapsed().as_micros() as u64;
        self.trace.record(at_us, "real", seam::event::FAULT, detail);
    }

    /// Applies one action now.
    pub fn apply(&mut self, action: &FaultAction, control: &mut dyn ControlHook) {
        match action {
            FaultAction::Control(control_action) => {
                let outcome = control.apply(self.clock.run_elapsed(), control_action);
                self.record(format!("{action} => {outcome}"));
            }
            FaultAction::Heal => {
                self.heal();
                self.record("heal".into());
            }
            _ => {
                self.record(action.to_string());
                self.apply_network_or_host(action);
            }
        }
    }

    fn links(
        &self,
        a: &[String],
        b: &[String],
        both: bool,
        change: impl Fn(&mut seam::faultnet::LinkFaults),
    ) {
        for x in a {
            for y in b.iter().filter(|y| *y != x) {
                self.table.update(x, y, &change);
                if both {
                    self.table.update(y, x, &change);
                }
            }
        }
    }

    fn apply_network_or_host(&mut self, action: &FaultAction) {
        match action {
            FaultAction::Partition { a, b } | FaultAction::Hold { a, b } => {
                self.links(a, b, true, |l| l.cut = true)
            }
            FaultAction::PartitionOneway { from, to } => {
                self.links(from, to, false, |l| l.cut = true)
            }
            FaultAction::Repair { a, b } | FaultAction::Release { a, b } => {
                self.links(a, b, true, |l| l.cut = false)
            }
            FaultAction::RepairOneway { from, to } => {
                self.links(from, to, false, |l| l.cut = false)
            }
            FaultAction::LinkLatency {
                a,
                b,
                latency,
                jitter,
            } => self.links(a, b, true, |l| {
                l.latency = *latency;
                l.jitter = *jitter;
            }),
            FaultAction::LinkLatencyReset { a, b } => {
                // Back to the scenario's own network, not to a zero wire.
                let base = self.table.base().clone();
                self.links(a, b, true, |l| {
                    l.latency = base.latency;
                    l.jitter = base.jitter;
                })
            }
            FaultAction::LinkLoss { a, b, loss } => self.links(a, b, true, |l| l.loss = *loss),
            FaultAction::Crash { hosts } => hosts.iter().for_each(|h| self.crash(h)),
            FaultAction::Restart { hosts } => hosts.iter().for_each(|h| self.restart(h)),
            FaultAction::ClockSkew { hosts, skew_ms } => {
                for host in hosts {
                    self.skews.entry(host.clone()).or_default().set_ms(*skew_ms);
                }
            }
            FaultAction::SlowHost { hosts, factor } => {
                for host in hosts {
                    self.slows
                        .entry(host.clone())
                        .or_default()
                        .set_factor(*factor);
                }
            }
            FaultAction::Control(_) | FaultAction::Heal => {}
        }
    }

    fn heal(&mut self) {
        self.table.clear();
        let crashed: Vec<String> = self.crashed.iter().cloned().collect();
        for host in crashed {
            self.restart(&host);
        }
        self.skews.values().for_each(|s| s.set_ms(0));
        self.slows.values().for_each(|s| s.set_factor(1.0));
    }
}

/// The base state of every link between two hosts: the scenario's one-way
/// latency range as `latency` = min and `jitter` = max − min, the same
/// uniform draw the event world makes per chunk.
fn base_link(scenario: &spec::Scenario) -> LinkFaults {
    let (min, max) = (
        scenario.sim.link_latency_min.0,
        scenario.sim.link_latency_max.0,
    );
    LinkFaults {
        latency: min,
        jitter: max.saturating_sub(min),
        ..LinkFaults::default()
    }
}

/// Applies `schedule` to `world` at its times (counted from `started`;
/// the plan already stretched them), until every fault is applied.
pub async fn run_schedule(
    world: Arc<Mutex<RealWorld>>,
    schedule: FaultSchedule,
    mut control: Box<dyn ControlHook + Send>,
    started: tokio::time::Instant,
) {
    for fault in schedule.sorted() {
        tokio::time::sleep_until(started + fault.at).await;
        let world = world.clone();
        let action = fault.action.clone();
        let handed_back = tokio::task::spawn_blocking(move || {
            // Crashes join host threads: keep them off the async workers.
            world
                .lock()
                .expect("real world poisoned")
                .apply(&action, control.as_mut());
            control
        })
        .await;
        match handed_back {
            Ok(hook) => control = hook,
            Err(_) => return,
        }
    }
}
