//! What the sources share: durations, percentages, service names from
//! Kubernetes host names, identities, and the per-service policy being
//! assembled (meshsim's own `mesh::config` types).

use std::collections::BTreeMap;

use mesh::config as cfg;

use super::yaml::{Node, Pos, Sink};
use crate::SpecError;

/// What the scenario offers the import: its services and identity names.
/// With no services listed, any service name is accepted.
pub struct ImportContext {
    /// Services the scenario declares.
    pub services: Vec<String>,
    /// The scenario's SPIFFE trust domain.
    pub trust_domain: String,
    /// The scenario's namespace (the `ns` of every identity).
    pub namespace: String,
}

/// Where an aspect of a service's policy came from, so a second source for
/// the same aspect is refused with both places named.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub file: String,
    pub at: Pos,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.at.line, self.at.column)
    }
}

/// Istio's authorization for one workload, kept apart from meshsim's form
/// until every document is read, because "no ALLOW policy" can only be
/// known at the end.
#[derive(Clone, Debug, Default)]
pub(crate) struct IstioAuthz {
    /// Rules of ALLOW policies; `Some` once any ALLOW policy targets the
    /// workload (even one with no rules, which allows nothing).
    pub allow: Option<Vec<cfg::AuthzRule>>,
    /// Rules of DENY policies.
    pub deny: Vec<cfg::AuthzRule>,
}

/// One service's policy as the documents build it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Assembly {
    pub config: cfg::ServiceConfig,
    /// Who set the routes, the traffic policy, the budget.
    pub routes_from: Option<Origin>,
    pub traffic_from: Option<Origin>,
    pub budget_from: Option<Origin>,
    pub istio_authz: Option<IstioAuthz>,
    /// Linkerd: allow rules once a `Server` selects the service.
    pub linkerd_authz: Option<Vec<cfg::AuthzRule>>,
    /// Gateway API routes, sorted by the spec's precedence at the end.
    pub http_routes: Vec<(RoutePrecedence, cfg::RouteConfig)>,
    /// An Istio document configures the service, so Istio's default
    /// balancer (LEAST_REQUEST) applies unless a DestinationRule names one.
    pub istio: bool,
}

/// Gateway API's precedence among matches of routes on one parent: exact
/// path before prefix, longer prefix first, then a method, then more
/// headers; ties keep file order (`sort_by` is stable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RoutePrecedence {
    pub exact_first: u8,
    pub longer_prefix_first: std::cmp::Reverse<usize>,
    pub method_first: u8,
    pub more_headers_first: std::cmp::Reverse<usize>,
}

/// Everything the documents built, by service.
#[derive(Debug, Default)]
pub(crate) struct Build {
    pub services: BTreeMap<String, Assembly>,
    /// Replicas from `Deployment`s, with where each was read.
    pub replicas: BTreeMap<String, (u32, Origin)>,
}

impl Build {
    pub fn service(&mut self, name: &str) -> &mut Assembly {
        self.services.entry(name.to_owned()).or_default()
    }
}

/// Claims an aspect of a service's policy for one document; a second
/// claim is an error naming the first.
pub(crate) fn claim(
    sink: &Sink,
    slot: &mut Option<Origin>,
    at: Pos,
    service: &str,
    aspect: &str,
) -> Result<(), SpecError> {
    if let Some(first) = slot {
        return Err(sink.error(
            at,
            format!(
                "the {aspect} of service \"{service}\" are already set at {first}; meshsim takes one source per service"
            ),
        ));
    }
    *slot = Some(Origin {
        file: sink.path.display().to_string(),
        at,
    });
    Ok(())
}

/// The service a Kubernetes host name names (`registry`,
/// `registry.rec`, `registry.rec.svc.cluster.local`), which must be one
/// the scenario declares.
pub(crate) fn service_of_host(
    sink: &Sink,
    context: &ImportContext,
    node: &Node,
    role: &str,
) -> Result<String, SpecError> {
    let host = node.str(sink, role)?;
    if host.contains('*') {
        return Err(sink.error(
            node.at,
            format!("{role} \"{host}\" is a wildcard; meshsim imports policy for named services"),
        ));
    }
    let name = host.split('.').next().unwrap_or(host).to_owned();
    known_service(sink, context, node.at, role, &name)?;
    Ok(name)
}

/// Refuses a name that is not a scenario service, in the scenario's own
/// wording.
pub(crate) fn known_service(
    sink: &Sink,
    context: &ImportContext,
    at: Pos,
    role: &str,
    name: &str,
) -> Result<(), SpecError> {
    // No scenario to check against (`meshsim import mesh` alone): any name.
    if context.services.is_empty() || context.services.iter().any(|s| s == name) {
        Ok(())
    } else {
        Err(sink.error(
            at,
            format!(
                "{role} \"{name}\" is not a service; services are {:?}",
                context.services
            ),
        ))
    }
}

