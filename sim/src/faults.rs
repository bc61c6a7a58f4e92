//! The fault vocabulary, mirroring turmoil's one to one where it can.
//!
//! Host lists are already expanded: a scenario's named groups ("every
//! registry replica") become host names before they reach the simulator.
//! Every action is undoable, and [`FaultAction::Heal`] undoes all of them at
//! once (the executor remembers what is in force; see `world.rs`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FaultAction {
    /// Cut every link between the two groups, both ways; in-flight messages
    /// are dropped.
    Partition { a: Vec<String>, b: Vec<String> },
    /// Cut links from `from` to `to` only.
    PartitionOneway { from: Vec<String>, to: Vec<String> },
    /// Heal links between the two groups (held messages stay held).
    Repair { a: Vec<String>, b: Vec<String> },
    /// Heal links from `from` to `to` only.
    RepairOneway { from: Vec<String>, to: Vec<String> },
    /// Hold every message between the groups (a stalled link, not a cut one).
    Hold { a: Vec<String>, b: Vec<String> },
    /// Deliver held messages and heal the links.
    Release { a: Vec<String>, b: Vec<String> },
    /// One-way latency between the groups: `latency` plus up to `jitter`,
    /// drawn from turmoil's seeded RNG at millisecond granularity.
    LinkLatency {
        a: Vec<String>,
        b: Vec<String>,
        latency: Duration,
        jitter: Duration,
    },
    /// Back to the world's configured latency range.
    LinkLatencyReset { a: Vec<String>, b: Vec<String> },
    /// Probability per message that a link breaks and drops what is in
    /// flight (turmoil's TCP has no retransmission, so connections stall
    /// until a timeout). 0 restores a lossless link.
    LinkLoss {
        a: Vec<String>,
        b: Vec<String>,
        loss: f64,
    },
    /// Stop the hosts' software; in-memory state is lost, disks survive.
    Crash { hosts: Vec<String> },
    /// Start the hosts' software again (a running host is rebooted).
    Restart { hosts: Vec<String> },
    /// Move the hosts' wall clocks (positive = ahead); 0 removes the skew.
    ClockSkew { hosts: Vec<String>, skew_ms: i64 },
    /// Multiply the hosts' service times; 1.0 is normal speed.
    SlowHost { hosts: Vec<String>, factor: f64 },
    /// A control-plane action the simulator cannot perform itself; it is
    /// handed to the run's [`ControlHook`](crate::ControlHook).
    Control(ControlAction),
    /// Remove every fault in force: release and repair every link touched,
    /// reset latency and loss, restart crashed hosts, clear skew and
    /// slowness. Marks the end of the safety phase.
    Heal,
}

/// Control-plane actions: the simulator only schedules and records them;
/// the composition root performs them through a [`ControlHook`](crate::ControlHook).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "control", rename_all = "snake_case")]
pub enum ControlAction {
    /// Add a new root to the trust bundle, re-issue, then retire the old one.
    RotateRoot,
    /// Replace the intermediate (issuer) certificate under the same root.
    RotateIssuer,
    /// Revoke the identity of a service account (its name, e.g. `registry`).
    RevokeIdentity { service: String },
    /// Push a new mesh configuration; `config_json` is the scenario's
    /// table, as JSON, for the engine to interpret.
    ApplyConfig { config_json: String },
}

impl fmt::Display for ControlAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlAction::RotateRoot => f.write_str("rotate_root"),
            ControlAction::RotateIssuer => f.write_str("rotate_issuer"),
            ControlAction::RevokeIdentity { service } => write!(f, "revoke_identity {service}"),
            ControlAction::ApplyConfig { config_json } => write!(f, "apply_config {config_json}"),
        }
    }
}

