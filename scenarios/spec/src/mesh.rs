//! `[mesh]`: mesh-wide settings, per-service traffic and security policy,
//! endpoint faults, variants, mesh checks and rogue hosts.
//!
//! ```toml
//! [mesh.services.registry]              # policy for calls to `registry`
//! load_balancer = "peak_ewma"           # round_robin | least_request | peak_ewma
//! retry_budget = { ratio = 0.2, min_retries_per_s = 10, ttl = "10s" }
//! outlier_detection = { consecutive_gateway_failures = 5, base_ejection = "30s" }
//! [[mesh.services.registry.routes]]
//! name = "transfers"
//! match = { path = { prefix = "/transfers" }, methods = ["POST"] }
//! retry = { max_attempts = 3, on = ["connect_failure"], non_idempotent = "with_idempotency_key" }
//! [mesh.services.registry.authorization]
//! allow = [{ principals = ["*/sa/gateway"] }, { paths = ["/public*"] }]
//!
//! [[mesh.endpoint_faults]]              # a sick replica, from the workload's start
//! hosts = ["registry-1"]
//! from = "10s"
//! until = "25s"
//! abort = { percent = 100, status = 503 }
//!
//! [[mesh.variants]]                     # the scenario runs once per variant
//! name = "round_robin"
//! services.registry = { load_balancer = "round_robin" }
//!
//! [[mesh.checks]]                       # compares variants, or one run
//! name = "ewma_p99_3x_lower"
//! metric = "p99_ms"
//! expect = ["round_robin / peak_ewma >= 3"]
//!
//! [[mesh.rogues]]                       # an extra host that attacks a service
//! name = "rogue-nocert"
//! kind = "no_certificate"
//! target = "registry"
//! ```
//!
//! The file's types are separate from `mesh::config` (only this module
//! knows the file format); [`MeshSpec::to_config`] translates.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh::config as cfg;
use serde::Deserialize;
use toml::Spanned;

use super::{Dur, Locator, Scenario, SpecError};

/// Mesh-wide settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshSpec {
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Other trust domains whose workloads this mesh's inbound side
    /// accepts (SPIFFE federation); their certificates must still chain
    /// to a trusted root.
    pub federated_trust_domains: Vec<Spanned<String>>,
    /// Namespace part of every identity.
    pub namespace: String,
    /// Leaf certificate lifetime (Linkerd and Istio: 24h).
    pub leaf_ttl: Dur,
    /// Renew at this fraction of the lifetime (Linkerd: 0.7).
    pub renew_fraction: f64,
    /// Key algorithm of the CA and every workload: `ed25519` (default) or
    /// `ecdsa_p256`.
    pub key_algorithm: mesh::identity::KeyAlgorithm,
    /// Outbound per-request deadline when a route sets none.
    pub request_timeout: Dur,
    /// Policy per destination service.
    pub services: BTreeMap<Spanned<String>, ServicePolicySpec>,
    /// Istio, Linkerd and Gateway API YAML whose policy becomes
    /// `services` (paths or `*` globs, relative to the scenario file).
    pub import: Vec<Spanned<String>>,
    /// Whether a field the import reads but does not model is an error
    /// rather than a warning.
    pub import_strict: bool,
    /// What the import warned about (set while parsing, not in the file).
    #[serde(skip)]
    pub(crate) import_warnings: Vec<crate::import::Diagnostic>,
    /// Faults injected by the sidecars of named hosts.
    pub endpoint_faults: Vec<EndpointInjectionSpec>,
    /// Variants: the scenario runs once per variant, on the same seed.
    pub variants: Vec<VariantSpec>,
    /// Checks on mesh telemetry, per run or across variants.
    pub checks: Vec<MeshCheckSpec>,
    /// Hosts outside the mesh's trust that attack a service.
    pub rogues: Vec<RogueSpec>,
}

impl Default for MeshSpec {
    fn default() -> Self {
        MeshSpec {
            trust_domain: "rec.meshsim".into(),
            federated_trust_domains: Vec::new(),
            namespace: "rec".into(),
            leaf_ttl: Dur(Duration::from_secs(24 * 3600)),
            renew_fraction: 0.7,
            key_algorithm: mesh::identity::KeyAlgorithm::Ed25519,
            request_timeout: Dur(Duration::from_secs(10)),
            services: BTreeMap::new(),
            import: Vec::new(),
            import_strict: false,
            import_warnings: Vec::new(),
            endpoint_faults: Vec::new(),
            variants: Vec::new(),
            checks: Vec::new(),
            rogues: Vec::new(),
        }
    }
}

