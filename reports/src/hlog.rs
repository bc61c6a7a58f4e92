//! `latency.hlog`: an HdrHistogram interval log, readable by the standard
//! tools (Java `HistogramLogProcessor`, HdrHistogram's online log analyzer,
//! the Rust `IntervalLogIterator`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, LogIteratorError, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

use crate::{IntervalHistogram, ReportError};

/// Standard alphabet, as interval logs write it; padding optional on read
/// so hand-trimmed logs still load.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Values are microseconds; the per-line max column is divided by this so a
/// human skimming the log reads milliseconds.
const MAX_VALUE_DIVISOR_US_PER_MS: f64 = 1000.0;

/// Writes `intervals` as an interval log whose StartTime and BaseTime are
/// `start_unix_s`, so each line's timestamp is seconds since run start.
/// Each route's intervals follow as histograms tagged with its name (see
/// [`tag_of`]); readers that know no tags skip them.
pub(crate) fn write(
    path: &Path,
    start_unix_s: f64,
    intervals: &[IntervalHistogram],
    routes: &BTreeMap<String, Vec<IntervalHistogram>>,
) -> Result<PathBuf, ReportError> {
    let start = unix_time(start_unix_s);
    let mut buf = Vec::new();
    // Deflate-compressed V2: the Java reader only accepts compressed
    // histograms, and the Rust reader accepts both.
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("[Histogram log format version 1.3]")
        .add_comment("meshsim latency log: values in microseconds, max column in milliseconds")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(MAX_VALUE_DIVISOR_US_PER_MS)
        .begin_log_with(&mut buf, &mut serializer)
        .map_err(|e| ReportError::io(path, e))?;
    let tagged = routes
        .iter()
        .flat_map(|(route, list)| list.iter().map(move |i| (Some(tag_of(route)), i)));
    for (tag, interval) in intervals.iter().map(|i| (None, i)).chain(tagged) {
        let begin = seconds(interval.start_s);
        let length = seconds(interval.end_s - interval.start_s);
        // tag_of leaves nothing Tag::new refuses.
        let tag = tag.as_deref().and_then(Tag::new);
        log.write_histogram(&interval.histogram, begin, length, tag)
            .map_err(|e| ReportError::render(path, e))?;
    }
    crate::write_file(path, buf)?;
    Ok(path.to_owned())
}

/// A route name as an interval-log tag. The format cannot carry a comma,
/// space, CR or LF in a tag, so those (and `%`, so the mapping reverses)
/// are percent-encoded: `GET /balance` is `GET%20/balance`.
pub(crate) fn tag_of(route: &str) -> String {
    let mut tag = String::with_capacity(route.len());
    for c in route.chars() {
        match c {
            ',' | ' ' | '\r' | '\n' | '%' => tag += &format!("%{:02X}", c as u32),
            c => tag.push(c),
        }
    }
    tag
}

/// The route a tag names (inverse of [`tag_of`]; other tags pass as they are).
fn route_of(tag: &str) -> String {
    let mut route = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(at) = rest.find('%') {
        route += &rest[..at];
        let code = rest
            .get(at + 1..at + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match code {
            Some(byte) if b", \r\n%".contains(&byte) => {
                route.push(char::from(byte));
                rest = &rest[at + 3..];
            }
            _ => {
                route.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    route + rest
}

/// What [`read`] found in a log.
#[derive(Debug)]
pub(crate) struct Log {
    /// BaseTime, seconds since the epoch (0.0 when absent).
    pub base_unix_s: f64,
    /// The untagged (all-route) intervals.
    pub intervals: Vec<IntervalHistogram>,
    /// Tagged intervals by tag (route).
    pub tagged: BTreeMap<String, Vec<IntervalHistogram>>,
}

/// Reads a log written by [`write`] (or any interval log).
pub(crate) fn read(path: &Path) -> Result<Log, ReportError> {
    let bytes = std::fs::read(path).map_err(|e| ReportError::io(path, e))?;
    let mut base_unix_s = 0.0;
    let mut intervals = Vec::new();
    let mut tagged: BTreeMap<String, Vec<IntervalHistogram>> = BTreeMap::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|LogIteratorError::ParseError { offset }| {
            ReportError::parse(path, format!("not an interval log line at byte {offset}"))
        })?;
        match entry {
            LogEntry::BaseTime(t) => base_unix_s = t.as_secs_f64(),
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(i) => {
                let histogram = decode_histogram(i.encoded_histogram())
                    .map_err(|e| ReportError::parse(path, e))?;
                let start_s = i.start_timestamp().as_secs_f64();
                let end_s = start_s + i.duration().as_secs_f64();
                let interval = IntervalHistogram {
                    start_s,
                    end_s,
                    histogram,
                };
                match i.tag() {
                    Some(tag) => tagged
                        .entry(route_of(tag.as_str()))
                        .or_default()
                        .push(interval),
                    None => intervals.push(interval),
                }
            }
        }
    }
    Ok(Log {
        base_unix_s,
        intervals,
        tagged,
    })
}

/// The whole-run histogram of an interval log (values as logged:
/// microseconds for meshsim's): every untagged interval added up. For
/// `meshsim calibrate` and empirical service times.
pub fn read_total(path: &Path) -> Result<Histogram<u64>, ReportError> {
    let log = read(path)?;
    let mut total = crate::model::latency_histogram();
    for interval in &log.intervals {
        total
            .add(&interval.histogram)
            .map_err(|e| ReportError::parse(path, format!("{e:?}")))?;
    }
    Ok(total)
}

/// Serializes a histogram the way interval logs do (V2, deflate, base64), so
/// `events.json` can carry whole-run histograms losslessly and compactly.
pub(crate) fn encode_histogram(histogram: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|e| format!("{e:?}"))?;
    Ok(general_purpose::STANDARD.encode(&bytes))
}

/// Inverse of [`encode_histogram`]; also reads uncompressed V2.
pub(crate) fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|e| format!("base64: {e}"))?;
    let mut histogram: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: {e:?}"))?;
    // Like `latency_histogram()`, so a caller can keep recording into it.
    histogram.auto(true);
    Ok(histogram)
}

