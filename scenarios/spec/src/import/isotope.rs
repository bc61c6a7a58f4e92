//! Istio's isotope topologies (`kind: MockServiceGraph`, from
//! `istio/tools/isotope`) become a runnable scenario of synthetic services.
//!
//! Isotope describes each service by its replicas, error rate, response
//! size and a script of `sleep` and `call` commands, where a nested list is
//! a group of calls sent together. Each isotope service becomes one
//! synthetic service with one endpoint (`GET /`, since an isotope service
//! answers every path alike), its sleeps summed into a constant service
//! time, its calls into the endpoint's script. The entrypoint gets an
//! open-loop Poisson workload for the user to edit.
//!
//! Unlike the mesh-policy import, nothing is skipped with a warning: an
//! isotope key this import does not understand is an error with its
//! `file:line:column`, since a topology with a field silently dropped
//! would model another system.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::yaml::{self, Fields, Node, Pos, Sink, Value};
use crate::SpecError;

/// What a service and `defaults:` both set.
#[derive(Clone, Debug)]
struct Settings {
    replicas: i64,
    entrypoint: bool,
    error_rate: f64,
    response_bytes: u64,
    script: Script,
}

/// Isotope's own converter's values when a file gives none.
impl Default for Settings {
    fn default() -> Self {
        Settings {
            replicas: 1,
            entrypoint: false,
            error_rate: 0.0,
            response_bytes: 0,
            script: Script::default(),
        }
    }
}

/// One isotope service as read.
#[derive(Clone, Debug)]
struct Service {
    name: String,
    at: Pos,
    settings: Settings,
}

/// A script as read: sleeps summed, calls in order.
#[derive(Clone, Debug, Default)]
struct Script {
    sleep_us: u64,
    /// True when a sleep follows a call: meshsim runs the service time
    /// before the calls, which keeps the sojourn but not the order.
    sleep_after_call: bool,
    steps: Vec<Vec<Call>>,
}

#[derive(Clone, Debug)]
struct Call {
    service: String,
    at: Pos,
    request_bytes: u64,
}

/// The values `defaults:` sets for every service and call.
#[derive(Clone, Debug, Default)]
struct Defaults {
    settings: Settings,
    request_bytes: u64,
}

/// Reads an isotope topology and writes the equivalent scenario.
pub fn isotope_scenario(path: &Path, text: &str) -> Result<String, SpecError> {
    let sink = Sink::new(path);
    let documents = yaml::parse_documents(&sink, text)?;
    let [document] = documents.as_slice() else {
        return Err(sink.error(
            Pos { line: 1, column: 1 },
            format!(
                "expected one isotope topology document, found {}",
                documents.len()
            ),
        ));
    };
    let fields = document.fields(&sink, "topology")?;
    fields.ignore("apiVersion");
    if let Some(kind) = fields.get("kind") {
        let name = kind.str(&sink, "kind")?;
        if name != "MockServiceGraph" {
            return Err(sink.error(
                kind.at,
                format!("kind: expected MockServiceGraph (an isotope topology), found {name}"),
            ));
        }
    }
    let defaults = match fields.get("defaults") {
        Some(node) => read_defaults(&sink, node)?,
        None => Defaults::default(),
    };
    let services_node = fields.require(&sink, "services")?;
    let mut services = Vec::new();
    for node in services_node.seq(&sink, "services")? {
        services.push(read_service(&sink, node, &defaults)?);
    }
    strict_finish(fields, &sink)?;
    check_graph(&sink, &services, services_node.at)?;
    Ok(render(path, text, &services))
}

fn read_defaults(sink: &Sink, node: &Node) -> Result<Defaults, SpecError> {
    let fields = node.fields(sink, "defaults")?;
    let mut defaults = Defaults::default();
    // Read first: the defaults' own script sends requests of this size.
    if let Some(n) = fields.get("requestSize") {
        defaults.request_bytes = byte_size(sink, n, "defaults.requestSize")?;
    }
    read_settings(
        sink,
        &fields,
        "defaults.",
        defaults.request_bytes,
        &mut defaults.settings,
    )?;
    strict_finish(fields, sink)?;
    Ok(defaults)
}

