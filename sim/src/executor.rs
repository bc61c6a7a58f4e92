//! The fault executor both worlds share: schedule validation, the
//! bookkeeping of what is in force (so heal undoes exactly that), and the
//! per-host handles (skew, slowness, disk) that survive crash and restart.
//!
//! A world supplies only the primitive operations on its own network and
//! hosts ([`Target`]); the meaning of every [`FaultAction`] lives here once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use seam::{MemDisk, SkewHandle, SlowHandle};

use crate::faults::{FaultAction, FaultSchedule};
use crate::world::SimError;

/// What a world can do to its links and hosts. Pairs are directed where
/// the name says `oneway`, otherwise both directions.
pub(crate) trait Target {
    fn partition(&mut self, x: &str, y: &str);
    fn partition_oneway(&mut self, from: &str, to: &str);
    fn repair(&mut self, x: &str, y: &str);
    fn repair_oneway(&mut self, from: &str, to: &str);
    fn hold(&mut self, x: &str, y: &str);
    /// Delivers what is held and heals the link both ways.
    fn release(&mut self, x: &str, y: &str);
    fn set_latency(&mut self, x: &str, y: &str, latency: Duration, jitter: Duration);
    /// Back to the world's configured latency range.
    fn reset_latency(&mut self, x: &str, y: &str);
    fn set_loss(&mut self, x: &str, y: &str, loss: f64);
    fn crash(&mut self, host: &str);
    /// Starts the host's software again (reboots a running host).
    fn restart(&mut self, host: &str);
}

/// Faults in force, so that [`FaultAction::Heal`] can undo exactly them.
/// Ordered sets: heal undoes in a stable order, so the trace is too.
#[derive(Default)]
struct InForce {
    /// Host pairs (sorted) whose link was partitioned or held.
    cut_or_held: BTreeSet<(String, String)>,
    /// Host pairs (sorted) with a latency override.
    latency: BTreeSet<(String, String)>,
    /// Host pairs (sorted) with a loss rate.
    loss: BTreeSet<(String, String)>,
    /// Crashed and not restarted.
    crashed: BTreeSet<String>,
    /// Hosts with a clock skew.
    skewed: BTreeSet<String>,
    /// Hosts with a service-time factor.
    slowed: BTreeSet<String>,
}

/// Per-host state owned by the world, so it survives crash and restart.
#[derive(Default)]
pub(crate) struct HostHandles {
    pub skews: BTreeMap<String, SkewHandle>,
    pub slows: BTreeMap<String, SlowHandle>,
    pub disks: BTreeMap<String, MemDisk>,
}

impl HostHandles {
    /// The handles of `host`, created on first use.
    pub fn of(&mut self, host: &str) -> (SkewHandle, SlowHandle, MemDisk) {
        let skew = self.skews.entry(host.to_owned()).or_default().clone();
        let slow = self.slows.entry(host.to_owned()).or_default().clone();
        let disk = self.disks.entry(host.to_owned()).or_default().clone();
        (skew, slow, disk)
    }
}

/// The hosts of a world, the handles, and what is in force.
#[derive(Default)]
pub(crate) struct Executor {
    pub handles: HostHandles,
    /// Hosts whose software can crash and restart.
    pub hosts: BTreeSet<String>,
    /// Clients: their return ends the run; they cannot crash.
    pub clients: BTreeSet<String>,
    in_force: InForce,
}

/// Every (x, y) with x in `a`, y in `b`, x != y (no link to oneself).
fn pairs<'s>(a: &'s [String], b: &'s [String]) -> impl Iterator<Item = (&'s str, &'s str)> {
    a.iter().flat_map(move |x| {
        b.iter()
            .filter(move |y| *y != x)
            .map(move |y| (x.as_str(), y.as_str()))
    })
}

/// The pair in a canonical order (links are undirected for heal's purposes).
fn link(x: &str, y: &str) -> (String, String) {
    if x <= y {
        (x.to_owned(), y.to_owned())
    } else {
        (y.to_owned(), x.to_owned())
    }
}

impl Executor {
    /// Refuses a schedule that names unknown hosts, crashes a client, or
    /// has a loss that is not a probability, before anything runs.
    pub fn check(&self, faults: &FaultSchedule) -> Result<(), SimError> {
        for fault in &faults.faults {
            let bad = |reason: String| SimError::BadFault {
                at: fault.at,
                action: fault.action.to_string(),
                reason,
            };
            for host in fault.action.hosts() {
                let known = self.hosts.contains(host) || self.clients.contains(host);
                if !known {
                    return Err(bad(format!("no host named \"{host}\"")));
                }
                if fault.action.is_lifecycle() && self.clients.contains(host) {
                    return Err(bad(format!(
                        "\"{host}\" is a client; only hosts can crash and restart"
                    )));
                }
            }
            if let FaultAction::LinkLoss { loss, .. } = fault.action
                && !(0.0..=1.0).contains(&loss)
            {
                return Err(bad(format!("loss {loss} is not a probability")));
            }
        }
        Ok(())
    }

