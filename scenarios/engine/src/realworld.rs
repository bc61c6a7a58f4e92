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
//! In pods (`run --real --netns`, [`RealWorld::in_pods`]) every host's
//! thread first enters the host's own network namespace, so every socket
//! it and its runtime create live there; the load generator stays in the
//! host namespace and reaches the pods over the mesh's bridge. A
//! partition between two pods is then a kernel-level cut
//! ([`PodNetwork::cut`]: packets silently dropped), not the fault layer's
//! stall; links with a host outside the pods (the load generator) still
//! go through the fault layer, as latency and loss always do (this
//! kernel has no `netem`).
//!
//! A crash drops the host's runtime, which cancels every task the host
//! spawned and closes its sockets (peers see resets, as after `kill -9`);
//! a restart runs the host's software again with the same disk, skew and
//! slowness handles, as turmoil's bounce does.
//!
//! [`RealWorld`] implements [`sim::World`], so the engine runs a variant
//! through one function for all three worlds. The trait's host software is
//! a `Box<dyn Fn(HostEnv) -> HostFuture + 'a>` whose futures are not
//! `Send` (the simulated worlds poll every host on one thread), while a
//! real host runs on its own thread and runtime. Rather than widen the
//! trait (and force `Send` on the simulated worlds' software), the real
//! world is built from the [`Install`] and builds each host's `Send`
//! software itself from the host's role ([`Install::software`]);
//! `add_host` registers the host and drops the closure, which for the
//! engine's hosts builds the same software from the same role. Clients
//! need no thread of their own: `run_with` polls them on the calling
//! thread inside `Handle::block_on`, which takes a non-`Send` future, so
//! the client closures are used as given.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use seam::faultnet::{FaultTable, FaultyNet, LinkFaults};
use seam::real::{AddressBook, SystemClock};
use seam::{Clock, HostEnv, HostParts, MemDisk, Net, Seed, SkewHandle, SlowHandle, Trace};
use sim::{ControlHook, FaultAction, FaultSchedule, HostFuture, SimError, World};
use tokio::sync::oneshot;

use crate::install::{Install, Role};
use crate::netns::{NetnsError, POD_LOCAL_PORTS, PodNetwork};

/// One running host: a thread that owns its runtime.
struct HostThread {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// The hosts of one real run and the faults in force (shared with the
/// blocking tasks that crash and restart hosts).
struct RealHosts {
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
    /// Every host's pod, in a run in network namespaces.
    pods: Option<PodNetwork>,
}

impl RealHosts {
    fn new(install: Arc<Install>, seed: Seed, trace: Trace, pods: Option<PodNetwork>) -> Self {
        let table = FaultTable::with_base(base_link(&install.scenario));
        let book = match &pods {
            Some(pods) => AddressBook::ephemeral_with_hosts(pods.addresses())
                .with_pod_local_ports(&POD_LOCAL_PORTS),
            None => AddressBook::ephemeral(),
        };
        RealHosts {
            install,
            book,
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
            pods,
        }
    }

    /// The environment of `host` (its handles survive crash and restart).
    fn env_for(&mut self, host: &str) -> HostEnv {
        let skew = self.skews.entry(host.to_owned()).or_default().clone();
        let slow = self.slows.entry(host.to_owned()).or_default().clone();
        let disk = self.disks.entry(host.to_owned()).or_default().clone();
        let real: Arc<dyn Net> = Arc::new(self.book.net_for(host));
        let net: Arc<dyn Net> = Arc::new(FaultyNet::new(
            real,
            self.table.clone(),
            self.seed.child("faultnet").child(host),
        ));
        let parts = HostParts {
            net,
            clock: Arc::new(self.clock.sibling(skew)),
            disk,
            trace: self.trace.clone(),
            slow,
        };
        HostEnv::new(host, self.seed, parts)
    }

