//! Exploring many seeds: swarm schedules, parallel runs, determinism
//! re-checks.
//!
//! A scenario is kept as its TOML document as well as its parsed form, so
//! that a variant (a swarm schedule drawn for one seed, a shrunk fault
//! list) is a small edit of the document, parsed and validated exactly like
//! a file the user wrote, and can be written out as one.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha12Rng;
use reports::{Check, CheckKind, Summary, Verdict};
use seam::{Seed, Trace};

use spec::{ActionKind, Scenario, SpecError, SwarmSpec, format_duration};

/// Seed-tree label of swarm schedules (`swarm`).
pub const SEED_LABEL_SWARM: &str = "swarm";

/// Why a scenario source could not be read or edited.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file, or an edit of it, is not a valid scenario.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The document could not be written back as TOML.
    #[error("cannot render the scenario as TOML: {0}")]
    Render(String),
}

/// A scenario file: its document, for edits, and its parsed form.
#[derive(Clone, Debug)]
pub struct ScenarioSource {
    /// Where it was read from (for messages and reproduce commands).
    pub path: PathBuf,
    /// The TOML document.
    pub doc: toml::Table,
    /// The parsed, validated scenario.
    pub scenario: Scenario,
}

impl ScenarioSource {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<ScenarioSource, SourceError> {
        let scenario = Scenario::load(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let doc: toml::Table = toml::from_str(&text).map_err(|e| SpecError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(ScenarioSource {
            path: path.to_owned(),
            doc,
            scenario,
        })
    }

    /// A variant: `doc` rendered, parsed and validated like a file.
    pub fn variant(&self, doc: toml::Table) -> Result<ScenarioSource, SourceError> {
        let text = render(&doc)?;
        let scenario = Scenario::parse(&self.path, &text)?;
        Ok(ScenarioSource {
            path: self.path.clone(),
            doc,
            scenario,
        })
    }

    /// The document as TOML text.
    pub fn text(&self) -> Result<String, SourceError> {
        render(&self.doc)
    }

    /// The scenario with the swarm schedule of `seed` written into it: the
    /// drawn faults appended to its own, default phases if it has none,
    /// `[swarm]` removed, and `seed` set, so `meshsim run` replays it.
    pub fn with_swarm(&self, seed: u64) -> Result<ScenarioSource, SourceError> {
        let draw = swarm_draw(&self.scenario, Seed::new(seed));
        let mut doc = self.doc.clone();
        let faults = doc
            .entry("faults")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let toml::Value::Array(list) = faults {
            list.extend(draw.faults.into_iter().map(toml::Value::Table));
        }
        if let Some(phases) = draw.phases {
            doc.insert("phases".into(), toml::Value::Table(phases));
        }
        doc.remove("swarm");
        doc.insert("seed".into(), toml::Value::Integer(seed as i64));
        self.variant(doc)
    }
}

/// Renders a document as TOML.
pub fn render(doc: &toml::Table) -> Result<String, SourceError> {
    toml::to_string(doc).map_err(|e| SourceError::Render(e.to_string()))
}

/// What a swarm draw adds to a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmDraw {
    /// `[[faults]]` entries, in file form.
    pub faults: Vec<toml::Table>,
    /// A `[phases]` table, when the scenario has none.
    pub phases: Option<toml::Table>,
}

fn table(entries: Vec<(&str, toml::Value)>) -> toml::Table {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

fn text(value: impl Into<String>) -> toml::Value {
    toml::Value::String(value.into())
}

fn names(list: &[String]) -> toml::Value {
    toml::Value::Array(list.iter().map(|n| text(n.clone())).collect())
}

fn uniform_ms(rng: &mut ChaCha12Rng, low: Duration, high: Duration) -> Duration {
    let (low, high) = (low.as_millis() as u64, high.as_millis() as u64);
    Duration::from_millis(rng.random_range(low..=high.max(low)))
}

fn uniform(rng: &mut ChaCha12Rng, low: f64, high: f64) -> f64 {
    if high > low {
        rng.random_range(low..=high)
    } else {
        low
    }
}

/// Default phases for a swarm run of a scenario that declares none: heal
/// halfway through the workload, then converge within 30 % of it.
fn default_phases(scenario: &Scenario) -> (Duration, toml::Table) {
    let workload: Duration = scenario.workload.phases.iter().map(|p| p.duration.0).sum();
    let interval = scenario.workload.interval.0;
    let whole_ms = |d: Duration| Duration::from_millis(d.as_millis() as u64);
    let heal = whole_ms(workload / 2);
    let stable = whole_ms((workload / 10).clamp(interval, Duration::from_secs(2).max(interval)));
    let within = whole_ms(
        workload
            .saturating_sub(heal + stable)
            .min(workload * 3 / 10),
    );
    let phases = table(vec![
        ("heal_at", text(format_duration(heal))),
        ("converge_within", text(format_duration(within))),
        ("stable_for", text(format_duration(stable))),
    ]);
    (heal, phases)
}

/// Draws a fault schedule for `seed` within the scenario's `[swarm]`
/// bounds (or the defaults). Every draw comes from `swarm/…` in the seed
/// tree, so the schedule is a function of the seed alone.
pub fn swarm_draw(scenario: &Scenario, seed: Seed) -> SwarmDraw {
    let spec = scenario.swarm.clone().unwrap_or_default();
    let mut rng = seed.child(SEED_LABEL_SWARM).rng();
    let (heal, phases) = match &scenario.phases {
        Some(p) => (p.heal_at.get_ref().0, None),
        None => {
            let (heal, table) = default_phases(scenario);
            (heal, Some(table))
        }
    };
    // Swarm testing: each seed enables a random subset of the actions.
    let mut kinds: Vec<ActionKind> = spec.actions.iter().map(|a| *a.get_ref()).collect();
    kinds.sort();
    kinds.dedup();
    let mut enabled: Vec<ActionKind> = kinds
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.5))
        .collect();
    if enabled.is_empty() && !kinds.is_empty() {
        enabled.push(kinds[rng.random_range(0..kinds.len())]);
    }
    let targets = swarm_targets(scenario, &spec);
    let count = rng.random_range(0..=spec.faults_max);
    let mut faults = Vec::new();
    for _ in 0..count {
        if enabled.is_empty() || targets.is_empty() || heal.is_zero() {
            break;
        }
        let kind = enabled[rng.random_range(0..enabled.len())];
        let window = uniform_ms(&mut rng, spec.window[0].0, spec.window[1].0).min(heal / 2);
        let start = uniform_ms(
            &mut rng,
            Duration::ZERO,
            heal.saturating_sub(window + Duration::from_millis(1)),
        );
        if let Some(fault) = swarm_fault(scenario, &spec, &targets, kind, &mut rng) {
            let mut fault = fault;
            fault.insert("at".into(), text(format_duration(start)));
            fault.insert(
                "duration".into(),
                text(format_duration(window.max(Duration::from_millis(1)))),
            );
            fault.insert("action".into(), text(kind.name()));
            faults.push(fault);
        }
    }
    SwarmDraw { faults, phases }
}

