//! Comparing two runs of one seed, and showing where they part.

use std::fmt::Write as _;

use seam::{TraceEvent, first_divergence};

/// Events shown before and after the first divergence.
pub const CONTEXT_EVENTS: usize = 3;

/// The outcome of comparing two traces.
#[derive(Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Same hash.
    Identical { hash: String },
    /// Different hashes; where the kept events first differ, if they do.
    Diverged {
        first: String,
        second: String,
        divergence: Option<Box<Divergence>>,
    },
}

/// The first differing event of two runs, with context.
#[derive(Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the first differing event.
    pub index: usize,
    /// Up to [`CONTEXT_EVENTS`] events both runs agree on, just before it.
    pub agreed: Vec<TraceEvent>,
    /// Run 1 from the divergence on (up to 1 + [`CONTEXT_EVENTS`] events;
    /// empty when run 1 ended there).
    pub first: Vec<TraceEvent>,
    /// Run 2 likewise.
    pub second: Vec<TraceEvent>,
}

/// Compares two traces by hash, then finds the first differing kept event.
pub fn compare(
    first_hash: &str,
    first: &[TraceEvent],
    second_hash: &str,
    second: &[TraceEvent],
) -> Comparison {
    if first_hash == second_hash {
        return Comparison::Identical {
            hash: first_hash.to_owned(),
        };
    }
    let divergence = first_divergence(first, second).map(|index| {
        let window = |events: &[TraceEvent]| {
            events
                .iter()
                .skip(index)
                .take(1 + CONTEXT_EVENTS)
                .cloned()
                .collect()
        };
        Box::new(Divergence {
            index,
            agreed: first[index.saturating_sub(CONTEXT_EVENTS)..index].to_vec(),
            first: window(first),
            second: window(second),
        })
    });
    Comparison::Diverged {
        first: first_hash.to_owned(),
        second: second_hash.to_owned(),
        divergence,
    }
}

/// One event on one line: time, host, kind, detail.
pub fn format_event(event: &TraceEvent) -> String {
    format!(
        "#{} {:>11}us {} {} {}",
        event.seq, event.at_us, event.host, event.kind, event.detail
    )
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        format!("{text:<width$}")
    } else {
        let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

impl Divergence {
    /// The two runs in two columns of `column` characters: the agreed
    /// prefix once, then the first differing event of each run side by side
    /// (marked `>`), then what each run did next.
    pub fn side_by_side(&self, column: usize) -> String {
        let mut out = String::new();
        for event in &self.agreed {
            let _ = writeln!(out, "  = {}", format_event(event));
        }
        let _ = writeln!(
            out,
            "  {} | {}",
            clip("run 1", column),
            clip("run 2", column)
        );
        let rows = self.first.len().max(self.second.len()).max(1);
        for row in 0..rows {
            let cell = |events: &[TraceEvent]| {
                events.get(row).map_or_else(
                    || {
                        if row == 0 {
                            "<end of trace>".to_owned()
                        } else {
                            String::new()
                        }
                    },
                    format_event,
                )
            };
            let marker = if row == 0 { '>' } else { ' ' };
            let _ = writeln!(
                out,
                "{marker} {} | {}",
                clip(&cell(&self.first), column),
                clip(&cell(&self.second), column)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, detail: &str) -> TraceEvent {
        TraceEvent {
            seq,
            at_us: seq * 10,
            host: "h".into(),
            kind: "k".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn divergence_carries_context_from_both_runs() {
        let a: Vec<_> = (0..8).map(|i| event(i, &format!("e{i}"))).collect();
        let mut b = a.clone();
        b[5].detail = "other".into();
        let Comparison::Diverged {
            divergence: Some(d),
            ..
        } = compare("x", &a, "y", &b)
        else {
            panic!("expected a divergence");
        };
        assert_eq!(d.index, 5);
        assert_eq!(d.agreed.len(), CONTEXT_EVENTS);
        assert_eq!(d.first[0].detail, "e5");
        assert_eq!(d.second[0].detail, "other");
        let text = d.side_by_side(30);
        let marked = text.lines().find(|l| l.starts_with('>')).unwrap();
        assert!(marked.contains("e5") && marked.contains("other"), "{text}");
    }

    #[test]
    fn a_shorter_run_shows_its_end() {
        let a: Vec<_> = (0..3).map(|i| event(i, "same")).collect();
        let b = a[..2].to_vec();
        let Comparison::Diverged {
            divergence: Some(d),
            ..
        } = compare("x", &a, "y", &b)
        else {
            panic!("expected a divergence");
        };
        assert_eq!(d.index, 2);
        assert!(d.side_by_side(40).contains("<end of trace>"));
        assert_eq!(
            compare("x", &a, "x", &b),
            Comparison::Identical { hash: "x".into() }
        );
    }
}
