//! The CI examples cannot run here (no GitHub runner, no cluster), so this
//! parses each as YAML and checks the fields that decide whether they work:
//! the shard expression, the merge, the exit-code policy. The shell lines
//! that compute a shard are run through `sh` to check their arithmetic.

use std::path::{Path, PathBuf};
use std::process::Command;

use saphyr::{LoadableYamlNode, Yaml};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

fn documents(path: &str) -> Vec<Yaml<'static>> {
    let text = std::fs::read_to_string(workspace().join(path)).unwrap();
    let text: &'static str = Box::leak(text.into_boxed_str());
    Yaml::load_from_str(text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn text<'a>(node: &'a Yaml<'_>) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("expected text, found {node:?}"))
}

fn list<'a, 'y>(node: &'a Yaml<'y>) -> &'a Vec<Yaml<'y>> {
    node.as_vec()
        .unwrap_or_else(|| panic!("expected a list, found {node:?}"))
}

/// The one step of `job` whose `run` contains `needle`.
fn step_running<'a, 'y>(job: &'a Yaml<'y>, needle: &str) -> &'a Yaml<'y> {
    let steps = list(&job["steps"]);
    let found: Vec<_> = steps
        .iter()
        .filter(|s| {
            s.as_mapping_get("run")
                .is_some_and(|r| text(r).contains(needle))
        })
        .collect();
    assert_eq!(found.len(), 1, "one step runs `{needle}`");
    found[0]
}

#[test]
fn github_actions_shards_merge_and_publish_junit() {
    let docs = documents("examples/ci/github-actions.yml");
    assert_eq!(docs.len(), 1);
    let jobs = &docs[0]["jobs"];
    let explore = &jobs["explore"];
    let shards: Vec<i64> = list(&explore["strategy"]["matrix"]["shard"])
        .iter()
        .map(|s| s.as_integer().unwrap())
        .collect();
    assert_eq!(
        shards,
        (1..=shards.len() as i64).collect::<Vec<_>>(),
        "shards count from 1"
    );
    assert_eq!(explore["strategy"]["fail-fast"].as_bool(), Some(false));
    let run = text(&step_running(explore, "meshsim explore")["run"]);
    // The shard count is the matrix's own length, so they cannot drift.
    assert!(
        run.contains("--shard ${{ matrix.shard }}/${{ strategy.job-total }}"),
        "{run}"
    );
    assert!(run.contains("--out shard-${{ matrix.shard }}"), "{run}");
    // A finding (exit 1) does not fail the shard; 2, 3, 4 do.
    assert!(
        run.contains("if [ \"$code\" -gt 1 ]; then exit \"$code\"; fi"),
        "{run}"
    );
    let upload = list(&explore["steps"])
        .iter()
        .find(|s| {
            s.as_mapping_get("uses")
                .is_some_and(|u| text(u).starts_with("actions/upload-artifact"))
        })
        .expect("each shard uploads its directory");
    assert_eq!(text(&upload["with"]["path"]), "shard-${{ matrix.shard }}");
    assert_eq!(text(&upload["if"]), "always()");

    let merge = &jobs["merge"];
    assert_eq!(text(&merge["needs"]), "explore");
    assert_eq!(
        text(&merge["if"]),
        "always()",
        "merge even when a shard found a bug"
    );
    let run = text(&step_running(merge, "meshsim explore merge")["run"]);
    assert_eq!(
        run.trim(),
        "./meshsim explore merge shards/shard-* --out merged"
    );
    let download = list(&merge["steps"])
        .iter()
        .find(|s| {
            s.as_mapping_get("with")
                .and_then(|w| w.as_mapping_get("pattern"))
                .is_some()
        })
        .expect("the merge downloads every shard");
    assert_eq!(text(&download["with"]["pattern"]), "shard-*");
    assert_eq!(text(&download["with"]["path"]), "shards");
    let publish = list(&merge["steps"])
        .iter()
        .find(|s| {
            s.as_mapping_get("uses")
                .is_some_and(|u| text(u).contains("junit"))
        })
        .expect("the merged JUnit is published");
    assert_eq!(text(&publish["with"]["report_paths"]), "merged/junit.xml");
    assert_eq!(text(&merge["permissions"]["checks"]), "write");
}

#[test]
fn kubernetes_indexed_job_shards_and_does_not_retry_findings() {
    let docs = documents("examples/k8s/explore-job.yaml");
    let kinds: Vec<&str> = docs.iter().map(|d| text(&d["kind"])).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "Job", "Job"]);
    let job = &docs[1]["spec"];
    assert_eq!(text(&job["completionMode"]), "Indexed");
    let completions = job["completions"].as_integer().unwrap();
    assert!(job["backoffLimitPerIndex"].as_integer().unwrap() >= 1);
    let pod = &job["template"]["spec"];
    // podFailurePolicy requires restartPolicy Never.
    assert_eq!(text(&pod["restartPolicy"]), "Never");
    let container = &list(&pod["containers"])[0];
    let name = text(&container["name"]);

    // Rules apply in order: the first one matching exit 1 must not retry.
    let rules = list(&job["podFailurePolicy"]["rules"]);
    let first_rule_for = |code: i64| {
        rules
            .iter()
            .find(|r| {
                r.as_mapping_get("onExitCodes").is_some_and(|e| {
                    text(&e["operator"]) == "In"
                        && list(&e["values"])
                            .iter()
                            .any(|v| v.as_integer() == Some(code))
                })
            })
            .map(|r| {
                assert_eq!(text(&r["onExitCodes"]["containerName"]), name);
                text(&r["action"])
            })
    };
    assert_eq!(
        first_rule_for(1),
        Some("FailIndex"),
        "a finding is not retried"
    );
    assert_eq!(
        first_rule_for(3),
        Some("FailIndex"),
        "an internal error is not retried"
    );
    assert_eq!(
        first_rule_for(2),
        Some("FailJob"),
        "bad input fails every shard"
    );
    assert_eq!(first_rule_for(4), None, "an interrupted shard is retried");

    // The shard expression, through a real shell: index 3 of 8 is shard 4/8.
    let args = text(&list(&container["args"])[0]);
    assert!(
        args.contains(&format!(
            "--shard $((JOB_COMPLETION_INDEX+1))/{completions}"
        )),
        "{args}"
    );
    let echoed = Command::new("sh")
        .args(["-c", &args.replacen("exec meshsim", "echo", 1)])
        .env("JOB_COMPLETION_INDEX", "3")
        .output()
        .unwrap();
    let echoed = String::from_utf8(echoed.stdout).unwrap();
    assert!(
        echoed.contains(&format!("--shard 4/{completions} ")),
        "{echoed}"
    );
    assert!(
        echoed.trim_end().ends_with("--out /results/shard-4"),
        "{echoed}"
    );

    // The merge waits for every shard's summary, then merges them all.
    let merge = text(&list(&docs[2]["spec"]["template"]["spec"]["containers"][0]["args"])[0]);
    assert!(merge.contains(&format!("-ge {completions} ]")), "{merge}");
    assert!(
        merge.contains("meshsim explore merge /results/shard-* --out /results/merged"),
        "{merge}"
    );
}
