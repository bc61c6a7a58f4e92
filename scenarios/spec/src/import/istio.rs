//! Istio: `VirtualService`, `DestinationRule`, `AuthorizationPolicy`,
//! `PeerAuthentication` (networking.istio.io, security.istio.io).

use mesh::config as cfg;

use super::common::{
    Build, ImportContext, IstioAuthz, claim, duration_ms, method, path_regex, percentage,
    principal, service_of_host, string_prefix_regex,
};
use super::yaml::{Fields, Node, Sink};
use crate::SpecError;

/// A `VirtualService`: the http routes of each of its hosts.
pub(crate) fn virtual_service(
    sink: &mut Sink,
    context: &ImportContext,
    build: &mut Build,
    name: &str,
    spec: &Node,
) -> Result<(), SpecError> {
    let fields = spec.fields(sink, "VirtualService.spec")?;
    let hosts = fields.require(sink, "hosts")?;
    let mut services = Vec::new();
    for host in hosts.seq(sink, "VirtualService.spec.hosts")? {
        services.push(service_of_host(sink, context, host, "VirtualService host")?);
    }
    let mut routes = Vec::new();
    if let Some(http) = fields.get("http") {
        for (index, route) in http
            .seq(sink, "VirtualService.spec.http")?
            .iter()
            .enumerate()
        {
            routes.extend(http_route(sink, context, name, index, route)?);
        }
    }
    fields.unmodelled(
        sink,
        "gateways",
        "meshsim has no ingress gateway; the routes apply to mesh traffic",
    );
    fields.unmodelled(sink, "exportTo", "every meshsim service sees every other");
    fields.unmodelled(sink, "tcp", "meshsim routes HTTP only");
    fields.unmodelled(sink, "tls", "meshsim routes HTTP only");
    let at = fields.at();
    fields.finish(sink);
    for service in services {
        let assembly = build.service(&service);
        claim(sink, &mut assembly.routes_from, at, &service, "routes")?;
        assembly.config.routes = routes.clone();
        assembly.istio = true;
    }
    Ok(())
}

