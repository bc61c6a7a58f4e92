//! Comparing two runs of one seed.

use seam::{TraceEvent, first_divergence};

/// The outcome of comparing two traces.
#[derive(Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Same hash.
    Identical { hash: String },
    /// Different hashes; the first differing event from each side, if kept.
    Diverged {
        first: String,
        second: String,
        index: Option<usize>,
        left: Option<Box<TraceEvent>>,
        right: Option<Box<TraceEvent>>,
    },
}

/// Compares two traces by hash, then finds the first differing event.
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
    let index = first_divergence(first, second);
    Comparison::Diverged {
        first: first_hash.to_owned(),
        second: second_hash.to_owned(),
        index,
        left: index.and_then(|i| first.get(i).cloned().map(Box::new)),
        right: index.and_then(|i| second.get(i).cloned().map(Box::new)),
    }
}
