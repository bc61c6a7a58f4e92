//! Capacity planning: the highest rate, or the fewest replicas, that meets
//! an SLO.
//!
//! Nighthawk's adaptive controller doubles the rate until a threshold
//! fails, then bisects, one slow real-time step after another. Here every
//! step is a full simulated run of the scenario with the same seed, so the
//! arrivals of two steps are the same random draws compressed in time
//! (common random numbers, [`loadgen::Arrival::scaled`]): steps differ by
//! the load, not by luck, and each costs seconds of wall time.
//!
//! [`search_rate`] is the search alone, testable with any probe; [`run`]
//! drives it with simulated runs and, for a sweep of replicas or
//! concurrency, fits the Universal Scalability Law ([`usl`]).

pub mod demand;
pub mod plan;
pub mod usl;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use reports::{CapacityAxis, CapacityPoint};
use seam::Trace;
use serde::Serialize;

use engine::{self, EngineError, RunOutput};
use spec::slo::{Measured, Threshold};
use spec::{Dur, Scenario};

/// The smallest and largest rate factor a search tries (relative to the
/// scenario's own rates): ten halvings or doublings.
pub const FACTOR_MIN: f64 = 1.0 / 1024.0;
/// See [`FACTOR_MIN`].
pub const FACTOR_MAX: f64 = 1024.0;

/// What a capacity run varies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vary {
    /// The arrival rate of every phase, by one factor.
    Rate,
    /// The replica count of one service (a rate search at each count).
    Replicas(String),
    /// The concurrency slots of one service (a rate search at each count).
    Concurrency(String),
}

impl FromStr for Vary {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let service = |s: &str| {
            if s.is_empty() {
                Err(format!("`{text}` names no service"))
            } else {
                Ok(s.to_owned())
            }
        };
        match text.split_once(':') {
            None if text == "rate" => Ok(Vary::Rate),
            Some(("replicas", s)) => service(s).map(Vary::Replicas),
            Some(("concurrency", s)) => service(s).map(Vary::Concurrency),
            _ => Err(format!(
                "unknown --vary `{text}`; expected rate, replicas:SERVICE or concurrency:SERVICE"
            )),
        }
    }
}

impl fmt::Display for Vary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vary::Rate => f.write_str("rate"),
            Vary::Replicas(s) => write!(f, "replicas:{s}"),
            Vary::Concurrency(s) => write!(f, "concurrency:{s}"),
        }
    }
}

/// How to search.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Every threshold must hold for a step to pass.
    pub slos: Vec<Threshold>,
    /// Rate only, or a sweep of sizes with a rate search at each.
    pub vary: Vary,
    /// The run seed of every step.
    pub seed: u64,
    /// Replaces every phase's duration (short steps for quick searches).
    pub step_duration: Option<Duration>,
    /// Bisection stops when (failing − passing) / passing ≤ this.
    pub precision: f64,
    /// Replica or concurrency counts to sweep (ignored for `Rate`).
    pub sizes: Vec<u32>,
    /// At most this many runs per rate search.
    pub steps_max: u32,
}

/// Why a capacity run could not be done (bad input, or an engine failure
/// outside a step).
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// The settings or the scenario cannot be searched.
    #[error("{0}")]
    Invalid(String),
    /// A run failed before any step could be judged.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One simulated run and its verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// 1-based position in the whole capacity run.
    pub index: u32,
    /// Replicas or concurrency of the varied service (sweeps only).
    pub size: Option<u32>,
    /// Rate factor applied to every phase.
    pub factor: f64,
    /// The peak phase's rate after scaling, requests per second.
    pub offered_rps: f64,
    /// Successful requests per second over the time it took to serve the
    /// whole offered load (phases plus drain): below `offered_rps` when the
    /// system falls behind.
    pub throughput_rps: f64,
    /// Throughput over the realised arrival rate (requests / phase time):
    /// about 1 while the system keeps up, lower once it falls behind.
    pub throughput_ratio: f64,
    /// Requests intended.
    pub requests: u64,
    /// Requests failed or dropped.
    pub failed: u64,
    /// Arrivals the generator dropped at its in-flight bound.
    pub dropped: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed / requests.
    pub error_rate: f64,
    /// Whether every threshold held and the generator offered the whole load.
    pub passed: bool,
    /// One line per threshold (and the reason a run did not complete).
    pub verdicts: Vec<String>,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Wall seconds.
    pub wall_seconds: f64,
}

