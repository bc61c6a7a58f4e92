//! `[[faults]]`: timed fault actions, hosts by name.

use serde::Deserialize;
use toml::Spanned;

use super::Dur;

/// A fault at a time. Unknown fields are refused by the action's variant
/// (`deny_unknown_fields` here would also refuse the flattened `action`).
#[derive(Clone, Debug, Deserialize)]
pub struct FaultSpec {
    /// When, from the start of the workload (spanned: host errors point here).
    pub at: Spanned<Dur>,
    /// What.
    #[serde(flatten)]
    pub action: FaultActionSpec,
}

/// Fault actions as written in files (hosts by name).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultActionSpec {
    /// Cut links between two groups.
    Partition { a: Vec<String>, b: Vec<String> },
    /// Heal them.
    Repair { a: Vec<String>, b: Vec<String> },
    /// Stop hosts.
    Crash { hosts: Vec<String> },
    /// Start them again.
    Restart { hosts: Vec<String> },
}

impl FaultActionSpec {
    /// Host names are plain strings: serde buffers an internally tagged
    /// enum, and `Spanned` cannot survive the buffer.
    pub(super) fn hosts(&self) -> Vec<&String> {
        match self {
            FaultActionSpec::Partition { a, b } | FaultActionSpec::Repair { a, b } => {
                a.iter().chain(b).collect()
            }
            FaultActionSpec::Crash { hosts } | FaultActionSpec::Restart { hosts } => {
                hosts.iter().collect()
            }
        }
    }

    /// The simulator's form.
    pub fn to_action(&self) -> sim::FaultAction {
        let names = |list: &[String]| list.to_vec();
        match self {
            FaultActionSpec::Partition { a, b } => sim::FaultAction::Partition {
                a: names(a),
                b: names(b),
            },
            FaultActionSpec::Repair { a, b } => sim::FaultAction::Repair {
                a: names(a),
                b: names(b),
            },
            FaultActionSpec::Crash { hosts } => sim::FaultAction::Crash {
                hosts: names(hosts),
            },
            FaultActionSpec::Restart { hosts } => sim::FaultAction::Restart {
                hosts: names(hosts),
            },
        }
    }
}
