//! Mesh configuration the control plane distributes: per-service traffic
//! and security policy, endpoint faults, and revocations.
//!
//! The control plane versions it and pushes it with the endpoint registry
//! (see `control::Snapshot`); proxies apply a snapshot atomically and keep
//! the last good one when the control plane is unreachable.
//!
//! Defaults mirror Linkerd and Istio (`notes/anchors.md`); where meshsim
//! differs, the field's doc says why. Durations are integer milliseconds on
//! the wire (`_ms`), so a config is plain JSON with no unit parsing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Everything proxies need to know besides endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshConfig {
    /// Policy per destination service.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Revoked SPIFFE IDs and certificate serials (hex).
    pub revoked: BTreeSet<String>,
    /// The trust bundle (PEM roots) every workload must use; empty: the
    /// bundle each was installed with. Root rotation publishes the old and
    /// new roots here, then only the new one.
    pub trust_bundle: Vec<String>,
    /// Faults the sidecars of named hosts inject into their own inbound
    /// traffic: a sick replica, as its callers see it.
    pub endpoint_faults: Vec<EndpointFault>,
    /// Trust domains besides the mesh's own whose workloads the inbound
    /// side accepts (SPIFFE federation), as long as their certificates
    /// chain to a trusted root. Empty by default, and then left out of
    /// the JSON, so a config without federation is the same bytes as
    /// before the field existed.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub federated_trust_domains: BTreeSet<String>,
}

/// Traffic and security policy for one service. Outbound proxies read the
/// destination's policy; the service's own inbound proxies read its
/// authorization, rate limits and app protocol.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Routes, first match wins. Empty: one default route takes everything.
    /// Not empty and nothing matches: 404 (Gateway API semantics, as in
    /// Linkerd's HTTPRoute and Istio's VirtualService).
    pub routes: Vec<RouteConfig>,
    /// How outbound proxies pick an endpoint.
    pub load_balancer: LoadBalancer,
    /// Peak-EWMA parameters (used when `load_balancer` is `peak_ewma`).
    pub peak_ewma: PeakEwmaConfig,
    /// Bounds retries to a share of live traffic. `None`: unbounded, which
    /// is how a retry storm starts.
    pub retry_budget: Option<RetryBudget>,
    /// Passive health checking. Off unless configured (as in both meshes).
    pub outlier_detection: Option<OutlierDetection>,
    /// Per-endpoint limits; overflow fails fast with 503.
    pub circuit_breaker: CircuitBreaker,
    /// Local rate limit on the service's inbound side (all routes).
    pub rate_limit: Option<RateLimit>,
    /// Inbound authorization. `None`: every mesh identity may call (Istio
    /// with no ALLOW policy). `Some`: default-deny, as Linkerd does once a
    /// `Server` exists; an empty rule list denies everything.
    pub authorization: Option<AuthorizationPolicy>,
    /// The protocol the service's app speaks behind its sidecar.
    pub app_protocol: AppProtocol,
}

/// One route: a match, and what to do with requests that match it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Name, used in metrics (`route` label) and the access log.
    pub name: String,
    /// Which requests the route takes.
    #[serde(rename = "match")]
    pub matches: RouteMatch,
    /// Deadline for the whole request, retries included. `None`: the
    /// proxy's default request timeout.
    pub timeout_ms: Option<u64>,
    /// Deadline for one attempt. `None`: only the request deadline.
    pub per_try_timeout_ms: Option<u64>,
    /// Retry policy; `None` never retries (Linkerd: no retries unless a
    /// route asks; Istio retries twice by default, which meshsim does not
    /// copy because retrying by default is how retry storms begin).
    pub retry: Option<RetryPolicy>,
    /// Istio-style fault injection on the client side.
    pub fault: Option<FaultInjection>,
    /// Local rate limit on this route, on the destination's inbound side.
    pub rate_limit: Option<RateLimit>,
    /// Traffic split: weighted destination services. Empty: the service
    /// itself.
    pub backends: Vec<WeightedBackend>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            name: "default".into(),
            matches: RouteMatch::default(),
            timeout_ms: None,
            per_try_timeout_ms: None,
            retry: None,
            fault: None,
            rate_limit: None,
            backends: Vec::new(),
        }
    }
}

