//! The liveness check: after the heal, the mesh must converge in time.
//!
//! Convergence is measured on the load generator's intervals (requests by
//! intended start): the first run of whole intervals, all starting at or
//! after the heal, that lasts `stable_for`, has traffic, no failed request
//! and (if declared) meets the phase SLO. It must start no later than
//! `converge_within` after the heal. Interval granularity makes the check
//! conservative by up to one interval, never lenient.

use std::time::Duration;

use loadgen::{LoadReport, OpStats};
use reports::{Check, CheckKind};

use spec::slo::{Measured, Threshold};
use spec::{PhasesSpec, Scenario, format_duration as show};

/// The check's name in summaries.
pub const LIVENESS_CHECK: &str = "liveness";

/// The liveness check, if the scenario declares phases.
pub fn check(scenario: &Scenario, load: &LoadReport) -> Option<Check> {
    let phases = scenario.phases.as_ref()?;
    Some(evaluate(phases, load))
}

/// All operations of intervals `[from, to)` together.
fn merged(load: &LoadReport, from: usize, to: usize) -> OpStats {
    let mut total = OpStats::default();
    for interval in &load.intervals[from..to] {
        for stats in interval.ops.values() {
            total.ok += stats.ok;
            total.failed += stats.failed;
            let _ = total.latency_us.add(&stats.latency_us);
        }
    }
    total
}

fn window_holds(stats: &OpStats, slo: Option<&Threshold>, window: Duration) -> bool {
    if stats.total() == 0 || stats.failed > 0 {
        return false;
    }
    slo.is_none_or(|slo| {
        let counts = Measured {
            total: stats.total(),
            failed: stats.failed,
            window_s: window.as_secs_f64(),
        };
        let latency_ms = |q: Option<f64>| match q {
            Some(q) => stats.latency_us.value_at_quantile(q) as f64 / 1000.0,
            None => stats.latency_us.mean() / 1000.0,
        };
        slo.evaluate(counts, latency_ms).0
    })
}

fn evaluate(phases: &PhasesSpec, load: &LoadReport) -> Check {
    let heal = phases.heal_at.get_ref().0;
    let interval = load.interval.max(Duration::from_nanos(1));
    let slo: Option<Threshold> = phases
        .slo
        .as_ref()
        .map(|s| s.get_ref().parse().expect("validated when loaded"));
    let per = interval.as_nanos();
    let first = heal.as_nanos().div_ceil(per) as usize;
    let span = phases.stable_for.0.as_nanos().div_ceil(per).max(1) as usize;
    let deadline = heal + phases.converge_within.0;
    let converged = (first..load.intervals.len().saturating_sub(span - 1))
        .take_while(|&i| interval * i as u32 <= deadline)
        .find(|&i| {
            window_holds(
                &merged(load, i, i + span),
                slo.as_ref(),
                interval * span as u32,
            )
        });
    let slo_text = slo.as_ref().map_or(String::new(), |s| format!(" and {s}"));
    let (passed, detail) = match converged {
        Some(i) => {
            let after = (interval * i as u32).saturating_sub(heal);
            (
                true,
                format!(
                    "converged {} after the heal at {} (bound {}): {} without a failed request{slo_text}",
                    show(after),
                    show(heal),
                    show(phases.converge_within.0),
                    show(phases.stable_for.0)
                ),
            )
        }
        None => (
            false,
            format!(
                "no {} window without a failed request{slo_text} started within {} of the heal at {}",
                show(phases.stable_for.0),
                show(phases.converge_within.0),
                show(heal)
            ),
        ),
    };
    Check {
        name: LIVENESS_CHECK.into(),
        kind: CheckKind::Liveness,
        passed,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use loadgen::IntervalStats;

    use super::*;
    use spec::Dur;

    fn phases(heal_s: u64, within_s: u64, stable_s: u64) -> PhasesSpec {
        let text = format!(
            "heal_at = \"{heal_s}s\"\nconverge_within = \"{within_s}s\"\nstable_for = \"{stable_s}s\"\n"
        );
        let phases: PhasesSpec = toml::from_str(&text).unwrap();
        assert_eq!(phases.converge_within, Dur(Duration::from_secs(within_s)));
        phases
    }

    /// A report with one interval per second; `failed[i]` failures in each.
    fn report(failed: &[u64]) -> LoadReport {
        let intervals = failed
            .iter()
            .enumerate()
            .map(|(i, &failed)| {
                let mut stats = OpStats {
                    ok: 10,
                    failed,
                    ..OpStats::default()
                };
                let _ = stats.latency_us.record(1_000);
                IntervalStats {
                    start: Duration::from_secs(i as u64),
                    ops: BTreeMap::from([("quote".to_owned(), stats)]),
                }
            })
            .collect();
        {
            let mut report = LoadReport::new(
                Duration::from_secs(1),
                Duration::from_secs(failed.len() as u64),
            );
            report.intervals = intervals;
            report
        }
    }

    #[test]
    fn converges_when_an_error_free_window_starts_in_time() {
        //           0  1  2  3  4  5  6  7  8  9
        let load = report(&[0, 0, 5, 5, 5, 1, 0, 0, 0, 0]);
        let check = evaluate(&phases(3, 3, 2), &load);
        assert!(check.passed, "{}", check.detail);
        assert!(check.detail.contains("converged 3s"), "{}", check.detail);
    }

    #[test]
    fn fails_when_errors_last_past_the_bound() {
        let load = report(&[0, 0, 5, 5, 5, 1, 1, 1, 0, 0]);
        let check = evaluate(&phases(3, 3, 2), &load);
        assert!(!check.passed, "{}", check.detail);
    }

    #[test]
    fn no_traffic_is_not_convergence() {
        let mut load = report(&[0, 0, 0, 0, 0, 0]);
        for interval in &mut load.intervals[3..] {
            interval.ops.clear();
        }
        assert!(!evaluate(&phases(3, 1, 1), &load).passed);
    }
}
