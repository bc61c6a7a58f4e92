//! A run drawn once, before anything runs: the seed, and for each
//! `[[mesh.variants]]` entry the scenario as it will run, its fault plan
//! and its load plan. The CLI turns `--seed` into a [`Seed`] once; every
//! later reader (the world, the checks, the report) takes times from here.

use std::time::Duration;

use loadgen::{LoadPlan, Phase};
use reports::Mode;
use seam::Seed;
use spec::{FaultPlan, Scenario};

/// Everything one run will do.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub seed: Seed,
    pub mode: Mode,
    /// Real mode's `--time-scale` (1.0 in the simulation).
    pub time_scale: f64,
    /// One entry per variant, the primary (judged by the SLOs) last.
    pub variants: Vec<VariantPlan>,
}

/// One variant of a run.
#[derive(Clone, Debug)]
pub struct VariantPlan {
    /// Variant name (`value` when the scenario has none).
    pub name: String,
    /// The scenario as it runs: stretched by the time scale in real mode.
    pub scenario: Scenario,
    /// Drawn from the unstretched file (the same draws as the simulation),
    /// then stretched.
    pub faults: FaultPlan,
    pub load: LoadPlan,
}

impl RunPlan {
    /// The plan of a simulated run.
    pub fn sim(scenario: &Scenario, seed: Seed) -> RunPlan {
        RunPlan::draw(scenario, seed, Mode::Sim, 1.0)
    }

    /// The plan of a real run with every scheduled time after the warmup
    /// multiplied by `time_scale`.
    pub fn real(scenario: &Scenario, seed: Seed, time_scale: f64) -> RunPlan {
        RunPlan::draw(scenario, seed, Mode::Real, time_scale)
    }

    fn draw(scenario: &Scenario, seed: Seed, mode: Mode, time_scale: f64) -> RunPlan {
        let variants = spec::mesh::variants(scenario)
            .into_iter()
            .map(|(name, variant)| {
                let faults = variant.fault_plan(seed).stretched(time_scale);
                let scenario = time_scaled(&variant, time_scale);
                VariantPlan {
                    name,
                    load: load_plan(&scenario),
                    faults,
                    scenario,
                }
            })
            .collect();
        RunPlan {
            seed,
            mode,
            time_scale,
            variants,
        }
    }

    /// The variant the SLOs, the report and the summary describe.
    pub fn primary(&self) -> &VariantPlan {
        self.variants
            .last()
            .expect("a scenario has at least one variant")
    }
}

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
        mix: apps::client_mix(scenario),
        in_flight_max: workload.in_flight_max as usize,
        connections_max: workload.connections as usize,
        interval: workload.interval.0,
        lag_tolerance: Duration::from_millis(10),
        ..LoadPlan::default()
    }
}

/// The scenario with every scheduled time multiplied by `factor`: load
/// phases, mesh-check windows, heal time and liveness windows (fault times
/// are stretched in the [`FaultPlan`]). Warmup is not: bootstrap on real
/// sockets takes what it takes.
pub fn time_scaled(scenario: &Scenario, factor: f64) -> Scenario {
    let mut scaled = scenario.clone();
    if factor == 1.0 || !factor.is_finite() || factor <= 0.0 {
        return scaled;
    }
    let scale = |d: &mut spec::Dur| d.0 = d.0.mul_f64(factor);
    for phase in &mut scaled.workload.phases {
        scale(&mut phase.duration);
    }
    for check in &mut scaled.mesh.checks {
        if let Some(after) = &mut check.after {
            scale(after);
        }
        if let Some(window) = &mut check.window {
            scale(&mut window.from);
            scale(&mut window.until);
        }
    }
    if let Some(phases) = &mut scaled.phases {
        scale(phases.heal_at.get_mut());
        scale(&mut phases.converge_within);
        scale(&mut phases.stable_for);
    }
    scaled
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn library(name: &str) -> Scenario {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../library/{name}.toml"));
        Scenario::load(&path).expect("library scenario loads")
    }

    #[test]
    fn a_stretched_plan_moves_faults_and_heal_with_the_phases() {
        let scenario = library("replica-crash");
        let sim = RunPlan::sim(&scenario, Seed::new(1));
        let real = RunPlan::real(&scenario, Seed::new(1), 0.5);
        let warmup = scenario.workload.warmup.0;
        let (sim, real) = (sim.primary(), real.primary());
        assert_eq!(real.load.duration(), sim.load.duration() / 2);
        let sim_times: Vec<_> = sim
            .faults
            .schedule()
            .sorted()
            .iter()
            .map(|f| f.at)
            .collect();
        let real_times: Vec<_> = real
            .faults
            .schedule()
            .sorted()
            .iter()
            .map(|f| f.at)
            .collect();
        assert!(!sim_times.is_empty());
        for (s, r) in sim_times.iter().zip(&real_times) {
            assert_eq!(*r, warmup + (*s - warmup) / 2);
        }
        let heal = |p: &VariantPlan| p.scenario.heal_time();
        assert_eq!(
            real.faults.heal_at,
            heal(real),
            "the heal check and the schedule agree"
        );
    }
}
