//! Shrinking a failing seed to a minimal scenario.
//!
//! The seed stays fixed (so the workload's arrival schedule does too; a
//! shorter workload replays a prefix of it). First every fault time drawn
//! from a range, and with `--swarm` the whole drawn schedule, is written
//! into the scenario as fixed values. Then, keeping the target check
//! failing:
//! 1. delta debugging (Zeller's ddmin) over the `[[faults]]` entries;
//! 2. a bisection of each remaining fault's `duration`;
//! 3. dropping trailing workload phases, then bisecting the last one.
//!
//! Every candidate is a scenario document parsed and validated like a
//! file, so the result is a file `meshsim run` accepts, and it is re-run
//! twice at the end to prove it fails deterministically.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use reports::{Check, CheckKind};
use seam::{Seed, Trace};

use crate::explore::{ScenarioSource, SourceError, panic_message};
use spec::{Dur, Scenario, format_duration};

/// What must keep failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This check must fail.
    Check(String),
    /// The run must stop with an engine error or a panic.
    Error,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Check(name) => write!(f, "check \"{name}\""),
            Target::Error => f.write_str("an engine error"),
        }
    }
}

/// How to shrink.
#[derive(Clone, Debug)]
pub struct ShrinkOptions {
    /// The failing seed.
    pub seed: u64,
    /// The seed failed under `explore --swarm`: replay its swarm schedule.
    pub swarm: bool,
    /// The check to keep failing (default: the most severe failing one).
    pub check: Option<String>,
    /// Most simulations to spend; the best scenario so far is kept.
    pub runs_max: usize,
}

/// Why shrinking could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The scenario, or a variant of it, is not valid.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The seed does not fail: there is nothing to shrink.
    #[error("seed {seed} passes every check{swarm}; nothing to shrink", swarm = if *.swarm { " of its swarm schedule" } else { "" })]
    Passes {
        /// The seed.
        seed: u64,
        /// Whether it was run with its swarm schedule.
        swarm: bool,
    },
    /// `--check` names a check that does not fail for this seed.
    #[error("check \"{check}\" does not fail for seed {seed}; failing: {failing:?}")]
    NotFailing {
        /// The requested check.
        check: String,
        /// The seed.
        seed: u64,
        /// The checks that do fail.
        failing: Vec<String>,
    },
    /// The shrunk scenario did not replay identically.
    #[error("the shrunk scenario is not deterministic: trace {first} then {second}")]
    Nondeterministic {
        /// First replay's hash.
        first: String,
        /// Second replay's hash.
        second: String,
    },
}

/// The minimal scenario and how it was reached.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The minimal scenario (seed set, faults fixed).
    pub source: ScenarioSource,
    /// What keeps failing.
    pub target: Target,
    /// The failing check's detail (or the error) in the minimal scenario.
    pub detail: String,
    /// Fault actions before and after (undos count, the heal does not).
    pub actions: (usize, usize),
    /// Workload length before and after.
    pub workload: (Duration, Duration),
    /// Simulations spent.
    pub runs: usize,
    /// Trace hash of the minimal scenario (identical on two replays).
    pub trace_hash: String,
}

/// How a run of a candidate ended, as far as shrinking cares.
enum Verdict {
    /// The checks that failed, with details.
    Checks(Vec<Check>),
    /// An engine error or panic.
    Error(String),
}

fn run(scenario: &Scenario, seed: u64) -> (Verdict, String) {
    let ran = catch_unwind(AssertUnwindSafe(|| {
        engine::run_sim(scenario, seam::Seed::new(seed), Trace::hash_only())
    }));
    match ran {
        Ok(Ok(output)) => {
            let failed = output
                .summary
                .checks
                .into_iter()
                .filter(|c| !c.passed)
                .collect();
            (Verdict::Checks(failed), output.trace.hash_hex())
        }
        Ok(Err(error)) => (Verdict::Error(error.to_string()), String::new()),
        Err(payload) => (
            Verdict::Error(format!("panicked: {}", panic_message(payload.as_ref()))),
            String::new(),
        ),
    }
}

/// Severity order for picking a default target: broken invariants first.
fn severity(kind: CheckKind) -> u8 {
    match kind {
        CheckKind::Ledger => 0,
        CheckKind::Security => 1,
        CheckKind::Liveness => 2,
        CheckKind::Slo => 3,
    }
}