/// Policy for one service (see `mesh::config::ServiceConfig`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicePolicySpec {
    /// Routes, first match wins.
    pub routes: Vec<RouteSpec>,
    /// `round_robin`, `least_request` or `peak_ewma` (default).
    pub load_balancer: Option<cfg::LoadBalancer>,
    /// Peak-EWMA tuning.
    pub peak_ewma: Option<PeakEwmaSpec>,
    /// Retry budget (none: unbounded retries).
    pub retry_budget: Option<RetryBudgetSpec>,
    /// Outlier detection (none: off).
    pub outlier_detection: Option<OutlierSpec>,
    /// Circuit breaker thresholds.
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    /// Inbound rate limit for the whole service.
    pub rate_limit: Option<RateLimitSpec>,
    /// Inbound authorization (present: default-deny).
    pub authorization: Option<AuthorizationSpec>,
    /// `http1` (default) or `http2` toward the app.
    pub app_protocol: Option<cfg::AppProtocol>,
}

/// Peak-EWMA tuning.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeakEwmaSpec {
    /// Estimate before any sample (Linkerd: 30ms).
    pub default_rtt: Dur,
    /// Decay time constant (Linkerd: 10s).
    pub decay: Dur,
}

/// A retry budget.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetSpec {
    /// Retries per original request (Linkerd: 0.2).
    pub ratio: f64,
    /// Retries always allowed per second (Linkerd: 10).
    pub min_retries_per_s: u32,
    /// Window (Linkerd: 10s).
    #[serde(default = "ten_seconds")]
    pub ttl: Dur,
}

fn ten_seconds() -> Dur {
    Dur(Duration::from_secs(10))
}

/// Outlier detection; unset fields take Istio's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSpec {
    /// Consecutive 5xx that eject (5).
    pub consecutive_5xx: Option<u32>,
    /// Consecutive connect failures/resets/timeouts that eject (5).
    pub consecutive_gateway_failures: Option<u32>,
    /// First ejection (30s); the n-th lasts n times as long.
    pub base_ejection: Option<Dur>,
    /// Longest ejection (300s).
    pub max_ejection: Option<Dur>,
    /// Share of endpoints that may be out at once (10).
    pub max_ejected_percent: Option<u32>,
}

/// Circuit breaker thresholds; unset fields take Envoy's 1024.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerSpec {
    /// Connections per endpoint.
    pub max_connections: Option<u32>,
    /// Requests waiting for an endpoint with room.
    pub max_pending_requests: Option<u32>,
    /// Requests in flight per endpoint.
    pub max_requests: Option<u32>,
}

/// A rate and burst.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Requests per second.
    pub requests_per_s: f64,
    /// Back-to-back requests allowed (default: one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A per-identity override.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateOverrideSpec {
    /// Principal patterns.
    pub principals: Vec<String>,
    /// Requests per second for each of them.
    pub requests_per_s: f64,
    /// Burst.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A GCRA rate limit (answers 429).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSpec {
    /// All callers together.
    pub total: Option<RateSpec>,
    /// Each caller identity.
    pub per_identity: Option<RateSpec>,
    /// Per-identity rates for some principals.
    pub overrides: Vec<RateOverrideSpec>,
}

/// Authorization: deny rules, then allow rules, else deny.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationSpec {
    /// Allow rules.
    pub allow: Vec<AuthzRuleSpec>,
    /// Deny rules (win over allow).
    pub deny: Vec<AuthzRuleSpec>,
}

/// One rule: every non-empty list must match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzRuleSpec {
    /// SPIFFE IDs: exact, `*`, `prefix*`, `*suffix`.
    pub principals: Vec<String>,
    /// Upper-case methods.
    pub methods: Vec<String>,
    /// Normalized paths: exact, `*`, `prefix*`, `*suffix`.
    pub paths: Vec<String>,
    /// Callers the rule does not cover.
    pub not_principals: Vec<String>,
    /// Methods the rule does not cover.
    pub not_methods: Vec<String>,
    /// Paths the rule does not cover.
    pub not_paths: Vec<String>,
}

/// A path match.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathMatchSpec {
    /// The whole path.
    Exact(String),
    /// A prefix on segment boundaries.
    Prefix(String),
    /// A regular expression the whole path must match.
    Regex(cfg::PathRegex),
}

/// A header match.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchSpec {
    /// Name.
    pub name: String,
    /// Exact value (absent: presence only).
    #[serde(default)]
    pub value: Option<String>,
}

/// Which requests a route takes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchSpec {
    /// Hosts (case-insensitive).
    pub hosts: Vec<String>,
    /// Path.
    pub path: Option<PathMatchSpec>,
    /// Methods.
    pub methods: Vec<String>,
    /// Headers.
    pub headers: Vec<HeaderMatchSpec>,
}

