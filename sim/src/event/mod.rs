//! The event-driven world: one paused current-thread tokio runtime, where
//! time jumps to the next event when every task is idle, so an idle host
//! costs nothing and delivery happens at the drawn instant, not on a tick.
//!
//! - `timer.rs`: exact timers and the driver that moves time;
//! - `net.rs` + `pipe.rs`: the in-memory network and its TCP semantics;
//! - `host.rs`: a host = one nested `LocalSet`, crash = drop it;
//! - `watchdog.rs`: a frozen world becomes an error naming the host.
//!
//! [`EventWorld`] has the same surface as [`crate::SimWorld`], and both
//! implement [`crate::World`].

mod host;
mod net;
mod pipe;
mod timer;
mod watchdog;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seam::{HostEnv, HostParts, Trace};
use tokio::runtime::Runtime;
use tokio::task::LocalSet;
use tokio::time::Instant;

pub use host::{HostFuture, HostResult};
pub use net::EventNet;
pub use pipe::PIPE_BYTES;

use crate::control::{ControlHook, NoControl};
use crate::executor::{Executor, Target};
use crate::faults::{FaultAction, FaultSchedule};
use crate::world::{SimConfig, SimError};
use host::{Booted, RunShared};
use net::NetState;
use pipe::{Latency, LinkState};
use timer::{EventClock, Timers};
use watchdog::Progress;

/// Seed-tree label of the event network's latency and loss draws.
pub const SEED_LABEL_EVENT_NETWORK: &str = "network";
/// Seed-tree label of tokio's RNG (`select!` fairness) in the event world.
pub const SEED_LABEL_TOKIO: &str = "tokio";
/// Default longest wall time one host poll may take (see [`EventWorld::set_watchdog`]).
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(10);

struct HostEntry<'a> {
    name: String,
    id: usize,
    env: HostEnv,
    software: Box<dyn Fn(HostEnv) -> HostFuture + 'a>,
    booted: Option<Booted>,
}

struct ClientEntry {
    name: String,
    id: usize,
    software: Option<HostFuture>,
    booted: Option<Booted>,
}

/// An event-driven simulated world (see the module doc).
pub struct EventWorld<'a> {
    runtime: Runtime,
    inner: Inner<'a>,
}

struct Inner<'a> {
    config: SimConfig,
    trace: Trace,
    executor: Executor,
    timers: Timers,
    net: Arc<NetState>,
    progress: Arc<Progress>,
    hosts: Vec<HostEntry<'a>>,
    clients: Vec<ClientEntry>,
    watchdog: Duration,
}

fn runtime(config: &SimConfig) -> Runtime {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(
        &config.seed.child(SEED_LABEL_TOKIO).value().to_le_bytes(),
    ));
    #[cfg(not(tokio_unstable))]
    let _ = config;
    builder.build().expect("a current-thread runtime builds")
}

impl<'a> EventWorld<'a> {
    /// Builds the world. Nothing random happens before this point.
    pub fn new(config: SimConfig, trace: Trace) -> Self {
        let runtime = runtime(&config);
        // The paused clock's start is tokio's tick 0 (runtime/time/source.rs).
        let start = {
            let _inside = runtime.enter();
            Instant::now()
        };
        let timers = Timers::new(start);
        let latency = Latency {
            rng: Mutex::new(config.seed.child(SEED_LABEL_EVENT_NETWORK).rng()),
            min: config.link_latency_min,
            max: config.link_latency_max.max(config.link_latency_min),
        };
        let net = Arc::new(NetState::new(timers.clone(), latency, config.tcp_capacity));
        let inner = Inner {
            config,
            trace,
            executor: Executor::default(),
            timers,
            net,
            progress: Arc::new(Progress::new()),
            hosts: Vec::new(),
            clients: Vec::new(),
            watchdog: DEFAULT_WATCHDOG,
        };
        EventWorld { runtime, inner }
    }

    /// The longest wall time one host poll may take before the run fails
    /// (a poll four times longer aborts the process; see `watchdog.rs`).
    pub fn set_watchdog(&mut self, limit: Duration) {
        self.inner.watchdog = limit;
    }

    /// The environment of `host`. Valid both outside and inside the host.
    pub fn env_for(&mut self, host: &str) -> HostEnv {
        let inner = &mut self.inner;
        inner.net.add_host(host);
        let (skew, slow, disk) = inner.executor.handles.of(host);
        let clock = EventClock::new(
            SimConfig::epoch(),
            skew,
            inner.timers.clone(),
            self.runtime.handle().clone(),
        );
        let parts = HostParts {
            net: Arc::new(EventNet::new(host, inner.net.clone())),
            clock: Arc::new(clock),
            disk: Arc::new(disk),
            trace: inner.trace.clone(),
            slow,
        };
        HostEnv::new(host, inner.config.seed, parts)
    }

