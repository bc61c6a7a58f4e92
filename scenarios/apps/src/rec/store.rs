//! Event-sourced stores: an append-only command log plus snapshots, kept on
//! the host's [`seam::Disk`].
//!
//! A write command is appended to the log *before* it is applied and
//! answered, so every acknowledged write survives a crash: on restart the
//! store loads the newest snapshot and replays the log written since. State
//! machines are deterministic (time comes inside the command), so a replay
//! rebuilds exactly the state that was acknowledged.
//!
//! Files: `<name>.snapshot` holds `{generation, state}`; `<name>.log.<g>`
//! holds the commands applied after snapshot generation `g`, one JSON line
//! each. A snapshot starts a new generation, so a crash between writing the
//! snapshot and clearing the old log never replays a command twice.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a state machine answers to a command: an HTTP status and a body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: serde_json::Value,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: impl Serialize) -> Reply {
        Reply {
            status: 200,
            body: serde_json::to_value(body).unwrap_or_default(),
        }
    }

    /// An error status with a reason.
    pub fn error(status: u16, reason: impl Into<String>) -> Reply {
        Reply {
            status,
            body: serde_json::json!({ "error": reason.into() }),
        }
    }
}

/// A deterministic state machine whose writes are logged.
pub trait StateMachine: Serialize + DeserializeOwned + Send + 'static {
    /// What it accepts.
    type Command: Serialize + DeserializeOwned + Send + 'static;

    /// Whether `command` may change state (only those are logged).
    fn is_write(command: &Self::Command) -> bool;

    /// Applies `command`. Must depend on nothing but the state and the
    /// command, or a replay would differ from the original run.
    fn apply(&mut self, command: Self::Command) -> Reply;
}

/// Why a store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk failed.
    #[error("store {name}: disk: {source}")]
    Disk {
        /// Store name.
        name: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file did not parse.
    #[error("store {name}: corrupt {file}: {reason}")]
    Corrupt {
        /// Store name.
        name: String,
        /// Which file.
        file: String,
        /// Parser message.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Snapshot<S> {
    generation: u64,
    state: S,
}

#[derive(Serialize)]
struct SnapshotRef<'a, S> {
    generation: u64,
    state: &'a S,
}

/// An event-sourced store of one state machine.
pub struct Store<S: StateMachine> {
    disk: Arc<dyn seam::Disk>,
    name: String,
    state: S,
    generation: u64,
    writes_since_snapshot: u64,
    snapshot_every: u64,
}

impl<S: StateMachine> Store<S> {
    /// Opens the store, recovering state from disk, or starts from `fresh`.
    pub fn open(
        disk: Arc<dyn seam::Disk>,
        name: &str,
        snapshot_every: u64,
        fresh: impl FnOnce() -> S,
    ) -> Result<Store<S>, StoreError> {
        let disk_error = |source| StoreError::Disk {
            name: name.to_owned(),
            source,
        };
        let snapshot_file = format!("{name}.snapshot");
        let (generation, mut state) = match disk.read(&snapshot_file).map_err(disk_error)? {
            Some(bytes) => {
                let snapshot: Snapshot<S> =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        name: name.to_owned(),
                        file: snapshot_file.clone(),
                        reason: e.to_string(),
                    })?;
                (snapshot.generation, snapshot.state)
            }
            None => (0, fresh()),
        };
        let log = disk
            .read(&log_file(name, generation))
            .map_err(disk_error)?
            .unwrap_or_default();
        let mut replayed = 0;
        for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // A torn last line (real disks) was never acknowledged: skip it.
            let Ok(command) = serde_json::from_slice::<S::Command>(line) else {
                break;
            };
            state.apply(command);
            replayed += 1;
        }
        Ok(Store {
            disk,
            name: name.to_owned(),
            state,
            generation,
            writes_since_snapshot: replayed,
            snapshot_every: snapshot_every.max(1),
        })
    }

    /// Executes a command; a write is durable before this returns.
    pub fn execute(&mut self, command: S::Command) -> Result<Reply, StoreError> {
        if S::is_write(&command) {
            let mut line = serde_json::to_vec(&command).expect("commands serialize");
            line.push(b'\n');
            self.disk
                .append(&log_file(&self.name, self.generation), &line)
                .map_err(|source| self.disk_error(source))?;
            self.writes_since_snapshot += 1;
        }
        let reply = self.state.apply(command);
        if self.writes_since_snapshot >= self.snapshot_every {
            self.snapshot()?;
        }
        Ok(reply)
    }

    /// The current state.
    pub fn state(&self) -> &S {
        &self.state
    }

    fn disk_error(&self, source: std::io::Error) -> StoreError {
        StoreError::Disk {
            name: self.name.clone(),
            source,
        }
    }

    /// Writes a snapshot and starts a new log generation.
    fn snapshot(&mut self) -> Result<(), StoreError> {
        let next = self.generation + 1;
        let bytes = serde_json::to_vec(&SnapshotRef {
            generation: next,
            state: &self.state,
        })
        .expect("state serializes");
        self.disk
            .write(&format!("{}.snapshot", self.name), &bytes)
            .map_err(|source| self.disk_error(source))?;
        let old = log_file(&self.name, self.generation);
        self.generation = next;
        self.writes_since_snapshot = 0;
        // The old log is covered by the snapshot; emptying it frees memory.
        self.disk
            .write(&old, b"")
            .map_err(|source| self.disk_error(source))
    }
}

fn log_file(name: &str, generation: u64) -> String {
    format!("{name}.log.{generation}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam::{Disk, MemDisk};

    #[derive(Default, Serialize, Deserialize)]
    struct Counter {
        total: u64,
    }

    #[derive(Serialize, Deserialize)]
    enum Op {
        Add(u64),
        Get,
    }

    impl StateMachine for Counter {
        type Command = Op;
        fn is_write(command: &Op) -> bool {
            matches!(command, Op::Add(_))
        }
        fn apply(&mut self, command: Op) -> Reply {
            if let Op::Add(n) = command {
                self.total += n;
            }
            Reply::ok(self.total)
        }
    }

    fn open(disk: &MemDisk, every: u64) -> Store<Counter> {
        Store::open(Arc::new(disk.clone()), "c", every, Counter::default).unwrap()
    }

    #[test]
    fn reopening_recovers_every_acknowledged_write() {
        let disk = MemDisk::default();
        let mut store = open(&disk, 1_000);
        for n in 1..=10 {
            store.execute(Op::Add(n)).unwrap();
        }
        store.execute(Op::Get).unwrap();
        drop(store); // a crash: nothing but the disk survives
        assert_eq!(open(&disk, 1_000).state().total, 55);
    }

    #[test]
    fn snapshots_cut_the_log_without_losing_or_repeating_writes() {
        let disk = MemDisk::default();
        let mut store = open(&disk, 3);
        for _ in 0..10 {
            store.execute(Op::Add(1)).unwrap();
        }
        assert_eq!(store.generation, 3);
        assert_eq!(disk.read("c.log.0").unwrap().unwrap(), b"");
        drop(store);
        let mut reopened = open(&disk, 3);
        assert_eq!(reopened.state().total, 10);
        reopened.execute(Op::Add(5)).unwrap();
        assert_eq!(open(&disk, 3).state().total, 15);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let disk = MemDisk::default();
        let mut store = open(&disk, 100);
        store.execute(Op::Add(2)).unwrap();
        disk.append("c.log.0", b"{\"Add\":").unwrap();
        assert_eq!(open(&disk, 100).state().total, 2);
    }
}
