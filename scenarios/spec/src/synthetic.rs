//! `app = "synthetic"`: a service described by its endpoints, each with a
//! service time, a response size, an error model and a call script, and
//! the validation of the call graph they form (unknown services and
//! endpoints, cycles, unreachable endpoints, probabilities).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::distribution::{ServiceTime, Size};
use super::{AppKind, Dur, Locator, Scenario, SpecError};

/// One endpoint of a synthetic service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// HTTP method matched (default `GET`).
    #[serde(default = "get")]
    pub method: String,
    /// Path matched exactly (no query).
    pub path: Spanned<String>,
    /// Service time; the service's `service_time` when absent.
    #[serde(default)]
    pub service_time: Option<ServiceTime>,
    /// Bytes of the answer's body (default 0).
    #[serde(default)]
    pub response_size: Option<Size>,
    /// Probability of each error status, e.g. `{ "500" = 0.005 }`; the rest
    /// of the time the answer is 200.
    #[serde(default)]
    pub errors: BTreeMap<String, Spanned<f64>>,
    /// What a failed call of the script does to this endpoint's answer.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Calls made after the service time, step by step.
    #[serde(default)]
    pub script: Vec<Step>,
}

fn get() -> String {
    "GET".into()
}

/// What a failed downstream call (no answer, or a status of 400 or more)
/// does to the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop the script and answer with the failure (its status, or 502
    /// when there was no answer).
    #[default]
    Fail,
    /// Carry on without it and answer 200 (a degraded answer).
    Degrade,
}

/// One call of a script.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    /// The service called (through the caller's own sidecar).
    pub service: Spanned<String>,
    /// Method (default `GET`).
    #[serde(default = "get")]
    pub method: String,
    /// Path.
    pub path: Spanned<String>,
    /// Bytes of the request body (default 0).
    #[serde(default)]
    pub request_size: Option<Size>,
    /// Probability that the call is made at all (default 1).
    #[serde(default = "certain")]
    pub probability: Spanned<f64>,
    /// The caller's deadline for one call; the mesh's route timeouts and
    /// retries apply inside it.
    #[serde(default = "default_call_timeout")]
    pub timeout: Dur,
}

fn certain() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}

fn default_call_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// A step of a script: one call, or a group sent together that waits for
/// all of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawStep")]
pub enum Step {
    /// `{ service = "…", path = "…" }`.
    Call(CallSpec),
    /// `{ concurrent = [ { service, path }, … ] }`.
    Concurrent(Vec<CallSpec>),
}

/// A step as written: a call's fields, or `concurrent` alone. (Not an
/// untagged enum: that would buffer the table and lose its positions.)
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    concurrent: Option<Vec<CallSpec>>,
    service: Option<Spanned<String>>,
    method: Option<String>,
    path: Option<Spanned<String>>,
    request_size: Option<Size>,
    probability: Option<Spanned<f64>>,
    timeout: Option<Dur>,
}

impl TryFrom<RawStep> for Step {
    type Error = String;
    fn try_from(raw: RawStep) -> Result<Self, String> {
        if let Some(group) = raw.concurrent {
            let alone = raw.service.is_none()
                && raw.method.is_none()
                && raw.path.is_none()
                && raw.request_size.is_none()
                && raw.probability.is_none()
                && raw.timeout.is_none();
            if !alone {
                return Err("a step is either one call or `concurrent = [calls]`, not both; put the call's fields inside the group".into());
            }
            if group.is_empty() {
                return Err("`concurrent` needs at least one call".into());
            }
            return Ok(Step::Concurrent(group));
        }
        let (Some(service), Some(path)) = (raw.service, raw.path) else {
            return Err(
                "a step needs `service` and `path` (one call), or `concurrent = [calls]`".into(),
            );
        };
        Ok(Step::Call(CallSpec {
            service,
            method: raw.method.unwrap_or_else(get),
            path,
            request_size: raw.request_size,
            probability: raw.probability.unwrap_or_else(certain),
            timeout: raw.timeout.unwrap_or_else(default_call_timeout),
        }))
    }
}

impl Step {
    /// The calls of this step.
    pub fn calls(&self) -> &[CallSpec] {
        match self {
            Step::Call(call) => std::slice::from_ref(call),
            Step::Concurrent(group) => group,
        }
    }

    /// The calls of this step, to fill in.
    pub(crate) fn calls_mut(&mut self) -> &mut [CallSpec] {
        match self {
            Step::Call(call) => std::slice::from_mut(call),
            Step::Concurrent(group) => group,
        }
    }
}

/// (service index, endpoint index).
type Node = (usize, usize);

impl Scenario {
    /// The endpoint of `service` that `method` and `path` reach.
    pub fn endpoint(&self, service: &str, method: &str, path: &str) -> Option<&EndpointSpec> {
        self.endpoint_node(service, method, path)
            .map(|(s, e)| &self.services[s].endpoints[e])
    }

