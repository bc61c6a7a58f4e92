//! Every file in `tests/import-corpus/` is Istio, Linkerd or Gateway API
//! YAML that is malformed or uses something meshsim does not model. Its
//! first line says exactly what the import must report:
//! `# expect: error LINE:COLUMN: MESSAGE` (exit 2, never a panic) or
//! `# expect: warning LINE:COLUMN: MESSAGE` (exit 0, and exit 2 with
//! `--strict`). Each is checked through `meshsim import mesh` and through a
//! scenario's `[mesh] import` (`meshsim validate`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import-corpus")
}

fn meshsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `(is_error, "LINE:COLUMN: MESSAGE")` from the file's first line.
fn expectation(file: &Path) -> (bool, String) {
    let text = std::fs::read_to_string(file).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()));
    let (kind, located) = rest.split_once(' ').unwrap();
    assert!(
        kind == "error" || kind == "warning",
        "{}: {kind}",
        file.display()
    );
    (kind == "error", located.to_owned())
}

/// A copy of the corpus scenario that imports `file`.
fn scenario_importing(file: &Path) -> PathBuf {
    let base = std::fs::read_to_string(corpus().join("scenario.toml")).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("import-corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let stem = file.file_stem().unwrap().to_str().unwrap();
    let path = dir.join(format!("{stem}.toml"));
    std::fs::write(
        &path,
        format!(
            "{base}\n[mesh]\nimport = [{:?}]\n",
            file.display().to_string()
        ),
    )
    .unwrap();
    path
}

#[test]
fn every_corpus_file_gives_its_exact_error_or_warning() {
    let scenario = corpus().join("scenario.toml");
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    for file in &files {
        let (is_error, located) = expectation(file);
        let shown = format!("{}:{located}", file.display());
        let args = [
            "import",
            "mesh",
            "--scenario",
            scenario.to_str().unwrap(),
            file.to_str().unwrap(),
        ];
        let output = meshsim(&args);
        let message = stderr(&output);
        assert!(!message.contains("panicked"), "{message}");
        let through_scenario = meshsim(&["validate", scenario_importing(file).to_str().unwrap()]);
        if is_error {
            assert_eq!(
                output.status.code(),
                Some(2),
                "{}: {message}",
                file.display()
            );
            assert_eq!(message, format!("error: {shown}\n"), "{}", file.display());
            assert_eq!(
                through_scenario.status.code(),
                Some(2),
                "{}",
                file.display()
            );
            assert_eq!(stderr(&through_scenario), format!("error: {shown}\n"));
        } else {
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}: {message}",
                file.display()
            );
            assert!(
                message.lines().any(|l| l == format!("warning: {shown}")),
                "{}: expected the warning `{shown}` in:\n{message}",
                file.display()
            );
            let strict = meshsim(&[&args[..2], &["--strict"], &args[2..]].concat());
            assert_eq!(strict.status.code(), Some(2), "{}", file.display());
            assert!(
                stderr(&strict).starts_with("error: "),
                "{}",
                stderr(&strict)
            );
            assert!(
                stderr(&through_scenario)
                    .lines()
                    .any(|l| l == format!("warning: {shown}")),
                "{}: {}",
                file.display(),
                stderr(&through_scenario)
            );
            assert_eq!(through_scenario.status.code(), Some(0));
        }
    }
}

#[test]
fn import_mesh_prints_toml_a_scenario_reads_back() {
    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("../library/istio-retry-storm");
    let output = meshsim(&[
        "import",
        "mesh",
        library.join("virtual-service.yaml").to_str().unwrap(),
        library
            .join("destination-rule-fixed.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(text.contains("[mesh.services.registry]"), "{text}");
    assert!(text.contains("consecutive_5xx = 5"), "{text}");
    assert!(text.contains("max_attempts = 4"), "{text}");
    assert!(
        stderr(&output).contains("outlierDetection.interval is not modelled"),
        "{}",
        stderr(&output)
    );
    let base = std::fs::read_to_string(corpus().join("scenario.toml")).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("import-printed");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("printed.toml");
    std::fs::write(&path, format!("{base}\n{text}")).unwrap();
    let validated = meshsim(&["validate", path.to_str().unwrap()]);
    assert_eq!(validated.status.code(), Some(0), "{}", stderr(&validated));
}
