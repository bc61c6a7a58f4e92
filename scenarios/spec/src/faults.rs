//! `[[faults]]`, `[groups]` and `[swarm]`: the fault schedule as written.
//!
//! ```toml
//! [groups]
//! settlement = ["registry", "gateway-0"]   # hosts, services or other groups
//!
//! [[faults]]
//! at = "2s..8s"          # a time, or a range drawn from the run's fault stream
//! relative_to = "spike"  # "workload" (default), "start" (sim time 0) or a workload phase
//! duration = "1500ms"    # optional: undone automatically at at + duration
//! action = "partition"
//! a = ["gateway"]        # a service means every replica
//! b = ["settlement"]
//! ```
//!
//! Each entry is one table with an `action` and the fields that action
//! takes; a field another action takes is an error, not ignored. Entries are
//! resolved to the simulator's [`sim::FaultAction`]s by
//! [`Scenario::fault_schedule`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use rand::Rng;
use seam::Seed;
use serde::Deserialize;
use sim::{ControlAction, Fault, FaultAction, FaultSchedule};
use toml::Spanned;

use super::{Dur, Locator, Scenario, SpecError};

/// Seed-tree label of the stream fault-time ranges draw from (`faults/<index>`).
pub const SEED_LABEL_FAULTS: &str = "faults";

/// Named groups of hosts: `name = [host, service or group, …]`.
pub type Groups = BTreeMap<String, Vec<Spanned<String>>>;

/// Every fault action a scenario can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Cut links between `a` and `b`, both ways.
    Partition,
    /// Cut links from `from` to `to` only.
    PartitionOneway,
    /// Heal links between `a` and `b`.
    Repair,
    /// Heal links from `from` to `to`.
    RepairOneway,
    /// Stall links between `a` and `b` (messages wait, none are lost).
    Hold,
    /// Deliver what `hold` kept and heal the links.
    Release,
    /// `latency` (plus up to `jitter`) one way between `a` and `b`.
    Latency,
    /// Per-message break probability `rate` between `a` and `b`.
    Loss,
    /// Stop `hosts`.
    Crash,
    /// Start `hosts` again.
    Restart,
    /// Move the wall clock of `hosts` by `skew` (`"-90s"`, `"+5m"`).
    ClockSkew,
    /// Multiply the service time of `hosts` by `factor`.
    Slow,
    /// Crash the certificate authority.
    CaDown,
    /// Restart it.
    CaUp,
    /// Crash the control plane.
    ControlDown,
    /// Restart it.
    ControlUp,
    /// Rotate the root CA (with overlap).
    RotateRoot,
    /// Rotate the issuing (intermediate) CA.
    RotateIssuer,
    /// Revoke the identity of `service`.
    Revoke,
    /// Push `config` (a table) through the control plane.
    ApplyConfig,
}

/// The fields an action takes, beyond the timing ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `a` and `b`.
    Link,
    /// `from` and `to`.
    Directed,
    /// `hosts`.
    Hosts,
    /// Nothing.
    Bare,
    /// `service`.
    Service,
    /// `config`.
    Config,
}

impl ActionKind {
    fn shape(self) -> Shape {
        use ActionKind::*;
        match self {
            Partition | Repair | Hold | Release | Latency | Loss => Shape::Link,
            PartitionOneway | RepairOneway => Shape::Directed,
            Crash | Restart | ClockSkew | Slow => Shape::Hosts,
            CaDown | CaUp | ControlDown | ControlUp | RotateRoot | RotateIssuer => Shape::Bare,
            Revoke => Shape::Service,
            ApplyConfig => Shape::Config,
        }
    }

    /// Whether `duration` makes sense (the action has an undo).
    fn undoable(self) -> bool {
        use ActionKind::*;
        matches!(
            self,
            Partition
                | PartitionOneway
                | Hold
                | Latency
                | Loss
                | Crash
                | ClockSkew
                | Slow
                | CaDown
                | ControlDown
        )
    }

