//! The fault vocabulary, mirroring turmoil's one to one where it can.
//!
//! Host lists are already expanded (a scenario's named groups become host
//! names before they reach the simulator).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FaultAction {
    /// Cut every link between the two groups, both ways.
    Partition { a: Vec<String>, b: Vec<String> },
    /// Cut links from `from` to `to` only.
    PartitionOneway { from: Vec<String>, to: Vec<String> },
    /// Heal links between the two groups.
    Repair { a: Vec<String>, b: Vec<String> },
    /// Stop the hosts' software; in-memory state is lost.
    Crash { hosts: Vec<String> },
    /// Start crashed hosts again.
    Restart { hosts: Vec<String> },
    /// Fixed one-way latency between the groups.
    LinkLatency {
        a: Vec<String>,
        b: Vec<String>,
        latency_ms: u64,
    },
    /// Probability that a link drops (turmoil has no retransmission).
    LinkLoss {
        a: Vec<String>,
        b: Vec<String>,
        loss: f64,
    },
    /// Move a host's wall clock (positive = ahead).
    ClockSkew { host: String, skew_ms: i64 },
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |hosts: &[String]| hosts.join(",");
        match self {
            FaultAction::Partition { a, b } => {
                write!(f, "partition [{}] <-> [{}]", list(a), list(b))
            }
            FaultAction::PartitionOneway { from, to } => {
                write!(f, "partition [{}] -> [{}]", list(from), list(to))
            }
            FaultAction::Repair { a, b } => write!(f, "repair [{}] <-> [{}]", list(a), list(b)),
            FaultAction::Crash { hosts } => write!(f, "crash [{}]", list(hosts)),
            FaultAction::Restart { hosts } => write!(f, "restart [{}]", list(hosts)),
            FaultAction::LinkLatency { a, b, latency_ms } => {
                write!(f, "latency [{}] <-> [{}] {latency_ms}ms", list(a), list(b))
            }
            FaultAction::LinkLoss { a, b, loss } => {
                write!(f, "loss [{}] <-> [{}] {loss}", list(a), list(b))
            }
            FaultAction::ClockSkew { host, skew_ms } => write!(f, "clock_skew {host} {skew_ms}ms"),
        }
    }
}

/// A fault at a sim time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Sim time at which it is applied.
    pub at: Duration,
    /// What it does.
    pub action: FaultAction,
}

/// A list of timed faults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSchedule {
    /// The faults, in any order.
    pub faults: Vec<Fault>,
}

impl FaultSchedule {
    /// The faults in time order (stable for equal times).
    pub fn sorted(&self) -> Vec<Fault> {
        let mut faults = self.faults.clone();
        faults.sort_by_key(|f| f.at);
        faults
    }
}
