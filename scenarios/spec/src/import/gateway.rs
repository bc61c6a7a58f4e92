//! Gateway API `HTTPRoute` attached to a `Service` (GAMMA mesh routing;
//! also Linkerd's `policy.linkerd.io` HTTPRoute with a Service parent).

use std::cmp::Reverse;

use mesh::config as cfg;

use super::common::{
    Build, ImportContext, RoutePrecedence, claim, duration_ms, known_service, method, path_regex,
};
use super::yaml::{Node, Sink};
use crate::SpecError;

/// Gateway API's largest weight.
const WEIGHT_MAX: i64 = 1_000_000;

/// An `HTTPRoute`: its rules become routes of each parent service, in the
/// spec's precedence order once every route is read.
pub(crate) fn http_route(
    sink: &mut Sink,
    context: &ImportContext,
    build: &mut Build,
    name: &str,
    spec: &Node,
) -> Result<(), SpecError> {
    let fields = spec.fields(sink, "HTTPRoute.spec")?;
    let parents = parent_services(sink, context, fields.require(sink, "parentRefs")?)?;
    let mut routes = Vec::new();
    if let Some(rules) = fields.get("rules") {
        for (index, rule) in rules.seq(sink, "HTTPRoute rules")?.iter().enumerate() {
            routes.extend(http_rule(sink, context, name, index, rule)?);
        }
    }
    fields.unmodelled(
        sink,
        "hostnames",
        "meshsim routes by the parent Service, as GAMMA does",
    );
    let at = fields.at();
    fields.finish(sink);
    for service in parents {
        let assembly = build.service(&service);
        if assembly.http_routes.is_empty() {
            claim(sink, &mut assembly.routes_from, at, &service, "routes")?;
        }
        for (precedence, route) in &routes {
            let mut route = route.clone();
            // A rule sending everything back to its own parent is no split.
            if matches!(route.backends.as_slice(), [only] if only.service == service) {
                route.backends.clear();
            }
            assembly.http_routes.push((*precedence, route));
        }
    }
    Ok(())
}

fn parent_services(
    sink: &mut Sink,
    context: &ImportContext,
    node: &Node,
) -> Result<Vec<String>, SpecError> {
    let mut services = Vec::new();
    for parent in node.seq(sink, "parentRefs")? {
        let fields = parent.fields(sink, "parentRef")?;
        let kind = match fields.get("kind") {
            Some(k) => k.str(sink, "parentRef kind")?.to_owned(),
            None => "Gateway".to_owned(),
        };
        if kind != "Service" {
            return Err(sink.error(
                parent.at,
                format!("parentRef kind {kind} is not modelled: meshsim has no ingress gateway; attach the route to a Service (GAMMA mesh routing)"),
            ));
        }
        let name_node = fields.require(sink, "name")?;
        let name = name_node.str(sink, "parentRef name")?.to_owned();
        known_service(sink, context, name_node.at, "HTTPRoute parent", &name)?;
        fields.ignore("group");
        fields.ignore("namespace");
        fields.unmodelled(sink, "port", "meshsim services have one port");
        fields.unmodelled(sink, "sectionName", "meshsim services have one port");
        fields.finish(sink);
        services.push(name);
    }
    Ok(services)
}

