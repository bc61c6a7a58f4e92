//! `[[checks]]`: SLO thresholds and named properties with bounds.

use serde::Deserialize;
use toml::Spanned;

use super::Dur;
use super::workload::Operation;

/// A check: either an SLO threshold or a named property with a bound.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Name, unique in the scenario.
    pub name: Spanned<String>,
    /// A threshold, e.g. `p(99) < 250ms` (kind `slo`).
    #[serde(default)]
    pub slo: Option<Spanned<String>>,
    /// Restrict an SLO to one operation.
    #[serde(default)]
    pub operation: Option<Operation>,
    /// A named property of the run (kind given by the property).
    #[serde(default)]
    pub property: Option<Property>,
    /// The bound a property must meet.
    #[serde(default)]
    pub within: Option<Dur>,
}

/// Properties the engine knows how to check from the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Liveness: after the last repair, every proxy that lost the control
    /// plane reconnects and reaches its latest version within the bound.
    ControlPlaneReconverged,
    /// SLO: every applied config version reaches every proxy within the
    /// bound (p99 over proxies, per version).
    ConfigPropagated,
    /// SLO: a root rotation completes, re-issues every identity, and no
    /// request fails from its start until `within` (optional) after the
    /// old root is removed. See `checks::identity` for these six.
    RotationNoFailedRequests,
    /// Security: no expired or not-yet-valid certificate is ever accepted.
    NoExpiredCertAccepted,
    /// Security: no plaintext connection gets an answer.
    NoPlaintextAccepted,
    /// Security: with expired certificates, requests fail (closed).
    FailsClosedWhenExpired,
    /// Liveness: after the CA returns, proxies renew and serve within the bound.
    IdentityRecovered,
    /// Security: a skewed clock breaks only the skewed host.
    SkewContained,
}

impl Property {
    /// Whether the property needs `within = "…"`.
    pub fn needs_bound(self) -> bool {
        !matches!(
            self,
            Property::RotationNoFailedRequests
                | Property::NoExpiredCertAccepted
                | Property::NoPlaintextAccepted
                | Property::FailsClosedWhenExpired
                | Property::SkewContained
        )
    }
}

impl CheckSpec {
    /// What is wrong with this check, if anything.
    pub(super) fn problem(&self) -> Option<String> {
        match (&self.slo, self.property, self.within) {
            (Some(slo), None, None) => slo
                .get_ref()
                .parse::<crate::slo::Threshold>()
                .err()
                .map(|e| e.to_string()),
            (None, Some(_), Some(_)) => None,
            (None, Some(p), None) if !p.needs_bound() => None,
            (None, Some(_), None) => Some("a property check needs `within = \"…\"`".into()),
            _ => Some(
                "a check needs either `slo = \"…\"` or `property = \"…\"` with `within`".into(),
            ),
        }
    }
}
