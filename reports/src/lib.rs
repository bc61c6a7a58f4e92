//! Turns run data into files: `summary.json`, `timeseries.csv`,
//! `latency.hlog`, `events.json`, SVG charts, `report.html` and `junit.xml`.
//!
//! Data in, files out: this crate knows nothing about the mesh, the
//! simulator or the scenario format, and must never import them. Everything
//! it draws can be rebuilt from the files it wrote ([`rebuild`]), so a report
//! can be re-rendered after a chart fix without re-running the scenario.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

mod capacity;
mod charts;
pub mod diff;
mod events;
pub mod explore;
mod hlog;
mod html;
mod junit;
mod model;
mod serde_f64;
mod spectrum;
mod summary;
#[cfg(test)]
mod testdata;
mod timeseries;

pub use capacity::{CapacityAxis, CapacityPoint, write_capacity};
pub use model::{
    IntervalHistogram, IntervalRow, LATENCY_SIGFIG, ROUTE_ALL, RunData, TimelineEvent, Window,
    WindowKind, latency_histogram,
};
pub use spectrum::percentile_spectrum_text;
pub use summary::{Check, CheckKind, LatencyMs, Mode, Provenance, RequestCounts, Summary, Verdict};

use std::path::{Path, PathBuf};

/// File names, in one place so the writer and [`rebuild`] cannot drift apart.
pub mod files {
    /// The DESIGN §6 contract.
    pub const SUMMARY: &str = "summary.json";
    /// One row per interval and route.
    pub const TIMESERIES: &str = "timeseries.csv";
    /// HdrHistogram interval log (values in microseconds).
    pub const HLOG: &str = "latency.hlog";
    /// Windows, timeline events and whole-run histograms.
    pub const EVENTS: &str = "events.json";
    /// Percentiles over time.
    pub const LATENCY_SVG: &str = "latency.svg";
    /// Requests/s and errors/s over time.
    pub const THROUGHPUT_SVG: &str = "throughput.svg";
    /// Whole-run percentile spectrum.
    pub const SPECTRUM_SVG: &str = "spectrum.svg";
    /// Per-route p50/p99.
    pub const ROUTES_SVG: &str = "routes.svg";
    /// Certificate event timeline.
    pub const CERTS_SVG: &str = "certs.svg";
    /// The self-contained report.
    pub const REPORT_HTML: &str = "report.html";
    /// CI-readable check results.
    pub const JUNIT: &str = "junit.xml";
    /// Capacity sweep table.
    pub const CAPACITY_CSV: &str = "capacity.csv";
    /// Capacity sweep chart.
    pub const CAPACITY_SVG: &str = "capacity.svg";
}

/// Errors writing or reading report files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A saved file could not be parsed.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A file's contents could not be produced (chart drawing, histogram
    /// encoding, CSV encoding).
    #[error("{path}: {message}")]
    Render { path: PathBuf, message: String },
}

impl ReportError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn parse(path: &Path, message: impl ToString) -> Self {
        ReportError::Parse {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }

    fn render(path: &Path, message: impl ToString) -> Self {
        ReportError::Render {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Writes `summary.json` into `dir` (creating it).
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let path = dir.join(files::SUMMARY);
    let text = serde_json::to_string_pretty(summary).map_err(|e| ReportError::render(&path, e))?;
    write_file(&path, text + "\n")?;
    Ok(path)
}

/// Writes every report file for one run into `dir` (creating it): the data
/// files (`summary.json`, `timeseries.csv`, `latency.hlog`, `events.json`)
/// and everything derived from them (charts, `report.html`, `junit.xml`).
/// Returns the paths written, data files first.
pub fn write_all(dir: &Path, data: &RunData) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = vec![write_summary(dir, &data.summary)?];
    written.push(timeseries::write(
        &dir.join(files::TIMESERIES),
        &data.intervals,
    )?);
    written.push(hlog::write(
        &dir.join(files::HLOG),
        data.start_unix_s,
        &data.latency_intervals,
        &data.route_latency_intervals,
    )?);
    written.push(events::write(&dir.join(files::EVENTS), data)?);
    written.extend(render_derived(dir, data)?);
    Ok(written)
}

/// Regenerates every chart, `report.html` and `junit.xml` in `dir` from the
/// data files alone (see [`read_run`]). Returns the paths written.
pub fn rebuild(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let data = read_run(dir)?;
    render_derived(dir, &data)
}

/// The whole-run latency histogram of an interval log (`latency.hlog`).
pub use hlog::read_total as read_latency_log;

/// Reads the `summary.json` a run wrote into `dir`.
pub fn read_summary(dir: &Path) -> Result<Summary, ReportError> {
    let summary_path = dir.join(files::SUMMARY);
    let summary_text = read_file(&summary_path)?;
    serde_json::from_str(&summary_text).map_err(|e| ReportError::parse(&summary_path, e))
}

/// Reads the data files [`write_all`] saved in `dir` back into a [`RunData`].
/// Interval start times and lengths come back rounded to the millisecond,
/// the precision of the interval log.
pub fn read_run(dir: &Path) -> Result<RunData, ReportError> {
    let mut data = RunData::new(read_summary(dir)?);
    data.intervals = timeseries::read(&dir.join(files::TIMESERIES))?;
    let log = hlog::read(&dir.join(files::HLOG))?;
    (data.start_unix_s, data.latency_intervals) = (log.base_unix_s, log.intervals);
    data.route_latency_intervals = log.tagged;
    events::read_into(&dir.join(files::EVENTS), &mut data)?;
    Ok(data)
}

/// Writes the files that are pure functions of [`RunData`]. Kept separate
/// from the data files so [`write_all`] and [`rebuild`] share one renderer
/// and therefore produce byte-identical output.
fn render_derived(dir: &Path, data: &RunData) -> Result<Vec<PathBuf>, ReportError> {
    let svgs = charts::run_charts(dir, data)?;
    let mut written = Vec::with_capacity(svgs.len() + 2);
    for chart in &svgs {
        let path = dir.join(chart.file);
        write_file(&path, &chart.svg)?;
        written.push(path);
    }
    let html_path = dir.join(files::REPORT_HTML);
    write_file(&html_path, html::render(data, &svgs))?;
    written.push(html_path);
    let junit_path = dir.join(files::JUNIT);
    write_file(&junit_path, junit::render(&data.summary))?;
    written.push(junit_path);
    Ok(written)
}

fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), ReportError> {
    std::fs::write(path, contents).map_err(|e| ReportError::io(path, e))
}

