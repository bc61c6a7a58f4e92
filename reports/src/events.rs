//! `events.json`: what [`crate::rebuild`] needs beyond the CSV and the
//! interval log — windows, timeline events and the whole-run histograms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hlog::{decode_histogram, encode_histogram};
use crate::{ReportError, RunData, TimelineEvent, Window};

/// Bumped when the layout changes incompatibly, so an old reader can refuse
/// a new file with a clear message instead of misreading it.
const FORMAT_VERSION: u32 = 1;

/// The file layout.
#[derive(Serialize, Deserialize)]
struct EventsFile {
    /// [`FORMAT_VERSION`] at write time.
    format: u32,
    /// Fault and phase windows.
    windows: Vec<Window>,
    /// Timeline events.
    events: Vec<TimelineEvent>,
    /// Whole-run histogram, V2-deflate base64 as in interval logs (µs). Kept
    /// here rather than summed from the log because a producer may exclude
    /// warm-up from it.
    overall_histogram: String,
    /// Whole-run histogram per route, same encoding.
    route_histograms: BTreeMap<String, String>,
}

/// Writes windows, events and whole-run histograms of `data` to `path`.
pub(crate) fn write(path: &Path, data: &RunData) -> Result<PathBuf, ReportError> {
    let encode = |h| encode_histogram(h).map_err(|e| ReportError::render(path, e));
    let mut route_histograms = BTreeMap::new();
    for (route, histogram) in &data.per_route {
        route_histograms.insert(route.clone(), encode(histogram)?);
    }
    let file = EventsFile {
        format: FORMAT_VERSION,
        windows: data.windows.clone(),
        events: data.events.clone(),
        overall_histogram: encode(&data.overall)?,
        route_histograms,
    };
    let text = serde_json::to_string_pretty(&file).map_err(|e| ReportError::render(path, e))?;
    crate::write_file(path, text + "\n")?;
    Ok(path.to_owned())
}

/// Reads `path` and fills windows, events and histograms of `data`.
pub(crate) fn read_into(path: &Path, data: &mut RunData) -> Result<(), ReportError> {
    let text = crate::read_file(path)?;
    let file: EventsFile = serde_json::from_str(&text).map_err(|e| ReportError::parse(path, e))?;
    if file.format != FORMAT_VERSION {
        let message = format!(
            "format {} is not the supported {FORMAT_VERSION}",
            file.format
        );
        return Err(ReportError::parse(path, message));
    }
    let decode = |route: &str, text: &str| {
        decode_histogram(text).map_err(|e| ReportError::parse(path, format!("{route}: {e}")))
    };
    data.overall = decode("overall", &file.overall_histogram)?;
    data.per_route.clear();
    for (route, text) in &file.route_histograms {
        data.per_route.insert(route.clone(), decode(route, text)?);
    }
    data.windows = file.windows;
    data.events = file.events;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn round_trips() {
        let dir = testdata::temp_dir("events-roundtrip");
        let path = dir.join("e.json");
        let data = testdata::run();
        write(&path, &data).unwrap();
        let mut back = RunData::new(data.summary.clone());
        read_into(&path, &mut back).unwrap();
        assert_eq!(back.windows, data.windows);
        assert_eq!(back.events, data.events);
        assert_eq!(back.overall, data.overall);
        assert_eq!(back.per_route, data.per_route);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = testdata::temp_dir("events-bad");
        let path = dir.join("e.json");
        std::fs::write(&path, "{\"format\": 1}").unwrap();
        let mut data = testdata::run();
        let err = read_into(&path, &mut data).unwrap_err().to_string();
        assert!(err.contains("e.json"), "{err}");
    }
}
