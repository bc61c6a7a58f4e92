//! `meshsim capacity` as users and CI call it: the search writes its files
//! and ends with the answer, and bad input exits 2.
//!
//! Steps are shortened to 1 s (`--step-duration`) so the searches take
//! seconds; the library scenarios' own durations give the figures in
//! BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ANSWER: &str = "max sustainable rate under SLO = ";

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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshsim-capacity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The rate on the last line, in requests per second.
fn answer_rps(stdout: &str) -> f64 {
    let last = stdout.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix(ANSWER)
        .unwrap_or_else(|| panic!("last line is not the answer: {last:?}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_rate_search_on_smoke_writes_its_files_and_prints_the_answer_last() {
    let out = temp_dir("rate");
    let output = meshsim(&[
        "capacity",
        "scenarios/library/smoke.toml",
        "--slo",
        "p(99)<250ms",
        "--step-duration",
        "1s",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let rate = answer_rps(&text);

    let summary = json(&out.join("capacity.json"));
    assert_eq!(summary["bound"], "bracketed", "{text}");
    assert_eq!(summary["max_rate_rps"].as_f64(), Some(rate));
    // Doubling went well past the scenario's own 100 rps before p99 broke.
    assert!(rate > 800.0, "{text}");
    let steps = summary["steps"].as_array().unwrap();
    let offered = |s: &serde_json::Value| s["offered_rps"].as_f64().unwrap();
    let passed = |s: &serde_json::Value| s["passed"].as_bool().unwrap();
    assert_eq!(offered(&steps[0]), 100.0, "the first step is the scenario");
    // The answer is bracketed: it passed, and a rate within 1 % above failed.
    assert!(steps.iter().any(|s| passed(s) && offered(s) == rate));
    let lowest_failure = steps
        .iter()
        .filter(|s| !passed(s))
        .map(offered)
        .fold(f64::INFINITY, f64::min);
    assert!(
        lowest_failure > rate && lowest_failure <= rate * 1.01,
        "{text}"
    );
    // Every failure names the threshold and the measured p99 above it.
    for step in steps.iter().filter(|s| !passed(s)) {
        let verdicts = step["verdicts"].to_string();
        assert!(
            verdicts.contains("FAIL p(99)<250ms: measured"),
            "{verdicts}"
        );
        assert!(step["p99_ms"].as_f64().unwrap() >= 250.0);
    }

    let csv = std::fs::read_to_string(out.join("capacity.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("x,axis,throughput_rps,p99_ms,error_rate,passed,slo")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), steps.len(), "one row per step");
    assert!(rows.iter().all(|r| r.contains(",rate_rps,")));
    let svg = std::fs::read_to_string(out.join("capacity.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("SLO p99 250 ms"));
}

#[test]
fn a_replica_sweep_fits_the_usl_and_names_the_fewest_replicas() {
    let out = temp_dir("replicas");
    let output = meshsim(&[
        "capacity",
        "scenarios/library/smoke.toml",
        "--slo",
        "p(99)<250ms",
        "--slo",
        "error_rate<1%",
        "--vary",
        "replicas:registry",
        "--sizes",
        "1,2,3",
        "--step-duration",
        "1s",
        "--precision",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("fewest replicas of registry meeting the SLO at 100.0 rps = 1"));
    answer_rps(&text);
    let summary = json(&out.join("capacity.json"));
    let sizes = summary["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 3);
    let usl = &summary["usl"];
    for key in ["lambda", "sigma", "kappa", "r_squared"] {
        assert!(usl[key].is_number(), "usl lacks {key}: {usl}");
    }
    // Each step ran the size it claims: three registry replicas mean three
    // searches, each starting at the scenario's own rate.
    let firsts: Vec<u64> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["factor"] == 1.0)
        .map(|s| s["size"].as_u64().unwrap())
        .collect();
    assert_eq!(firsts, [1, 2, 3]);
    let csv = std::fs::read_to_string(out.join("capacity.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains(",replicas,")).count(), 3);
}

#[test]
fn bad_input_exits_2_with_a_reason() {
    let out = temp_dir("bad");
    let out = out.to_str().unwrap();
    let smoke = "scenarios/library/smoke.toml";
    for (args, reason) in [
        (vec!["--slo", "p(99)<250"], "needs a unit"),
        (vec!["--slo", "speed<3"], "unknown metric"),
        (
            vec!["--slo", "p(99)<1s", "--vary", "replicas:nope"],
            "no service `nope`",
        ),
        (
            vec!["--slo", "p(99)<1s", "--vary", "colour"],
            "unknown --vary",
        ),
        (
            vec!["--slo", "p(99)<1s", "--step-duration", "soon"],
            "--step-duration",
        ),
        (vec!["--slo", "p(99)<1s", "--precision", "2"], "--precision"),
    ] {
        let mut full = vec!["capacity", smoke, "--out", out];
        full.extend(args);
        let output = meshsim(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{full:?}: {stderr}");
        assert!(stderr.contains(reason), "{full:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let missing = meshsim(&["capacity", "nope.toml", "--slo", "p(99)<1s"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn peak_plans_replicas_per_service_and_names_the_bottleneck() {
    let out = temp_dir("peak");
    let output = meshsim(&[
        "capacity",
        "scenarios/fixtures/capacity-graph.toml",
        "--slo",
        "p(99)<100ms",
        "--slo",
        "error_rate<1%",
        "--peak",
        "800",
        "--step-duration",
        "2s",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("replicas for 800.0 rps under SLO = "),
        "{text}"
    );
    let plan = json(&out.join("plan.json"));
    let replicas = &plan["replicas"];
    // db: 800 rps × 1.125 visits × 4 ms = 3.6 busy slots; at most 90 %
    // busy is 4 slots, 2 replicas of 2; a run at 1 replica (ρ = 1.8)
    // could never pass.
    assert!(replicas["db"].as_u64().unwrap() >= 2, "{plan}");
    assert!(replicas["front"].as_u64().unwrap() >= 2, "{plan}");
    let last = plan["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(last["step"]["passed"], true, "{plan}");
    assert_eq!(plan["bottleneck"], "db", "{plan}");
    // The rate search names the same graph's bottleneck at its own counts.
    let search = meshsim(&[
        "capacity",
        "scenarios/fixtures/capacity-graph.toml",
        "--slo",
        "p(99)<100ms",
        "--step-duration",
        "1s",
        "--steps-max",
        "1",
        "--out",
        temp_dir("peak-search").to_str().unwrap(),
    ]);
    assert!(
        stdout(&search)
            .contains("bottleneck db (demand 4.500 ms of 2 slots per request: busy at 444.4 rps"),
        "{}",
        stdout(&search)
    );
}