    /// The name as written in files.
    pub fn name(self) -> &'static str {
        use ActionKind::*;
        match self {
            Partition => "partition",
            PartitionOneway => "partition_oneway",
            Repair => "repair",
            RepairOneway => "repair_oneway",
            Hold => "hold",
            Release => "release",
            Latency => "latency",
            Loss => "loss",
            Crash => "crash",
            Restart => "restart",
            ClockSkew => "clock_skew",
            Slow => "slow",
            CaDown => "ca_down",
            CaUp => "ca_up",
            ControlDown => "control_down",
            ControlUp => "control_up",
            RotateRoot => "rotate_root",
            RotateIssuer => "rotate_issuer",
            Revoke => "revoke",
            ApplyConfig => "apply_config",
        }
    }
}

/// One `[[faults]]` entry, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When: `"3s"`, or `"2s..8s"` for a time drawn per seed.
    pub at: Spanned<String>,
    /// What `at` counts from: `"workload"` (default: the end of the
    /// warmup), `"start"` (sim time zero), or a workload phase's name.
    #[serde(default)]
    pub relative_to: Option<Spanned<String>>,
    /// How long the fault lasts before it is undone; without it, the fault
    /// stays until an explicit undo or the heal.
    #[serde(default)]
    pub duration: Option<Spanned<Dur>>,
    /// What happens.
    pub action: Spanned<ActionKind>,
    /// One side of a link fault.
    #[serde(default)]
    pub a: Option<Vec<Spanned<String>>>,
    /// The other side.
    #[serde(default)]
    pub b: Option<Vec<Spanned<String>>>,
    /// Senders of a one-way fault.
    #[serde(default)]
    pub from: Option<Vec<Spanned<String>>>,
    /// Receivers of a one-way fault.
    #[serde(default)]
    pub to: Option<Vec<Spanned<String>>>,
    /// Hosts of a host fault.
    #[serde(default)]
    pub hosts: Option<Vec<Spanned<String>>>,
    /// `latency`: the one-way delay.
    #[serde(default)]
    pub latency: Option<Dur>,
    /// `latency`: extra random delay, up to this much.
    #[serde(default)]
    pub jitter: Option<Dur>,
    /// `loss`: per-message probability, 0..=1.
    #[serde(default)]
    pub rate: Option<f64>,
    /// `clock_skew`: signed offset, `"-90s"` or `"+5m"`.
    #[serde(default)]
    pub skew: Option<Spanned<String>>,
    /// `slow`: service-time multiplier, > 0.
    #[serde(default)]
    pub factor: Option<f64>,
    /// `revoke`: the service account.
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    /// `apply_config`: the configuration table.
    #[serde(default)]
    pub config: Option<toml::Table>,
}

/// A problem with one entry, located in the file.
#[derive(Debug)]
struct Issue {
    span: Option<Range<usize>>,
    message: String,
}

fn issue<T>(span: Range<usize>, message: impl Into<String>) -> Result<T, Issue> {
    Err(Issue {
        span: Some(span),
        message: message.into(),
    })
}

/// When a fault happens, as written: a fixed time or a range to draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Exactly then.
    At(Duration),
    /// Uniformly in `[low, high]`, at millisecond granularity, drawn from
    /// the run's fault stream.
    Between(Duration, Duration),
}

impl When {
    /// Parses `"3s"` or `"2s..8s"`.
    pub fn parse(text: &str) -> Result<When, String> {
        match text.split_once("..") {
            None => Ok(When::At(text.parse::<Dur>()?.0)),
            Some((low, high)) => {
                let (low, high) = (low.parse::<Dur>()?.0, high.parse::<Dur>()?.0);
                if low > high {
                    return Err(format!("range \"{text}\" ends before it starts"));
                }
                Ok(When::Between(low, high))
            }
        }
    }

    /// The latest time it can be.
    pub fn latest(self) -> Duration {
        match self {
            When::At(at) | When::Between(_, at) => at,
        }
    }

    /// The time for one run: fixed, or drawn from `seed`.
    pub fn draw(self, seed: Seed) -> Duration {
        match self {
            When::At(at) => at,
            When::Between(low, high) => {
                let (low_ms, high_ms) = (low.as_millis() as u64, high.as_millis() as u64);
                Duration::from_millis(seed.rng().random_range(low_ms..=high_ms))
            }
        }
    }
}

