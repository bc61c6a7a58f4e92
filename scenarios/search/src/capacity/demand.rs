//! Service demand and the bottleneck of a synthetic call graph, by
//! operational analysis (Denning and Buzen's laws, as in Lazowska et al.,
//! "Quantitative System Performance", ch. 3 and 5).
//!
//! Each workload request visits service `s` `V_s` times on average: the
//! mix's weights choose the entry endpoint, and each script call is made
//! with its probability. A synthetic service holds one of its
//! `replicas × concurrency` slots for the whole visit: its service time
//! and then its script, calls included (a thread-per-request server; see
//! `apps::rec::app`). So one workload request demands `D_s = Σ visits ×
//! mean hold time` slot seconds of `s`, where an endpoint's hold time is
//! its mean service time plus, per script step, the call's round trip and
//! the callee's own hold time (a concurrent group: the longest of its
//! calls). At a workload rate `X`, `s` is busy `ρ_s = X·D_s / slots_s` of
//! the time, and its queue grows without bound once `ρ_s` reaches 1: the
//! service with the smallest `slots_s / D_s` is the one whose queue grows
//! first, the bottleneck, and that rate bounds the whole graph's
//! throughput.
//!
//! The hold times are those of an idle system (no queueing downstream), so
//! the saturation rates are upper bounds; near saturation every hold time
//! grows with the queues below it. What it leaves out, on purpose: retries
//! and hedges (they add visits the spec does not know; a run measures
//! them), the expected maximum of a concurrent group (it takes the maximum
//! of the means, a lower bound), and `slow` faults. A REC app's visits
//! depend on its own code, so only synthetic services are analysed.

use std::collections::BTreeMap;

use serde::Serialize;
use spec::{AppKind, Scenario};

/// What one service asks of its slots per workload request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceDemand {
    /// The service.
    pub service: String,
    /// Visits per workload request.
    pub visits: f64,
    /// Slot seconds per workload request (visits × mean hold time).
    pub demand_s: f64,
    /// Replicas × concurrency.
    pub slots: u32,
    /// The workload rate at which the service's slots are always busy.
    pub saturation_rps: f64,
}

impl ServiceDemand {
    /// Utilisation at workload rate `rate_rps`.
    pub fn utilisation(&self, rate_rps: f64) -> f64 {
        rate_rps * self.demand_s / f64::from(self.slots)
    }

    /// Replicas this service needs so its utilisation at `rate_rps` is at
    /// most `target` (at least one).
    pub fn replicas_for(&self, rate_rps: f64, concurrency: u32, target: f64) -> u32 {
        let slots = rate_rps * self.demand_s / target;
        // Exactly 2.0 computed as 2.000…01 must not ask for a third replica.
        let replicas = (slots / f64::from(concurrency.max(1)) - 1e-9).ceil();
        // Replica counts in a plan are small; the cast cannot truncate.
        (replicas as u32).max(1)
    }
}

/// Demands of every synthetic service the workload reaches, most loaded
/// (lowest saturation rate) first; empty when the scenario has no
/// synthetic services.
pub fn service_demands(scenario: &Scenario) -> Vec<ServiceDemand> {
    let visits = endpoint_visits(scenario);
    let hops = Hops::of(scenario);
    let mut holds = Holds::new();
    let mut by_service: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for ((service, method, path), count) in &visits {
        let Some(spec) = scenario
            .services
            .iter()
            .find(|s| s.name.get_ref() == service)
        else {
            continue;
        };
        if spec.app != AppKind::Synthetic {
            continue;
        }
        let hold_s = hold_s(scenario, &hops, &mut holds, service, method, path);
        let entry = by_service.entry(service.as_str()).or_default();
        entry.0 += count;
        entry.1 += count * hold_s;
    }
    let mut demands: Vec<ServiceDemand> = by_service
        .into_iter()
        .filter_map(|(service, (visits, demand_s))| {
            let spec = scenario
                .services
                .iter()
                .find(|s| s.name.get_ref() == service)?;
            let slots = spec.replicas * spec.concurrency;
            Some(ServiceDemand {
                service: service.to_owned(),
                visits,
                demand_s,
                slots,
                saturation_rps: if demand_s > 0.0 {
                    f64::from(slots) / demand_s
                } else {
                    f64::INFINITY
                },
            })
        })
        .collect();
    demands.sort_by(|a, b| {
        a.saturation_rps
            .total_cmp(&b.saturation_rps)
            .then_with(|| a.service.cmp(&b.service))
    });
    demands
}

/// What one call costs its caller besides the callee's hold time.
struct Hops {
    /// Two traversals of a link at its mean one-way latency, plus the two
    /// sidecars.
    call_overhead_s: f64,
}

/// The two sidecars' share of a call in the event world, measured: 0.508
/// ms for a whole fork-join request over zero-latency links
/// (BENCHMARKS.md "Queueing oracles on the synthetic service").
const SIDECARS_PER_CALL_S: f64 = 0.0005;

impl Hops {
    fn of(scenario: &Scenario) -> Hops {
        let one_way_s = (scenario.sim.link_latency_min.0.as_secs_f64()
            + scenario.sim.link_latency_max.0.as_secs_f64())
            / 2.0;
        Hops {
            call_overhead_s: 2.0 * one_way_s + SIDECARS_PER_CALL_S,
        }
    }
}

/// Hold time per endpoint, computed once.
type Holds = BTreeMap<(String, String, String), f64>;

