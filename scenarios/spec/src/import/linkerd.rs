//! Linkerd: `ServiceProfile` (linkerd.io) and the policy resources
//! (policy.linkerd.io): `Server`, `AuthorizationPolicy`,
//! `MeshTLSAuthentication`, `HTTPRoute`.

use std::collections::BTreeMap;

use mesh::config as cfg;

use super::common::{
    Build, ImportContext, claim, duration_ms, method, path_regex, service_account, service_of_host,
};
use super::yaml::{Node, Pos, Sink};
use crate::SpecError;

/// Retries per route: Linkerd bounds retries with the budget only;
/// meshsim's cap of 10 attempts stands in for "until the budget says no".
const RETRY_ATTEMPTS_MAX: u32 = 10;

/// A `ServiceProfile` named after its service's FQDN.
pub(crate) fn service_profile(
    sink: &mut Sink,
    context: &ImportContext,
    build: &mut Build,
    name: &str,
    spec: &Node,
) -> Result<(), SpecError> {
    let name_node = Node {
        at: spec.at,
        value: super::yaml::Value::Str(name.to_owned()),
    };
    let service = service_of_host(sink, context, &name_node, "ServiceProfile")?;
    let fields = spec.fields(sink, "ServiceProfile.spec")?;
    let mut routes = Vec::new();
    if let Some(list) = fields.get("routes") {
        for route in list.seq(sink, "routes")? {
            routes.push(profile_route(sink, route)?);
        }
    }
    let retryable = routes.iter().any(|r| r.retry.is_some());
    let budget = match fields.get("retryBudget") {
        Some(b) => Some(retry_budget(sink, b)?),
        // Linkerd applies its default budget to retryable routes.
        None => retryable.then(cfg::RetryBudget::default),
    };
    fields.unmodelled(
        sink,
        "dstOverrides",
        "traffic splits come from HTTPRoute backendRefs or VirtualService weights",
    );
    fields.unmodelled(sink, "opaquePorts", "meshsim services speak HTTP");
    let at = fields.at();
    fields.finish(sink);
    let assembly = build.service(&service);
    if !routes.is_empty() {
        claim(sink, &mut assembly.routes_from, at, &service, "routes")?;
        assembly.config.routes = routes;
    }
    if budget.is_some() {
        claim(
            sink,
            &mut assembly.budget_from,
            at,
            &service,
            "retry budget",
        )?;
        assembly.config.retry_budget = budget;
    }
    Ok(())
}

fn profile_route(sink: &mut Sink, node: &Node) -> Result<cfg::RouteConfig, SpecError> {
    let fields = node.fields(sink, "ServiceProfile route")?;
    let name = fields
        .require(sink, "name")?
        .str(sink, "route name")?
        .to_owned();
    let mut route = cfg::RouteConfig {
        name,
        ..cfg::RouteConfig::default()
    };
    let condition = fields.require(sink, "condition")?;
    let c = condition.fields(sink, "condition")?;
    if let Some(m) = c.get("method") {
        route.matches.methods = vec![method(sink, m, "condition.method")?];
    }
    if let Some(regex) = c.get("pathRegex") {
        route.matches.path = Some(path_regex(sink, regex.at, regex.str(sink, "pathRegex")?)?);
    }
    for key in ["all", "any", "not"] {
        if let Some(n) = c.get(key) {
            return Err(sink.error(
                n.at,
                format!("condition `{key}` is not supported by meshsim's routes; write one route per method and pathRegex"),
            ));
        }
    }
    c.finish(sink);
    if let Some(timeout) = fields.get("timeout") {
        route.timeout_ms = Some(duration_ms(sink, timeout, "timeout")?);
    }
    if let Some(retryable) = fields.get("isRetryable")
        && retryable.bool(sink, "isRetryable")?
    {
        // Linkerd retries a failed response (5xx) of a retryable route,
        // whatever its method (marking it retryable asserts idempotency),
        // at once, for as long as the budget allows.
        route.retry = Some(cfg::RetryPolicy {
            max_attempts: RETRY_ATTEMPTS_MAX,
            retry_on: vec![cfg::RetryOn::ServerError, cfg::RetryOn::ConnectFailure],
            retry_on_status: Vec::new(),
            backoff_base_ms: 0,
            backoff_max_ms: 0,
            non_idempotent: cfg::NonIdempotent::Always,
        });
    }
    fields.unmodelled(
        sink,
        "responseClasses",
        "meshsim counts every 5xx as a failure",
    );
    fields.finish(sink);
    Ok(route)
}

