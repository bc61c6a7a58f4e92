//! Prometheus text (exposition format 0.0.4) for one proxy, as its admin
//! port serves it, or for every proxy of a run, labelled by `pod`.

use std::fmt::Write as _;

use super::ProxyState;
use super::metrics::{
    Direction, LATENCY_BUCKETS_MS, MeshCounter, SeriesKey, TcpKey, classification,
};

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The proxies to render: each with the `pod` label its series carry
/// (`None` on a proxy's own admin port).
type Proxies<'a> = [(Option<&'a str>, &'a ProxyState)];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn pod_label(pod: Option<&str>) -> String {
    pod.map_or_else(String::new, |pod| format!("pod=\"{}\",", escape_label(pod)))
}

/// Linkerd's labels of a request series: `client_id` inbound, `server_id`
/// outbound; `tls="true"` once a peer identity was verified.
fn series_labels(pod: Option<&str>, key: &SeriesKey) -> String {
    let (peer_label, tls) = match (key.direction, key.peer_id.is_empty()) {
        (_, true) => (String::new(), "no_identity"),
        (Direction::Inbound, false) => (
            format!(",client_id=\"{}\"", escape_label(&key.peer_id)),
            "true",
        ),
        (Direction::Outbound, false) => (
            format!(",server_id=\"{}\"", escape_label(&key.peer_id)),
            "true",
        ),
    };
    format!(
        "{}direction=\"{}\",authority=\"{}\",dst_service=\"{}\",dst_namespace=\"{}\",tls=\"{tls}\"{peer_label},route=\"{}\"",
        pod_label(pod),
        key.direction.as_str(),
        escape_label(&key.authority),
        escape_label(&key.dst_service),
        escape_label(&key.dst_namespace),
        escape_label(&key.route),
    )
}

fn tcp_labels(pod: Option<&str>, key: &TcpKey) -> String {
    let tls = if key.tls {
        "tls=\"true\""
    } else {
        "tls=\"no_identity\",no_tls_reason=\"loopback\""
    };
    format!(
        "{}direction=\"{}\",peer=\"src\",{tls}",
        pod_label(pod),
        key.direction.as_str()
    )
}

pub(super) fn render_prometheus(proxies: &Proxies<'_>) -> String {
    let mut out = String::new();
    render_requests(&mut out, proxies);
    render_latency(&mut out, proxies);
    render_tcp(&mut out, proxies);
    render_mesh_counters(&mut out, proxies);
    render_config(&mut out, proxies);
    out
}

fn render_requests(out: &mut String, proxies: &Proxies<'_>) {
    family(
        out,
        "request_total",
        "counter",
        "Requests the proxy received.",
    );
    for (pod, proxy) in proxies {
        for (key, count) in &proxy.requests {
            let _ = writeln!(out, "request_total{{{}}} {count}", series_labels(*pod, key));
        }
    }
    family(
        out,
        "response_total",
        "counter",
        "Responses the proxy sent, by classification (a 5xx is a failure) and status code.",
    );
    for (pod, proxy) in proxies {
        for (key, stats) in &proxy.responses {
            let _ = writeln!(
                out,
                "response_total{{{},classification=\"{}\",status_code=\"{}\"}} {}",
                series_labels(*pod, &key.series),
                classification(key.status_code),
                key.status_code,
                stats.count
            );
        }
    }
}

fn render_latency(out: &mut String, proxies: &Proxies<'_>) {
    family(
        out,
        "response_latency_ms",
        "histogram",
        "Time in the proxy from the request to the response, in milliseconds.",
    );
    for (pod, proxy) in proxies {
        for (key, stats) in &proxy.responses {
            let labels = format!(
                "{},status_code=\"{}\"",
                series_labels(*pod, &key.series),
                key.status_code
            );
            let mut cumulative = 0;
            for (bound_ms, in_bucket) in LATENCY_BUCKETS_MS.iter().zip(&stats.buckets) {
                cumulative += in_bucket;
                let _ = writeln!(
                    out,
                    "response_latency_ms_bucket{{{labels},le=\"{bound_ms}\"}} {cumulative}"
                );
            }
            let sum_ms = stats.latency_sum_us as f64 / 1000.0;
            let _ = writeln!(
                out,
                "response_latency_ms_bucket{{{labels},le=\"+Inf\"}} {}",
                stats.count
            );
            let _ = writeln!(out, "response_latency_ms_sum{{{labels}}} {sum_ms:.3}");
            let _ = writeln!(out, "response_latency_ms_count{{{labels}}} {}", stats.count);
        }
    }
}