/// A route match. Every set field must match; unset fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteMatch {
    /// Host names (compared case-insensitively, port ignored).
    pub hosts: Vec<String>,
    /// Path match, on the normalized path.
    pub path: Option<PathMatch>,
    /// Methods (upper case).
    pub methods: Vec<String>,
    /// Header matches, all of which must hold.
    pub headers: Vec<HeaderMatch>,
}

/// How a route matches the path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// A prefix on segment boundaries: `/api` matches `/api` and
    /// `/api/x`, not `/apix` (Gateway API `PathPrefix`).
    Prefix(String),
    /// A regular expression that must match the whole path (Linkerd's
    /// `pathRegex`, Gateway API `RegularExpression`), in the `regex`
    /// crate's syntax, which runs in linear time.
    Regex(PathRegex),
}

/// A whole-path regular expression, compiled once when the config is
/// read, so a route match costs no compilation per request. Compares and
/// serializes as its source text.
#[derive(Clone, Debug)]
pub struct PathRegex {
    source: String,
    anchored: regex::Regex,
}

impl PathRegex {
    /// Compiles `source`, anchored at both ends.
    pub fn new(source: &str) -> Result<PathRegex, ConfigError> {
        let anchored = regex::Regex::new(&format!("^(?:{source})$"))
            .map_err(|e| ConfigError(format!("path regex \"{source}\" does not compile: {e}")))?;
        Ok(PathRegex {
            source: source.to_owned(),
            anchored,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole `path` matches.
    pub fn is_match(&self, path: &str) -> bool {
        self.anchored.is_match(path)
    }
}

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for PathRegex {}

impl Serialize for PathRegex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for PathRegex {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        PathRegex::new(&source).map_err(|e| serde::de::Error::custom(e.0))
    }
}

/// A header match (names are case-insensitive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name.
    pub name: String,
    /// Exact value; `None` only requires presence.
    #[serde(default)]
    pub value: Option<String>,
}

/// When and how often to retry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts including the first (Istio: 3, i.e. 2 retries).
    pub max_attempts: u32,
    /// Which failures are retried.
    pub retry_on: Vec<RetryOn>,
    /// Extra response statuses that are retried.
    pub retry_on_status: Vec<u16>,
    /// First backoff (Envoy: 25 ms); doubles per retry, fully jittered.
    pub backoff_base_ms: u64,
    /// Largest backoff (Envoy: 10 × base).
    pub backoff_max_ms: u64,
    /// Whether non-idempotent requests (POST, PATCH) may be retried once
    /// they may have reached the app.
    pub non_idempotent: NonIdempotent,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            retry_on: vec![
                RetryOn::ConnectFailure,
                RetryOn::Reset,
                RetryOn::Unavailable,
            ],
            retry_on_status: Vec::new(),
            backoff_base_ms: 25,
            backoff_max_ms: 250,
            non_idempotent: NonIdempotent::Never,
        }
    }
}

/// A retryable failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The connection (or TLS handshake) to the endpoint failed.
    ConnectFailure,
    /// The connection or stream broke mid-request.
    Reset,
    /// The endpoint answered 503.
    Unavailable,
    /// 502, 503 or 504.
    GatewayError,
    /// Any 5xx.
    ServerError,
    /// The per-try timeout fired.
    PerTryTimeout,
}

/// Retrying requests that are not idempotent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonIdempotent {
    /// Only when the request certainly never reached the app.
    #[default]
    Never,
    /// When the request carries an `idempotency-key` header.
    WithIdempotencyKey,
    /// Always (the app deduplicates by other means).
    Always,
}

/// Retries allowed as a share of live traffic (Linkerd's and Finagle's
/// budget; tower's `Budget`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries per original request (Linkerd: 0.2).
    pub ratio: f64,
    /// Retries always allowed per second (Linkerd: 10).
    pub min_retries_per_s: u32,
    /// How long a request counts toward the budget (Linkerd: 10 s).
    pub ttl_ms: u64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_retries_per_s: 10,
            ttl_ms: 10_000,
        }
    }
}