fn retry_budget(sink: &mut Sink, node: &Node) -> Result<cfg::RetryBudget, SpecError> {
    let fields = node.fields(sink, "retryBudget")?;
    let ratio_node = fields.require(sink, "retryRatio")?;
    let ratio = ratio_node.number(sink, "retryRatio")?;
    if !(0.0..=1000.0).contains(&ratio) {
        return Err(sink.error(
            ratio_node.at,
            format!("retryRatio {ratio} is out of range; expected 0 to 1000"),
        ));
    }
    let min_node = fields.require(sink, "minRetriesPerSecond")?;
    let min = min_node.int(sink, "minRetriesPerSecond")?;
    let min = u32::try_from(min).map_err(|_| {
        sink.error(
            min_node.at,
            format!("minRetriesPerSecond {min} is out of range; expected 0 or more"),
        )
    })?;
    let ttl_node = fields.require(sink, "ttl")?;
    let ttl_ms = duration_ms(sink, ttl_node, "ttl")?;
    if !(1000..=60_000).contains(&ttl_ms) {
        return Err(sink.error(
            ttl_node.at,
            format!("ttl {ttl_ms} ms is out of range; meshsim's budget window is 1s to 60s"),
        ));
    }
    fields.finish(sink);
    Ok(cfg::RetryBudget {
        ratio,
        min_retries_per_s: min,
        ttl_ms,
    })
}

/// A document's kind and metadata.
pub(crate) struct Object<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
}

/// Policy resources refer to each other by name, so they are read first
/// and resolved once every file is in.
#[derive(Default)]
pub(crate) struct Pending {
    servers: BTreeMap<String, (String, Pos, String)>,
    authentications: BTreeMap<String, Vec<String>>,
    /// Inbound routes: name → (server, the paths and methods they cover).
    routes: BTreeMap<String, (String, Vec<cfg::AuthzRule>)>,
    policies: Vec<PendingPolicy>,
}

struct PendingPolicy {
    file: Sink,
    at: Pos,
    target_kind: String,
    target: String,
    authentications: Vec<(String, String, Pos)>,
}

impl Pending {
    /// Reads one policy.linkerd.io document.
    pub(crate) fn read(
        &mut self,
        sink: &mut Sink,
        context: &ImportContext,
        build: &mut Build,
        object: Object<'_>,
        spec: &Node,
    ) -> Result<(), SpecError> {
        let namespace = object.namespace.unwrap_or(&context.namespace);
        match object.kind {
            "Server" => self.server(sink, context, object.name, spec),
            "MeshTLSAuthentication" => {
                self.authentication(sink, context, object.name, namespace, spec)
            }
            "AuthorizationPolicy" => self.policy(sink, spec),
            _ => self.http_route(sink, context, build, object.name, spec),
        }
    }

    fn server(
        &mut self,
        sink: &mut Sink,
        context: &ImportContext,
        name: &str,
        spec: &Node,
    ) -> Result<(), SpecError> {
        let fields = spec.fields(sink, "Server.spec")?;
        let selector = fields.require(sink, "podSelector")?;
        let service = super::kube::selected_services(sink, context, selector)?.remove(0);
        let mut access = "deny".to_owned();
        if let Some(a) = fields.get("accessPolicy") {
            access = a.str(sink, "accessPolicy")?.to_owned();
            if !matches!(
                access.as_str(),
                "deny" | "all-authenticated" | "cluster-authenticated"
            ) {
                return Err(sink.error(a.at, format!("accessPolicy {access} is refused: meshsim's sidecars never accept unauthenticated callers")));
            }
        }
        fields.ignore("port");
        fields.unmodelled(
            sink,
            "proxyProtocol",
            "mesh hops are always HTTP/2 over mTLS",
        );
        fields.finish(sink);
        self.servers
            .insert(name.to_owned(), (service, spec.at, access));
        Ok(())
    }

