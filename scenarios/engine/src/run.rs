//! The composition root: wires mesh, load generator and checks together on
//! either the simulated or the real network, and summarizes the run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadgen::{Completion, LoadPlan, LoadReport, Phase, Target};
use mesh::{MeshError, ports};
use reports::{Mode, Summary};
use seam::real::SystemClock;
use seam::{Clock, HostEnv, LOCALHOST, Seed, SkewHandle, Trace};
use sim::{FaultSchedule, SimConfig, SimWorld};

use crate::install::Install;
use apps::ledger::{self, Evidence, Observation};
use apps::rec::genesis::Genesis;
use checks;
use checks::dataplane::{self, VariantRun};
use spec::{self, AppKind, Scenario};

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
        mix: apps::rec::workload::client_mix(&workload.mix, &Genesis::new(&scenario.app)),
        in_flight_max: workload.in_flight_max as usize,
        connections_max: workload.connections as usize,
        interval: workload.interval.0,
        lag_tolerance: Duration::from_millis(10),
        ..LoadPlan::default()
    }
}

/// The fault schedule for `seed`, in sim time (see `spec::faults`).
pub fn fault_schedule(scenario: &Scenario, seed: Seed) -> FaultSchedule {
    scenario.fault_schedule(seed)
}

/// The load generator host: its own outbound-only sidecar, then the plan.
async fn drive_load(
    install: Arc<Install>,
    env: HostEnv,
    sink: Arc<Mutex<Option<LoadReport>>>,
    evidence: Arc<Mutex<Evidence>>,
) -> Result<(), MeshError> {
    let started = tokio::time::Instant::now();
    let scenario = &install.scenario;
    let proxy = mesh::proxy::start(install.proxy_config("loadgen", false), env.clone());
    let mut ready = proxy.ready.clone();
    let warmup = scenario.workload.warmup.0;
    let readiness_limit = warmup + Duration::from_secs(30);
    let _ = tokio::time::timeout(readiness_limit, ready.wait_for(|r| *r)).await;
    let target_service = scenario.workload.target.get_ref();
    let _ = tokio::time::timeout(readiness_limit, wait_until_routable(&env, target_service)).await;
    tokio::time::sleep_until(started + warmup).await;
    let target = Target {
        host: LOCALHOST.into(),
        port: ports::PROXY_OUTBOUND,
        authority: scenario.workload.target.get_ref().clone(),
        tls: None,
    };
    let trace_env = env.clone();
    let observed = evidence.clone();
    let abort = checks::abort::AbortMonitor::new(scenario);
    let monitor = abort.clone();
    let observer = Arc::new(move |c: &Completion| {
        if let Some(monitor) = &monitor {
            monitor.record(c);
        }
        if ledger::is_write(&c.op) {
            observed
                .lock()
                .expect("evidence poisoned")
                .observations
                .push(Observation {
                    seq: c.seq,
                    op: c.op.clone(),
                    status: c.status,
                    body: c.body.clone(),
                });
        }
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
    if let Some(monitor) = &abort {
        seam::task::spawn(monitor.clone().watch(tokio::time::Instant::now()));
    }
    let run = loadgen::run_until(
        env.net.clone(),
        target,
        load_plan(scenario),
        install.seed.child("workload"),
        observer,
        abort.as_ref().map(|m| m.stop_signal()),
    );
    let limit = load_plan(scenario).duration() + DRAIN_MAX;
    let mut report = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| MeshError::Timeout(limit.as_millis() as u64))?
        .map_err(|e| MeshError::BadRequest(e.to_string()))?;
    if let Some(verdict) = abort.and_then(|m| m.annotate(&mut report)) {
        env.record("run.aborted", verdict);
    }
    *sink.lock().expect("sink poisoned") = Some(report);
    if runs_rec_app(scenario) {
        let read = apps::rec::workload::final_read(&env, &scenario.app).await;
        evidence.lock().expect("evidence poisoned").final_state = Some(read);
    }
    Ok(())
}

/// Waits until a request to `service` through the local sidecar gets an
/// answer from the service itself (not a proxy error such as "no
/// endpoints"): the mesh is up end to end. Probes are not measured.
async fn wait_until_routable(env: &HostEnv, service: &str) {
    let pool = mesh::proxy::pool::Pool::default();
    loop {
        let probe = http::Request::get("/")
            .header(http::header::HOST, service)
            .body(mesh::http::Body::default());
        if let Ok(probe) = probe {
            let connect = || async {
                let io = env
                    .net
                    .connect(LOCALHOST, ports::PROXY_OUTBOUND)
                    .await
                    .map_err(|source| MeshError::Connect {
                        target: "sidecar".into(),
                        source,
                    })?;
                mesh::http::handshake(io).await
            };
            let answer =
                tokio::time::timeout(Duration::from_secs(2), pool.send("sidecar", probe, connect))
                    .await;
            let proxy_error = |r: &http::Response<mesh::http::Body>| {
                r.headers()
                    .contains_key(mesh::proxy::outbound::PROXY_ERROR_HEADER)
            };
            if matches!(&answer, Ok(Ok(response)) if !proxy_error(response)) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the load goes to the REC gateway (then the ledger is checked).
fn runs_rec_app(scenario: &Scenario) -> bool {
    scenario.services.iter().any(|s| {
        s.name.get_ref() == scenario.workload.target.get_ref() && s.app == AppKind::Gateway
    })
}

/// Adds the ledger checks (for REC scenarios) to a summary.
fn add_ledger_checks(scenario: &Scenario, summary: &mut Summary, evidence: &Mutex<Evidence>) {
    if !runs_rec_app(scenario) {
        return;
    }
    let evidence = evidence.lock().expect("evidence poisoned");
    summary
        .checks
        .extend(ledger::checks(&Genesis::new(&scenario.app), &evidence));
    summary.verdict = Summary::verdict_of(&summary.checks);
}

/// Runs a scenario in the simulator: once per `[[mesh.variants]]` entry
/// (same seed, same arrivals), or once if it declares none.
pub fn run_sim(scenario: &Scenario, seed: u64, trace: Trace) -> Result<RunOutput, EngineError> {
    let wall = WallTimer::start();
    let mut runs = Vec::new();
    let mut sim_seconds = 0.0;
    for (name, variant) in spec::mesh::variants(scenario) {
        let (run, evidence, seconds) = simulate(name, variant, seed, &trace)?;
        sim_seconds += seconds;
        runs.push((run, evidence));
    }
    let wall_seconds = wall.seconds();
    finish(
        scenario,
        seed,
        Mode::Sim,
        runs,
        trace,
        sim_seconds,
        wall_seconds,
    )
}

/// The summary of a scenario's runs: SLO checks on the last (primary) run,
/// data-plane checks across all of them.
fn finish(
    scenario: &Scenario,
    seed: u64,
    mode: Mode,
    runs: Vec<(VariantRun, Arc<Mutex<Evidence>>)>,
    trace: Trace,
    sim_seconds: f64,
    wall_seconds: f64,
) -> Result<RunOutput, EngineError> {
    let (mut runs, mut evidences): (Vec<VariantRun>, Vec<_>) = runs.into_iter().unzip();
    let mesh_checks = dataplane::mesh_checks(scenario, &runs, &trace.events());
    let primary = runs
        .pop()
        .ok_or_else(|| EngineError::NoReport("the scenario made no run".into()))?;
    let evidence = evidences.pop().expect("one evidence per run");
    let mut summary = checks::summarize(
        scenario,
        seed,
        mode,
        &primary.load,
        &trace,
        sim_seconds,
        wall_seconds,
    );
    summary.checks.extend(mesh_checks);
    add_ledger_checks(scenario, &mut summary, &evidence);
    summary.verdict = Summary::verdict_of(&summary.checks);
    Ok(RunOutput {
        summary,
        load: primary.load,
        trace,
    })
}

/// One simulated run of one variant.
fn simulate(
    name: String,
    scenario: Scenario,
    seed: u64,
    trace: &Trace,
) -> Result<(VariantRun, Arc<Mutex<Evidence>>, f64), EngineError> {
    let seed = Seed::new(seed);
    let trace_from_seq = trace.count();
    let install = Install::new(scenario.clone(), seed, SimConfig::epoch())?;
    let plan = load_plan(&scenario);
    let config = SimConfig {
        seed,
        tick: scenario.sim.tick.0,
        link_latency_min: scenario.sim.link_latency_min.0,
        link_latency_max: scenario.sim.link_latency_max.0,
        duration_limit: scenario.workload.warmup.0
            + plan.duration()
            + DRAIN_MAX
            + scenario.app.drain_max.0
            + Duration::from_secs(60),
        tcp_capacity: 4096,
    };
    let mut world = SimWorld::new(config, trace.clone());
    for (host, role) in install.hosts() {
        let install = install.clone();
        world.host(&host, move |env| {
            let software = install.software(&role, env);
            async move {
                software
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            }
        });
    }
    let sink = Arc::new(Mutex::new(None));
    let evidence = Arc::new(Mutex::new(Evidence::default()));
    let (client_install, client_sink, client_evidence) =
        (install.clone(), sink.clone(), evidence.clone());
    world.client("loadgen", move |env| async move {
        drive_load(client_install, env, client_sink, client_evidence)
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
    });
    world.run_with(
        &fault_schedule(&scenario, seed),
        &mut crate::operator::OperatorHook::new(install.clone()),
    )?;
    let sim_seconds = world.elapsed().as_secs_f64();
    let load = sink.lock().expect("sink poisoned").take().ok_or_else(|| {
        EngineError::NoReport("no report from the simulated load generator".into())
    })?;
    let run = VariantRun {
        name,
        load,
        telemetry: install.telemetry.report(),
        rogues: install.rogues.attempts(),
        scenario,
        trace_from_seq,
    };
    Ok((run, evidence, sim_seconds))
}

/// Runs a scenario on real loopback sockets with the OS clock (once per
/// variant, like the simulation), faults included.
pub fn run_real(scenario: &Scenario, seed: u64) -> Result<RunOutput, EngineError> {
    run_real_scaled(scenario, seed, 1.0)
}

/// [`run_real`] with every scheduled time (load phases, faults, check
/// windows, heal) multiplied by `time_scale`: 0.5 runs a 40 s scenario in
/// 20 s of wall time. Warmup is not scaled (bootstrap takes what it takes).
pub fn run_real_scaled(
    scenario: &Scenario,
    seed: u64,
    time_scale: f64,
) -> Result<RunOutput, EngineError> {
    let wall = WallTimer::start();
    let scaled = crate::realworld::time_scaled(scenario, time_scale);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let trace = Trace::hash_only();
    let mut runs = Vec::new();
    for (name, variant) in spec::mesh::variants(&scaled) {
        // The schedule is drawn from the unscaled scenario (same seed, same
        // draws as the simulation), then stretched.
        let unscaled = spec::mesh::variants(scenario)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| variant.clone());
        let schedule = fault_schedule(&unscaled, Seed::new(seed));
        runs.push(runtime.block_on(real_once(name, variant, seed, &trace, schedule, time_scale))?);
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    let seconds = wall.seconds();
    finish(&scaled, seed, Mode::Real, runs, trace, seconds, seconds)
}

/// One real run of one variant: every host on its own runtime thread, the
/// fault schedule applied through the seam's fault layer.
async fn real_once(
    name: String,
    scenario: Scenario,
    seed: u64,
    trace: &Trace,
    schedule: FaultSchedule,
    time_scale: f64,
) -> Result<(VariantRun, Arc<Mutex<Evidence>>), EngineError> {
    use crate::realworld::{RealWorld, run_schedule};
    let seed = Seed::new(seed);
    let trace_from_seq = trace.count();
    let wall_now = SystemClock::new(SkewHandle::default()).wall();
    let install = Install::new(scenario.clone(), seed, wall_now)?;
    let faulty = !schedule.faults.is_empty();
    let mut world = RealWorld::new(install.clone(), seed, trace.clone(), faulty);
    let loadgen_env = world.env_for("loadgen");
    let started = tokio::time::Instant::now();
    world.start_all();
    let world = Arc::new(Mutex::new(world));
    let hook = Box::new(crate::operator::OperatorHook::new(install.clone()));
    let executor = seam::task::spawn(run_schedule(
        world.clone(),
        schedule,
        hook,
        started,
        (scenario.workload.warmup.0, time_scale),
    ));
    let sink = Arc::new(Mutex::new(None));
    let evidence = Arc::new(Mutex::new(Evidence::default()));
    let outcome = drive_load(install.clone(), loadgen_env, sink.clone(), evidence.clone()).await;
    executor.abort();
    let stopping = world.clone();
    let _ = tokio::task::spawn_blocking(move || {
        stopping.lock().expect("real world poisoned").stop_all()
    })
    .await;
    outcome?;
    let load =
        sink.lock().expect("sink poisoned").take().ok_or_else(|| {
            EngineError::NoReport("no report from the real load generator".into())
        })?;
    let run = VariantRun {
        name,
        load,
        telemetry: install.telemetry.report(),
        rogues: install.rogues.attempts(),
        scenario,
        trace_from_seq,
    };
    Ok((run, evidence))
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
