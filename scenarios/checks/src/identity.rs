//! Certificate-lifecycle checks, computed from what happened in the run:
//! the trace's `cert.*`/`ca.*` events (real handshake outcomes, renewals,
//! the operator's rotation steps and audit probes) and the load
//! generator's per-interval counts. None reads the scenario's config to
//! decide an outcome, so each fails if the mesh misbehaves:
//! * `rotation_no_failed_requests` (slo): a root rotation ran to the end,
//!   every identity was re-issued by the new issuer, and no request failed
//!   from its start until `within` after the old root left the bundle;
//! * `no_expired_cert_accepted` (security): every certificate an inbound
//!   listener accepted was inside its validity by that host's clock, and
//!   every probe with an expired certificate was refused;
//! * `no_plaintext_accepted` (security): no plaintext probe got an answer;
//! * `fails_closed_when_expired` (security): while the load generator's own
//!   certificate (or every target replica's) was expired, no request
//!   succeeded, and some were tried;
//! * `identity_recovered` (liveness): after the CA returns, every proxy
//!   that failed to renew holds a certificate again, and requests succeed
//!   again, within the bound;
//! * `skew_contained` (security): the skewed host could not renew (the
//!   documented effect) while every other workload kept renewing and none
//!   refused a peer for expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use loadgen::LoadReport;
use reports::{Check, CheckKind};
use seam::TraceEvent;
use sim::FaultAction;

use spec::{FaultPlan, Property, Scenario};

/// Whether `property` needs the operator host's audit probes.
pub fn needs_audit(property: Property) -> bool {
    matches!(
        property,
        Property::NoExpiredCertAccepted | Property::NoPlaintextAccepted
    )
}

/// Whether `property` is one of the checks here.
pub fn handles(property: Property) -> bool {
    matches!(
        property,
        Property::RotationNoFailedRequests
            | Property::NoExpiredCertAccepted
            | Property::NoPlaintextAccepted
            | Property::FailsClosedWhenExpired
            | Property::IdentityRecovered
            | Property::SkewContained
    )
}

/// Evaluates every identity check the scenario declares.
pub fn checks(
    scenario: &Scenario,
    faults: &FaultPlan,
    load: &LoadReport,
    events: &[TraceEvent],
) -> Vec<Check> {
    let run = Run {
        scenario,
        faults: faults.schedule().faults,
        load,
        events,
    };
    scenario
        .checks
        .iter()
        .filter_map(|spec| {
            let property = spec.property.filter(|p| handles(*p))?;
            let name = spec.name.get_ref().clone();
            let within = spec.within.map(|w| w.0);
            let (kind, passed, detail) = match property {
                Property::RotationNoFailedRequests => run.rotation(within),
                Property::NoExpiredCertAccepted => run.no_expired(),
                Property::NoPlaintextAccepted => run.no_plaintext(),
                Property::FailsClosedWhenExpired => run.fails_closed(),
                Property::IdentityRecovered => run.recovered(within),
                Property::SkewContained => run.skew_contained(),
                _ => return None,
            };
            Some(Check {
                name,
                kind,
                passed,
                detail,
            })
        })
        .collect()
}

type Outcome = (CheckKind, bool, String);

struct Run<'a> {
    scenario: &'a Scenario,
    faults: Vec<sim::Fault>,
    load: &'a LoadReport,
    events: &'a [TraceEvent],
}

/// `key=value` from an event's detail.
fn field<'e>(event: &'e TraceEvent, key: &str) -> Option<&'e str> {
    event
        .detail
        .split(' ')
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

fn seconds(us: u64) -> String {
    format!("{:.1}s", us as f64 / 1e6)
}