/// The names swarm faults may hit.
fn swarm_targets(scenario: &Scenario, spec: &SwarmSpec) -> Vec<String> {
    if spec.targets.is_empty() {
        let mut targets: Vec<String> = scenario
            .services
            .iter()
            .map(|s| s.name.get_ref().clone())
            .collect();
        targets.extend(["ca".to_owned(), "control".to_owned()]);
        targets
    } else {
        spec.targets.iter().map(|t| t.get_ref().clone()).collect()
    }
}

/// One host of a target (a single replica, not the whole service).
fn one_host(scenario: &Scenario, target: &str, rng: &mut ChaCha12Rng) -> Option<String> {
    let hosts = scenario.names().resolve(target)?;
    (!hosts.is_empty()).then(|| hosts[rng.random_range(0..hosts.len())].clone())
}

fn swarm_fault(
    scenario: &Scenario,
    spec: &SwarmSpec,
    targets: &[String],
    kind: ActionKind,
    rng: &mut ChaCha12Rng,
) -> Option<toml::Table> {
    let pick = |rng: &mut ChaCha12Rng| targets[rng.random_range(0..targets.len())].clone();
    // The other end of a link: another target, or the load generator.
    let other = |rng: &mut ChaCha12Rng, first: &str| {
        let mut ends: Vec<String> = targets.iter().filter(|t| *t != first).cloned().collect();
        ends.push("loadgen".to_owned());
        ends[rng.random_range(0..ends.len())].clone()
    };
    let fault = match kind {
        ActionKind::Partition | ActionKind::Hold => {
            let a = pick(rng);
            let b = other(rng, &a);
            table(vec![("a", names(&[a])), ("b", names(&[b]))])
        }
        ActionKind::PartitionOneway => {
            let from = pick(rng);
            let to = other(rng, &from);
            table(vec![("from", names(&[from])), ("to", names(&[to]))])
        }
        ActionKind::Latency => {
            let a = pick(rng);
            let b = other(rng, &a);
            let latency = uniform_ms(rng, spec.latency[0].0, spec.latency[1].0);
            let jitter = uniform_ms(rng, Duration::ZERO, latency / 2);
            table(vec![
                ("a", names(&[a])),
                ("b", names(&[b])),
                ("latency", text(format_duration(latency))),
                ("jitter", text(format_duration(jitter))),
            ])
        }
        ActionKind::Loss => {
            let a = pick(rng);
            let b = other(rng, &a);
            let rate = (uniform(rng, spec.loss[0], spec.loss[1]) * 1e4).round() / 1e4;
            table(vec![
                ("a", names(&[a])),
                ("b", names(&[b])),
                ("rate", toml::Value::Float(rate)),
            ])
        }
        ActionKind::Crash => {
            let target = pick(rng);
            let host = one_host(scenario, &target, rng)?;
            table(vec![("hosts", names(&[host]))])
        }
        ActionKind::ClockSkew => {
            let target = pick(rng);
            let host = one_host(scenario, &target, rng)?;
            let magnitude = uniform_ms(rng, spec.skew[0].0, spec.skew[1].0);
            let sign = if rng.random_bool(0.5) { "-" } else { "+" };
            table(vec![
                ("hosts", names(&[host])),
                (
                    "skew",
                    text(format!("{sign}{}", format_duration(magnitude))),
                ),
            ])
        }
        ActionKind::Slow => {
            let target = pick(rng);
            let host = one_host(scenario, &target, rng)?;
            let factor = (uniform(rng, spec.slow[0], spec.slow[1]) * 100.0).round() / 100.0;
            table(vec![
                ("hosts", names(&[host])),
                ("factor", toml::Value::Float(factor)),
            ])
        }
        _ => return None,
    };
    Some(fault)
}

