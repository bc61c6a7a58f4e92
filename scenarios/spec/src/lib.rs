//! The scenario file format (TOML). Only this crate knows it.
//!
//! Parsing is strict: unknown fields are errors, and every error, syntactic
//! or semantic, names `file:line:column` and says what was expected.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

mod app;
mod checks;
pub mod distribution;
mod faults;
pub mod import;
pub mod mesh;
mod overrides;
mod phases;
pub mod slo;
pub mod synthetic;
mod workload;

pub use app::AppSpec;
pub use checks::{CheckSpec, Property};
pub use distribution::{Distribution, Family, ServiceTime, Size};
pub use faults::{
    ActionKind, FaultPlan, FaultSpec, Groups, Names, ResolvedFault, SEED_LABEL_FAULTS, SwarmSpec,
    When, format_duration, parse_signed_ms, stretch,
};
pub use mesh::MeshSpec;
pub use overrides::Override;
pub use phases::PhasesSpec;
pub use synthetic::{CallSpec, EndpointSpec, OnFailure, Step};

pub use workload::{OpSpec, Operation, PhaseSpec, WorkloadSpec};

/// A duration written as `250ms`, `2s`, `5m`, `24h` (or `1500us`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number.parse().map_err(|_| {
            format!("expected a duration like \"250ms\" or \"2s\", found \"{text}\"")
        })?;
        let seconds = match unit {
            "us" => value / 1e6,
            "ms" => value / 1e3,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => {
                return Err(format!(
                    "unknown duration unit \"{unit}\" in \"{text}\"; expected us, ms, s, m or h"
                ));
            }
        };
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(format!("duration \"{text}\" is out of range"));
        }
        Duration::try_from_secs_f64(seconds)
            .map(Dur)
            .map_err(|_| format!("duration \"{text}\" is out of range"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name; used in output paths.
    pub name: String,
    /// What the scenario proves.
    #[serde(default)]
    pub description: String,
    /// Seed used when `--seed` is not given.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulator settings.
    #[serde(default)]
    pub sim: SimSpec,
    /// Mesh-wide settings.
    #[serde(default)]
    pub mesh: MeshSpec,
    /// The services and their replicas.
    pub services: Vec<ServiceSpec>,
    /// The load.
    pub workload: WorkloadSpec,
    /// The REC application's settings.
    #[serde(default)]
    pub app: AppSpec,
    /// Named groups of hosts that faults can name.
    #[serde(default)]
    pub groups: Groups,
    /// Timed faults.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Safety, heal and liveness phases.
    #[serde(default)]
    pub phases: Option<PhasesSpec>,
    /// Bounds for `meshsim explore --swarm`.
    #[serde(default)]
    pub swarm: Option<SwarmSpec>,
    /// SLOs to check.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Every file besides the scenario itself that the run depends on
    /// (imported mesh YAML, empirical distributions), so the scenario's
    /// hash can cover them.
    #[serde(skip)]
    pub inputs: std::collections::BTreeSet<PathBuf>,
}

fn default_seed() -> u64 {
    1
}

/// Which simulated network a run uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// `sim::EventWorld`: one paused runtime, exact delivery and service
    /// times, cost per event rather than per host and tick.
    #[default]
    Event,
    /// `sim::SimWorld` on turmoil: the reference backend, ticked.
    Turmoil,
}

/// Simulator settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSpec {
    pub network: Network,
    /// turmoil's tick (its time resolution); the event world has none.
    pub tick: Option<Spanned<Dur>>,
    /// Fastest one-way link latency.
    pub link_latency_min: Dur,
    /// Slowest one-way link latency; the spread is seeded jitter.
    pub link_latency_max: Dur,
}

/// turmoil's tick when the file names none.
pub const TURMOIL_TICK_DEFAULT: Duration = Duration::from_millis(1);

impl Default for SimSpec {
    fn default() -> Self {
        SimSpec {
            network: Network::Event,
            tick: None,
            link_latency_min: Dur(Duration::from_millis(1)),
            link_latency_max: Dur(Duration::from_millis(3)),
        }
    }
}

