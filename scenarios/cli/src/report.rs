//! `meshsim report DIR`: re-renders a run's charts, `report.html` and
//! `junit.xml` from its saved data files alone (no re-run).

use std::path::Path;
use std::process::ExitCode;

use crate::BadInput;

/// Rebuilds everything derived in `dir` and lists what it wrote.
pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        return Err(BadInput(format!("{}: not a directory", dir.display())).into());
    }
    // Missing or unreadable data files are the caller's input: exit 2.
    let written = reports::rebuild(dir).map_err(|e| BadInput(e.to_string()))?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