fn http_route(
    sink: &mut Sink,
    context: &ImportContext,
    vs_name: &str,
    index: usize,
    node: &Node,
) -> Result<Vec<cfg::RouteConfig>, SpecError> {
    let fields = node.fields(sink, "VirtualService http route")?;
    let name = match fields.get("name") {
        Some(n) => n.str(sink, "http route name")?.to_owned(),
        None => format!("{vs_name}-{index}"),
    };
    let mut base = cfg::RouteConfig {
        name: name.clone(),
        ..cfg::RouteConfig::default()
    };
    if let Some(route) = fields.get("route") {
        base.backends = destinations(sink, context, route)?;
    }
    if let Some(timeout) = fields.get("timeout") {
        base.timeout_ms = Some(duration_ms(sink, timeout, "timeout")?);
    }
    // Istio retries twice when a route says nothing (connect-failure,
    // refused-stream, unavailable, cancelled, retriable-status-codes); an
    // import keeps that, since it is what the source mesh would do.
    base.retry = Some(istio_default_retry());
    if let Some(retries) = fields.get("retries") {
        let (retry, per_try) = retry_policy(sink, retries)?;
        base.retry = retry;
        base.per_try_timeout_ms = per_try;
    }
    if let Some(fault) = fields.get("fault") {
        base.fault = Some(fault_injection(sink, fault)?);
    }
    for key in ["mirror", "mirrorPercentage", "mirror_percent", "mirrors"] {
        fields.unmodelled(sink, key, "meshsim does not mirror traffic");
    }
    for key in ["rewrite", "redirect", "directResponse"] {
        fields.unmodelled(
            sink,
            key,
            "meshsim's routes do not rewrite or answer for the app",
        );
    }
    fields.unmodelled(sink, "headers", "meshsim does not manipulate headers");
    fields.unmodelled(sink, "corsPolicy", "meshsim does not model CORS");
    fields.unmodelled(
        sink,
        "delegate",
        "delegated VirtualServices are not imported",
    );
    let matches = match fields.get("match") {
        Some(m) => m
            .seq(sink, "http route match")?
            .iter()
            .map(|m| route_match(sink, m))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    fields.finish(sink);
    if matches.len() <= 1 {
        base.matches = matches.into_iter().next().unwrap_or_default();
        return Ok(vec![base]);
    }
    // Istio ORs the entries of `match`; meshsim's routes match one way
    // each, so each entry becomes a route with the same action.
    Ok(matches
        .into_iter()
        .enumerate()
        .map(|(i, matches)| cfg::RouteConfig {
            name: format!("{name}.{i}"),
            matches,
            ..base.clone()
        })
        .collect())
}

/// Istio's default: 2 retries on connect failures and refused streams,
/// 25 ms base backoff. Envoy retries whatever the method.
fn istio_default_retry() -> cfg::RetryPolicy {
    cfg::RetryPolicy {
        max_attempts: 3,
        retry_on: vec![cfg::RetryOn::ConnectFailure, cfg::RetryOn::Reset],
        non_idempotent: cfg::NonIdempotent::Always,
        ..cfg::RetryPolicy::default()
    }
}

fn route_match(sink: &mut Sink, node: &Node) -> Result<cfg::RouteMatch, SpecError> {
    let fields = node.fields(sink, "http match")?;
    let mut matches = cfg::RouteMatch::default();
    if let Some(uri) = fields.get("uri") {
        let uri_fields = uri.fields(sink, "http match uri")?;
        let path = if let Some(exact) = uri_fields.get("exact") {
            cfg::PathMatch::Exact(exact.str(sink, "uri.exact")?.to_owned())
        } else if let Some(prefix) = uri_fields.get("prefix") {
            let prefix = prefix.str(sink, "uri.prefix")?;
            path_regex(sink, uri.at, &string_prefix_regex(prefix))?
        } else if let Some(regex) = uri_fields.get("regex") {
            path_regex(sink, regex.at, regex.str(sink, "uri.regex")?)?
        } else {
            return Err(sink.error(uri.at, "uri match needs exact, prefix or regex"));
        };
        uri_fields.finish(sink);
        matches.path = Some(path);
    }
    if let Some(m) = fields.get("method") {
        let method_fields = m.fields(sink, "http match method")?;
        let exact = method_fields
            .get("exact")
            .ok_or_else(|| unsupported(sink, m, "a method match other than exact"))?;
        matches.methods = vec![method(sink, exact, "method.exact")?];
        method_fields.finish(sink);
    }
    if let Some(headers) = fields.get("headers") {
        let header_fields = headers.fields(sink, "http match headers")?;
        if let super::yaml::Value::Map(entries) = &headers.value {
            for (header, _, value) in entries {
                header_fields.get(header);
                let value_fields = value.fields(sink, "header match")?;
                let exact = value_fields
                    .get("exact")
                    .ok_or_else(|| unsupported(sink, value, "a header match other than exact"))?;
                matches.headers.push(cfg::HeaderMatch {
                    name: header.to_ascii_lowercase(),
                    value: Some(exact.text(sink, "header exact")?),
                });
                value_fields.finish(sink);
            }
        }
        header_fields.finish(sink);
    }
    fields.ignore("name");
    for key in [
        "authority",
        "port",
        "sourceLabels",
        "gateways",
        "queryParams",
        "ignoreUriCase",
        "withoutHeaders",
        "sourceNamespace",
        "scheme",
        "statPrefix",
    ] {
        if let Some(node) = fields.get(key) {
            // Dropping a match condition would widen the route.
            return Err(unsupported(sink, node, &format!("match on `{key}`")));
        }
    }
    fields.finish(sink);
    Ok(matches)
}

fn unsupported(sink: &Sink, node: &Node, what: &str) -> SpecError {
    sink.error(
        node.at,
        format!("{what} is not supported by meshsim's routes; ignoring it would change which requests match"),
    )
}

fn destinations(
    sink: &mut Sink,
    context: &ImportContext,
    node: &Node,
) -> Result<Vec<cfg::WeightedBackend>, SpecError> {
    let mut backends = Vec::new();
    let items = node.seq(sink, "http route destinations")?;
    for item in items {
        let fields = item.fields(sink, "route destination")?;
        let destination = fields.require(sink, "destination")?;
        let destination_fields = destination.fields(sink, "destination")?;
        let host = destination_fields.require(sink, "host")?;
        let service = service_of_host(sink, context, host, "route destination")?;
        destination_fields.unmodelled(
            sink,
            "subset",
            "meshsim has no subsets; the destination is the whole service",
        );
        destination_fields.unmodelled(sink, "port", "meshsim services have one port");
        destination_fields.finish(sink);
        let weight = match fields.get("weight") {
            Some(w) => {
                let weight = w.int(sink, "weight")?;
                if !(0..=100).contains(&weight) {
                    return Err(sink.error(
                        w.at,
                        format!("weight {weight} is out of range; expected 0 to 100"),
                    ));
                }
                weight as u32
            }
            None if items.len() == 1 => 100,
            None => 0,
        };
        fields.unmodelled(sink, "headers", "meshsim does not manipulate headers");
        fields.finish(sink);
        backends.push(cfg::WeightedBackend { service, weight });
    }
    Ok(backends)
}

/// `retries`: Istio's `attempts` counts retries, meshsim's `max_attempts`
/// counts the first try too.
fn retry_policy(
    sink: &mut Sink,
    node: &Node,
) -> Result<(Option<cfg::RetryPolicy>, Option<u64>), SpecError> {
    let fields = node.fields(sink, "retries")?;
    let attempts = match fields.get("attempts") {
        Some(a) => super::common::retry_count(sink, a, "retries.attempts")?,
        None => 2,
    };
    let per_try = match fields.get("perTryTimeout") {
        Some(t) => Some(duration_ms(sink, t, "perTryTimeout")?),
        None => None,
    };
    let mut policy = cfg::RetryPolicy {
        max_attempts: attempts + 1,
        ..istio_default_retry()
    };
    if let Some(on) = fields.get("retryOn") {
        let (retry_on, statuses) = retry_on(sink, on, per_try.is_some())?;
        policy.retry_on = retry_on;
        policy.retry_on_status = statuses;
    }
    fields.unmodelled(sink, "retryRemoteLocalities", "meshsim has no localities");
    fields.unmodelled(sink, "backoff", "meshsim keeps Envoy's 25 ms base backoff");
    fields.finish(sink);
    Ok(((attempts > 0).then_some(policy), per_try))
}

fn retry_on(
    sink: &mut Sink,
    node: &Node,
    per_try_timeout: bool,
) -> Result<(Vec<cfg::RetryOn>, Vec<u16>), SpecError> {
    let text = node.str(sink, "retryOn")?;
    let mut on = Vec::new();
    let mut statuses = Vec::new();
    for condition in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let mapped = match condition {
            "5xx" => Some(cfg::RetryOn::ServerError),
            "gateway-error" => Some(cfg::RetryOn::GatewayError),
            "connect-failure" => Some(cfg::RetryOn::ConnectFailure),
            "reset" | "refused-stream" | "reset-before-request" => Some(cfg::RetryOn::Reset),
            "retriable-status-codes" => None,
            "retriable-4xx" => {
                statuses.push(409);
                None
            }
            "unavailable"
            | "cancelled"
            | "deadline-exceeded"
            | "internal"
            | "resource-exhausted"
            | "envoy-ratelimited"
            | "retriable-headers"
            | "http3-post-connect-failure" => {
                sink.warn(
                    node.at,
                    format!("retryOn `{condition}` is not modelled: it names a gRPC status or an Envoy header meshsim's HTTP apps never produce"),
                );
                None
            }
            code => match code.parse::<u16>() {
                Ok(status) if (100..=599).contains(&status) => {
                    statuses.push(status);
                    None
                }
                _ => {
                    return Err(sink.error(
                        node.at,
                        format!("retryOn `{code}` is not a retry condition Envoy knows"),
                    ));
                }
            },
        };
        if let Some(mapped) = mapped
            && !on.contains(&mapped)
        {
            on.push(mapped);
        }
    }
    // Envoy retries a per-try timeout under `5xx` and `gateway-error`.
    if per_try_timeout
        && on
            .iter()
            .any(|c| matches!(c, cfg::RetryOn::ServerError | cfg::RetryOn::GatewayError))
    {
        on.push(cfg::RetryOn::PerTryTimeout);
    }
    Ok((on, statuses))
}