    fn authentication(
        &mut self,
        sink: &mut Sink,
        context: &ImportContext,
        name: &str,
        namespace: &str,
        spec: &Node,
    ) -> Result<(), SpecError> {
        let fields = spec.fields(sink, "MeshTLSAuthentication.spec")?;
        let mut principals = Vec::new();
        if let Some(ids) = fields.get("identities") {
            for id in ids.seq(sink, "identities")? {
                principals.push(identity(sink, context, id)?);
            }
        }
        if let Some(refs) = fields.get("identityRefs") {
            for r in refs.seq(sink, "identityRefs")? {
                let f = r.fields(sink, "identityRef")?;
                let kind = f.require(sink, "kind")?;
                if kind.str(sink, "identityRef kind")? != "ServiceAccount" {
                    return Err(sink.error(kind.at, "identityRefs must name ServiceAccounts"));
                }
                let sa = f
                    .require(sink, "name")?
                    .str(sink, "identityRef name")?
                    .to_owned();
                let ns = match f.get("namespace") {
                    Some(n) => n.str(sink, "identityRef namespace")?.to_owned(),
                    None => namespace.to_owned(),
                };
                f.ignore("group");
                f.finish(sink);
                principals.push(service_account(context, &ns, &sa));
            }
        }
        fields.finish(sink);
        self.authentications.insert(name.to_owned(), principals);
        Ok(())
    }

    fn policy(&mut self, sink: &mut Sink, spec: &Node) -> Result<(), SpecError> {
        let fields = spec.fields(sink, "AuthorizationPolicy.spec")?;
        let target = fields.require(sink, "targetRef")?;
        let t = target.fields(sink, "targetRef")?;
        let target_kind = t
            .require(sink, "kind")?
            .str(sink, "targetRef kind")?
            .to_owned();
        if !matches!(target_kind.as_str(), "Server" | "HTTPRoute") {
            return Err(sink.error(
                target.at,
                format!(
                    "targetRef kind {target_kind} is not modelled; target a Server or an HTTPRoute"
                ),
            ));
        }
        let target_name = t
            .require(sink, "name")?
            .str(sink, "targetRef name")?
            .to_owned();
        t.ignore("group");
        t.finish(sink);
        let mut authentications = Vec::new();
        for r in fields
            .require(sink, "requiredAuthenticationRefs")?
            .seq(sink, "requiredAuthenticationRefs")?
        {
            let f = r.fields(sink, "requiredAuthenticationRef")?;
            let kind = f
                .require(sink, "kind")?
                .str(sink, "authentication kind")?
                .to_owned();
            let ref_name = f
                .require(sink, "name")?
                .str(sink, "authentication name")?
                .to_owned();
            if kind == "NetworkAuthentication" {
                return Err(sink.error(r.at, "NetworkAuthentication is not modelled: meshsim has no client networks, only mTLS identities; ignoring it would change who is allowed"));
            }
            f.ignore("group");
            f.ignore("namespace");
            f.finish(sink);
            authentications.push((kind, ref_name, r.at));
        }
        fields.finish(sink);
        self.policies.push(PendingPolicy {
            file: Sink::new(&sink.path),
            at: spec.at,
            target_kind,
            target: target_name,
            authentications,
        });
        Ok(())
    }

    /// A policy.linkerd.io `HTTPRoute`: with a `Server` parent it names
    /// requests an AuthorizationPolicy can target; with a `Service` parent
    /// it routes, as a Gateway API HTTPRoute does.
    fn http_route(
        &mut self,
        sink: &mut Sink,
        context: &ImportContext,
        build: &mut Build,
        name: &str,
        spec: &Node,
    ) -> Result<(), SpecError> {
        let fields = spec.fields(sink, "HTTPRoute.spec")?;
        let parents = fields.require(sink, "parentRefs")?;
        let first = parents
            .seq(sink, "parentRefs")?
            .first()
            .ok_or_else(|| sink.error(parents.at, "parentRefs is empty"))?;
        let parent_kind = first
            .fields(sink, "parentRef")?
            .get("kind")
            .map(|k| k.str(sink, "kind").map(str::to_owned))
            .transpose()?;
        if parent_kind.as_deref() != Some("Server") {
            drop(fields);
            return super::gateway::http_route(sink, context, build, name, spec);
        }
        let server = first
            .fields(sink, "parentRef")?
            .require(sink, "name")?
            .str(sink, "parentRef name")?
            .to_owned();
        let mut rules = Vec::new();
        if let Some(list) = fields.get("rules") {
            for rule in list.seq(sink, "rules")? {
                let r = rule.fields(sink, "HTTPRoute rule")?;
                match r.get("matches") {
                    Some(matches) => {
                        for m in matches.seq(sink, "matches")? {
                            rules.push(authz_match(sink, m)?);
                        }
                    }
                    None => rules.push(cfg::AuthzRule::default()),
                }
                r.unmodelled(
                    sink,
                    "filters",
                    "meshsim's inbound routes do not modify requests",
                );
                r.unmodelled(
                    sink,
                    "backendRefs",
                    "an inbound route's backend is the workload itself",
                );
                r.unmodelled(sink, "timeouts", "inbound routes only authorize in meshsim");
                r.finish(sink);
            }
        }
        fields.finish(sink);
        self.routes.insert(name.to_owned(), (server, rules));
        Ok(())
    }

