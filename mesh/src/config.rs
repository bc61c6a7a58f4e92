//! Mesh configuration the control plane distributes: per-service traffic
//! and security policy, and revocations.
//!
//! The control plane versions it and pushes it with the endpoint registry
//! (see `control::Snapshot`); proxies apply a snapshot atomically and keep
//! the last good one when the control plane is unreachable.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Everything proxies need to know besides endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshConfig {
    /// Policy per destination service.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Revoked SPIFFE IDs and certificate serials (hex).
    pub revoked: BTreeSet<String>,
}

/// Traffic and security policy for one service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {}

/// Why a configuration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid mesh config: {0}")]
pub struct ConfigError(pub String);

impl MeshConfig {
    /// Checks the config before it is accepted; a refused config leaves the
    /// previous version in force.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for name in self.services.keys() {
            if name.is_empty() {
                return Err(ConfigError("a service policy has an empty name".into()));
            }
        }
        Ok(())
    }

    /// The policy for `service` (default policy if none is configured).
    pub fn service(&self, service: &str) -> ServiceConfig {
        self.services.get(service).cloned().unwrap_or_default()
    }
}
