//! Rogue hosts: workloads that try to reach a mesh service without the
//! right to. Each is a plain host on the network (no sidecar) that talks
//! TLS straight to a replica's inbound port and writes raw HTTP/1.1, so it
//! can send request targets no well-behaved client would:
//! * `no_certificate`: TLS that trusts the mesh root but presents nothing;
//! * `foreign_ca`: a certificate for a real mesh identity (`gateway`),
//!   signed by a CA of the same trust domain name that the mesh never
//!   trusted;
//! * `disallowed_identity`: a genuine mesh certificate (bootstrap token and
//!   all) for an identity the target's policy does not allow, sending the
//!   path-normalization corpus of notes/anchors.md around each private path,
//!   plus one allowed control path.
//!
//! Every attempt and its outcome go to a [`RogueLog`] the checks read.

use std::sync::Arc;
use std::time::Duration;

use mesh::ca::{Authority, CaMaterial};
use mesh::client::certify::certify_once;
use mesh::identity::{certificate_request, ed25519_key};
use mesh::tls::MeshTls;
use mesh::{MeshError, SpiffeId, ports};
use seam::HostEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::install::Install;
use checks::rogue::{RogueAttempt, RogueOutcome, corpus};
use spec::mesh::{RogueKind, RogueSpec};

/// Deadline of one attempt (connect, handshake, request, status line).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read looking for the status line.
const STATUS_LINE_BYTES_MAX: usize = 4096;

/// The identity a `disallowed_identity` rogue holds.
pub fn rogue_identity(install: &Install, name: &str) -> SpiffeId {
    install.identity(None, name)
}

/// Runs one rogue until the host stops.
pub async fn run(install: Arc<Install>, spec: RogueSpec, env: HostEnv) -> Result<(), MeshError> {
    tokio::time::sleep(install.scenario.workload.warmup.0).await;
    let (tls, principal) = credentials(&install, &spec, &env).await?;
    let service = spec.target.get_ref().clone();
    let replicas = install
        .scenario
        .services
        .iter()
        .find(|s| *s.name.get_ref() == service)
        .map_or(1, |s| s.replicas.max(1));
    let target_identity = install.identity(None, &service);
    let mut requests: Vec<(String, bool)> = match spec.kind {
        RogueKind::DisallowedIdentity => spec
            .private_paths
            .iter()
            .flat_map(|p| corpus(p))
            .map(|t| (t, false))
            .collect(),
        _ => spec
            .private_paths
            .iter()
            .map(|p| (p.clone(), false))
            .collect(),
    };
    if let Some(allowed) = &spec.allowed_path {
        requests.push((allowed.clone(), true));
    }
    let mut turn = 0usize;
    loop {
        for (target, control) in &requests {
            let host = format!("{service}-{}", turn % replicas as usize);
            turn += 1;
            let outcome = tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                attempt(
                    &env,
                    &tls,
                    &host,
                    &target_identity,
                    &service,
                    target,
                    spec.kind,
                ),
            )
            .await
            .unwrap_or_else(|_| RogueOutcome::NoResponse("timed out".into()));
            env.record(
                "rogue.attempt",
                format!(
                    "kind={:?} host={host} target={target} outcome={outcome:?}",
                    spec.kind
                ),
            );
            install.rogues.record(RogueAttempt {
                rogue: env.name.clone(),
                kind: spec.kind,
                principal: principal.clone(),
                service: service.clone(),
                host,
                method: "GET".into(),
                target: target.clone(),
                control: *control,
                outcome,
            });
        }
        tokio::time::sleep(spec.interval.0).await;
    }
}

/// The rogue's TLS state and the identity it presents.
async fn credentials(
    install: &Install,
    spec: &RogueSpec,
    env: &HostEnv,
) -> Result<(MeshTls, Option<String>), MeshError> {
    match spec.kind {
        RogueKind::NoCertificate => Ok((MeshTls::for_host(env, install.trust_roots.clone()), None)),
        RogueKind::ForeignCa => {
            let mesh = &install.scenario.mesh;
            let material = CaMaterial::generate(
                &mesh.trust_domain,
                install.seed.child("foreign-ca"),
                install.ca_created,
            )?;
            let foreign_roots = material.trust_bundle();
            let mut authority = Authority::new(material, mesh.leaf_ttl.0, Default::default());
            let impersonated = install.identity(None, "gateway");
            let (key, pkcs8) = ed25519_key(env.seed.child("foreign-key"))?;
            let csr = certificate_request(&impersonated, &key)?;
            let chain = authority.sign(&csr, &impersonated, env.clock.wall())?;
            let tls = MeshTls::for_host(env, foreign_roots);
            tls.install(chain, pkcs8.into())?;
            tls.set_roots(install.trust_roots.clone());
            Ok((tls, Some(impersonated.to_string())))
        }
        RogueKind::DisallowedIdentity => {
            let identity = rogue_identity(install, spec.name.get_ref());
            let tls = MeshTls::for_host(env, install.trust_roots.clone());
            let config = install.certify(identity.clone());
            for attempt in 0u64.. {
                let issued = tokio::time::timeout(
                    ATTEMPT_TIMEOUT,
                    certify_once(env, &tls, &config, attempt),
                )
                .await;
                if matches!(issued, Ok(Ok(_))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok((tls, Some(identity.to_string())))
        }
    }
}

/// One raw HTTP/1.1 request over TLS to a replica's inbound port.
async fn attempt(
    env: &HostEnv,
    tls: &MeshTls,
    host: &str,
    server_identity: &SpiffeId,
    service: &str,
    target: &str,
    kind: RogueKind,
) -> RogueOutcome {
    let refused =
        |what: &str, e: &dyn std::fmt::Display| RogueOutcome::NoResponse(format!("{what}: {e}"));
    let io = match env.net.connect(host, ports::PROXY_INBOUND).await {
        Ok(io) => io,
        Err(e) => return refused("connect", &e),
    };
    let present = kind != RogueKind::NoCertificate;
    let mut stream = match tls
        .connect(io, server_identity, &[b"http/1.1"], present)
        .await
    {
        Ok(stream) => stream,
        Err(e) => return refused("handshake", &e),
    };
    let request = format!(
        "GET {target} HTTP/1.1\r\nhost: {service}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return refused("write", &e);
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 512];
    while !received.windows(2).any(|w| w == b"\r\n") && received.len() < STATUS_LINE_BYTES_MAX {
        match stream.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) => return refused("read", &e),
        }
    }
    let line = String::from_utf8_lossy(&received);
    match line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
    {
        Some(status) => RogueOutcome::Status(status),
        None => RogueOutcome::NoResponse("no status line".into()),
    }
}
