//! A run's report set, end to end: `meshsim run --out D` writes every file
//! of the DESIGN §6 contract, `report.html` loads nothing from outside, and
//! `meshsim report D` rebuilds the derived files from the data files alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Data files: what a run measured. Everything else is derived from them.
const DATA: [&str; 4] = [
    "summary.json",
    "timeseries.csv",
    "latency.hlog",
    "events.json",
];

/// Derived files: charts, the HTML report and JUnit.
const DERIVED: [&str; 7] = [
    "latency.svg",
    "throughput.svg",
    "spectrum.svg",
    "routes.svg",
    "certs.svg",
    "report.html",
    "junit.xml",
];

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
    let dir = std::env::temp_dir().join(format!("meshsim-reports-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs smoke with a 5 s phase into a fresh directory.
fn run_smoke(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let text = std::fs::read_to_string(workspace().join("scenarios/library/smoke.toml")).unwrap();
    let scenario = dir.join("smoke.toml");
    std::fs::write(
        &scenario,
        text.replace("duration = \"20s\"", "duration = \"5s\""),
    )
    .unwrap();
    let out = dir.join("out");
    let output = meshsim(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    out
}

/// Every way an HTML page can pull in something from elsewhere, and the
/// one form each may take here (a fragment or inline data).
fn external_references(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut found = Vec::new();
    for (needle, allowed) in [
        ("src=", &["\"#", "'#", "\"data:", "'data:"][..]),
        ("href=", &["\"#", "'#", "\"data:", "'data:"][..]),
        ("url(", &["#", "\"#", "'#", "data:", "\"data:"][..]),
        ("@import", &[][..]),
        ("<link", &[][..]),
        ("<iframe", &[][..]),
        ("<object", &[][..]),
        ("<embed", &[][..]),
    ] {
        for (at, _) in lower.match_indices(needle) {
            let rest = lower[at + needle.len()..].trim_start();
            if !allowed.iter().any(|a| rest.starts_with(a)) {
                found.push(lower[at..(at + 60).min(lower.len())].to_owned());
            }
        }
    }
    for scheme in ["http://", "https://", "//cdn", "ftp://"] {
        for (at, _) in lower.match_indices(scheme) {
            // An XML namespace names a vocabulary; nothing is fetched.
            let before = &lower[at.saturating_sub(8)..at];
            if !before.contains("xmlns") {
                found.push(lower[at..(at + 60).min(lower.len())].to_owned());
            }
        }
    }
    found
}

#[test]
fn a_run_writes_the_whole_report_set_and_the_html_stands_alone() {
    let out = run_smoke("run");
    for name in DATA.iter().chain(&DERIVED) {
        let path = out.join(name);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0, "{} is missing or empty", path.display());
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(external_references(&html), Vec::<String>::new());
    // The charts are inline, not linked.
    assert!(html.matches("<svg").count() >= 5, "charts are not inlined");
    assert!(
        html.contains("meshsim run"),
        "the reproduce command is shown"
    );
    for name in DERIVED.iter().filter(|n| n.ends_with(".svg")) {
        let svg = std::fs::read_to_string(out.join(name)).unwrap();
        assert_eq!(external_references(&svg), Vec::<String>::new(), "{name}");
    }
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite") && junit.contains("p99_under_250ms"));
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    assert!(csv.lines().count() > 5, "{csv}");
}

#[test]
fn the_external_reference_check_catches_what_it_claims_to() {
    let clean = "<svg xmlns=\"http://www.w3.org/2000/svg\"><a href=\"#x\">x</a></svg>";
    assert_eq!(external_references(clean), Vec::<String>::new());
    for dirty in [
        "<script src=\"https://cdn.example/x.js\"></script>",
        "<link rel=stylesheet href=style.css>",
        "<img src='logo.png'>",
        "<style>body { background: url(https://x/y.png) }</style>",
        "<style>@import 'x.css';</style>",
        "see https://example.com",
    ] {
        assert!(!external_references(dirty).is_empty(), "{dirty}");
    }
}

#[test]
fn report_rebuilds_the_derived_files_from_the_data_alone() {
    let out = run_smoke("rebuild");
    let read = |name: &str| std::fs::read(out.join(name)).unwrap();
    let before: Vec<Vec<u8>> = DERIVED.iter().map(|n| read(n)).collect();
    for name in DERIVED {
        std::fs::remove_file(out.join(name)).unwrap();
    }
    let output = meshsim(&["report", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(stdout.lines().count(), DERIVED.len(), "{stdout}");
    let after: Vec<Vec<u8>> = DERIVED.iter().map(|n| read(n)).collect();
    for ((name, a), b) in DERIVED.iter().zip(&after).zip(&before) {
        assert!(a == b, "{name} differs after the rebuild");
    }
}

#[test]
fn report_on_a_directory_without_a_run_exits_2() {
    let empty = temp_dir("empty");
    let output = meshsim(&["report", empty.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("summary.json"), "{stderr}");
    let output = meshsim(&["report", "/nonexistent/meshsim"]);
    assert_eq!(output.status.code(), Some(2));
}