/// How one seed's run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every judged check passed.
    Pass,
    /// Some judged checks failed.
    Fail(Vec<Check>),
    /// The run could not complete (engine error or panic): always a bug.
    Error(String),
}

/// One seed's result.
#[derive(Clone, Debug)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The trace hash (empty after an error).
    pub trace_hash: String,
    /// Fault actions in its schedule (not counting the heal).
    pub actions: usize,
    /// Checks that failed but do not count (whole-run SLOs under swarm).
    pub excused: Vec<String>,
    /// Wall-clock seconds the run took (reporting only).
    pub wall_seconds: f64,
}

/// Which checks decide a seed's fate.
///
/// Plain runs are judged by every check. Swarm runs inject faults on
/// purpose, so whole-run SLOs are expected to break; they are judged by the
/// checks that must hold anyway: security, ledger and liveness (which
/// carries the "SLOs recover after the heal" requirement).
pub fn judged_failures(summary: &Summary, swarm: bool) -> Vec<Check> {
    summary
        .checks
        .iter()
        .filter(|c| !(c.passed || (swarm && c.kind == CheckKind::Slo)))
        .cloned()
        .collect()
}

/// A panic's message, from its payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".to_owned())
}

/// Runs one scenario with one seed, hash-only, catching panics.
pub fn run_seed(scenario: &Scenario, seed: u64, swarm: bool) -> SeedResult {
    #[allow(clippy::disallowed_methods)] // reporting only: outside the simulation.
    let started = std::time::Instant::now();
    let actions = scenario.fault_schedule(Seed::new(seed)).action_count();
    let ran = catch_unwind(AssertUnwindSafe(|| {
        engine::run_sim(scenario, seam::Seed::new(seed), Trace::hash_only())
    }));
    let mut excused = Vec::new();
    let (outcome, trace_hash) = match ran {
        Ok(Ok(output)) => {
            let failures = judged_failures(&output.summary, swarm);
            excused = output
                .summary
                .checks
                .iter()
                .filter(|c| !c.passed && !failures.contains(c))
                .map(|c| c.name.clone())
                .collect();
            let hash = output.trace.hash_hex();
            if failures.is_empty() {
                debug_assert!(swarm || output.summary.verdict == Verdict::Pass);
                (Outcome::Pass, hash)
            } else {
                (Outcome::Fail(failures), hash)
            }
        }
        Ok(Err(error)) => (Outcome::Error(error.to_string()), String::new()),
        Err(payload) => (
            Outcome::Error(format!("panicked: {}", panic_message(payload.as_ref()))),
            String::new(),
        ),
    };
    SeedResult {
        seed,
        outcome,
        trace_hash,
        actions,
        excused,
        wall_seconds: started.elapsed().as_secs_f64(),
    }
}