/// Mean slot time of one visit to an endpoint of an idle system: service
/// time, then each script step in turn.
fn hold_s(
    scenario: &Scenario,
    hops: &Hops,
    holds: &mut Holds,
    service: &str,
    method: &str,
    path: &str,
) -> f64 {
    let key = (
        service.to_owned(),
        method.to_ascii_uppercase(),
        path.to_owned(),
    );
    if let Some(&known) = holds.get(&key) {
        return known;
    }
    let Some(spec) = scenario
        .services
        .iter()
        .find(|s| s.name.get_ref() == service)
    else {
        return 0.0;
    };
    let Some(endpoint) = scenario.endpoint(service, method, path) else {
        return 0.0;
    };
    let service_s = endpoint
        .service_time
        .as_ref()
        .or(spec.service_time.as_ref())
        .map_or(0.0, |t| t.0.mean());
    let mut script_s = 0.0;
    for step in &endpoint.script {
        let longest = step
            .calls()
            .iter()
            .map(|call| {
                let callee = hold_s(
                    scenario,
                    hops,
                    holds,
                    call.service.get_ref(),
                    &call.method,
                    call.path.get_ref(),
                );
                call.probability.get_ref() * (hops.call_overhead_s + callee)
            })
            .fold(0.0, f64::max);
        script_s += longest;
    }
    let total = service_s + script_s;
    holds.insert(key, total);
    total
}

/// (service, method, path) → visits per workload request.
type Visits = BTreeMap<(String, String, String), f64>;

fn endpoint_visits(scenario: &Scenario) -> Visits {
    let mut visits = Visits::new();
    let target = scenario.workload.target.get_ref();
    let weight_total: u32 = scenario.workload.mix.iter().map(|op| op.weight).sum();
    if weight_total == 0 {
        return visits;
    }
    for op in &scenario.workload.mix {
        let Some(path) = &op.path else { continue };
        let method = op.method.as_deref().unwrap_or("GET");
        let share = f64::from(op.weight) / f64::from(weight_total);
        visit(scenario, &mut visits, target, method, path.get_ref(), share);
    }
    visits
}

/// Adds `share` visits to an endpoint and, through its script, to every
/// endpoint it calls (the graph is acyclic: the spec refuses cycles).
fn visit(
    scenario: &Scenario,
    visits: &mut Visits,
    service: &str,
    method: &str,
    path: &str,
    share: f64,
) {
    let key = (
        service.to_owned(),
        method.to_ascii_uppercase(),
        path.to_owned(),
    );
    *visits.entry(key).or_default() += share;
    let Some(endpoint) = scenario.endpoint(service, method, path) else {
        return;
    };
    for step in &endpoint.script {
        for call in step.calls() {
            let probability = *call.probability.get_ref();
            visit(
                scenario,
                visits,
                call.service.get_ref(),
                &call.method,
                call.path.get_ref(),
                share * probability,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const GRAPH: &str = r#"
name = "graph"
seed = 1

[sim]
link_latency_min = "1ms"
link_latency_max = "1ms"

[[services]]
name = "front"
app = "synthetic"
replicas = 2
concurrency = 4
service_time = { distribution = "constant", mean = "1ms" }

[[services.endpoints]]
path = "/"
script = [
  { service = "db", path = "/q" },
  { concurrent = [{ service = "db", path = "/q", probability = 0.5 }, { service = "cache", path = "/get" }] },
]

[[services.endpoints]]
path = "/light"

[[services]]
name = "db"
app = "synthetic"
replicas = 1
concurrency = 2
service_time = { distribution = "exponential", mean = "4ms" }

[[services.endpoints]]
path = "/q"

[[services]]
name = "cache"
app = "synthetic"
replicas = 1
concurrency = 8

[[services.endpoints]]
path = "/get"
service_time = { distribution = "constant", mean = "100us" }

[workload]
target = "front"

[[workload.phases]]
name = "steady"
duration = "5s"
arrival = { kind = "poisson", rate = 10 }

[[workload.mix]]
path = "/"
weight = 3

[[workload.mix]]
path = "/light"
weight = 1
"#;

    #[test]
    fn visits_follow_weights_and_probabilities_and_the_bottleneck_saturates_first() {
        let scenario = Scenario::parse(Path::new("graph.toml"), GRAPH).unwrap();
        let demands = service_demands(&scenario);
        let by_name = |n: &str| demands.iter().find(|d| d.service == n).unwrap().clone();
        // front: every request; db: 3/4 × (1 + 0.5); cache: 3/4.
        assert!((by_name("front").visits - 1.0).abs() < 1e-12);
        assert!((by_name("db").visits - 1.125).abs() < 1e-12);
        assert!((by_name("cache").visits - 0.75).abs() < 1e-12);
        // db: 1.125 × 4 ms = 4.5 ms of 2 slots → 444 rps. front holds its
        // slot through its script; a call costs 2 × 1 ms of link plus
        // 0.5 ms of sidecars: "/" is 1 + (2.5 + 4) + max(0.5 × 6.5,
        // 2.5 + 0.1) = 10.75 ms, "/light" 1 ms, so 8.3125 ms per request.
        assert_eq!(demands[0].service, "db");
        assert!((demands[0].saturation_rps - 2.0 / 0.0045).abs() < 1e-6);
        assert!((by_name("front").demand_s - 0.008_312_5).abs() < 1e-12);
        assert!((by_name("front").utilisation(481.0) - 0.5).abs() < 1e-3);
        assert_eq!(by_name("db").replicas_for(400.0, 2, 0.5), 2);
    }
}