fn read_service(sink: &Sink, node: &Node, defaults: &Defaults) -> Result<Service, SpecError> {
    let fields = node.fields(sink, "service")?;
    let name = fields.require(sink, "name")?.str(sink, "name")?.to_owned();
    let mut settings = defaults.settings.clone();
    read_settings(sink, &fields, "", defaults.request_bytes, &mut settings)?;
    strict_finish(fields, sink)?;
    Ok(Service {
        name,
        at: node.at,
        settings,
    })
}

/// The keys a service and `defaults:` share, over what `settings` holds;
/// `prefix` names the mapping in messages.
fn read_settings(
    sink: &Sink,
    fields: &Fields<'_>,
    prefix: &str,
    request_bytes: u64,
    settings: &mut Settings,
) -> Result<(), SpecError> {
    check_type(sink, fields)?;
    if let Some(n) = fields.get("numReplicas") {
        settings.replicas = replicas(sink, n, &format!("{prefix}numReplicas"))?;
    }
    if let Some(n) = fields.get("isEntrypoint") {
        settings.entrypoint = n.bool(sink, &format!("{prefix}isEntrypoint"))?;
    }
    if let Some(n) = fields.get("errorRate") {
        settings.error_rate = percentage(sink, n, &format!("{prefix}errorRate"))?;
    }
    if let Some(n) = fields.get("responseSize") {
        settings.response_bytes = byte_size(sink, n, &format!("{prefix}responseSize"))?;
    }
    if let Some(n) = fields.get("script") {
        settings.script = read_script(sink, n, request_bytes)?;
    }
    Ok(())
}

/// `type: http` and `type: grpc` both become HTTP: between sidecars every
/// call is HTTP/2 already, and gRPC's framing adds nothing the model sees.
fn check_type(sink: &Sink, fields: &Fields<'_>) -> Result<(), SpecError> {
    if let Some(node) = fields.get("type") {
        let kind = node.str(sink, "type")?;
        if !matches!(kind, "http" | "grpc") {
            return Err(sink.error(
                node.at,
                format!("type: expected http or grpc, found {kind}"),
            ));
        }
    }
    Ok(())
}

fn read_script(sink: &Sink, node: &Node, request_bytes: u64) -> Result<Script, SpecError> {
    let mut script = Script::default();
    for step in node.seq(sink, "script")? {
        match &step.value {
            Value::Seq(group) => {
                let mut calls = Vec::new();
                for item in group {
                    calls.push(read_call_command(sink, item, request_bytes)?);
                }
                if calls.is_empty() {
                    return Err(sink.error(step.at, "script: a concurrent group needs a call"));
                }
                script.steps.push(calls);
            }
            Value::Map(_) => read_command(sink, step, request_bytes, &mut script)?,
            _ => {
                return Err(sink.error(
                    step.at,
                    format!(
                        "script: expected a command (`sleep: 10ms` or `call: NAME`) or a list of calls, found {}",
                        step.kind()
                    ),
                ));
            }
        }
    }
    Ok(script)
}

fn read_command(
    sink: &Sink,
    node: &Node,
    request_bytes: u64,
    script: &mut Script,
) -> Result<(), SpecError> {
    let fields = node.fields(sink, "command")?;
    if let Some(sleep) = fields.get("sleep") {
        script.sleep_us += sleep_us(sink, sleep)?;
        script.sleep_after_call |= !script.steps.is_empty();
        return strict_finish(fields, sink);
    }
    drop(fields);
    let call = read_call_command(sink, node, request_bytes)?;
    script.steps.push(vec![call]);
    Ok(())
}

/// `call: NAME` or `call: { service: NAME, size: 10K }`. Inside a
/// concurrent group only calls are allowed: meshsim's groups wait for
/// their calls, and a sleep beside them has no place in that model.
fn read_call_command(sink: &Sink, node: &Node, request_bytes: u64) -> Result<Call, SpecError> {
    let fields = node.fields(sink, "command")?;
    let Some(call) = fields.get("call") else {
        let message = if fields.get("sleep").is_some() {
            "a sleep inside a concurrent group is not supported: meshsim sends a group's calls together and waits for all of them; move the sleep before the group"
        } else {
            "expected a command: `sleep: DURATION` or `call: SERVICE`"
        };
        return Err(sink.error(node.at, message));
    };
    let parsed = match &call.value {
        Value::Str(service) => Call {
            service: service.clone(),
            at: call.at,
            request_bytes,
        },
        Value::Map(_) => {
            let inner = call.fields(sink, "call")?;
            let service = inner.require(sink, "service")?;
            let size = match inner.get("size") {
                Some(n) => byte_size(sink, n, "call.size")?,
                None => request_bytes,
            };
            let parsed = Call {
                service: service.str(sink, "call.service")?.to_owned(),
                at: service.at,
                request_bytes: size,
            };
            strict_finish(inner, sink)?;
            parsed
        }
        _ => {
            return Err(sink.error(
                call.at,
                format!(
                    "call: expected a service name or {{ service, size }}, found {}",
                    call.kind()
                ),
            ));
        }
    };
    strict_finish(fields, sink)?;
    Ok(parsed)
}