/// How to explore.
#[derive(Clone, Debug, Default)]
pub struct ExploreOptions {
    /// Draw a swarm schedule per seed.
    pub swarm: bool,
    /// Runs at once (one simulation per thread).
    pub jobs: usize,
    /// Seeds re-run to check determinism even when they pass (every
    /// failing seed is re-run too); see [`sampled_for_recheck`].
    pub recheck: Vec<u64>,
    /// Set from outside (a signal handler) to stop: no new run starts, and
    /// [`explore`] returns at once with what had finished.
    pub stop: Arc<AtomicBool>,
}

/// A determinism re-check: the same seed run again, on whichever thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recheck {
    /// The seed.
    pub seed: u64,
    /// First run's hash.
    pub first: String,
    /// Second run's hash (or the error it hit).
    pub second: String,
}

impl Recheck {
    /// Whether both runs agreed.
    pub fn agreed(&self) -> bool {
        self.first == self.second
    }
}

/// Everything an exploration found.
#[derive(Clone, Debug, Default)]
pub struct ExploreReport {
    /// Every seed's first run, in seed order.
    pub results: Vec<SeedResult>,
    /// The determinism re-checks, in seed order.
    pub rechecks: Vec<Recheck>,
    /// Seeds whose scenario variant could not be built (swarm only).
    pub invalid: Vec<(u64, String)>,
    /// The stop flag was raised before every seed finished.
    pub interrupted: bool,
}

impl ExploreReport {
    /// Results that failed or errored.
    pub fn failures(&self) -> Vec<&SeedResult> {
        self.results
            .iter()
            .filter(|r| r.outcome != Outcome::Pass)
            .collect()
    }

    /// Re-checks whose hashes differed.
    pub fn mismatches(&self) -> Vec<&Recheck> {
        self.rechecks.iter().filter(|r| !r.agreed()).collect()
    }
}

/// Whether the seed at `index` in the whole seed range is re-checked: one
/// in `one_in` by position, starting with the first, so every range
/// re-checks the same share (5 % of 1,000 seeds is 50 re-runs, not "about"
/// 50). Positions count in the whole range, not in a shard, so shards
/// together re-check exactly the seeds one unsharded run would.
pub fn sampled_for_recheck(index: usize, one_in: u64) -> bool {
    one_in > 0 && (index as u64).is_multiple_of(one_in)
}

/// Everything about one seed, once it is done (first run and, if it was
/// re-run, the re-check): what `explore` streams.
#[derive(Clone, Debug)]
pub struct SeedRecord {
    /// The seed.
    pub seed: u64,
    /// Its first run, or why its swarm variant was not a valid scenario.
    pub first: Result<SeedResult, String>,
    /// The determinism re-run, if it had one.
    pub recheck: Option<Recheck>,
}

/// A progress event.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A first run finished.
    Ran(SeedResult),
    /// A re-check finished.
    Rechecked(Recheck),
    /// A seed's swarm variant was not a valid scenario.
    Invalid(u64, String),
    /// A seed is done (after its re-check, if any): stream it.
    Finished(SeedRecord),
}