/// How a rate search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// A passing and a failing factor within the precision.
    Bracketed,
    /// Still passing at [`FACTOR_MAX`]: the rate is a lower bound.
    NeverFailed,
    /// Failing even at [`FACTOR_MIN`].
    NeverPassed,
    /// Out of steps before the bracket closed: the rate is a lower bound.
    StepLimit,
}

/// The outcome of [`search_rate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSearch {
    /// The largest factor that passed.
    pub passing: Option<f64>,
    /// The smallest factor that failed.
    pub failing: Option<f64>,
    /// How the search ended.
    pub bound: Bound,
    /// Probes made.
    pub probes: u32,
}

/// Finds the largest factor for which `probe` passes: start at 1, double
/// (or halve) until the verdict flips, then bisect until the bracket is
/// within `precision` (relative). Assumes the verdict is monotone in the
/// factor, as it is for a queue fed common random numbers; if it is not,
/// the answer is still a passing factor next to a failing one.
pub fn search_rate<E>(
    mut probe: impl FnMut(f64) -> Result<bool, E>,
    precision: f64,
    steps_max: u32,
) -> Result<RateSearch, E> {
    let mut search = RateSearch {
        passing: None,
        failing: None,
        bound: Bound::StepLimit,
        probes: 0,
    };
    let mut factor = 1.0;
    // Expand until one passing and one failing factor are known.
    loop {
        if search.probes >= steps_max {
            return Ok(search);
        }
        search.probes += 1;
        if probe(factor)? {
            search.passing = Some(factor);
            if search.failing.is_some() {
                break;
            }
            if factor * 2.0 > FACTOR_MAX {
                search.bound = Bound::NeverFailed;
                return Ok(search);
            }
            factor *= 2.0;
        } else {
            search.failing = Some(factor);
            if search.passing.is_some() {
                break;
            }
            if factor / 2.0 < FACTOR_MIN {
                search.bound = Bound::NeverPassed;
                return Ok(search);
            }
            factor /= 2.0;
        }
    }
    // Bisect the bracket.
    while let (Some(lo), Some(hi)) = (search.passing, search.failing) {
        if (hi - lo) / lo <= precision {
            search.bound = Bound::Bracketed;
            return Ok(search);
        }
        if search.probes >= steps_max {
            return Ok(search);
        }
        search.probes += 1;
        let mid = (lo + hi) / 2.0;
        if probe(mid)? {
            search.passing = Some(mid);
        } else {
            search.failing = Some(mid);
        }
    }
    Ok(search)
}

/// The highest arrival rate of any phase, requests per second.
pub fn peak_rate(scenario: &Scenario) -> f64 {
    scenario
        .workload
        .phases
        .iter()
        .map(|p| p.arrival.get_ref().rate())
        .fold(0.0, f64::max)
}

/// `scenario` with every phase's arrival rate multiplied by `factor`.
pub fn scaled(scenario: &Scenario, factor: f64) -> Scenario {
    let mut scenario = scenario.clone();
    for phase in &mut scenario.workload.phases {
        let arrival = phase.arrival.get_ref().scaled(factor);
        *phase.arrival.get_mut() = arrival;
    }
    scenario
}

/// `scenario` with every phase lasting `step` (when given).
pub fn shortened(scenario: &Scenario, step: Option<Duration>) -> Scenario {
    let mut scenario = scenario.clone();
    if let Some(step) = step {
        for phase in &mut scenario.workload.phases {
            phase.duration = Dur(step);
        }
    }
    scenario
}

