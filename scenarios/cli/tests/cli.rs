//! The `meshsim` binary as users and CI call it (DESIGN §6 contract).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("meshsim runs")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshsim-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// smoke.toml with the workload shortened, for fast real-mode tests.
fn short_smoke(dir: &Path, seconds: u32) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("scenarios/library/smoke.toml")).unwrap();
    let path = dir.join("smoke-short.toml");
    std::fs::write(
        &path,
        text.replace("duration = \"20s\"", &format!("duration = \"{seconds}s\"")),
    )
    .unwrap();
    path
}

#[test]
fn smoke_passes_in_the_simulator_with_the_contracted_summary() {
    let out = temp_dir("smoke-sim");
    let output = meshsim(&[
        "run",
        "scenarios/library/smoke.toml",
        "--seed",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let s = summary(&out);
    assert_eq!(s["mode"], "sim");
    assert_eq!(s["verdict"], "pass");
    let total = s["requests"]["total"].as_u64().unwrap();
    let ok = s["requests"]["ok"].as_u64().unwrap();
    assert!(
        total >= 1000 && ok * 100 >= total * 95,
        "total {total}, ok {ok}"
    );
    let hash = s["trace_hash"].as_str().unwrap();
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    for key in [
        "sim_seconds",
        "wall_seconds",
        "latency_ms",
        "checks",
        "scenario",
        "seed",
    ] {
        assert!(!s[key].is_null(), "summary lacks {key}");
    }
    assert_otlp_traces_form_trees(&out);
    let metrics = std::fs::read_to_string(out.join("metrics.prom")).expect("metrics.prom");
    assert!(
        metrics.contains("response_total{pod=\"gateway-0\",direction=\"inbound\",authority=\"gateway\",dst_service=\"gateway\",dst_namespace=\"rec\",tls=\"true\",client_id=\"spiffe://rec.meshsim/ns/rec/sa/loadgen\",route=\"default\",classification=\"success\",status_code=\"200\"}"),
        "{metrics}"
    );
}

/// `traces.otlp.json` is OTLP JSON (resourceSpans → scopeSpans → spans,
/// hex ids, nanosecond strings at simulated time), and a request's spans
/// form one tree across the services it crossed: one root (the load
/// generator's outbound hop), every other span's parent in the same trace.
fn assert_otlp_traces_form_trees(out: &Path) {
    use std::collections::{BTreeMap, BTreeSet};
    let text = std::fs::read_to_string(out.join("traces.otlp.json")).expect("traces.otlp.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("OTLP JSON");
    // trace id → span id → (parent, service)
    let mut traces: BTreeMap<String, BTreeMap<String, (Option<String>, String)>> = BTreeMap::new();
    for resource in doc["resourceSpans"].as_array().expect("resourceSpans") {
        let service = resource["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .expect("service.name")
            .to_owned();
        for scope in resource["scopeSpans"].as_array().unwrap() {
            for span in scope["spans"].as_array().unwrap() {
                let trace_id = span["traceId"].as_str().unwrap();
                let span_id = span["spanId"].as_str().unwrap();
                assert_eq!(trace_id.len(), 32, "{span}");
                assert_eq!(span_id.len(), 16, "{span}");
                let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
                let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
                // Simulated time: the simulation's epoch, 2026-01-01T00:00:00Z.
                assert!(start >= 1_767_225_600_000_000_000 && end >= start, "{span}");
                assert!(span["status"]["code"].is_u64(), "{span}");
                assert!(matches!(span["kind"].as_u64(), Some(2 | 3)), "{span}");
                let parent = span["parentSpanId"].as_str().map(str::to_owned);
                traces
                    .entry(trace_id.to_owned())
                    .or_default()
                    .insert(span_id.to_owned(), (parent, service.clone()));
            }
        }
    }
    let is_tree = |spans: &BTreeMap<String, (Option<String>, String)>| {
        let roots = spans
            .values()
            .filter(|(parent, _)| parent.as_ref().is_none_or(|p| !spans.contains_key(p)))
            .count();
        roots == 1
    };
    let services_of = |spans: &BTreeMap<String, (Option<String>, String)>| -> BTreeSet<String> {
        spans.values().map(|(_, service)| service.clone()).collect()
    };
    // A load request: loadgen → gateway → … → a database, one tree.
    let request = traces
        .values()
        .filter(|spans| {
            spans
                .values()
                .any(|(parent, s)| s == "loadgen" && parent.is_none())
        })
        .find(|spans| {
            let services = services_of(spans);
            services.contains("gateway") && services.iter().any(|s| s.ends_with("-db"))
        })
        .expect("a load request whose spans reach a database");
    assert!(is_tree(request), "{request:?}");
    assert!(services_of(request).len() >= 4, "{request:?}");
    // Settlement's saga (not a load request) crosses registry and its
    // database in one tree too.
    let saga = traces
        .values()
        .find(|spans| {
            let services = services_of(spans);
            services.contains("registry") && services.contains("registry-db")
        })
        .expect("a trace across registry and registry-db");
    assert!(is_tree(saga), "{saga:?}");
    let trees = traces.values().filter(|spans| is_tree(spans)).count();
    assert!(
        trees * 100 >= traces.len() * 99,
        "{trees} of {} traces are one tree",
        traces.len()
    );
}

#[test]
fn the_seed_decides_the_trace_hash() {
    let hash = |seed: &str, name: &str| {
        let out = temp_dir(name);
        let output = meshsim(&[
            "run",
            "scenarios/library/smoke.toml",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(output.status.success());
        summary(&out)["trace_hash"].as_str().unwrap().to_owned()
    };
    let first = hash("1", "seed1a");
    assert_eq!(first, hash("1", "seed1b"), "same seed, same trace");
    assert_ne!(first, hash("2", "seed2"), "different seeds must differ");
}

#[test]
fn check_determinism_passes_for_smoke() {
    let output = meshsim(&[
        "check-determinism",
        "scenarios/library/smoke.toml",
        "--seed",
        "3",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("deterministic"));
}

#[test]
fn real_mode_runs_the_same_scenario_on_sockets() {
    let dir = temp_dir("smoke-real");
    let scenario = short_smoke(&dir, 3);
    let out = dir.join("out");
    let output = meshsim(&[
        "run",
        scenario.to_str().unwrap(),
        "--real",
        // Real sockets on a shared CI machine: this test is about behaviour
        // (the same topology and checks run on sockets), not speed.
        "--set",
        "checks.p99_under_250ms.slo=p(99) < 5s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let s = summary(&out);
    assert_eq!(s["mode"], "real");
    assert_eq!(s["verdict"], "pass");
    assert!(s["requests"]["ok"].as_u64().unwrap() > 200);
}

/// `run --real --insecure-derived-keys`, as `up` has it: the run passes,
/// every process warns, the reproduce line repeats the flag, and it
/// refuses to go with `--netns` (exit 2: its keys are public).
#[test]
fn real_mode_accepts_insecure_derived_keys_with_a_warning() {
    let dir = temp_dir("smoke-real-derived");
    let scenario = short_smoke(&dir, 2);
    let out = dir.join("out");
    let output = meshsim(&[
        "run",
        scenario.to_str().unwrap(),
        "--real",
        "--insecure-derived-keys",
        "--set",
        "checks.p99_under_250ms.slo=p(99) < 5s",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("WARNING: --insecure-derived-keys"),
        "{output:?}"
    );
    assert!(
        stdout.contains("--real --insecure-derived-keys"),
        "{stdout}"
    );
    let both = meshsim(&[
        "run",
        scenario.to_str().unwrap(),
        "--real",
        "--insecure-derived-keys",
        "--netns",
    ]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
}

#[test]
fn an_unknown_field_exits_2_naming_file_and_line() {
    let dir = temp_dir("unknown-field");
    let text = std::fs::read_to_string(workspace().join("scenarios/library/smoke.toml")).unwrap();
    let path = dir.join("typo.toml");
    std::fs::write(
        &path,
        text.replace("replicas = 2", "replicas = 2\nreplicaz = 3"),
    )
    .unwrap();
    let output = meshsim(&["run", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = text.lines().position(|l| l == "replicas = 2").unwrap() + 2;
    assert!(stderr.contains(&format!("typo.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("replicaz"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

/// Runs `scenario` (a path under the workspace) into a fresh directory and
/// checks its `junit.xml` with a real XML parser: one `<testcase>` per check
/// of `summary.json`, named after it, and a failed check's detail as its
/// `<failure>` message. Returns whether the run passed.
fn junit_matches_summary(scenario: &str, label: &str) -> bool {
    let dir = temp_dir(label);
    let out = dir.to_str().unwrap();
    let output = meshsim(&["run", scenario, "--out", out]);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{scenario}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = summary(&dir);
    let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let document = roxmltree::Document::parse(&xml)
        .unwrap_or_else(|e| panic!("{scenario}: junit.xml is not XML: {e}"));
    let cases: Vec<roxmltree::Node<'_, '_>> = document
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let checks = summary["checks"].as_array().unwrap();
    assert_eq!(
        cases.len(),
        checks.len(),
        "{scenario}: one testcase per check"
    );
    for (case, check) in cases.iter().zip(checks) {
        assert_eq!(case.attribute("name"), check["name"].as_str(), "{scenario}");
        let failure = case.children().find(|n| n.has_tag_name("failure"));
        if check["passed"].as_bool().unwrap() {
            assert!(failure.is_none(), "{scenario}: {check}");
        } else {
            let message = failure.and_then(|f| f.attribute("message"));
            assert_eq!(message, check["detail"].as_str(), "{scenario}: {check}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    output.status.code() == Some(0)
}

#[test]
fn junit_is_xml_with_one_testcase_per_check_and_the_detail_on_failure() {
    assert!(junit_matches_summary(
        "scenarios/library/config-rollout.toml",
        "junit-rollout"
    ));
    // A failing run: the abort detail (quotes, angle brackets) must survive.
    let dir = temp_dir("junit-failing");
    let text = std::fs::read_to_string(workspace().join("scenarios/library/config-rollout.toml"))
        .unwrap()
        .replace(
            "slo = \"p(99) < 100ms\"",
            "slo = \"p(99) < 1ms\"\nabort_on_fail = true",
        );
    let failing = dir.join("rollout-failing.toml");
    std::fs::write(&failing, text).unwrap();
    assert!(!junit_matches_summary(
        failing.to_str().unwrap(),
        "junit-failing-out"
    ));
}

/// Every library scenario, as CI runs it: it passes and its junit.xml is
/// XML with one testcase per check. Slow (rec-peak alone is minutes), so CI
/// runs it in release: `cargo test --release -p cli --test cli -- --ignored`.
#[test]
#[ignore = "runs every library scenario; minutes in release (CI runs it with --ignored)"]
fn every_library_scenario_passes_with_parseable_junit() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("scenarios/library"))
        .unwrap()
        .map(|e| e.unwrap().path())
        // Directories beside a scenario hold the YAML it imports.
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_stem().unwrap().to_str().unwrap().to_owned();
        assert!(
            junit_matches_summary(file.to_str().unwrap(), &format!("junit-{name}")),
            "{name} failed"
        );
    }
}

#[test]
fn version_completions_and_man_page() {
    let version = meshsim(&["--version"]);
    let text = String::from_utf8_lossy(&version.stdout);
    let revision = text
        .trim()
        .strip_prefix(concat!("meshsim ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("version and revision: {text}"));
    // The build's revision (`cli/build.rs`): `git rev-parse HEAD`, a
    // `MESHSIM_REVISION` a release set, or `unknown` outside a checkout.
    assert!(
        revision == "unknown"
            || (revision.len() >= 7 && revision.chars().all(|c| c.is_ascii_hexdigit())),
        "{revision}"
    );
    for (shell, marker) in [
        ("bash", "_meshsim()"),
        ("zsh", "#compdef meshsim"),
        ("fish", "complete -c meshsim"),
    ] {
        let script = meshsim(&["completions", shell]);
        assert!(script.status.success());
        let script = String::from_utf8_lossy(&script.stdout);
        assert!(
            script.contains(marker) && script.contains("load"),
            "{shell}: {script}"
        );
    }
    let man = meshsim(&["man"]);
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.contains(".TH meshsim 1") && man.contains("completions"),
        "{man}"
    );
    let bad_filter = meshsim(&["--log", "[[[", "validate", "scenarios/library/smoke.toml"]);
    assert_eq!(bad_filter.status.code(), Some(2));
}
