//! The run trace: every meaningful event with its run time and host, plus a
//! running SHA-256 over all of them, which is the run's fingerprint.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    /// Index in the trace.
    pub seq: u64,
    /// Run time in microseconds.
    pub at_us: u64,
    /// Host that recorded it.
    pub host: String,
    /// Event kind, e.g. `request.end`, `tls.accept`, `fault.partition`.
    pub kind: String,
    /// Free-form, deterministic detail.
    pub detail: String,
}

#[derive(Default)]
struct TraceState {
    events: Vec<TraceEvent>,
    hasher: Sha256,
    count: u64,
    keep: Keep,
}

/// Which events a trace keeps (the hash always covers all of them).
#[derive(Default)]
enum Keep {
    #[default]
    None,
    All,
    /// Events whose kind starts with one of these (e.g. `cert.`).
    Kinds(Vec<String>),
}

impl Keep {
    fn keeps(&self, kind: &str) -> bool {
        match self {
            Keep::None => false,
            Keep::All => true,
            Keep::Kinds(prefixes) => prefixes.iter().any(|p| kind.starts_with(p.as_str())),
        }
    }
}

/// A shared, append-only trace. Cloning shares it.
///
/// In the simulation every host runs on one thread in a seeded order, so the
/// order of `record` calls, and therefore the hash, is a function of the seed.
/// `None` is [`Trace::off`].
#[derive(Clone)]
pub struct Trace(Option<Arc<Mutex<TraceState>>>);

impl Trace {
    /// A trace that keeps every event (for diffing and `--trace`).
    pub fn keeping_events() -> Self {
        Trace::with_state(TraceState {
            keep: Keep::All,
            ..TraceState::default()
        })
    }

    /// A trace that keeps only events whose kind starts with a prefix
    /// (lifecycle events for reports), hashing everything.
    pub fn keeping_kinds(prefixes: &[&str]) -> Self {
        let keep = Keep::Kinds(prefixes.iter().map(|p| (*p).to_owned()).collect());
        Trace::with_state(TraceState {
            keep,
            ..TraceState::default()
        })
    }

    /// A trace that only keeps the running hash (cheap, for big sweeps).
    pub fn hash_only() -> Self {
        Trace::with_state(TraceState::default())
    }

    /// A trace that records nothing, for the processes `meshsim up` starts:
    /// a real run is not reproducible, so its fingerprint means nothing, and
    /// a sidecar would otherwise format and hash an event per request.
    /// Its hash is that of an empty trace.
    pub fn off() -> Self {
        Trace(None)
    }

    fn with_state(state: TraceState) -> Self {
        Trace(Some(Arc::new(Mutex::new(state))))
    }

    /// Whether `record` keeps anything (callers skip formatting if not).
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    fn state(&self) -> Option<std::sync::MutexGuard<'_, TraceState>> {
        let state = self.0.as_ref()?;
        Some(state.lock().expect("trace lock poisoned"))
    }

    /// Appends an event.
    pub fn record(&self, at_us: u64, host: &str, kind: &str, detail: impl Into<String>) {
        let Some(mut state) = self.state() else {
            return;
        };
        let detail = detail.into();
        let seq = state.count;
        state.count += 1;
        for part in [
            &at_us.to_le_bytes()[..],
            host.as_bytes(),
            kind.as_bytes(),
            detail.as_bytes(),
        ] {
            state.hasher.update((part.len() as u32).to_le_bytes());
            state.hasher.update(part);
        }
        if state.keep.keeps(kind) {
            let event = TraceEvent {
                seq,
                at_us,
                host: host.to_owned(),
                kind: kind.to_owned(),
                detail,
            };
            state.events.push(event);
        }
    }

    /// Hex SHA-256 of everything recorded so far.
    pub fn hash_hex(&self) -> String {
        let hasher = self.state().map(|state| state.hasher.clone());
        hex::encode(hasher.unwrap_or_default().finalize())
    }

    /// A copy of the kept events.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.state()
            .map(|state| state.events.clone())
            .unwrap_or_default()
    }

    /// Number of recorded events (kept or not).
    pub fn count(&self) -> u64 {
        self.state().map_or(0, |state| state.count)
    }

    /// Writes the kept events as JSON Lines.
    pub fn write_jsonl(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        for event in self.events() {
            serde_json::to_writer(&mut *out, &event)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The first index where two event lists differ, if any.
pub fn first_divergence(a: &[TraceEvent], b: &[TraceEvent]) -> Option<usize> {
    let shared = a.len().min(b.len());
    (0..shared)
        .find(|&i| a[i] != b[i])
        .or((a.len() != b.len()).then_some(shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_field_and_order() {
        let a = Trace::keeping_events();
        a.record(1, "h", "k", "d");
        a.record(2, "h", "k", "e");
        let b = Trace::keeping_events();
        b.record(1, "h", "k", "d");
        b.record(2, "h", "k", "f");
        assert_ne!(a.hash_hex(), b.hash_hex());
        assert_eq!(first_divergence(&a.events(), &b.events()), Some(1));
        let c = Trace::hash_only();
        c.record(1, "h", "k", "d");
        c.record(2, "h", "k", "e");
        assert_eq!(a.hash_hex(), c.hash_hex());
    }

    #[test]
    fn an_off_trace_records_nothing_and_hashes_as_empty() {
        let off = Trace::off();
        off.record(1, "h", "k", "d");
        assert!(!off.is_on());
        assert_eq!((off.count(), off.events()), (0, Vec::new()));
        assert_eq!(off.hash_hex(), Trace::hash_only().hash_hex());
    }
}