    /// Applies a link or host action (not control, not heal).
    pub fn apply(&mut self, action: &FaultAction, target: &mut dyn Target) {
        match action {
            FaultAction::Partition { a, b } => self.cut(a, b, |t, x, y| t.partition(x, y), target),
            FaultAction::PartitionOneway { from, to } => {
                self.cut(from, to, |t, x, y| t.partition_oneway(x, y), target)
            }
            FaultAction::Hold { a, b } => self.cut(a, b, |t, x, y| t.hold(x, y), target),
            FaultAction::Repair { a, b } => pairs(a, b).for_each(|(x, y)| target.repair(x, y)),
            FaultAction::RepairOneway { from, to } => {
                pairs(from, to).for_each(|(x, y)| target.repair_oneway(x, y))
            }
            FaultAction::Release { a, b } => pairs(a, b).for_each(|(x, y)| target.release(x, y)),
            FaultAction::LinkLatency {
                a,
                b,
                latency,
                jitter,
            } => {
                for (x, y) in pairs(a, b) {
                    target.set_latency(x, y, *latency, *jitter);
                    self.in_force.latency.insert(link(x, y));
                }
            }
            FaultAction::LinkLatencyReset { a, b } => {
                pairs(a, b).for_each(|(x, y)| target.reset_latency(x, y))
            }
            FaultAction::LinkLoss { a, b, loss } => {
                for (x, y) in pairs(a, b) {
                    target.set_loss(x, y, *loss);
                    self.in_force.loss.insert(link(x, y));
                }
            }
            _ => self.apply_to_hosts(action, target),
        }
    }

    fn cut(
        &mut self,
        a: &[String],
        b: &[String],
        op: impl Fn(&mut dyn Target, &str, &str),
        target: &mut dyn Target,
    ) {
        for (x, y) in pairs(a, b) {
            op(target, x, y);
            self.in_force.cut_or_held.insert(link(x, y));
        }
    }

    fn apply_to_hosts(&mut self, action: &FaultAction, target: &mut dyn Target) {
        match action {
            FaultAction::Crash { hosts } => {
                for host in hosts {
                    target.crash(host);
                    self.in_force.crashed.insert(host.clone());
                }
            }
            FaultAction::Restart { hosts } => {
                for host in hosts {
                    target.restart(host);
                    self.in_force.crashed.remove(host);
                }
            }
            FaultAction::ClockSkew { hosts, skew_ms } => {
                for host in hosts {
                    self.handles.of(host).0.set_ms(*skew_ms);
                    self.in_force.skewed.insert(host.clone());
                }
            }
            FaultAction::SlowHost { hosts, factor } => {
                for host in hosts {
                    self.handles.of(host).1.set_factor(*factor);
                    self.in_force.slowed.insert(host.clone());
                }
            }
            _ => unreachable!("control and heal are the world's; links are apply's"),
        }
    }

    /// Undoes every fault in force; returns what it did, for the trace.
    pub fn heal(&mut self, target: &mut dyn Target) -> String {
        let in_force = std::mem::take(&mut self.in_force);
        // `release` makes both directions healthy and delivers held
        // messages; `repair` alone would leave held messages stuck.
        for (x, y) in &in_force.cut_or_held {
            target.release(x, y);
        }
        for (x, y) in &in_force.latency {
            target.reset_latency(x, y);
        }
        for (x, y) in &in_force.loss {
            target.set_loss(x, y, 0.0);
        }
        for host in &in_force.skewed {
            self.handles.of(host).0.set_ms(0);
        }
        for host in &in_force.slowed {
            self.handles.of(host).1.set_factor(1.0);
        }
        // Restart last: rebooted software finds the network already healed.
        for host in &in_force.crashed {
            target.restart(host);
        }
        let names = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
        format!(
            "links={} latency={} loss={} restarted=[{}] unskewed=[{}] unslowed=[{}]",
            in_force.cut_or_held.len(),
            in_force.latency.len(),
            in_force.loss.len(),
            names(&in_force.crashed),
            names(&in_force.skewed),
            names(&in_force.slowed),
        )
    }
}
