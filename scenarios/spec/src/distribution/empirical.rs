//! Empirical distributions from the files users already have: an
//! HdrHistogram interval log (`.hlog`, as `meshsim load` writes, values in
//! microseconds), a CSV of latencies, or Prometheus histogram buckets
//! (`le` with cumulative counts, as Linkerd's `response_latency_ms_bucket`).
//!
//! Each becomes [`Points`]: an increasing CDF through which a uniform draw
//! is inverted with linear interpolation between points.

use std::path::Path;

/// What a file's numbers measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Durations; base unit seconds.
    Duration,
    /// Sizes; base unit bytes.
    Bytes,
}

/// An empirical CDF: `values` increasing, `cumulative[i]` = P(X ≤ values[i]),
/// increasing to 1.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Points {
    /// Values in the base unit.
    pub values: Vec<f64>,
    /// Cumulative probabilities, the last one 1.
    pub cumulative: Vec<f64>,
    /// Observations the file held (for provenance).
    pub count: u64,
    /// What the file was and how its unit was read.
    pub provenance: String,
}

impl Points {
    /// The `p`-quantile by linear interpolation of the CDF.
    pub fn quantile(&self, p: f64) -> f64 {
        let Some(&last) = self.values.last() else {
            return 0.0;
        };
        let at = self.cumulative.partition_point(|&c| c < p);
        if at == 0 {
            return self.values[0];
        }
        if at >= self.values.len() {
            return last;
        }
        let (c0, c1) = (self.cumulative[at - 1], self.cumulative[at]);
        let (v0, v1) = (self.values[at - 1], self.values[at]);
        if c1 <= c0 {
            return v1;
        }
        v0 + (v1 - v0) * (p - c0) / (c1 - c0)
    }

    /// The mean of the interpolated distribution.
    pub fn mean(&self) -> f64 {
        let mut mean = self.values.first().copied().unwrap_or(0.0) * self.cumulative[0];
        for i in 1..self.values.len() {
            let mass = self.cumulative[i] - self.cumulative[i - 1];
            mean += mass * 0.5 * (self.values[i] + self.values[i - 1]);
        }
        mean
    }

