//! Calls from one REC service to another, always through the host's own
//! sidecar (`LOCALHOST:PROXY_OUTBOUND` with `Host: <service>`), so every hop
//! crosses the mesh with mTLS.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use mesh::MeshError;
use mesh::client::Sidecar;
use mesh::http::{Body, body_bytes};
use seam::HostEnv;
use serde::Serialize;

/// The path every REC service and database accepts commands on.
pub const COMMAND_PATH: &str = "/command";

/// An answer, or the lack of one.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The service answered (any status).
    Answered {
        /// Status.
        status: u16,
        /// Body.
        body: Bytes,
    },
    /// No answer: the call may or may not have been applied.
    Unknown(String),
}

impl Outcome {
    /// Whether the service answered with a 2xx.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Answered { status, .. } if (200..300).contains(status))
    }

    /// Parses a successful JSON body.
    pub fn json(&self) -> Option<serde_json::Value> {
        match self {
            Outcome::Answered { status, body } if (200..300).contains(status) => {
                serde_json::from_slice(body).ok()
            }
            _ => None,
        }
    }
}

/// A client of other services through the local sidecar.
pub struct Caller {
    sidecar: Sidecar,
    timeout: Duration,
    tries: u32,
}

impl Caller {
    /// A caller whose every try has `timeout`, and which tries a call whose
    /// outcome it did not see up to `tries` times.
    pub fn new(env: HostEnv, timeout: Duration, tries: u32) -> Self {
        Caller {
            sidecar: Sidecar::new(env),
            timeout,
            tries: tries.max(1),
        }
    }

    /// Sends a command to `service`, retrying when no answer came back or
    /// the mesh said the upstream was unreachable (502, 503, 504). A retry
    /// repeats the same body, idempotency key included: whether it applies
    /// twice is up to the receiver.
    pub async fn command(&self, service: &str, command: &impl Serialize) -> Outcome {
        let body = Bytes::from(serde_json::to_vec(command).expect("commands serialize"));
        let mut outcome = Outcome::Unknown("not sent".into());
        for attempt in 0..self.tries {
            if attempt > 0 {
                // Linear backoff: short, bounded, on sim time.
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            outcome = self.once(service, body.clone()).await;
            let retryable = match &outcome {
                Outcome::Unknown(_) => true,
                Outcome::Answered { status, .. } => matches!(
                    StatusCode::from_u16(*status),
                    Ok(StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT)
                ),
            };
            if !retryable {
                break;
            }
        }
        outcome
    }

    async fn once(&self, service: &str, body: Bytes) -> Outcome {
        let request = Sidecar::request(service, Method::POST, COMMAND_PATH)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("static request parts are valid");
        match self.sidecar.send_with_timeout(request, self.timeout).await {
            Ok(response) => Outcome::Answered {
                status: response.status().as_u16(),
                body: body_bytes(response.body()),
            },
            Err(MeshError::Timeout(_)) => {
                Outcome::Unknown(format!("no answer within {:?}", self.timeout))
            }
            Err(error) => Outcome::Unknown(error.to_string()),
        }
    }
}
