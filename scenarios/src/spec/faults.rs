//! `[[faults]]`: timed fault actions, hosts by name.

use serde::Deserialize;
use toml::Spanned;

use super::Dur;

/// A fault at a time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
    Partition {
        a: Vec<Spanned<String>>,
        b: Vec<Spanned<String>>,
    },
    /// Heal them.
    Repair {
        a: Vec<Spanned<String>>,
        b: Vec<Spanned<String>>,
    },
    /// Stop hosts.
    Crash { hosts: Vec<Spanned<String>> },
    /// Start them again.
    Restart { hosts: Vec<Spanned<String>> },
}

impl FaultActionSpec {
    pub(super) fn hosts(&self) -> Vec<&Spanned<String>> {
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
        let names = |list: &[Spanned<String>]| list.iter().map(|h| h.get_ref().clone()).collect();
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