/// A retry policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts including the first (3).
    #[serde(default = "three")]
    pub max_attempts: u32,
    /// Conditions: connect_failure, reset, unavailable, gateway_error,
    /// server_error, per_try_timeout.
    #[serde(default = "default_retry_on")]
    pub on: Vec<cfg::RetryOn>,
    /// Extra statuses.
    #[serde(default)]
    pub on_status: Vec<u16>,
    /// First backoff (25ms).
    #[serde(default = "backoff_base")]
    pub backoff_base: Dur,
    /// Largest backoff (250ms).
    #[serde(default = "backoff_max")]
    pub backoff_max: Dur,
    /// never (default), with_idempotency_key, always.
    #[serde(default)]
    pub non_idempotent: cfg::NonIdempotent,
}

fn three() -> u32 {
    3
}
fn default_retry_on() -> Vec<cfg::RetryOn> {
    cfg::RetryPolicy::default().retry_on
}
fn backoff_base() -> Dur {
    Dur(Duration::from_millis(25))
}
fn backoff_max() -> Dur {
    Dur(Duration::from_millis(250))
}

/// Fault injection: abort and/or delay a share of requests.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectionSpec {
    /// Abort.
    pub abort: Option<AbortSpec>,
    /// Delay.
    pub delay: Option<DelaySpec>,
}

/// Abort a share of requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortSpec {
    /// Share, 0–100.
    pub percent: f64,
    /// Status.
    pub status: u16,
}

/// Delay a share of requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySpec {
    /// Share, 0–100.
    pub percent: f64,
    /// How long.
    pub fixed: Dur,
}

/// A weighted backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Service.
    pub service: String,
    /// Weight.
    pub weight: u32,
}

/// One route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Name (metrics label).
    pub name: String,
    /// Match (absent: everything).
    #[serde(default, rename = "match")]
    pub matches: MatchSpec,
    /// Whole-request deadline.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Per-attempt deadline.
    #[serde(default)]
    pub per_try_timeout: Option<Dur>,
    /// Retries.
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    /// Client-side fault injection.
    #[serde(default)]
    pub fault: Option<InjectionSpec>,
    /// Inbound rate limit on this route.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Traffic split.
    #[serde(default)]
    pub backends: Vec<BackendSpec>,
}

/// A fault a host's sidecar injects into its own inbound traffic.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInjectionSpec {
    /// Hosts.
    pub hosts: Vec<Spanned<String>>,
    /// Start, from the start of the workload.
    #[serde(default)]
    pub from: Option<Dur>,
    /// End, from the start of the workload (absent: the run's end).
    #[serde(default)]
    pub until: Option<Dur>,
    /// Abort.
    #[serde(default)]
    pub abort: Option<AbortSpec>,
    /// Delay.
    #[serde(default)]
    pub delay: Option<DelaySpec>,
}

/// A variant: policies that replace the base ones for the named services.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Name, used in checks' `expect`.
    pub name: Spanned<String>,
    /// Replacement policies.
    #[serde(default)]
    pub services: BTreeMap<Spanned<String>, ServicePolicySpec>,
    /// YAML whose policies replace the base ones, as `[mesh] import`.
    #[serde(default)]
    pub import: Vec<Spanned<String>>,
}

/// What a mesh check measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeshMetric {
    /// Attempts sent to `service`'s endpoints ÷ requests the apps sent it,
    /// over `window`.
    RetryAmplification,
    /// End-to-end latency percentiles from the load generator (ms).
    P50Ms,
    /// 99th percentile.
    P99Ms,
    /// 99.9th percentile.
    P999Ms,
    /// Failed ÷ total at the load generator (over `window` if given).
    ErrorRate,
    /// Time from `after` until an outbound proxy ejects `endpoint` (ms).
    EjectionDelayMs,
    /// Time from `after` until `endpoint` passes probation (ms).
    RestoredAfterMs,
}

/// The kind a mesh check reports as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeshCheckKind {
    /// An objective.
    Slo,
    /// Recovery.
    Liveness,
}

/// A time window, from the start of the workload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Start.
    pub from: Dur,
    /// End.
    pub until: Dur,
}

/// A check on mesh telemetry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshCheckSpec {
    /// Name, unique in the scenario.
    pub name: String,
    /// `slo` (default) or `liveness`.
    #[serde(default = "slo_kind")]
    pub kind: MeshCheckKind,
    /// What is measured.
    pub metric: MeshMetric,
    /// Destination service (retry_amplification).
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    /// Endpoint host (ejection_delay_ms, restored_after_ms).
    #[serde(default)]
    pub endpoint: Option<Spanned<String>>,
    /// Reference time from the workload start (ejection, restoration).
    #[serde(default)]
    pub after: Option<Dur>,
    /// Window from the workload start.
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// Conditions: `VARIANT OP N`, `A / B OP N`, or `value OP N` (single
    /// run), with OP one of `<`, `<=`, `>`, `>=`.
    pub expect: Vec<Spanned<String>>,
}

fn slo_kind() -> MeshCheckKind {
    MeshCheckKind::Slo
}