/// Every key of an isotope mapping must have been read: an unknown one is
/// an error, not a warning (see the module comment).
fn strict_finish(fields: Fields<'_>, sink: &Sink) -> Result<(), SpecError> {
    let mut unread = Sink::new(&sink.path);
    fields.finish(&mut unread);
    match unread.warnings.into_iter().next() {
        Some(first) => Err(SpecError::Invalid {
            path: first.path,
            line: first.line,
            column: first.column,
            message: first.message.replace(
                "is not read by meshsim's import (ignored)",
                "is not supported by meshsim's isotope import",
            ),
        }),
        None => Ok(()),
    }
}

fn replicas(sink: &Sink, node: &Node, what: &str) -> Result<i64, SpecError> {
    let n = node.int(sink, what)?;
    if !(1..=1000).contains(&n) {
        return Err(sink.error(node.at, format!("{what}: expected 1 to 1000, found {n}")));
    }
    Ok(n)
}

/// Isotope's percentage: a number in [0, 1] or a string `"0.01%"`.
fn percentage(sink: &Sink, node: &Node, what: &str) -> Result<f64, SpecError> {
    let value = match &node.value {
        Value::Str(text) => {
            let number = text.trim().strip_suffix('%').ok_or_else(|| {
                sink.error(
                    node.at,
                    format!("{what}: expected a percentage like \"0.5%\", found \"{text}\""),
                )
            })?;
            let parsed: f64 = number.trim().parse().map_err(|_| {
                sink.error(
                    node.at,
                    format!("{what}: expected a percentage like \"0.5%\", found \"{text}\""),
                )
            })?;
            parsed / 100.0
        }
        _ => node.number(sink, what)?,
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(sink.error(
            node.at,
            format!("{what}: expected between 0% and 100%, found {value}"),
        ));
    }
    Ok(value)
}

/// Isotope's byte size (docker's `RAMInBytes`): a whole number of bytes or
/// a string like `"16 KB"`, `"10k"` or `"1MiB"`, with binary multiples.
fn byte_size(sink: &Sink, node: &Node, what: &str) -> Result<u64, SpecError> {
    let invalid = || {
        sink.error(
            node.at,
            format!("{what}: expected a size like 1024, \"16 KB\" or \"10k\""),
        )
    };
    match &node.value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| invalid()),
        Value::Str(text) => parse_byte_size(text).ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let multiple: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    // Sizes are whole bytes; rounding a fractional "1.5k" is the converter's
    // behaviour too.
    let bytes = (value * multiple as f64).round();
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// A Go duration (`"100ms"`, `"1.5s"`, `"1m30s"`), in microseconds.
fn sleep_us(sink: &Sink, node: &Node) -> Result<u64, SpecError> {
    let Value::Str(text) = &node.value else {
        return Err(sink.error(
            node.at,
            format!(
                "sleep: only a fixed duration like \"10ms\" is supported, found {}; give the service a distribution in the imported scenario's service_time instead",
                node.kind()
            ),
        ));
    };
    parse_go_duration_us(text).ok_or_else(|| {
        sink.error(
            node.at,
            format!("sleep: expected a duration like \"10ms\" or \"1.5s\", found \"{text}\""),
        )
    })
}

fn parse_go_duration_us(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total_us = 0.0;
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(split);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let us_per_unit = match unit {
            "ns" => 1e-3,
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" => 60e6,
            "h" => 3600e6,
            _ => return None,
        };
        total_us += value * us_per_unit;
        rest = next;
    }
    let rounded = total_us.round();
    (rounded.is_finite() && rounded >= 0.0).then_some(rounded as u64)
}

