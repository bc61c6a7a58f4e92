//! `meshsim import isotope`: an isotope topology becomes a scenario that
//! runs and passes, and every file in `tests/isotope-corpus/` is refused
//! with the `file:line:column` and message its first line states
//! (`# expect: error LINE:COLUMN: MESSAGE`), exit 2, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .output()
        .unwrap()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn an_imported_isotope_tree_runs_in_the_simulator_and_passes() {
    let topology = workspace().join("examples/isotope/tree.yaml");
    let imported = meshsim(&["import", "isotope", topology.to_str().unwrap()]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("isotope-tree");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("tree.toml");
    std::fs::write(&scenario, &imported.stdout).unwrap();
    let out = dir.join("run");
    let run = meshsim(&[
        "run",
        scenario.to_str().unwrap(),
        "--set",
        "workload.steady.duration=5s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let requests = summary["requests"]["total"].as_u64().unwrap_or_default();
    assert!(requests >= 400, "{summary}");
    // The tree's deepest path: gateway 1 ms, svc2 3 ms, then a 1 ms leaf,
    // with svc1 (2 ms + 0.5 ms) before: at least 7.5 ms of service time.
    let p50_ms = summary["latency_ms"]["p50"].as_f64().unwrap();
    assert!(
        p50_ms >= 7.5,
        "p50 {p50_ms} ms is below the tree's service time"
    );
}

#[test]
fn every_malformed_isotope_file_is_refused_where_it_is_wrong() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/isotope-corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 8);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: error "))
            .unwrap_or_else(|| panic!("{}: no `# expect: error` line", file.display()));
        let output = meshsim(&["import", "isotope", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {stderr}",
            file.display()
        );
        let located = format!("{}:{expected}", file.display());
        assert!(
            stderr.contains(&located),
            "{}: expected `{located}` in:\n{stderr}",
            file.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