/// The scenario one seed runs (the swarm variant, or the scenario itself).
fn scenario_for(source: &ScenarioSource, seed: u64, swarm: bool) -> Result<Scenario, String> {
    if swarm {
        source
            .with_swarm(seed)
            .map(|s| s.scenario)
            .map_err(|e| e.to_string())
    } else {
        Ok(source.scenario.clone())
    }
}

/// A unit of work: a seed's first run, or its re-run.
#[derive(Clone, Copy, Debug)]
enum Task {
    First(u64),
    Recheck(u64),
}

/// What a worker sends back.
enum Done {
    First(u64, Result<SeedResult, String>),
    Recheck(u64, String),
}

/// The work queue the workers share with the coordinating thread.
#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    stop: Arc<AtomicBool>,
}

impl Shared {
    /// The next task, waiting while the queue is empty but not closed;
    /// `None` once closed or stopped.
    fn next(&self) -> Option<Task> {
        let mut queue = self.queue.lock().expect("queue poisoned");
        loop {
            if self.stop.load(Ordering::SeqCst) || queue.closed {
                return None;
            }
            if let Some(task) = queue.tasks.pop_front() {
                return Some(task);
            }
            // Woken by a push or close; the timeout notices the stop flag.
            queue = self
                .wake
                .wait_timeout(queue, STOP_POLL)
                .expect("queue poisoned")
                .0;
        }
    }

    fn push_front(&self, task: Task) {
        self.queue
            .lock()
            .expect("queue poisoned")
            .tasks
            .push_front(task);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.queue.lock().expect("queue poisoned").closed = true;
        self.wake.notify_all();
    }
}

/// How often a waiting thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Runs every seed on `options.jobs` threads, one simulation per thread at
/// a time. A seed that fails, or is in `options.recheck`, is re-run at once
/// on whichever thread is free (its re-run goes to the front of the queue)
/// and the hashes compared; then the seed is done and reported as
/// [`Progress::Finished`], so results stream in the order seeds finish.
///
/// When `options.stop` is raised, no new run starts and this returns at
/// once with the seeds that were done (`interrupted` set); runs still in
/// flight are abandoned to their threads, which end with the process.
pub fn explore(
    source: &ScenarioSource,
    seeds: &[u64],
    options: &ExploreOptions,
    mut progress: impl FnMut(Progress),
) -> ExploreReport {
    let swarm = options.swarm;
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            tasks: seeds.iter().map(|s| Task::First(*s)).collect(),
            closed: false,
        }),
        wake: Condvar::new(),
        stop: options.stop.clone(),
    });
    let source = Arc::new(source.clone());
    let (sender, receiver) = mpsc::channel();
    for _ in 0..options.jobs.max(1) {
        let (shared, source, sender) = (shared.clone(), source.clone(), sender.clone());
        std::thread::spawn(move || {
            while let Some(task) = shared.next() {
                let done = match task {
                    Task::First(seed) => Done::First(
                        seed,
                        scenario_for(&source, seed, swarm).map(|s| run_seed(&s, seed, swarm)),
                    ),
                    Task::Recheck(seed) => Done::Recheck(
                        seed,
                        scenario_for(&source, seed, swarm)
                            .map(|s| outcome_fingerprint(&run_seed(&s, seed, swarm)))
                            .unwrap_or_else(|e| format!("invalid: {e}")),
                    ),
                };
                if sender.send(done).is_err() {
                    break;
                }
            }
        });
    }
    drop(sender);
    let mut report = ExploreReport::default();
    let mut awaiting: BTreeMap<u64, SeedResult> = BTreeMap::new();
    let mut finished = 0;
    while finished < seeds.len() {
        if options.stop.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
        let done = match receiver.recv_timeout(STOP_POLL) {
            Ok(done) => done,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let record = match done {
            Done::First(seed, Err(message)) => {
                progress(Progress::Invalid(seed, message.clone()));
                report.invalid.push((seed, message.clone()));
                SeedRecord {
                    seed,
                    first: Err(message),
                    recheck: None,
                }
            }
            Done::First(seed, Ok(result)) => {
                progress(Progress::Ran(result.clone()));
                if result.outcome != Outcome::Pass || options.recheck.contains(&seed) {
                    awaiting.insert(seed, result);
                    shared.push_front(Task::Recheck(seed));
                    continue;
                }
                report.results.push(result.clone());
                SeedRecord {
                    seed,
                    first: Ok(result),
                    recheck: None,
                }
            }
            Done::Recheck(seed, second) => {
                let Some(result) = awaiting.remove(&seed) else {
                    continue;
                };
                let recheck = Recheck {
                    seed,
                    first: outcome_fingerprint(&result),
                    second,
                };
                progress(Progress::Rechecked(recheck.clone()));
                report.results.push(result.clone());
                report.rechecks.push(recheck.clone());
                SeedRecord {
                    seed,
                    first: Ok(result),
                    recheck: Some(recheck),
                }
            }
        };
        finished += 1;
        progress(Progress::Finished(record));
    }
    shared.close();
    // Interrupted: a first run that was waiting for its re-run is still a
    // finished result; keep it, without the re-check.
    for (seed, result) in std::mem::take(&mut awaiting) {
        report.results.push(result.clone());
        progress(Progress::Finished(SeedRecord {
            seed,
            first: Ok(result),
            recheck: None,
        }));
    }
    report.results.sort_by_key(|r| r.seed);
    report.rechecks.sort_by_key(|r| r.seed);
    report.invalid.sort();
    report
}