/// Load-balancing algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    /// Each endpoint in turn.
    RoundRobin,
    /// Power of two choices on in-flight requests (Envoy `LEAST_REQUEST`).
    LeastRequest,
    /// Power of two choices on peak-EWMA latency × (in flight + 1): Linkerd's
    /// default, and meshsim's.
    #[default]
    PeakEwma,
}

/// Peak-EWMA parameters (Linkerd: 30 ms initial estimate, 10 s decay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeakEwmaConfig {
    /// Estimate for an endpoint with no sample yet.
    pub default_rtt_ms: u64,
    /// Time constant of the decay.
    pub decay_ms: u64,
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        PeakEwmaConfig {
            default_rtt_ms: 30,
            decay_ms: 10_000,
        }
    }
}

/// Consecutive-failure ejection (Envoy outlier detection, Linkerd failure
/// accrual).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierDetection {
    /// Consecutive 5xx responses that eject (Istio: 5).
    pub consecutive_5xx: u32,
    /// Consecutive connect failures, resets or timeouts that eject (Istio: 5).
    pub consecutive_gateway_failures: u32,
    /// First ejection; the n-th lasts n × base (Istio: 30 s).
    pub base_ejection_ms: u64,
    /// Longest ejection (Envoy: 300 s; Linkerd: 60 s).
    pub max_ejection_ms: u64,
    /// Share of endpoints that may be ejected at once (Istio: 10 %); at
    /// least one may always be, as in Envoy.
    pub max_ejected_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failures: 5,
            base_ejection_ms: 30_000,
            max_ejection_ms: 300_000,
            max_ejected_percent: 10,
        }
    }
}

/// Circuit breaking (Envoy thresholds, default 1024 each).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Connections to one endpoint. Mesh hops are HTTP/2, so one
    /// connection carries up to `max_streams_per_connection`.
    pub max_connections: u32,
    /// Requests of one outbound proxy waiting for an endpoint with room.
    pub max_pending_requests: u32,
    /// Requests in flight to one endpoint.
    pub max_requests: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
        }
    }
}

/// A GCRA rate limit: a total for all callers and, optionally, one per
/// caller identity, with overrides (Linkerd's `HTTPLocalRateLimitPolicy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// All callers together.
    pub total: Option<Rate>,
    /// Each caller identity separately.
    pub per_identity: Option<Rate>,
    /// Per-identity rates for named principals (patterns as in
    /// authorization).
    pub overrides: Vec<RateOverride>,
}

/// A sustained rate and a burst.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per second.
    pub requests_per_s: f64,
    /// Requests allowed back to back. Linkerd has no burst knob (one
    /// second's worth); meshsim defaults to the same.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A per-identity rate for some principals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateOverride {
    /// Principal patterns.
    pub principals: Vec<String>,
    /// Their rate.
    pub rate: Rate,
}

/// Inbound authorization: deny rules first, then allow rules; with a policy
/// in place, a request no allow rule matches is denied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// Requests any of these match are allowed (unless denied).
    pub allow: Vec<AuthzRule>,
    /// Requests any of these match are denied, whatever `allow` says.
    pub deny: Vec<AuthzRule>,
}

/// One rule; every non-empty list must match (empty lists match anything).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzRule {
    /// Caller SPIFFE IDs: exact, `*`, `prefix*` or `*suffix`.
    pub principals: Vec<String>,
    /// Callers the rule does not cover (Istio `notPrincipals`).
    pub not_principals: Vec<String>,
    /// Methods, upper case.
    pub methods: Vec<String>,
    /// Methods the rule does not cover (Istio `notMethods`).
    pub not_methods: Vec<String>,
    /// Normalized paths: exact, `*`, `prefix*` or `*suffix` (Istio syntax;
    /// a prefix is a plain string prefix, as in Istio).
    pub paths: Vec<String>,
    /// Normalized paths the rule does not cover, in the same syntax
    /// (Istio `notPaths`): a request on one of them does not match.
    pub not_paths: Vec<String>,
}