/// A Kubernetes or protobuf duration (`10s`, `0.5s`, `250ms`, `1m30s`) in
/// whole milliseconds.
pub(crate) fn duration_ms(sink: &Sink, node: &Node, what: &str) -> Result<u64, SpecError> {
    let text = node.str(sink, what)?;
    parse_duration_ms(text).ok_or_else(|| {
        sink.error(
            node.at,
            format!(
                "{what}: expected a duration like \"250ms\", \"2s\" or \"1m30s\", found \"{text}\""
            ),
        )
    })
}

fn parse_duration_ms(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total_ms = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale_ms = match &rest[..unit_end] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            _ => return None,
        };
        total_ms += number * scale_ms;
        rest = &rest[unit_end..];
    }
    (total_ms.is_finite() && total_ms < 1e15).then(|| total_ms.round() as u64)
}

/// A percentage in 0–100.
pub(crate) fn percentage(sink: &Sink, node: &Node, what: &str) -> Result<f64, SpecError> {
    let value = node.number(sink, what)?;
    if !(0.0..=100.0).contains(&value) {
        return Err(sink.error(
            node.at,
            format!("{what} {value} is out of range; expected 0 to 100"),
        ));
    }
    Ok(value)
}

/// A retry count (retries after the first try, as Istio's `attempts` and
/// Gateway API's `retry.attempts` both count them) in meshsim's range.
pub(crate) fn retry_count(sink: &Sink, node: &Node, what: &str) -> Result<u32, SpecError> {
    let attempts = node.int(sink, what)?;
    if !(0..=9).contains(&attempts) {
        return Err(sink.error(
            node.at,
            format!("{what} {attempts} is out of range; meshsim allows 0 to 9 retries"),
        ));
    }
    Ok(attempts as u32)
}

/// An identity pattern in meshsim's SPIFFE form. Istio writes
/// `cluster.local/ns/N/sa/S` (SPIFFE without the scheme) and meshsim's
/// trust domain stands in for Istio's default `cluster.local`, as a
/// trust-domain alias would; `*`, `prefix*` and `*suffix` keep their
/// meaning.
pub(crate) fn principal(context: &ImportContext, written: &str) -> String {
    if written == "*" || written.starts_with('*') {
        return written.to_owned();
    }
    let bare = written.strip_prefix("spiffe://").unwrap_or(written);
    let bare = match bare.strip_prefix("cluster.local/") {
        Some(rest) => format!("{}/{rest}", context.trust_domain),
        None => bare.to_owned(),
    };
    format!("spiffe://{bare}")
}

/// The SPIFFE identity of a service account.
pub(crate) fn service_account(context: &ImportContext, namespace: &str, name: &str) -> String {
    format!("spiffe://{}/ns/{namespace}/sa/{name}", context.trust_domain)
}

/// A regex that matches exactly `literal` followed by anything: Istio's
/// `uri.prefix` is a plain string prefix (`/api` matches `/apix`), unlike
/// meshsim's segment prefix, so it becomes a regex that keeps Istio's
/// meaning.
pub(crate) fn string_prefix_regex(literal: &str) -> String {
    format!("{}.*", regex::escape(literal))
}

/// A compiled path regex, or an error at the node.
pub(crate) fn path_regex(sink: &Sink, at: Pos, source: &str) -> Result<cfg::PathMatch, SpecError> {
    cfg::PathRegex::new(source)
        .map(cfg::PathMatch::Regex)
        .map_err(|e| sink.error(at, e.0))
}

/// An upper-case HTTP method.
pub(crate) fn method(sink: &Sink, node: &Node, what: &str) -> Result<String, SpecError> {
    let method = node.str(sink, what)?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(sink.error(
            node.at,
            format!("{what} \"{method}\" must be an upper-case HTTP method"),
        ));
    }
    Ok(method.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_kubernetes_and_protobuf_forms() {
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("0.5s"), Some(500));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("fast"), None);
    }

    #[test]
    fn istio_principals_become_spiffe_ids_in_the_scenario_domain() {
        let context = ImportContext {
            services: vec![],
            trust_domain: "rec.meshsim".into(),
            namespace: "rec".into(),
        };
        assert_eq!(
            principal(&context, "cluster.local/ns/rec/sa/gateway"),
            "spiffe://rec.meshsim/ns/rec/sa/gateway"
        );
        assert_eq!(
            principal(&context, "spiffe://other.org/ns/a/sa/b"),
            "spiffe://other.org/ns/a/sa/b"
        );
        assert_eq!(principal(&context, "*/sa/gateway"), "*/sa/gateway");
        assert_eq!(
            principal(&context, "cluster.local/ns/rec/*"),
            "spiffe://rec.meshsim/ns/rec/*"
        );
    }

    #[test]
    fn an_istio_prefix_is_a_string_prefix() {
        let regex = cfg::PathRegex::new(&string_prefix_regex("/api.v1")).unwrap();
        assert!(regex.is_match("/api.v1"));
        assert!(regex.is_match("/api.v1x/y"));
        assert!(!regex.is_match("/apixv1"));
    }
}