/// Parses a signed duration: `"-90s"`, `"+5m"`, `"250ms"`. Returns ms.
pub fn parse_signed_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let ms = magnitude.parse::<Dur>()?.0.as_millis();
    let ms = i64::try_from(ms).map_err(|_| format!("skew \"{text}\" is out of range"))?;
    Ok(sign * ms)
}

/// Formats a duration so that it parses back exactly (`"1500ms"`, `"2s"`).
pub fn format_duration(duration: Duration) -> String {
    let ns = duration.as_nanos();
    let units = [
        (3_600_000_000_000u128, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (size, unit) in units {
        if ns.is_multiple_of(size) && ns > 0 {
            return format!("{}{unit}", ns / size);
        }
    }
    if ns == 0 {
        "0s".to_owned()
    } else {
        // Below a microsecond: round to it (the simulator ticks in ms).
        format!("{}us", ns.div_ceil(1_000))
    }
}

/// Names a fault can use, and the hosts each stands for.
pub struct Names<'a> {
    scenario: &'a Scenario,
}

impl Names<'_> {
    /// The hosts `name` stands for: itself if it is a host, every replica
    /// if it is a service, its members if it is a group.
    pub fn resolve(&self, name: &str) -> Option<Vec<String>> {
        self.resolve_depth(name, 0)
    }

    fn resolve_depth(&self, name: &str, depth: usize) -> Option<Vec<String>> {
        let scenario = self.scenario;
        if scenario.host_names().iter().any(|h| h == name) {
            return Some(vec![name.to_owned()]);
        }
        if let Some(service) = scenario.services.iter().find(|s| s.name.get_ref() == name) {
            return Some(
                (0..service.replicas)
                    .map(|i| format!("{name}-{i}"))
                    .collect(),
            );
        }
        // Groups may name groups; the depth bound stops cycles.
        if depth < 8
            && let Some(members) = scenario.groups.get(name)
        {
            let mut hosts = Vec::new();
            for member in members {
                for host in self.resolve_depth(member.get_ref(), depth + 1)? {
                    if !hosts.contains(&host) {
                        hosts.push(host);
                    }
                }
            }
            return Some(hosts);
        }
        None
    }

    fn list(&self, names: &[Spanned<String>]) -> Result<Vec<String>, Issue> {
        let mut hosts = Vec::new();
        for name in names {
            let Some(resolved) = self.resolve(name.get_ref()) else {
                return issue(
                    name.span(),
                    format!(
                        "\"{}\" is not a host, service or group; hosts are {:?}",
                        name.get_ref(),
                        self.scenario.host_names()
                    ),
                );
            };
            for host in resolved {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        Ok(hosts)
    }
}

impl FaultSpec {
    /// The fields set on this entry that only some shapes take.
    fn shaped_fields(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("a", self.a.is_some()),
            ("b", self.b.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("hosts", self.hosts.is_some()),
            ("latency", self.latency.is_some()),
            ("jitter", self.jitter.is_some()),
            ("rate", self.rate.is_some()),
            ("skew", self.skew.is_some()),
            ("factor", self.factor.is_some()),
            ("service", self.service.is_some()),
            ("config", self.config.is_some()),
        ]
    }

    fn allowed_fields(kind: ActionKind) -> &'static [&'static str] {
        match kind {
            ActionKind::Latency => &["a", "b", "latency", "jitter"],
            ActionKind::Loss => &["a", "b", "rate"],
            ActionKind::ClockSkew => &["hosts", "skew"],
            ActionKind::Slow => &["hosts", "factor"],
            _ => match kind.shape() {
                Shape::Link => &["a", "b"],
                Shape::Directed => &["from", "to"],
                Shape::Hosts => &["hosts"],
                Shape::Bare => &[],
                Shape::Service => &["service"],
                Shape::Config => &["config"],
            },
        }
    }

    /// The `at` field, parsed.
    fn when(&self) -> Result<When, Issue> {
        When::parse(self.at.get_ref()).map_err(|message| Issue {
            span: Some(self.at.span()),
            message,
        })
    }

    fn required<'s, T>(&self, field: &'s Option<T>, name: &str) -> Result<&'s T, Issue> {
        field.as_ref().ok_or_else(|| Issue {
            span: Some(self.action.span()),
            message: format!("action \"{}\" needs `{name}`", self.action.get_ref().name()),
        })
    }

    /// The action and, with a `duration`, its undo, in simulator terms.
    fn actions(&self, names: &Names<'_>) -> Result<(FaultAction, Option<FaultAction>), Issue> {
        let kind = *self.action.get_ref();
        let allowed = Self::allowed_fields(kind);
        if let Some((field, _)) = self
            .shaped_fields()
            .into_iter()
            .find(|(field, set)| *set && !allowed.contains(field))
        {
            return issue(
                self.action.span(),
                format!(
                    "action \"{}\" does not take `{field}`; it takes {allowed:?}",
                    kind.name()
                ),
            );
        }
        if self.duration.is_some() && !kind.undoable() {
            return issue(
                self.action.span(),
                format!("action \"{}\" has no undo, so no `duration`", kind.name()),
            );
        }
        let link = || -> Result<(Vec<String>, Vec<String>), Issue> {
            Ok((
                names.list(self.required(&self.a, "a")?)?,
                names.list(self.required(&self.b, "b")?)?,
            ))
        };
        let directed = || -> Result<(Vec<String>, Vec<String>), Issue> {
            Ok((
                names.list(self.required(&self.from, "from")?)?,
                names.list(self.required(&self.to, "to")?)?,
            ))
        };
        let hosts = |lifecycle: bool| -> Result<Vec<String>, Issue> {
            let list = self.required(&self.hosts, "hosts")?;
            let hosts = names.list(list)?;
            if lifecycle && hosts.iter().any(|h| h == seam::hosts::LOADGEN) {
                return issue(
                    list.first().map_or(self.action.span(), |h| h.span()),
                    "the load generator cannot crash or restart (its return ends the run)",
                );
            }
            Ok(hosts)
        };
        let one = |host: &str| vec![host.to_owned()];
        use ActionKind as K;
        use FaultAction as F;
        let pair = match kind {
            K::Partition => {
                let (a, b) = link()?;
                (
                    F::Partition {
                        a: a.clone(),
                        b: b.clone(),
                    },
                    Some(F::Repair { a, b }),
                )
            }
            K::Repair => {
                let (a, b) = link()?;
                (F::Repair { a, b }, None)
            }
            K::Hold => {
                let (a, b) = link()?;
                (
                    F::Hold {
                        a: a.clone(),
                        b: b.clone(),
                    },
                    Some(F::Release { a, b }),
                )
            }
            K::Release => {
                let (a, b) = link()?;
                (F::Release { a, b }, None)
            }
            K::PartitionOneway => {
                let (from, to) = directed()?;
                (
                    F::PartitionOneway {
                        from: from.clone(),
                        to: to.clone(),
                    },
                    Some(F::RepairOneway { from, to }),
                )
            }
            K::RepairOneway => {
                let (from, to) = directed()?;
                (F::RepairOneway { from, to }, None)
            }
            K::Latency => {
                let (a, b) = link()?;
                let latency = self.required(&self.latency, "latency")?.0;
                let jitter = self.jitter.map_or(Duration::ZERO, |j| j.0);
                (
                    F::LinkLatency {
                        a: a.clone(),
                        b: b.clone(),
                        latency,
                        jitter,
                    },
                    Some(F::LinkLatencyReset { a, b }),
                )
            }
            K::Loss => {
                let (a, b) = link()?;
                let loss = *self.required(&self.rate, "rate")?;
                if !(0.0..=1.0).contains(&loss) {
                    return issue(
                        self.action.span(),
                        format!("loss rate {loss} is not in 0..=1"),
                    );
                }
                (
                    F::LinkLoss {
                        a: a.clone(),
                        b: b.clone(),
                        loss,
                    },
                    Some(F::LinkLoss { a, b, loss: 0.0 }),
                )
            }
            K::Crash => {
                let hosts = hosts(true)?;
                (
                    F::Crash {
                        hosts: hosts.clone(),
                    },
                    Some(F::Restart { hosts }),
                )
            }
            K::Restart => (
                F::Restart {
                    hosts: hosts(true)?,
                },
                None,
            ),
            K::ClockSkew => {
                let hosts = hosts(false)?;
                let skew = self.required(&self.skew, "skew")?;
                let skew_ms = parse_signed_ms(skew.get_ref()).map_err(|message| Issue {
                    span: Some(skew.span()),
                    message,
                })?;
                (
                    F::ClockSkew {
                        hosts: hosts.clone(),
                        skew_ms,
                    },
                    Some(F::ClockSkew { hosts, skew_ms: 0 }),
                )
            }
            K::Slow => {
                let hosts = hosts(false)?;
                let factor = *self.required(&self.factor, "factor")?;
                if !(factor.is_finite() && factor > 0.0) {
                    return issue(
                        self.action.span(),
                        format!("slow factor {factor} must be a positive number"),
                    );
                }
                (
                    F::SlowHost {
                        hosts: hosts.clone(),
                        factor,
                    },
                    Some(F::SlowHost { hosts, factor: 1.0 }),
                )
            }
            K::CaDown => (
                F::Crash { hosts: one("ca") },
                Some(F::Restart { hosts: one("ca") }),
            ),
            K::CaUp => (F::Restart { hosts: one("ca") }, None),
            K::ControlDown => (
                F::Crash {
                    hosts: one("control"),
                },
                Some(F::Restart {
                    hosts: one("control"),
                }),
            ),
            K::ControlUp => (
                F::Restart {
                    hosts: one("control"),
                },
                None,
            ),
            K::RotateRoot => (F::Control(ControlAction::RotateRoot), None),
            K::RotateIssuer => (F::Control(ControlAction::RotateIssuer), None),
            K::Revoke => {
                let service = self.required(&self.service, "service")?;
                let unknown =
                    names
                        .scenario
                        .unknown_service("revoked service", service.get_ref(), true);
                if let Some(message) = unknown {
                    return issue(service.span(), message);
                }
                let action = ControlAction::RevokeIdentity {
                    service: service.get_ref().clone(),
                };
                (F::Control(action), None)
            }
            K::ApplyConfig => {
                let config = self.required(&self.config, "config")?;
                // Refuse here what the control plane would refuse mid-run.
                let parsed: mesh::config::MeshConfig =
                    config
                        .clone()
                        .try_into()
                        .map_err(|e: toml::de::Error| Issue {
                            span: Some(self.action.span()),
                            message: format!(
                                "apply_config: invalid mesh config: {}",
                                e.message().trim()
                            ),
                        })?;
                parsed.validate().map_err(|e| Issue {
                    span: Some(self.action.span()),
                    message: format!("apply_config: {e}"),
                })?;
                let config_json = serde_json::to_string(config).expect("a TOML table is JSON");
                (F::Control(ControlAction::ApplyConfig { config_json }), None)
            }
        };
        let (action, undo) = pair;
        Ok((action, self.duration.as_ref().and(undo)))
    }
}

