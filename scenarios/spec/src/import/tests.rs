//! Each mapping: the YAML, and the meshsim configuration it becomes.
//! (The behaviour of each in a simulated run is tested in
//! `scenarios/engine/tests/import.rs`.)

use std::path::Path;

use mesh::config as cfg;

use super::*;

fn context() -> ImportContext {
    ImportContext {
        services: vec!["gateway".into(), "registry".into(), "registry-v2".into()],
        trust_domain: "rec.meshsim".into(),
        namespace: "rec".into(),
    }
}

/// Writes `yaml` to a file of its own and imports it.
fn import(name: &str, yaml: &str) -> Result<Imported, SpecError> {
    let dir = std::env::temp_dir().join(format!("meshsim-import-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, yaml).unwrap();
    import_files(&[file], &context())
}

fn policy(imported: &Imported, service: &str) -> cfg::ServiceConfig {
    let table = imported.services[service].as_table().unwrap().clone();
    let spec: ServicePolicySpec = table.try_into().unwrap();
    spec.to_config()
}

fn error(name: &str, yaml: &str) -> String {
    let message = import(name, yaml).unwrap_err().to_string();
    message
        .split_once(&format!("{name}:"))
        .map_or(message.clone(), |(_, rest)| rest.to_owned())
}

#[test]
fn virtual_service_routes_retries_timeouts_faults_and_splits() {
    let imported = import(
        "vs.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: registry }
spec:
  hosts: [registry.rec.svc.cluster.local]
  http:
  - name: reads
    match:
    - uri: { prefix: /recs }
      method: { exact: GET }
      headers: { x-tenant: { exact: blue } }
    timeout: 2s
    retries: { attempts: 2, perTryTimeout: 500ms, retryOn: "5xx,connect-failure,503" }
    fault:
      abort: { percentage: { value: 50 }, httpStatus: 503 }
      delay: { percentage: { value: 10 }, fixedDelay: 20ms }
  - route:
    - destination: { host: registry }
      weight: 90
    - destination: { host: registry-v2 }
      weight: 10
"#,
    )
    .unwrap();
    let registry = policy(&imported, "registry");
    cfg::MeshConfig {
        services: [("registry".to_owned(), registry.clone())].into(),
        ..cfg::MeshConfig::default()
    }
    .validate()
    .unwrap();
    let reads = &registry.routes[0];
    assert_eq!(reads.name, "reads");
    assert_eq!(reads.matches.methods, ["GET"]);
    assert_eq!(reads.matches.headers[0].name, "x-tenant");
    let Some(cfg::PathMatch::Regex(regex)) = &reads.matches.path else {
        panic!(
            "Istio's prefix is a string prefix: {:?}",
            reads.matches.path
        );
    };
    assert!(regex.is_match("/recs") && regex.is_match("/recsx"));
    assert_eq!(reads.timeout_ms, Some(2000));
    assert_eq!(reads.per_try_timeout_ms, Some(500));
    let retry = reads.retry.as_ref().unwrap();
    assert_eq!(retry.max_attempts, 3, "Istio's attempts count retries");
    assert_eq!(
        retry.retry_on,
        [
            cfg::RetryOn::ServerError,
            cfg::RetryOn::ConnectFailure,
            cfg::RetryOn::PerTryTimeout
        ]
    );
    assert_eq!(retry.retry_on_status, [503]);
    let fault = reads.fault.as_ref().unwrap();
    assert_eq!(
        fault.abort,
        Some(cfg::AbortFault {
            percent: 50.0,
            status: 503
        })
    );
    assert_eq!(
        fault.delay,
        Some(cfg::DelayFault {
            percent: 10.0,
            fixed_delay_ms: 20
        })
    );
    let split = &registry.routes[1];
    assert_eq!(split.name, "registry-1");
    assert_eq!(
        split.backends,
        [
            cfg::WeightedBackend {
                service: "registry".into(),
                weight: 90
            },
            cfg::WeightedBackend {
                service: "registry-v2".into(),
                weight: 10
            },
        ]
    );
    assert_eq!(
        split.retry.as_ref().unwrap().max_attempts,
        3,
        "Istio's default: 2 retries"
    );
    assert_eq!(
        registry.load_balancer,
        cfg::LoadBalancer::LeastRequest,
        "Istio's default"
    );
    assert!(imported.notes.iter().any(|n| n.contains("LEAST_REQUEST")));
}

#[test]
fn destination_rule_balancer_outlier_detection_and_pool() {
    let imported = import(
        "dr.yaml",
        r#"
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: registry }
spec:
  host: registry
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
    connectionPool:
      tcp: { maxConnections: 100 }
      http: { http1MaxPendingRequests: 10, http2MaxRequests: 50 }
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 15s
      maxEjectionPercent: 50
"#,
    )
    .unwrap();
    let registry = policy(&imported, "registry");
    assert_eq!(registry.load_balancer, cfg::LoadBalancer::RoundRobin);
    assert_eq!(
        registry.outlier_detection,
        Some(cfg::OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_failures: 0,
            base_ejection_ms: 15_000,
            max_ejection_ms: 300_000,
            max_ejected_percent: 50,
        })
    );
    assert_eq!(
        registry.circuit_breaker,
        cfg::CircuitBreaker {
            max_connections: 100,
            max_pending_requests: 10,
            max_requests: 50
        }
    );
    assert_eq!(imported.warnings.len(), 1, "{:?}", imported.warnings);
    assert!(imported.warnings[0].to_string().ends_with(
        "dr.yaml:14:7: outlierDetection.interval is not modelled: meshsim ejects as soon as the consecutive count is reached and returns an endpoint when its ejection time is over, not at the next sweep"
    ), "{}", imported.warnings[0]);
}