fn workload_length(scenario: &Scenario) -> Duration {
    scenario.workload.phases.iter().map(|p| p.duration.0).sum()
}

fn fault_tables(doc: &toml::Table) -> Vec<toml::Table> {
    match doc.get("faults") {
        Some(toml::Value::Array(list)) => {
            list.iter().filter_map(|v| v.as_table().cloned()).collect()
        }
        _ => Vec::new(),
    }
}

fn with_faults(doc: &toml::Table, faults: &[toml::Table]) -> toml::Table {
    let mut doc = doc.clone();
    doc.insert(
        "faults".into(),
        toml::Value::Array(faults.iter().cloned().map(toml::Value::Table).collect()),
    );
    doc
}

fn workload_phases(doc: &toml::Table) -> Vec<toml::Table> {
    doc.get("workload")
        .and_then(|w| w.get("phases"))
        .and_then(|p| p.as_array())
        .map(|list| list.iter().filter_map(|v| v.as_table().cloned()).collect())
        .unwrap_or_default()
}

fn with_workload_phases(doc: &toml::Table, phases: &[toml::Table]) -> toml::Table {
    let mut doc = doc.clone();
    if let Some(toml::Value::Table(workload)) = doc.get_mut("workload") {
        workload.insert(
            "phases".into(),
            toml::Value::Array(phases.iter().cloned().map(toml::Value::Table).collect()),
        );
    }
    doc
}

fn duration_of(table: &toml::Table, key: &str) -> Option<Duration> {
    table
        .get(key)
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Dur>().ok())
        .map(|d| d.0)
}

fn set_duration(table: &mut toml::Table, key: &str, value: Duration) {
    table.insert(key.into(), toml::Value::String(format_duration(value)));
}

struct Shrinker<'p> {
    base: ScenarioSource,
    seed: u64,
    target: Target,
    runs: usize,
    runs_max: usize,
    log: &'p mut dyn FnMut(&str),
}

