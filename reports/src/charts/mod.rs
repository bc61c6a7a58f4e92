//! SVG charts. Each chart is a pure function of [`RunData`] rendered into a
//! string, so the same text can be written as a file and inlined in HTML.

mod capacity;
mod certs;
mod latency;
mod routes;
mod spectrum;
mod throughput;

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{ROUTE_ALL, ReportError, RunData, Window, WindowKind, files};

pub(crate) use capacity::capacity_svg;

/// The drawing surface every chart draws on.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// What plotters returns when drawing on an [`Area`].
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;
/// A chart-drawing function.
type DrawFn = fn(&Area<'_>, &RunData) -> DrawResult;

/// Chart size in pixels: wide enough for a minute of 1 s intervals to be
/// readable, small enough to sit in a report column.
const SIZE_PX: (u32, u32) = (960, 420);
const FONT: &str = "sans-serif";

const P50_COLOR: RGBColor = RGBColor(31, 119, 180);
const P99_COLOR: RGBColor = RGBColor(255, 127, 14);
const P999_COLOR: RGBColor = RGBColor(214, 39, 40);
const FAULT_COLOR: RGBColor = RGBColor(214, 39, 40);
const PHASE_COLOR: RGBColor = RGBColor(100, 100, 100);
/// Colours for series of unknown count (routes, event kinds); cycled.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// One rendered chart.
pub(crate) struct Chart {
    /// File name inside the report directory.
    pub file: &'static str,
    /// Caption for the HTML report.
    pub title: &'static str,
    /// The SVG document.
    pub svg: String,
}

/// Renders every per-run chart, in report order.
pub(crate) fn run_charts(dir: &Path, data: &RunData) -> Result<Vec<Chart>, ReportError> {
    let specs: [(&'static str, &'static str, DrawFn); 5] = [
        (files::LATENCY_SVG, "Latency over time", latency::draw),
        (
            files::THROUGHPUT_SVG,
            "Throughput over time",
            throughput::draw,
        ),
        (
            files::SPECTRUM_SVG,
            "Latency percentile spectrum",
            spectrum::draw,
        ),
        (files::ROUTES_SVG, "Latency per route", routes::draw),
        (files::CERTS_SVG, "Certificate events", certs::draw),
    ];
    let mut charts = Vec::with_capacity(specs.len());
    for (file, title, draw) in specs {
        let svg = render_svg(|area| draw(area, data))
            .map_err(|e| ReportError::render(&dir.join(file), e))?;
        charts.push(Chart { file, title, svg });
    }
    Ok(charts)
}

/// Draws into a fresh white SVG of [`SIZE_PX`] and returns its text.
fn render_svg(draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE_PX).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// NaN and infinities (a broken producer) plot as zero instead of breaking
/// axis ranges.
fn finite(value: f64) -> f64 {
    if value.is_finite() { value } else { 0.0 }
}

/// A drawable axis range: finite, non-empty, ordered.
fn axis_range(low: f64, high: f64) -> Range<f64> {
    let (low, high) = (finite(low), finite(high));
    if high > low {
        low..high
    } else {
        low..low + 1.0
    }
}

/// Zero to a little above `max` so the top point is not on the frame; at
/// least `floor` so an all-zero series still gets a sensible axis.
fn headroom(max: f64, floor: f64) -> Range<f64> {
    axis_range(0.0, (finite(max) * 1.1).max(floor))
}

/// Like [`headroom`] but with the top fifth left free, so window labels
/// drawn there are not crossed by the series.
fn headroom_for_labels(max: f64, floor: f64) -> Range<f64> {
    axis_range(0.0, (finite(max) * 1.25).max(floor))
}

/// The run's time span: from zero to the latest thing known to have happened.
fn time_range_s(data: &RunData) -> Range<f64> {
    let ends = data.intervals.iter().map(|r| r.end_s);
    let ends = ends.chain(data.windows.iter().map(|w| w.end_s));
    let ends = ends.chain(data.events.iter().map(|e| e.at_s));
    let end = ends
        .map(finite)
        .fold(finite(data.summary.sim_seconds), f64::max);
    axis_range(0.0, end)
}

/// Aggregate interval rows (route [`ROUTE_ALL`]).
fn aggregate_rows(data: &RunData) -> impl Iterator<Item = &crate::IntervalRow> {
    data.intervals.iter().filter(|r| r.route == ROUTE_ALL)
}

fn text_style(size_px: u32, color: RGBColor) -> TextStyle<'static> {
    (FONT, size_px).into_font().color(&color)
}

