//! Spans as OTLP JSON (the OTLP/HTTP JSON encoding of an
//! `ExportTraceServiceRequest`): one resource per host, `service.name` its
//! service, ids as lower-case hex, times as Unix nanoseconds (strings).
//! Written as one line, so the OpenTelemetry Collector's `otlpjsonfile`
//! receiver and Jaeger's file upload both read it.
//!
//! Times are the run's own: a simulated run's spans sit at the simulation's
//! epoch plus simulated time, so two runs of one seed write the same file.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::metrics::Direction;
use super::trace::Span;

/// OTLP `SPAN_KIND_SERVER` (an inbound hop) and `SPAN_KIND_CLIENT`.
const SPAN_KIND_SERVER: u8 = 2;
const SPAN_KIND_CLIENT: u8 = 3;
/// OTLP `STATUS_CODE_UNSET` and `STATUS_CODE_ERROR` (a 5xx).
const STATUS_CODE_UNSET: u8 = 0;
const STATUS_CODE_ERROR: u8 = 2;

/// The service a host runs: `gateway-0` → `gateway`; other hosts
/// (`loadgen`) are their own service.
pub fn service_of_host(host: &str) -> &str {
    match host.rsplit_once('-') {
        Some((service, replica)) if replica.bytes().all(|b| b.is_ascii_digit()) => service,
        _ => host,
    }
}

fn attribute_string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn otlp_span(span: &Span, epoch_unix_ns: u64) -> Value {
    let nanos = |us: u64| (epoch_unix_ns + us * 1000).to_string();
    let kind = match span.direction {
        Direction::Inbound => SPAN_KIND_SERVER,
        Direction::Outbound => SPAN_KIND_CLIENT,
    };
    let status = if span.status >= 500 {
        json!({"code": STATUS_CODE_ERROR, "message": format!("HTTP {}", span.status)})
    } else {
        json!({"code": STATUS_CODE_UNSET})
    };
    let mut value = json!({
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": kind,
        "startTimeUnixNano": nanos(span.start_us),
        "endTimeUnixNano": nanos(span.end_us),
        "attributes": [
            {"key": "http.response.status_code", "value": {"intValue": span.status.to_string()}},
            attribute_string("meshsim.direction", span.direction.as_str()),
        ],
        "status": status,
    });
    if let Some(parent) = &span.parent_id {
        value["parentSpanId"] = json!(parent);
    }
    value
}

/// The OTLP JSON document of `spans`; `epoch_unix_ns` is the wall time of
/// run time zero.
pub fn otlp_json(spans: &[Span], epoch_unix_ns: u64) -> Value {
    let mut by_host: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for span in spans {
        by_host
            .entry(&span.host)
            .or_default()
            .push(otlp_span(span, epoch_unix_ns));
    }
    let resource_spans: Vec<Value> = by_host
        .into_iter()
        .map(|(host, spans)| {
            json!({
                "resource": {"attributes": [
                    attribute_string("service.name", service_of_host(host)),
                    attribute_string("service.instance.id", host),
                    attribute_string("host.name", host),
                ]},
                "scopeSpans": [{
                    "scope": {"name": "meshsim", "version": env!("CARGO_PKG_VERSION")},
                    "spans": spans,
                }],
            })
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(host: &str, id: &str, parent: Option<&str>, direction: Direction) -> Span {
        Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: id.into(),
            parent_id: parent.map(str::to_owned),
            name: format!("{} x", direction.as_str()),
            host: host.into(),
            direction,
            start_us: 1,
            end_us: 3,
            status: 503,
        }
    }

    #[test]
    fn spans_group_by_host_with_otlp_field_names() {
        let spans = [
            span("gateway-0", "00f067aa0ba902b7", None, Direction::Outbound),
            span(
                "registry-1",
                "00f067aa0ba902b8",
                Some("00f067aa0ba902b7"),
                Direction::Inbound,
            ),
        ];
        let doc = otlp_json(&spans, 1_000_000_000);
        let resources = doc["resourceSpans"].as_array().unwrap();
        assert_eq!(resources.len(), 2);
        assert_eq!(
            resources[1]["resource"]["attributes"][0]["value"]["stringValue"],
            "registry"
        );
        let server = &resources[1]["scopeSpans"][0]["spans"][0];
        assert_eq!(server["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(server["kind"], SPAN_KIND_SERVER);
        assert_eq!(server["startTimeUnixNano"], "1000001000");
        assert_eq!(server["status"]["code"], STATUS_CODE_ERROR);
        assert!(resources[0]["scopeSpans"][0]["spans"][0]["parentSpanId"].is_null());
        assert_eq!(service_of_host("loadgen"), "loadgen");
    }
}
