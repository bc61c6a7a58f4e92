//! Well-known logical ports (see `seam::Net`: the real network may remap them).

/// Proxy inbound listener (mesh → local app), mTLS only.
pub const PROXY_INBOUND: u16 = 4143;
/// Proxy outbound listener (local app → mesh), loopback only.
pub const PROXY_OUTBOUND: u16 = 4140;
/// Proxy admin listener (metrics, readiness), loopback only.
pub const PROXY_ADMIN: u16 = 4191;
/// The local application behind a sidecar.
pub const APP: u16 = 8080;
/// The certificate authority.
pub const CA: u16 = 8443;
/// The control plane.
pub const CONTROL: u16 = 8444;
