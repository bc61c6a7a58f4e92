//! `[phases]`: safety, heal, liveness (after TigerBeetle's VOPR).
//!
//! ```toml
//! [phases]
//! heal_at = "12s"          # from the workload start; faults only before it
//! converge_within = "5s"   # after the heal, the mesh must converge by then…
//! stable_for = "2s"        # …meaning: this long without a failed request
//! slo = "p(99) < 250ms"    # optional: and this SLO holds in that window
//! ```
//!
//! The safety phase runs the fault schedule. At `heal_at` the simulator
//! removes every fault still in force (repairs and releases links, resets
//! latency, loss, skew and slowness, restarts crashed hosts). The liveness
//! check then asks for a window of `stable_for` with no failed request (and
//! the SLO met) that starts no later than `converge_within` after the heal.

use serde::Deserialize;
use toml::Spanned;

use super::{Dur, Locator, Scenario, SpecError};
use crate::slo::Threshold;

/// The run's phases.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhasesSpec {
    /// End of the safety phase, from the workload start.
    pub heal_at: Spanned<Dur>,
    /// The liveness bound: convergence must start within this after heal.
    pub converge_within: Dur,
    /// How long an error-free window must last to count as converged.
    #[serde(default = "default_stable_for")]
    pub stable_for: Dur,
    /// An SLO that must also hold over that window.
    #[serde(default)]
    pub slo: Option<Spanned<String>>,
}

fn default_stable_for() -> Dur {
    Dur(std::time::Duration::from_secs(2))
}

impl Scenario {
    /// Checks `[phases]` against the workload; called when the file is loaded.
    pub(super) fn validate_phases(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        let Some(phases) = &self.phases else {
            return Ok(());
        };
        let workload: std::time::Duration = self.workload.phases.iter().map(|p| p.duration.0).sum();
        let needed = phases.heal_at.get_ref().0 + phases.converge_within.0 + phases.stable_for.0;
        if needed > workload {
            return Err(locate.error(
                Some(phases.heal_at.span()),
                format!(
                    "the workload lasts {workload:?}, but heal_at + converge_within + stable_for = {needed:?}; the liveness phase must fit in the workload"
                ),
            ));
        }
        if phases.stable_for.0 < self.workload.interval.0 {
            return Err(locate.error(
                Some(phases.heal_at.span()),
                format!(
                    "stable_for ({}) is shorter than the measuring interval ({})",
                    phases.stable_for, self.workload.interval
                ),
            ));
        }
        if let Some(slo) = &phases.slo
            && let Err(e) = slo.get_ref().parse::<Threshold>()
        {
            return Err(locate.error(Some(slo.span()), format!("phases.slo: {e}")));
        }
        Ok(())
    }
}