    /// Starts every registered host.
    fn start_all(&mut self) {
        let hosts: Vec<String> = self.roles.keys().cloned().collect();
        for host in hosts {
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
        let namespace = self.pod_namespace(host);
        let thread = std::thread::Builder::new()
            .name(host.to_owned())
            .spawn(move || {
                // Before the runtime: its driver and every socket (and
                // every thread it starts) must be inside the pod.
                if let Some(namespace) = namespace
                    && let Err(error) = crate::netns::enter(&namespace)
                {
                    eprintln!("host could not enter its pod: {error}");
                    return;
                }
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

    fn pod_namespace(&self, host: &str) -> Option<String> {
        let pods = self.pods.as_ref()?;
        Some(pods.pod(host)?.namespace.clone())
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
    fn stop_all(&mut self) {
        let hosts: Vec<String> = self.running.keys().cloned().collect();
        for host in hosts {
            self.crash(&host);
        }
    }

    fn record(&self, detail: String) {
        let at_us = self.clock.run_elapsed().as_micros() as u64;
        self.trace.record(at_us, "real", seam::event::FAULT, detail);
    }

    /// Applies one action other than a control action now.
    fn apply(&mut self, action: &FaultAction) {
        match action {
            FaultAction::Control(_) => {}
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

    /// Cuts (or repairs) every link from `a` to `b` (and back, when
    /// `both`): in the kernel between two pods, in the fault layer
    /// otherwise.
    fn cut_links(&self, a: &[String], b: &[String], both: bool, cut: bool) {
        for x in a {
            for y in b.iter().filter(|y| *y != x) {
                self.cut_link(x, y, cut);
                if both {
                    self.cut_link(y, x, cut);
                }
            }
        }
    }

    fn cut_link(&self, from: &str, to: &str, cut: bool) {
        let in_kernel = match &self.pods {
            Some(pods) if cut => pods.cut(from, to),
            Some(pods) => pods.repair(from, to),
            None => Ok(false),
        };
        match in_kernel {
            Ok(true) => {}
            Ok(false) => self.table.update(from, to, |l| l.cut = cut),
            Err(error) => {
                // A cut the kernel refused is still made, in the fault layer.
                eprintln!("kernel cut {from} -> {to} failed ({error}); using the fault layer");
                self.table.update(from, to, |l| l.cut = cut);
            }
        }
    }

    fn apply_network_or_host(&mut self, action: &FaultAction) {
        match action {
            FaultAction::Partition { a, b } | FaultAction::Hold { a, b } => {
                self.cut_links(a, b, true, true)
            }
            FaultAction::PartitionOneway { from, to } => self.cut_links(from, to, false, true),
            FaultAction::Repair { a, b } | FaultAction::Release { a, b } => {
                self.cut_links(a, b, true, false)
            }
            FaultAction::RepairOneway { from, to } => self.cut_links(from, to, false, false),
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
        if let Some(pods) = &self.pods {
            pods.repair_all();
        }
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

/// A client as the [`World`] trait hands it over.
type ClientSoftware<'a> = Box<dyn FnOnce(HostEnv) -> HostFuture + 'a>;

/// The real world: [`RealHosts`] plus the clients, run on `runtime`.
pub struct RealWorld<'a> {
    hosts: Arc<Mutex<RealHosts>>,
    runtime: tokio::runtime::Handle,
    clients: Vec<(String, ClientSoftware<'a>)>,
    /// Hosts added that the install has no role for (an error at run time,
    /// since the trait's `add_host` cannot fail).
    unknown: Vec<String>,
    elapsed: Duration,
}

impl RealWorld<'_> {
    /// A world for `install` on `runtime` (a multi-thread runtime: faults
    /// that join host threads run on its blocking pool), every link
    /// starting at the scenario's latency range.
    pub fn new(
        install: Arc<Install>,
        seed: Seed,
        trace: Trace,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self::with_pods(install, seed, trace, runtime, None)
    }

    /// [`RealWorld::new`] with every host of the install in a pod of its
    /// own ([`crate::netns`]); the pods are removed when the world drops.
    pub fn in_pods(
        install: Arc<Install>,
        seed: Seed,
        trace: Trace,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, NetnsError> {
        let hosts: Vec<String> = install.hosts().into_iter().map(|(host, _)| host).collect();
        let pods = PodNetwork::create(&hosts)?;
        Ok(Self::with_pods(install, seed, trace, runtime, Some(pods)))
    }

    fn with_pods(
        install: Arc<Install>,
        seed: Seed,
        trace: Trace,
        runtime: tokio::runtime::Handle,
        pods: Option<PodNetwork>,
    ) -> Self {
        RealWorld {
            hosts: Arc::new(Mutex::new(RealHosts::new(install, seed, trace, pods))),
            runtime,
            clients: Vec::new(),
            unknown: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, RealHosts> {
        self.hosts.lock().expect("real world poisoned")
    }
}

impl<'a> World<'a> for RealWorld<'a> {
    fn env_for(&mut self, host: &str) -> HostEnv {
        self.hosts().env_for(host)
    }

    /// Registers `name` by its role in the install; `_software` is not
    /// used (see the module doc: a real host's software must be `Send`).
    fn add_host(&mut self, name: &str, _software: Box<dyn Fn(HostEnv) -> HostFuture + 'a>) {
        let mut hosts = self.hosts.lock().expect("real world poisoned");
        match hosts.install.role_of(name) {
            Some(role) => {
                hosts.roles.insert(name.to_owned(), role);
            }
            None => self.unknown.push(name.to_owned()),
        }
    }

    fn add_client(&mut self, name: &str, software: Box<dyn FnOnce(HostEnv) -> HostFuture + 'a>) {
        self.clients.push((name.to_owned(), software));
    }

    fn elapsed(&self) -> Duration {
        self.elapsed
    }

    fn run_with(
        &mut self,
        faults: &FaultSchedule,
        control: &mut dyn ControlHook,
    ) -> Result<(), SimError> {
        if let Some(host) = self.unknown.first() {
            return Err(SimError::Turmoil(format!(
                "real host {host:?} has no role in the install"
            )));
        }
        let clients: Vec<_> = std::mem::take(&mut self.clients)
            .into_iter()
            .map(|(name, software)| {
                let env = self.env_for(&name);
                async move { software(env).await.map_err(|e| format!("{name}: {e}")) }
            })
            .collect();
        let started = tokio::time::Instant::now();
        self.hosts().start_all();
        let hosts = self.hosts.clone();
        let outcome = self.runtime.block_on(async move {
            let clients = futures_join_all(clients);
            tokio::pin!(clients);
            tokio::select! {
                biased;
                done = &mut clients => done,
                () = run_schedule(hosts, faults, control, started) => clients.await,
            }
        });
        self.elapsed = started.elapsed();
        // Joins every host thread: outside the runtime, on this thread.
        self.hosts().stop_all();
        outcome.map_err(SimError::Turmoil)
    }
}

/// Runs every client to completion (in order of their results, each
/// polled concurrently); the first error wins.
async fn futures_join_all(
    clients: Vec<impl std::future::Future<Output = Result<(), String>>>,
) -> Result<(), String> {
    let mut set: Vec<_> = clients.into_iter().map(Box::pin).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        let mut index = 0;
        while index < set.len() {
            match set[index].as_mut().poll(cx) {
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Ready(Ok(())) => {
                    drop(set.swap_remove(index));
                }
                std::task::Poll::Pending => {
                    pending = true;
                    index += 1;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    })
    .await
}

/// Applies `schedule` to the hosts at its times (counted from `started`;
/// the plan already stretched them), until every fault is applied. Control
/// actions are handed to `control` here (queueing a job is quick); host
/// and network actions run on the blocking pool, since a crash joins a
/// host thread and must not stall the clients polled beside this.
async fn run_schedule(
    hosts: Arc<Mutex<RealHosts>>,
    schedule: &FaultSchedule,
    control: &mut dyn ControlHook,
    started: tokio::time::Instant,
) {
    for fault in schedule.sorted() {
        tokio::time::sleep_until(started + fault.at).await;
        let action = fault.action.clone();
        if let FaultAction::Control(control_action) = &action {
            let hosts = hosts.lock().expect("real world poisoned");
            let outcome = control.apply(hosts.clock.run_elapsed(), control_action);
            hosts.record(format!("{action} => {outcome}"));
            continue;
        }
        let hosts = hosts.clone();
        let applied = tokio::task::spawn_blocking(move || {
            hosts.lock().expect("real world poisoned").apply(&action);
        })
        .await;
        if applied.is_err() {
            return;
        }
    }
    std::future::pending::<()>().await
}