/// Calls name services that exist; the graph has no cycle; there is one
/// entrypoint; every service is reachable from it.
fn check_graph(sink: &Sink, services: &[Service], list_at: Pos) -> Result<(), SpecError> {
    let mut index = BTreeMap::new();
    for service in services {
        if index.insert(service.name.as_str(), service).is_some() {
            return Err(sink.error(
                service.at,
                format!("service \"{}\" is defined twice", service.name),
            ));
        }
    }
    for service in services {
        if let Some((owner, replica)) = service.name.rsplit_once('-')
            && let Ok(replica) = replica.parse::<i64>()
            && index
                .get(owner)
                .is_some_and(|o| replica < o.settings.replicas)
        {
            return Err(sink.error(
                service.at,
                format!(
                    "service \"{}\" has the name of replica {replica} of service \"{owner}\" (meshsim names replica hosts SERVICE-N); rename one",
                    service.name
                ),
            ));
        }
    }
    for service in services {
        for call in service.settings.script.steps.iter().flatten() {
            if !index.contains_key(call.service.as_str()) {
                return Err(sink.error(
                    call.at,
                    format!(
                        "call: \"{}\" calls unknown service \"{}\"",
                        service.name, call.service
                    ),
                ));
            }
        }
    }
    let entrypoints: Vec<&Service> = services.iter().filter(|s| s.settings.entrypoint).collect();
    match entrypoints.as_slice() {
        [] => {
            return Err(sink.error(
                list_at,
                "no service has isEntrypoint: true; meshsim's workload needs one to send load to",
            ));
        }
        [_] => {}
        [_, second, ..] => {
            return Err(sink.error(
                second.at,
                format!(
                    "service \"{}\" is a second entrypoint; meshsim's workload targets one service, so mark only one isEntrypoint: true",
                    second.name
                ),
            ));
        }
    }
    for service in services {
        let mut path = Vec::new();
        if let Some(call) = find_cycle(&index, service, &mut path) {
            return Err(sink.error(
                call.at,
                format!("the call graph has a cycle: {}", path.join(" → ")),
            ));
        }
    }
    let mut reached = std::collections::BTreeSet::new();
    mark_reached(&index, entrypoints[0], &mut reached);
    match services.iter().find(|s| !reached.contains(s.name.as_str())) {
        Some(unreached) => Err(sink.error(
            unreached.at,
            format!(
                "service \"{}\" is never called from the entrypoint \"{}\"; remove it or call it",
                unreached.name, entrypoints[0].name
            ),
        )),
        None => Ok(()),
    }
}

fn find_cycle<'s>(
    index: &BTreeMap<&str, &'s Service>,
    service: &'s Service,
    path: &mut Vec<String>,
) -> Option<&'s Call> {
    path.push(service.name.clone());
    for call in service.settings.script.steps.iter().flatten() {
        if path.contains(&call.service) {
            path.push(call.service.clone());
            return Some(call);
        }
        if let Some(found) = find_cycle(index, index[call.service.as_str()], path) {
            return Some(found);
        }
    }
    path.pop();
    None
}

fn mark_reached<'s>(
    index: &BTreeMap<&str, &'s Service>,
    service: &'s Service,
    reached: &mut std::collections::BTreeSet<&'s str>,
) {
    if !reached.insert(service.name.as_str()) {
        return;
    }
    for call in service.settings.script.steps.iter().flatten() {
        mark_reached(index, index[call.service.as_str()], reached);
    }
}

/// The scenario text: services in the file's order, then the workload.
fn render(path: &Path, text: &str, services: &[Service]) -> String {
    let file = path.display();
    let name = path
        .file_stem()
        .map_or("isotope".into(), |s| s.to_string_lossy().into_owned());
    let entry = services
        .iter()
        .find(|s| s.settings.entrypoint)
        .map_or("", |s| &s.name);
    let hosts: i64 = services.iter().map(|s| s.settings.replicas).sum::<i64>() + 3;
    let mut out = String::new();
    let _ = writeln!(out, "# {name} — imported from the isotope topology {file}");
    let _ = writeln!(
        out,
        "# by `meshsim import isotope` (input sha256 {}).",
        crate::scenario_sha256(text)
    );
    let _ = writeln!(out, "#");
    let _ = writeln!(
        out,
        "# Each isotope service is one synthetic service answering GET / with its"
    );
    let _ = writeln!(
        out,
        "# sleeps summed into a constant service time, its errorRate as 500s and"
    );
    let _ = writeln!(
        out,
        "# its calls as the endpoint's script. Isotope does not bound a service's"
    );
    let _ = writeln!(
        out,
        "# concurrency; `concurrency = 64` per replica is meshsim's choice: edit it,"
    );
    let _ = writeln!(
        out,
        "# the workload, the service times and the checks to match the system."
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "name = {}", toml_string(&name));
    let _ = writeln!(
        out,
        "description = {}",
        toml_string(&format!(
            "isotope topology {name}: {} services, {hosts} hosts",
            services.len()
        ))
    );
    let _ = writeln!(out, "seed = 1");
    for service in services {
        render_service(&mut out, service);
    }
    render_workload(&mut out, entry);
    out
}