    /// Adds a restartable host; `software` is re-run after a crash.
    pub fn host<F, Fut>(&mut self, name: &str, software: F)
    where
        F: Fn(HostEnv) -> Fut + 'a,
        Fut: Future<Output = HostResult> + 'static,
    {
        self.add_boxed_host(name, Box::new(move |env| Box::pin(software(env))));
    }

    pub(crate) fn add_boxed_host(
        &mut self,
        name: &str,
        software: Box<dyn Fn(HostEnv) -> HostFuture + 'a>,
    ) {
        let env = self.env_for(name);
        let inner = &mut self.inner;
        inner.executor.hosts.insert(name.to_owned());
        inner.hosts.push(HostEntry {
            name: name.to_owned(),
            id: inner.progress.register(name),
            env,
            software,
            booted: None,
        });
    }

    /// Adds a client host; the run ends when every client returns.
    pub fn client<Fut>(&mut self, name: &str, software: impl FnOnce(HostEnv) -> Fut)
    where
        Fut: Future<Output = HostResult> + 'static,
    {
        let env = self.env_for(name);
        let inner = &mut self.inner;
        inner.executor.clients.insert(name.to_owned());
        inner.clients.push(ClientEntry {
            name: name.to_owned(),
            id: inner.progress.register(name),
            software: Some(Box::pin(software(env))),
            booted: None,
        });
    }

    /// Sim time elapsed.
    pub fn elapsed(&self) -> Duration {
        let _inside = self.runtime.enter();
        Instant::now().saturating_duration_since(self.inner.timers.start())
    }

    /// Runs until every client finishes, applying `faults` at their times.
    pub fn run(&mut self, faults: &FaultSchedule) -> Result<(), SimError> {
        self.run_with(faults, &mut NoControl)
    }

    /// Runs until every client finishes, applying `faults` at their exact
    /// times and handing control actions to `control`. Every action is
    /// recorded in the trace (kind `fault`) when applied, as in
    /// [`crate::SimWorld::run_with`].
    pub fn run_with(
        &mut self,
        faults: &FaultSchedule,
        control: &mut dyn ControlHook,
    ) -> Result<(), SimError> {
        self.inner.executor.check(faults)?;
        // Host tasks go to each host's LocalSet (seam::task).
        let _local_spawning = seam::task::LocalSpawning::enter();
        let watchdog = watchdog::spawn(self.inner.progress.clone(), self.inner.watchdog);
        let local = LocalSet::new();
        let result = local.block_on(&self.runtime, self.inner.run(faults, control));
        {
            let _inside = self.runtime.enter();
            drop(local);
        }
        self.inner.progress.stop();
        watchdog.thread().unpark();
        let _ = watchdog.join();
        result
    }
}

impl Inner<'_> {
    fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.timers.start())
    }

    fn record(&self, detail: String) {
        let at_us = self.elapsed().as_micros() as u64;
        self.trace
            .record(at_us, seam::hosts::SIM, seam::event::FAULT, detail);
    }

    async fn run(
        &mut self,
        faults: &FaultSchedule,
        control: &mut dyn ControlHook,
    ) -> Result<(), SimError> {
        let shared = Rc::new(RunShared {
            progress: self.progress.clone(),
            failure: RefCell::new(None),
            // A client runs once; a second run waits only for new ones.
            clients_left: Cell::new(self.clients.iter().filter(|c| c.software.is_some()).count()),
            notify: tokio::sync::Notify::new(),
            poll_limit: self.watchdog,
        });
        let driver = self.spawn_driver(&shared);
        self.boot_all(&shared);
        let result = self.apply_until_done(faults, control, &shared).await;
        self.stop_all();
        driver.abort();
        result
    }

    fn spawn_driver(&self, shared: &Rc<RunShared>) -> tokio::task::JoinHandle<()> {
        let (timers, progress, shared) =
            (self.timers.clone(), self.progress.clone(), shared.clone());
        tokio::task::spawn_local(async move {
            let host = timer::drive(timers, progress).await;
            shared.fail(SimError::Watchdog {
                host,
                reason: format!(
                    "{} rounds at one instant: tasks keep waking each other and \
                     simulated time cannot advance",
                    timer::LIVELOCK_ROUNDS
                ),
            });
        })
    }

    fn boot_all(&mut self, shared: &Rc<RunShared>) {
        for host in &mut self.hosts {
            let software = (host.software)(host.env.clone());
            host.booted = Some(Booted::start(&host.name, host.id, false, software, shared));
        }
        for client in &mut self.clients {
            if let Some(software) = client.software.take() {
                let booted = Booted::start(&client.name, client.id, true, software, shared);
                client.booted = Some(booted);
            }
        }
    }

    /// Tears every host down in registration order, inside the runtime.
    fn stop_all(&mut self) {
        let hosts = self.hosts.iter_mut().filter_map(|h| h.booted.take());
        let clients = self.clients.iter_mut().filter_map(|c| c.booted.take());
        hosts
            .chain(clients)
            .collect::<Vec<_>>()
            .into_iter()
            .for_each(Booted::stop);
    }

    async fn apply_until_done(
        &mut self,
        faults: &FaultSchedule,
        control: &mut dyn ControlHook,
        shared: &Rc<RunShared>,
    ) -> Result<(), SimError> {
        let limit = self.config.duration_limit;
        let mut pending = faults.sorted();
        pending.reverse();
        loop {
            if let Some(error) = shared.failure.borrow_mut().take() {
                return Err(error);
            }
            if shared.clients_left.get() == 0 {
                return Ok(());
            }
            while pending.last().is_some_and(|f| f.at <= self.elapsed()) {
                let fault = pending.pop().expect("checked above");
                self.apply(&fault.action, control, shared);
            }
            if self.elapsed() >= limit {
                return Err(SimError::Turmoil(format!(
                    "ran for {limit:?} of sim time without every client finishing"
                )));
            }
            let next = pending.last().map_or(limit, |f| f.at.min(limit));
            let wake = self.timers.sleep_until(self.timers.start() + next);
            tokio::select! {
                biased;
                () = shared.notify.notified() => {}
                () = wake => {}
            }
        }
    }

    fn apply(
        &mut self,
        action: &FaultAction,
        control: &mut dyn ControlHook,
        shared: &Rc<RunShared>,
    ) {
        let detail = match action {
            FaultAction::Control(_) | FaultAction::Heal => None,
            _ => Some(action.to_string()),
        };
        if let Some(detail) = detail {
            self.record(detail);
        }
        let mut target = EventTarget {
            net: &self.net,
            hosts: &mut self.hosts,
            shared,
        };
        let at = Instant::now().saturating_duration_since(self.timers.start());
        let record = |detail: String| {
            let at_us = at.as_micros() as u64;
            self.trace
                .record(at_us, seam::hosts::SIM, seam::event::FAULT, detail);
        };
        match action {
            FaultAction::Control(control_action) => {
                let outcome = control.apply(at, control_action);
                record(format!("{action} => {outcome}"));
            }
            FaultAction::Heal => {
                let summary = self.executor.heal(&mut target);
                record(format!("heal: {summary}"));
            }
            _ => self.executor.apply(action, &mut target),
        }
    }
}

