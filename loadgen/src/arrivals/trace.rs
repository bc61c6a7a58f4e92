//! Trace replay: arrivals read from a CSV of `(offset, operation)` rows.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::ArrivalError;

/// Rows a trace may hold: a bound, so a wrong file cannot exhaust memory
/// (16 bytes of schedule per row, plus the name).
pub const TRACE_ROWS_MAX: usize = 10_000_000;

/// One request of a replayed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRow {
    /// When it is meant to start, from the start of the phase.
    pub offset: Duration,
    /// Name of the operation (must be in the request mix).
    pub operation: String,
}

/// The rows of a trace, sorted by offset and shared between clones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRows(Arc<[TraceRow]>);

impl TraceRows {
    /// The rows, in offset order.
    pub fn rows(&self) -> &[TraceRow] {
        &self.0
    }

    /// The most requests in any one-second window, per second: what the
    /// connection pool must hold.
    pub fn peak_per_s(&self) -> f64 {
        let rows = self.rows();
        let mut first = 0;
        let mut peak = 0usize;
        for (last, row) in rows.iter().enumerate() {
            while row.offset - rows[first].offset >= Duration::from_secs(1) {
                first += 1;
            }
            peak = peak.max(last + 1 - first);
        }
        peak as f64
    }
}

/// Unit of the offset column, named by its header.
fn offset_scale_s(header: &str) -> Option<f64> {
    match header.trim() {
        "offset_s" => Some(1.0),
        "offset_ms" => Some(1e-3),
        "offset_us" => Some(1e-6),
        _ => None,
    }
}

/// Reads a trace file. Its header names the offset unit:
/// `offset_ms,operation` (or `offset_s`, `offset_us`).
pub fn read_trace_file(path: &Path) -> Result<TraceRows, ArrivalError> {
    let file = std::fs::File::open(path).map_err(|e| {
        ArrivalError(format!(
            "trace file {}: {e} (relative paths are resolved against the working directory)",
            path.display()
        ))
    })?;
    parse_trace(file, &path.display().to_string())
}

/// Parses trace CSV from `reader`; `source` names it in messages.
pub fn parse_trace(reader: impl Read, source: &str) -> Result<TraceRows, ArrivalError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let bad = |line: u64, message: String| ArrivalError(format!("{source}:{line}: {message}"));
    let headers = csv.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let scale_s = headers
        .get(0)
        .and_then(offset_scale_s)
        .filter(|_| headers.get(1).map(str::trim) == Some("operation") && headers.len() == 2)
        .ok_or_else(|| {
            bad(
                1,
                format!(
                    "header is {:?}; expected `offset_ms,operation` (or offset_s, offset_us)",
                    headers.iter().collect::<Vec<_>>()
                ),
            )
        })?;
    let mut rows = Vec::new();
    for record in csv.records() {
        let record = record.map_err(|e| {
            bad(
                e.position().map_or(0, |p| p.line()),
                format!("not CSV: {e}"),
            )
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if rows.len() == TRACE_ROWS_MAX {
            return Err(bad(
                line,
                format!("more than {TRACE_ROWS_MAX} rows; split the trace into phases"),
            ));
        }
        let (Some(offset), Some(operation), 2) = (record.get(0), record.get(1), record.len())
        else {
            return Err(bad(
                line,
                format!("expected 2 fields, found {}", record.len()),
            ));
        };
        let offset_s = offset
            .parse::<f64>()
            .ok()
            .map(|v| v * scale_s)
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
            .ok_or_else(|| {
                bad(
                    line,
                    format!("offset `{offset}` is not a non-negative number"),
                )
            })?;
        if operation.is_empty() {
            return Err(bad(line, "the operation is empty".into()));
        }
        rows.push(TraceRow {
            offset: Duration::from_secs_f64(offset_s),
            operation: operation.to_owned(),
        });
    }
    if rows.is_empty() {
        return Err(bad(1, "the trace has no rows".into()));
    }
    // Logs are often slightly out of order; a stable sort keeps equal
    // offsets in file order, so the replay is still exactly reproducible.
    rows.sort_by_key(|row| row.offset);
    Ok(TraceRows(rows.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sorts_and_scales() {
        let rows = parse_trace(
            "offset_ms,operation\n250,order\n0,quote\n1000.5,quote\n".as_bytes(),
            "t.csv",
        )
        .unwrap();
        let got: Vec<(u128, &str)> = rows
            .rows()
            .iter()
            .map(|r| (r.offset.as_micros(), r.operation.as_str()))
            .collect();
        assert_eq!(
            got,
            [(0, "quote"), (250_000, "order"), (1_000_500, "quote")]
        );
        assert_eq!(rows.peak_per_s(), 2.0);
        let seconds = parse_trace("offset_s,operation\n1.5,x\n".as_bytes(), "t").unwrap();
        assert_eq!(seconds.rows()[0].offset, Duration::from_millis(1500));
    }

    #[test]
    fn errors_name_the_line() {
        for (text, expected) in [
            ("offset,operation\n1,x\n", "t.csv:1: header"),
            (
                "offset_ms,operation\n1,x\nsoon,y\n",
                "t.csv:3: offset `soon`",
            ),
            ("offset_ms,operation\n-1,x\n", "t.csv:2: offset `-1`"),
            (
                "offset_ms,operation\n1,\n",
                "t.csv:2: the operation is empty",
            ),
            ("offset_ms,operation\n", "t.csv:1: the trace has no rows"),
            ("offset_ms,operation\n1,x,y\n", "t.csv:2:"),
        ] {
            let error = parse_trace(text.as_bytes(), "t.csv")
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(expected), "{text:?}: {error}");
        }
    }
}