fn render_service(out: &mut String, service: &Service) {
    let _ = writeln!(out);
    let _ = writeln!(out, "[[services]]");
    let _ = writeln!(out, "name = {}", toml_string(&service.name));
    let _ = writeln!(out, "app = \"synthetic\"");
    let _ = writeln!(out, "replicas = {}", service.settings.replicas);
    let _ = writeln!(out, "concurrency = 64");
    let _ = writeln!(out);
    let _ = writeln!(out, "[[services.endpoints]]");
    let _ = writeln!(out, "method = \"GET\"");
    let _ = writeln!(out, "path = \"/\"");
    if service.settings.script.sleep_after_call {
        let _ = writeln!(
            out,
            "# isotope sleeps after a call here; meshsim runs the service time first (same sojourn)"
        );
    }
    let _ = writeln!(
        out,
        "service_time = {{ distribution = \"constant\", mean = \"{}\" }}",
        duration_text(service.settings.script.sleep_us)
    );
    if service.settings.response_bytes > 0 {
        let _ = writeln!(
            out,
            "response_size = {{ distribution = \"constant\", mean = {} }}",
            service.settings.response_bytes
        );
    }
    if service.settings.error_rate > 0.0 {
        let _ = writeln!(
            out,
            "errors = {{ \"500\" = {} }}",
            service.settings.error_rate
        );
    }
    if !service.settings.script.steps.is_empty() {
        let _ = writeln!(out, "script = [");
        for step in &service.settings.script.steps {
            match step.as_slice() {
                [call] => {
                    let _ = writeln!(out, "  {},", render_call(call));
                }
                group => {
                    let _ = writeln!(out, "  {{ concurrent = [");
                    for call in group {
                        let _ = writeln!(out, "    {},", render_call(call));
                    }
                    let _ = writeln!(out, "  ] }},");
                }
            }
        }
        let _ = writeln!(out, "]");
    }
}

/// Whole milliseconds as `ms`, anything finer as `us`.
fn duration_text(us: u64) -> String {
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

fn render_call(call: &Call) -> String {
    let mut text = format!("{{ service = {}, path = \"/\"", toml_string(&call.service));
    if call.request_bytes > 0 {
        let _ = write!(
            text,
            ", request_size = {{ distribution = \"constant\", mean = {} }}",
            call.request_bytes
        );
    }
    text.push_str(" }");
    text
}

fn render_workload(out: &mut String, entry: &str) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# An open-loop Poisson load on the entrypoint: edit the rate and length."
    );
    let _ = writeln!(out, "[workload]");
    let _ = writeln!(out, "target = {}", toml_string(entry));
    let _ = writeln!(out, "warmup = \"2s\"");
    let _ = writeln!(out, "connections = 256");
    let _ = writeln!(out);
    let _ = writeln!(out, "[[workload.phases]]");
    let _ = writeln!(out, "name = \"steady\"");
    let _ = writeln!(out, "duration = \"60s\"");
    let _ = writeln!(out, "arrival = {{ kind = \"poisson\", rate = 100 }}");
    let _ = writeln!(out);
    let _ = writeln!(out, "[[workload.mix]]");
    let _ = writeln!(out, "name = \"entry\"");
    let _ = writeln!(out, "path = \"/\"");
    let _ = writeln!(out, "weight = 1");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# A starting SLO: add latency checks once the service times are real."
    );
    let _ = writeln!(out, "[[checks]]");
    let _ = writeln!(out, "name = \"errors_under_1pct\"");
    let _ = writeln!(out, "slo = \"error_rate < 1%\"");
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
apiVersion: v1alpha1
kind: MockServiceGraph
defaults:
  type: http
  requestSize: 1 KB
  responseSize: 16 KB
  numReplicas: 2