impl SimSpec {
    /// The tick turmoil steps by.
    pub fn turmoil_tick(&self) -> Duration {
        self.tick
            .as_ref()
            .map_or(TURMOIL_TICK_DEFAULT, |t| t.get_ref().0)
    }

    /// A tick is turmoil's alone, and turmoil keeps time in whole
    /// milliseconds: a finer tick reports sim time too small and never
    /// fires a timed fault.
    fn validate(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        let Some(tick) = &self.tick else {
            return Ok(());
        };
        let span = Some(tick.span());
        if self.network == Network::Event {
            return Err(locate.error(
                span,
                "tick applies only to network = \"turmoil\"; the event world delivers at exact times and has no tick (remove it)",
            ));
        }
        let tick = tick.get_ref().0;
        if tick < Duration::from_millis(1) || tick.subsec_nanos() % 1_000_000 != 0 {
            return Err(locate.error(
                span,
                format!("turmoil's tick must be a whole number of milliseconds, at least 1ms (got {tick:?})"),
            ));
        }
        Ok(())
    }
}

/// Which application a service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// Client-facing API: authenticates and routes to the services.
    Gateway,
    /// REC issuance, ownership and retirement (stateless tier).
    Registry,
    /// Limit order books and matching (stateless tier).
    Market,
    /// Moves RECs and cash for every trade, exactly once (saga workers).
    Settlement,
    /// Participants, tokens and cash (stateless tier).
    Accounts,
    /// The registry's database: an event-sourced store.
    RegistryDb,
    /// The market's database.
    MarketDb,
    /// The settlement outbox and saga state.
    SettlementDb,
    /// The accounts database.
    AccountsDb,
    /// Mesh-focused scenarios' client-facing app: calls `registry`.
    Edge,
    /// Mesh-focused scenarios' backend: balances in memory.
    Backend,
    /// A service described by its endpoints (`[[services.endpoints]]`).
    Synthetic,
}

/// One service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name; hosts are `<name>-<replica>`.
    pub name: Spanned<String>,
    /// The application.
    pub app: AppKind,
    /// Number of replicas.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Service time per request (for a synthetic service, the default of
    /// its endpoints).
    #[serde(default)]
    pub service_time: Option<ServiceTime>,
    /// Requests served at once; more wait in line.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// A synthetic service's endpoints.
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
}

fn one() -> u32 {
    1
}

fn default_concurrency() -> u32 {
    16
}

/// A scenario error located in its file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    /// A `--set` override is malformed or makes the scenario invalid.
    #[error("{path}: {message}")]
    Override { path: PathBuf, message: String },
    /// The file is not a valid scenario.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> SpecError {
        let (line, column) = line_column(self.text, span.map_or(0, |s| s.start));
        SpecError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// The one wording of the name errors every section reports, so a user
/// reads the same sentence whether the bad name is in a route, a fault or
/// a check.
impl Scenario {
    /// The declared services, in file order.
    pub(crate) fn service_names(&self) -> Vec<&str> {
        self.services
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .collect()
    }

    /// `None` when `name` is a service (or, where `client_ok`, the load
    /// generator); otherwise the message, naming what `role` it plays.
    pub(crate) fn unknown_service(
        &self,
        role: &str,
        name: &str,
        client_ok: bool,
    ) -> Option<String> {
        let services = self.service_names();
        let known = services.contains(&name) || (client_ok && name == seam::hosts::LOADGEN);
        (!known).then(|| format!("{role} \"{name}\" is not a service; services are {services:?}"))
    }
}

/// The message for a name declared twice.
pub(crate) fn defined_twice(role: &str, name: &str) -> String {
    format!("{role} \"{name}\" is defined twice")
}

/// A scenario file's text; invalid UTF-8 is reported at its position.
fn read_text(path: &Path) -> Result<String, SpecError> {
    let bytes = std::fs::read(path).map_err(|e| SpecError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let (line, column) = line_column(&String::from_utf8_lossy(&e.into_bytes()[..at]), at);
        SpecError::Invalid {
            path: path.to_owned(),
            line,
            column,
            message: "the file is not valid UTF-8".into(),
        }
    })
}