fn fault_injection(sink: &mut Sink, node: &Node) -> Result<cfg::FaultInjection, SpecError> {
    let fields = node.fields(sink, "fault")?;
    let mut fault = cfg::FaultInjection::default();
    if let Some(delay) = fields.get("delay") {
        let delay_fields = delay.fields(sink, "fault.delay")?;
        let fixed = delay_fields.require(sink, "fixedDelay")?;
        fault.delay = Some(cfg::DelayFault {
            percent: fault_percent(sink, &delay_fields, "fault.delay")?,
            fixed_delay_ms: duration_ms(sink, fixed, "fixedDelay")?,
        });
        delay_fields.unmodelled(sink, "exponentialDelay", "Istio itself does not support it");
        delay_fields.finish(sink);
    }
    if let Some(abort) = fields.get("abort") {
        let abort_fields = abort.fields(sink, "fault.abort")?;
        let status = abort_fields.get("httpStatus").ok_or_else(|| {
            sink.error(
                abort.at,
                "fault.abort needs `httpStatus` (gRPC and HTTP/2 errors are not modelled)",
            )
        })?;
        let code = status.int(sink, "httpStatus")?;
        if !(200..=599).contains(&code) {
            return Err(sink.error(
                status.at,
                format!("httpStatus {code} is out of range; expected 200 to 599"),
            ));
        }
        fault.abort = Some(cfg::AbortFault {
            percent: fault_percent(sink, &abort_fields, "fault.abort")?,
            status: code as u16,
        });
        abort_fields.finish(sink);
    }
    fields.finish(sink);
    Ok(fault)
}

