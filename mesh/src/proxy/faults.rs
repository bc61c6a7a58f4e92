//! Istio-style fault injection: delay a share of requests, abort a share
//! with a status. Draws come from the proxy's seeded stream, so the same
//! seed injects into the same requests.

use std::time::Duration;

use rand::Rng;

use crate::config::{EndpointFault, FaultInjection};

/// What to do to one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injection {
    /// Hold the request this long first.
    pub delay: Option<Duration>,
    /// Then answer with this status instead of forwarding.
    pub abort: Option<u16>,
}

fn hit(percent: f64, rng: &mut impl Rng) -> bool {
    percent > 0.0 && rng.random::<f64>() * 100.0 < percent
}

/// Draws the injection for one request (delay first, then abort, each
/// independently, as Envoy's fault filter does).
pub fn draw(fault: &FaultInjection, rng: &mut impl Rng) -> Injection {
    let delay = fault
        .delay
        .as_ref()
        .filter(|d| hit(d.percent, rng))
        .map(|d| Duration::from_millis(d.fixed_delay_ms));
    let abort = fault
        .abort
        .as_ref()
        .filter(|a| hit(a.percent, rng))
        .map(|a| a.status);
    Injection { delay, abort }
}

/// The endpoint faults that apply to `host` at run time `now`.
pub fn active_for<'a>(
    faults: &'a [EndpointFault],
    host: &'a str,
    now: Duration,
) -> impl Iterator<Item = &'a FaultInjection> + 'a {
    let now_ms = now.as_millis() as u64;
    faults
        .iter()
        .filter(move |f| {
            f.hosts.iter().any(|h| h == host)
                && now_ms >= f.from_ms
                && f.until_ms.is_none_or(|until| now_ms < until)
        })
        .map(|f| &f.fault)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AbortFault, DelayFault};

    #[test]
    fn percentages_hold_and_replay_from_the_seed() {
        let fault = FaultInjection {
            abort: Some(AbortFault {
                percent: 25.0,
                status: 503,
            }),
            delay: Some(DelayFault {
                percent: 100.0,
                fixed_delay_ms: 7,
            }),
        };
        let run = |seed| {
            let mut rng = seam::Seed::new(seed).rng();
            (0..4000)
                .map(|_| draw(&fault, &mut rng))
                .collect::<Vec<_>>()
        };
        let draws = run(9);
        assert_eq!(draws, run(9));
        let aborted = draws.iter().filter(|i| i.abort == Some(503)).count();
        assert!((900..1100).contains(&aborted), "{aborted}");
        assert!(
            draws
                .iter()
                .all(|i| i.delay == Some(Duration::from_millis(7)))
        );
        let none = FaultInjection::default();
        assert_eq!(
            draw(&none, &mut seam::Seed::new(1).rng()),
            Injection::default()
        );
    }

    #[test]
    fn endpoint_faults_apply_to_their_hosts_in_their_window() {
        let faults = vec![EndpointFault {
            hosts: vec!["registry-1".into()],
            from_ms: 1000,
            until_ms: Some(2000),
            fault: FaultInjection::default(),
        }];
        let count = |host, ms| active_for(&faults, host, Duration::from_millis(ms)).count();
        assert_eq!(count("registry-1", 999), 0);
        assert_eq!(count("registry-1", 1000), 1);
        assert_eq!(count("registry-1", 1999), 1);
        assert_eq!(count("registry-1", 2000), 0);
        assert_eq!(count("registry-0", 1500), 0);
    }
}
