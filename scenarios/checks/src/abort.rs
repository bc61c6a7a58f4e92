//! `abort_on_fail`: stop a run as soon as an SLO has failed.
//!
//! When it is evaluated, precisely (k6 evaluates thresholds periodically
//! too): every `workload.interval` of run time, counted from the workload
//! start, over the requests that have *completed* by then (requests still in
//! flight are not counted yet). A check scoped to a phase is first judged
//! one interval after its phase starts; an unscoped one after the first
//! interval. A scope with no completed request is not judged (no traffic
//! proves nothing, in either direction). The first failure stops the load
//! generator: it sends nothing more, waits for what is in flight, and
//! reports; the run ends, every check is evaluated over what ran, and the
//! aborting check fails with the measurement that stopped the run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadgen::{Completion, LoadReport, OpStats};
use tokio::sync::watch;

use super::{Scope, evaluate_scoped};
use spec::Scenario;
use spec::slo::Threshold;

/// How the warning that records an abort starts (the checks read it back).
const ABORT_PREFIX: &str = "aborted by check";

struct Watched {
    name: String,
    threshold: Threshold,
    scope: Scope,
    /// Workload time from which it is judged.
    from: Duration,
}

/// Watches the completions of one run for `abort_on_fail` checks.
#[derive(Clone)]
pub struct AbortMonitor {
    watched: Arc<Vec<Watched>>,
    so_far: Arc<Mutex<LoadReport>>,
    stop: Arc<watch::Sender<bool>>,
    verdict: Arc<Mutex<Option<String>>>,
    interval: Duration,
    end: Duration,
}

impl AbortMonitor {
    /// A monitor for `scenario`, or `None` if no check asks to abort.
    pub fn new(scenario: &Scenario) -> Option<AbortMonitor> {
        let interval = scenario.workload.interval.0;
        let watched: Vec<Watched> = scenario
            .checks
            .iter()
            .filter(|c| c.abort_on_fail && c.route.is_none())
            .filter_map(|spec| {
                let threshold = spec.slo.as_ref()?.get_ref().parse().ok()?;
                let scope = Scope::of(scenario, spec);
                let from = scope.phase.as_ref().map_or(Duration::ZERO, |p| p.1) + interval;
                Some(Watched {
                    name: spec.name.get_ref().clone(),
                    threshold,
                    scope,
                    from,
                })
            })
            .collect();
        if watched.is_empty() {
            return None;
        }
        let end: Duration = scenario.workload.phases.iter().map(|p| p.duration.0).sum();
        Some(AbortMonitor {
            watched: Arc::new(watched),
            so_far: Arc::new(Mutex::new(LoadReport::new(interval, end))),
            stop: Arc::new(watch::channel(false).0),
            verdict: Arc::default(),
            interval,
            end,
        })
    }

    /// The signal the load generator stops on.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Counts one completed request (as the load generator does: a status
    /// below 400 is ok; latency from the intended start).
    pub fn record(&self, completion: &Completion) {
        let ok = completion.status.is_some_and(|s| s < 400);
        let mut report = self.so_far.lock().expect("abort monitor poisoned");
        let add = |stats: &mut OpStats| {
            let _ = stats
                .latency_us
                .record((completion.latency.as_micros() as u64).max(1));
            if ok {
                stats.ok += 1;
            } else {
                stats.failed += 1;
            }
        };
        add(&mut report.overall);
        add(report.ops.entry(completion.op.clone()).or_default());
        let index = (completion.intended.as_nanos() / self.interval.as_nanos().max(1)) as usize;
        while report.intervals.len() <= index {
            let start = self.interval * report.intervals.len() as u32;
            report.intervals.push(loadgen::IntervalStats {
                start,
                ops: Default::default(),
            });
        }
        add(report.intervals[index]
            .ops
            .entry(completion.op.clone())
            .or_default());
    }

    /// Judges the watched checks every interval until the workload ends or
    /// one fails; then stops the generator. `started` is the workload start.
    pub async fn watch(self, started: tokio::time::Instant) {
        let mut at = self.interval;
        while at <= self.end {
            tokio::time::sleep_until(started + at).await;
            if let Some(failure) = self.judge(at) {
                *self.verdict.lock().expect("abort monitor poisoned") = Some(failure);
                self.stop.send_replace(true);
                return;
            }
            at += self.interval;
        }
    }

    /// The first watched check that fails at workload time `at`, described.
    fn judge(&self, at: Duration) -> Option<String> {
        let report = self.so_far.lock().expect("abort monitor poisoned");
        self.watched.iter().filter(|w| at >= w.from).find_map(|w| {
            let (passed, detail, total) = evaluate_scoped(&w.threshold, &w.scope, &report);
            (total > 0 && !passed).then(|| {
                format!(
                    "{ABORT_PREFIX} \"{}\" at {:.3}s of the workload: {detail}",
                    w.name,
                    at.as_secs_f64()
                )
            })
        })
    }

    /// Adds the abort, if there was one, to the final report's warnings,
    /// and returns it.
    pub fn annotate(&self, report: &mut LoadReport) -> Option<String> {
        let verdict = self
            .verdict
            .lock()
            .expect("abort monitor poisoned")
            .clone()?;
        report.warnings.push(verdict.clone());
        Some(verdict)
    }
}

/// The abort a check caused, if the run's report records one.
pub fn aborted_by<'a>(load: &'a LoadReport, check: &str) -> Option<&'a str> {
    let prefix = format!("{ABORT_PREFIX} \"{check}\"");
    load.warnings
        .iter()
        .find(|w| w.starts_with(&prefix))
        .map(String::as_str)
}