/// How a rogue host attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RogueKind {
    /// TLS without a client certificate.
    NoCertificate,
    /// A certificate from a foreign CA, claiming a mesh identity.
    ForeignCa,
    /// A valid mesh certificate for an identity the policy does not allow,
    /// sending the path-normalization corpus.
    DisallowedIdentity,
}

/// A rogue host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RogueSpec {
    /// Host name.
    pub name: Spanned<String>,
    /// How it attacks.
    pub kind: RogueKind,
    /// The service it attacks.
    pub target: Spanned<String>,
    /// Paths it must never reach (the corpus is built around them).
    #[serde(default = "private_paths")]
    pub private_paths: Vec<String>,
    /// A path the policy allows it (a control: it must get through, or the
    /// rogue never really exercised the policy).
    #[serde(default)]
    pub allowed_path: Option<String>,
    /// Time between attack rounds.
    #[serde(default = "rogue_interval")]
    pub interval: Dur,
}

fn private_paths() -> Vec<String> {
    vec!["/recs/available".into()]
}
fn rogue_interval() -> Dur {
    Dur(Duration::from_millis(500))
}

/// A parsed `expect` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    /// Variant, or `value` for a single run.
    pub left: String,
    /// Divisor variant, for ratios.
    pub over: Option<String>,
    /// Comparison.
    pub op: Comparison,
    /// Bound.
    pub bound: f64,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    AtMost,
    /// `>`
    Greater,
    /// `>=`
    AtLeast,
}

impl Comparison {
    /// Whether `value OP bound` holds.
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Comparison::Less => value < bound,
            Comparison::AtMost => value <= bound,
            Comparison::Greater => value > bound,
            Comparison::AtLeast => value >= bound,
        }
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::AtMost => "<=",
            Comparison::Greater => ">",
            Comparison::AtLeast => ">=",
        }
    }
}

impl std::str::FromStr for Expectation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let shape = "expected \"VARIANT OP N\", \"A / B OP N\" or \"value OP N\"";
        let (left, over, op, bound) = match tokens.as_slice() {
            [left, op, bound] => (*left, None, *op, *bound),
            [left, "/", over, op, bound] => (*left, Some(*over), *op, *bound),
            _ => return Err(format!("{shape}, found \"{text}\"")),
        };
        let op = match op {
            "<" => Comparison::Less,
            "<=" => Comparison::AtMost,
            ">" => Comparison::Greater,
            ">=" => Comparison::AtLeast,
            other => return Err(format!("unknown operator \"{other}\"; {shape}")),
        };
        let bound: f64 = bound
            .parse()
            .ok()
            .filter(|b: &f64| b.is_finite())
            .ok_or_else(|| format!("\"{bound}\" is not a number; {shape}"))?;
        Ok(Expectation {
            left: left.to_owned(),
            over: over.map(str::to_owned),
            op,
            bound,
        })
    }
}

fn ms(duration: Dur) -> u64 {
    duration.0.as_millis() as u64
}

impl ServicePolicySpec {
    /// The mesh's form.
    pub fn to_config(&self) -> cfg::ServiceConfig {
        let outlier = self.outlier_detection.as_ref().map(|o| {
            let base = cfg::OutlierDetection::default();
            cfg::OutlierDetection {
                consecutive_5xx: o.consecutive_5xx.unwrap_or(base.consecutive_5xx),
                consecutive_gateway_failures: o
                    .consecutive_gateway_failures
                    .unwrap_or(base.consecutive_gateway_failures),
                base_ejection_ms: o.base_ejection.map_or(base.base_ejection_ms, ms),
                max_ejection_ms: o.max_ejection.map_or(base.max_ejection_ms, ms),
                max_ejected_percent: o.max_ejected_percent.unwrap_or(base.max_ejected_percent),
            }
        });
        let breaker = self
            .circuit_breaker
            .as_ref()
            .map_or_else(Default::default, |c| {
                let base = cfg::CircuitBreaker::default();
                cfg::CircuitBreaker {
                    max_connections: c.max_connections.unwrap_or(base.max_connections),
                    max_pending_requests: c
                        .max_pending_requests
                        .unwrap_or(base.max_pending_requests),
                    max_requests: c.max_requests.unwrap_or(base.max_requests),
                }
            });
        cfg::ServiceConfig {
            routes: self.routes.iter().map(RouteSpec::to_config).collect(),
            load_balancer: self.load_balancer.unwrap_or_default(),
            peak_ewma: self.peak_ewma.as_ref().map_or_else(Default::default, |p| {
                cfg::PeakEwmaConfig {
                    default_rtt_ms: ms(p.default_rtt),
                    decay_ms: ms(p.decay),
                }
            }),
            retry_budget: self.retry_budget.as_ref().map(|b| cfg::RetryBudget {
                ratio: b.ratio,
                min_retries_per_s: b.min_retries_per_s,
                ttl_ms: ms(b.ttl),
            }),
            outlier_detection: outlier,
            circuit_breaker: breaker,
            rate_limit: self.rate_limit.as_ref().map(RateLimitSpec::to_config),
            authorization: self
                .authorization
                .as_ref()
                .map(|a| cfg::AuthorizationPolicy {
                    allow: a.allow.iter().map(AuthzRuleSpec::to_config).collect(),
                    deny: a.deny.iter().map(AuthzRuleSpec::to_config).collect(),
                }),
            app_protocol: self.app_protocol.unwrap_or_default(),
        }
    }
}

