//! The one error type of the mesh. Like pingora's, it says which side failed
//! and whether a retry may help, so callers read the error instead of guessing.

use std::io;

/// Which side of a proxied exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSide {
    /// The upstream peer (endpoint, CA, control plane).
    Upstream,
    /// The downstream caller.
    Downstream,
    /// This process.
    Internal,
}

/// Errors at the mesh crate boundary.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Socket-level failure while connecting.
    #[error("connect to {target} failed: {source}")]
    Connect { target: String, source: io::Error },
    /// Other I/O failure.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// TLS handshake or record failure.
    #[error("tls: {0}")]
    Tls(String),
    /// HTTP protocol failure.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// Building, parsing or signing a certificate failed.
    #[error("certificate: {0}")]
    Cert(String),
    /// A SPIFFE ID that is malformed or not the expected one.
    #[error("bad identity: {0}")]
    BadIdentity(String),
    /// The CA refused to sign.
    #[error("certificate request refused: {0}")]
    Refused(String),
    /// Discovery knows no endpoint for the service.
    #[error("no endpoints for service {0}")]
    NoEndpoints(String),
    /// The proxy has no valid certificate (never issued, or expired).
    #[error("no valid workload certificate")]
    NoIdentity,
    /// The upstream answered with an unexpected status.
    #[error("upstream answered {0}")]
    Status(u16),
    /// A deadline passed.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// A body or header over its limit, or unreadable input.
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl MeshError {
    /// Wraps any displayable certificate-library error.
    pub fn cert(error: impl std::fmt::Display) -> Self {
        MeshError::Cert(error.to_string())
    }

    /// Which side failed.
    pub fn side(&self) -> ErrorSide {
        match self {
            MeshError::Connect { .. }
            | MeshError::Tls(_)
            | MeshError::Http(_)
            | MeshError::Status(_) => ErrorSide::Upstream,
            MeshError::Timeout(_) | MeshError::NoEndpoints(_) | MeshError::Refused(_) => {
                ErrorSide::Upstream
            }
            MeshError::BadRequest(_) => ErrorSide::Downstream,
            MeshError::Io(_)
            | MeshError::Cert(_)
            | MeshError::BadIdentity(_)
            | MeshError::NoIdentity => ErrorSide::Internal,
        }
    }

    /// Whether the request certainly never reached the upstream application,
    /// so even a non-idempotent request may be retried.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            MeshError::Connect { .. }
                | MeshError::Tls(_)
                | MeshError::NoEndpoints(_)
                | MeshError::NoIdentity
        )
    }
}