#[test]
fn authorization_policy_keeps_istios_order_in_meshsims_default_deny() {
    let deny_only = import(
        "deny.yaml",
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-rogue, namespace: rec }
spec:
  selector: { matchLabels: { app: registry } }
  action: DENY
  rules:
  - from:
    - source: { principals: ["cluster.local/ns/rec/sa/rogue"] }
    to:
    - operation: { methods: [POST], notPaths: ["/public*"] }
"#,
    )
    .unwrap();
    let authz = policy(&deny_only, "registry").authorization.unwrap();
    assert_eq!(
        authz.deny,
        [cfg::AuthzRule {
            principals: vec!["spiffe://rec.meshsim/ns/rec/sa/rogue".into()],
            methods: vec!["POST".into()],
            not_paths: vec!["/public*".into()],
            ..cfg::AuthzRule::default()
        }]
    );
    assert_eq!(
        authz.allow,
        [cfg::AuthzRule {
            principals: vec!["*".into()],
            ..cfg::AuthzRule::default()
        }],
        "no ALLOW policy: Istio allows what is not denied, written out explicitly"
    );
    assert!(
        deny_only.notes[0].contains("only DENY policies"),
        "{:?}",
        deny_only.notes
    );
    let allow = import(
        "allow.yaml",
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: gateway-only }
spec:
  selector: { matchLabels: { app: registry } }
  rules:
  - from:
    - source: { principals: ["cluster.local/ns/rec/sa/gateway"] }
    - source: { namespaces: [ops] }
    to:
    - operation: { paths: ["/recs/*"] }
"#,
    )
    .unwrap();
    let authz = policy(&allow, "registry").authorization.unwrap();
    assert!(authz.deny.is_empty());
    let principals: Vec<&[String]> = authz
        .allow
        .iter()
        .map(|r| r.principals.as_slice())
        .collect();
    assert_eq!(
        principals,
        [
            &["spiffe://rec.meshsim/ns/rec/sa/gateway".to_owned()][..],
            &["spiffe://rec.meshsim/ns/ops/*".to_owned()][..]
        ],
        "sources are ORed: one rule each, both with the operation"
    );
    assert!(authz.allow.iter().all(|r| r.paths == ["/recs/*"]));
}

