//! `[mesh]`: mesh-wide settings.

use std::time::Duration;

use serde::Deserialize;

use super::Dur;

/// Mesh-wide settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshSpec {
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Namespace part of every identity.
    pub namespace: String,
    /// Leaf certificate lifetime (Linkerd and Istio: 24h).
    pub leaf_ttl: Dur,
    /// Renew at this fraction of the lifetime (Linkerd: 0.7).
    pub renew_fraction: f64,
    /// Outbound per-request deadline.
    pub request_timeout: Dur,
}

impl Default for MeshSpec {
    fn default() -> Self {
        MeshSpec {
            trust_domain: "rec.meshsim".into(),
            namespace: "rec".into(),
            leaf_ttl: Dur(Duration::from_secs(24 * 3600)),
            renew_fraction: 0.7,
            request_timeout: Dur(Duration::from_secs(10)),
        }
    }
}