fn read_file(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    const DERIVED: [&str; 7] = [
        files::LATENCY_SVG,
        files::THROUGHPUT_SVG,
        files::SPECTRUM_SVG,
        files::ROUTES_SVG,
        files::CERTS_SVG,
        files::REPORT_HTML,
        files::JUNIT,
    ];

    fn read_all(dir: &Path, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
            .collect()
    }

    #[test]
    fn write_all_writes_every_file() {
        let dir = testdata::temp_dir("write-all");
        let written = write_all(&dir, &testdata::run()).unwrap();
        let mut expected = vec![
            files::SUMMARY,
            files::TIMESERIES,
            files::HLOG,
            files::EVENTS,
        ];
        expected.extend(DERIVED);
        let expected: Vec<PathBuf> = expected.iter().map(|n| dir.join(n)).collect();
        assert_eq!(written, expected);
        assert!(written.iter().all(|p| p.is_file()));
        // Set REPORTS_DUMP_DIR to keep a full report to look at.
        if let Some(keep) = std::env::var_os("REPORTS_DUMP_DIR") {
            write_all(&PathBuf::from(keep).join("run"), &testdata::run()).unwrap();
        }
    }

    #[test]
    fn rebuild_reproduces_derived_files_byte_for_byte() {
        let dir = testdata::temp_dir("rebuild");
        write_all(&dir, &testdata::run()).unwrap();
        let before = read_all(&dir, &DERIVED);
        for name in DERIVED {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
        let rebuilt = rebuild(&dir).unwrap();
        assert_eq!(
            rebuilt,
            DERIVED.iter().map(|n| dir.join(n)).collect::<Vec<_>>()
        );
        assert_eq!(read_all(&dir, &DERIVED), before);
    }

    #[test]
    fn read_run_returns_what_was_written() {
        let dir = testdata::temp_dir("read-run");
        let mut data = testdata::run();
        data.start_unix_s = 1_700_000_000.25;
        write_all(&dir, &data).unwrap();
        let back = read_run(&dir).unwrap();
        assert_eq!(back.summary, data.summary);
        assert_eq!(back.start_unix_s, data.start_unix_s);
        assert_eq!(back.intervals, data.intervals);
        assert_eq!(back.latency_intervals, data.latency_intervals);
        assert_eq!(back.route_latency_intervals, data.route_latency_intervals);
        assert_eq!(back.overall, data.overall);
        assert_eq!(back.per_route, data.per_route);
        assert_eq!(back.windows, data.windows);
        assert_eq!(back.events, data.events);
    }

    #[test]
    fn empty_and_hostile_runs_write_and_rebuild() {
        for (name, data) in [
            ("empty", testdata::empty_run()),
            ("hostile", testdata::hostile_run()),
        ] {
            let dir = testdata::temp_dir(&format!("odd-{name}"));
            write_all(&dir, &data).unwrap();
            let before = read_all(&dir, &DERIVED);
            rebuild(&dir).unwrap();
            // The hostile run's NaN and infinite times come back from JSON
            // as NaN, so its tables may print differently; charts may not.
            let after = read_all(&dir, &DERIVED);
            if name == "empty" {
                assert_eq!(after, before);
            } else {
                assert_eq!(after[..5], before[..5], "charts differ after rebuild");
            }
        }
    }

    #[test]
    fn rebuild_errors_name_the_broken_file() {
        let dir = testdata::temp_dir("rebuild-broken");
        write_all(&dir, &testdata::run()).unwrap();
        for name in [
            files::SUMMARY,
            files::TIMESERIES,
            files::HLOG,
            files::EVENTS,
        ] {
            let path = dir.join(name);
            let good = std::fs::read(&path).unwrap();
            // Well-formed enough to get past each reader's first line.
            std::fs::write(&path, "start_s,end_s\nnot,numbers\n").unwrap();
            let err = rebuild(&dir).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
            std::fs::write(&path, good).unwrap();
        }
        let missing = testdata::temp_dir("rebuild-missing");
        let err = rebuild(&missing).unwrap_err();
        assert!(matches!(err, ReportError::Io { .. }) && err.to_string().contains(files::SUMMARY));
    }
}
