//! `[[faults]]`: timed fault actions, hosts by name.

use super::Dur;
use serde::Deserialize;

/// A fault at a time. (Unknown fields are refused by the action's own
/// `deny_unknown_fields`: serde rejects every field of a struct that both
/// flattens and denies unknown fields.)
#[derive(Clone, Debug, Deserialize)]
pub struct FaultSpec {
    /// When, from the start of the workload.
    pub at: Dur,
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
    // Plain strings: toml spans do not survive serde's `flatten`, so a
    // `Spanned` here made every fault fail to parse.
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
