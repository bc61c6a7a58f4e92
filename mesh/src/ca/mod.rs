//! The certificate authority: a root, an issuer under it, and leaves for
//! workloads, signed from CSRs sent over TLS.
//!
//! The CA decides the identity, never the requester: it signs only the one
//! SPIFFE ID that the bootstrap token (first time) or the current client
//! certificate (renewal) proves, and refuses a CSR that asks for anything
//! else or for several URIs (Consul CVE-2022-40716). The leaf it builds
//! copies nothing from the CSR but the public key.
//!
//! Layout: [`key`] (the CA's signing keys, deterministic from the seed),
//! [`material`] (root and issuer certificates, what an installer
//! provisions), [`authority`] (issuing: the CSR policy and leaf
//! certificates), [`rotation`] (new roots and issuers), [`state`] (what
//! survives a crash, on the host's disk) and [`server`] (the TLS endpoint).

mod authority;
mod key;
mod material;
mod rotation;
mod server;
mod state;
#[cfg(test)]
mod testing;
mod throttle;

use std::time::{Duration, SystemTime};

pub use authority::Authority;
pub use key::CaKey;
pub use material::{CaMaterial, SigningCert};
pub use server::{CaConfig, run};
pub use state::STATE_FILE;

/// How long roots and issuers live.
const CA_CERT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Leaves are backdated a little so a peer whose clock is slightly behind
/// does not reject a certificate that was just issued.
const LEAF_BACKDATE: Duration = Duration::from_secs(60);

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// PEM-encodes DER (chains sent to workloads, files for curl).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}
