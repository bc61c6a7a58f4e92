//! The `tracing` subscriber: `--log-format text|json`, a `RUST_LOG`-style
//! filter (`--log`, else `RUST_LOG`, else `info`), on stderr.
//!
//! Timestamps: a real-mode process stamps with the OS clock, as any log
//! does. A simulated run writes no OS timestamp at all: every event that
//! happens inside the simulation carries the simulated time itself (the
//! access log's `at_us`, from the host's `seam::Clock`), so two runs of one
//! seed log the same lines. Colour follows `NO_COLOR` and whether stderr is
//! a terminal.

use std::io::IsTerminal as _;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (fields, target, level).
    Json,
}

/// Whether the process's events happen on the OS clock or in a simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeline {
    /// Stamp with the OS clock.
    Real,
    /// Stamp with nothing: events carry their simulated time.
    Simulated,
}

/// Whether output may be coloured: never with `NO_COLOR` set (any value,
/// <https://no-color.org>), never when not a terminal.
pub fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// The filter: `--log`, else `RUST_LOG`, else `info`.
fn filter(spec: Option<&str>) -> Result<EnvFilter, String> {
    let spec = spec
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    EnvFilter::try_new(&spec).map_err(|e| format!("--log '{spec}': {e}"))
}

/// Installs the process's subscriber (once, at start).
pub fn install(format: LogFormat, spec: Option<&str>, timeline: Timeline) -> Result<(), String> {
    let filter = filter(spec)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_allowed());
    let installed = match (format, timeline) {
        (LogFormat::Text, Timeline::Real) => builder.try_init(),
        (LogFormat::Text, Timeline::Simulated) => builder.without_time().try_init(),
        (LogFormat::Json, Timeline::Real) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Json, Timeline::Simulated) => {
            builder.json().flatten_event(true).without_time().try_init()
        }
    };
    installed.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_bad_input() {
        assert!(filter(Some("info,meshsim::access=debug")).is_ok());
        assert!(filter(Some("[[[")).unwrap_err().contains("--log"));
    }
}
