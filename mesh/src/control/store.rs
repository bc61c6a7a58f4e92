//! The control plane's versioned, persisted state.
//!
//! Each change is appended to `control.log` (JSON Lines) on the host's disk
//! before it is applied, so what was acknowledged survives a crash. A
//! bounded history of recent changes lets a watcher that fell behind catch
//! up change by change; older watchers get a full snapshot.

use std::collections::VecDeque;
use std::sync::Arc;

use seam::Disk;

use super::{Change, Delta, Snapshot, WatchUpdate};
use crate::MeshError;
use crate::config::{ConfigError, MeshConfig};

/// File the change log lives in.
const LOG_FILE: &str = "control.log";
/// Changes kept for catching watchers up.
const HISTORY_MAX: usize = 1024;

/// Versioned state plus its log.
pub struct Store {
    disk: Arc<dyn Disk>,
    snapshot: Snapshot,
    history: VecDeque<Change>,
}

impl Store {
    /// Opens the store, replaying the log; an empty log starts from
    /// `initial` as version 1.
    pub fn open(disk: Arc<dyn Disk>, initial: MeshConfig) -> Result<Store, MeshError> {
        let mut store = Store {
            disk,
            snapshot: Snapshot::default(),
            history: VecDeque::new(),
        };
        let log = store.disk.read(LOG_FILE)?.unwrap_or_default();
        for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let change: Change = serde_json::from_slice(line)
                .map_err(|e| MeshError::BadRequest(format!("corrupt {LOG_FILE}: {e}")))?;
            store.remember(change);
        }
        if store.snapshot.version == 0 {
            initial
                .validate()
                .map_err(|e| MeshError::BadRequest(e.to_string()))?;
            let first = Change {
                version: 1,
                delta: Delta::Config { config: initial },
            };
            store
                .persist(first)
                .map_err(|e| MeshError::BadRequest(e.to_string()))?;
        }
        Ok(store)
    }

    fn remember(&mut self, change: Change) {
        self.snapshot.apply(&change);
        self.history.push_back(change);
        if self.history.len() > HISTORY_MAX {
            self.history.pop_front();
        }
    }

    /// Validates, persists and applies a change. `Ok(None)` when it would
    /// change nothing (a heartbeat from a known endpoint).
    pub fn apply(&mut self, delta: Delta) -> Result<Option<u64>, ConfigError> {
        if !self.changes_anything(&delta) {
            return Ok(None);
        }
        if let Delta::Config { config } = &delta {
            config.validate()?;
        }
        let change = Change {
            version: self.snapshot.version + 1,
            delta,
        };
        let version = change.version;
        self.persist(change)?;
        Ok(Some(version))
    }

    /// Appends to the log, then applies: an acknowledged change is durable.
    fn persist(&mut self, change: Change) -> Result<(), ConfigError> {
        let mut line = serde_json::to_vec(&change).map_err(|e| ConfigError(e.to_string()))?;
        line.push(b'\n');
        self.disk
            .append(LOG_FILE, &line)
            .map_err(|e| ConfigError(format!("cannot persist: {e}")))?;
        self.remember(change);
        Ok(())
    }

    fn changes_anything(&self, delta: &Delta) -> bool {
        let mut probe = self.snapshot.clone();
        probe.apply(&Change {
            version: self.snapshot.version,
            delta: delta.clone(),
        });
        probe != self.snapshot
    }

    /// The current state.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// What a watcher at version `after` needs to catch up.
    pub fn since(&self, after: u64) -> WatchUpdate {
        let oldest = self.history.front().map_or(u64::MAX, |c| c.version);
        if after == 0 || after + 1 < oldest || after > self.snapshot.version {
            return WatchUpdate::Full {
                snapshot: self.snapshot.clone(),
            };
        }
        WatchUpdate::Changes {
            changes: self
                .history
                .iter()
                .filter(|c| c.version > after)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceConfig;
    use crate::control::{Endpoint, Registration};
    use seam::MemDisk;

    fn endpoint(host: &str) -> Delta {
        let identity = crate::SpiffeId::new("t", "ns", "svc").unwrap();
        Delta::Up {
            service: "svc".into(),
            endpoint: Endpoint {
                host: host.into(),
                port: 1,
                identity,
            },
        }
    }

    fn bad_config() -> MeshConfig {
        let mut config = MeshConfig::default();
        config
            .services
            .insert(String::new(), ServiceConfig::default());
        config
    }

    #[test]
    fn an_invalid_config_is_refused_and_the_old_one_kept() {
        let mut store = Store::open(Arc::new(MemDisk::default()), MeshConfig::default()).unwrap();
        let before = store.snapshot().clone();
        let error = store
            .apply(Delta::Config {
                config: bad_config(),
            })
            .unwrap_err();
        assert!(error.to_string().contains("empty name"), "{error}");
        assert_eq!(store.snapshot(), &before);
    }

    #[test]
    fn a_restart_recovers_the_latest_version() {
        let disk = MemDisk::default();
        let mut store = Store::open(Arc::new(disk.clone()), MeshConfig::default()).unwrap();
        store.apply(endpoint("a")).unwrap();
        let mut revoked = MeshConfig::default();
        revoked.revoked.insert("spiffe://t/ns/ns/sa/rogue".into());
        let version = store
            .apply(Delta::Config {
                config: revoked.clone(),
            })
            .unwrap()
            .unwrap();
        let reopened = Store::open(Arc::new(disk), MeshConfig::default()).unwrap();
        assert_eq!(reopened.snapshot().version, version);
        assert_eq!(reopened.snapshot().config, revoked);
        assert_eq!(reopened.snapshot(), store.snapshot());
    }

    #[test]
    fn a_watcher_that_fell_behind_gets_every_change_in_order() {
        let mut store = Store::open(Arc::new(MemDisk::default()), MeshConfig::default()).unwrap();
        let mut proxy = match store.since(0) {
            WatchUpdate::Full { snapshot } => snapshot,
            other => panic!("a new watcher gets a snapshot, got {other:?}"),
        };
        for host in ["a", "b", "c"] {
            store.apply(endpoint(host)).unwrap();
        }
        match store.since(proxy.version) {
            WatchUpdate::Changes { changes } => {
                let versions: Vec<u64> = changes.iter().map(|c| c.version).collect();
                assert_eq!(versions, [2, 3, 4]);
                WatchUpdate::Changes { changes }.apply_to(&mut proxy);
            }
            other => panic!("expected changes, got {other:?}"),
        }
        assert_eq!(&proxy, store.snapshot());
        let registration = Registration {
            service: "svc".into(),
            endpoint: match endpoint("b") {
                Delta::Up { endpoint, .. } => endpoint,
                _ => unreachable!(),
            },
        };
        assert!(proxy.lists(&registration));
    }

    #[test]
    fn a_watcher_older_than_the_history_gets_a_full_snapshot() {
        let mut store = Store::open(Arc::new(MemDisk::default()), MeshConfig::default()).unwrap();
        for i in 0..(HISTORY_MAX + 10) {
            store
                .apply(endpoint(&format!("h{}", i % 2 + (i / 2) * 2)))
                .unwrap();
        }
        assert!(matches!(store.since(1), WatchUpdate::Full { .. }));
        assert!(
            matches!(
                store.since(store.snapshot().version + 5),
                WatchUpdate::Full { .. }
            ),
            "a watcher ahead of a restarted store resyncs"
        );
    }

    #[test]
    fn heartbeats_from_known_endpoints_change_nothing() {
        let mut store = Store::open(Arc::new(MemDisk::default()), MeshConfig::default()).unwrap();
        assert!(store.apply(endpoint("a")).unwrap().is_some());
        assert_eq!(store.apply(endpoint("a")).unwrap(), None);
    }
}