impl Shrinker<'_> {
    /// Whether `doc` is a valid scenario that still fails the target.
    fn fails(&mut self, doc: toml::Table) -> bool {
        if self.runs >= self.runs_max {
            return false;
        }
        let Ok(candidate) = self.base.variant(doc) else {
            return false;
        };
        self.runs += 1;
        match (run(&candidate.scenario, self.seed).0, &self.target) {
            (Verdict::Error(_), Target::Error) => true,
            (Verdict::Checks(failed), Target::Check(name)) => {
                failed.iter().any(|c| &c.name == name)
            }
            _ => false,
        }
    }

    /// Zeller's ddmin over the fault entries.
    fn faults(&mut self, doc: &toml::Table) -> toml::Table {
        let mut faults = fault_tables(doc);
        if faults.is_empty() {
            return doc.clone();
        }
        if self.fails(with_faults(doc, &[])) {
            (self.log)("the failure needs no fault at all");
            return with_faults(doc, &[]);
        }
        let mut granularity = 2usize;
        while faults.len() >= 2 {
            let chunk = faults.len().div_ceil(granularity);
            let chunks: Vec<Vec<toml::Table>> =
                faults.chunks(chunk).map(<[toml::Table]>::to_vec).collect();
            let mut reduced = false;
            for (i, subset) in chunks.iter().enumerate() {
                if self.fails(with_faults(doc, subset)) {
                    faults = subset.clone();
                    granularity = 2;
                    reduced = true;
                    break;
                }
                let complement: Vec<toml::Table> = chunks
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, c)| c.iter().cloned())
                    .collect();
                if chunks.len() > 2 && self.fails(with_faults(doc, &complement)) {
                    faults = complement;
                    granularity = (granularity - 1).max(2);
                    reduced = true;
                    break;
                }
            }
            if reduced {
                (self.log)(&format!(
                    "faults: {} entries still fail (run {})",
                    faults.len(),
                    self.runs
                ));
                continue;
            }
            if granularity >= faults.len() {
                break;
            }
            granularity = (granularity * 2).min(faults.len());
        }
        with_faults(doc, &faults)
    }

    /// Bisects each fault's `duration` down while the failure holds.
    fn durations(&mut self, doc: &toml::Table) -> toml::Table {
        let mut faults = fault_tables(doc);
        for i in 0..faults.len() {
            let Some(original) = duration_of(&faults[i], "duration") else {
                continue;
            };
            let shortest = self.bisect(original, Duration::from_millis(10), |this, d| {
                let mut trial = faults.clone();
                set_duration(&mut trial[i], "duration", d);
                this.fails(with_faults(doc, &trial))
            });
            if shortest < original {
                set_duration(&mut faults[i], "duration", shortest);
                (self.log)(&format!(
                    "fault {}: duration {} -> {} (run {})",
                    i + 1,
                    format_duration(original),
                    format_duration(shortest),
                    self.runs
                ));
            }
        }
        with_faults(doc, &faults)
    }

    /// Drops trailing workload phases, then bisects the last one.
    fn workload(&mut self, doc: &toml::Table) -> toml::Table {
        let mut phases = workload_phases(doc);
        while phases.len() > 1 {
            let shorter = &phases[..phases.len() - 1];
            if !self.fails(with_workload_phases(doc, shorter)) {
                break;
            }
            phases.pop();
            (self.log)(&format!(
                "workload: {} phases (run {})",
                phases.len(),
                self.runs
            ));
        }
        let Some(last) = phases.len().checked_sub(1) else {
            return doc.clone();
        };
        let Some(original) = duration_of(&phases[last], "duration") else {
            return with_workload_phases(doc, &phases);
        };
        let shortest = self.bisect(original, Duration::from_millis(100), |this, d| {
            let mut trial = phases.clone();
            set_duration(&mut trial[last], "duration", d);
            this.fails(with_workload_phases(doc, &trial))
        });
        if shortest < original {
            set_duration(&mut phases[last], "duration", shortest);
            (self.log)(&format!(
                "workload: last phase {} -> {} (run {})",
                format_duration(original),
                format_duration(shortest),
                self.runs
            ));
        }
        with_workload_phases(doc, &phases)
    }

    /// The shortest duration in `(0, known_failing]`, to `resolution`, for
    /// which `fails` holds, assuming (not requiring) monotonicity.
    fn bisect(
        &mut self,
        known_failing: Duration,
        resolution: Duration,
        mut fails: impl FnMut(&mut Self, Duration) -> bool,
    ) -> Duration {
        let (mut passing_ms, mut failing_ms) = (0u64, known_failing.as_millis() as u64);
        let resolution_ms = (resolution.as_millis() as u64).max(1);
        while failing_ms - passing_ms > resolution_ms && self.runs < self.runs_max {
            let middle = passing_ms + (failing_ms - passing_ms) / 2;
            if fails(self, Duration::from_millis(middle)) {
                failing_ms = middle;
            } else {
                passing_ms = middle;
            }
        }
        Duration::from_millis(failing_ms).min(known_failing)
    }
}

/// The scenario of `seed` with every drawn value written in: the swarm
/// schedule (with `swarm`), fault times drawn from ranges, and `seed`.
pub fn materialize(
    source: &ScenarioSource,
    seed: u64,
    swarm: bool,
) -> Result<ScenarioSource, ShrinkError> {
    let drawn = if swarm {
        source.with_swarm(seed)?
    } else {
        source.clone()
    };
    let times = drawn.scenario.fault_times(Seed::new(seed));
    let mut faults = fault_tables(&drawn.doc);
    for (fault, at) in faults.iter_mut().zip(times) {
        set_duration(fault, "at", at);
    }
    let mut doc = with_faults(&drawn.doc, &faults);
    doc.remove("swarm");
    doc.insert("seed".into(), toml::Value::Integer(seed as i64));
    Ok(drawn.variant(doc)?)
}

