//! Certificate lifecycle end to end in the simulator, on small versions of
//! the library scenarios: a root rotation under load, a CA outage longer
//! than the leaf lifetime, and replay of the TLS bytes themselves.

use std::path::Path;

use engine::{RunOutput, run_sim};
use reports::Check;
use seam::Trace;
use spec::Scenario;

/// Two tiers (edge → backend ×2), 20 s leaves, load for `seconds`, then
/// `extra` (faults and checks).
fn scenario(name: &str, seconds: u32, extra: &str) -> Scenario {
    let text = format!(
        r#"
name = "{name}"
[sim]
link_latency_min = "1ms"
link_latency_max = "2ms"
[mesh]
leaf_ttl = "20s"
[[services]]
name = "gateway"
app = "edge"
service_time = {{ distribution = "constant", mean = "1ms" }}
[[services]]
name = "registry"
app = "backend"
replicas = 2
service_time = {{ distribution = "constant", mean = "1ms" }}
[workload]
target = "gateway"
warmup = "2s"
connections = 4
[[workload.phases]]
name = "steady"
duration = "{seconds}s"
arrival = {{ kind = "poisson", rate = 5 }}
[[workload.mix]]
operation = "quote"
weight = 1
{extra}
"#
    );
    Scenario::parse(Path::new("identity.toml"), &text).unwrap()
}

fn run(scenario: &Scenario) -> RunOutput {
    run_sim(
        scenario,
        seam::Seed::new(1),
        Trace::keeping_kinds(&["cert.", "ca.", seam::event::FAULT, "tls."]),
    )
    .unwrap()
}

fn check<'a>(output: &'a RunOutput, name: &str) -> &'a Check {
    output
        .summary
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {:?}", output.summary.checks))
}

const SECURITY_CHECKS: &str = r#"
[[checks]]
name = "no_expired_cert_accepted"
property = "no_expired_cert_accepted"
[[checks]]
name = "no_plaintext_accepted"
property = "no_plaintext_accepted"
"#;

#[test]
fn a_root_rotation_under_load_fails_no_request() {
    let extra = format!(
        r#"
[[faults]]
at = "30s"
action = "rotate_root"
[[checks]]
name = "rotation"
property = "rotation_no_failed_requests"
within = "10s"
{SECURITY_CHECKS}"#
    );
    let output = run(&scenario("rotation", 130, &extra));
    for name in [
        "rotation",
        "no_expired_cert_accepted",
        "no_plaintext_accepted",
    ] {
        let check = check(&output, name);
        assert!(check.passed, "{name}: {}", check.detail);
    }
    // Every workload now trusts only the new root.
    let events = output.trace.events();
    let bundles: Vec<_> = events
        .iter()
        .filter(|e| e.kind == seam::event::CERT_BUNDLE)
        .collect();
    assert!(bundles.iter().any(|e| e.detail == "roots=2"));
    assert!(bundles.iter().any(|e| e.detail == "roots=1"));
}

#[test]
fn a_ca_outage_longer_than_the_ttl_fails_closed_then_recovers() {
    let extra = format!(
        r#"
[[faults]]
at = "30s"
duration = "60s"
action = "ca_down"
[[checks]]
name = "fails_closed"
property = "fails_closed_when_expired"
[[checks]]
name = "recovered"
property = "identity_recovered"
within = "90s"
{SECURITY_CHECKS}"#
    );
    let output = run(&scenario("outage", 200, &extra));
    for name in [
        "fails_closed",
        "recovered",
        "no_expired_cert_accepted",
        "no_plaintext_accepted",
    ] {
        let check = check(&output, name);
        assert!(check.passed, "{name}: {}", check.detail);
    }
    // The restarted CA recovered its state from its disk: same keys, and
    // serials continue rather than restart at 1.
    let events = output.trace.events();
    let restart = events
        .iter()
        .filter(|e| e.kind == seam::event::CA_START)
        .nth(1)
        .expect("the CA started twice");
    assert!(
        restart.detail.starts_with("recovered=true"),
        "{}",
        restart.detail
    );
    let next_serial: u64 = restart
        .detail
        .split(' ')
        .find_map(|p| p.strip_prefix("next_serial="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(next_serial > 5, "{}", restart.detail);
    let failed = output.summary.requests.failed;
    assert!(failed > 0, "expired certificates must fail requests");
}

#[test]
fn the_identity_checks_fail_when_nothing_exercised_them() {
    // No rotation, no expiry, no operator probes: each check must say so
    // and fail rather than pass vacuously.
    let extra = r#"
[[checks]]
name = "rotation"
property = "rotation_no_failed_requests"
[[checks]]
name = "fails_closed"
property = "fails_closed_when_expired"
"#;
    let output = run(&scenario("idle", 20, extra));
    assert!(!check(&output, "rotation").passed);
    assert!(!check(&output, "fails_closed").passed);
}

#[test]
fn tls_bytes_replay_exactly_and_are_in_the_trace() {
    let scenario = scenario("replay", 10, "");
    let first = run(&scenario);
    let second = run(&scenario);
    let transcripts = |output: &RunOutput| -> Vec<String> {
        output
            .trace
            .events()
            .into_iter()
            .filter(|e| e.kind == seam::event::TLS_TRANSCRIPT)
            .map(|e| format!("{} {}", e.host, e.detail))
            .collect()
    };
    let (a, b) = (transcripts(&first), transcripts(&second));
    assert!(a.len() > 10, "{} handshakes", a.len());
    assert!(a.iter().all(|t| t.contains("ok=true")), "{a:?}");
    assert_eq!(a, b);
    assert_eq!(first.trace.hash_hex(), second.trace.hash_hex());
}
