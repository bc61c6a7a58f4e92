//! `[[checks]]`: SLO thresholds.

use serde::Deserialize;
use toml::Spanned;

use super::workload::Operation;

/// An SLO check.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Name, unique in the scenario.
    pub name: String,
    /// The threshold, e.g. `p(99) < 250ms`.
    pub slo: Spanned<String>,
    /// Restrict to one operation.
    #[serde(default)]
    pub operation: Option<Operation>,
}