    /// Turns every pending policy into allow rules of its server's service.
    pub(crate) fn resolve(
        self,
        context: &ImportContext,
        build: &mut Build,
    ) -> Result<(), SpecError> {
        for (service, _, access) in self.servers.values() {
            let allow = build
                .service(service)
                .linkerd_authz
                .get_or_insert_with(Vec::new);
            if access != "deny" {
                allow.push(cfg::AuthzRule {
                    principals: vec!["*".into()],
                    ..cfg::AuthzRule::default()
                });
            }
        }
        for policy in self.policies {
            let sink = &policy.file;
            let (server, requests) = match policy.target_kind.as_str() {
                "Server" => (policy.target.clone(), vec![cfg::AuthzRule::default()]),
                _ => {
                    let (server, rules) = self.routes.get(&policy.target).ok_or_else(|| {
                        sink.error(
                            policy.at,
                            format!(
                                "targetRef names HTTPRoute \"{}\", which no imported file defines",
                                policy.target
                            ),
                        )
                    })?;
                    (server.clone(), rules.clone())
                }
            };
            let (service, _, _) = self.servers.get(&server).ok_or_else(|| {
                sink.error(
                    policy.at,
                    format!("the policy's Server \"{server}\" is not defined in any imported file"),
                )
            })?;
            let mut principals = Vec::new();
            for (kind, name, at) in &policy.authentications {
                match kind.as_str() {
                    "MeshTLSAuthentication" => principals.extend(
                        self.authentications.get(name).ok_or_else(|| {
                            sink.error(*at, format!("MeshTLSAuthentication \"{name}\" is not defined in any imported file"))
                        })?.iter().cloned(),
                    ),
                    "ServiceAccount" => principals.push(service_account(context, &context.namespace, name)),
                    other => return Err(sink.error(*at, format!("authentication kind {other} is not modelled"))),
                }
            }
            let allow = build
                .service(service)
                .linkerd_authz
                .get_or_insert_with(Vec::new);
            for request in requests {
                allow.push(cfg::AuthzRule {
                    principals: principals.clone(),
                    ..request
                });
            }
        }
        Ok(())
    }
}

/// A Linkerd identity (`NAME.NS.serviceaccount.identity.linkerd.DOMAIN`,
/// or `*`) as a SPIFFE pattern in the scenario's trust domain.
fn identity(sink: &Sink, context: &ImportContext, node: &Node) -> Result<String, SpecError> {
    let written = node.str(sink, "identity")?;
    if written == "*" {
        return Ok("*".into());
    }
    let parts: Vec<&str> = written.splitn(5, '.').collect();
    match parts.as_slice() {
        [name, ns, "serviceaccount", "identity", _rest] => Ok(service_account(context, ns, name)),
        _ => Err(sink.error(
            node.at,
            format!("identity \"{written}\" is not NAME.NAMESPACE.serviceaccount.identity.linkerd.DOMAIN or *"),
        )),
    }
}

/// An inbound route match as the paths and methods a rule covers. A
/// `PathPrefix` covers the prefix itself and everything below it.
fn authz_match(sink: &mut Sink, node: &Node) -> Result<cfg::AuthzRule, SpecError> {
    let fields = node.fields(sink, "HTTPRoute match")?;
    let mut rule = cfg::AuthzRule::default();
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
        rule.paths = match kind.as_str() {
            "Exact" => vec![value],
            "PathPrefix" => {
                let trimmed = value.trim_end_matches('/');
                vec![
                    format!("{trimmed}/*"),
                    if trimmed.is_empty() {
                        "/".into()
                    } else {
                        trimmed.to_owned()
                    },
                ]
            }
            other => {
                return Err(sink.error(path.at, format!("path type {other} cannot be authorized by meshsim, whose policy paths are exact, prefix* or *suffix")));
            }
        };
        p.finish(sink);
    }
    if let Some(m) = fields.get("method") {
        rule.methods = vec![method(sink, m, "method")?];
    }
    for key in ["headers", "queryParams"] {
        if let Some(n) = fields.get(key) {
            return Err(sink.error(n.at, format!("an inbound route matching on `{key}` cannot be authorized by meshsim; ignoring it would change who is allowed")));
        }
    }
    fields.finish(sink);
    Ok(rule)
}