/// `percentage: { value: 50 }` (or the deprecated integer `percent`);
/// absent means every request, as in Envoy.
fn fault_percent(sink: &mut Sink, fields: &Fields<'_>, what: &str) -> Result<f64, SpecError> {
    if let Some(p) = fields.get("percentage") {
        let p_fields = p.fields(sink, &format!("{what}.percentage"))?;
        let value = p_fields.require(sink, "value")?;
        let percent = percentage(sink, value, &format!("{what}.percentage.value"))?;
        p_fields.finish(sink);
        return Ok(percent);
    }
    if let Some(p) = fields.get("percent") {
        return percentage(sink, p, &format!("{what}.percent"));
    }
    Ok(100.0)
}

/// A `DestinationRule`: load balancing, outlier detection, connection
/// pool limits for its host.
pub(crate) fn destination_rule(
    sink: &mut Sink,
    context: &ImportContext,
    build: &mut Build,
    spec: &Node,
) -> Result<(), SpecError> {
    let fields = spec.fields(sink, "DestinationRule.spec")?;
    let service = service_of_host(
        sink,
        context,
        fields.require(sink, "host")?,
        "DestinationRule host",
    )?;
    let mut config = build.service(&service).config.clone();
    if let Some(policy) = fields.get("trafficPolicy") {
        traffic_policy(sink, policy, &mut config)?;
    }
    fields.unmodelled(sink, "subsets", "meshsim has no subsets");
    fields.unmodelled(sink, "exportTo", "every meshsim service sees every other");
    fields.unmodelled(sink, "workloadSelector", "the rule applies to every caller");
    let at = fields.at();
    fields.finish(sink);
    let assembly = build.service(&service);
    claim(
        sink,
        &mut assembly.traffic_from,
        at,
        &service,
        "traffic policy (load balancer, outlier detection, connection pool)",
    )?;
    assembly.istio = true;
    assembly.config.load_balancer = config.load_balancer;
    assembly.config.outlier_detection = config.outlier_detection;
    assembly.config.circuit_breaker = config.circuit_breaker;
    Ok(())
}

