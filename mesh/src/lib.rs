//! The meshsim service mesh.
//!
//! This crate owns the sidecar [`proxy`], the certificate authority ([`ca`]),
//! the [`control`] plane, workload [`identity`], mutual [`tls`] and the small
//! [`http`] toolkit they share. Each component is a plain async function
//! taking its config and a [`seam::HostEnv`]; only the composition root (the
//! `scenarios` crate) decides whether that env is tokio on loopback or turmoil.
//!
//! Layout, following one request: an app sends plain HTTP through its
//! [`client::Sidecar`] to the [`proxy::outbound`] listener on its own host,
//! which resolves the service through [`control::Discovery`], picks an
//! endpoint, and sends the request over a multiplexed ([`proxy::h2pool`])
//! mTLS connection to the peer's [`proxy::inbound`] listener. That checks
//! the caller's certificate ([`tls`]; a refusal is a typed [`TlsFailure`]),
//! and forwards to the local app with the caller's identity.
//!
//! Layers, lowest first: [`identity`], [`config`], [`tls`], [`http`] and
//! [`ca`]; then [`client`] (how a workload reaches the mesh: [`client::Upstream`],
//! the identity client [`client::certify`], the HTTP/1.1 [`client::pool`]
//! and the app's [`client::Sidecar`]); then [`control`]; then [`proxy`].
//! [`telemetry`] records every hop. A module imports only modules before it
//! in that list (`control` never imports `proxy`).
//!
//! It must never import turmoil or read the OS clock or OS randomness: time
//! comes from tokio and [`seam::Clock`], randomness from [`seam::Seed`].

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod accept;
pub mod authz;
pub mod ca;
pub mod client;
pub mod config;
pub mod control;
mod error;
pub mod http;
pub mod identity;
pub mod key_source;
pub mod pod_secret;
pub mod ports;
pub mod proxy;
pub mod simcrypto;
pub mod telemetry;
pub mod tls;

pub use error::{MeshError, TlsFailure};
pub use identity::SpiffeId;
pub use key_source::{KeyMode, KeySource};
