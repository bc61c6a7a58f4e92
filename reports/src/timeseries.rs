//! `timeseries.csv`: one row per interval and route.

use std::path::{Path, PathBuf};

use crate::{IntervalRow, ReportError};

/// Column names, in [`IntervalRow`] field order. Written explicitly so a run
/// with no intervals still gets a header a spreadsheet can read.
const HEADER: [&str; 10] = [
    "start_s", "end_s", "route", "count", "errors", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
    "max_ms",
];

/// Writes `rows` to `path` with a header row.
pub(crate) fn write(path: &Path, rows: &[IntervalRow]) -> Result<PathBuf, ReportError> {
    let mut csv = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let encode = |e: csv::Error| ReportError::render(path, e);
    csv.write_record(HEADER).map_err(encode)?;
    for row in rows {
        csv.serialize(row).map_err(encode)?;
    }
    let bytes = csv.into_inner().map_err(|e| ReportError::render(path, e))?;
    crate::write_file(path, bytes)?;
    Ok(path.to_owned())
}

/// Reads rows written by [`write`]; columns are matched by header name.
pub(crate) fn read(path: &Path) -> Result<Vec<IntervalRow>, ReportError> {
    let text = crate::read_file(path)?;
    let mut csv = csv::Reader::from_reader(text.as_bytes());
    csv.deserialize()
        .map(|row| row.map_err(|e| ReportError::parse(path, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn round_trips_rows() {
        let dir = testdata::temp_dir("timeseries-roundtrip");
        let path = dir.join("t.csv");
        let rows = testdata::run().intervals;
        write(&path, &rows).unwrap();
        assert_eq!(read(&path).unwrap(), rows);
    }

    #[test]
    fn empty_still_has_header() {
        let dir = testdata::temp_dir("timeseries-empty");
        let path = dir.join("t.csv");
        write(&path, &[]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim_end(), HEADER.join(","));
        assert!(read(&path).unwrap().is_empty());
    }

    #[test]
    fn quotes_awkward_route_names() {
        let dir = testdata::temp_dir("timeseries-quotes");
        let path = dir.join("t.csv");
        let mut rows = testdata::run().intervals;
        rows[0].route = "GET /a,\"b\"\nc".to_owned();
        write(&path, &rows).unwrap();
        assert_eq!(read(&path).unwrap(), rows);
    }

    #[test]
    fn parse_errors_name_the_file() {
        let dir = testdata::temp_dir("timeseries-bad");
        let path = dir.join("t.csv");
        std::fs::write(&path, "start_s,end_s\nnot-a-number,1\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("t.csv"), "{err}");
    }
}