fn traffic_policy(
    sink: &mut Sink,
    node: &Node,
    config: &mut cfg::ServiceConfig,
) -> Result<(), SpecError> {
    let fields = node.fields(sink, "trafficPolicy")?;
    if let Some(lb) = fields.get("loadBalancer") {
        let lb_fields = lb.fields(sink, "loadBalancer")?;
        if let Some(simple) = lb_fields.get("simple") {
            config.load_balancer = match simple.str(sink, "loadBalancer.simple")? {
                "ROUND_ROBIN" => cfg::LoadBalancer::RoundRobin,
                "LEAST_REQUEST" | "LEAST_CONN" => cfg::LoadBalancer::LeastRequest,
                other => {
                    return Err(sink.error(
                        simple.at,
                        format!("loadBalancer.simple {other} is not modelled; meshsim balances ROUND_ROBIN or LEAST_REQUEST (or peak-EWMA, Linkerd's)"),
                    ));
                }
            };
        }
        for key in [
            "consistentHash",
            "localityLbSetting",
            "warmupDurationSecs",
            "warmup",
        ] {
            lb_fields.unmodelled(sink, key, "meshsim has no such balancing option");
        }
        lb_fields.finish(sink);
    }
    if let Some(outlier) = fields.get("outlierDetection") {
        config.outlier_detection = Some(outlier_detection(sink, outlier)?);
    }
    if let Some(pool) = fields.get("connectionPool") {
        config.circuit_breaker = connection_pool(sink, pool)?;
    }
    fields.unmodelled(
        sink,
        "tls",
        "meshsim always uses its own mutual TLS (ISTIO_MUTUAL)",
    );
    fields.unmodelled(sink, "portLevelSettings", "meshsim services have one port");
    fields.unmodelled(sink, "tunnel", "meshsim has no tunnels");
    fields.unmodelled(
        sink,
        "proxyProtocol",
        "meshsim does not speak the PROXY protocol",
    );
    fields.finish(sink);
    Ok(())
}

fn count(sink: &Sink, node: &Node, what: &str) -> Result<u32, SpecError> {
    let value = node.int(sink, what)?;
    u32::try_from(value).map_err(|_| {
        sink.error(
            node.at,
            format!("{what} {value} is out of range; expected 0 or more"),
        )
    })
}

/// Istio's defaults apply to unset fields: 5 consecutive 5xx, gateway
/// errors off, 30 s base ejection, 10 % at most.
fn outlier_detection(sink: &mut Sink, node: &Node) -> Result<cfg::OutlierDetection, SpecError> {
    let fields = node.fields(sink, "outlierDetection")?;
    let mut outlier = cfg::OutlierDetection {
        consecutive_gateway_failures: 0,
        ..cfg::OutlierDetection::default()
    };
    if let Some(n) = fields.get("consecutive5xxErrors") {
        outlier.consecutive_5xx = count(sink, n, "consecutive5xxErrors")?;
    }
    if let Some(n) = fields.get("consecutiveGatewayErrors") {
        outlier.consecutive_gateway_failures = count(sink, n, "consecutiveGatewayErrors")?;
    }
    if let Some(base) = fields.get("baseEjectionTime") {
        outlier.base_ejection_ms = duration_ms(sink, base, "baseEjectionTime")?;
        outlier.max_ejection_ms = outlier.max_ejection_ms.max(outlier.base_ejection_ms);
    }
    if let Some(percent) = fields.get("maxEjectionPercent") {
        let value = percent.int(sink, "maxEjectionPercent")?;
        if !(0..=100).contains(&value) {
            return Err(sink.error(
                percent.at,
                format!("maxEjectionPercent {value} is out of range; expected 0 to 100"),
            ));
        }
        outlier.max_ejected_percent = value as u32;
    }
    fields.unmodelled(
        sink,
        "interval",
        "meshsim ejects as soon as the consecutive count is reached and returns an endpoint when its ejection time is over, not at the next sweep",
    );
    fields.unmodelled(sink, "minHealthPercent", "meshsim has no panic threshold");
    fields.unmodelled(
        sink,
        "consecutiveErrors",
        "deprecated in Istio; use consecutive5xxErrors",
    );
    fields.unmodelled(
        sink,
        "splitExternalLocalOriginErrors",
        "meshsim counts connect failures as gateway errors",
    );
    fields.unmodelled(
        sink,
        "consecutiveLocalOriginFailures",
        "meshsim counts connect failures as gateway errors",
    );
    if outlier.consecutive_5xx == 0 && outlier.consecutive_gateway_failures == 0 {
        return Err(sink.error(node.at, "outlierDetection with consecutive5xxErrors: 0 and no consecutiveGatewayErrors never ejects; remove it or set a count"));
    }
    fields.finish(sink);
    Ok(outlier)
}