/// Shades fault windows and marks phase starts, clipped to the `x` range.
fn draw_windows<CT>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, CT>,
    windows: &[Window],
    x: &Range<f64>,
    y: &Range<f64>,
) -> DrawResult
where
    CT: CoordTranslate<From = (f64, f64)>,
{
    let span = y.end - y.start;
    for window in windows {
        let start = finite(window.start_s).max(x.start);
        let end = finite(window.end_s).min(x.end);
        let label = clean(&window.label);
        match window.kind {
            WindowKind::Fault if end > start => {
                let shade = FAULT_COLOR.mix(0.12).filled();
                chart.draw_series([Rectangle::new([(start, y.start), (end, y.end)], shade)])?;
                let at = (start, y.end - span * 0.02);
                chart.draw_series([Text::new(label, at, text_style(12, FAULT_COLOR))])?;
            }
            WindowKind::Phase if start <= x.end => {
                let line = vec![(start, y.start), (start, y.end)];
                chart.draw_series([PathElement::new(line, PHASE_COLOR.stroke_width(1))])?;
                // Lower than fault labels so the two do not collide when a
                // fault starts with a phase.
                let at = (start, y.end - span * 0.08);
                chart.draw_series([Text::new(label, at, text_style(12, PHASE_COLOR))])?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A centred note, e.g. "no data", so empty charts explain themselves.
fn draw_note(area: &Area<'_>, note: &str) -> DrawResult {
    let (width, height) = area.dim_in_pixel();
    let style = text_style(18, PHASE_COLOR).pos(Pos::new(HPos::Center, VPos::Center));
    let (x, y) = (
        i32::try_from(width / 2).unwrap_or(0),
        i32::try_from(height / 2).unwrap_or(0),
    );
    area.draw(&Text::new(note.to_owned(), (x, y), style))
}

/// A short horizontal line in `color`: the legend swatch for a line series.
fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

/// Legend in the top-right corner with a background so lines behind it do
/// not make it unreadable.
fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> DrawResult {
    draw_legend_at(chart, SeriesLabelPosition::UpperRight)
}

/// [`draw_legend`] in a chosen corner.
fn draw_legend_at<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(text_style(13, BLACK))
        .draw()
}

/// A linear axis with caller-chosen ticks (category slots, whole decades).
/// plotters' own `with_key_points` drops the f64 label formatter, so this
/// wraps the plain f64 axis instead.
#[derive(Clone)]
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

fn ticked(range: Range<f64>, ticks: Vec<f64>) -> Ticked {
    Ticked {
        inner: range.into(),
        ticks,
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Ticks are bold grid lines only; light lines between categories
        // would suggest values that do not exist.
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        // Too many categories for the axis: keep every n-th so labels stay
        // legible rather than overprinting.
        let every = self
            .ticks
            .len()
            .div_ceil(hint.max_num_points().max(1))
            .max(1);
        self.ticks.iter().step_by(every).copied().collect()
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// Text as plotters may draw it: plotters escapes markup but passes control
/// characters through, and XML 1.0 cannot carry those, so they become U+FFFD
/// (line breaks become spaces: SVG text is one line).
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if crate::junit::is_xml_char(c) => c,
            _ => '\u{FFFD}',
        })
        .collect()
}

/// Keeps axis labels short: long route or host names would push the plot off
/// the canvas.
fn shorten(name: &str, max_chars: usize) -> String {
    let name = clean(name);
    if name.chars().count() <= max_chars {
        name
    } else {
        let mut short: String = name.chars().take(max_chars.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

/// Category axis labels: the name at integer positions, nothing elsewhere.
fn category_label(names: &[String], value: f64, max_chars: usize) -> String {
    let index = value.round();
    if (value - index).abs() > 1e-6 || index < 0.0 {
        return String::new();
    }
    names
        .get(index as usize)
        .map(|n| shorten(n, max_chars))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn every_chart_renders_for_full_empty_and_degenerate_data() {
        let mut runs = vec![
            testdata::run(),
            testdata::empty_run(),
            testdata::hostile_run(),
        ];
        runs.extend(testdata::extreme_runs());
        // Set REPORTS_DUMP_DIR to look at every variant's charts by eye.
        let dump = std::env::var_os("REPORTS_DUMP_DIR").map(std::path::PathBuf::from);
        for (run, data) in runs.iter().enumerate() {
            let charts = run_charts(Path::new("/nonexistent"), data).unwrap();
            assert_eq!(charts.len(), 5);
            for chart in charts {
                if let Some(dir) = &dump {
                    std::fs::write(dir.join(format!("{run}-{}", chart.file)), &chart.svg).unwrap();
                }
                testdata::assert_well_formed(&chart.svg);
                assert!(chart.svg.starts_with("<svg"), "{}", chart.file);
                assert!(chart.svg.trim_end().ends_with("</svg>"), "{}", chart.file);
            }
        }
    }

    #[test]
    fn empty_charts_carry_a_note() {
        let charts = run_charts(Path::new("/x"), &testdata::empty_run()).unwrap();
        let certs = charts.iter().find(|c| c.file == files::CERTS_SVG).unwrap();
        assert!(certs.svg.contains("no certificate events"));
    }

    #[test]
    fn ranges_are_always_drawable() {
        assert_eq!(axis_range(f64::NAN, f64::INFINITY), 0.0..1.0);
        assert_eq!(axis_range(5.0, 5.0), 5.0..6.0);
        assert_eq!(headroom(0.0, 1.0), 0.0..1.0);
    }

    #[test]
    fn category_labels_only_at_integers() {
        let names = vec!["a".to_owned(), "bbbbbbbbbbbb".to_owned()];
        assert_eq!(category_label(&names, 0.0, 8), "a");
        assert_eq!(category_label(&names, 0.5, 8), "");
        assert_eq!(category_label(&names, 1.0, 8), "bbbbbbb…");
        assert_eq!(category_label(&names, 7.0, 8), "");
        assert_eq!(category_label(&names, -1.0, 8), "");
    }
}
