//! Exploration at CI scale: streamed `results.jsonl`, one JUnit testcase
//! per seed, shards that merge into exactly one unsharded run, and an
//! interrupted exploration that keeps what it finished.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

/// A fixture whose seeds split into passing and failing ones (about half).
const FIXTURE: &str = "scenarios/fixtures/partition-window.toml";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshsim"));
    command.args(args).current_dir(workspace());
    command
}

fn meshsim(args: &[&str]) -> Output {
    command(args).output().expect("meshsim runs")
}

fn spawn(args: &[&str]) -> Child {
    command(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("meshsim starts")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshsim-shards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", name))
}

/// Replaces the number after every `key` with `#`: wall times are the one
/// thing a merge may not reproduce.
fn without_numbers_after(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        out += &rest[..at + key.len()];
        rest = &rest[at + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || ".eE+-".contains(c)))
            .unwrap_or(rest.len());
        out.push('#');
        rest = &rest[end..];
    }
    out + rest
}

fn without_wall_times(text: &str) -> String {
    let text = without_numbers_after(text, "\"wall_seconds\": ");
    let text = without_numbers_after(&text, "\"wall_seconds\":");
    without_numbers_after(&text, "time=\"")
}

/// `results.jsonl` lines in seed order (a run writes them as seeds finish).
fn lines_by_seed(text: &str) -> Vec<String> {
    let mut lines: Vec<(u64, String)> = text
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            (value["seed"].as_u64().unwrap(), without_wall_times(line))
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, line)| line).collect()
}

#[test]
fn four_shards_merged_equal_one_unsharded_explore() {
    let dir = temp_dir("merge");
    let out = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let seeds = "1..9";
    let shards: Vec<String> = (1..=4).map(|i| out(&format!("shard-{i}"))).collect();
    let children: Vec<Child> = shards
        .iter()
        .enumerate()
        .map(|(i, shard_out)| {
            let shard = format!("{}/4", i + 1);
            spawn(&[
                "explore", FIXTURE, "--seeds", seeds, "--shard", &shard, "--jobs", "1", "--out",
                shard_out,
            ])
        })
        .collect();
    let whole = meshsim(&[
        "explore",
        FIXTURE,
        "--seeds",
        seeds,
        "--jobs",
        "2",
        "--out",
        &out("whole"),
    ]);
    let stdout = String::from_utf8_lossy(&whole.stdout);
    assert_eq!(whole.status.code(), Some(1), "some seeds fail: {stdout}");
    for mut child in children {
        let code = child.wait().unwrap().code();
        assert!(matches!(code, Some(0 | 1)), "a shard exited {code:?}");
    }
    let mut args = vec!["explore", "merge"];
    args.extend(shards.iter().map(String::as_str));
    let merged_dir = out("merged");
    args.extend(["--out", &merged_dir]);
    let merged = meshsim(&args);
    assert_eq!(
        merged.status.code(),
        whole.status.code(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );

    let (whole_dir, merged_dir) = (dir.join("whole"), dir.join("merged"));
    for name in [
        "summary.json",
        "junit.xml",
        "failing-seeds.txt",
        "explore.json",
    ] {
        assert_eq!(
            without_wall_times(&read(&merged_dir, name)),
            without_wall_times(&read(&whole_dir, name)),
            "{name} of the merge differs from the unsharded run's"
        );
    }
    assert_eq!(
        lines_by_seed(&read(&merged_dir, "results.jsonl")),
        lines_by_seed(&read(&whole_dir, "results.jsonl")),
    );

    // What the files say, beyond being equal.
    let summary: serde_json::Value =
        serde_json::from_str(&read(&whole_dir, "summary.json")).unwrap();
    assert_eq!(summary["seeds_finished"], 8);
    assert_eq!(summary["seeds_missing"], 0);
    assert_eq!(summary["verdict"], "fail");
    let failing = read(&whole_dir, "failing-seeds.txt");
    assert_eq!(
        failing.lines().count() as u64,
        summary["failed"].as_u64().unwrap()
    );
    assert!(
        failing.starts_with(&format!("meshsim run {FIXTURE} --seed ")),
        "{failing}"
    );
    assert_eq!(
        summary["scenario_sha256"].as_str().unwrap().len(),
        64,
        "{summary}"
    );
    let junit = read(&whole_dir, "junit.xml");
    let doc = roxmltree::Document::parse(&junit).expect("junit.xml is XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 8, "one testcase per seed");
    let failures = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .count() as u64;
    assert_eq!(failures, summary["failed"].as_u64().unwrap());
    for line in read(&whole_dir, "results.jsonl").lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["trace_hash"].as_str().unwrap().len(), 64);
        if line["verdict"] == "fail" {
            assert_eq!(line["failed_checks"][0]["name"], "errors_under_1pct");
            assert!(line["shrink"].as_str().unwrap().contains("meshsim shrink"));
        }
    }
    // Position 0 of the range (seed 1) and every failing seed are re-run.
    assert!(summary["rechecked"].as_u64().unwrap() >= summary["failed"].as_u64().unwrap());

    // Shards of another scenario are not merged into these.
    let other = out("other");
    let other_run = meshsim(&[
        "explore",
        "scenarios/fixtures/planted-bug.toml",
        "--seeds",
        seeds,
        "--shard",
        "4/4",
        "--jobs",
        "1",
        "--out",
        &other,
    ]);
    assert!(matches!(other_run.status.code(), Some(0 | 1)));
    let refused = meshsim(&[
        "explore",
        "merge",
        &shards[0],
        &shards[1],
        &shards[2],
        &other,
        "--out",
        &out("bad"),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not comparable"), "{stderr}");
    // Three of four shards: the merge says seeds are missing (exit 4).
    let partial = meshsim(&[
        "explore",
        "merge",
        &shards[0],
        &shards[1],
        &shards[2],
        "--out",
        &out("partial"),
    ]);
    assert_eq!(partial.status.code(), Some(4));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_keeps_every_finished_seed_and_exits_4() {
    let dir = temp_dir("sigterm");
    let out = dir.join("explore");
    let stderr_path = dir.join("stderr.txt");
    let mut child = command(&[
        "explore",
        FIXTURE,
        "--seeds",
        "1..200",
        "--jobs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&stderr_path).unwrap())
    .spawn()
    .expect("meshsim starts");
    let results = out.join("results.jsonl");
    // Wait for the first streamed line (one seed: seconds).
    let mut waited = 0;
    while std::fs::read_to_string(&results).map_or(true, |t| t.lines().count() < 1) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
        assert!(waited < 1200, "no seed finished in 120 s");
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(4),
        "interrupted ({status:?}); stderr: {}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    let lines = read(&out, "results.jsonl").lines().count();
    assert!((1..199).contains(&lines), "{lines} lines");
    let summary: serde_json::Value = serde_json::from_str(&read(&out, "summary.json")).unwrap();
    assert_eq!(summary["seeds_finished"].as_u64(), Some(lines as u64));
    assert_eq!(summary["seeds_missing"].as_u64(), Some(199 - lines as u64));
    let junit = read(&out, "junit.xml");
    assert_eq!(junit.matches("<testcase ").count(), lines);
    let _ = std::fs::remove_dir_all(&dir);
}