/// `connectionPool` as meshsim's circuit breaker. Envoy's
/// `http2MaxRequests` bounds a whole cluster; meshsim's `max_requests`
/// bounds each endpoint, so it is the tighter of the two for one replica.
fn connection_pool(sink: &mut Sink, node: &Node) -> Result<cfg::CircuitBreaker, SpecError> {
    let fields = node.fields(sink, "connectionPool")?;
    let mut breaker = cfg::CircuitBreaker::default();
    if let Some(http) = fields.get("http") {
        let http_fields = http.fields(sink, "connectionPool.http")?;
        if let Some(n) = http_fields.get("http1MaxPendingRequests") {
            breaker.max_pending_requests = count(sink, n, "http1MaxPendingRequests")?;
        }
        if let Some(n) = http_fields.get("http2MaxRequests") {
            breaker.max_requests = positive(sink, n, "http2MaxRequests")?;
        }
        http_fields.unmodelled(
            sink,
            "maxRequestsPerConnection",
            "meshsim keeps connections open",
        );
        http_fields.unmodelled(
            sink,
            "maxRetries",
            "meshsim bounds retries with a retry budget, not a concurrent-retry cap",
        );
        http_fields.unmodelled(
            sink,
            "idleTimeout",
            "meshsim's pools close idle connections after 5 s",
        );
        http_fields.unmodelled(sink, "h2UpgradePolicy", "mesh hops are always HTTP/2");
        http_fields.unmodelled(sink, "useClientProtocol", "mesh hops are always HTTP/2");
        http_fields.unmodelled(
            sink,
            "maxConcurrentStreams",
            "meshsim's HTTP/2 limits are fixed",
        );
        http_fields.finish(sink);
    }
    if let Some(tcp) = fields.get("tcp") {
        let tcp_fields = tcp.fields(sink, "connectionPool.tcp")?;
        if let Some(n) = tcp_fields.get("maxConnections") {
            breaker.max_connections = positive(sink, n, "maxConnections")?;
        }
        tcp_fields.unmodelled(sink, "connectTimeout", "meshsim's connect timeout is fixed");
        tcp_fields.unmodelled(
            sink,
            "tcpKeepalive",
            "meshsim does not model keepalive probes",
        );
        tcp_fields.unmodelled(
            sink,
            "maxConnectionDuration",
            "meshsim keeps connections open",
        );
        tcp_fields.unmodelled(
            sink,
            "idleTimeout",
            "meshsim's pools close idle connections after 5 s",
        );
        tcp_fields.finish(sink);
    }
    fields.finish(sink);
    Ok(breaker)
}

fn positive(sink: &Sink, node: &Node, what: &str) -> Result<u32, SpecError> {
    match count(sink, node, what)? {
        0 => Err(sink.error(
            node.at,
            format!("{what} 0 is out of range; expected 1 or more"),
        )),
        n => Ok(n),
    }
}