impl RateSpec {
    fn to_config(&self) -> cfg::Rate {
        cfg::Rate {
            requests_per_s: self.requests_per_s,
            burst: self.burst,
        }
    }
}

impl RateLimitSpec {
    fn to_config(&self) -> cfg::RateLimit {
        cfg::RateLimit {
            total: self.total.as_ref().map(RateSpec::to_config),
            per_identity: self.per_identity.as_ref().map(RateSpec::to_config),
            overrides: self
                .overrides
                .iter()
                .map(|o| cfg::RateOverride {
                    principals: o.principals.clone(),
                    rate: cfg::Rate {
                        requests_per_s: o.requests_per_s,
                        burst: o.burst,
                    },
                })
                .collect(),
        }
    }
}

impl AuthzRuleSpec {
    fn to_config(&self) -> cfg::AuthzRule {
        cfg::AuthzRule {
            principals: self.principals.clone(),
            methods: self.methods.clone(),
            paths: self.paths.clone(),
            not_principals: self.not_principals.clone(),
            not_methods: self.not_methods.clone(),
            not_paths: self.not_paths.clone(),
        }
    }
}

impl InjectionSpec {
    fn to_config(&self) -> cfg::FaultInjection {
        fault_config(self.abort.as_ref(), self.delay.as_ref())
    }
}

fn fault_config(abort: Option<&AbortSpec>, delay: Option<&DelaySpec>) -> cfg::FaultInjection {
    cfg::FaultInjection {
        abort: abort.map(|a| cfg::AbortFault {
            percent: a.percent,
            status: a.status,
        }),
        delay: delay.map(|d| cfg::DelayFault {
            percent: d.percent,
            fixed_delay_ms: ms(d.fixed),
        }),
    }
}

impl RouteSpec {
    fn to_config(&self) -> cfg::RouteConfig {
        let m = &self.matches;
        cfg::RouteConfig {
            name: self.name.clone(),
            matches: cfg::RouteMatch {
                hosts: m.hosts.clone(),
                path: m.path.as_ref().map(|p| match p {
                    PathMatchSpec::Exact(p) => cfg::PathMatch::Exact(p.clone()),
                    PathMatchSpec::Prefix(p) => cfg::PathMatch::Prefix(p.clone()),
                    PathMatchSpec::Regex(r) => cfg::PathMatch::Regex(r.clone()),
                }),
                methods: m.methods.clone(),
                headers: m
                    .headers
                    .iter()
                    .map(|h| cfg::HeaderMatch {
                        name: h.name.clone(),
                        value: h.value.clone(),
                    })
                    .collect(),
            },
            timeout_ms: self.timeout.map(ms),
            per_try_timeout_ms: self.per_try_timeout.map(ms),
            retry: self.retry.as_ref().map(|r| cfg::RetryPolicy {
                max_attempts: r.max_attempts,
                retry_on: r.on.clone(),
                retry_on_status: r.on_status.clone(),
                backoff_base_ms: ms(r.backoff_base),
                backoff_max_ms: ms(r.backoff_max),
                non_idempotent: r.non_idempotent,
            }),
            fault: self.fault.as_ref().map(InjectionSpec::to_config),
            rate_limit: self.rate_limit.as_ref().map(RateLimitSpec::to_config),
            backends: self
                .backends
                .iter()
                .map(|b| cfg::WeightedBackend {
                    service: b.service.clone(),
                    weight: b.weight,
                })
                .collect(),
        }
    }
}

impl MeshSpec {
    /// The mesh configuration this section declares; endpoint-fault windows
    /// move from workload time to run time by `warmup`.
    pub fn to_config(&self, warmup: Duration) -> cfg::MeshConfig {
        let warmup_ms = warmup.as_millis() as u64;
        cfg::MeshConfig {
            services: self
                .services
                .iter()
                .map(|(name, policy)| (name.get_ref().clone(), policy.to_config()))
                .collect(),
            revoked: Default::default(),
            trust_bundle: Vec::new(),
            federated_trust_domains: self
                .federated_trust_domains
                .iter()
                .map(|d| d.get_ref().clone())
                .collect(),
            endpoint_faults: self
                .endpoint_faults
                .iter()
                .map(|f| cfg::EndpointFault {
                    hosts: f.hosts.iter().map(|h| h.get_ref().clone()).collect(),
                    from_ms: warmup_ms + f.from.map_or(0, ms),
                    until_ms: f.until.map(|u| warmup_ms + ms(u)),
                    fault: fault_config(f.abort.as_ref(), f.delay.as_ref()),
                })
                .collect(),
        }
    }