/// `scenario` with the varied service at `size` replicas or slots. Errors
/// name an unknown service, or a fault host that would no longer exist.
pub fn resized(scenario: &Scenario, vary: &Vary, size: u32) -> Result<Scenario, CapacityError> {
    let (name, replicas) = match vary {
        Vary::Rate => return Ok(scenario.clone()),
        Vary::Replicas(name) => (name, true),
        Vary::Concurrency(name) => (name, false),
    };
    if size == 0 {
        return Err(CapacityError::Invalid(format!(
            "{vary}: sizes must be at least 1"
        )));
    }
    let mut scenario = scenario.clone();
    let services: Vec<String> = scenario
        .services
        .iter()
        .map(|s| s.name.get_ref().clone())
        .collect();
    let service = scenario
        .services
        .iter_mut()
        .find(|s| s.name.get_ref() == name)
        .ok_or_else(|| {
            CapacityError::Invalid(format!(
                "--vary {vary}: no service `{name}`; services are {services:?}"
            ))
        })?;
    if replicas {
        service.replicas = size;
    } else {
        service.concurrency = size;
    }
    let hosts = scenario.host_names();
    // Group and service names resolve later; only host-shaped names are checked here.
    if let Some(missing) = fault_names(&scenario).find(|h| {
        !hosts.iter().any(|host| host == h)
            && h.rsplit_once('-')
                .is_some_and(|(_, n)| n.parse::<u32>().is_ok())
    }) {
        return Err(CapacityError::Invalid(format!(
            "with {size} replicas of {name}, a fault names host `{missing}`, which would not exist"
        )));
    }
    Ok(scenario)
}

/// Every host, group or service name the scenario's faults mention.
fn fault_names(scenario: &Scenario) -> impl Iterator<Item = &str> {
    scenario.faults.iter().flat_map(|fault| {
        [&fault.a, &fault.b, &fault.from, &fault.to, &fault.hosts]
            .into_iter()
            .flatten()
            .flatten()
            .map(|name| name.get_ref().as_str())
    })
}

/// Judges one finished run against the thresholds.
fn judge(slos: &[Threshold], scenario: &Scenario, output: &RunOutput) -> Step {
    let load = &output.load;
    let overall = &load.overall;
    let histogram = &overall.latency_us;
    let latency_ms = |quantile: Option<f64>| match quantile {
        _ if histogram.is_empty() => 0.0,
        Some(q) => histogram.value_at_quantile(q) as f64 / 1000.0,
        None => histogram.mean() / 1000.0,
    };
    let counts = Measured {
        total: overall.total(),
        failed: overall.failed,
        window_s: load.duration.as_secs_f64(),
    };
    let mut passed = true;
    let mut verdicts = Vec::with_capacity(slos.len() + 1);
    for threshold in slos {
        let (ok, measured) = threshold.evaluate(counts, latency_ms);
        passed &= ok;
        verdicts.push(format!(
            "{} {threshold}: measured {}",
            if ok { "ok" } else { "FAIL" },
            threshold.format_measured(measured)
        ));
    }
    if load.dropped > 0 {
        passed = false;
        verdicts.push(format!(
            "FAIL the generator dropped {} arrivals at its in-flight bound: the load was not offered",
            load.dropped
        ));
    }
    // The load starts after the warmup and ends when the last answer is in.
    let offered_s = load.duration.as_secs_f64().max(f64::MIN_POSITIVE);
    let serving_s =
        (output.summary.sim_seconds - scenario.workload.warmup.0.as_secs_f64()).max(offered_s);
    let throughput_rps = overall.ok as f64 / serving_s;
    let arrivals_rps = overall.total() as f64 / offered_s;
    Step {
        index: 0,
        size: None,
        factor: 1.0,
        offered_rps: peak_rate(scenario),
        throughput_rps,
        throughput_ratio: throughput_rps / arrivals_rps.max(f64::MIN_POSITIVE),
        requests: overall.total(),
        failed: overall.failed,
        dropped: load.dropped,
        p50_ms: latency_ms(Some(0.5)),
        p99_ms: latency_ms(Some(0.99)),
        error_rate: overall.failed as f64 / overall.total().max(1) as f64,
        passed,
        verdicts,
        sim_seconds: output.summary.sim_seconds,
        wall_seconds: output.summary.wall_seconds,
    }
}