    /// From raw observations (any order).
    pub fn from_samples(mut samples: Vec<f64>, provenance: String) -> Result<Points, String> {
        if samples.is_empty() {
            return Err("no observations".into());
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        // Plotting positions i/(n−1): the smallest observation is the
        // 0-quantile and the largest the 1-quantile.
        let cumulative = (0..n)
            .map(|i| {
                if n == 1 {
                    1.0
                } else {
                    i as f64 / (n - 1) as f64
                }
            })
            .collect();
        Ok(Points {
            values: samples,
            cumulative,
            count: n as u64,
            provenance,
        })
    }

    /// From (value, cumulative count) pairs, increasing in value.
    fn from_cumulative(pairs: Vec<(f64, f64)>, provenance: String) -> Result<Points, String> {
        let total = pairs.last().map_or(0.0, |p| p.1);
        if total <= 0.0 {
            return Err("the histogram is empty".into());
        }
        let mut points = Points {
            count: total as u64,
            provenance,
            ..Points::default()
        };
        for (value, count) in pairs {
            points.values.push(value);
            points.cumulative.push(count / total);
        }
        Ok(points)
    }
}

/// Reads `path` by its extension: `.hlog`, `.csv`, or Prometheus text
/// (`.prom`, `.txt`).
pub fn read_points(path: &Path, unit: Unit) -> Result<Points, String> {
    let shown = path.display();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !path.exists() {
        return Err(format!("empirical file {shown} does not exist"));
    }
    let result = match (extension, unit) {
        ("hlog", Unit::Duration) => read_hlog(path),
        ("csv", _) => read_csv(path, unit),
        ("prom" | "txt", Unit::Duration) => read_prometheus(path),
        (_, Unit::Duration) => Err(
            "expected a .hlog (HdrHistogram log), .csv (latencies) or .prom/.txt (Prometheus buckets) file"
                .into(),
        ),
        (_, Unit::Bytes) => Err("sizes are read from a .csv of byte counts".into()),
    };
    result.map_err(|message| format!("empirical file {shown}: {message}"))
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// An interval log's whole-run histogram; values are microseconds.
fn read_hlog(path: &Path) -> Result<Points, String> {
    let histogram = reports::read_latency_log(path).map_err(|e| e.to_string())?;
    let mut pairs = Vec::new();
    let mut seen = 0u64;
    for step in histogram.iter_recorded() {
        seen += step.count_at_value();
        let value_us = histogram.highest_equivalent(step.value_iterated_to()) as f64;
        pairs.push((value_us / 1e6, seen as f64));
    }
    Points::from_cumulative(
        pairs,
        format!(
            "HdrHistogram log {}, values in microseconds",
            path.display()
        ),
    )
}

/// One number per line (the first column); an optional header names the
/// unit: `…_us`, `…_ms` (the default for durations) or `…_s`.
fn read_csv(path: &Path, unit: Unit) -> Result<Points, String> {
    let text = read_text(path)?;
    let mut scale = match unit {
        Unit::Duration => 1e-3,
        Unit::Bytes => 1.0,
    };
    let mut unit_name = match unit {
        Unit::Duration => "milliseconds (no header named a unit)",
        Unit::Bytes => "bytes",
    };
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let field = line.split(',').next().unwrap_or("").trim();
        if field.is_empty() || field.starts_with('#') {
            continue;
        }
        match field.parse::<f64>() {
            Ok(value) if value.is_finite() && value >= 0.0 => samples.push(value * scale),
            Ok(value) => return Err(format!("line {}: {value} is not a latency", index + 1)),
            Err(_) if samples.is_empty() && unit == Unit::Duration => {
                (scale, unit_name) = header_unit(field)
                    .ok_or_else(|| format!("line {}: expected a number or a header naming the unit (latency_us, latency_ms, latency_s), found \"{field}\"", index + 1))?;
            }
            Err(_) => {
                return Err(format!(
                    "line {}: expected a number, found \"{field}\"",
                    index + 1
                ));
            }
        }
    }
    Points::from_samples(
        samples,
        format!("CSV {}, values in {unit_name}", path.display()),
    )
}

fn header_unit(field: &str) -> Option<(f64, &'static str)> {
    let field = field.trim_matches('"').to_ascii_lowercase();
    if field.ends_with("_us") || field.ends_with("micros") {
        Some((1e-6, "microseconds"))
    } else if field.ends_with("_ms") || field.ends_with("millis") {
        Some((1e-3, "milliseconds"))
    } else if field.ends_with("_s") || field.ends_with("seconds") {
        Some((1.0, "seconds"))
    } else {
        None
    }
}

/// `<name>_bucket{…,le="5"} 123` lines. The unit comes from the metric
/// name (`_ms_bucket`, `_milliseconds_bucket` or `_seconds_bucket`); series
/// with different labels are added up per bound. The `+Inf` bucket only
/// counts: values above the last finite bound are drawn at that bound.
fn read_prometheus(path: &Path) -> Result<Points, String> {
    let text = read_text(path)?;
    let mut by_bound: Vec<(f64, f64)> = Vec::new();
    let mut scale = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(name_end) = line.find(['{', ' ']) else {
            return Err(format!(
                "line {}: expected `name{{labels}} value`",
                index + 1
            ));
        };
        let name = &line[..name_end];
        if !name.ends_with("_bucket") {
            continue;
        }
        let this_scale = if name.ends_with("_ms_bucket") || name.ends_with("_milliseconds_bucket") {
            1e-3
        } else if name.ends_with("_seconds_bucket") {
            1.0
        } else {
            return Err(format!(
                "line {}: cannot tell the unit of {name}; expected a name ending _ms_bucket or _seconds_bucket",
                index + 1
            ));
        };
        if scale.is_some_and(|s| s != this_scale) {
            return Err(format!(
                "line {}: buckets of two units in one file",
                index + 1
            ));
        }
        scale = Some(this_scale);
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or_else(|| format!("line {}: a bucket without le=\"…\"", index + 1))?;
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|c| c.parse().ok())
            .filter(|c: &f64| c.is_finite() && *c >= 0.0)
            .ok_or_else(|| format!("line {}: expected a count at the end", index + 1))?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse::<f64>()
                .map_err(|_| format!("line {}: le=\"{le}\" is not a number", index + 1))?
        };
        match by_bound.iter_mut().find(|(b, _)| *b == bound) {
            Some(entry) => entry.1 += count,
            None => by_bound.push((bound, count)),
        }
    }
    let scale = scale.ok_or("no histogram buckets (lines named …_bucket{le=\"…\"})")?;
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    if by_bound.windows(2).any(|w| w[1].1 < w[0].1) {
        return Err("bucket counts must be cumulative (never decrease as le grows)".into());
    }
    let last_finite = by_bound
        .iter()
        .rev()
        .find(|(b, _)| b.is_finite())
        .map_or(0.0, |(b, _)| *b);
    let mut pairs = vec![(0.0, 0.0)];
    for (bound, count) in by_bound {
        let value = if bound.is_finite() {
            bound
        } else {
            last_finite
        };
        pairs.push((value * scale, count));
    }
    Points::from_cumulative(
        pairs,
        format!(
            "Prometheus buckets {}, le in {}",
            path.display(),
            if scale == 1.0 {
                "seconds"
            } else {
                "milliseconds"
            }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("meshsim-empirical-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn csv_with_a_unit_header_reads_in_that_unit() {
        let path = temp("a.csv", "latency_us\n1000\n2000\n3000\n");
        let points = read_points(&path, Unit::Duration).unwrap();
        assert_eq!(points.values, vec![0.001, 0.002, 0.003]);
        assert!((points.quantile(0.5) - 0.002).abs() < 1e-12);
        assert!((points.mean() - 0.002).abs() < 1e-12);
    }

    #[test]
    fn prometheus_buckets_add_up_across_series_and_interpolate() {
        let path = temp(
            "b.prom",
            "# TYPE response_latency_ms histogram\n\
             response_latency_ms_bucket{direction=\"inbound\",le=\"10\"} 50\n\
             response_latency_ms_bucket{direction=\"inbound\",le=\"20\"} 90\n\
             response_latency_ms_bucket{direction=\"inbound\",le=\"+Inf\"} 100\n\
             response_latency_ms_bucket{direction=\"outbound\",le=\"10\"} 50\n\
             response_latency_ms_bucket{direction=\"outbound\",le=\"20\"} 90\n\
             response_latency_ms_bucket{direction=\"outbound\",le=\"+Inf\"} 100\n\
             response_latency_ms_count 200\n",
        );
        let points = read_points(&path, Unit::Duration).unwrap();
        assert_eq!(points.count, 200);
        assert!((points.quantile(0.25) - 0.005).abs() < 1e-12);
        assert!((points.quantile(0.7) - 0.015).abs() < 1e-12);
    }

    #[test]
    fn malformed_files_say_what_and_where() {
        let bad = temp("c.csv", "1\n2\nthree\n");
        let message = read_points(&bad, Unit::Duration).unwrap_err();
        assert!(message.contains("line 3"), "{message}");
        let message = read_points(Path::new("/nonexistent/x.hlog"), Unit::Duration).unwrap_err();
        assert!(message.contains("does not exist"), "{message}");
        let unitless = temp("d.prom", "latency_bucket{le=\"1\"} 3\n");
        let message = read_points(&unitless, Unit::Duration).unwrap_err();
        assert!(message.contains("cannot tell the unit"), "{message}");
    }
}