fn render_tcp(out: &mut String, proxies: &Proxies<'_>) {
    family(
        out,
        "tcp_open_total",
        "counter",
        "Connections the proxy accepted.",
    );
    for (pod, proxy) in proxies {
        for (key, stats) in &proxy.tcp {
            let _ = writeln!(
                out,
                "tcp_open_total{{{}}} {}",
                tcp_labels(*pod, key),
                stats.total
            );
        }
    }
    family(
        out,
        "tcp_open_connections",
        "gauge",
        "Accepted connections open now.",
    );
    for (pod, proxy) in proxies {
        for (key, stats) in &proxy.tcp {
            let _ = writeln!(
                out,
                "tcp_open_connections{{{}}} {}",
                tcp_labels(*pod, key),
                stats.open
            );
        }
    }
}

fn render_mesh_counters(out: &mut String, proxies: &Proxies<'_>) {
    for counter in MeshCounter::ALL {
        family(out, counter.name(), "counter", counter.help());
        for (pod, proxy) in proxies {
            for ((kind, service), count) in &proxy.mesh_counters {
                if *kind == counter {
                    let _ = writeln!(
                        out,
                        "{}{{{}dst_service=\"{}\"}} {count}",
                        counter.name(),
                        pod_label(*pod),
                        escape_label(service)
                    );
                }
            }
        }
    }
}

fn render_config(out: &mut String, proxies: &Proxies<'_>) {
    let configured: Vec<_> = proxies
        .iter()
        .filter_map(|(pod, proxy)| Some((*pod, proxy.config.as_ref()?)))
        .collect();
    if configured.is_empty() {
        return;
    }
    let unlabelled = |pod: Option<&str>| {
        pod.map_or_else(String::new, |pod| {
            format!("{{pod=\"{}\"}}", escape_label(pod))
        })
    };
    family(
        out,
        "meshsim_config_version",
        "gauge",
        "The control-plane snapshot version this proxy serves from.",
    );
    for (pod, config) in &configured {
        let _ = writeln!(
            out,
            "meshsim_config_version{} {}",
            unlabelled(*pod),
            config.version
        );
    }
    family(
        out,
        "meshsim_config_staleness_seconds",
        "gauge",
        "Time since the control plane last answered this proxy (-1: never).",
    );
    for (pod, config) in &configured {
        let staleness = config.last_contact.map_or(-1.0, |at| {
            config.clock.run_elapsed().saturating_sub(at).as_secs_f64()
        });
        let _ = writeln!(
            out,
            "meshsim_config_staleness_seconds{} {staleness:.3}",
            unlabelled(*pod)
        );
    }
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
        let proxy = hub
            .proxy("registry-0", Arc::new(FixedClock(Duration::from_millis(7))))
            .with_namespace("rec");
        let mut rng = seam::Seed::new(1).rng();
        for status in [200, 200, 503] {
            proxy.request(RequestRecord {
                direction: Direction::Inbound,
                service: "registry".into(),
                authority: None,
                route: "default".into(),
                peer: "spiffe://td/ns/rec/sa/gateway".into(),
                method: http::Method::GET,
                path: "/recs".into(),
                status,
                endpoint: label(""),
                attempts: 1,
                started: Duration::from_millis(4),
                trace: TraceContext {
                    flags: 1,
                    ..new_trace(&mut rng)
                },
                span_id: new_span_id(&mut rng),
                parent_id: None,
                proxy_error: None,
            });
        }
        let text = hub.prometheus("registry-0");
        let series = "direction=\"inbound\",authority=\"registry\",dst_service=\"registry\",dst_namespace=\"rec\",tls=\"true\",client_id=\"spiffe://td/ns/rec/sa/gateway\",route=\"default\"";
        assert!(
            text.contains(&format!("request_total{{{series}}} 3\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "response_total{{{series},classification=\"success\",status_code=\"200\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "response_total{{{series},classification=\"failure\",status_code=\"503\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "response_latency_ms_bucket{{{series},status_code=\"200\",le=\"2\"}} 0\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "response_latency_ms_bucket{{{series},status_code=\"200\",le=\"3\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "response_latency_ms_count{{{series},status_code=\"503\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "response_latency_ms_sum{{{series},status_code=\"200\"}} 6.000\n"
            )),
            "{text}"
        );
        let all = hub.prometheus_all();
        assert!(
            all.contains("request_total{pod=\"registry-0\",direction=\"inbound\""),
            "{all}"
        );
        assert_eq!(all.matches("# TYPE request_total counter").count(), 1);
        assert_eq!(hub.access_log("registry-0").len(), 3);
        assert_eq!(hub.spans().len(), 3);
    }
}