/// A step whose run did not complete: it fails, and says why.
fn incomplete(scenario: &Scenario, error: &EngineError) -> Step {
    Step {
        index: 0,
        size: None,
        factor: 1.0,
        offered_rps: peak_rate(scenario),
        throughput_rps: 0.0,
        throughput_ratio: 0.0,
        requests: 0,
        failed: 0,
        dropped: 0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        error_rate: 1.0,
        passed: false,
        verdicts: vec![format!("FAIL the run did not complete: {error}")],
        sim_seconds: 0.0,
        wall_seconds: 0.0,
    }
}

/// One size of a sweep (or the single search of a rate run).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SizeResult {
    /// Replicas or slots (`None` for a rate run).
    pub size: Option<u32>,
    /// The highest passing offered rate, requests per second.
    pub max_rate_rps: Option<f64>,
    /// Throughput measured at that rate.
    pub throughput_rps: f64,
    /// How the search ended.
    pub bound: Bound,
    /// The first step (the scenario's own rates): did it pass?
    pub passes_at_scenario_rate: bool,
    /// Its p99, ms.
    pub p99_ms_at_scenario_rate: f64,
    /// Its error rate.
    pub error_rate_at_scenario_rate: f64,
}

/// Everything a capacity run found (`capacity.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityReport {
    /// Scenario name.
    pub scenario: String,
    /// Seed of every step.
    pub seed: u64,
    /// The thresholds, as given.
    pub slo: String,
    /// What was varied.
    pub vary: String,
    /// The scenario's own peak rate, requests per second.
    pub scenario_rate_rps: f64,
    /// Bisection precision.
    pub precision: f64,
    /// Phase length of every step, when overridden.
    pub step_duration_s: Option<f64>,
    /// The highest rate that met the SLO (over all sizes of a sweep).
    pub max_rate_rps: Option<f64>,
    /// The size at which it was found (sweeps).
    pub max_rate_size: Option<u32>,
    /// How the search behind `max_rate_rps` ended.
    pub bound: Bound,
    /// Sweeps: the fewest replicas or slots meeting the SLO at the
    /// scenario's own rate.
    pub fewest_size: Option<u32>,
    /// One entry per size (one entry for a rate run).
    pub sizes: Vec<SizeResult>,
    /// Sweeps: the Universal Scalability Law fitted to throughput at the
    /// highest passing rate of each size (needs three sizes).
    pub usl: Option<usl::UslFit>,
    /// Every run, in order.
    pub steps: Vec<Step>,
    /// Each synthetic service's demand at the scenario's own replica
    /// counts, the bottleneck (lowest saturation rate) first; empty for
    /// scenarios without synthetic services.
    pub demands: Vec<demand::ServiceDemand>,
}

impl CapacityReport {
    /// Rows for `capacity.csv` and `capacity.svg`: every step of a rate
    /// run by offered rate; for a sweep one row per size, with throughput
    /// at its highest passing rate and p99, errors and verdict at the
    /// scenario's own rate.
    pub fn points(&self) -> Vec<CapacityPoint> {
        let axis = if self.vary.starts_with("concurrency") {
            CapacityAxis::Concurrency
        } else {
            CapacityAxis::Replicas
        };
        if self.vary == Vary::Rate.to_string() {
            let mut points: Vec<CapacityPoint> = self
                .steps
                .iter()
                .map(|s| CapacityPoint {
                    x: s.offered_rps,
                    axis: CapacityAxis::RateRps,
                    throughput_rps: s.throughput_rps,
                    p99_ms: s.p99_ms,
                    error_rate: s.error_rate,
                    passed: s.passed,
                })
                .collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            return points;
        }
        self.sizes
            .iter()
            .map(|s| CapacityPoint {
                x: f64::from(s.size.unwrap_or(0)),
                axis,
                throughput_rps: s.throughput_rps,
                p99_ms: s.p99_ms_at_scenario_rate,
                error_rate: s.error_rate_at_scenario_rate,
                passed: s.passes_at_scenario_rate,
            })
            .collect()
    }
}