impl Run<'_> {
    fn of_kind<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = &'s TraceEvent> + 's {
        self.events.iter().filter(move |e| e.kind == kind)
    }

    fn warmup_us(&self) -> u64 {
        self.scenario.workload.warmup.0.as_micros() as u64
    }

    /// (ok, failed) over load intervals that start in `[from_us, until_us)`
    /// of run time.
    fn requests_between(&self, from_us: u64, until_us: u64) -> (u64, u64) {
        let warmup = self.warmup_us();
        self.load
            .intervals
            .iter()
            .filter(|i| {
                let start = warmup + i.start.as_micros() as u64;
                start >= from_us && start < until_us
            })
            .map(|i| i.total())
            .fold((0, 0), |(ok, failed), s| (ok + s.ok, failed + s.failed))
    }

    fn renewals(&self) -> usize {
        self.of_kind(seam::event::CERT_RENEWED).count()
    }

    fn rotation(&self, grace: Option<Duration>) -> Outcome {
        let step = |name: &str| {
            self.of_kind(seam::event::CERT_ROTATION)
                .find(|e| field(e, "step") == Some(name))
                .map(|e| e.at_us)
        };
        let (start, active, removed) = (
            step("start"),
            step("new_issuer_active"),
            step("old_root_removed"),
        );
        let renewals = self.renewals();
        let (Some(start), Some(active), Some(removed)) = (start, active, removed) else {
            return (
                CheckKind::Slo,
                false,
                format!(
                    "the root rotation did not complete (start={start:?} new_issuer_active={active:?} old_root_removed={removed:?} µs); renewals={renewals}"
                ),
            );
        };
        // Identities the old issuer served, and those the newest re-issued.
        let issues: Vec<(&TraceEvent, u32)> = self
            .of_kind(seam::event::CA_ISSUE)
            .filter_map(|e| Some((e, field(e, "issuer_gen")?.parse().ok()?)))
            .collect();
        let newest = issues.iter().map(|(_, g)| *g).max().unwrap_or(0);
        let ids = |keep: &dyn Fn(&TraceEvent, u32) -> bool| -> BTreeSet<String> {
            issues
                .iter()
                .filter(|(e, g)| keep(e, *g))
                .filter_map(|(e, _)| field(e, "id").map(str::to_owned))
                .collect()
        };
        let before = ids(&|e, _| e.at_us < start);
        let reissued = ids(&|e, g| e.at_us >= active && g == newest);
        let missing: Vec<&String> = before.difference(&reissued).collect();
        let renewed_after = self
            .of_kind(seam::event::CERT_RENEWED)
            .filter(|e| e.at_us >= active)
            .count();
        let until = removed + grace.unwrap_or_default().as_micros() as u64;
        let (ok, failed) = self.requests_between(start, until);
        let passed = failed == 0 && ok > 0 && missing.is_empty() && newest > 1;
        let detail = format!(
            "root rotation: started {}, new issuer (gen {newest}) active {}, old root removed {} ({} in all); {}/{} identities re-issued by the new issuer{}; renewals={renewals} ({renewed_after} after activation); requests from start to removal{}: ok={ok} failed={failed}",
            seconds(start),
            seconds(active),
            seconds(removed),
            seconds(removed - start),
            before.len() - missing.len(),
            before.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!(" (missing: {missing:?})")
            },
            grace.map_or(String::new(), |g| format!(" + {g:?}")),
        );
        (CheckKind::Slo, passed, detail)
    }

    /// Audit probes of one kind: (count, answered details).
    fn probes(&self, probe: &str) -> (usize, Vec<String>) {
        let mut count = 0;
        let mut answered = Vec::new();
        for e in self
            .of_kind(seam::event::CERT_AUDIT)
            .filter(|e| field(e, "probe") == Some(probe))
        {
            count += 1;
            if field(e, "outcome").is_some_and(|o| o.starts_with("answered")) {
                answered.push(format!("{} at {}", e.detail, seconds(e.at_us)));
            }
        }
        (count, answered)
    }

    fn no_expired(&self) -> Outcome {
        let mut accepted = 0u64;
        let mut violations = Vec::new();
        let mut min_left_ms = i64::MAX;
        for e in self.of_kind(seam::event::CERT_PEER_ACCEPTED) {
            accepted += 1;
            let age: i64 = field(e, "age_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            let left: i64 = field(e, "left_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            min_left_ms = min_left_ms.min(left);
            if age < 0 || left <= 0 {
                violations.push(format!(
                    "{} accepted {} at {}",
                    e.host,
                    e.detail,
                    seconds(e.at_us)
                ));
            }
        }
        let (probes, answered) = self.probes("expired");
        let refused_for_expiry = self
            .of_kind(seam::event::CERT_PEER_REJECTED)
            .filter(|e| field(e, "reason") == Some("expired"))
            .count();
        let passed = violations.is_empty() && answered.is_empty() && probes > 0 && accepted > 0;
        let mut detail = format!(
            "{accepted} accepted handshakes, all inside validity by the server's clock{}; {probes} expired-certificate probes, {} answered; {refused_for_expiry} handshakes refused for expiry",
            if accepted > 0 {
                format!(" (least time left {min_left_ms} ms)")
            } else {
                String::new()
            },
            answered.len()
        );
        if let Some(first) = violations.first() {
            detail = format!("{} violations, first: {first}; {detail}", violations.len());
        }
        if let Some(first) = answered.first() {
            detail = format!("breach: {first}; {detail}");
        }
        if probes == 0 || accepted == 0 {
            detail = format!("not exercised; {detail}");
        }
        (CheckKind::Security, passed, detail)
    }

    fn no_plaintext(&self) -> Outcome {
        let (probes, answered) = self.probes("plaintext");
        let expired = self.expired_windows("loadgen");
        let while_expired = self
            .of_kind(seam::event::CERT_AUDIT)
            .filter(|e| field(e, "probe") == Some("plaintext"))
            .filter(|e| expired.iter().any(|(a, b)| e.at_us >= *a && e.at_us < *b))
            .count();
        let passed = probes > 0 && answered.is_empty();
        let mut detail = format!(
            "{probes} plaintext probes of every inbound listener ({while_expired} while the load generator's certificate was expired), {} answered",
            answered.len()
        );
        if let Some(first) = answered.first() {
            detail = format!("breach: {first}; {detail}");
        }
        if probes == 0 {
            detail = format!("not exercised; {detail}");
        }
        (CheckKind::Security, passed, detail)
    }

    /// Run-time windows during which `host` held no valid certificate,
    /// from its renewals: each leaf is good until `valid_ms` after issue;
    /// the gap runs to the next renewal (or the end of the run).
    fn expired_windows(&self, host: &str) -> Vec<(u64, u64)> {
        let renewals: Vec<(u64, u64)> = self
            .of_kind(seam::event::CERT_RENEWED)
            .filter(|e| e.host == host)
            .filter_map(|e| {
                let valid_ms: u64 = field(e, "valid_ms")?.parse().ok()?;
                Some((e.at_us, e.at_us + valid_ms * 1000))
            })
            .collect();
        let mut windows = Vec::new();
        for (i, (_, until)) in renewals.iter().enumerate() {
            let next = renewals.get(i + 1).map_or(u64::MAX, |(at, _)| *at);
            if next > *until {
                windows.push((*until, next));
            }
        }
        windows
    }

    /// Hosts of the workload's target service.
    fn target_hosts(&self) -> Vec<String> {
        let target = self.scenario.workload.target.get_ref();
        self.scenario
            .services
            .iter()
            .filter(|s| s.name.get_ref() == target)
            .flat_map(|s| (0..s.replicas).map(move |r| format!("{}-{r}", s.name.get_ref())))
            .collect()
    }

    fn fails_closed(&self) -> Outcome {
        let interval_us = self.load.interval.as_micros() as u64;
        let warmup = self.warmup_us();
        let loadgen = self.expired_windows("loadgen");
        let targets: Vec<Vec<(u64, u64)>> = self
            .target_hosts()
            .iter()
            .map(|h| self.expired_windows(h))
            .collect();
        let covers = |windows: &[(u64, u64)], a: u64, b: u64| {
            windows
                .iter()
                .any(|(from, until)| a >= *from && b <= *until)
        };
        let (mut dead_intervals, mut ok, mut failed) = (0u64, 0u64, 0u64);
        let mut first_breach = None;
        for interval in &self.load.intervals {
            let a = warmup + interval.start.as_micros() as u64;
            let b = a + interval_us;
            let dead = covers(&loadgen, a, b)
                || (!targets.is_empty() && targets.iter().all(|w| covers(w, a, b)));
            if !dead {
                continue;
            }
            let total = interval.total();
            dead_intervals += 1;
            ok += total.ok;
            failed += total.failed;
            if total.ok > 0 && first_breach.is_none() {
                first_breach = Some(seconds(a));
            }
        }
        let passed = dead_intervals > 0 && ok == 0 && failed > 0;
        let mut detail = format!(
            "{dead_intervals} load intervals with the load generator's certificate (or every {} replica's) expired: ok={ok} failed={failed}; expired windows of the load generator: {}",
            self.scenario.workload.target.get_ref(),
            loadgen
                .iter()
                .map(|(a, b)| format!(
                    "{}..{}",
                    seconds(*a),
                    if *b == u64::MAX {
                        "end".into()
                    } else {
                        seconds(*b)
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(at) = first_breach {
            detail = format!("requests succeeded without a valid certificate at {at}; {detail}");
        } else if dead_intervals == 0 {
            detail = format!("not exercised: no certificate expired under load; {detail}");
        }
        (CheckKind::Security, passed, detail)
    }

    /// When the CA came back: the last restart of the `ca` host.
    fn ca_returned_us(&self) -> Option<u64> {
        self.faults
            .iter()
            .filter(|f| matches!(&f.action, FaultAction::Restart { hosts } if hosts.iter().any(|h| h == "ca")))
            .map(|f| f.at.as_micros() as u64)
            .max()
    }

    fn recovered(&self, bound: Option<Duration>) -> Outcome {
        let bound_us = bound.unwrap_or_default().as_micros() as u64;
        let Some(back) = self.ca_returned_us() else {
            return (
                CheckKind::Liveness,
                false,
                "the scenario never restarts the CA".into(),
            );
        };
        // Hosts that failed to renew before the CA came back must renew.
        let failed_hosts: BTreeSet<&str> = self
            .of_kind(seam::event::CERT_RENEW_FAILED)
            .filter(|e| e.at_us < back)
            .map(|e| e.host.as_str())
            .collect();
        let mut first_renewal: BTreeMap<&str, Option<u64>> =
            failed_hosts.iter().map(|h| (*h, None)).collect();
        for e in self
            .of_kind(seam::event::CERT_RENEWED)
            .filter(|e| e.at_us >= back)
        {
            if let Some(slot @ None) = first_renewal.get_mut(e.host.as_str()) {
                *slot = Some(e.at_us);
            }
        }
        let never: Vec<&str> = first_renewal
            .iter()
            .filter(|(_, at)| at.is_none())
            .map(|(h, _)| *h)
            .collect();
        let renewed_by = first_renewal.values().flatten().max().copied();
        // Requests: the first interval after the return with successes and
        // no failures.
        let warmup = self.warmup_us();
        let serving_from = self
            .load
            .intervals
            .iter()
            .map(|i| (warmup + i.start.as_micros() as u64, i.total()))
            .find(|(at, t)| *at >= back && t.ok > 0 && t.failed == 0)
            .map(|(at, _)| at);
        let renew_took = renewed_by.map(|at| at - back);
        let serve_took = serving_from.map(|at| at.saturating_sub(back));
        let passed = !failed_hosts.is_empty()
            && never.is_empty()
            && renew_took.is_some_and(|t| t <= bound_us)
            && serve_took.is_some_and(|t| t <= bound_us);
        let show = |t: Option<u64>| t.map_or("never".to_owned(), seconds);
        let detail = format!(
            "CA back at {}; {} proxies had failed to renew, all renewed within {}{}; requests clean again after {} (bound {:?})",
            seconds(back),
            failed_hosts.len(),
            show(renew_took),
            if never.is_empty() {
                String::new()
            } else {
                format!(" except {never:?}")
            },
            show(serve_took),
            bound.unwrap_or_default()
        );
        (CheckKind::Liveness, passed, detail)
    }

    fn skew_contained(&self) -> Outcome {
        let skew = self.faults.iter().find_map(|f| match &f.action {
            FaultAction::ClockSkew { hosts, skew_ms } if *skew_ms != 0 => {
                Some((hosts.clone(), *skew_ms, f.at.as_micros() as u64))
            }
            _ => None,
        });
        let Some((skewed, skew_ms, from)) = skew else {
            return (
                CheckKind::Security,
                false,
                "the scenario skews no clock".into(),
            );
        };
        let until = self
            .faults
            .iter()
            .filter(|f| f.at.as_micros() as u64 > from)
            .find(|f| match &f.action {
                FaultAction::ClockSkew { hosts, skew_ms } => *skew_ms == 0 && hosts == &skewed,
                FaultAction::Heal => true,
                _ => false,
            })
            .map_or(u64::MAX, |f| f.at.as_micros() as u64);
        let inside = |e: &&TraceEvent| e.at_us >= from && e.at_us < until;
        let is_skewed = |host: &str| skewed.iter().any(|s| s == host);
        let skewed_failed = self
            .of_kind(seam::event::CERT_RENEW_FAILED)
            .filter(inside)
            .filter(|e| is_skewed(&e.host))
            .count();
        let skewed_renewed = self
            .of_kind(seam::event::CERT_RENEWED)
            .filter(inside)
            .filter(|e| is_skewed(&e.host))
            .count();
        // Every other workload keeps renewing; none refuses a peer for time.
        let workloads: BTreeSet<String> = self
            .scenario
            .services
            .iter()
            .flat_map(|s| (0..s.replicas).map(move |r| format!("{}-{r}", s.name.get_ref())))
            .filter(|h| !is_skewed(h))
            .collect();
        let renewed_others: BTreeSet<&str> = self
            .of_kind(seam::event::CERT_RENEWED)
            .filter(inside)
            .map(|e| e.host.as_str())
            .filter(|h| workloads.contains(*h))
            .collect();
        let others_failed = self
            .of_kind(seam::event::CERT_RENEW_FAILED)
            .filter(inside)
            .filter(|e| !is_skewed(&e.host))
            .count();
        let others_refused_time = self
            .of_kind(seam::event::CERT_PEER_REJECTED)
            .filter(inside)
            .filter(|e| !is_skewed(&e.host))
            .filter(|e| matches!(field(e, "reason"), Some("expired" | "not_yet_valid")))
            .count();
        let effect = skewed_failed > 0 && skewed_renewed == 0;
        let contained = renewed_others.len() == workloads.len()
            && others_failed == 0
            && others_refused_time == 0;
        let detail = format!(
            "{:?} {skew_ms:+} ms from {} to {}: effect {} (the skewed host failed to renew {skewed_failed} times, renewed {skewed_renewed} times: every certificate, the CA's included, looks expired to it); contained {} ({}/{} other workloads renewed, {others_failed} other renewal failures, {others_refused_time} time-based refusals elsewhere)",
            skewed,
            seconds(from),
            if until == u64::MAX {
                "end".into()
            } else {
                seconds(until)
            },
            if effect { "shown" } else { "NOT shown" },
            if contained { "yes" } else { "NO" },
            renewed_others.len(),
            workloads.len()
        );
        (CheckKind::Security, effect && contained, detail)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SCENARIO: &str = r#"
name = "t"
[[services]]
name = "gateway"
app = "edge"
service_time = { distribution = "constant", mean = "1ms" }
[workload]
target = "gateway"
[[workload.phases]]
name = "p"
duration = "10s"
arrival = { kind = "poisson", rate = 1 }
[[workload.mix]]
operation = "quote"
weight = 1
[[checks]]
name = "expired"
property = "no_expired_cert_accepted"
[[checks]]
name = "plaintext"
property = "no_plaintext_accepted"
"#;

    fn event(host: &str, kind: &str, detail: &str) -> TraceEvent {
        TraceEvent {
            seq: 0,
            at_us: 1_000_000,
            host: host.into(),
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    fn evaluate(events: &[TraceEvent]) -> Vec<Check> {
        let scenario = Scenario::parse(Path::new("t.toml"), SCENARIO).unwrap();
        let load = LoadReport::new(Duration::from_secs(1), Duration::from_secs(10));
        checks(
            &scenario,
            &scenario.fault_plan(seam::Seed::new(1)),
            &load,
            events,
        )
    }

    fn clean() -> Vec<TraceEvent> {
        vec![
            event(
                "gateway-0",
                seam::event::CERT_PEER_ACCEPTED,
                "peer=x serial=01 age_ms=5 left_ms=100",
            ),
            event(
                "operator",
                seam::event::CERT_AUDIT,
                "probe=expired host=gateway-0 outcome=refused",
            ),
            event(
                "operator",
                seam::event::CERT_AUDIT,
                "probe=plaintext host=gateway-0 outcome=refused",
            ),
        ]
    }

    #[test]
    fn refused_probes_and_valid_acceptances_pass() {
        assert!(evaluate(&clean()).iter().all(|c| c.passed));
    }

    #[test]
    fn an_accepted_expired_certificate_fails() {
        let mut events = clean();
        events.push(event(
            "gateway-0",
            seam::event::CERT_PEER_ACCEPTED,
            "peer=x serial=02 age_ms=70000 left_ms=-10",
        ));
        let checks = evaluate(&events);
        assert!(!checks[0].passed, "{}", checks[0].detail);
        assert!(checks[1].passed);
    }

    #[test]
    fn an_answered_probe_fails() {
        let mut events = clean();
        events.push(event(
            "operator",
            seam::event::CERT_AUDIT,
            "probe=plaintext host=gateway-0 outcome=answered:200",
        ));
        events.push(event(
            "operator",
            seam::event::CERT_AUDIT,
            "probe=expired host=gateway-0 outcome=answered:200",
        ));
        assert!(evaluate(&events).iter().all(|c| !c.passed));
    }

    #[test]
    fn no_probes_is_not_a_pass() {
        assert!(evaluate(&[]).iter().all(|c| !c.passed));
    }
}