fn http_rule(
    sink: &mut Sink,
    context: &ImportContext,
    route_name: &str,
    index: usize,
    node: &Node,
) -> Result<Vec<(RoutePrecedence, cfg::RouteConfig)>, SpecError> {
    let fields = node.fields(sink, "HTTPRoute rule")?;
    let name = match fields.get("name") {
        Some(n) => format!("{route_name}.{}", n.str(sink, "rule name")?),
        None => format!("{route_name}-{index}"),
    };
    let mut base = cfg::RouteConfig {
        name: name.clone(),
        ..cfg::RouteConfig::default()
    };
    if let Some(refs) = fields.get("backendRefs") {
        base.backends = backend_refs(sink, context, refs)?;
    }
    if let Some(timeouts) = fields.get("timeouts") {
        let t = timeouts.fields(sink, "timeouts")?;
        if let Some(request) = t.get("request") {
            base.timeout_ms = Some(duration_ms(sink, request, "timeouts.request")?);
        }
        if let Some(backend) = t.get("backendRequest") {
            base.per_try_timeout_ms = Some(duration_ms(sink, backend, "timeouts.backendRequest")?);
        }
        t.finish(sink);
    }
    if let Some(retry) = fields.get("retry") {
        base.retry = retry_policy(sink, retry)?;
    }
    fields.unmodelled(
        sink,
        "filters",
        "meshsim's routes do not rewrite, redirect, mirror or modify headers",
    );
    fields.unmodelled(sink, "sessionPersistence", "meshsim balances every request");
    let matches = match fields.get("matches") {
        Some(m) => m
            .seq(sink, "matches")?
            .iter()
            .map(|m| route_match(sink, m))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    fields.finish(sink);
    if matches.is_empty() {
        // No matches: the spec's default, a PathPrefix of "/".
        return Ok(vec![(precedence(&cfg::RouteMatch::default()), base)]);
    }
    let several = matches.len() > 1;
    Ok(matches
        .into_iter()
        .enumerate()
        .map(|(i, matches)| {
            let route = cfg::RouteConfig {
                name: if several {
                    format!("{name}.{i}")
                } else {
                    name.clone()
                },
                matches,
                ..base.clone()
            };
            (precedence(&route.matches), route)
        })
        .collect())
}

fn precedence(matches: &cfg::RouteMatch) -> RoutePrecedence {
    let (exact, prefix_len) = match &matches.path {
        Some(cfg::PathMatch::Exact(p)) => (0, p.len()),
        Some(cfg::PathMatch::Prefix(p)) => (1, p.len()),
        Some(cfg::PathMatch::Regex(_)) => (2, 0),
        None => (1, 1),
    };
    RoutePrecedence {
        exact_first: exact,
        longer_prefix_first: Reverse(prefix_len),
        method_first: u8::from(matches.methods.is_empty()),
        more_headers_first: Reverse(matches.headers.len()),
    }
}

fn route_match(sink: &mut Sink, node: &Node) -> Result<cfg::RouteMatch, SpecError> {
    let fields = node.fields(sink, "HTTPRoute match")?;
    let mut matches = cfg::RouteMatch::default();
    if let Some(path) = fields.get("path") {
        let p = path.fields(sink, "path match")?;
        let kind = match p.get("type") {
            Some(t) => t.str(sink, "path type")?.to_owned(),
            None => "PathPrefix".to_owned(),
        };
        let value = match p.get("value") {
            Some(v) => v.str(sink, "path value")?.to_owned(),
            None => "/".to_owned(),
        };
        matches.path = Some(match kind.as_str() {
            "Exact" => cfg::PathMatch::Exact(value),
            "PathPrefix" => cfg::PathMatch::Prefix(value),
            "RegularExpression" => path_regex(sink, path.at, &value)?,
            other => {
                return Err(sink.error(
                    path.at,
                    format!("path type {other} is not one of Exact, PathPrefix, RegularExpression"),
                ));
            }
        });
        p.finish(sink);
    }
    if let Some(m) = fields.get("method") {
        matches.methods = vec![method(sink, m, "method")?];
    }
    if let Some(headers) = fields.get("headers") {
        for header in headers.seq(sink, "headers")? {
            let h = header.fields(sink, "header match")?;
            if let Some(t) = h.get("type")
                && t.str(sink, "header match type")? != "Exact"
            {
                return Err(sink.error(
                    t.at,
                    "only Exact header matches are supported by meshsim's routes; ignoring the match would change which requests match",
                ));
            }
            matches.headers.push(cfg::HeaderMatch {
                name: h
                    .require(sink, "name")?
                    .str(sink, "header name")?
                    .to_ascii_lowercase(),
                value: Some(h.require(sink, "value")?.text(sink, "header value")?),
            });
            h.finish(sink);
        }
    }
    if let Some(query) = fields.get("queryParams") {
        return Err(sink.error(
            query.at,
            "queryParams matches are not supported by meshsim's routes; ignoring them would change which requests match",
        ));
    }
    fields.finish(sink);
    Ok(matches)
}

fn backend_refs(
    sink: &mut Sink,
    context: &ImportContext,
    node: &Node,
) -> Result<Vec<cfg::WeightedBackend>, SpecError> {
    let mut backends = Vec::new();
    for backend in node.seq(sink, "backendRefs")? {
        let b = backend.fields(sink, "backendRef")?;
        if let Some(kind) = b.get("kind")
            && kind.str(sink, "backendRef kind")? != "Service"
        {
            return Err(sink.error(kind.at, "a backendRef must be a Service"));
        }
        let name_node = b.require(sink, "name")?;
        let service = name_node.str(sink, "backendRef name")?.to_owned();
        known_service(sink, context, name_node.at, "route backend", &service)?;
        let weight = match b.get("weight") {
            Some(w) => {
                let weight = w.int(sink, "weight")?;
                if !(0..=WEIGHT_MAX).contains(&weight) {
                    return Err(sink.error(
                        w.at,
                        format!("weight {weight} is out of range; expected 0 to {WEIGHT_MAX}"),
                    ));
                }
                weight as u32
            }
            None => 1,
        };
        b.ignore("group");
        b.ignore("namespace");
        b.unmodelled(sink, "port", "meshsim services have one port");
        b.unmodelled(sink, "filters", "meshsim's routes do not modify requests");
        b.finish(sink);
        backends.push(cfg::WeightedBackend { service, weight });
    }
    Ok(backends)
}

/// `retry` (GEP-1731): `attempts` counts retries; `codes` are retried
/// statuses; connection failures are retried too, as implementations do.
fn retry_policy(sink: &mut Sink, node: &Node) -> Result<Option<cfg::RetryPolicy>, SpecError> {
    let fields = node.fields(sink, "retry")?;
    let attempts = match fields.get("attempts") {
        Some(a) => super::common::retry_count(sink, a, "retry.attempts")?,
        None => 1,
    };
    let mut policy = cfg::RetryPolicy {
        max_attempts: attempts + 1,
        retry_on: vec![cfg::RetryOn::ConnectFailure],
        ..cfg::RetryPolicy::default()
    };
    if let Some(codes) = fields.get("codes") {
        for code in codes.seq(sink, "retry.codes")? {
            let status = code.int(sink, "retry code")?;
            if !(400..=599).contains(&status) {
                return Err(sink.error(
                    code.at,
                    format!("retry code {status} is out of range; expected 400 to 599"),
                ));
            }
            policy.retry_on_status.push(status as u16);
        }
    }
    if let Some(backoff) = fields.get("backoff") {
        policy.backoff_base_ms = duration_ms(sink, backoff, "retry.backoff")?;
        policy.backoff_max_ms = policy.backoff_base_ms * 10;
    }
    fields.finish(sink);
    Ok((attempts > 0).then_some(policy))
}
