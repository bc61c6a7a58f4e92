//! The one record a run hands to its judges: the plan it ran (scenario as
//! run, seed, fault plan), what each variant observed, the trace, and
//! timing. Checks and the report read only this; none of them draws the
//! fault schedule again.

use reports::{Mode, Summary};
use seam::{Seed, Trace};
use spec::{FaultPlan, Scenario};

use crate::dataplane::VariantRun;

/// Everything a finished run observed, as the checks need it.
pub struct RunEvidence {
    pub seed: Seed,
    pub mode: Mode,
    /// The primary variant's scenario, as run (stretched in real mode).
    pub scenario: Scenario,
    /// The primary variant's faults, at the times they were applied.
    pub faults: FaultPlan,
    /// Every variant, the primary last.
    pub variants: Vec<VariantRun>,
    pub trace: Trace,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
}

impl RunEvidence {
    /// The variant the SLOs and the summary describe.
    pub fn primary(&self) -> &VariantRun {
        self.variants
            .last()
            .expect("a run has at least one variant")
    }
}

/// Judges a run: SLOs, liveness, properties and identity checks on the
/// primary variant, data-plane checks across every variant.
pub fn judge(evidence: &RunEvidence) -> Summary {
    let events = evidence.trace.events();
    let mut summary = crate::summarize(evidence, &events);
    summary.checks.extend(crate::dataplane::mesh_checks(
        &evidence.scenario,
        &evidence.variants,
        &events,
    ));
    summary.verdict = Summary::verdict_of(&summary.checks);
    summary
}
