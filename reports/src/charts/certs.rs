//! `certs.svg`: certificate events on a timeline, one row per host.

use std::collections::BTreeSet;

use plotters::prelude::*;

use super::{
    Area, DrawResult, FONT, PALETTE, axis_range, category_label, draw_legend, draw_note,
    draw_windows, finite, shorten, ticked, time_range_s,
};
use crate::RunData;

/// Longest host name shown in full on the y axis.
const HOST_LABEL_CHARS: usize = 28;

/// Certificates are issued while the mesh boots, before the load's time
/// zero: widen the range to the earliest event, with a little margin so
/// its marks are not drawn on the frame.
fn with_warmup(span: std::ops::Range<f64>, data: &RunData) -> std::ops::Range<f64> {
    let earliest = data
        .events
        .iter()
        .map(|e| finite(e.at_s))
        .fold(0.0, f64::min);
    if earliest >= 0.0 {
        return span;
    }
    let margin = (span.end - earliest) * 0.02;
    axis_range(earliest - margin, span.end)
}

pub(super) fn draw(area: &Area<'_>, data: &RunData) -> DrawResult {
    let hosts: Vec<String> = data
        .events
        .iter()
        .map(|e| e.host.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let kinds: BTreeSet<&str> = data.events.iter().map(|e| e.kind.as_str()).collect();
    let x = with_warmup(time_range_s(data), data);
    let rows = hosts.len().max(1) as f64;
    // Half a row of room on top for the phase labels.
    let y = -0.5..rows;
    let ticks: Vec<f64> = (0..hosts.len()).map(|i| i as f64).collect();
    let longest = hosts
        .iter()
        .map(|h| h.chars().count().min(HOST_LABEL_CHARS))
        .max()
        .unwrap_or(0);
    let mut chart = ChartBuilder::on(area)
        .caption("Certificate events", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        // Naive font metrics: about 7 px per character at the label size.
        .y_label_area_size(
            u32::try_from(longest * 7 + 20)
                .unwrap_or(220)
                .clamp(40, 220),
        )
        .build_cartesian_2d(x.clone(), ticked(y.clone(), ticks))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_label_formatter(&|y| category_label(&hosts, *y, HOST_LABEL_CHARS))
        .x_desc("time (s)")
        .draw()?;
    draw_windows(&mut chart, &data.windows, &x, &y)?;
    if data.events.is_empty() {
        return draw_note(area, "no certificate events");
    }
    for (index, kind) in kinds.into_iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let marks = data.events.iter().filter(|e| e.kind == kind).map(|e| {
            let row = hosts.binary_search(&e.host).unwrap_or(0) as f64;
            Circle::new((finite(e.at_s), row), 5, color.filled())
        });
        chart
            .draw_series(marks)?
            .label(shorten(kind, 40))
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
    }
    draw_legend(&mut chart)
}
