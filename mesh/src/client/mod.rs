//! The client wing: everything a workload uses to reach the mesh, below
//! both [`crate::proxy`] and [`crate::control`] (which import it and never
//! each other for it).
//!
//! * [`Upstream`]: a mesh service dialled directly over mTLS (CA, control
//!   plane).
//! * [`certify`]: the identity client: key, CSR, certificate, renewal.
//! * [`pool`]: keep-alive HTTP/1.1 connections per endpoint.
//! * [`Sidecar`]: an app's client of its own host's outbound sidecar.

pub mod certify;
pub mod pool;
mod sidecar;
mod upstream;

pub use sidecar::{PROXY_ERROR_HEADER, Sidecar, in_trace};
pub use upstream::Upstream;