/// Shrinks `options.seed`'s failure to a minimal scenario.
pub fn shrink(
    source: &ScenarioSource,
    options: &ShrinkOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Shrunk, ShrinkError> {
    let seed = options.seed;
    let fixed = materialize(source, seed, options.swarm)?;
    let actions_before = fixed
        .scenario
        .fault_schedule(Seed::new(seed))
        .action_count();
    let workload_before = workload_length(&fixed.scenario);
    let target = match (run(&fixed.scenario, seed).0, &options.check) {
        (Verdict::Error(message), None) => {
            log(&format!("target: the engine error \"{message}\""));
            Target::Error
        }
        (Verdict::Checks(failed), Some(check)) => {
            if !failed.iter().any(|c| &c.name == check) {
                return Err(ShrinkError::NotFailing {
                    check: check.clone(),
                    seed,
                    failing: failed.into_iter().map(|c| c.name).collect(),
                });
            }
            Target::Check(check.clone())
        }
        (Verdict::Checks(failed), None) => {
            // Under swarm, whole-run SLOs fail by design (explore ignores
            // them), so prefer any other failing check.
            let mut candidates = failed;
            candidates.sort_by_key(|c| severity(c.kind));
            let judged = candidates
                .iter()
                .find(|c| !(options.swarm && c.kind == CheckKind::Slo))
                .or(candidates.first());
            match judged {
                Some(check) => Target::Check(check.name.clone()),
                None => {
                    return Err(ShrinkError::Passes {
                        seed,
                        swarm: options.swarm,
                    });
                }
            }
        }
        (Verdict::Error(message), Some(check)) => {
            return Err(ShrinkError::NotFailing {
                check: check.clone(),
                seed,
                failing: vec![format!("engine error: {message}")],
            });
        }
    };
    log(&format!(
        "seed {seed} fails {target}; {actions_before} fault actions, workload {}",
        format_duration(workload_before)
    ));
    let mut shrinker = Shrinker {
        base: fixed.clone(),
        seed,
        target: target.clone(),
        runs: 1,
        runs_max: options.runs_max.max(2),
        log,
    };
    let doc = shrinker.faults(&fixed.doc);
    let doc = shrinker.durations(&doc);
    let doc = shrinker.workload(&doc);
    let minimal = fixed.variant(doc)?;
    let runs = shrinker.runs;
    finish(
        minimal,
        seed,
        target,
        (actions_before, workload_before),
        runs,
    )
}

/// Replays the minimal scenario twice: it must fail the same way, with the
/// same trace.
fn finish(
    minimal: ScenarioSource,
    seed: u64,
    target: Target,
    before: (usize, Duration),
    runs: usize,
) -> Result<Shrunk, ShrinkError> {
    let (first, first_hash) = run(&minimal.scenario, seed);
    let (_, second_hash) = run(&minimal.scenario, seed);
    if first_hash != second_hash {
        return Err(ShrinkError::Nondeterministic {
            first: first_hash,
            second: second_hash,
        });
    }
    let detail = match (&first, &target) {
        (Verdict::Error(message), Target::Error) => message.clone(),
        (Verdict::Checks(failed), Target::Check(name)) => failed
            .iter()
            .find(|c| &c.name == name)
            .map(|c| c.detail.clone())
            .ok_or(ShrinkError::Passes { seed, swarm: false })?,
        _ => return Err(ShrinkError::Passes { seed, swarm: false }),
    };
    let actions_after = minimal
        .scenario
        .fault_schedule(Seed::new(seed))
        .action_count();
    let workload_after = workload_length(&minimal.scenario);
    Ok(Shrunk {
        source: minimal,
        target,
        detail,
        actions: (before.0, actions_after),
        workload: (before.1, workload_after),
        runs: runs + 2,
        trace_hash: first_hash,
    })
}

impl Shrunk {
    /// The scenario file to write: a header saying where it came from and
    /// how to replay it, then the document.
    pub fn file_text(
        &self,
        original: &Path,
        out: &Path,
        seed: u64,
        swarm: bool,
    ) -> Result<String, SourceError> {
        let mut doc = self.source.doc.clone();
        let name = format!("{}-shrunk", self.source.scenario.name);
        doc.insert("name".into(), toml::Value::String(name));
        doc.insert(
            "description".into(),
            toml::Value::String(format!(
                "Minimal failing schedule for seed {seed} of {}.",
                original.display()
            )),
        );
        let body = crate::explore::render(&doc)?;
        let swarm_flag = if swarm { " --swarm" } else { "" };
        Ok(format!(
            "# Shrunk by `meshsim shrink {} --seed {seed}{swarm_flag}`:\n\
             # {} -> {} fault actions, workload {} -> {}, in {} simulations.\n\
             # It fails {} deterministically (trace {}):\n\
             #   {}\n\
             # Replay: meshsim run {}\n\n{body}",
            original.display(),
            self.actions.0,
            self.actions.1,
            format_duration(self.workload.0),
            format_duration(self.workload.1),
            self.runs,
            self.target,
            self.trace_hash,
            self.detail,
            out.display(),
        ))
    }
}
