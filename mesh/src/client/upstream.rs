//! A mesh service that a workload talks to directly over mTLS HTTP/1.1
//! (the CA, the control plane), without going through a sidecar.

use std::time::Duration;

use seam::{BoxIo, HostEnv};

use crate::tls::MeshTls;
use crate::{MeshError, SpiffeId};

/// Deadline for opening a connection to an upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a mesh service is and which identity it must prove: the TLS
/// client refuses a server whose SPIFFE ID is not `identity`. Serializable
/// because a deployed sidecar reads its upstreams from the state directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    /// Host name, as the [`seam::Net`] resolves it.
    pub host: String,
    /// Logical port (see [`crate::ports`]).
    pub port: u16,
    /// The SPIFFE ID the server's certificate must carry.
    pub identity: SpiffeId,
}

impl Upstream {
    /// Opens an mTLS connection to this upstream, for HTTP/1.1.
    pub async fn open(&self, env: &HostEnv, tls: &MeshTls) -> Result<BoxIo, MeshError> {
        let target = format!("{}:{}", self.host, self.port);
        // A SYN into a partition is never answered (turmoil, like a real
        // black hole); give up quickly so backoff, not a hang, sets the pace.
        let connect =
            tokio::time::timeout(CONNECT_TIMEOUT, env.net.connect(&self.host, self.port)).await;
        let io = connect
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })
            .map_err(|source| MeshError::Connect { target, source })?;
        let stream = tls
            .connect(io, &self.identity, &[b"http/1.1"], true)
            .await?;
        Ok(Box::new(stream))
    }
}
