//! Replicas per service for a stated peak (`meshsim capacity --peak`).
//!
//! The first guess is the demand law's ([`super::demand`]): each synthetic
//! service gets the fewest replicas that keep it at most 90 % busy at the
//! peak. Then the scenario runs at the peak with those counts, faults and
//! all; while the SLO fails, the busiest service (the bottleneck at the
//! current counts) gets one more replica, and the scenario runs again.
//! Once a plan passes, each service in turn, least busy first, is offered
//! one replica fewer (never so few that it would be busy all the time),
//! and keeps the cut when the SLO still holds. Every plan printed has been
//! run, not only computed.

use std::collections::BTreeMap;

use seam::Trace;
use serde::Serialize;
use spec::Scenario;

use super::demand::{ServiceDemand, service_demands};
use super::{
    CapacityError, Settings, Step, fault_names, incomplete, judge, peak_rate, scaled, shortened,
};

/// Utilisation the first guess sizes for: queueing delay grows as
/// 1/(1 − ρ), so a plan at ρ = 1 would never meet a latency SLO.
pub const FIRST_GUESS_UTILISATION: f64 = 0.9;

/// One run of a plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanStep {
    /// Replicas per service in this run.
    pub replicas: BTreeMap<String, u32>,
    /// The service given one more replica after this run failed.
    pub grew: Option<String>,
    /// The service this run tried with one replica fewer (trimming).
    pub trimmed: Option<String>,
    /// The run's verdict and figures.
    pub step: Step,
}

/// What `--peak` found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaPlan {
    /// The stated peak, workload requests per second.
    pub peak_rps: f64,
    /// The first plan that met the SLO at the peak, if any did.
    pub replicas: Option<BTreeMap<String, u32>>,
    /// Each synthetic service's demand and its utilisation at the peak
    /// under the final counts, busiest first.
    pub utilisation: Vec<(String, f64)>,
    /// The bottleneck at the final counts (the busiest service).
    pub bottleneck: Option<String>,
    /// Every run, in order.
    pub steps: Vec<PlanStep>,
}

/// Sizes `scenario` for `peak_rps` under `settings.slos`, at most
/// `settings.steps_max` runs.
pub fn plan_replicas(
    scenario: &Scenario,
    settings: &Settings,
    peak_rps: f64,
    on_step: &mut dyn FnMut(&PlanStep),
) -> Result<ReplicaPlan, CapacityError> {
    let own_rate = peak_rate(scenario);
    if !(peak_rps > 0.0 && own_rate > 0.0) {
        return Err(CapacityError::Invalid(format!(
            "--peak {peak_rps} needs a positive rate and a scenario with a positive arrival rate"
        )));
    }
    let demands = service_demands(scenario);
    if demands.is_empty() {
        return Err(CapacityError::Invalid(
            "--peak sizes synthetic services, and this scenario has none the workload reaches"
                .into(),
        ));
    }
    let concurrency = concurrency_by_service(scenario);
    let floors = fault_floors(scenario);
    let mut replicas: BTreeMap<String, u32> = demands
        .iter()
        .map(|d| {
            let guess = d.replicas_for(peak_rps, concurrency[&d.service], FIRST_GUESS_UTILISATION);
            let floor = floors.get(&d.service).copied().unwrap_or(1);
            (d.service.clone(), guess.max(floor))
        })
        .collect();
    let base = scaled(
        &shortened(scenario, settings.step_duration),
        peak_rps / own_rate,
    );
    let mut runner = Runner {
        base,
        settings,
        steps: Vec::new(),
        on_step,
    };
    let mut passed_with = None;
    while runner.has_budget() {
        let busiest = busiest(&demands, &replicas, &concurrency, peak_rps);
        if runner.run(&replicas, None) {
            passed_with = Some(replicas.clone());
            break;
        }
        runner.mark_grew(&busiest);
        *replicas.get_mut(&busiest).expect("a planned service") += 1;
    }
    if let Some(passing) = &mut passed_with {
        trim(
            &mut runner,
            passing,
            &demands,
            &concurrency,
            &floors,
            peak_rps,
        );
        replicas = passing.clone();
    }
    let utilisation = utilisation_at(&demands, &replicas, &concurrency, peak_rps);
    Ok(ReplicaPlan {
        peak_rps,
        replicas: passed_with,
        bottleneck: utilisation.first().map(|(s, _)| s.clone()),
        utilisation,
        steps: runner.steps,
    })
}