/// A non-negative, finite duration; anything else (a NaN or negative time
/// from a broken producer) becomes zero rather than a panic.
fn seconds(value_s: f64) -> Duration {
    Duration::try_from_secs_f64(value_s).unwrap_or(Duration::ZERO)
}

fn unix_time(value_s: f64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(seconds(value_s))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn standard_reader_gets_same_counts() {
        let dir = testdata::temp_dir("hlog-counts");
        let path = dir.join("l.hlog");
        let data = testdata::run();
        write(
            &path,
            1_700_000_000.5,
            &data.latency_intervals,
            &BTreeMap::new(),
        )
        .unwrap();

        let bytes = std::fs::read(&path).unwrap();
        let mut counts = Vec::new();
        let mut base = None;
        for entry in IntervalLogIterator::new(&bytes) {
            match entry.unwrap() {
                LogEntry::BaseTime(t) => base = Some(t.as_secs_f64()),
                LogEntry::Interval(i) => {
                    counts.push(decode_histogram(i.encoded_histogram()).unwrap().len())
                }
                LogEntry::StartTime(_) => {}
            }
        }
        let expected: Vec<u64> = data
            .latency_intervals
            .iter()
            .map(|i| i.histogram.len())
            .collect();
        assert_eq!(counts, expected);
        assert_eq!(base, Some(1_700_000_000.5));
    }

    #[test]
    fn round_trips_histograms_and_times() {
        let dir = testdata::temp_dir("hlog-roundtrip");
        let path = dir.join("l.hlog");
        let data = testdata::run();
        write(
            &path,
            0.0,
            &data.latency_intervals,
            &data.route_latency_intervals,
        )
        .unwrap();
        let log = read(&path).unwrap();
        assert_eq!(log.base_unix_s, 0.0);
        assert_eq!(log.intervals, data.latency_intervals);
        assert!(!log.tagged.is_empty());
        assert_eq!(log.tagged, data.route_latency_intervals);
    }

    #[test]
    fn header_names_start_and_base_time() {
        let dir = testdata::temp_dir("hlog-header");
        let path = dir.join("l.hlog");
        write(&path, 0.0, &[], &BTreeMap::new()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("#[StartTime: 0.000"), "{text}");
        assert!(text.contains("#[BaseTime: 0.000"), "{text}");
        assert_eq!(read(&path).unwrap().intervals, vec![]);
    }

    #[test]
    fn garbage_is_a_parse_error_naming_the_file() {
        let dir = testdata::temp_dir("hlog-bad");
        let path = dir.join("l.hlog");
        std::fs::write(&path, "0.000,1.000,2.0,!!notbase64\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, ReportError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("l.hlog"));
    }

    #[test]
    fn route_tags_round_trip() {
        for route in ["GET /balance", "a,b", "100%", "%2C", "line\nbreak"] {
            let tag = tag_of(route);
            assert!(Tag::new(&tag).is_some(), "{tag}");
            assert_eq!(route_of(&tag), route);
        }
    }

    #[test]
    fn histogram_text_round_trips() {
        let h = testdata::run().overall;
        let text = encode_histogram(&h).unwrap();
        assert_eq!(decode_histogram(&text).unwrap(), h);
        // Padding is optional on read; bytes outside the alphabet are not.
        let unpadded = text.trim_end_matches('=');
        assert_eq!(decode_histogram(unpadded).unwrap(), h);
        let error = decode_histogram("Zm9v!").unwrap_err();
        assert!(error.starts_with("base64:"), "{error}");
    }
}