    /// The policy of `service` as written (base policies only).
    pub fn policy(&self, service: &str) -> Option<&ServicePolicySpec> {
        self.services.get(service)
    }

    /// Each federated trust domain is a lowercase DNS name, listed once,
    /// and not the mesh's own.
    fn validate_federation(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        let domains = self
            .federated_trust_domains
            .iter()
            .map(|d| d.get_ref().as_str());
        for domain in &self.federated_trust_domains {
            let message = if *domain.get_ref() == self.trust_domain {
                Some("federated_trust_domains lists the mesh's own trust domain".to_owned())
            } else if crate::repeated(domains.clone(), domain.get_ref()) {
                Some(format!(
                    "federated trust domain \"{}\" is listed twice",
                    domain.get_ref()
                ))
            } else {
                let config = cfg::MeshConfig {
                    federated_trust_domains: [domain.get_ref().clone()].into(),
                    ..cfg::MeshConfig::default()
                };
                config.validate().err().map(|e| e.0)
            };
            if let Some(message) = message {
                return Err(locate.error(Some(domain.span()), message));
            }
        }
        Ok(())
    }

    /// Validates the section against the rest of the scenario.
    pub(super) fn validate(
        &self,
        scenario: &Scenario,
        locate: &Locator<'_>,
    ) -> Result<(), SpecError> {
        let services: Vec<&str> = scenario
            .services
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .collect();
        self.validate_federation(locate)?;
        let hosts = scenario.host_names();
        let policies = self
            .services
            .iter()
            .chain(self.variants.iter().flat_map(|v| v.services.iter()));
        for (name, policy) in policies {
            if let Some(message) = scenario.unknown_service("policy for", name.get_ref(), false) {
                return Err(locate.error(Some(name.span()), message));
            }
            let config = cfg::MeshConfig {
                services: BTreeMap::from([(name.get_ref().clone(), policy.to_config())]),
                ..cfg::MeshConfig::default()
            };
            config
                .validate()
                .map_err(|e| locate.error(Some(name.span()), e.0))?;
            for backend in policy.routes.iter().flat_map(|r| &r.backends) {
                if let Some(message) =
                    scenario.unknown_service("split backend", &backend.service, false)
                {
                    return Err(locate.error(Some(name.span()), message));
                }
            }
        }
        for fault in &self.endpoint_faults {
            for host in &fault.hosts {
                if !hosts.contains(host.get_ref()) {
                    return Err(locate.error(
                        Some(host.span()),
                        format!("endpoint fault names unknown host \"{}\"", host.get_ref()),
                    ));
                }
            }
            let config = self.to_config(Duration::ZERO);
            config
                .validate()
                .map_err(|e| locate.error(fault.hosts.first().map(|h| h.span()), e.0))?;
        }
        let variants: Vec<&str> = self
            .variants
            .iter()
            .map(|v| v.name.get_ref().as_str())
            .collect();
        for variant in &self.variants {
            if crate::repeated(variants.iter().copied(), variant.name.get_ref()) {
                return Err(locate.error(
                    Some(variant.name.span()),
                    crate::defined_twice("variant", variant.name.get_ref()),
                ));
            }
        }
        for check in &self.checks {
            self.validate_check(check, &services, &hosts, &variants, locate)?;
        }
        for rogue in &self.rogues {
            if hosts.contains(rogue.name.get_ref())
                || self
                    .rogues
                    .iter()
                    .filter(|r| r.name.get_ref() == rogue.name.get_ref())
                    .count()
                    > 1
            {
                return Err(locate.error(
                    Some(rogue.name.span()),
                    format!(
                        "rogue \"{}\" clashes with another host",
                        rogue.name.get_ref()
                    ),
                ));
            }
            if let Some(message) =
                scenario.unknown_service("rogue target", rogue.target.get_ref(), false)
            {
                return Err(locate.error(Some(rogue.target.span()), message));
            }
            if rogue.private_paths.iter().any(|p| !p.starts_with('/')) {
                return Err(locate.error(
                    Some(rogue.name.span()),
                    "rogue private_paths must start with '/'",
                ));
            }
        }
        Ok(())
    }

