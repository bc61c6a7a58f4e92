//! The composition root: wires mesh, load generator and checks together on
//! either the simulated or the real network, and summarizes the run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apps::{App, Evidence};
use checks::RunEvidence;
use checks::dataplane::VariantRun;
use loadgen::{Completion, LoadReport, Target};
use mesh::client::Sidecar;
use mesh::{MeshError, ports};
use reports::Summary;
use seam::real::SystemClock;
use seam::{Clock, HostEnv, LOCALHOST, Seed, SkewHandle, Trace};
use sim::{EventWorld, SimConfig, SimWorld, World};
use spec::{Network, Scenario};

use crate::install::Install;
use crate::plan::{RunPlan, VariantPlan};

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
    /// The pods of a run in network namespaces could not be set up.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
}

/// How a real run is set up (`meshsim run --real …`).
#[derive(Clone, Copy, Debug)]
pub struct RealOptions {
    /// Every scheduled time is multiplied by this ([`run_real_scaled`]).
    pub time_scale: f64,
    /// Every host in a pod of its own (`--netns`, [`crate::netns`]).
    pub netns: bool,
    /// Where keys and tokens come from: the OS, or (`--insecure-derived-keys`,
    /// reproducible and public) the seed.
    pub keys: mesh::KeyMode,
}

impl Default for RealOptions {
    fn default() -> Self {
        RealOptions {
            time_scale: 1.0,
            netns: false,
            keys: mesh::KeyMode::Os,
        }
    }
}

/// Everything a run produced.
pub struct RunOutput {
    /// The summary (summary.json).
    pub summary: Summary,
    /// What the load generator measured.
    pub load: LoadReport,
    /// The run trace.
    pub trace: Trace,
    /// What the run was drawn to do (the report charts its times).
    pub plan: RunPlan,
    /// The primary variant's telemetry hub (metrics, spans).
    pub telemetry: mesh::telemetry::Telemetry,
    /// The wall time of run time zero: the simulation's fixed epoch, or
    /// when a real run started.
    pub epoch: std::time::SystemTime,
}

/// How long after the last arrival the run waits for stragglers, at most.
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// The load generator host: its own outbound-only sidecar, then the plan,
/// then the app's final read.
async fn drive_load(
    install: Arc<Install>,
    variant: VariantPlan,
    env: HostEnv,
    app: Arc<dyn App>,
    sink: Arc<Mutex<Option<(LoadReport, Evidence)>>>,
) -> Result<(), MeshError> {
    let started = tokio::time::Instant::now();
    let scenario = &variant.scenario;
    let proxy = mesh::proxy::start(
        install.proxy_config(seam::hosts::LOADGEN, false),
        env.clone(),
    );
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
        authority: target_service.clone(),
        tls: None,
    };
    let evidence = Arc::new(Mutex::new(Evidence::default()));
    let abort = checks::abort::AbortMonitor::new(scenario);
    let observer = observer(&env, app.clone(), evidence.clone(), abort.clone());
    if let Some(monitor) = &abort {
        seam::task::spawn(monitor.clone().watch(tokio::time::Instant::now()));
    }
    let limit = variant.load.duration() + DRAIN_MAX;
    let run = loadgen::run_until(
        env.net.clone(),
        target,
        variant.load,
        install.seed.child("workload"),
        observer,
        abort.as_ref().map(|m| m.stop_signal()),
    );
    let mut report = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| MeshError::Timeout(limit.as_millis() as u64))?
        .map_err(|e| MeshError::BadRequest(e.to_string()))?;
    if let Some(verdict) = abort.and_then(|m| m.annotate(&mut report)) {
        env.record(seam::event::RUN_ABORTED, verdict);
    }
    let mut evidence = std::mem::take(&mut *evidence.lock().expect("evidence poisoned"));
    if let Some(read) = app.final_read(&env).await {
        evidence.final_state = read.final_state;
    }
    *sink.lock().expect("sink poisoned") = Some((report, evidence));
    Ok(())
}

/// What the load generator does with each finished request: feed the
/// abort monitor, hand it to the app's evidence, and trace it.
fn observer(
    env: &HostEnv,
    app: Arc<dyn App>,
    evidence: Arc<Mutex<Evidence>>,
    abort: Option<checks::abort::AbortMonitor>,
) -> Arc<dyn Fn(&Completion) + Send + Sync> {
    let env = env.clone();
    Arc::new(move |c: &Completion| {
        if let Some(monitor) = &abort {
            monitor.record(c);
        }
        app.observe(c, &mut evidence.lock().expect("evidence poisoned"));
        let status = c.status.map_or("none".to_owned(), |s| s.to_string());
        env.record(
            seam::event::LOAD_DONE,
            format!(
                "seq={} op={} status={status} latency_us={}",
                c.seq,
                c.op,
                c.latency.as_micros()
            ),
        );
    })
}