/// What a re-run must reproduce: the trace hash, or the error text.
fn outcome_fingerprint(result: &SeedResult) -> String {
    match &result.outcome {
        Outcome::Error(error) => format!("error: {error}"),
        _ => result.trace_hash.clone(),
    }
}

/// Parses `A..B` (B excluded), `A..=B` or a single seed `N`.
pub fn parse_seed_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("\"{s}\" is not a seed (a whole number)"))
    };
    let range = if let Some((low, high)) = text.split_once("..=") {
        let high = number(high)?;
        number(low)?..high.checked_add(1).ok_or("seed range too large")?
    } else if let Some((low, high)) = text.split_once("..") {
        number(low)?..number(high)?
    } else {
        let seed = number(text)?;
        seed..seed.checked_add(1).ok_or("seed too large")?
    };
    if range.is_empty() {
        return Err(format!("seed range \"{text}\" is empty"));
    }
    Ok(range)
}

/// Parses `i/n` (1-based, like CI matrices): shard `i` of `n`.
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("shard \"{text}\" must look like 2/4 (shard 2 of 4, counting from 1)");
    let (index, count) = text.split_once('/').ok_or_else(bad)?;
    let index: u64 = index.trim().parse().map_err(|_| bad())?;
    let count: u64 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 || index == 0 || index > count {
        return Err(bad());
    }
    Ok((index, count))
}

/// The seeds of `range` that belong to shard `index` of `count`
/// (round-robin, so every shard gets a similar mix).
pub fn shard_seeds(range: std::ops::Range<u64>, shard: Option<(u64, u64)>) -> Vec<u64> {
    let (index, count) = shard.unwrap_or((1, 1));
    range
        .enumerate()
        .filter(|(i, _)| *i as u64 % count == index - 1)
        .map(|(_, seed)| seed)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_and_shards() {
        assert_eq!(parse_seed_range("1..200"), Ok(1..200));
        assert_eq!(parse_seed_range("1..=200"), Ok(1..201));
        assert_eq!(parse_seed_range("7"), Ok(7..8));
        assert!(parse_seed_range("5..5").is_err());
        assert!(parse_seed_range("a..b").is_err());
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        assert!(parse_shard("0/4").is_err());
        assert!(parse_shard("5/4").is_err());
        let all: Vec<u64> = (1..4)
            .flat_map(|i| shard_seeds(10..20, Some((i, 3))))
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (10..20).collect::<Vec<_>>(), "shards partition");
        assert_eq!(shard_seeds(10..20, Some((1, 3))), [10, 13, 16, 19]);
    }

    #[test]
    fn one_seed_in_twenty_is_rechecked() {
        assert_eq!(
            (0..1000).filter(|i| sampled_for_recheck(*i, 20)).count(),
            50
        );
        assert!(sampled_for_recheck(0, 20));
        assert_eq!((0..19).filter(|i| sampled_for_recheck(*i, 20)).count(), 1);
        assert_eq!((0..5).filter(|i| sampled_for_recheck(*i, 0)).count(), 0);
    }
}