/// Istio-style fault injection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultInjection {
    /// Answer with a status instead of forwarding.
    pub abort: Option<AbortFault>,
    /// Hold the request before forwarding.
    pub delay: Option<DelayFault>,
}

/// Abort a share of requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortFault {
    /// Share of requests, 0–100.
    pub percent: f64,
    /// Status to answer.
    pub status: u16,
}

/// Delay a share of requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayFault {
    /// Share of requests, 0–100.
    pub percent: f64,
    /// How long.
    pub fixed_delay_ms: u64,
}

/// A fault that the sidecars of some hosts inject on their inbound side
/// during a window of run time: a replica that answers 503, or one that is
/// slow. (Istio injects on the client; this is the same mechanism placed
/// where a sick replica would be, so every caller sees it.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointFault {
    /// Hosts whose inbound proxies inject.
    pub hosts: Vec<String>,
    /// Start, in run time.
    pub from_ms: u64,
    /// End, in run time (`None`: until the run ends).
    pub until_ms: Option<u64>,
    /// What to inject.
    pub fault: FaultInjection,
}

/// A weighted destination of a traffic split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedBackend {
    /// Destination service.
    pub service: String,
    /// Relative weight.
    pub weight: u32,
}

/// What the app behind a sidecar speaks (plain text on the loopback).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppProtocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// Why a configuration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid mesh config: {0}")]
pub struct ConfigError(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

impl MeshConfig {
    /// Checks the config before it is accepted; a refused config leaves the
    /// previous version in force.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for domain in &self.federated_trust_domains {
            let valid = domain.to_ascii_lowercase() == *domain
                && crate::SpiffeId::new(domain, "ns", "sa").is_ok();
            if !valid {
                return refuse(format!(
                    "federated trust domain \"{domain}\" is not a lowercase DNS name"
                ));
            }
        }
        for (name, service) in &self.services {
            if name.is_empty() {
                return refuse("a service policy has an empty name");
            }
            service
                .validate()
                .map_err(|e| ConfigError(format!("service \"{name}\": {}", e.0)))?;
        }
        for (index, fault) in self.endpoint_faults.iter().enumerate() {
            let at = |m: String| ConfigError(format!("endpoint fault {index}: {m}"));
            if fault.hosts.is_empty() {
                return Err(at("names no host".into()));
            }
            if fault.until_ms.is_some_and(|until| until <= fault.from_ms) {
                return Err(at("ends before it starts".into()));
            }
            fault.fault.validate().map_err(|e| at(e.0))?;
        }
        Ok(())
    }

    /// The policy for `service` (default policy if none is configured).
    pub fn service(&self, service: &str) -> ServiceConfig {
        self.services.get(service).cloned().unwrap_or_default()
    }
}

impl ServiceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for route in &self.routes {
            if !names.insert(route.name.as_str()) {
                return refuse(format!("route \"{}\" is defined twice", route.name));
            }
            route
                .validate()
                .map_err(|e| ConfigError(format!("route \"{}\": {}", route.name, e.0)))?;
        }
        if self.peak_ewma.default_rtt_ms == 0 || self.peak_ewma.decay_ms == 0 {
            return refuse("peak_ewma needs a positive default_rtt_ms and decay_ms");
        }
        if let Some(budget) = &self.retry_budget {
            if !(budget.ratio.is_finite() && (0.0..=1000.0).contains(&budget.ratio)) {
                return refuse(format!(
                    "retry budget ratio {} must be between 0 and 1000",
                    budget.ratio
                ));
            }
            if budget.ttl_ms < 1000 || budget.ttl_ms > 60_000 {
                return refuse("retry budget ttl_ms must be between 1000 and 60000");
            }
        }
        if let Some(outlier) = &self.outlier_detection {
            if outlier.consecutive_5xx == 0 && outlier.consecutive_gateway_failures == 0 {
                return refuse("outlier detection needs a positive failure count");
            }
            if outlier.base_ejection_ms == 0 || outlier.max_ejection_ms < outlier.base_ejection_ms {
                return refuse("outlier detection needs 0 < base_ejection_ms <= max_ejection_ms");
            }
            if outlier.max_ejected_percent > 100 {
                return refuse("max_ejected_percent must be at most 100");
            }
        }
        let breaker = &self.circuit_breaker;
        if breaker.max_connections == 0 || breaker.max_requests == 0 {
            return refuse("circuit breaker limits must be positive");
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate()?;
        }
        if let Some(policy) = &self.authorization {
            for rule in policy.allow.iter().chain(&policy.deny) {
                rule.validate()?;
            }
        }
        Ok(())
    }
}