/// Waits until a request to `service` through the local sidecar gets an
/// answer from the service itself (not a proxy error such as "no
/// endpoints"): the mesh is up end to end. Probes are not measured.
async fn wait_until_routable(env: &HostEnv, service: &str) {
    let sidecar = Sidecar::new(env.clone());
    loop {
        let probe =
            Sidecar::request(service, http::Method::GET, "/").body(mesh::http::Body::default());
        if let Ok(probe) = probe {
            let answer = sidecar
                .send_with_timeout(probe, Duration::from_secs(2))
                .await;
            if matches!(&answer, Ok(r) if !Sidecar::is_proxy_error(r)) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one variant's run left behind.
struct VariantOutcome {
    run: VariantRun,
    app_evidence: Evidence,
    sim_seconds: f64,
    telemetry: mesh::telemetry::Telemetry,
    epoch: std::time::SystemTime,
}

/// Runs a scenario in the simulator: once per `[[mesh.variants]]` entry
/// (same seed, same arrivals), or once if it declares none.
pub fn run_sim(scenario: &Scenario, seed: Seed, trace: Trace) -> Result<RunOutput, EngineError> {
    let wall = WallTimer::start();
    let plan = RunPlan::sim(scenario, seed);
    let outcomes = plan
        .variants
        .iter()
        .map(|variant| simulate(variant, seed, &trace))
        .collect::<Result<Vec<_>, _>>()?;
    let sim_seconds = outcomes.iter().map(|o| o.sim_seconds).sum();
    finish(plan, outcomes, trace, sim_seconds, wall.seconds())
}

/// Judges a run: the checks read one evidence record; the app adds its own
/// checks on the primary variant.
fn finish(
    plan: RunPlan,
    outcomes: Vec<VariantOutcome>,
    trace: Trace,
    sim_seconds: f64,
    wall_seconds: f64,
) -> Result<RunOutput, EngineError> {
    let (telemetry, epoch) = outcomes
        .last()
        .map(|o| (o.telemetry.clone(), o.epoch))
        .ok_or_else(|| EngineError::NoReport("the scenario made no run".into()))?;
    let (variants, mut app_evidence): (Vec<VariantRun>, Vec<Evidence>) = outcomes
        .into_iter()
        .map(|o| (o.run, o.app_evidence))
        .unzip();
    let primary = plan.primary().clone();
    let app_evidence = app_evidence
        .pop()
        .ok_or_else(|| EngineError::NoReport("the scenario made no run".into()))?;
    let evidence = RunEvidence {
        seed: plan.seed,
        mode: plan.mode,
        scenario: primary.scenario.clone(),
        faults: primary.faults.clone(),
        variants,
        trace,
        sim_seconds,
        wall_seconds,
    };
    let mut summary = checks::judge(&evidence);
    summary
        .checks
        .extend(apps::for_scenario(&primary.scenario).checks(&app_evidence));
    summary.verdict = Summary::verdict_of(&summary.checks);
    let RunEvidence {
        mut variants,
        trace,
        ..
    } = evidence;
    let load = variants.pop().expect("one run per variant").load;
    Ok(RunOutput {
        summary,
        load,
        trace,
        plan,
        telemetry,
        epoch,
    })
}

/// The load generator's report and the app's evidence, once it finished.
fn take_report(
    sink: &Mutex<Option<(LoadReport, Evidence)>>,
    mode: &str,
) -> Result<(LoadReport, Evidence), EngineError> {
    sink.lock()
        .expect("sink poisoned")
        .take()
        .ok_or_else(|| EngineError::NoReport(format!("no report from the {mode} load generator")))
}

/// The sim-time budget of one variant: the whole plan, the drains, and a
/// minute of slack, after which the simulator stops with an error.
fn duration_limit(variant: &VariantPlan) -> Duration {
    let scenario = &variant.scenario;
    scenario.workload.warmup.0
        + variant.load.duration()
        + DRAIN_MAX
        + scenario.app.drain_max.0
        + Duration::from_secs(60)
}

/// One simulated run of one variant, in the world `[sim] network` picks.
fn simulate(
    variant: &VariantPlan,
    seed: Seed,
    trace: &Trace,
) -> Result<VariantOutcome, EngineError> {
    let scenario = &variant.scenario;
    let install = Install::new(scenario.clone(), seed, SimConfig::epoch())?;
    let config = SimConfig {
        seed,
        tick: scenario.sim.turmoil_tick(),
        link_latency_min: scenario.sim.link_latency_min.0,
        link_latency_max: scenario.sim.link_latency_max.0,
        duration_limit: duration_limit(variant),
        tcp_capacity: 4096,
    };
    let mut world: Box<dyn World<'_>> = match scenario.sim.network {
        Network::Event => Box::new(EventWorld::new(config, trace.clone())),
        Network::Turmoil => Box::new(SimWorld::new(config, trace.clone())),
    };
    run_variant(world.as_mut(), variant, install, trace, "simulated")
}

/// Runs one variant in `world`, any of the three (turmoil, event, real):
/// every host of the install with its software, the load generator as the
/// client, the fault schedule with the operator as the control hook.
fn run_variant(
    world: &mut dyn World<'_>,
    variant: &VariantPlan,
    install: Arc<Install>,
    trace: &Trace,
    mode: &str,
) -> Result<VariantOutcome, EngineError> {
    let scenario = &variant.scenario;
    let trace_from_seq = trace.count();
    for (host, role) in install.hosts() {
        let install = install.clone();
        world.add_host(
            &host,
            Box::new(move |env| {
                let software = install.software(&role, env);
                Box::pin(async move {
                    software
                        .await
                        .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
                })
            }),
        );
    }
    let sink = Arc::new(Mutex::new(None));
    let app = apps::for_scenario(scenario);
    let (client_install, client_variant, client_sink) =
        (install.clone(), variant.clone(), sink.clone());
    world.add_client(
        seam::hosts::LOADGEN,
        Box::new(move |env| {
            Box::pin(async move {
                drive_load(client_install, client_variant, env, app, client_sink)
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            })
        }),
    );
    world.run_with(
        &variant.faults.schedule(),
        &mut crate::operator::OperatorHook::new(install.clone()),
    )?;
    let sim_seconds = world.elapsed().as_secs_f64();
    let (load, app_evidence) = take_report(&sink, mode)?;
    Ok(VariantOutcome {
        run: variant_run(variant, &install, load, trace_from_seq),
        app_evidence,
        sim_seconds,
        telemetry: install.telemetry.clone(),
        epoch: install.ca_created,
    })
}

/// What the checks need of one variant's run.
fn variant_run(
    variant: &VariantPlan,
    install: &Install,
    load: LoadReport,
    trace_from_seq: u64,
) -> VariantRun {
    VariantRun {
        name: variant.name.clone(),
        load,
        telemetry: install.telemetry.report(),
        rogues: install.rogues.attempts(),
        scenario: variant.scenario.clone(),
        trace_from_seq,
    }
}

/// Runs a scenario on real loopback sockets with the OS clock (once per
/// variant, like the simulation), faults included.
pub fn run_real(scenario: &Scenario, seed: Seed, trace: Trace) -> Result<RunOutput, EngineError> {
    run_real_scaled(scenario, seed, 1.0, trace)
}

/// [`run_real`] with every scheduled time (load phases, faults, check
/// windows, heal) multiplied by `time_scale` in the plan itself: 0.5 runs a
/// 40 s scenario in 20 s of wall time, and the checks and the report read
/// the stretched times. Warmup is not scaled (bootstrap takes what it takes).
pub fn run_real_scaled(
    scenario: &Scenario,
    seed: Seed,
    time_scale: f64,
    trace: Trace,
) -> Result<RunOutput, EngineError> {
    let options = RealOptions {
        time_scale,
        ..RealOptions::default()
    };
    run_real_with(scenario, seed, options, trace)
}

/// [`run_real_scaled`] with every option of a real run.
pub fn run_real_with(
    scenario: &Scenario,
    seed: Seed,
    options: RealOptions,
    trace: Trace,
) -> Result<RunOutput, EngineError> {
    let wall = WallTimer::start();
    let plan = RunPlan::real(scenario, seed, options.time_scale);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcomes = plan
        .variants
        .iter()
        .map(|variant| real_once(variant, seed, &trace, runtime.handle(), options))
        .collect::<Result<Vec<_>, _>>()?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let seconds = wall.seconds();
    finish(plan, outcomes, trace, seconds, seconds)
}

/// One real run of one variant: every host on its own runtime thread, the
/// load generator on `runtime`, the fault schedule applied through the
/// seam's fault layer.
fn real_once(
    variant: &VariantPlan,
    seed: Seed,
    trace: &Trace,
    runtime: &tokio::runtime::Handle,
    options: RealOptions,
) -> Result<VariantOutcome, EngineError> {
    let wall_now = SystemClock::new(SkewHandle::default()).wall();
    // Real sockets, real keys: the CA's and every workload's come from the
    // OS, never from the seed that the scenario file publishes (unless
    // `--insecure-derived-keys` asked for exactly that).
    let install = Install::with_keys(variant.scenario.clone(), seed, wall_now, options.keys)?;
    let (trace, runtime) = (trace.clone(), runtime.clone());
    let mut world = if options.netns {
        crate::realworld::RealWorld::in_pods(install.clone(), seed, trace.clone(), runtime)?
    } else {
        crate::realworld::RealWorld::new(install.clone(), seed, trace.clone(), runtime)
    };
    run_variant(&mut world, variant, install, &trace, "real")
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
