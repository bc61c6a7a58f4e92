//! Prometheus text for one proxy, as the admin port serves it.

use std::fmt::Write as _;

use super::ProxyState;
use super::metrics::LATENCY_BUCKETS_MS;

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) fn render_prometheus(proxy: &ProxyState) -> String {
    let mut out = String::new();
    out.push_str("# HELP request_total Requests, by direction, service, route, peer identity and status class.\n");
    out.push_str("# TYPE request_total counter\n");
    for (key, count) in &proxy.counters {
        let _ = writeln!(
            out,
            "request_total{{direction=\"{}\",service=\"{}\",route=\"{}\",peer=\"{}\",status_class=\"{}\"}} {count}",
            key.direction.as_str(),
            escape_label(&key.service),
            escape_label(&key.route),
            escape_label(&key.peer),
            key.status_class
        );
    }
    out.push_str(
        "# HELP response_latency_ms Time in the proxy until the response, in milliseconds.\n",
    );
    out.push_str("# TYPE response_latency_ms histogram\n");
    for (key, histogram) in &proxy.latency {
        let labels = format!(
            "direction=\"{}\",service=\"{}\",route=\"{}\"",
            key.direction.as_str(),
            escape_label(&key.service),
            escape_label(&key.route)
        );
        for bucket_ms in LATENCY_BUCKETS_MS {
            let count = histogram.count_between(0, bucket_ms * 1000);
            let _ = writeln!(
                out,
                "response_latency_ms_bucket{{{labels},le=\"{bucket_ms}\"}} {count}"
            );
        }
        let total = histogram.len();
        let sum_ms = histogram.mean() * total as f64 / 1000.0;
        let _ = writeln!(
            out,
            "response_latency_ms_bucket{{{labels},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(out, "response_latency_ms_sum{{{labels}}} {sum_ms:.3}");
        let _ = writeln!(out, "response_latency_ms_count{{{labels}}} {total}");
    }
    if let Some(config) = &proxy.config {
        out.push_str(
            "# HELP config_version The control-plane snapshot version this proxy serves from.\n",
        );
        out.push_str("# TYPE config_version gauge\n");
        let _ = writeln!(out, "config_version {}", config.version);
        out.push_str("# HELP config_staleness_seconds Time since the control plane last answered this proxy (-1: never).\n");
        out.push_str("# TYPE config_staleness_seconds gauge\n");
        let staleness = config.last_contact.map_or(-1.0, |at| {
            config.clock.run_elapsed().saturating_sub(at).as_secs_f64()
        });
        let _ = writeln!(out, "config_staleness_seconds {staleness:.3}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::testing::FixedClock;
    use crate::telemetry::*;

    #[test]
    fn metrics_render_as_prometheus_text() {
        let hub = Telemetry::new();
        let proxy = hub.proxy("registry-0", Arc::new(FixedClock(Duration::from_millis(7))));
        let mut rng = seam::Seed::new(1).rng();
        for status in [200, 200, 503] {
            proxy.request(RequestRecord {
                direction: Direction::Inbound,
                service: "registry".into(),
                route: "default".into(),
                peer: "spiffe://td/ns/rec/sa/gateway".into(),
                method: "GET".into(),
                path: "/recs".into(),
                status,
                endpoint: String::new(),
                attempts: 1,
                started: Duration::from_millis(4),
                trace: new_trace(&mut rng),
                span_id: new_span_id(&mut rng),
                parent_id: None,
                proxy_error: None,
            });
        }
        let text = hub.prometheus("registry-0");
        assert!(text.contains("request_total{direction=\"inbound\",service=\"registry\",route=\"default\",peer=\"spiffe://td/ns/rec/sa/gateway\",status_class=\"2xx\"} 2"), "{text}");
        assert!(text.contains("status_class=\"5xx\"} 1"), "{text}");
        assert!(text.contains("le=\"2\"} 0"), "{text}");
        assert!(text.contains("le=\"3\"} 3"), "{text}");
        assert!(text.contains("response_latency_ms_count{direction=\"inbound\",service=\"registry\",route=\"default\"} 3"), "{text}");
        assert_eq!(hub.access_log("registry-0").len(), 3);
        assert_eq!(hub.spans().len(), 3);
    }
}