fn validate(scenario: &Scenario, settings: &Settings) -> Result<(), CapacityError> {
    let invalid = |m: String| Err(CapacityError::Invalid(m));
    if settings.slos.is_empty() {
        return invalid("capacity needs at least one --slo".into());
    }
    if !(settings.precision > 0.0 && settings.precision < 1.0) {
        return invalid(format!(
            "--precision {} must be between 0 and 1 (0.01 is 1 %)",
            settings.precision
        ));
    }
    if settings.steps_max == 0 {
        return invalid("--steps-max must be at least 1".into());
    }
    if settings.step_duration.is_some_and(|d| d.is_zero()) {
        return invalid("--step-duration must be longer than zero".into());
    }
    if settings.vary != Vary::Rate {
        if settings.sizes.is_empty() {
            return invalid(format!("--vary {} needs at least one size", settings.vary));
        }
        for &size in &settings.sizes {
            resized(scenario, &settings.vary, size)?;
        }
    }
    Ok(())
}

/// Searches `scenario` per `settings`, calling `on_step` after every run.
pub fn run(
    scenario: &Scenario,
    settings: &Settings,
    on_step: &mut dyn FnMut(&Step),
) -> Result<CapacityReport, CapacityError> {
    validate(scenario, settings)?;
    let base = shortened(scenario, settings.step_duration);
    let sizes: Vec<Option<u32>> = match settings.vary {
        Vary::Rate => vec![None],
        _ => settings.sizes.iter().map(|&s| Some(s)).collect(),
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut results = Vec::with_capacity(sizes.len());
    for size in sizes {
        let sized = match size {
            Some(n) => resized(&base, &settings.vary, n)?,
            None => base.clone(),
        };
        let first = steps.len();
        let search = search_rate(
            |factor| {
                let target = scaled(&sized, factor);
                let mut step = match engine::run_sim(
                    &target,
                    seam::Seed::new(settings.seed),
                    Trace::hash_only(),
                ) {
                    Ok(output) => judge(&settings.slos, &target, &output),
                    Err(error) => incomplete(&target, &error),
                };
                step.index = steps.len() as u32 + 1;
                step.size = size;
                step.factor = factor;
                on_step(&step);
                let passed = step.passed;
                steps.push(step);
                Ok::<_, CapacityError>(passed)
            },
            settings.precision,
            settings.steps_max,
        )?;
        results.push(size_result(size, &search, &steps[first..]));
    }
    Ok(report(scenario, settings, results, steps))
}

fn size_result(size: Option<u32>, search: &RateSearch, steps: &[Step]) -> SizeResult {
    let best = search
        .passing
        .and_then(|f| steps.iter().find(|s| s.factor == f && s.passed));
    let own_rate = steps.first();
    SizeResult {
        size,
        max_rate_rps: best.map(|s| s.offered_rps),
        throughput_rps: best.map_or(0.0, |s| s.throughput_rps),
        bound: search.bound,
        passes_at_scenario_rate: own_rate.is_some_and(|s| s.passed),
        p99_ms_at_scenario_rate: own_rate.map_or(0.0, |s| s.p99_ms),
        error_rate_at_scenario_rate: own_rate.map_or(1.0, |s| s.error_rate),
    }
}

fn report(
    scenario: &Scenario,
    settings: &Settings,
    sizes: Vec<SizeResult>,
    steps: Vec<Step>,
) -> CapacityReport {
    // The highest rate; on a tie the first (smallest) size that reached it.
    let best =
        sizes
            .iter()
            .filter(|s| s.max_rate_rps.is_some())
            .fold(None::<&SizeResult>, |best, s| match best {
                Some(b) if b.max_rate_rps >= s.max_rate_rps => Some(b),
                _ => Some(s),
            });
    let fewest_size = sizes
        .iter()
        .filter(|s| s.passes_at_scenario_rate)
        .filter_map(|s| s.size)
        .min();
    let usl = if settings.vary == Vary::Rate {
        None
    } else {
        let points: Vec<(f64, f64)> = sizes
            .iter()
            .filter(|s| s.max_rate_rps.is_some())
            .filter_map(|s| Some((f64::from(s.size?), s.throughput_rps)))
            .collect();
        usl::fit(&points)
    };
    let slo: Vec<String> = settings.slos.iter().map(|t| t.to_string()).collect();
    CapacityReport {
        scenario: scenario.name.clone(),
        seed: settings.seed,
        slo: slo.join(", "),
        vary: settings.vary.to_string(),
        scenario_rate_rps: peak_rate(scenario),
        precision: settings.precision,
        step_duration_s: settings.step_duration.map(|d| d.as_secs_f64()),
        max_rate_rps: best.and_then(|s| s.max_rate_rps),
        max_rate_size: best.and_then(|s| s.size),
        bound: best.map_or(Bound::NeverPassed, |s| s.bound),
        fewest_size,
        sizes,
        usl,
        steps,
        demands: demand::service_demands(scenario),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A probe that passes below `capacity` and counts its calls.
    fn threshold_probe(capacity: f64, calls: &mut Vec<f64>) -> impl FnMut(f64) -> Result<bool, ()> {
        move |factor| {
            calls.push(factor);
            Ok(factor <= capacity)
        }
    }

    #[test]
    fn doubles_then_bisects_to_the_precision() {
        let mut calls = Vec::new();
        let search = search_rate(threshold_probe(13.7, &mut calls), 0.01, 40).unwrap();
        assert_eq!(search.bound, Bound::Bracketed);
        let (lo, hi) = (search.passing.unwrap(), search.failing.unwrap());
        assert!(
            lo <= 13.7 && hi > 13.7 && (hi - lo) / lo <= 0.01,
            "{search:?}"
        );
        assert_eq!(&calls[..5], &[1.0, 2.0, 4.0, 8.0, 16.0]);
        // 8..16 narrows to within 1 % around 13.7 in six bisections:
        // 12 ✓, 14 ✗, 13 ✓, 13.5 ✓, 13.75 ✗, 13.625 ✓.
        assert_eq!(search.probes, 5 + 6, "{calls:?}");
    }

    #[test]
    fn halves_when_the_scenario_rate_already_fails() {
        let mut calls = Vec::new();
        let search = search_rate(threshold_probe(0.3, &mut calls), 0.01, 40).unwrap();
        assert_eq!(&calls[..3], &[1.0, 0.5, 0.25]);
        assert_eq!(search.bound, Bound::Bracketed);
        assert!(search.passing.unwrap() <= 0.3 && search.passing.unwrap() > 0.29);
    }

    #[test]
    fn reports_unbounded_and_hopeless_searches() {
        let never_fails = search_rate(|_| Ok::<_, ()>(true), 0.01, 40).unwrap();
        assert_eq!(never_fails.bound, Bound::NeverFailed);
        assert_eq!(never_fails.passing, Some(FACTOR_MAX));
        let never_passes = search_rate(|_| Ok::<_, ()>(false), 0.01, 40).unwrap();
        assert_eq!(never_passes.bound, Bound::NeverPassed);
        assert_eq!(never_passes.passing, None);
        let mut calls = Vec::new();
        let limited = search_rate(threshold_probe(13.7, &mut calls), 0.01, 6).unwrap();
        assert_eq!((limited.bound, limited.probes), (Bound::StepLimit, 6));
        assert!(limited.passing.unwrap() <= 13.7);
    }

    #[test]
    fn probe_errors_stop_the_search() {
        let result = search_rate(|f| if f > 2.0 { Err("boom") } else { Ok(true) }, 0.01, 40);
        assert_eq!(result, Err("boom"));
    }

    #[test]
    fn vary_parses_and_prints() {
        assert_eq!("rate".parse::<Vary>(), Ok(Vary::Rate));
        let replicas: Vary = "replicas:registry".parse().unwrap();
        assert_eq!(replicas, Vary::Replicas("registry".into()));
        assert_eq!(replicas.to_string(), "replicas:registry");
        assert_eq!(
            "concurrency:gateway".parse::<Vary>(),
            Ok(Vary::Concurrency("gateway".into()))
        );
        for bad in ["replicas:", "replicas", "speed", "rate:x", ""] {
            assert!(bad.parse::<Vary>().is_err(), "{bad}");
        }
    }

    fn smoke() -> Scenario {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../library/smoke.toml");
        Scenario::load(&path).unwrap()
    }

    #[test]
    fn scaling_shortening_and_resizing_edit_only_their_field() {
        let base = smoke();
        let doubled = scaled(&base, 2.0);
        assert_eq!(peak_rate(&doubled), 2.0 * peak_rate(&base));
        let short = shortened(&base, Some(Duration::from_secs(3)));
        assert!(
            short
                .workload
                .phases
                .iter()
                .all(|p| p.duration.0 == Duration::from_secs(3))
        );
        assert_eq!(peak_rate(&short), peak_rate(&base));
        let vary = Vary::Replicas("registry".into());
        let five = resized(&base, &vary, 5).unwrap();
        assert_eq!(five.host_names().len(), base.host_names().len() + 3);
        let slots = resized(&base, &Vary::Concurrency("gateway".into()), 3).unwrap();
        assert_eq!(slots.services[0].concurrency, 3);
        let unknown = resized(&base, &Vary::Replicas("nope".into()), 2).unwrap_err();
        assert!(
            unknown.to_string().contains("no service `nope`"),
            "{unknown}"
        );
        assert!(resized(&base, &vary, 0).is_err());
    }

    fn size(n: u32, max_rate_rps: Option<f64>, passes: bool) -> SizeResult {
        SizeResult {
            size: Some(n),
            max_rate_rps,
            throughput_rps: max_rate_rps.unwrap_or(0.0),
            bound: if max_rate_rps.is_some() {
                Bound::Bracketed
            } else {
                Bound::NeverPassed
            },
            passes_at_scenario_rate: passes,
            p99_ms_at_scenario_rate: 10.0,
            error_rate_at_scenario_rate: 0.0,
        }
    }

    #[test]
    fn a_sweep_reports_the_best_rate_the_fewest_sizes_and_a_fit() {
        let settings = Settings {
            slos: vec!["p(99) < 250ms".parse().unwrap()],
            vary: Vary::Replicas("registry".into()),
            seed: 1,
            step_duration: None,
            precision: 0.01,
            sizes: vec![1, 2, 3, 4],
            steps_max: 40,
        };
        let sizes = vec![
            size(1, None, false),
            size(2, Some(190.0), true),
            size(3, Some(280.0), true),
            size(4, Some(280.0), true),
        ];
        let report = report(&smoke(), &settings, sizes, Vec::new());
        assert_eq!(report.max_rate_rps, Some(280.0));
        assert_eq!(
            report.max_rate_size,
            Some(3),
            "ties go to the fewer replicas"
        );
        assert_eq!(report.fewest_size, Some(2));
        assert_eq!(report.bound, Bound::Bracketed);
        assert!(report.usl.is_some(), "three sizes with a passing rate");
        let points = report.points();
        assert_eq!(points.len(), 4);
        assert!(points.iter().all(|p| p.axis == CapacityAxis::Replicas));
        assert_eq!((points[0].x, points[0].passed), (1.0, false));
    }

    #[test]
    fn bad_settings_are_refused_before_any_run() {
        let settings = Settings {
            slos: vec!["p(99) < 250ms".parse().unwrap()],
            vary: Vary::Rate,
            seed: 1,
            step_duration: None,
            precision: 0.01,
            sizes: vec![],
            steps_max: 40,
        };
        let refuse = |s: Settings| {
            let mut steps = 0;
            let error = run(&smoke(), &s, &mut |_| steps += 1).unwrap_err();
            assert_eq!(steps, 0);
            assert!(matches!(error, CapacityError::Invalid(_)), "{error}");
        };
        refuse(Settings {
            slos: vec![],
            ..settings.clone()
        });
        refuse(Settings {
            precision: 0.0,
            ..settings.clone()
        });
        refuse(Settings {
            step_duration: Some(Duration::ZERO),
            ..settings.clone()
        });
        refuse(Settings {
            vary: Vary::Replicas("registry".into()),
            ..settings.clone()
        });
        refuse(Settings {
            vary: Vary::Replicas("nope".into()),
            sizes: vec![1, 2],
            ..settings
        });
    }
}