/// Runs plans at the peak and records them.
struct Runner<'a> {
    base: Scenario,
    settings: &'a Settings,
    steps: Vec<PlanStep>,
    on_step: &'a mut dyn FnMut(&PlanStep),
}

impl Runner<'_> {
    fn has_budget(&self) -> bool {
        (self.steps.len() as u32) < self.settings.steps_max
    }

    /// Runs `replicas` at the peak; true when every threshold held.
    fn run(&mut self, replicas: &BTreeMap<String, u32>, trying: Option<String>) -> bool {
        let target = with_replicas(&self.base, replicas);
        let seed = seam::Seed::new(self.settings.seed);
        let mut step = match engine::run_sim(&target, seed, Trace::hash_only()) {
            Ok(output) => judge(&self.settings.slos, &target, &output),
            Err(error) => incomplete(&target, &error),
        };
        step.index = self.steps.len() as u32 + 1;
        let passed = step.passed;
        let record = PlanStep {
            replicas: replicas.clone(),
            grew: None,
            trimmed: trying,
            step,
        };
        (self.on_step)(&record);
        self.steps.push(record);
        passed
    }

    /// The last run failed and `service` gets one more replica.
    fn mark_grew(&mut self, service: &str) {
        if let Some(last) = self.steps.last_mut() {
            last.grew = Some(service.to_owned());
        }
    }
}

/// Offers each service, least busy first, one replica fewer, keeping each
/// cut under which the SLO still holds.
fn trim(
    runner: &mut Runner<'_>,
    passing: &mut BTreeMap<String, u32>,
    demands: &[ServiceDemand],
    concurrency: &BTreeMap<String, u32>,
    floors: &BTreeMap<String, u32>,
    peak_rps: f64,
) {
    let mut order = utilisation_at(demands, passing, concurrency, peak_rps);
    order.reverse();
    for (service, _) in order {
        let floor = floors.get(&service).copied().unwrap_or(1);
        let current = passing[&service];
        if current <= floor || !runner.has_budget() {
            continue;
        }
        let mut fewer = passing.clone();
        fewer.insert(service.clone(), current - 1);
        let busy = utilisation_at(demands, &fewer, concurrency, peak_rps);
        if busy.iter().any(|(s, u)| *s == service && *u >= 1.0) {
            continue;
        }
        if runner.run(&fewer, Some(service)) {
            *passing = fewer;
        }
    }
}

fn concurrency_by_service(scenario: &Scenario) -> BTreeMap<String, u32> {
    scenario
        .services
        .iter()
        .map(|s| (s.name.get_ref().clone(), s.concurrency))
        .collect()
}

/// A fault that names `svc-2` needs at least three replicas of `svc`.
fn fault_floors(scenario: &Scenario) -> BTreeMap<String, u32> {
    let mut floors = BTreeMap::new();
    for name in fault_names(scenario) {
        if let Some((service, index)) = name.rsplit_once('-')
            && let Ok(index) = index.parse::<u32>()
        {
            let floor = floors.entry(service.to_owned()).or_insert(1);
            *floor = (*floor).max(index + 1);
        }
    }
    floors
}

fn with_replicas(scenario: &Scenario, replicas: &BTreeMap<String, u32>) -> Scenario {
    let mut scenario = scenario.clone();
    for service in &mut scenario.services {
        if let Some(&n) = replicas.get(service.name.get_ref()) {
            service.replicas = n;
        }
    }
    scenario
}

/// Utilisation of each planned service at `rate_rps`, busiest first.
fn utilisation_at(
    demands: &[ServiceDemand],
    replicas: &BTreeMap<String, u32>,
    concurrency: &BTreeMap<String, u32>,
    rate_rps: f64,
) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = demands
        .iter()
        .map(|d| {
            let slots = replicas[&d.service] * concurrency[&d.service];
            (
                d.service.clone(),
                rate_rps * d.demand_s / f64::from(slots.max(1)),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

fn busiest(
    demands: &[ServiceDemand],
    replicas: &BTreeMap<String, u32>,
    concurrency: &BTreeMap<String, u32>,
    rate_rps: f64,
) -> String {
    utilisation_at(demands, replicas, concurrency, rate_rps)
        .into_iter()
        .next()
        .map(|(service, _)| service)
        .expect("at least one demand")
}