    fn endpoint_node(&self, service: &str, method: &str, path: &str) -> Option<Node> {
        let s = self
            .services
            .iter()
            .position(|x| x.name.get_ref() == service)?;
        let e = self.services[s]
            .endpoints
            .iter()
            .position(|e| e.method.eq_ignore_ascii_case(method) && e.path.get_ref() == path)?;
        Some((s, e))
    }

    pub(crate) fn validate_synthetic(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        for service in &self.services {
            let name = service.name.get_ref();
            let synthetic = service.app == AppKind::Synthetic;
            if !synthetic && !service.endpoints.is_empty() {
                return Err(locate.error(
                    Some(service.name.span()),
                    format!(
                        "service \"{name}\" has endpoints, which only app = \"synthetic\" takes"
                    ),
                ));
            }
            if !synthetic && service.service_time.is_none() {
                return Err(locate.error(
                    Some(service.name.span()),
                    format!("service \"{name}\" needs a service_time"),
                ));
            }
            if synthetic && service.endpoints.is_empty() {
                return Err(locate.error(
                    Some(service.name.span()),
                    format!(
                        "synthetic service \"{name}\" needs at least one [[services.endpoints]]"
                    ),
                ));
            }
            for (index, endpoint) in service.endpoints.iter().enumerate() {
                self.validate_endpoint(locate, service, index, endpoint)?;
            }
        }
        self.validate_acyclic(locate)?;
        self.validate_reachable(locate)
    }