/// When each fault happens and what it does, for one run.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedFault {
    /// Index of the `[[faults]]` entry.
    pub index: usize,
    /// Time from the start of the simulation.
    pub at: Duration,
    /// Time of the undo, if the entry has a `duration` and the undo comes
    /// before the heal (the heal undoes everything anyway).
    pub undo_at: Option<Duration>,
    /// The action.
    pub action: FaultAction,
    /// Its undo.
    pub undo: Option<FaultAction>,
}

/// One run's faults, drawn once from the seed. The engine applies its
/// [`schedule`](FaultPlan::schedule); the checks and the report read the
/// same plan, so a stretched real-mode run is judged and drawn by the times
/// it actually used.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// Every `[[faults]]` entry, with its times.
    pub resolved: Vec<ResolvedFault>,
    /// Sim time of the heal, if the scenario has `[phases]`.
    pub heal_at: Option<Duration>,
    /// The warmup the times count from; it is never stretched.
    pub warmup: Duration,
}

impl FaultPlan {
    /// The actions in time order of declaration: each entry, its undo, then
    /// the heal.
    pub fn schedule(&self) -> FaultSchedule {
        let mut faults = Vec::new();
        for resolved in &self.resolved {
            faults.push(Fault {
                at: resolved.at,
                action: resolved.action.clone(),
            });
            if let (Some(at), Some(action)) = (resolved.undo_at, &resolved.undo) {
                faults.push(Fault {
                    at,
                    action: action.clone(),
                });
            }
        }
        if let Some(at) = self.heal_at {
            faults.push(Fault {
                at,
                action: FaultAction::Heal,
            });
        }
        FaultSchedule { faults }
    }

