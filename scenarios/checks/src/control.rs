//! Control-plane properties, read from the trace's lifecycle events:
//! `control.apply v=N` (an operator's config was accepted),
//! `discovery.update v=N`, `discovery.connected`, `discovery.disconnected`.

use std::collections::BTreeMap;
use std::time::Duration;

use reports::{Check, CheckKind};
use seam::TraceEvent;

/// The `v=N` field of an event's detail.
fn version(event: &TraceEvent) -> Option<u64> {
    event
        .detail
        .split_whitespace()
        .find_map(|field| field.strip_prefix("v=")?.parse().ok())
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Every proxy that lost the control plane reconnects within `bound` of the
/// last repair, and ends on the control plane's final version.
pub fn reconverged(
    name: &str,
    events: &[TraceEvent],
    heal_us: Option<u64>,
    bound: Duration,
) -> Check {
    let Some(heal_us) = heal_us else {
        return Check {
            name: name.into(),
            kind: CheckKind::Liveness,
            passed: false,
            detail: "no repair in the fault schedule to converge after".into(),
        };
    };
    let final_version = events
        .iter()
        .filter(|e| e.kind == seam::event::CONTROL_VERSION)
        .filter_map(version)
        .max()
        .unwrap_or(0);
    let mut lost: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    let mut last_version: BTreeMap<&str, u64> = BTreeMap::new();
    for event in events {
        match event.kind.as_str() {
            seam::event::DISCOVERY_DISCONNECTED if event.at_us <= heal_us => {
                lost.insert(&event.host, None);
            }
            seam::event::DISCOVERY_CONNECTED if event.at_us >= heal_us => {
                if let Some(slot @ None) = lost.get_mut(event.host.as_str()) {
                    *slot = Some(event.at_us - heal_us);
                }
            }
            seam::event::DISCOVERY_UPDATE => {
                last_version.insert(&event.host, version(event).unwrap_or(0));
            }
            _ => {}
        }
    }
    let never: Vec<&str> = lost
        .iter()
        .filter(|(_, d)| d.is_none())
        .map(|(h, _)| *h)
        .collect();
    let slowest_us = lost.values().flatten().max().copied().unwrap_or(0);
    let behind: Vec<&str> = last_version
        .iter()
        .filter(|(_, v)| **v < final_version)
        .map(|(h, _)| *h)
        .collect();
    let passed = never.is_empty() && behind.is_empty() && slowest_us <= bound.as_micros() as u64;
    let detail = format!(
        "{} proxies lost the control plane; slowest reconnect {:.3}s after heal (bound {:?}); never reconnected: {never:?}; behind final v{final_version}: {behind:?}",
        lost.len(),
        seconds(slowest_us),
        bound
    );
    Check {
        name: name.into(),
        kind: CheckKind::Liveness,
        passed,
        detail,
    }
}

/// Every config version an operator applied reaches every proxy within
/// `bound` (p99 over proxies, worst version).
pub fn propagated(name: &str, events: &[TraceEvent], bound: Duration) -> Check {
    let proxies: Vec<&str> = {
        let mut hosts: Vec<&str> = events
            .iter()
            .filter(|e| e.kind.starts_with("discovery."))
            .map(|e| e.host.as_str())
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    };
    let applies: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e.kind == seam::event::CONTROL_APPLY)
        .filter_map(|e| Some((version(e)?, e.at_us)))
        .collect();
    if applies.is_empty() {
        return Check {
            name: name.into(),
            kind: CheckKind::Slo,
            passed: false,
            detail: "no config was applied during the run".into(),
        };
    }
    let mut worst_p99_us = 0;
    let mut missing = Vec::new();
    let mut parts = Vec::new();
    for (applied, at_us) in &applies {
        let mut delays: Vec<u64> = Vec::new();
        for proxy in &proxies {
            let reached = events.iter().find(|e| {
                e.host == *proxy
                    && e.kind == seam::event::DISCOVERY_UPDATE
                    && e.at_us >= *at_us
                    && version(e).is_some_and(|v| v >= *applied)
            });
            match reached {
                Some(event) => delays.push(event.at_us - at_us),
                None => missing.push(format!("{proxy}@v{applied}")),
            }
        }
        delays.sort_unstable();
        let p99 = delays
            .get(((delays.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0);
        worst_p99_us = worst_p99_us.max(p99);
        parts.push(format!(
            "v{applied}: p50 {:.3}s p99 {:.3}s max {:.3}s over {} proxies",
            seconds(delays.get(delays.len() / 2).copied().unwrap_or(0)),
            seconds(p99),
            seconds(delays.last().copied().unwrap_or(0)),
            delays.len()
        ));
    }
    let passed = missing.is_empty() && worst_p99_us <= bound.as_micros() as u64;
    let detail = format!(
        "{} (bound {:?}); never reached: {missing:?}",
        parts.join("; "),
        bound
    );
    Check {
        name: name.into(),
        kind: CheckKind::Slo,
        passed,
        detail,
    }
}

/// Each proxy's config version over time, for the summary.
pub fn version_timeline(events: &[TraceEvent]) -> BTreeMap<String, Vec<(f64, u64)>> {
    let mut timeline: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for event in events
        .iter()
        .filter(|e| e.kind == seam::event::DISCOVERY_UPDATE)
    {
        if let Some(v) = version(event) {
            timeline
                .entry(event.host.clone())
                .or_default()
                .push((seconds(event.at_us), v));
        }
    }
    timeline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_s: f64, host: &str, kind: &str, detail: &str) -> TraceEvent {
        TraceEvent {
            seq: 0,
            at_us: (at_s * 1e6) as u64,
            host: host.into(),
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn reconvergence_fails_when_a_proxy_never_returns() {
        let events = vec![
            event(1.0, "control", seam::event::CONTROL_VERSION, "v=3"),
            event(5.0, "a", seam::event::DISCOVERY_DISCONNECTED, "v=3"),
            event(5.0, "b", seam::event::DISCOVERY_DISCONNECTED, "v=3"),
            event(12.0, "a", seam::event::DISCOVERY_CONNECTED, "v=3"),
        ];
        let check = reconverged("c", &events, Some(10_000_000), Duration::from_secs(5));
        assert!(
            !check.passed && check.detail.contains("\"b\""),
            "{}",
            check.detail
        );
        let mut healed = events.clone();
        healed.push(event(13.0, "b", seam::event::DISCOVERY_CONNECTED, "v=3"));
        assert!(reconverged("c", &healed, Some(10_000_000), Duration::from_secs(5)).passed);
        assert!(
            !reconverged("c", &healed, Some(10_000_000), Duration::from_secs(2)).passed,
            "3 s is over a 2 s bound"
        );
    }

    #[test]
    fn propagation_measures_each_applied_version() {
        let events = vec![
            event(0.5, "a", seam::event::DISCOVERY_UPDATE, "v=1"),
            event(0.5, "b", seam::event::DISCOVERY_UPDATE, "v=1"),
            event(10.0, "control", seam::event::CONTROL_APPLY, "v=2"),
            event(10.2, "a", seam::event::DISCOVERY_UPDATE, "v=2"),
            event(11.0, "b", seam::event::DISCOVERY_UPDATE, "v=3"),
        ];
        let check = propagated("p", &events, Duration::from_millis(1500));
        assert!(check.passed, "{}", check.detail);
        assert!(check.detail.contains("max 1.000s"), "{}", check.detail);
        assert!(!propagated("p", &events, Duration::from_millis(500)).passed);
    }
}