/// The hex SHA-256 of scenario text as run (see [`Scenario::load_as_run`]).
pub fn scenario_sha256(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// `text` with a `# meshsim input PATH sha256 HEX` line appended for each
/// of the scenario's input files (paths relative to the scenario's folder,
/// so the hash is the same on every machine).
fn with_input_digests(
    path: &Path,
    scenario: &Scenario,
    mut text: String,
) -> Result<String, SpecError> {
    use sha2::Digest as _;
    let base = path.parent().unwrap_or(Path::new(""));
    for input in &scenario.inputs {
        let bytes = std::fs::read(input).map_err(|e| SpecError::Read {
            path: input.clone(),
            message: e.to_string(),
        })?;
        let shown = input.strip_prefix(base).unwrap_or(input);
        text.push_str(&format!(
            "\n# meshsim input {} sha256 {}",
            shown.display(),
            hex::encode(sha2::Sha256::digest(&bytes))
        ));
    }
    Ok(text)
}

/// Whether `name` occurs more than once among `names`.
pub(crate) fn repeated<'n>(names: impl IntoIterator<Item = &'n str>, name: &str) -> bool {
    names.into_iter().filter(|n| *n == name).count() > 1
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, SpecError> {
        Scenario::load_with(path, &[])
    }

    /// Reads a scenario file and applies `--set` overrides before parsing.
    /// The file must be valid by itself; an override that breaks it is
    /// reported against the override.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Scenario, SpecError> {
        Scenario::load_as_run(path, overrides).map(|(scenario, _)| scenario)
    }

    /// Like [`Scenario::load_with`], and also returns the text the scenario
    /// was parsed from (the file after `--set`), followed by one line per
    /// file it read besides itself (imported YAML, empirical
    /// distributions) with that file's SHA-256: what `scenario_sha256` in
    /// `summary.json` hashes, so two runs with the same hash ran the same
    /// scenario whether it was edited, overridden or fed other files.
    pub fn load_as_run(
        path: &Path,
        overrides: &[Override],
    ) -> Result<(Scenario, String), SpecError> {
        let (scenario, text) = Scenario::load_text_as_run(path, overrides)?;
        let text = with_input_digests(path, &scenario, text)?;
        Ok((scenario, text))
    }

    fn load_text_as_run(
        path: &Path,
        overrides: &[Override],
    ) -> Result<(Scenario, String), SpecError> {
        let text = read_text(path)?;
        let scenario = Scenario::parse(path, &text)?;
        if overrides.is_empty() {
            return Ok((scenario, text));
        }
        let overridden =
            overrides::apply(&text, overrides).map_err(|message| SpecError::Override {
                path: path.to_owned(),
                message,
            })?;
        let list = overrides
            .iter()
            .map(|o| format!("--set {o}"))
            .collect::<Vec<_>>()
            .join(" ");
        let scenario = Scenario::parse(path, &overridden).map_err(|e| {
            let message = match e {
                SpecError::Invalid { message, .. } => message,
                other => other.to_string(),
            };
            SpecError::Override {
                path: path.to_owned(),
                message: format!("{list}: {message}"),
            }
        })?;
        Ok((scenario, overridden))
    }

    /// Parses and validates scenario text; `path` is only for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, SpecError> {
        let locate = Locator { path, text };
        let mut scenario: Scenario = toml::from_str(text)
            .map_err(|e| locate.error(e.span(), e.message().trim().to_owned()))?;
        import::apply(&mut scenario, path, &locate)?;
        let base = path.parent().unwrap_or(Path::new("."));
        scenario
            .load_empirical(base)
            .map_err(|(span, message)| locate.error(Some(span), message))?;
        scenario.validate(&locate)?;
        Ok(scenario)
    }

    fn validate(&self, locate: &Locator<'_>) -> Result<(), SpecError> {
        self.sim.validate(locate)?;
        let services: Vec<&str> = self
            .services
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .collect();
        if services.is_empty() {
            return Err(locate.error(None, "a scenario needs at least one [[services]] entry"));
        }
        for service in &self.services {
            let name = service.name.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(locate.error(
                    Some(service.name.span()),
                    format!("service name \"{name}\" must be lowercase letters, digits and '-'"),
                ));
            }
            if repeated(services.iter().copied(), name) {
                return Err(locate.error(Some(service.name.span()), defined_twice("service", name)));
            }
            if service.replicas == 0 || service.concurrency == 0 {
                return Err(locate.error(
                    Some(service.name.span()),
                    format!("service \"{name}\" needs replicas >= 1 and concurrency >= 1"),
                ));
            }
            if let Some(message) = self.replica_name_clash(name) {
                return Err(locate.error(Some(service.name.span()), message));
            }
        }
        let target = &self.workload.target;
        if let Some(message) = self.unknown_service("workload target", target.get_ref(), false) {
            return Err(locate.error(Some(target.span()), message));
        }
        if self.workload.phases.is_empty() {
            return Err(locate.error(
                Some(target.span()),
                "the workload needs at least one [[workload.phases]] entry",
            ));
        }
        for (index, phase) in self.workload.phases.iter().enumerate() {
            if self.workload.phases[..index]
                .iter()
                .any(|p| p.name == phase.name)
            {
                return Err(locate.error(
                    Some(phase.arrival.span()),
                    defined_twice("phase", &phase.name)
                        + "; phases run back to back and SLOs name them, so names must be unique",
                ));
            }
            let rate = phase.arrival.get_ref().rate();
            if !(rate.is_finite() && rate > 0.0) {
                return Err(locate.error(Some(phase.arrival.span()), format!("phase \"{}\" has rate {rate}; expected a positive number of requests per second", phase.name)));
            }
        }
        if self.workload.mix.iter().all(|op| op.weight == 0) {
            return Err(locate.error(
                Some(target.span()),
                "the operation mix needs a positive weight",
            ));
        }
        for op in &self.workload.mix {
            let at = op.path.as_ref().map_or(target.span(), |p| p.span());
            let message = match (&op.operation, &op.path) {
                (Some(_), Some(_)) => Some(
                    "a [[workload.mix]] entry is a REC `operation` or a synthetic `path`, not both",
                ),
                (None, None) => Some(
                    "a [[workload.mix]] entry needs an `operation` (REC) or a `path` (synthetic service)",
                ),
                (Some(_), None)
                    if op.method.is_some()
                        || op.name.is_some()
                        || op.request_bytes > 0
                        || op.request_size.is_some() =>
                {
                    Some(
                        "`method`, `name`, `request_bytes` and `request_size` apply to a synthetic `path`, not to a REC `operation`",
                    )
                }
                _ if op.request_bytes > 0 && op.request_size.is_some() => {
                    Some("give a mix entry `request_bytes` or `request_size`, not both")
                }
                _ if op
                    .method
                    .as_deref()
                    .is_some_and(|m| !synthetic::is_method(m)) =>
                {
                    Some("`method` must be an HTTP method in capitals, like GET or POST")
                }
                _ => None,
            };
            if let Some(message) = message {
                return Err(locate.error(Some(at), message));
            }
        }
        self.validate_synthetic(locate)?;
        self.validate_phases(locate)?;
        self.validate_faults(locate)?;
        self.validate_swarm(locate)?;
        self.mesh.validate(self, locate)?;
        self.validate_checks(locate)?;
        Ok(())
    }

    /// Reads every empirical distribution's file, relative to `base`.
    fn load_empirical(&mut self, base: &Path) -> Result<(), (Range<usize>, String)> {
        use distribution::Unit;
        let inputs = &mut self.inputs;
        for service in &mut self.services {
            if let Some(t) = &mut service.service_time {
                t.0.load(base, Unit::Duration, inputs)?;
            }
            for endpoint in &mut service.endpoints {
                if let Some(t) = &mut endpoint.service_time {
                    t.0.load(base, Unit::Duration, inputs)?;
                }
                if let Some(size) = &mut endpoint.response_size {
                    size.0.load(base, Unit::Bytes, inputs)?;
                }
                for step in &mut endpoint.script {
                    for call in step.calls_mut() {
                        if let Some(size) = &mut call.request_size {
                            size.0.load(base, Unit::Bytes, inputs)?;
                        }
                    }
                }
            }
        }
        for op in &mut self.workload.mix {
            if let Some(size) = &mut op.request_size {
                size.0.load(base, Unit::Bytes, inputs)?;
            }
        }
        Ok(())
    }

    /// A service named like another service's replica host (`svc1-1` beside
    /// `svc1` with two replicas) would share its name with that host.
    fn replica_name_clash(&self, name: &str) -> Option<String> {
        let (owner, index) = name.rsplit_once('-')?;
        let index: u32 = index.parse().ok()?;
        let service = self.services.iter().find(|s| s.name.get_ref() == owner)?;
        (index < service.replicas).then(|| {
            format!(
                "service \"{name}\" has the name of replica {index} of service \"{owner}\" (meshsim names replica hosts SERVICE-N); rename one"
            )
        })
    }

    /// Every host the scenario creates, in a stable order.
    pub fn host_names(&self) -> Vec<String> {
        let mut hosts = vec!["ca".to_owned(), "control".to_owned()];
        for service in &self.services {
            hosts.extend((0..service.replicas).map(|i| format!("{}-{i}", service.name.get_ref())));
        }
        hosts.push("loadgen".to_owned());
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[[services]]
name = "gateway"
app = "gateway"
service_time = { distribution = "constant", mean = "1ms" }
[workload]
target = "gateway"
[[workload.phases]]
name = "steady"
duration = "1s"
arrival = { kind = "constant", rate = 10 }
[[workload.mix]]
operation = "quote"
weight = 1
"#;

    fn error_of(text: &str) -> String {
        Scenario::parse(Path::new("x.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn minimal_scenario_parses() {
        let scenario = Scenario::parse(Path::new("x.toml"), MINIMAL).unwrap();
        assert_eq!(
            scenario.host_names(),
            ["ca", "control", "gateway-0", "loadgen"]
        );
    }

    #[test]
    fn unknown_field_names_file_line_and_column() {
        let text = MINIMAL.replace("weight = 1", "weight = 1\nwieght = 2");
        let message = error_of(&text);
        assert!(message.starts_with("x.toml:16:1:"), "{message}");
        assert!(message.contains("wieght"), "{message}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let message = error_of(&MINIMAL.replace("target = \"gateway\"", "target = \"nope\""));
        assert!(message.starts_with("x.toml:8:10:"), "{message}");
        let message = error_of(&MINIMAL.replace("rate = 10", "rate = -5"));
        assert!(message.contains("positive"), "{message}");
        let message = error_of(&format!(
            "{MINIMAL}\n[[checks]]\nname = \"c\"\nslo = \"p(101) < 1ms\"\n"
        ));
        assert!(message.contains("percentile 101"), "{message}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!("24h".parse::<Dur>().unwrap().0, Duration::from_secs(86_400));
        assert!("5 parsecs".parse::<Dur>().is_err());
        assert!("fast".parse::<Dur>().is_err());
    }

    #[test]
    fn scopes_must_name_a_phase_or_route_that_exists() {
        let scoped = |field: &str| {
            error_of(&format!(
                "{MINIMAL}\n[[checks]]\nname = \"c\"\n{field}\nslo = \"p(99) < 1ms\"\n"
            ))
        };
        let message = scoped("phase = \"peak\"");
        assert!(message.starts_with("x.toml:19:9:"), "{message}");
        assert!(message.contains("[\"steady\"]"), "{message}");
        let message = scoped("route = \"orders\"");
        assert!(message.contains("route \"orders\""), "{message}");
        let ok = format!(
            "{MINIMAL}\n[[checks]]\nname = \"c\"\nphase = \"steady\"\nslo = \"p(99) < 1ms\"\nabort_on_fail = true\n"
        );
        Scenario::parse(Path::new("x.toml"), &ok).unwrap();
    }

    #[test]
    fn property_checks_refuse_slo_options_and_need_their_fields() {
        let property = |extra: &str| {
            error_of(&format!(
                "{MINIMAL}\n[[checks]]\nname = \"c\"\nproperty = \"caller_cut_off\"\nwithin = \"1s\"\n{extra}\n"
            ))
        };
        assert!(property("").contains("needs `caller"));
        assert!(
            property("caller = \"x\"\nservice = \"gateway\"").contains("\"x\" is not a service")
        );
        assert!(
            property("caller = \"loadgen\"\nservice = \"gateway\"\nphase = \"steady\"")
                .contains("`phase` applies to SLOs")
        );
    }

    /// Every key and enum value the format's serde types accept, read from
    /// their source: the field names of each `Deserialize` struct (after
    /// `rename`) and the snake_case variants of each `Deserialize` enum.
    fn documented_names(source: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut attributes = String::new();
        let mut inside: Option<bool> = None; // Some(is_enum) inside a serde type
        let mut rename: Option<String> = None;
        for line in source.lines().map(str::trim) {
            if line.starts_with("#[") {
                attributes.push_str(line);
                if let Some(at) = line.find("rename = \"") {
                    let rest = &line[at + 10..];
                    rename = rest.split('"').next().map(str::to_owned);
                }
                continue;
            }
            if line.starts_with("///") || line.is_empty() {
                continue;
            }
            let serde_type = attributes.contains("Deserialize");
            if inside.is_none()
                && serde_type
                && line.starts_with("pub struct")
                && line.ends_with('{')
            {
                inside = Some(false);
            } else if inside.is_none() && serde_type && line.starts_with("pub enum") {
                inside = Some(true);
            } else if line == "}" {
                inside = None;
            } else if inside == Some(false)
                && line.starts_with("pub ")
                && !attributes.contains("#[serde(skip)]")
            {
                // A skipped field is not a key of the format.
                let field = line[4..].split(':').next().unwrap_or("").to_owned();
                names.push(rename.take().unwrap_or(field));
            } else if inside == Some(true) && line.starts_with(|c: char| c.is_ascii_uppercase()) {
                let variant: String = line.chars().take_while(|c| c.is_alphanumeric()).collect();
                let mut snake = String::new();
                for (i, c) in variant.chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        snake.push('_');
                    }
                    snake.push(c.to_ascii_lowercase());
                }
                names.push(snake);
            }
            rename = None;
            attributes.clear();
        }
        names
    }

    #[test]
    fn the_readme_documents_every_key_and_value_of_the_format() {
        let readme = include_str!("../../README.md");
        let mentioned = |name: &str| {
            readme.match_indices(name).any(|(at, _)| {
                let word =
                    |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                !word(readme[..at].chars().next_back())
                    && !word(readme[at + name.len()..].chars().next())
            })
        };
        let sources = [
            include_str!("lib.rs"),
            include_str!("app.rs"),
            include_str!("workload.rs"),
            include_str!("faults.rs"),
            include_str!("phases.rs"),
            include_str!("checks.rs"),
            include_str!("mesh.rs"),
            include_str!("distribution.rs"),
            include_str!("synthetic.rs"),
        ];
        let names: Vec<String> = sources.iter().flat_map(|s| documented_names(s)).collect();
        assert!(
            names.len() > 150,
            "the scan found only {} names",
            names.len()
        );
        for probe in [
            "abort_on_fail",
            "link_latency_max",
            "match",
            "caller_cut_off",
            "apply_config",
        ] {
            assert!(names.iter().any(|n| n == probe), "the scan missed {probe}");
        }
        let missing: Vec<&String> = names.iter().filter(|n| !mentioned(n)).collect();
        assert!(
            missing.is_empty(),
            "scenarios/README.md does not mention {missing:?}"
        );
    }
}
