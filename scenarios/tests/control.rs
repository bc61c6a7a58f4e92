//! Control-plane behaviour end to end in the simulator: an operator's
//! config change reaches every proxy, and the summary shows each proxy's
//! version timeline.

use std::path::Path;

use scenarios::engine::run_sim;
use scenarios::spec::Scenario;
use seam::Trace;

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
        1,
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
        .find(|e| e.kind == "control.apply")
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
