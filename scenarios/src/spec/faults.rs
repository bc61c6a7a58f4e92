//! `[[faults]]`: timed fault actions, hosts by name.
//!
//! The entry is a flat table (`action` plus the fields that action uses)
//! rather than a serde-tagged enum: a tagged or flattened enum buffers its
//! content and loses the source spans that error messages point at.

use serde::Deserialize;
use toml::Spanned;

use super::Dur;

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Cut links between groups `a` and `b`, both ways.
    Partition,
    /// Heal links between `a` and `b`.
    Repair,
    /// Stop `hosts`; in-memory state is lost, disks survive.
    Crash,
    /// Start crashed `hosts` again.
    Restart,
    /// An operator replaces the mesh config (`config`) through the control
    /// plane, as `kubectl apply` would; propagation is measured.
    ApplyConfig,
}

/// A fault at a time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When, from the end of the warmup.
    pub at: Dur,
    /// What.
    pub action: Spanned<ActionKind>,
    /// One side of a partition or repair.
    #[serde(default)]
    pub a: Vec<Spanned<String>>,
    /// The other side.
    #[serde(default)]
    pub b: Vec<Spanned<String>>,
    /// Hosts to crash or restart.
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// The new mesh config, for `apply_config`.
    #[serde(default)]
    pub config: Option<mesh::config::MeshConfig>,
}

impl FaultSpec {
    /// Every host the fault names.
    pub(super) fn hosts(&self) -> Vec<&Spanned<String>> {
        self.a.iter().chain(&self.b).chain(&self.hosts).collect()
    }

    /// What is missing or misplaced for this action, if anything.
    pub(super) fn problem(&self) -> Option<String> {
        if *self.action.get_ref() == ActionKind::ApplyConfig {
            let extra = !self.hosts().is_empty();
            return match &self.config {
                Some(config) if !extra => config.validate().err().map(|e| e.to_string()),
                _ => Some("apply_config needs a `config` table and no host lists".into()),
            };
        }
        if self.config.is_some() {
            return Some("only apply_config takes a `config`".into());
        }
        let (needs_groups, has_groups, has_hosts) = match self.action.get_ref() {
            ActionKind::Partition | ActionKind::Repair => (
                true,
                !self.a.is_empty() && !self.b.is_empty(),
                !self.hosts.is_empty(),
            ),
            ActionKind::Crash | ActionKind::Restart | ActionKind::ApplyConfig => (
                false,
                !self.a.is_empty() || !self.b.is_empty(),
                !self.hosts.is_empty(),
            ),
        };
        match (needs_groups, has_groups, has_hosts) {
            (true, true, false) | (false, false, true) => None,
            (true, _, _) => Some(
                "partition and repair need non-empty `a` and `b` host lists (and no `hosts`)"
                    .into(),
            ),
            (false, _, _) => {
                Some("crash and restart need a non-empty `hosts` list (and no `a`/`b`)".into())
            }
        }
    }

    /// The simulator's form; `None` for actions an operator performs
    /// through the control plane (see [`FaultSpec::operator_config`]).
    pub fn to_action(&self) -> Option<sim::FaultAction> {
        let names = |list: &[Spanned<String>]| list.iter().map(|h| h.get_ref().clone()).collect();
        Some(match self.action.get_ref() {
            ActionKind::Partition => sim::FaultAction::Partition {
                a: names(&self.a),
                b: names(&self.b),
            },
            ActionKind::Repair => sim::FaultAction::Repair {
                a: names(&self.a),
                b: names(&self.b),
            },
            ActionKind::Crash => sim::FaultAction::Crash {
                hosts: names(&self.hosts),
            },
            ActionKind::Restart => sim::FaultAction::Restart {
                hosts: names(&self.hosts),
            },
            ActionKind::ApplyConfig => return None,
        })
    }

    /// The config an operator applies at this time, if this is `apply_config`.
    pub fn operator_config(&self) -> Option<&mesh::config::MeshConfig> {
        self.config
            .as_ref()
            .filter(|_| *self.action.get_ref() == ActionKind::ApplyConfig)
    }
}