services:
- name: a
  isEntrypoint: true
  errorRate: 0.01%
  script:
  - sleep: 100ms
  - call: b
  - - call: c
    - call:
        service: d
        size: 10K
- name: b
  numReplicas: 3
  script:
  - sleep: 1.5ms
- name: c
  type: grpc
- name: d
  errorRate: 0.5
";

    fn import(text: &str) -> Result<String, SpecError> {
        isotope_scenario(Path::new("topology.yaml"), text)
    }

    #[test]
    fn the_example_topology_becomes_a_valid_scenario() {
        let toml = import(EXAMPLE).unwrap();
        let scenario = crate::Scenario::parse(Path::new("imported.toml"), &toml)
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let names: Vec<&str> = scenario
            .services
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(scenario.services[0].replicas, 2);
        assert_eq!(scenario.services[1].replicas, 3);
        let a = &scenario.services[0].endpoints[0];
        assert_eq!(a.script.len(), 2);
        assert_eq!(a.script[1].calls().len(), 2);
        assert_eq!(a.errors["500"].get_ref(), &0.0001);
        assert_eq!(scenario.workload.target.get_ref(), "a");
        assert!(toml.contains("mean = \"100ms\""), "{toml}");
        assert!(toml.contains("mean = \"1500us\""), "{toml}");
        assert!(toml.contains("{ service = \"d\", path = \"/\", request_size = { distribution = \"constant\", mean = 10240 } }"), "{toml}");
        assert!(
            toml.contains("response_size = { distribution = \"constant\", mean = 16384 }"),
            "{toml}"
        );
    }

    fn error_of(text: &str) -> String {
        import(text).unwrap_err().to_string()
    }

    #[test]
    fn unsupported_fields_are_errors_with_their_position() {
        let text = "services:\n- name: a\n  isEntrypoint: true\n  computeUsage: 50%\n";
        assert_eq!(
            error_of(text),
            "topology.yaml:4:3: service.computeUsage is not supported by meshsim's isotope import"
        );
    }

    #[test]
    fn graph_errors_point_at_the_call() {
        let unknown = "services:\n- name: a\n  isEntrypoint: true\n  script:\n  - call: nope\n";
        assert!(
            error_of(unknown)
                .starts_with("topology.yaml:5:11: call: \"a\" calls unknown service \"nope\""),
            "{}",
            error_of(unknown)
        );
        let cycle = "services:\n- name: a\n  isEntrypoint: true\n  script:\n  - call: b\n- name: b\n  script:\n  - call: a\n";
        assert!(
            error_of(cycle).contains("cycle: a → b → a"),
            "{}",
            error_of(cycle)
        );
        let unreached = "services:\n- name: a\n  isEntrypoint: true\n- name: b\n";
        assert!(
            error_of(unreached).starts_with("topology.yaml:4:3:"),
            "{}",
            error_of(unreached)
        );
        let none = "services:\n- name: a\n";
        assert!(
            error_of(none).contains("no service has isEntrypoint"),
            "{}",
            error_of(none)
        );
    }

    #[test]
    fn values_out_of_range_are_refused() {
        let rate = "services:\n- name: a\n  isEntrypoint: true\n  errorRate: 150%\n";
        assert!(
            error_of(rate).starts_with("topology.yaml:4:14:"),
            "{}",
            error_of(rate)
        );
        let sleep =
            "services:\n- name: a\n  isEntrypoint: true\n  script:\n  - sleep: {Type: dist}\n";
        assert!(
            error_of(sleep).contains("only a fixed duration"),
            "{}",
            error_of(sleep)
        );
        let group = "services:\n- name: a\n  isEntrypoint: true\n  script:\n  - - sleep: 1ms\n";
        assert!(
            error_of(group).contains("inside a concurrent group"),
            "{}",
            error_of(group)
        );
    }

    #[test]
    fn sizes_and_durations_read_as_isotope_reads_them() {
        assert_eq!(parse_byte_size("16 KB"), Some(16384));
        assert_eq!(parse_byte_size("10k"), Some(10240));
        assert_eq!(parse_byte_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_byte_size("12"), Some(12));
        assert_eq!(parse_byte_size("1 parsec"), None);
        assert_eq!(parse_go_duration_us("1m30s"), Some(90_000_000));
        assert_eq!(parse_go_duration_us("250us"), Some(250));
        assert_eq!(parse_go_duration_us("10"), None);
    }
}