    fn validate_endpoint(
        &self,
        locate: &Locator<'_>,
        service: &super::ServiceSpec,
        index: usize,
        endpoint: &EndpointSpec,
    ) -> Result<(), SpecError> {
        let at = Some(endpoint.path.span());
        let shown = format!("{} {}", endpoint.method, endpoint.path.get_ref());
        if !is_method(&endpoint.method) {
            return Err(locate.error(at, format!("\"{}\" is not an HTTP method", endpoint.method)));
        }
        if !endpoint.path.get_ref().starts_with('/') {
            return Err(locate.error(
                at,
                format!(
                    "endpoint path \"{}\" must start with '/'",
                    endpoint.path.get_ref()
                ),
            ));
        }
        if service.endpoints[..index].iter().any(|e| {
            e.method.eq_ignore_ascii_case(&endpoint.method)
                && e.path.get_ref() == endpoint.path.get_ref()
        }) {
            return Err(locate.error(at, super::defined_twice("endpoint", &shown)));
        }
        if endpoint.service_time.is_none() && service.service_time.is_none() {
            return Err(locate.error(
                at,
                format!("endpoint {shown} needs a service_time (or one on its service)"),
            ));
        }
        let mut total = 0.0;
        for (status, probability) in &endpoint.errors {
            let code = status
                .parse::<u16>()
                .ok()
                .filter(|c| (400..=599).contains(c));
            if code.is_none() {
                return Err(locate.error(
                    Some(probability.span()),
                    format!("error status \"{status}\" must be a code from 400 to 599"),
                ));
            }
            probability_in_range(locate, probability, "error probability")?;
            total += probability.get_ref();
        }
        if total > 1.0 + 1e-12 {
            return Err(locate.error(
                at,
                format!("the error probabilities of {shown} add up to {total}, above 1"),
            ));
        }
        for call in endpoint.script.iter().flat_map(Step::calls) {
            probability_in_range(locate, &call.probability, "call probability")?;
            let callee = call.service.get_ref();
            if let Some(message) = self.unknown_service("called service", callee, false) {
                return Err(locate.error(Some(call.service.span()), message));
            }
            let target = self.services.iter().find(|s| s.name.get_ref() == callee);
            if target.is_some_and(|t| t.app == AppKind::Synthetic)
                && self
                    .endpoint(callee, &call.method, call.path.get_ref())
                    .is_none()
            {
                return Err(locate.error(
                    Some(call.path.span()),
                    format!(
                        "service \"{callee}\" has no endpoint {} {}",
                        call.method,
                        call.path.get_ref()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The endpoints each endpoint's script reaches.
    fn edges(&self, (s, e): Node) -> Vec<(Node, &CallSpec)> {
        self.services[s].endpoints[e]
            .script
            .iter()
            .flat_map(Step::calls)
            .filter_map(|call| {
                self.endpoint_node(call.service.get_ref(), &call.method, call.path.get_ref())
                    .map(|node| (node, call))
            })
            .collect()
    }

    /// A cycle would recurse until every slot and deadline is used up.
    fn validate_acyclic(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        // 0 unvisited, 1 on the current path, 2 done.
        let mut state: BTreeMap<Node, u8> = BTreeMap::new();
        fn visit<'s>(
            scenario: &'s Scenario,
            node: Node,
            state: &mut BTreeMap<Node, u8>,
            path: &mut Vec<Node>,
        ) -> Option<(&'s CallSpec, Vec<Node>)> {
            state.insert(node, 1);
            path.push(node);
            for (next, call) in scenario.edges(node) {
                match state.get(&next).copied().unwrap_or(0) {
                    1 => {
                        let from = path.iter().position(|n| *n == next).unwrap_or(0);
                        let mut cycle = path[from..].to_vec();
                        cycle.push(next);
                        return Some((call, cycle));
                    }
                    0 => {
                        if let Some(found) = visit(scenario, next, state, path) {
                            return Some(found);
                        }
                    }
                    _ => {}
                }
            }
            path.pop();
            state.insert(node, 2);
            None
        }
        for (s, service) in self.services.iter().enumerate() {
            for e in 0..service.endpoints.len() {
                if state.contains_key(&(s, e)) {
                    continue;
                }
                if let Some((call, cycle)) = visit(self, (s, e), &mut state, &mut Vec::new()) {
                    let names: Vec<String> = cycle
                        .iter()
                        .map(|&(s, e)| {
                            let ep = &self.services[s].endpoints[e];
                            format!(
                                "{} {} {}",
                                self.services[s].name.get_ref(),
                                ep.method,
                                ep.path.get_ref()
                            )
                        })
                        .collect();
                    return Err(locate.error(
                        Some(call.service.span()),
                        format!(
                            "this call closes a cycle in the call graph: {}",
                            names.join(" -> ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every endpoint must be reached by the mix or by a script; one that
    /// is not is a typo in a path or a dead part of the model.
    fn validate_reachable(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        let target = self.workload.target.get_ref();
        let mut stack: Vec<Node> = Vec::new();
        for op in &self.workload.mix {
            let Some(path) = &op.path else { continue };
            match self.endpoint_node(target, op.method(), path.get_ref()) {
                Some(node) => stack.push(node),
                None if self.is_synthetic(target) => {
                    return Err(locate.error(
                        Some(path.span()),
                        format!(
                            "the workload target \"{target}\" has no endpoint {} {}",
                            op.method(),
                            path.get_ref()
                        ),
                    ));
                }
                None => {}
            }
        }
        let mut reached: BTreeMap<Node, ()> = BTreeMap::new();
        while let Some(node) = stack.pop() {
            if reached.insert(node, ()).is_none() {
                stack.extend(self.edges(node).into_iter().map(|(n, _)| n));
            }
        }
        for (s, service) in self.services.iter().enumerate() {
            for (e, endpoint) in service.endpoints.iter().enumerate() {
                if !reached.contains_key(&(s, e)) {
                    return Err(locate.error(
                        Some(endpoint.path.span()),
                        format!(
                            "endpoint {} {} of service \"{}\" is reached by no script and no [[workload.mix]] entry",
                            endpoint.method,
                            endpoint.path.get_ref(),
                            service.name.get_ref()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn is_synthetic(&self, service: &str) -> bool {
        self.services
            .iter()
            .any(|s| s.name.get_ref() == service && s.app == AppKind::Synthetic)
    }
}

fn probability_in_range(
    locate: &Locator<'_>,
    probability: &Spanned<f64>,
    what: &str,
) -> Result<(), SpecError> {
    let p = *probability.get_ref();
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(locate.error(
            Some(probability.span()),
            format!("{what} {p} is outside [0, 1]"),
        ))
    }
}

/// An HTTP method as written in a scenario: a token of capital letters.
pub(crate) fn is_method(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn corpus(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cli/tests/malformed")
            .join(format!("{name}.toml"));
        Scenario::load(&path).unwrap_err().to_string()
    }

    #[test]
    fn each_call_graph_mistake_is_named_where_it_is_written() {
        for (file, line_column, says) in [
            (
                "synthetic-unknown-service",
                ":15:15:",
                "called service \"bakend\" is not a service",
            ),
            (
                "synthetic-call-unknown-endpoint",
                ":15:33:",
                "has no endpoint GET /itmes",
            ),
            ("synthetic-cycle", ":27:24:", "closes a cycle"),
            (
                "synthetic-unreachable-endpoint",
                ":30:8:",
                "reached by no script",
            ),
            (
                "synthetic-call-probability-above-1",
                ":15:57:",
                "outside [0, 1]",
            ),
            (
                "synthetic-error-probability-negative",
                ":27:20:",
                "outside [0, 1]",
            ),
            ("synthetic-empirical-missing", ":22:", "does not exist"),
            ("synthetic-empirical-malformed", ":22:", "line 4"),
            (
                "synthetic-lognormal-p99-below-median",
                ":22:",
                "median < p99",
            ),
        ] {
            let message = corpus(file);
            assert!(message.contains(line_column), "{file}: {message}");
            assert!(message.contains(says), "{file}: {message}");
        }
    }

    #[test]
    fn the_library_models_parse() {
        for name in ["boutique", "social-network"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../library")
                .join(format!("{name}.toml"));
            let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                scenario
                    .services
                    .iter()
                    .all(|s| s.app == AppKind::Synthetic)
            );
        }
    }
}
