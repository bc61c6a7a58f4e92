//! `[[checks]]`: SLO thresholds and named properties with bounds.

use serde::Deserialize;
use toml::Spanned;

use super::{Dur, Locator, Scenario, SpecError};

/// A check: either an SLO threshold or a named property with a bound.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Name, unique in the scenario.
    pub name: Spanned<String>,
    /// A threshold, e.g. `p(99) < 250ms` (kind `slo`).
    #[serde(default)]
    pub slo: Option<Spanned<String>>,
    /// Restrict an SLO to one operation of the mix: a REC operation
    /// (`quote`) or a synthetic entry's name (its `name`, else `"METHOD
    /// path"`).
    #[serde(default)]
    pub operation: Option<Spanned<String>>,
    /// A named property of the run (kind given by the property).
    #[serde(default)]
    pub property: Option<Property>,
    /// The bound a property must meet.
    #[serde(default)]
    pub within: Option<Dur>,
    /// Restrict an SLO to one workload phase (requests whose intended
    /// start falls in it).
    #[serde(default)]
    pub phase: Option<Spanned<String>>,
    /// Restrict an SLO to one mesh route (`[[mesh.services.*.routes]]`
    /// name), measured by the calling sidecars.
    #[serde(default)]
    pub route: Option<Spanned<String>>,
    /// Stop the run as soon as this SLO fails (see README: evaluated every
    /// `workload.interval` of sim time over what has completed so far).
    #[serde(default)]
    pub abort_on_fail: bool,
    /// `caller_cut_off`: the service whose calls the new policy denies.
    #[serde(default)]
    pub caller: Option<Spanned<String>>,
    /// `caller_cut_off`: the service whose inbound policy denies them.
    #[serde(default)]
    pub service: Option<Spanned<String>>,
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
    /// Security: after the first applied config, `service`'s proxies stop
    /// admitting `caller` within the bound (and `caller` kept trying).
    CallerCutOff,
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
        let slo_only = [
            ("operation", self.operation.is_some()),
            ("phase", self.phase.is_some()),
            ("route", self.route.is_some()),
            ("abort_on_fail", self.abort_on_fail),
        ];
        if self.property.is_some()
            && let Some((field, _)) = slo_only.iter().find(|(_, set)| *set)
        {
            return Some(format!(
                "`{field}` applies to SLOs; a property check cannot take it"
            ));
        }
        let cut_off = self.property == Some(Property::CallerCutOff);
        if !cut_off && (self.caller.is_some() || self.service.is_some()) {
            return Some("`caller` and `service` belong to `property = \"caller_cut_off\"`".into());
        }
        if cut_off && (self.caller.is_none() || self.service.is_none()) {
            return Some("`caller_cut_off` needs `caller = \"…\"` and `service = \"…\"`".into());
        }
        if self.route.is_some() && (self.operation.is_some() || self.phase.is_some()) {
            return Some(
                "a route-scoped SLO is measured by the sidecars, which know neither operations nor phases; drop `operation`/`phase` or `route`".into(),
            );
        }
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

impl Scenario {
    /// Checks `[[checks]]` against the rest of the scenario: each check's
    /// own shape, unique names, and that every scope names something that
    /// exists (a phase, a mesh route, a service).
    pub(super) fn validate_checks(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        let fail = |span, check: &CheckSpec, message: String| {
            Err(locate.error(
                Some(span),
                format!("check \"{}\": {message}", check.name.get_ref()),
            ))
        };
        for (index, check) in self.checks.iter().enumerate() {
            if let Some(problem) = check.problem() {
                let span = check
                    .slo
                    .as_ref()
                    .map_or(check.name.span(), |slo| slo.span());
                return fail(span, check, problem);
            }
            if self.checks[..index]
                .iter()
                .any(|c| c.name.get_ref() == check.name.get_ref())
            {
                return fail(check.name.span(), check, "is defined twice".into());
            }
            if let Some(phase) = &check.phase {
                if let Some(misaligned) = self.phase_off_interval() {
                    return fail(
                        phase.span(),
                        check,
                        format!(
                            "a phase-scoped SLO needs every phase boundary on a multiple of workload.interval ({}), but {misaligned}",
                            self.workload.interval
                        ),
                    );
                }
                let phases: Vec<&str> = self
                    .workload
                    .phases
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                if !phases.contains(&phase.get_ref().as_str()) {
                    return fail(
                        phase.span(),
                        check,
                        format!(
                            "phase \"{}\" is not a workload phase; expected one of {phases:?}",
                            phase.get_ref()
                        ),
                    );
                }
            }
            if let Some(operation) = &check.operation {
                let labels: Vec<String> = self.workload.mix.iter().map(|op| op.label()).collect();
                if !labels.contains(operation.get_ref()) {
                    return fail(
                        operation.span(),
                        check,
                        format!(
                            "operation \"{}\" is not in the workload mix; expected one of {labels:?}",
                            operation.get_ref()
                        ),
                    );
                }
            }
            if let Some(route) = &check.route {
                let routes = self.route_names();
                if !routes.contains(&route.get_ref().as_str()) {
                    return fail(
                        route.span(),
                        check,
                        format!(
                            "route \"{}\" is not a route of any [mesh.services.*]; expected one of {routes:?}",
                            route.get_ref()
                        ),
                    );
                }
            }
            let named = [
                ("caller", &check.caller, true),
                ("service", &check.service, false),
            ];
            for (role, name, client_ok) in named {
                let Some(name) = name else { continue };
                if let Some(message) = self.unknown_service(role, name.get_ref(), client_ok) {
                    return fail(name.span(), check, message);
                }
            }
        }
        Ok(())
    }

    /// The first phase boundary that is not a multiple of the measuring
    /// interval (phase-scoped SLOs add up whole intervals), described.
    fn phase_off_interval(&self) -> Option<String> {
        let interval = self.workload.interval.0.as_nanos().max(1);
        let mut end = std::time::Duration::ZERO;
        for phase in &self.workload.phases {
            end += phase.duration.0;
            if !end.as_nanos().is_multiple_of(interval) {
                return Some(format!("phase \"{}\" ends at {end:?}", phase.name));
            }
        }
        None
    }

    /// Names of the routes `[mesh.services.*.routes]` declares, sorted.
    pub fn route_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .mesh
            .services
            .values()
            .flat_map(|policy| policy.routes.iter().map(|r| r.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}