fn list(hosts: &[String]) -> String {
    hosts.join(",")
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultAction::Partition { a, b } => {
                write!(f, "partition [{}] <-> [{}]", list(a), list(b))
            }
            FaultAction::PartitionOneway { from, to } => {
                write!(f, "partition [{}] -> [{}]", list(from), list(to))
            }
            FaultAction::Repair { a, b } => write!(f, "repair [{}] <-> [{}]", list(a), list(b)),
            FaultAction::RepairOneway { from, to } => {
                write!(f, "repair [{}] -> [{}]", list(from), list(to))
            }
            FaultAction::Hold { a, b } => write!(f, "hold [{}] <-> [{}]", list(a), list(b)),
            FaultAction::Release { a, b } => write!(f, "release [{}] <-> [{}]", list(a), list(b)),
            FaultAction::LinkLatency {
                a,
                b,
                latency,
                jitter,
            } => write!(
                f,
                "latency [{}] <-> [{}] {latency:?}+{jitter:?}",
                list(a),
                list(b)
            ),
            FaultAction::LinkLatencyReset { a, b } => {
                write!(f, "latency_reset [{}] <-> [{}]", list(a), list(b))
            }
            FaultAction::LinkLoss { a, b, loss } => {
                write!(f, "loss [{}] <-> [{}] {loss}", list(a), list(b))
            }
            FaultAction::Crash { hosts } => write!(f, "crash [{}]", list(hosts)),
            FaultAction::Restart { hosts } => write!(f, "restart [{}]", list(hosts)),
            FaultAction::ClockSkew { hosts, skew_ms } => {
                write!(f, "clock_skew [{}] {skew_ms}ms", list(hosts))
            }
            FaultAction::SlowHost { hosts, factor } => {
                write!(f, "slow [{}] x{factor}", list(hosts))
            }
            FaultAction::Control(action) => write!(f, "control {action}"),
            FaultAction::Heal => f.write_str("heal"),
        }
    }
}

impl FaultAction {
    /// Every host the action names (empty for control actions and heal).
    pub fn hosts(&self) -> Vec<&str> {
        self.host_lists()
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    fn host_lists(&self) -> Vec<&Vec<String>> {
        match self {
            FaultAction::Partition { a, b }
            | FaultAction::Repair { a, b }
            | FaultAction::Hold { a, b }
            | FaultAction::Release { a, b }
            | FaultAction::LinkLatency { a, b, .. }
            | FaultAction::LinkLatencyReset { a, b }
            | FaultAction::LinkLoss { a, b, .. } => vec![a, b],
            FaultAction::PartitionOneway { from, to } | FaultAction::RepairOneway { from, to } => {
                vec![from, to]
            }
            FaultAction::Crash { hosts }
            | FaultAction::Restart { hosts }
            | FaultAction::ClockSkew { hosts, .. }
            | FaultAction::SlowHost { hosts, .. } => vec![hosts],
            FaultAction::Control(_) | FaultAction::Heal => Vec::new(),
        }
    }

    /// Whether the action stops or starts host software (turmoil can do
    /// that only to hosts, never to clients).
    pub fn is_lifecycle(&self) -> bool {
        matches!(
            self,
            FaultAction::Crash { .. } | FaultAction::Restart { .. }
        )
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
    /// The faults in time order (stable for equal times, so an undo written
    /// after its fault at the same instant still runs after it).
    pub fn sorted(&self) -> Vec<Fault> {
        let mut faults = self.faults.clone();
        faults.sort_by_key(|f| f.at);
        faults
    }

    /// Number of actions, not counting [`FaultAction::Heal`].
    pub fn action_count(&self) -> usize {
        self.faults
            .iter()
            .filter(|f| f.action != FaultAction::Heal)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn sorting_is_stable_for_equal_times() {
        let at = Duration::from_secs(1);
        let schedule = FaultSchedule {
            faults: vec![
                Fault {
                    at: Duration::from_secs(2),
                    action: FaultAction::Heal,
                },
                Fault {
                    at,
                    action: FaultAction::Crash {
                        hosts: hosts(&["x"]),
                    },
                },
                Fault {
                    at,
                    action: FaultAction::Restart {
                        hosts: hosts(&["x"]),
                    },
                },
            ],
        };
        let sorted = schedule.sorted();
        assert!(matches!(sorted[0].action, FaultAction::Crash { .. }));
        assert!(matches!(sorted[1].action, FaultAction::Restart { .. }));
        assert_eq!(sorted[2].action, FaultAction::Heal);
        assert_eq!(schedule.action_count(), 2);
    }

    #[test]
    fn hosts_lists_every_named_host() {
        let action = FaultAction::PartitionOneway {
            from: hosts(&["a", "b"]),
            to: hosts(&["c"]),
        };
        assert_eq!(action.hosts(), ["a", "b", "c"]);
        assert!(FaultAction::Heal.hosts().is_empty());
        assert!(
            FaultAction::Control(ControlAction::RotateRoot)
                .hosts()
                .is_empty()
        );
    }

    #[test]
    fn display_is_stable_for_the_trace() {
        let action = FaultAction::LinkLatency {
            a: hosts(&["a"]),
            b: hosts(&["b", "c"]),
            latency: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
        };
        assert_eq!(action.to_string(), "latency [a] <-> [b,c] 50ms+10ms");
        let control = FaultAction::Control(ControlAction::RevokeIdentity {
            service: "registry".into(),
        });
        assert_eq!(control.to_string(), "control revoke_identity registry");
    }
}
