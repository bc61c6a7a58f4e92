//! Control-plane behaviour end to end in the simulator: an operator's
//! config change reaches every proxy, and the summary shows each proxy's
//! version timeline.

use std::path::Path;

use engine::run_sim;
use seam::Trace;
use spec::Scenario;

const APPLY: &str = r#"
name = "apply"
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
duration = "10s"
arrival = { kind = "poisson", rate = 50 }
[[workload.mix]]
operation = "quote"
weight = 1
[[faults]]
at = "5s"
action = "apply_config"
config = { revoked = ["spiffe://rec.meshsim/ns/rec/sa/nobody"] }
[[checks]]
name = "revocation_propagates"
property = "config_propagated"
within = "1s"
"#;

#[test]
fn an_applied_config_reaches_every_proxy_within_the_bound() {
    let scenario = Scenario::parse(Path::new("apply.toml"), APPLY).unwrap();
    let output = run_sim(
        &scenario,
        seam::Seed::new(1),
        Trace::keeping_kinds(&["control.", "discovery."]),
    )
    .unwrap();
    let check = output
        .summary
        .checks
        .iter()
        .find(|c| c.name == "revocation_propagates")
        .unwrap();
    assert!(check.passed, "{}", check.detail);
    let timeline = &output.summary.config_versions;
    assert_eq!(
        timeline.len(),
        4,
        "gateway-0, registry-0, registry-1 and loadgen report versions: {timeline:?}"
    );
    let applied = output
        .trace
        .events()
        .iter()
        .find(|e| e.kind == seam::event::CONTROL_APPLY)
        .map(|e| e.detail.clone())
        .unwrap();
    let applied_version: u64 = applied.trim_start_matches("v=").parse().unwrap();
    for (proxy, versions) in timeline {
        let last = versions.last().unwrap().1;
        assert!(
            last >= applied_version,
            "{proxy} ended on v{last}, before the applied v{applied_version}"
        );
        assert!(
            versions.windows(2).all(|w| w[0].1 < w[1].1),
            "{proxy} versions must only grow: {versions:?}"
        );
    }
}

#[test]
fn a_config_the_control_plane_refuses_is_a_scenario_error() {
    let bad = APPLY.replace("config = { revoked", "config = { revokedd");
    let error = Scenario::parse(Path::new("apply.toml"), &bad)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("apply.toml:"), "{error}");
    assert!(error.contains("revokedd"), "{error}");
}

/// A small edge/backend scenario with one SLO that `abort_on_fail` watches.
fn abortable(slo: &str) -> Scenario {
    let text = format!(
        r#"
name = "abort"
[sim]
[[services]]
name = "gateway"
app = "edge"
service_time = {{ distribution = "constant", mean = "1ms" }}
[[services]]
name = "registry"
app = "backend"
service_time = {{ distribution = "constant", mean = "1ms" }}
[workload]
target = "gateway"
[[workload.phases]]
name = "warm"
duration = "3s"
arrival = {{ kind = "constant", rate = 20 }}
[[workload.phases]]
name = "peak"
duration = "27s"
arrival = {{ kind = "constant", rate = 20 }}
[[workload.mix]]
operation = "quote"
weight = 1
[[checks]]
name = "peak_latency"
phase = "peak"
slo = "{slo}"
abort_on_fail = true
"#
    );
    Scenario::parse(Path::new("abort.toml"), &text).unwrap()
}

#[test]
fn abort_on_fail_stops_the_run_one_interval_into_the_failing_phase() {
    let output = run_sim(
        &abortable("p(99) < 1ms"),
        seam::Seed::new(1),
        Trace::hash_only(),
    )
    .unwrap();
    let check = &output.summary.checks[0];
    assert!(!check.passed);
    assert!(
        check
            .detail
            .starts_with("aborted by check \"peak_latency\" at 4.000s"),
        "judged first one interval after the phase began: {}",
        check.detail
    );
    // 3 s of warm-up phase plus one interval of peak, then in-flight only.
    let scheduled = output.load.scheduled;
    let sent = output.load.overall.total();
    assert!(sent < 100 && scheduled == 600, "{sent} of {scheduled}");
    assert!(
        output.summary.sim_seconds < 15.0,
        "{}",
        output.summary.sim_seconds
    );
}

#[test]
fn abort_on_fail_lets_a_passing_run_finish() {
    let output = run_sim(
        &abortable("p(99) < 1s"),
        seam::Seed::new(1),
        Trace::hash_only(),
    )
    .unwrap();
    assert!(
        output.summary.checks[0].passed,
        "{}",
        output.summary.checks[0].detail
    );
    assert_eq!(output.load.overall.total(), 600);
}