impl RouteConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return refuse("a route has an empty name");
        }
        match &self.matches.path {
            Some(PathMatch::Exact(p) | PathMatch::Prefix(p)) if !p.starts_with('/') => {
                return refuse(format!("path match \"{p}\" must start with '/'"));
            }
            _ => {}
        }
        for method in &self.matches.methods {
            validate_method(method)?;
        }
        for header in &self.matches.headers {
            if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
                return refuse(format!("\"{}\" is not a header name", header.name));
            }
        }
        if self.timeout_ms == Some(0) || self.per_try_timeout_ms == Some(0) {
            return refuse("timeouts must be positive");
        }
        if let Some(retry) = &self.retry {
            if retry.max_attempts == 0 || retry.max_attempts > 10 {
                return refuse("retry max_attempts must be between 1 and 10");
            }
            if retry.backoff_max_ms < retry.backoff_base_ms {
                return refuse("retry backoff_max_ms must be at least backoff_base_ms");
            }
            if let Some(status) = retry
                .retry_on_status
                .iter()
                .find(|s| !(100..=599).contains(*s))
            {
                return refuse(format!("retry_on_status {status} is not an HTTP status"));
            }
        }
        if let Some(fault) = &self.fault {
            fault.validate()?;
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate()?;
        }
        if !self.backends.is_empty() && self.backends.iter().all(|b| b.weight == 0) {
            return refuse("a traffic split needs a positive weight");
        }
        if let Some(backend) = self.backends.iter().find(|b| b.service.is_empty()) {
            return refuse(format!(
                "a backend with weight {} names no service",
                backend.weight
            ));
        }
        Ok(())
    }
}

impl FaultInjection {
    fn validate(&self) -> Result<(), ConfigError> {
        let percent_ok = |p: f64| p.is_finite() && (0.0..=100.0).contains(&p);
        if let Some(abort) = &self.abort {
            if !percent_ok(abort.percent) {
                return refuse(format!("abort percent {} is not in 0..=100", abort.percent));
            }
            if !(200..=599).contains(&abort.status) {
                return refuse(format!("abort status {} is not in 200..=599", abort.status));
            }
        }
        if let Some(delay) = &self.delay
            && !percent_ok(delay.percent)
        {
            return refuse(format!("delay percent {} is not in 0..=100", delay.percent));
        }
        Ok(())
    }
}

impl RateLimit {
    fn validate(&self) -> Result<(), ConfigError> {
        let rates = self
            .total
            .iter()
            .chain(&self.per_identity)
            .chain(self.overrides.iter().map(|o| &o.rate));
        for rate in rates {
            if !(rate.requests_per_s.is_finite() && rate.requests_per_s > 0.0) {
                return refuse(format!(
                    "rate {} must be a positive number of requests per second",
                    rate.requests_per_s
                ));
            }
            if rate.burst == Some(0) {
                return refuse("a burst must be at least 1");
            }
        }
        if self.total.is_none() && self.per_identity.is_none() && self.overrides.is_empty() {
            return refuse("a rate limit needs total, per_identity or overrides");
        }
        for principal in self.overrides.iter().flat_map(|o| &o.principals) {
            validate_pattern("principal", principal)?;
        }
        Ok(())
    }
}

impl AuthzRule {
    fn validate(&self) -> Result<(), ConfigError> {
        for principal in self.principals.iter().chain(&self.not_principals) {
            validate_pattern("principal", principal)?;
        }
        for path in self.paths.iter().chain(&self.not_paths) {
            validate_pattern("path", path)?;
            if !(path.starts_with('/') || path.starts_with('*')) {
                return refuse(format!(
                    "path pattern \"{path}\" must start with '/' or '*'"
                ));
            }
        }
        for method in self.methods.iter().chain(&self.not_methods) {
            validate_method(method)?;
        }
        Ok(())
    }
}

