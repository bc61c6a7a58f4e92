//! Every file in `tests/malformed/` is a scenario a user could plausibly
//! write by mistake. Each must be refused with exit code 2 and a message
//! that names `file:line:column` — never a panic, never a stack trace.

use std::path::Path;
use std::process::Command;

#[test]
fn every_malformed_scenario_exits_2_with_a_location() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus has {} files", files.len());
    for file in files {
        for command in ["validate", "run"] {
            let output = Command::new(env!("CARGO_BIN_EXE_meshsim"))
                .arg(command)
                .arg(&file)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command} {}: {stderr}",
                file.display()
            );
            let prefix = format!("error: {}:", file.display());
            let rest = stderr.strip_prefix(&prefix).unwrap_or_else(|| {
                panic!(
                    "{}: message must start with the file: {stderr}",
                    file.display()
                )
            });
            let mut fields = rest.splitn(3, ':');
            let line = fields.next().and_then(|l| l.parse::<u32>().ok());
            let column = fields.next().and_then(|c| c.parse::<u32>().ok());
            assert!(
                line.is_some() && column.is_some(),
                "{}: no line:column in {stderr}",
                file.display()
            );
            assert!(
                !stderr.contains("panicked") && !stderr.contains("backtrace"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn every_library_scenario_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../library");
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = entry.unwrap().path();
        // Directories beside a scenario hold the YAML it imports.
        if file.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let output = Command::new(env!("CARGO_BIN_EXE_meshsim"))
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