/// An `AuthorizationPolicy`. Its rules are kept in Istio's terms here and
/// become meshsim's default-deny form at the end (see `finish_authz`).
pub(crate) fn authorization_policy(
    sink: &mut Sink,
    context: &ImportContext,
    build: &mut Build,
    spec: &Node,
) -> Result<(), SpecError> {
    let fields = spec.fields(sink, "AuthorizationPolicy.spec")?;
    let targets = match fields.get("selector") {
        Some(selector) => super::kube::selected_services(sink, context, selector)?,
        None => context.services.clone(),
    };
    let action = match fields.get("action") {
        Some(a) => a.str(sink, "action")?.to_owned(),
        None => "ALLOW".to_owned(),
    };
    if !matches!(action.as_str(), "ALLOW" | "DENY") {
        let at = fields.get("action").map_or(fields.at(), |a| a.at);
        return Err(sink.error(
            at,
            format!("action {action} is not modelled; meshsim imports ALLOW and DENY policies"),
        ));
    }
    let mut rules = Vec::new();
    if let Some(list) = fields.get("rules") {
        for rule in list.seq(sink, "rules")? {
            rules.extend(authz_rule(sink, context, rule)?);
        }
    }
    fields.unmodelled(sink, "targetRef", "use selector");
    fields.unmodelled(sink, "targetRefs", "use selector");
    fields.unmodelled(sink, "provider", "CUSTOM actions are not modelled");
    fields.finish(sink);
    for service in targets {
        let authz = build
            .service(&service)
            .istio_authz
            .get_or_insert_with(IstioAuthz::default);
        if action == "DENY" {
            authz.deny.extend(rules.iter().cloned());
        } else {
            authz
                .allow
                .get_or_insert_with(Vec::new)
                .extend(rules.iter().cloned());
        }
    }
    Ok(())
}

/// One Istio rule: sources are ORed, operations are ORed, and the two are
/// ANDed, so it becomes one meshsim rule per (source, operation) pair.
fn authz_rule(
    sink: &mut Sink,
    context: &ImportContext,
    node: &Node,
) -> Result<Vec<cfg::AuthzRule>, SpecError> {
    let fields = node.fields(sink, "rule")?;
    if let Some(when) = fields.get("when") {
        return Err(sink.error(
            when.at,
            "`when` conditions are not modelled; ignoring one would change who is allowed",
        ));
    }
    let sources = match fields.get("from") {
        Some(from) => from
            .seq(sink, "from")?
            .iter()
            .map(|s| source(sink, context, s))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![cfg::AuthzRule::default()],
    };
    let operations = match fields.get("to") {
        Some(to) => to
            .seq(sink, "to")?
            .iter()
            .map(|o| operation(sink, o))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![cfg::AuthzRule::default()],
    };
    fields.finish(sink);
    let mut rules = Vec::new();
    for source in &sources {
        for operation in &operations {
            rules.push(cfg::AuthzRule {
                principals: source.principals.clone(),
                not_principals: source.not_principals.clone(),
                methods: operation.methods.clone(),
                not_methods: operation.not_methods.clone(),
                paths: operation.paths.clone(),
                not_paths: operation.not_paths.clone(),
            });
        }
    }
    Ok(rules)
}

fn source(
    sink: &mut Sink,
    context: &ImportContext,
    node: &Node,
) -> Result<cfg::AuthzRule, SpecError> {
    let fields = node.fields(sink, "from entry")?;
    let source = fields.require(sink, "source")?;
    let source_fields = source.fields(sink, "source")?;
    let mut rule = cfg::AuthzRule::default();
    if let Some(p) = source_fields.get("principals") {
        rule.principals = p
            .strings(sink, "principals")?
            .iter()
            .map(|p| principal(context, p))
            .collect();
    }
    if let Some(p) = source_fields.get("notPrincipals") {
        rule.not_principals = p
            .strings(sink, "notPrincipals")?
            .iter()
            .map(|p| principal(context, p))
            .collect();
    }
    if let Some(ns) = source_fields.get("namespaces") {
        if !rule.principals.is_empty() {
            return Err(sink.error(ns.at, "a source with both principals and namespaces is not modelled; split it into two sources"));
        }
        rule.principals = ns
            .strings(sink, "namespaces")?
            .iter()
            .map(|n| format!("spiffe://{}/ns/{n}/*", context.trust_domain))
            .collect();
    }
    for key in [
        "notNamespaces",
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
        "requestPrincipals",
        "notRequestPrincipals",
        "serviceAccounts",
        "notServiceAccounts",
    ] {
        if let Some(n) = source_fields.get(key) {
            return Err(sink.error(
                n.at,
                format!("source `{key}` is not modelled; ignoring it would change who is allowed"),
            ));
        }
    }
    source_fields.finish(sink);
    fields.finish(sink);
    Ok(rule)
}

