//! The composition root: wires mesh, load generator and checks together on
//! either the simulated or the real network, and summarizes the run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use loadgen::{Completion, LoadPlan, LoadReport, Operation, Phase, Target};
use mesh::{MeshError, ports};
use reports::{Mode, Summary};
use seam::real::{AddressBook, SystemClock};
use seam::{HostEnv, LOCALHOST, Seed, SkewHandle, Trace};
use sim::{FaultSchedule, SimConfig, SimWorld};

use crate::checks;
use crate::spec::{self, Scenario};
use crate::topology::Install;

/// Why a run could not complete (as opposed to completing and failing).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The simulator stopped abnormally.
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    /// Mesh setup failed.
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// The load plan was invalid.
    #[error(transparent)]
    Load(#[from] loadgen::LoadError),
    /// The load generator never produced a report.
    #[error("the load generator did not finish: {0}")]
    NoReport(String),
    /// The real-mode runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Everything a run produced.
pub struct RunOutput {
    /// The summary (summary.json).
    pub summary: Summary,
    /// What the load generator measured.
    pub load: LoadReport,
    /// The run trace.
    pub trace: Trace,
}

/// How long after the last arrival the run waits for stragglers, at most.
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// The load plan a scenario describes.
pub fn load_plan(scenario: &Scenario) -> LoadPlan {
    let workload = &scenario.workload;
    LoadPlan {
        phases: workload
            .phases
            .iter()
            .map(|p| Phase {
                name: p.name.clone(),
                duration: p.duration.0,
                arrival: p.arrival.get_ref().clone(),
            })
            .collect(),
        mix: workload.mix.iter().map(operation).collect(),
        in_flight_max: workload.in_flight_max as usize,
        connections_max: workload.connections as usize,
        interval: workload.interval.0,
        lag_tolerance: Duration::from_millis(10),
    }
}

fn operation(op: &spec::OpSpec) -> Operation {
    let (name, method, path, body) = match op.operation {
        spec::Operation::Quote => ("quote", http::Method::GET, "/quote", Bytes::new()),
        spec::Operation::Order => (
            "order",
            http::Method::POST,
            "/orders",
            Bytes::from_static(br#"{"buyer":"acme-energy"}"#),
        ),
    };
    Operation {
        name: name.into(),
        method,
        path: path.into(),
        body,
        weight: op.weight,
    }
}

/// The fault schedule for `seed`, in sim time (see `spec::faults`).
pub fn fault_schedule(scenario: &Scenario, seed: Seed) -> FaultSchedule {
    scenario.fault_schedule(seed)
}

/// The engine's handler for scheduled control actions (rotate root or
/// issuer, revoke, apply config). Not wired to the CA and control plane
/// yet: it performs nothing and the trace records each action as
/// unsupported, so a scenario that relies on one shows it.
pub struct UnwiredControlActions;

impl sim::ControlHook for UnwiredControlActions {
    fn apply(&mut self, _at: Duration, action: &sim::ControlAction) -> sim::ControlOutcome {
        sim::ControlOutcome::Unsupported(format!(
            "{action}: the engine does not perform control actions yet"
        ))
    }
}

/// The load generator host: its own outbound-only sidecar, then the plan.
async fn drive_load(
    install: Arc<Install>,
    env: HostEnv,
    sink: Arc<Mutex<Option<LoadReport>>>,
) -> Result<(), MeshError> {
    let started = tokio::time::Instant::now();
    let scenario = &install.scenario;
    let proxy = mesh::proxy::start(install.proxy_config("loadgen", false), env.clone());
    let mut ready = proxy.ready.clone();
    let warmup = scenario.workload.warmup.0;
    let _ = tokio::time::timeout(warmup + Duration::from_secs(30), ready.wait_for(|r| *r)).await;
    tokio::time::sleep_until(started + warmup).await;
    let target = Target {
        host: LOCALHOST.into(),
        port: ports::PROXY_OUTBOUND,
        authority: scenario.workload.target.get_ref().clone(),
        tls: None,
    };
    let trace_env = env.clone();
    let observer = Arc::new(move |c: &Completion| {
        let status = c.status.map_or("none".to_owned(), |s| s.to_string());
        trace_env.record(
            "load.done",
            format!(
                "seq={} op={} status={status} latency_us={}",
                c.seq,
                c.op,
                c.latency.as_micros()
            ),
        );
    });
    let run = loadgen::run(
        env.net.clone(),
        target,
        load_plan(scenario),
        install.seed.child("workload"),
        observer,
    );
    let limit = load_plan(scenario).duration() + DRAIN_MAX;
    let report = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| MeshError::Timeout(limit.as_millis() as u64))?
        .map_err(|e| MeshError::BadRequest(e.to_string()))?;
    *sink.lock().expect("sink poisoned") = Some(report);
    Ok(())
}

/// Runs a scenario in the simulator.
pub fn run_sim(scenario: &Scenario, seed: u64, trace: Trace) -> Result<RunOutput, EngineError> {
    let wall = WallTimer::start();
    let seed = Seed::new(seed);
    let install = Install::new(scenario.clone(), seed, SimConfig::epoch())?;
    let plan = load_plan(scenario);
    let config = SimConfig {
        seed,
        tick: scenario.sim.tick.0,
        link_latency_min: scenario.sim.link_latency_min.0,
        link_latency_max: scenario.sim.link_latency_max.0,
        duration_limit: scenario.workload.warmup.0
            + plan.duration()
            + DRAIN_MAX
            + Duration::from_secs(60),
        tcp_capacity: 4096,
    };
    let mut world = SimWorld::new(config, trace.clone());
    for (name, role) in install.hosts() {
        let install = install.clone();
        world.host(&name, move |env| {
            let software = install.software(&role, env);
            async move {
                software
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            }
        });
    }
    let sink = Arc::new(Mutex::new(None));
    let (client_install, client_sink) = (install.clone(), sink.clone());
    world.client("loadgen", move |env| async move {
        drive_load(client_install, env, client_sink)
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
    });
    world.run_with(&fault_schedule(scenario, seed), &mut UnwiredControlActions)?;
    let sim_seconds = world.elapsed().as_secs_f64();
    let load = sink.lock().expect("sink poisoned").take().ok_or_else(|| {
        EngineError::NoReport("no report from the simulated load generator".into())
    })?;
    let summary = checks::summarize(
        scenario,
        seed.value(),
        Mode::Sim,
        &load,
        &trace,
        sim_seconds,
        wall.seconds(),
    );
    Ok(RunOutput {
        summary,
        load,
        trace,
    })
}

/// Runs a scenario on real loopback sockets with the OS clock.
pub fn run_real(scenario: &Scenario, seed: u64) -> Result<RunOutput, EngineError> {
    let wall = WallTimer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let trace = Trace::hash_only();
    let seed = Seed::new(seed);
    let book = AddressBook::ephemeral();
    let clock = SystemClock::new(SkewHandle::default());
    let env_for = |name: &str| HostEnv {
        name: name.to_owned(),
        net: Arc::new(book.net_for(name)),
        clock: Arc::new(clock.sibling(SkewHandle::default())),
        // In-process real runs keep state in memory; `meshsim up` uses files.
        disk: Arc::new(seam::MemDisk::default()),
        seed: seed.child("host").child(name),
        trace: trace.clone(),
        slow: seam::SlowHandle::default(),
    };
    let load = runtime.block_on(async {
        let install = Install::new(scenario.clone(), seed, env_for("ca").clock.wall())?;
        let mut hosts = tokio::task::JoinSet::new();
        for (name, role) in install.hosts() {
            hosts.spawn(install.software(&role, env_for(&name)));
        }
        let sink = Arc::new(Mutex::new(None));
        let outcome = drive_load(install, env_for("loadgen"), sink.clone()).await;
        hosts.abort_all();
        outcome?;
        let report = sink.lock().expect("sink poisoned").take();
        report.ok_or_else(|| EngineError::NoReport("no report from the real load generator".into()))
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let seconds = wall.seconds();
    let summary = checks::summarize(
        scenario,
        seed.value(),
        Mode::Real,
        &load,
        &trace,
        seconds,
        seconds,
    );
    Ok(RunOutput {
        summary,
        load,
        trace,
    })
}

/// Measures how long a run took on the wall clock. It is only ever read
/// outside the simulation, to report speed (sim seconds per wall second).
struct WallTimer(std::time::Instant);

impl WallTimer {
    #[allow(clippy::disallowed_methods)] // reporting only: never inside a sim host.
    fn start() -> Self {
        WallTimer(std::time::Instant::now())
    }

    fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}
