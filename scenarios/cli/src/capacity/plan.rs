//! `meshsim capacity --peak RATE`: the replica plan's screen and file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use search::capacity::plan::{self, PlanStep, ReplicaPlan};
use search::capacity::{CapacityError, Settings};
use spec::Scenario;

/// The plan's file.
const PLAN_JSON: &str = "plan.json";

/// Plans, writes `plan.json`, prints the answer last; exit 1 when no plan
/// met the SLO within the step limit.
pub fn run(
    scenario: &Scenario,
    settings: &Settings,
    peak_rps: f64,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    println!(
        "  replica plan for a peak of {peak_rps:.1} rps: first guess at {:.0} % busy, one replica more for the busiest service until the SLO holds, then one fewer per service where it still holds",
        plan::FIRST_GUESS_UTILISATION * 100.0
    );
    let progress = super::progress_bar();
    let result = plan::plan_replicas(scenario, settings, peak_rps, &mut |step| {
        progress.inc(1);
        progress.suspend(|| println!("{}", step_line(step)));
    });
    progress.finish_and_clear();
    let plan = match result {
        Ok(plan) => plan,
        Err(CapacityError::Invalid(message)) => return Err(super::bad(message)),
        Err(error) => return Err(error.into()),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(PLAN_JSON);
    let json = serde_json::to_string_pretty(&plan).context("encoding the plan")?;
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    print!("{}", conclusion(scenario, &plan, out));
    Ok(if plan.replicas.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn step_line(step: &PlanStep) -> String {
    let total: u32 = step.replicas.values().sum();
    let grew = match (&step.grew, &step.trimmed) {
        (Some(s), _) => format!("  → one more {s}"),
        (None, Some(s)) if step.step.passed => format!("  (one {s} fewer: kept)"),
        (None, Some(s)) => format!("  (one {s} fewer: refused)"),
        (None, None) => String::new(),
    };
    format!(
        "  run {:>3}  {total:>4} replicas  p99 {:>9.2} ms  errors {:>6.2}%  {}  ({:.1}s){grew}",
        step.step.index,
        step.step.p99_ms,
        step.step.error_rate * 100.0,
        if step.step.passed { "pass" } else { "FAIL" },
        step.step.wall_seconds,
    )
}

fn conclusion(scenario: &Scenario, plan: &ReplicaPlan, out: &Path) -> String {
    let mut text = String::new();
    let wall: f64 = plan.steps.iter().map(|s| s.step.wall_seconds).sum();
    let _ = writeln!(
        text,
        "  runs       {} simulated runs in {wall:.1}s wall",
        plan.steps.len()
    );
    let own: BTreeMap<&str, u32> = scenario
        .services
        .iter()
        .map(|s| (s.name.get_ref().as_str(), s.replicas))
        .collect();
    let planned = plan.replicas.as_ref();
    for (service, busy) in &plan.utilisation {
        let replicas = planned.map_or("-".to_owned(), |p| p[service].to_string());
        let _ = writeln!(
            text,
            "  {service:<24} replicas {replicas:>3} (scenario {:>2})  busy {:>5.1} % at the peak",
            own.get(service.as_str()).copied().unwrap_or(0),
            busy * 100.0
        );
    }
    if let Some(bottleneck) = &plan.bottleneck {
        let _ = writeln!(
            text,
            "  bottleneck {bottleneck} (the busiest service at the planned counts)"
        );
    }
    let _ = writeln!(text, "  output     {}", out.join(PLAN_JSON).display());
    match planned {
        Some(p) => {
            let _ = writeln!(
                text,
                "replicas for {:.1} rps under SLO = {} in all",
                plan.peak_rps,
                p.values().sum::<u32>()
            );
        }
        None => {
            let _ = writeln!(
                text,
                "replicas for {:.1} rps under SLO = none found in {} runs (raise --steps-max, or the SLO fails for a reason replicas do not fix)",
                plan.peak_rps,
                plan.steps.len()
            );
        }
    }
    text
}
