//! `[workload]`: phases, arrivals and the operation mix.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Dur;

/// The load.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Service the load generator calls (through its sidecar).
    pub target: Spanned<String>,
    /// Time before the first request, for the mesh to come up.
    #[serde(default = "default_warmup")]
    pub warmup: Dur,
    /// Connections from the generator to its sidecar.
    #[serde(default = "default_connections")]
    pub connections: u32,
    /// In-flight bound; arrivals beyond it are dropped and counted.
    #[serde(default = "default_in_flight")]
    pub in_flight_max: u32,
    /// Time-series interval.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Phases, back to back.
    pub phases: Vec<PhaseSpec>,
    /// Operation mix.
    pub mix: Vec<OpSpec>,
}

fn default_warmup() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_connections() -> u32 {
    64
}
fn default_in_flight() -> u32 {
    10_000
}
fn default_interval() -> Dur {
    Dur(Duration::from_secs(1))
}

/// One phase.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// Name (SLO scopes, reports); unique in the workload.
    pub name: String,
    /// Length.
    pub duration: Dur,
    /// Arrival process.
    pub arrival: Spanned<loadgen::Arrival>,
}

/// REC operations the generator can send. A realistic mix (stated in each
/// scenario file) is about 60 % quotes, 25 % orders, 10 % cancels and 5 %
/// retirements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Best bid, ask and last price of a product (read).
    Quote,
    /// A limit order to buy or sell RECs (write).
    Order,
    /// Cancel the participant's oldest open order in a product (write).
    Cancel,
    /// Retire RECs toward a compliance obligation (write).
    Retire,
}

impl Operation {
    /// The name used in statistics, SLO scopes and reports.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Quote => "quote",
            Operation::Order => "order",
            Operation::Cancel => "cancel",
            Operation::Retire => "retire",
        }
    }
}

/// One entry of the mix: a REC `operation`, or a request to a synthetic
/// service (`method`, `path`, `request_bytes`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpSpec {
    /// The REC operation.
    #[serde(default)]
    pub operation: Option<Operation>,
    /// A synthetic request's name in statistics (default `METHOD path`).
    #[serde(default)]
    pub name: Option<String>,
    /// A synthetic request's method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// A synthetic request's path: an endpoint of the target.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// A synthetic request's body size.
    #[serde(default)]
    pub request_bytes: u64,
    /// A synthetic request's body size as a distribution (instead of
    /// `request_bytes`), e.g. `{ distribution = "empirical", file =
    /// "sizes.csv" }`: the generator draws among its quantiles.
    #[serde(default)]
    pub request_size: Option<crate::distribution::Size>,
    /// Relative weight.
    pub weight: u32,
}

impl OpSpec {
    /// A REC operation's entry.
    pub fn rec(operation: Operation, weight: u32) -> Self {
        OpSpec {
            operation: Some(operation),
            name: None,
            method: None,
            path: None,
            request_bytes: 0,
            request_size: None,
            weight,
        }
    }

    /// The method of a synthetic request.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("GET")
    }

    /// The name of this entry in statistics and reports.
    pub fn label(&self) -> String {
        match (&self.operation, &self.path, &self.name) {
            (Some(op), _, _) => op.name().to_owned(),
            (None, _, Some(name)) => name.clone(),
            (None, Some(path), None) => format!("{} {}", self.method(), path.get_ref()),
            (None, None, None) => String::new(),
        }
    }
}