fn operation(sink: &mut Sink, node: &Node) -> Result<cfg::AuthzRule, SpecError> {
    let fields = node.fields(sink, "to entry")?;
    let operation = fields.require(sink, "operation")?;
    let op = operation.fields(sink, "operation")?;
    let mut rule = cfg::AuthzRule::default();
    let methods = |sink: &mut Sink, key: &str| -> Result<Vec<String>, SpecError> {
        match op.get(key) {
            Some(list) => list
                .seq(sink, key)?
                .iter()
                .map(|m| method(sink, m, key))
                .collect(),
            None => Ok(Vec::new()),
        }
    };
    rule.methods = methods(sink, "methods")?;
    rule.not_methods = methods(sink, "notMethods")?;
    if let Some(p) = op.get("paths") {
        rule.paths = p.strings(sink, "paths")?;
    }
    if let Some(p) = op.get("notPaths") {
        rule.not_paths = p.strings(sink, "notPaths")?;
    }
    for key in ["hosts", "notHosts", "ports", "notPorts"] {
        if let Some(n) = op.get(key) {
            return Err(sink.error(
                n.at,
                format!(
                    "operation `{key}` is not modelled; ignoring it would change who is allowed"
                ),
            ));
        }
    }
    op.finish(sink);
    fields.finish(sink);
    Ok(rule)
}

/// Istio's order in meshsim's terms: DENY rules stay deny rules; with no
/// ALLOW policy Istio allows everything not denied, which meshsim's
/// default-deny needs written as an explicit allow-all rule.
pub(crate) fn finish_authz(authz: IstioAuthz) -> (cfg::AuthorizationPolicy, bool) {
    let allow_all = authz.allow.is_none();
    let allow = authz.allow.unwrap_or_else(|| {
        vec![cfg::AuthzRule {
            principals: vec!["*".into()],
            ..cfg::AuthzRule::default()
        }]
    });
    (
        cfg::AuthorizationPolicy {
            allow,
            deny: authz.deny,
        },
        allow_all,
    )
}

/// A `PeerAuthentication`: only `STRICT` (and `UNSET`, which inherits the
/// mesh's STRICT) fit a mesh that never accepts plaintext.
pub(crate) fn peer_authentication(
    sink: &mut Sink,
    context: &ImportContext,
    spec: &Node,
) -> Result<(), SpecError> {
    let fields = spec.fields(sink, "PeerAuthentication.spec")?;
    if let Some(selector) = fields.get("selector") {
        super::kube::selected_services(sink, context, selector)?;
    }
    let check = |sink: &mut Sink, mtls: &Node| -> Result<(), SpecError> {
        let mtls_fields = mtls.fields(sink, "mtls")?;
        if let Some(mode) = mtls_fields.get("mode") {
            match mode.str(sink, "mtls.mode")? {
                "STRICT" | "UNSET" => {}
                other @ ("PERMISSIVE" | "DISABLE") => {
                    return Err(sink.error(mode.at, format!("mtls.mode {other} is refused: meshsim's sidecars never accept plaintext, so only STRICT can be simulated faithfully")));
                }
                other => return Err(sink.error(mode.at, format!("mtls.mode {other} is not a PeerAuthentication mode; expected STRICT, PERMISSIVE, DISABLE or UNSET"))),
            }
        }
        mtls_fields.finish(sink);
        Ok(())
    };
    if let Some(mtls) = fields.get("mtls") {
        check(sink, mtls)?;
    }
    if let Some(ports) = fields.get("portLevelMtls") {
        let port_fields = ports.fields(sink, "portLevelMtls")?;
        if let super::yaml::Value::Map(entries) = &ports.value {
            for (port, _, mtls) in entries {
                port_fields.get(port);
                check(sink, mtls)?;
            }
        }
        port_fields.finish(sink);
    }
    fields.finish(sink);
    Ok(())
}