fn validate_method(method: &str) -> Result<(), ConfigError> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return refuse(format!("method \"{method}\" must be upper-case letters"));
    }
    Ok(())
}

/// Patterns are exact, `*`, `prefix*` or `*suffix`: one `*`, at an end.
fn validate_pattern(what: &str, pattern: &str) -> Result<(), ConfigError> {
    let stars = pattern.matches('*').count();
    let well_placed =
        stars == 0 || (stars == 1 && (pattern.starts_with('*') || pattern.ends_with('*')));
    if pattern.is_empty() || !well_placed {
        return refuse(format!(
            "{what} pattern \"{pattern}\" must be exact, \"*\", \"prefix*\" or \"*suffix\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_service(service: ServiceConfig) -> MeshConfig {
        MeshConfig {
            services: BTreeMap::from([("registry".to_owned(), service)]),
            ..MeshConfig::default()
        }
    }

    fn error(config: &MeshConfig) -> String {
        config.validate().unwrap_err().0
    }

    #[test]
    fn defaults_are_valid_and_mirror_the_meshes() {
        let service = ServiceConfig::default();
        assert_eq!(service.load_balancer, LoadBalancer::PeakEwma);
        assert_eq!(service.peak_ewma.default_rtt_ms, 30);
        assert_eq!(service.peak_ewma.decay_ms, 10_000);
        assert_eq!(RetryBudget::default().ratio, 0.2);
        assert_eq!(RetryBudget::default().min_retries_per_s, 10);
        assert_eq!(OutlierDetection::default().consecutive_5xx, 5);
        assert_eq!(CircuitBreaker::default().max_requests, 1024);
        with_service(service).validate().unwrap();
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let route = |r: RouteConfig| {
            with_service(ServiceConfig {
                routes: vec![r],
                ..ServiceConfig::default()
            })
        };
        let message = error(&route(RouteConfig {
            retry: Some(RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            }),
            ..RouteConfig::default()
        }));
        assert!(message.contains("max_attempts"), "{message}");
        let message = error(&route(RouteConfig {
            matches: RouteMatch {
                path: Some(PathMatch::Prefix("api".into())),
                ..RouteMatch::default()
            },
            ..RouteConfig::default()
        }));
        assert!(message.contains("must start with '/'"), "{message}");
        let message = error(&route(RouteConfig {
            fault: Some(FaultInjection {
                abort: Some(AbortFault {
                    percent: 120.0,
                    status: 503,
                }),
                delay: None,
            }),
            ..RouteConfig::default()
        }));
        assert!(message.contains("abort percent"), "{message}");
        let message = error(&with_service(ServiceConfig {
            authorization: Some(AuthorizationPolicy {
                allow: vec![AuthzRule {
                    principals: vec!["spiffe://*/sa/x*".into()],
                    ..AuthzRule::default()
                }],
                deny: vec![],
            }),
            ..ServiceConfig::default()
        }));
        assert!(message.contains("pattern"), "{message}");
        let message = error(&with_service(ServiceConfig {
            retry_budget: Some(RetryBudget {
                ratio: f64::NAN,
                ..RetryBudget::default()
            }),
            ..ServiceConfig::default()
        }));
        assert!(message.contains("ratio"), "{message}");
        let twice = with_service(ServiceConfig {
            routes: vec![RouteConfig::default(), RouteConfig::default()],
            ..ServiceConfig::default()
        });
        assert!(error(&twice).contains("defined twice"));
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = with_service(ServiceConfig {
            routes: vec![RouteConfig {
                name: "orders".into(),
                matches: RouteMatch {
                    path: Some(PathMatch::Prefix("/orders".into())),
                    methods: vec!["POST".into()],
                    ..RouteMatch::default()
                },
                retry: Some(RetryPolicy::default()),
                ..RouteConfig::default()
            }],
            retry_budget: Some(RetryBudget::default()),
            ..ServiceConfig::default()
        });
        let json = serde_json::to_string(&config).unwrap();
        let back: MeshConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
}
