//! Capacity sweeps: `capacity.csv` and `capacity.svg`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ReportError, files};

/// What a sweep varies along its x axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityAxis {
    /// Offered load in requests per second (fixed topology).
    RateRps,
    /// Number of replicas of one service.
    Replicas,
    /// Concurrency slots per replica of one service.
    Concurrency,
}

/// One step of a capacity sweep: one `capacity.csv` row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityPoint {
    /// Offered rate (rps) or replica count, per `axis`.
    pub x: f64,
    /// Meaning of `x`; the chart labels its axis from the first point.
    pub axis: CapacityAxis,
    /// Achieved throughput, requests per second. In a sweep of replicas or
    /// concurrency: the throughput at the highest rate that met the SLO
    /// (the capacity at that size).
    pub throughput_rps: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed requests / all requests, 0.0–1.0.
    pub error_rate: f64,
    /// Whether the SLO held at this step.
    pub passed: bool,
}

/// CSV row: the point plus the SLO it was judged against, so the file is
/// self-describing when passed around alone.
#[derive(Serialize)]
struct CapacityRow<'a> {
    x: f64,
    axis: CapacityAxis,
    throughput_rps: f64,
    p99_ms: f64,
    error_rate: f64,
    passed: bool,
    slo: &'a str,
}

const HEADER: [&str; 7] = [
    "x",
    "axis",
    "throughput_rps",
    "p99_ms",
    "error_rate",
    "passed",
    "slo",
];

/// Writes `capacity.csv` and `capacity.svg` into `dir` (creating it).
/// `slo` is free text (e.g. "p99 < 250ms, errors < 1%"): printed on the
/// chart, and a p99 bound in it is drawn as a threshold line.
pub fn write_capacity(
    dir: &Path,
    points: &[CapacityPoint],
    slo: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let csv_path = dir.join(files::CAPACITY_CSV);
    write_csv(&csv_path, points, slo)?;
    let svg_path = dir.join(files::CAPACITY_SVG);
    let svg =
        crate::charts::capacity_svg(points, slo).map_err(|e| ReportError::render(&svg_path, e))?;
    crate::write_file(&svg_path, svg)?;
    Ok(vec![csv_path, svg_path])
}

fn write_csv(path: &Path, points: &[CapacityPoint], slo: &str) -> Result<(), ReportError> {
    let mut csv = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let encode = |e: csv::Error| ReportError::render(path, e);
    csv.write_record(HEADER).map_err(encode)?;
    for p in points {
        let row = CapacityRow {
            x: p.x,
            axis: p.axis,
            throughput_rps: p.throughput_rps,
            p99_ms: p.p99_ms,
            error_rate: p.error_rate,
            passed: p.passed,
            slo,
        };
        csv.serialize(row).map_err(encode)?;
    }
    let bytes = csv.into_inner().map_err(|e| ReportError::render(path, e))?;
    crate::write_file(path, bytes)
}