#[test]
fn peer_authentication_strict_is_accepted_and_permissive_refused() {
    let strict = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: istio-system }
spec: { mtls: { mode: STRICT } }
"#;
    import("strict.yaml", strict).unwrap();
    assert_eq!(
        error("permissive.yaml", &strict.replace("STRICT", "PERMISSIVE")),
        "5:23: mtls.mode PERMISSIVE is refused: meshsim's sidecars never accept plaintext, so only STRICT can be simulated faithfully"
    );
}

#[test]
fn service_profile_routes_and_retry_budget() {
    let imported = import(
        "sp.yaml",
        r#"
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: { name: registry.rec.svc.cluster.local, namespace: rec }
spec:
  routes:
  - name: GET /recs/{id}
    condition: { method: GET, pathRegex: '/recs/[^/]*' }
    isRetryable: true
    timeout: 300ms
  retryBudget: { retryRatio: 0.1, minRetriesPerSecond: 5, ttl: 10s }
"#,
    )
    .unwrap();
    let registry = policy(&imported, "registry");
    let route = &registry.routes[0];
    assert_eq!(route.name, "GET /recs/{id}");
    let Some(cfg::PathMatch::Regex(regex)) = &route.matches.path else {
        panic!()
    };
    assert!(regex.is_match("/recs/42") && !regex.is_match("/recs/42/x"));
    assert_eq!(route.timeout_ms, Some(300));
    let retry = route.retry.as_ref().unwrap();
    assert_eq!(
        retry.retry_on,
        [cfg::RetryOn::ServerError, cfg::RetryOn::ConnectFailure]
    );
    assert_eq!(retry.non_idempotent, cfg::NonIdempotent::Always);
    assert_eq!(
        registry.retry_budget,
        Some(cfg::RetryBudget {
            ratio: 0.1,
            min_retries_per_s: 5,
            ttl_ms: 10_000
        })
    );
}

#[test]
fn linkerd_server_and_policies_become_default_deny_with_allow_rules() {
    let imported = import(
        "linkerd-policy.yaml",
        r#"
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: { name: registry-http, namespace: rec }
spec:
  podSelector: { matchLabels: { app: registry } }
  port: http
---
apiVersion: policy.linkerd.io/v1beta3
kind: HTTPRoute
metadata: { name: registry-reads, namespace: rec }
spec:
  parentRefs: [{ name: registry-http, kind: Server, group: policy.linkerd.io }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /recs }, method: GET }]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: MeshTLSAuthentication
metadata: { name: gateway-only, namespace: rec }
spec:
  identities: ["gateway.rec.serviceaccount.identity.linkerd.cluster.local"]
  identityRefs: [{ kind: ServiceAccount, name: ops }]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: registry-reads, namespace: rec }
spec:
  targetRef: { group: policy.linkerd.io, kind: HTTPRoute, name: registry-reads }
  requiredAuthenticationRefs:
  - { name: gateway-only, kind: MeshTLSAuthentication, group: policy.linkerd.io }
"#,
    )
    .unwrap();
    let authz = policy(&imported, "registry").authorization.unwrap();
    assert_eq!(
        authz.allow,
        [cfg::AuthzRule {
            principals: vec![
                "spiffe://rec.meshsim/ns/rec/sa/gateway".into(),
                "spiffe://rec.meshsim/ns/rec/sa/ops".into()
            ],
            methods: vec!["GET".into()],
            paths: vec!["/recs/*".into(), "/recs".into()],
            ..cfg::AuthzRule::default()
        }]
    );
    assert!(authz.deny.is_empty());
}