    /// The plan with every time after the warmup multiplied by `factor`
    /// (real mode's `--time-scale`): bootstrap takes what it takes, so the
    /// warmup keeps its length.
    pub fn stretched(&self, factor: f64) -> FaultPlan {
        let at = |t: Duration| stretch(t, self.warmup, factor);
        FaultPlan {
            resolved: self
                .resolved
                .iter()
                .map(|r| ResolvedFault {
                    at: at(r.at),
                    undo_at: r.undo_at.map(at),
                    ..r.clone()
                })
                .collect(),
            heal_at: self.heal_at.map(at),
            warmup: self.warmup,
        }
    }

    /// The faults as windows for charts: (start, end, label), in seconds
    /// from the workload start (a fault without a duration is a point).
    pub fn marks(&self) -> Vec<(f64, f64, String)> {
        let warmup = self.warmup.as_secs_f64();
        let mut marks: Vec<(f64, f64, String)> = self
            .resolved
            .iter()
            .map(|r| {
                let start = r.at.as_secs_f64() - warmup;
                let end = r.undo_at.map_or(start, |u| u.as_secs_f64() - warmup);
                (start, end, r.action.to_string())
            })
            .collect();
        if let Some(heal) = self.heal_at {
            let at = heal.as_secs_f64() - warmup;
            marks.push((at, at, "heal".to_owned()));
        }
        marks
    }
}

