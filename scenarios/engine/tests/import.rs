//! Imported Istio and Linkerd policy, run whole in the simulator: for each
//! mapping the issue names, the YAML, the meshsim configuration it
//! becomes, and one behaviour of a short simulated run.

use std::path::PathBuf;

use engine::{RunOutput, run_sim};
use mesh::config as cfg;
use reports::Summary;
use seam::Trace;
use spec::Scenario;

/// Two tiers (`gateway` → `registry` × 2), a few seconds of Poisson load.
const BASE: &str = r#"
seed = 1
[sim]
link_latency_min = "1ms"
link_latency_max = "2ms"
[[services]]
name = "gateway"
app = "edge"
service_time = { distribution = "exponential", mean = "1ms" }
concurrency = 32
[[services]]
name = "registry"
app = "backend"
replicas = 2
service_time = { distribution = "constant", mean = "2ms" }
concurrency = 32
[workload]
target = "gateway"
warmup = "1s"
connections = 16
[[workload.phases]]
name = "steady"
duration = "5s"
arrival = { kind = "poisson", rate = 200 }
[[workload.mix]]
operation = "quote"
weight = 1
"#;

/// Writes `policy.yaml` and a scenario importing it (plus `extra` TOML)
/// into a directory of the test's own, and loads the scenario.
fn imported(name: &str, yaml: &str, extra: &str) -> Scenario {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("import")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.yaml"), yaml).unwrap();
    let text = format!("name = \"{name}\"\n{BASE}\n[mesh]\nimport = [\"policy.yaml\"]\n{extra}");
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn run(scenario: &Scenario) -> RunOutput {
    run_sim(scenario, seam::Seed::new(scenario.seed), Trace::hash_only()).unwrap()
}

fn service(scenario: &Scenario, name: &str) -> cfg::ServiceConfig {
    scenario.mesh.to_config(std::time::Duration::ZERO).services[name].clone()
}

fn check<'s>(summary: &'s Summary, name: &str) -> &'s reports::Check {
    summary
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {:#?}", summary.checks))
}

#[test]
fn istio_fault_abort_of_50_percent_answers_about_half_with_503() {
    let scenario = imported(
        "fault-abort",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: gateway, namespace: rec }
spec:
  hosts: [gateway]
  http:
  - name: all
    fault:
      abort:
        percentage: { value: 50 }
        httpStatus: 503
    route:
    - destination: { host: gateway }
"#,
        "",
    );
    let gateway = service(&scenario, "gateway");
    assert_eq!(
        gateway.routes[0].fault.as_ref().unwrap().abort,
        Some(cfg::AbortFault {
            percent: 50.0,
            status: 503
        })
    );
    let load = run(&scenario).load;
    let total: u64 = load.statuses.values().sum();
    let aborted = load.statuses.get(&503).copied().unwrap_or(0);
    let share = aborted as f64 / total as f64;
    eprintln!("fault.abort 50 %: {aborted} of {total} answered 503 ({share:.3})");
    assert!(total > 800, "{:?}", load.statuses);
    assert!(
        (0.45..=0.55).contains(&share),
        "503 share {share:.3} of {total}: {:?}",
        load.statuses
    );
    assert_eq!(
        load.statuses.get(&200).copied().unwrap_or(0) + aborted,
        total,
        "{:?}",
        load.statuses
    );
}

const DENY_ROGUE: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-insider, namespace: rec }
spec:
  selector:
    matchLabels: { app: registry }
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/rec/sa/rogue-insider"]
"#;

const ROGUE: &str = r#"
[[mesh.rogues]]
name = "rogue-insider"
kind = "disallowed_identity"
target = "registry"
private_paths = ["/recs/available"]
"#;

#[test]
fn istio_deny_gives_403_to_the_denied_principal_and_2xx_to_the_others() {
    let scenario = imported("deny", DENY_ROGUE, ROGUE);
    let authz = service(&scenario, "registry").authorization.unwrap();
    assert_eq!(
        authz.deny[0].principals,
        ["spiffe://rec.meshsim/ns/rec/sa/rogue-insider"]
    );
    assert_eq!(
        authz.allow[0].principals,
        ["*"],
        "no ALLOW policy: everything else is allowed"
    );
    let output = run(&scenario);
    let never = check(&output.summary, "rogue_never_succeeds");
    eprintln!(
        "DENY: {}; loadgen statuses {:?}",
        never.detail, output.load.statuses
    );
    assert!(
        never.passed,
        "the denied principal got through: {}",
        never.detail
    );
    let statuses = &output.load.statuses;
    assert!(
        statuses.keys().all(|s| (200..300).contains(s)) && statuses.values().sum::<u64>() > 800,
        "the gateway's calls (another principal) must all succeed: {statuses:?}"
    );
    // The control: the same run without the DENY document lets the rogue in.
    let open = imported(
        "deny-control",
        "apiVersion: v1\nkind: List\nitems: []\n",
        ROGUE,
    );
    let open_check = check(&run(&open).summary, "rogue_never_succeeds").clone();
    assert!(
        !open_check.passed,
        "without the policy the rogue must reach the app: {}",
        open_check.detail
    );
}

#[test]
fn istio_outlier_detection_ejects_a_failing_replica() {
    let scenario = imported(
        "outlier",
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: registry, namespace: rec }
spec:
  host: registry
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      baseEjectionTime: 30s
      maxEjectionPercent: 50
"#,
        r#"
[[mesh.endpoint_faults]]
hosts = ["registry-1"]
from = "1s"
abort = { percent = 100, status = 503 }

[[mesh.checks]]
name = "ejected_within_1s"
metric = "ejection_delay_ms"
endpoint = "registry-1"
after = "1s"
expect = ["value <= 1000"]
"#,
    );
    let outlier = service(&scenario, "registry").outlier_detection.unwrap();
    assert_eq!(
        (outlier.consecutive_5xx, outlier.base_ejection_ms),
        (3, 30_000)
    );
    let summary = run(&scenario).summary;
    let ejected = check(&summary, "ejected_within_1s");
    eprintln!("outlierDetection: {}", ejected.detail);
    assert!(ejected.passed, "{}", ejected.detail);
}

#[test]
fn linkerd_retry_budget_bounds_the_retry_ratio() {
    let scenario = imported(
        "budget",
        r#"
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: { name: registry.rec.svc.cluster.local, namespace: rec }
spec:
  routes:
  - name: GET /recs/available
    condition: { method: GET, pathRegex: /recs/available }
    isRetryable: true
  retryBudget:
    retryRatio: 0.1
    minRetriesPerSecond: 2
    ttl: 10s
"#,
        r#"
[[mesh.endpoint_faults]]
hosts = ["registry-1"]
from = "1s"
abort = { percent = 100, status = 503 }

[[mesh.checks]]
name = "retries_within_budget"
metric = "retry_amplification"
service = "registry"
window = { from = "1s", until = "5s" }
expect = ["value <= 1.2", "value >= 1.05"]
"#,
    );
    let registry = service(&scenario, "registry");
    assert_eq!(
        registry.retry_budget,
        Some(cfg::RetryBudget {
            ratio: 0.1,
            min_retries_per_s: 2,
            ttl_ms: 10_000
        })
    );
    assert_eq!(registry.routes[0].retry.as_ref().unwrap().max_attempts, 10);
    let summary = run(&scenario).summary;
    let budget = check(&summary, "retries_within_budget");
    eprintln!("retryBudget: {}", budget.detail);
    assert!(budget.passed, "{}", budget.detail);
}