/// The event world's links and hosts behind the shared executor.
struct EventTarget<'r, 'a> {
    net: &'r NetState,
    hosts: &'r mut Vec<HostEntry<'a>>,
    shared: &'r Rc<RunShared>,
}

impl<'a> EventTarget<'_, 'a> {
    fn both(&self, x: &str, y: &str, change: impl Fn(&mut LinkState)) {
        self.net.update_link(x, y, &change);
        self.net.update_link(y, x, &change);
    }

    fn entry(&mut self, host: &str) -> Option<&mut HostEntry<'a>> {
        self.hosts.iter_mut().find(|h| h.name == host)
    }
}

fn cut(state: &mut LinkState) {
    state.faults.cut = true;
}

fn uncut(state: &mut LinkState) {
    state.faults.cut = false;
}

impl Target for EventTarget<'_, '_> {
    fn partition(&mut self, x: &str, y: &str) {
        self.both(x, y, cut);
    }
    fn partition_oneway(&mut self, from: &str, to: &str) {
        self.net.update_link(from, to, cut);
    }
    fn repair(&mut self, x: &str, y: &str) {
        self.both(x, y, uncut);
    }
    fn repair_oneway(&mut self, from: &str, to: &str) {
        self.net.update_link(from, to, uncut);
    }
    /// A hold stalls like a partition: nothing is ever dropped here.
    fn hold(&mut self, x: &str, y: &str) {
        self.both(x, y, cut);
    }
    fn release(&mut self, x: &str, y: &str) {
        self.both(x, y, uncut);
    }
    fn set_latency(&mut self, x: &str, y: &str, latency: Duration, jitter: Duration) {
        self.both(x, y, |state| {
            state.faults.latency = latency;
            state.faults.jitter = jitter;
            state.latency_override = true;
        });
    }
    fn reset_latency(&mut self, x: &str, y: &str) {
        self.both(x, y, |state| {
            state.faults.latency = Duration::ZERO;
            state.faults.jitter = Duration::ZERO;
            state.latency_override = false;
        });
    }
    fn set_loss(&mut self, x: &str, y: &str, loss: f64) {
        self.both(x, y, |state| state.faults.loss = loss);
    }
    fn crash(&mut self, host: &str) {
        if let Some(booted) = self.entry(host).and_then(|h| h.booted.take()) {
            booted.stop();
        }
        self.net.crash(host);
    }
    fn restart(&mut self, host: &str) {
        self.crash(host);
        let shared = self.shared.clone();
        if let Some(entry) = self.entry(host) {
            let software = (entry.software)(entry.env.clone());
            let booted = Booted::start(&entry.name, entry.id, false, software, &shared);
            entry.booted = Some(booted);
        }
    }
}