/// `at` stretched by `factor` after `warmup`; times inside the warmup stay.
pub fn stretch(at: Duration, warmup: Duration, factor: f64) -> Duration {
    match at.checked_sub(warmup) {
        Some(after_warmup) => warmup + after_warmup.mul_f64(factor),
        None => at,
    }
}

impl Scenario {
    /// The names faults can use (hosts, services, groups).
    pub fn names(&self) -> Names<'_> {
        Names { scenario: self }
    }

    /// Start of a fault's time base, in sim time.
    fn anchor(&self, relative_to: Option<&Spanned<String>>) -> Result<Duration, Issue> {
        let warmup = self.workload.warmup.0;
        let Some(name) = relative_to else {
            return Ok(warmup);
        };
        match name.get_ref().as_str() {
            "workload" => Ok(warmup),
            "start" => Ok(Duration::ZERO),
            phase => {
                let mut start = warmup;
                for p in &self.workload.phases {
                    if p.name == phase {
                        return Ok(start);
                    }
                    start += p.duration.0;
                }
                let phases: Vec<_> = self.workload.phases.iter().map(|p| &p.name).collect();
                issue(
                    name.span(),
                    format!(
                        "relative_to \"{phase}\" is not \"workload\", \"start\" or a workload phase {phases:?}"
                    ),
                )
            }
        }
    }

    /// Sim time of the heal, if the scenario has phases.
    pub fn heal_time(&self) -> Option<Duration> {
        self.phases
            .as_ref()
            .map(|p| self.workload.warmup.0 + p.heal_at.get_ref().0)
    }

    /// The time of each fault entry for `seed` (relative to its own
    /// `relative_to`), with ranges drawn. Entry `i` draws from
    /// `faults/<i>`, so removing one entry never moves another.
    pub fn fault_times(&self, seed: Seed) -> Vec<Duration> {
        self.faults
            .iter()
            .enumerate()
            .map(|(i, fault)| {
                let when = fault.when().unwrap_or(When::At(Duration::ZERO));
                when.draw(seed.child(SEED_LABEL_FAULTS).child(&i.to_string()))
            })
            .collect()
    }

    fn resolve_one(&self, index: usize, at: Duration) -> Result<ResolvedFault, Issue> {
        let fault = &self.faults[index];
        let start = self.anchor(fault.relative_to.as_ref())? + at;
        let (action, undo) = fault.actions(&self.names())?;
        let undo_at = fault.duration.as_ref().map(|d| start + d.get_ref().0);
        // An undo after the heal would undo nothing, or worse (a restart
        // reboots a host the heal already restarted): drop it.
        let keep_undo = match (undo_at, self.heal_time()) {
            (Some(undo_at), Some(heal)) => undo_at <= heal,
            (Some(_), None) => true,
            (None, _) => false,
        };
        Ok(ResolvedFault {
            index,
            at: start,
            undo_at: undo_at.filter(|_| keep_undo),
            action,
            undo: undo.filter(|_| keep_undo),
        })
    }

    /// Every fault entry resolved for `seed`. The scenario must be valid.
    pub fn resolved_faults(&self, seed: Seed) -> Vec<ResolvedFault> {
        self.fault_times(seed)
            .into_iter()
            .enumerate()
            .map(|(i, at)| {
                self.resolve_one(i, at)
                    .expect("faults are checked when the scenario is loaded")
            })
            .collect()
    }

    /// The run's faults for `seed`, drawn once: every entry resolved, plus
    /// the heal. Checks and charts read this plan, never the file again.
    pub fn fault_plan(&self, seed: Seed) -> FaultPlan {
        FaultPlan {
            resolved: self.resolved_faults(seed),
            heal_at: self.heal_time(),
            warmup: self.workload.warmup.0,
        }
    }

    /// The schedule the simulator applies for `seed` (see [`FaultPlan`]).
    pub fn fault_schedule(&self, seed: Seed) -> FaultSchedule {
        self.fault_plan(seed).schedule()
    }

    /// Checks every fault entry and group; called when the file is loaded.
    pub(super) fn validate_faults(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        let located = |issue: Issue| locate.error(issue.span, issue.message);
        let hosts = self.host_names();
        for (group, members) in &self.groups {
            let span = members.first().map(|m| m.span());
            let clash =
                hosts.contains(group) || self.services.iter().any(|s| s.name.get_ref() == group);
            if clash {
                return Err(locate.error(
                    span,
                    format!("group \"{group}\" has the name of a host or service"),
                ));
            }
            if self.names().resolve(group).is_none_or(|h| h.is_empty()) {
                return Err(locate.error(
                    span,
                    format!("group \"{group}\" names something that is not a host, service or group (or is empty or cyclic)"),
                ));
            }
        }
        let heal = self.heal_time();
        for (index, fault) in self.faults.iter().enumerate() {
            let when = fault.when().map_err(located)?;
            let resolved = self.resolve_one(index, when.latest()).map_err(located)?;
            if let Some(heal) = heal
                && resolved.at >= heal
            {
                return Err(locate.error(
                    Some(fault.at.span()),
                    format!(
                        "this fault can happen at {:?} of sim time, at or after the heal at {heal:?}; faults belong to the safety phase",
                        resolved.at
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `[swarm]`: the bounds within which `meshsim explore --swarm` draws a
/// fault schedule per seed. Every field has a default, so `--swarm` works
/// on any scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwarmSpec {
    /// At most this many faults per seed (the count is drawn in 0..=max).
    pub faults_max: u32,
    /// The actions to draw from. Each seed enables a random subset of
    /// them (swarm testing: different seeds stress different mixes).
    pub actions: Vec<Spanned<ActionKind>>,
    /// Names faults may hit (hosts, services, groups). Empty = every
    /// service, plus `ca` and `control`.
    pub targets: Vec<Spanned<String>>,
    /// How long each fault lasts, `[min, max]`.
    pub window: [Dur; 2],
    /// `latency` faults: one-way delay `[min, max]`.
    pub latency: [Dur; 2],
    /// `loss` faults: rate `[min, max]`.
    pub loss: [f64; 2],
    /// `clock_skew` faults: `[min, max]` magnitude; the sign is drawn.
    pub skew: [Dur; 2],
    /// `slow` faults: factor `[min, max]`.
    pub slow: [f64; 2],
}

impl Default for SwarmSpec {
    fn default() -> Self {
        let dur = |ms| Dur(Duration::from_millis(ms));
        let kinds = [
            ActionKind::Partition,
            ActionKind::PartitionOneway,
            ActionKind::Hold,
            ActionKind::Latency,
            ActionKind::Loss,
            ActionKind::Crash,
            ActionKind::ClockSkew,
            ActionKind::Slow,
        ];
        SwarmSpec {
            faults_max: 4,
            actions: kinds.into_iter().map(|k| Spanned::new(0..0, k)).collect(),
            targets: Vec::new(),
            window: [dur(500), dur(5_000)],
            latency: [dur(10), dur(300)],
            loss: [0.01, 0.2],
            skew: [dur(1_000), dur(300_000)],
            slow: [2.0, 20.0],
        }
    }
}

impl Scenario {
    /// Checks the `[swarm]` bounds; called when the file is loaded.
    pub(super) fn validate_swarm(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        let Some(swarm) = &self.swarm else {
            return Ok(());
        };
        for action in &swarm.actions {
            let kind = *action.get_ref();
            let drawable = matches!(kind.shape(), Shape::Link | Shape::Directed | Shape::Hosts)
                && kind.undoable();
            if !drawable {
                return Err(locate.error(
                    Some(action.span()),
                    format!(
                        "swarm cannot draw \"{}\"; it draws partition, partition_oneway, hold, latency, loss, crash, clock_skew and slow",
                        kind.name()
                    ),
                ));
            }
        }
        for target in &swarm.targets {
            if self.names().resolve(target.get_ref()).is_none() {
                return Err(locate.error(
                    Some(target.span()),
                    format!(
                        "swarm target \"{}\" is not a host, service or group",
                        target.get_ref()
                    ),
                ));
            }
        }
        let ordered = swarm.window[0] <= swarm.window[1]
            && swarm.latency[0] <= swarm.latency[1]
            && swarm.skew[0] <= swarm.skew[1]
            && swarm.loss[0] <= swarm.loss[1]
            && swarm.slow[0] <= swarm.slow[1];
        let sane = (0.0..=1.0).contains(&swarm.loss[0])
            && (0.0..=1.0).contains(&swarm.loss[1])
            && swarm.slow[0] > 0.0;
        if !ordered || !sane {
            return Err(locate.error(
                swarm.actions.first().map(|a| a.span()),
                "swarm bounds are [min, max] pairs with min <= max, loss in 0..=1 and slow > 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_fixed_or_as_ranges() {
        assert_eq!(When::parse("3s"), Ok(When::At(Duration::from_secs(3))));
        assert_eq!(
            When::parse("2s..8s"),
            Ok(When::Between(
                Duration::from_secs(2),
                Duration::from_secs(8)
            ))
        );
        assert!(When::parse("8s..2s").is_err());
        assert!(When::parse("soon").is_err());
    }

    #[test]
    fn drawn_times_stay_in_range_and_follow_the_seed() {
        let when = When::Between(Duration::from_secs(2), Duration::from_secs(8));
        let draws: Vec<_> = (0..50).map(|s| when.draw(Seed::new(s))).collect();
        assert!(draws.iter().all(|d| (2000..=8000).contains(&d.as_millis())));
        assert!(draws.iter().any(|d| *d != draws[0]));
        assert_eq!(when.draw(Seed::new(3)), draws[3]);
    }

    #[test]
    fn signed_skews_and_round_trip_durations() {
        assert_eq!(parse_signed_ms("-90s"), Ok(-90_000));
        assert_eq!(parse_signed_ms("+5m"), Ok(300_000));
        assert_eq!(parse_signed_ms("250ms"), Ok(250));
        for text in ["1500ms", "2s", "5m", "1h", "250us", "0s"] {
            let parsed = text.parse::<Dur>().unwrap().0;
            assert_eq!(format_duration(parsed), text);
        }
    }
}