/// The p99 bound in ms named by an SLO text such as "p99 < 250ms",
/// "p99<=0.5s" or k6's "p(99) < 250ms"; `None` when there is none (then
/// the text is only printed).
pub(crate) fn slo_p99_ms(slo: &str) -> Option<f64> {
    // k6 writes percentiles as p(N): read "p(99)" as "p99", "p(99.9)" as "p99.9".
    let lower = slo.to_ascii_lowercase().replace("p(", "p").replace(')', "");
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("p99") {
        rest = &rest[at + 3..];
        // "p99.9" and "p999" are other percentiles.
        if rest.starts_with('.') || rest.starts_with('9') {
            continue;
        }
        let body = rest.trim_start_matches(|c: char| c.is_whitespace() || "<=≤:".contains(c));
        let digits = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let value: f64 = body[..digits].parse().ok()?;
        let unit = body[digits..].trim_start();
        return if unit.starts_with("ms") {
            Some(value)
        } else if unit.starts_with("us") || unit.starts_with("µs") {
            Some(value / 1000.0)
        } else if unit.starts_with('s') {
            Some(value * 1000.0)
        } else {
            None
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn points() -> Vec<CapacityPoint> {
        [
            (100.0, 99.0, 12.0, true),
            (400.0, 390.0, 80.0, true),
            (200.0, 199.0, 20.0, true),
            (800.0, 520.0, 900.0, false),
        ]
        .into_iter()
        .map(|(x, throughput_rps, p99_ms, passed)| CapacityPoint {
            x,
            axis: CapacityAxis::RateRps,
            throughput_rps,
            p99_ms,
            error_rate: if passed { 0.0 } else { 0.2 },
            passed,
        })
        .collect()
    }

    #[test]
    fn writes_csv_and_svg() {
        let dir = testdata::temp_dir("capacity");
        let written = write_capacity(&dir, &points(), "p99 < 250ms, errors < 1%").unwrap();
        assert_eq!(
            written,
            vec![dir.join("capacity.csv"), dir.join("capacity.svg")]
        );
        let csv = std::fs::read_to_string(dir.join("capacity.csv")).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("x,axis,throughput_rps,p99_ms,error_rate,passed,slo")
        );
        assert_eq!(
            lines.next(),
            Some("100.0,rate_rps,99.0,12.0,0.0,true,\"p99 < 250ms, errors < 1%\"")
        );
        let svg = std::fs::read_to_string(dir.join("capacity.svg")).unwrap();
        testdata::assert_well_formed(&svg);
        assert!(svg.contains("SLO p99 250 ms"), "threshold line is labelled");
        assert!(svg.contains("fail"), "fail legend");
    }

    #[test]
    fn empty_and_odd_points_do_not_panic() {
        let dir = testdata::temp_dir("capacity-empty");
        write_capacity(&dir, &[], "").unwrap();
        let mut odd = points();
        odd[0].x = f64::NAN;
        odd[1].p99_ms = f64::INFINITY;
        odd.truncate(2);
        write_capacity(&dir, &odd, "garbage \u{1} <b>").unwrap();
        let svg = std::fs::read_to_string(dir.join("capacity.svg")).unwrap();
        testdata::assert_well_formed(&svg);
        let single = vec![points().remove(0)];
        write_capacity(&dir, &single, "p99<1s").unwrap();
    }

    #[test]
    fn sweeps_label_whole_counts_and_capacity() {
        let dir = testdata::temp_dir("capacity-replicas");
        let sweep: Vec<CapacityPoint> = [(1.0, 900.0), (2.0, 1700.0), (3.0, 2300.0)]
            .into_iter()
            .map(|(x, throughput_rps)| CapacityPoint {
                x,
                axis: CapacityAxis::Replicas,
                throughput_rps,
                p99_ms: 40.0,
                error_rate: 0.0,
                passed: true,
            })
            .collect();
        write_capacity(&dir, &sweep, "p(99) < 250ms").unwrap();
        let svg = std::fs::read_to_string(dir.join("capacity.svg")).unwrap();
        testdata::assert_well_formed(&svg);
        // plotters puts each label's text on a line of its own.
        let label = |text: &str| svg.contains(&format!(">\n{text}\n<"));
        assert!(label("capacity (rps)") && label("replicas"), "{svg}");
        assert!(
            label("2") && !label("1.5") && !label("2.0"),
            "whole counts only"
        );
    }

    #[test]
    fn parses_p99_bounds() {
        assert_eq!(slo_p99_ms("p99 < 250ms"), Some(250.0));
        assert_eq!(slo_p99_ms("errors < 1%, P99<=0.5s"), Some(500.0));
        assert_eq!(slo_p99_ms("p99.9 < 900ms, p99 < 300 ms"), Some(300.0));
        assert_eq!(slo_p99_ms("p999 < 900ms"), None);
        assert_eq!(slo_p99_ms("p99 < lots"), None);
        assert_eq!(slo_p99_ms("p(99) < 250ms"), Some(250.0));
        assert_eq!(slo_p99_ms("p(99.9)<1s, p(99)<=0.2s"), Some(200.0));
        assert_eq!(slo_p99_ms("p(95) < 100ms"), None);
        assert_eq!(slo_p99_ms(""), None);
    }
}