#[test]
fn gateway_http_route_matches_splits_timeouts_and_retry_in_precedence_order() {
    let imported = import(
        "httproute.yaml",
        r#"
apiVersion: v1
kind: List
items:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: { name: registry }
  spec:
    parentRefs: [{ group: "", kind: Service, name: registry, port: 80 }]
    rules:
    - backendRefs: [{ name: registry, port: 80, weight: 3 }, { name: registry-v2, port: 80, weight: 1 }]
    - matches:
      - path: { type: Exact, value: /recs/available }
        method: GET
        headers: [{ name: X-Tenant, value: blue }]
      timeouts: { request: 2s, backendRequest: 500ms }
      retry: { attempts: 2, backoff: 100ms, codes: [503] }
      backendRefs: [{ name: registry, port: 80 }]
"#,
    )
    .unwrap();
    let registry = policy(&imported, "registry");
    let names: Vec<&str> = registry.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["registry-1", "registry-0"],
        "an exact path wins over the default prefix"
    );
    let exact = &registry.routes[0];
    assert_eq!(
        exact.matches.path,
        Some(cfg::PathMatch::Exact("/recs/available".into()))
    );
    assert_eq!(exact.matches.headers[0].name, "x-tenant");
    assert_eq!(
        (exact.timeout_ms, exact.per_try_timeout_ms),
        (Some(2000), Some(500))
    );
    let retry = exact.retry.as_ref().unwrap();
    assert_eq!((retry.max_attempts, retry.backoff_base_ms), (3, 100));
    assert_eq!(retry.retry_on_status, [503]);
    assert!(
        exact.backends.is_empty(),
        "a rule to its own parent is no split"
    );
    assert_eq!(registry.routes[1].backends.len(), 2);
    assert_eq!(
        registry.load_balancer,
        cfg::LoadBalancer::PeakEwma,
        "not Istio: meshsim's default"
    );
}

#[test]
fn deployments_give_replica_counts() {
    let imported = import(
        "deploy.yaml",
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: registry }
spec:
  replicas: 3
  selector: { matchLabels: { app: registry } }
  template: { metadata: { labels: { app: registry } } }
---
apiVersion: v1
kind: Service
metadata: { name: registry }
spec: { selector: { app: registry }, ports: [{ port: 80 }] }
"#,
    )
    .unwrap();
    assert_eq!(imported.replicas["registry"], 3);
}

#[test]
fn the_printed_toml_reads_back_as_the_same_policy() {
    let imported = import(
        "roundtrip.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: registry }
spec:
  hosts: [registry]
  http:
  - fault: { abort: { percentage: { value: 50 }, httpStatus: 503 } }
    route: [{ destination: { host: registry } }]
"#,
    )
    .unwrap();
    let text = imported.to_toml();
    #[derive(serde::Deserialize)]
    struct Root {
        mesh: MeshPart,
    }
    #[derive(serde::Deserialize)]
    struct MeshPart {
        services: std::collections::BTreeMap<String, ServicePolicySpec>,
    }
    let root: Root = toml::from_str(&text).unwrap();
    assert_eq!(
        root.mesh.services["registry"].to_config(),
        policy(&imported, "registry"),
        "{text}"
    );
    assert!(text.contains("[mesh.services.registry]"), "{text}");
}

#[test]
fn globs_expand_in_sorted_order() {
    let dir = std::env::temp_dir().join(format!("meshsim-import-glob-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["b.yaml", "a.yaml", "c.yml"] {
        std::fs::write(dir.join(name), "").unwrap();
    }
    let found = expand(&dir, "*.yaml").unwrap();
    let names: Vec<&str> = found
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(names, ["a.yaml", "b.yaml"]);
    assert!(
        expand(&dir, "*.json")
            .unwrap_err()
            .contains("matches no file")
    );
    assert!(
        expand(Path::new("/nonexistent"), "x.yaml")
            .unwrap_err()
            .contains("no such file")
    );
}
