//! meshsim's policy types written in the scenario format
//! (`[mesh.services.NAME]`), the one form both `meshsim import mesh`
//! prints and a scenario's `import` reads back.

use mesh::config as cfg;
use toml::{Table, Value};

use super::Imported;

/// The whole `[mesh]` fragment, with the import's notes as comments.
pub(crate) fn document(imported: &Imported) -> String {
    let mut out = String::new();
    for note in &imported.notes {
        out.push_str(&format!("# note: {note}\n"));
    }
    for (service, replicas) in &imported.replicas {
        out.push_str(&format!(
            "# replicas: Deployment \"{service}\" runs {replicas} (the scenario's [[services]] entry takes it when it writes none)\n"
        ));
    }
    let mut mesh = Table::new();
    mesh.insert("services".into(), Value::Table(imported.services.clone()));
    let mut root = Table::new();
    root.insert("mesh".into(), Value::Table(mesh));
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&toml::to_string(&root).unwrap_or_default());
    out
}

fn duration(ms: u64) -> Value {
    Value::String(format!("{ms}ms"))
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

fn int(n: impl Into<i64>) -> Value {
    Value::Integer(n.into())
}

/// A unit enum's snake_case name, as serde writes it.
fn name_of<T: serde::Serialize>(value: &T) -> Value {
    Value::try_from(value).unwrap_or(Value::String(String::new()))
}

fn table<const N: usize>(entries: [(&str, Option<Value>); N]) -> Table {
    entries
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key.to_owned(), v)))
        .collect()
}

/// One service's policy. Every field the import sets is written out, so
/// what a run uses is visible.
pub(crate) fn service(config: &cfg::ServiceConfig) -> Table {
    let routes = (!config.routes.is_empty()).then(|| {
        Value::Array(
            config
                .routes
                .iter()
                .map(|r| Value::Table(route(r)))
                .collect(),
        )
    });
    let breaker = &config.circuit_breaker;
    table([
        ("load_balancer", Some(name_of(&config.load_balancer))),
        (
            "retry_budget",
            config.retry_budget.as_ref().map(|b| {
                Value::Table(table([
                    ("ratio", Some(Value::Float(b.ratio))),
                    ("min_retries_per_s", Some(int(b.min_retries_per_s))),
                    ("ttl", Some(duration(b.ttl_ms))),
                ]))
            }),
        ),
        (
            "outlier_detection",
            config.outlier_detection.as_ref().map(|o| {
                Value::Table(table([
                    ("consecutive_5xx", Some(int(o.consecutive_5xx))),
                    (
                        "consecutive_gateway_failures",
                        Some(int(o.consecutive_gateway_failures)),
                    ),
                    ("base_ejection", Some(duration(o.base_ejection_ms))),
                    ("max_ejection", Some(duration(o.max_ejection_ms))),
                    ("max_ejected_percent", Some(int(o.max_ejected_percent))),
                ]))
            }),
        ),
        (
            "circuit_breaker",
            (*breaker != cfg::CircuitBreaker::default()).then(|| {
                Value::Table(table([
                    ("max_connections", Some(int(breaker.max_connections))),
                    (
                        "max_pending_requests",
                        Some(int(breaker.max_pending_requests)),
                    ),
                    ("max_requests", Some(int(breaker.max_requests))),
                ]))
            }),
        ),
        (
            "authorization",
            config.authorization.as_ref().map(|a| {
                Value::Table(table([
                    ("allow", Some(rules(&a.allow))),
                    ("deny", Some(rules(&a.deny))),
                ]))
            }),
        ),
        ("routes", routes),
    ])
}

fn rules(rules: &[cfg::AuthzRule]) -> Value {
    let list = |items: &[String]| (!items.is_empty()).then(|| strings(items));
    Value::Array(
        rules
            .iter()
            .map(|r| {
                Value::Table(table([
                    ("principals", list(&r.principals)),
                    ("not_principals", list(&r.not_principals)),
                    ("methods", list(&r.methods)),
                    ("not_methods", list(&r.not_methods)),
                    ("paths", list(&r.paths)),
                    ("not_paths", list(&r.not_paths)),
                ]))
            })
            .collect(),
    )
}

fn route(route: &cfg::RouteConfig) -> Table {
    let m = &route.matches;
    let path = m.path.as_ref().map(|p| {
        let (kind, text) = match p {
            cfg::PathMatch::Exact(s) => ("exact", s.as_str()),
            cfg::PathMatch::Prefix(s) => ("prefix", s.as_str()),
            cfg::PathMatch::Regex(r) => ("regex", r.as_str()),
        };
        Value::Table(table([(kind, Some(Value::String(text.to_owned())))]))
    });
    let headers = (!m.headers.is_empty()).then(|| {
        Value::Array(
            m.headers
                .iter()
                .map(|h| {
                    Value::Table(table([
                        ("name", Some(Value::String(h.name.clone()))),
                        ("value", h.value.clone().map(Value::String)),
                    ]))
                })
                .collect(),
        )
    });
    let matches = table([
        ("hosts", (!m.hosts.is_empty()).then(|| strings(&m.hosts))),
        ("path", path),
        (
            "methods",
            (!m.methods.is_empty()).then(|| strings(&m.methods)),
        ),
        ("headers", headers),
    ]);
    table([
        ("name", Some(Value::String(route.name.clone()))),
        (
            "match",
            (!matches.is_empty()).then_some(Value::Table(matches)),
        ),
        ("timeout", route.timeout_ms.map(duration)),
        ("per_try_timeout", route.per_try_timeout_ms.map(duration)),
        (
            "retry",
            route.retry.as_ref().map(|r| Value::Table(retry(r))),
        ),
        (
            "fault",
            route.fault.as_ref().map(|f| Value::Table(fault(f))),
        ),
        (
            "backends",
            (!route.backends.is_empty()).then(|| {
                Value::Array(
                    route
                        .backends
                        .iter()
                        .map(|b| {
                            Value::Table(table([
                                ("service", Some(Value::String(b.service.clone()))),
                                ("weight", Some(int(b.weight))),
                            ]))
                        })
                        .collect(),
                )
            }),
        ),
    ])
}

fn retry(retry: &cfg::RetryPolicy) -> Table {
    table([
        ("max_attempts", Some(int(retry.max_attempts))),
        (
            "on",
            Some(Value::Array(retry.retry_on.iter().map(name_of).collect())),
        ),
        (
            "on_status",
            (!retry.retry_on_status.is_empty())
                .then(|| Value::Array(retry.retry_on_status.iter().map(|s| int(*s)).collect())),
        ),
        ("backoff_base", Some(duration(retry.backoff_base_ms))),
        ("backoff_max", Some(duration(retry.backoff_max_ms))),
        ("non_idempotent", Some(name_of(&retry.non_idempotent))),
    ])
}

fn fault(fault: &cfg::FaultInjection) -> Table {
    table([
        (
            "abort",
            fault.abort.as_ref().map(|a| {
                Value::Table(table([
                    ("percent", Some(Value::Float(a.percent))),
                    ("status", Some(int(a.status))),
                ]))
            }),
        ),
        (
            "delay",
            fault.delay.as_ref().map(|d| {
                Value::Table(table([
                    ("percent", Some(Value::Float(d.percent))),
                    ("fixed", Some(duration(d.fixed_delay_ms))),
                ]))
            }),
        ),
    ])
}