    fn validate_check(
        &self,
        check: &MeshCheckSpec,
        services: &[&str],
        hosts: &[String],
        variants: &[&str],
        locate: &Locator<'_>,
    ) -> Result<(), SpecError> {
        let first_span = check.expect.first().map(|e| e.span());
        let missing = |what: &str| {
            locate.error(
                first_span.clone(),
                format!(
                    "check \"{}\" ({:?}) needs `{what}`",
                    check.name, check.metric
                ),
            )
        };
        match check.metric {
            MeshMetric::RetryAmplification => {
                let service = check.service.as_ref().ok_or_else(|| missing("service"))?;
                if !services.contains(&service.get_ref().as_str()) {
                    return Err(locate.error(
                        Some(service.span()),
                        format!(
                            "check service \"{}\" is not a service; services are {services:?}",
                            service.get_ref()
                        ),
                    ));
                }
                check.window.as_ref().ok_or_else(|| missing("window"))?;
            }
            MeshMetric::EjectionDelayMs | MeshMetric::RestoredAfterMs => {
                let endpoint = check.endpoint.as_ref().ok_or_else(|| missing("endpoint"))?;
                if !hosts.contains(endpoint.get_ref()) {
                    return Err(locate.error(
                        Some(endpoint.span()),
                        format!("unknown host \"{}\"", endpoint.get_ref()),
                    ));
                }
                check.after.ok_or_else(|| missing("after"))?;
            }
            MeshMetric::P50Ms | MeshMetric::P99Ms | MeshMetric::P999Ms | MeshMetric::ErrorRate => {}
        }
        if let Some(window) = &check.window
            && window.until <= window.from
        {
            return Err(locate.error(
                first_span.clone(),
                format!("check \"{}\": the window ends before it starts", check.name),
            ));
        }
        if check.expect.is_empty() {
            return Err(missing("expect"));
        }
        for condition in &check.expect {
            let parsed: Expectation = condition
                .get_ref()
                .parse()
                .map_err(|e| locate.error(Some(condition.span()), e))?;
            let names = std::iter::once(&parsed.left).chain(parsed.over.as_ref());
            for name in names {
                let known = if variants.is_empty() {
                    name == "value"
                } else {
                    variants.contains(&name.as_str())
                };
                if !known {
                    let expected = if variants.is_empty() {
                        "\"value\" (the scenario has no variants)".to_owned()
                    } else {
                        format!("a variant, one of {variants:?}")
                    };
                    return Err(locate.error(
                        Some(condition.span()),
                        format!("\"{name}\" is not {expected}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The runs a scenario makes: one per variant, in order (the last is the
/// primary run that SLO checks and the summary describe), or the scenario
/// itself, named `value`, if it declares none.
pub fn variants(scenario: &Scenario) -> Vec<(String, Scenario)> {
    if scenario.mesh.variants.is_empty() {
        return vec![("value".to_owned(), scenario.clone())];
    }
    scenario
        .mesh
        .variants
        .iter()
        .map(|variant| {
            let mut run = scenario.clone();
            run.mesh.variants.clear();
            for (service, policy) in &variant.services {
                run.mesh.services.insert(service.clone(), policy.clone());
            }
            (variant.name.get_ref().clone(), run)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
name = "t"
[[services]]
name = "gateway"
app = "gateway"
service_time = { distribution = "constant", mean = "1ms" }
[[services]]
name = "registry"
app = "registry"
replicas = 2
service_time = { distribution = "constant", mean = "1ms" }
[workload]
target = "gateway"
[[workload.phases]]
name = "steady"
duration = "1s"
arrival = { kind = "constant", rate = 10 }
[[workload.mix]]
operation = "quote"
weight = 1
"#;

    fn parse(extra: &str) -> Result<Scenario, String> {
        Scenario::parse(Path::new("x.toml"), &format!("{BASE}{extra}")).map_err(|e| e.to_string())
    }

    /// Federation is off unless listed; a listed domain reaches the
    /// config; the mesh's own domain, a repeat or a non-DNS name is
    /// refused where it is written.
    #[test]
    fn federated_trust_domains_are_validated_and_distributed() {
        let plain = parse("").unwrap();
        assert!(
            plain
                .mesh
                .to_config(Duration::ZERO)
                .federated_trust_domains
                .is_empty()
        );
        let federated = parse("[mesh]\nfederated_trust_domains = [\"partner.example\"]\n").unwrap();
        let config = federated.mesh.to_config(Duration::ZERO);
        assert_eq!(
            config.federated_trust_domains,
            BTreeSet::from(["partner.example".to_owned()])
        );
        for (list, expected) in [
            (r#"["rec.meshsim"]"#, "own trust domain"),
            (r#"["a.example", "a.example"]"#, "listed twice"),
            (r#"["Partner.example"]"#, "not a lowercase DNS name"),
            (r#"["bad domain"]"#, "not a lowercase DNS name"),
        ] {
            let error = parse(&format!("[mesh]\nfederated_trust_domains = {list}\n")).unwrap_err();
            assert!(error.contains(expected), "{list}: {error}");
        }
    }

    #[test]
    fn a_full_policy_translates_to_mesh_config() {
        let scenario = parse(
            r#"
[mesh.services.registry]
load_balancer = "least_request"
retry_budget = { ratio = 0.1, min_retries_per_s = 5 }
outlier_detection = { consecutive_gateway_failures = 3, base_ejection = "1s" }
circuit_breaker = { max_requests = 64 }
rate_limit = { per_identity = { requests_per_s = 100 } }
authorization = { allow = [{ principals = ["*/sa/gateway"] }, { paths = ["/public*"] }] }
[[mesh.services.registry.routes]]
name = "reads"
match = { path = { prefix = "/recs" }, methods = ["GET"] }
timeout = "2s"
per_try_timeout = "500ms"
retry = { max_attempts = 2, on = ["unavailable"] }
fault = { delay = { percent = 10, fixed = "20ms" } }
[[mesh.endpoint_faults]]
hosts = ["registry-1"]
from = "1s"
until = "2s"
abort = { percent = 100, status = 503 }
"#,
        )
        .unwrap();
        let config = scenario.mesh.to_config(Duration::from_secs(2));
        config.validate().unwrap();
        let registry = &config.services["registry"];
        assert_eq!(registry.load_balancer, cfg::LoadBalancer::LeastRequest);
        assert_eq!(registry.retry_budget.as_ref().unwrap().ttl_ms, 10_000);
        let outlier = registry.outlier_detection.as_ref().unwrap();
        assert_eq!(
            (
                outlier.consecutive_gateway_failures,
                outlier.base_ejection_ms,
                outlier.consecutive_5xx
            ),
            (3, 1000, 5)
        );
        assert_eq!(registry.circuit_breaker.max_requests, 64);
        assert_eq!(registry.circuit_breaker.max_connections, 1024);
        let route = &registry.routes[0];
        assert_eq!(route.per_try_timeout_ms, Some(500));
        assert_eq!(route.retry.as_ref().unwrap().max_attempts, 2);
        assert_eq!(registry.authorization.as_ref().unwrap().allow.len(), 2);
        assert_eq!(config.endpoint_faults[0].from_ms, 3000);
        assert_eq!(config.endpoint_faults[0].until_ms, Some(4000));
    }

    #[test]
    fn mistakes_are_located() {
        let message =
            parse("[mesh.services.regsitry]\nload_balancer = \"round_robin\"\n").unwrap_err();
        assert!(
            message.contains("policy for \"regsitry\" is not a service"),
            "{message}"
        );
        assert!(message.starts_with("x.toml:"), "{message}");
        let message = parse("[mesh.services.registry]\nload_balancer = \"random\"\n").unwrap_err();
        assert!(message.contains("random"), "{message}");
        let message = parse(
            "[[mesh.services.registry.routes]]\nname = \"r\"\nretry = { max_attempts = 0 }\n",
        )
        .unwrap_err();
        assert!(message.contains("max_attempts"), "{message}");
        let message =
            parse("[[mesh.checks]]\nname = \"c\"\nmetric = \"p99_ms\"\nexpect = [\"fast >= 3\"]\n")
                .unwrap_err();
        assert!(message.contains("\"fast\" is not \"value\""), "{message}");
        let message = parse(
            "[[mesh.checks]]\nname = \"c\"\nmetric = \"p99_ms\"\nexpect = [\"value => 3\"]\n",
        )
        .unwrap_err();
        assert!(message.contains("unknown operator"), "{message}");
        let message = parse("[[mesh.endpoint_faults]]\nhosts = [\"registry-7\"]\n").unwrap_err();
        assert!(message.contains("registry-7"), "{message}");
        let message = parse(
            "[[mesh.rogues]]\nname = \"gateway-0\"\nkind = \"no_certificate\"\ntarget = \"registry\"\n",
        )
        .unwrap_err();
        assert!(message.contains("clashes"), "{message}");
    }

    #[test]
    fn variants_replace_the_named_policies() {
        let scenario = parse(
            r#"
[mesh.services.registry]
load_balancer = "round_robin"
[[mesh.variants]]
name = "rr"
[[mesh.variants]]
name = "ewma"
services.registry = { load_balancer = "peak_ewma" }
[[mesh.checks]]
name = "ewma_wins"
metric = "p99_ms"
expect = ["rr / ewma >= 3"]
"#,
        )
        .unwrap();
        let runs = variants(&scenario);
        let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["rr", "ewma"]);
        let lb = |s: &Scenario| s.mesh.to_config(Duration::ZERO).services["registry"].load_balancer;
        assert_eq!(lb(&runs[0].1), cfg::LoadBalancer::RoundRobin);
        assert_eq!(lb(&runs[1].1), cfg::LoadBalancer::PeakEwma);
        let expectation: Expectation = "rr / ewma >= 3".parse().unwrap();
        assert_eq!(expectation.over.as_deref(), Some("ewma"));
        assert!(expectation.op.holds(3.0, expectation.bound));
    }
}
