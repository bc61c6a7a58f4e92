//! `summary.json`: the DESIGN §6 contract.

use serde::{Deserialize, Serialize};

/// Where the run happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deterministic simulation.
    Sim,
    /// Real sockets.
    Real,
}

/// Overall outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// At least one check failed.
    Fail,
}

/// What a check is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A latency, error-rate or throughput objective.
    Slo,
    /// A security property.
    Security,
    /// A ledger invariant of the REC application.
    Ledger,
    /// Recovery after faults heal.
    Liveness,
}

/// One evaluated check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Name, unique within a run.
    pub name: String,
    /// Kind.
    pub kind: CheckKind,
    /// Whether it held.
    pub passed: bool,
    /// Human-readable evidence (measured values, counterexamples).
    pub detail: String,
}

/// Request counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests the load generator scheduled and sent.
    pub total: u64,
    /// Requests answered 2xx/3xx.
    pub ok: u64,
    /// Requests answered otherwise, or not answered.
    pub failed: u64,
}

/// Latency percentiles in milliseconds, measured from intended start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Median.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub p50: f64,
    /// 90th percentile.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub p90: f64,
    /// 99th percentile.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub p999: f64,
    /// Maximum.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub max: f64,
}

impl LatencyMs {
    /// The percentiles `at(q)` gives, for `q` in 0.5, 0.9, 0.99, 0.999, 1.
    pub fn from_quantiles(at: impl Fn(f64) -> f64) -> Self {
        LatencyMs {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

/// Where a run came from, so two runs can be judged comparable (`meshsim
/// diff`, `check-determinism --against`). Empty strings in summaries
/// written before these fields existed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The meshsim version (`CARGO_PKG_VERSION`).
    #[serde(default)]
    pub meshsim_version: String,
    /// The git commit the binary was built from, or `unknown`.
    #[serde(default)]
    pub source_revision: String,
    /// Hex SHA-256 of the scenario text as run (the file after `--set`).
    #[serde(default)]
    pub scenario_sha256: String,
    /// `ARCH-OS` of the machine that ran it, e.g. `x86_64-linux`.
    #[serde(default)]
    pub platform: String,
}

/// The run summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Run seed.
    pub seed: u64,
    /// Sim or real.
    pub mode: Mode,
    /// Pass or fail.
    pub verdict: Verdict,
    /// Hex SHA-256 over the trace (sim mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_hash: Option<String>,
    /// Simulated seconds (equal to wall seconds in real mode).
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub sim_seconds: f64,
    /// Wall-clock seconds the run took.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub wall_seconds: f64,
    /// Request counts.
    pub requests: RequestCounts,
    /// Latency percentiles.
    pub latency_ms: LatencyMs,
    /// Every check, in evaluation order.
    pub checks: Vec<Check>,
    /// The exact command that reproduces this run.
    pub reproduce: String,
    /// Requests the load generator sent late or dropped (its own saturation).
    pub generator_late: u64,
    /// Requests dropped because the in-flight bound was reached.
    pub generator_dropped: u64,
    /// Tool version, source revision, scenario hash, platform.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// Each proxy's config version over time: host → [(seconds, version)].
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub config_versions: std::collections::BTreeMap<String, Vec<(f64, u64)>>,
}

impl Summary {
    /// Pass if every check passed.
    pub fn verdict_of(checks: &[Check]) -> Verdict {
        if checks.iter().all(|c| c.passed) {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

impl Mode {
    /// The lowercase name used in `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sim => "sim",
            Mode::Real => "real",
        }
    }
}

impl Verdict {
    /// The lowercase name used in `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

impl CheckKind {
    /// The lowercase name used in `summary.json` (and as JUnit classname).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Slo => "slo",
            CheckKind::Security => "security",
            CheckKind::Ledger => "ledger",
            CheckKind::Liveness => "liveness",
        }
    }
}
