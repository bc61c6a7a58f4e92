//! `meshsim diff`: two smoke runs at different rates, compared from their
//! saved files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

fn meshsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("meshsim runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshsim-diff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// smoke for 5 s at `rate` requests per second, into `out`.
fn smoke(rate: u32, out: &Path) {
    let rate = format!("workload.steady.rate={rate}");
    let run = meshsim(&[
        "run",
        "scenarios/library/smoke.toml",
        "--set",
        "workload.steady.duration=5s",
        "--set",
        &rate,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}

#[test]
fn diff_reports_the_change_and_fails_on_a_crossed_threshold() {
    let dir = temp_dir("rates");
    let (fast, slow) = (dir.join("rate-200"), dir.join("rate-50"));
    smoke(200, &fast);
    smoke(50, &slow);
    let (fast_s, slow_s) = (fast.to_str().unwrap(), slow.to_str().unwrap());
    let report = dir.join("report");

    // Throughput fell by three quarters: `rate < -10%` is crossed.
    let diff = meshsim(&[
        "diff",
        fast_s,
        slow_s,
        "--fail-on",
        "rate < -10%",
        "--fail-on",
        "p(99) > +1000%",
        "--out",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("NOT COMPARABLE: scenario_sha256"),
        "{stdout}"
    );
    assert!(stdout.contains("CROSSED  rate < -10%  on all"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("diff.json")).unwrap()).unwrap();
    assert_eq!(json["comparable"], false);
    assert_eq!(json["verdict"], "fail");
    let routes = json["routes"].as_array().unwrap();
    let names: Vec<&str> = routes
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["all", "order", "quote"]);
    let throughput = routes[0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "throughput")
        .unwrap();
    let change = throughput["change_pct"].as_f64().unwrap();
    assert!(
        (-80.0..-70.0).contains(&change),
        "throughput change {change}%"
    );
    let requests = routes[0]["baseline_requests"].as_u64().unwrap();
    assert!(
        (800..1200).contains(&requests),
        "{requests} requests at 200/s for 5 s"
    );
    // p(99) moved by far less than +1000%: only the throughput threshold.
    let crossed: Vec<&str> = json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["crossed"] == true)
        .map(|t| t["expression"].as_str().unwrap())
        .collect();
    assert!(crossed.iter().all(|e| *e == "rate < -10%"), "{crossed:?}");
    assert!(json["checks"].as_array().unwrap().len() >= 2);
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("Compared with the baseline"));

    // A run against itself: comparable, nothing moved, exit 0.
    let same = meshsim(&[
        "diff",
        fast_s,
        fast_s,
        "--fail-on",
        "rate < -10%",
        "--fail-on",
        "p(99) > +10%",
        "--require-comparable",
    ]);
    let stdout = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("comparable: same scenario"), "{stdout}");

    // Bad input: a threshold that is not a change, a missing directory,
    // runs that are not comparable under --require-comparable.
    let bad = meshsim(&["diff", fast_s, slow_s, "--fail-on", "p(99) > 10%"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("signed"));
    let missing = meshsim(&["diff", fast_s, "/nonexistent/meshsim-run"]);
    assert_eq!(missing.status.code(), Some(2));
    let strict = meshsim(&["diff", fast_s, slow_s, "--require-comparable"]);
    assert_eq!(strict.status.code(), Some(2));

    // Provenance: what summary.json records, and a replay of another
    // scenario (other --set values) refused before it runs.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fast.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["meshsim_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(summary["scenario_sha256"].as_str().unwrap().len(), 64);
    assert!(!summary["source_revision"].as_str().unwrap().is_empty());
    assert!(summary["platform"].as_str().unwrap().contains('-'));
    let refused = meshsim(&[
        "check-determinism",
        "scenarios/library/smoke.toml",
        "--set",
        "workload.steady.duration=5s",
        "--set",
        "workload.steady.rate=50",
        "--against",
        fast_s,
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ran a different scenario"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
