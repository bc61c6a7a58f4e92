//! Per-request sidecar overhead, in-process over the seam's real network.
//!
//! Two hosts on loopback (`127.0.0.x` each, `seam::real`): `client` runs an
//! outbound sidecar; `registry-0` runs an inbound sidecar in front of a
//! trivial app. A kept-alive HTTP/1.1 client sends one GET at a time:
//! * `direct`: straight to the app (the baseline: one loopback HTTP hop);
//! * `through_mesh`: to the client's sidecar, which routes, balances and
//!   sends it over pooled HTTP/2 + mTLS to the server's sidecar, which
//!   normalizes, authorizes, rate-limits and forwards to the app.
//!
//! The difference is what a pair of sidecars adds to one request. Run with
//! `cargo bench -p benches --bench sidecar`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use mesh::SpiffeId;
use mesh::ca::{Authority, CaMaterial};
use mesh::config::{AuthorizationPolicy, AuthzRule, MeshConfig, ServiceConfig};
use mesh::control::{Discovery, Endpoint, Snapshot};
use mesh::http::{Body, buffer_response, handshake, serve_connection};
use mesh::identity::{certificate_request, ed25519_key};
use mesh::ports;
use mesh::proxy::limits::Limits;
use mesh::proxy::{inbound, outbound};
use mesh::telemetry::Telemetry;
use mesh::tls::MeshTls;
use seam::real::{AddressBook, SystemClock};
use seam::{Clock, HostEnv, LOCALHOST, Seed, SkewHandle, Trace};

fn identity(service: &str) -> SpiffeId {
    SpiffeId::new("bench.meshsim", "rec", service).expect("valid id")
}

fn workload(
    authority: &mut Authority,
    roots: &[rustls_pki_types::CertificateDer<'static>],
    service: &str,
    clock: Arc<dyn Clock>,
    seed: u64,
) -> Arc<MeshTls> {
    let tls = MeshTls::new(clock.clone(), roots.to_vec());
    let (key, pkcs8) = ed25519_key(Seed::new(seed)).expect("key");
    let csr = certificate_request(&identity(service), &key).expect("csr");
    let chain = authority
        .sign(&csr, &identity(service), clock.wall())
        .expect("signed");
    tls.install(chain, pkcs8.into()).expect("installed");
    Arc::new(tls)
}

async fn app(env: HostEnv) {
    let mut listener = env.net.bind(ports::APP).await.expect("bind app");
    loop {
        let Ok((io, _)) = listener.accept().await else {
            return;
        };
        let service = hyper::service::service_fn(|_request| async {
            Ok::<_, Infallible>(Response::new(Body::from(Bytes::from_static(
                b"{\"available\":1}",
            ))))
        });
        seam::task::spawn(serve_connection(io, service));
    }
}

/// A kept-alive connection and the request to repeat on it. Servers close
/// connections idle longer than their header-read timeout, so a closed one
/// is reopened (outside the steady state this measures).
struct Client {
    env: HostEnv,
    host: &'static str,
    port: u16,
    sender: Option<hyper::client::conn::http1::SendRequest<Body>>,
}

impl Client {
    async fn get(&mut self) {
        let mut sender = match self.sender.take() {
            Some(sender) if sender.is_ready() => sender,
            _ => {
                let io = self
                    .env
                    .net
                    .connect(self.host, self.port)
                    .await
                    .expect("connect");
                handshake(io).await.expect("h1")
            }
        };
        let request = Request::get("/recs/available")
            .header("host", "registry")
            .body(Body::default())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let response = buffer_response(response, 1 << 16).await.expect("body");
        assert_eq!(response.status(), StatusCode::OK);
        self.sender = Some(sender);
    }
}

fn bench_sidecar(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let book = AddressBook::ephemeral();
    let clock = SystemClock::new(SkewHandle::default());
    let env = |name: &str| HostEnv {
        name: name.into(),
        net: Arc::new(book.net_for(name)),
        clock: Arc::new(clock.sibling(SkewHandle::default())),
        disk: Arc::new(seam::MemDisk::default()),
        slow: seam::SlowHandle::default(),
        seed: Seed::new(1).child(name),
        trace: Trace::hash_only(),
    };
    let (server, client) = (env("registry-0"), env("client"));
    let material =
        CaMaterial::generate("bench.meshsim", Seed::new(3), server.clock.wall()).expect("ca");
    let roots = material.trust_bundle();
    let mut authority = Authority::new(material, Duration::from_secs(3600), BTreeMap::new());
    let server_tls = workload(&mut authority, &roots, "registry", server.clock.clone(), 1);
    let client_tls = workload(&mut authority, &roots, "client", client.clock.clone(), 2);
    // A realistic policy: the caller must be authorized.
    let config = MeshConfig {
        services: BTreeMap::from([(
            "registry".to_owned(),
            ServiceConfig {
                authorization: Some(AuthorizationPolicy {
                    allow: vec![AuthzRule {
                        principals: vec![identity("client").to_string()],
                        ..AuthzRule::default()
                    }],
                    deny: vec![],
                }),
                ..ServiceConfig::default()
            },
        )]),
        ..MeshConfig::default()
    };
    let discovery = Discovery::fixed(Snapshot {
        version: 1,
        services: BTreeMap::from([(
            "registry".to_owned(),
            vec![Endpoint {
                host: "registry-0".into(),
                port: ports::PROXY_INBOUND,
                identity: identity("registry"),
            }],
        )]),
        config,
    });
    let telemetry = Telemetry::new();
    let (mut direct, mut meshed) = runtime.block_on(async {
        seam::task::spawn(app(server.clone()));
        let inbound_config = inbound::InboundConfig {
            service: "registry".into(),
            discovery: Some(discovery.clone()),
            telemetry: telemetry.proxy("registry-0", server.clock.clone()),
            limits: Limits::default(),
        };
        seam::task::spawn(inbound::serve_with(
            server.clone(),
            server_tls,
            inbound_config,
        ));
        let outbound_config = outbound::OutboundConfig {
            request_timeout: Duration::from_secs(5),
            telemetry: telemetry.proxy("client", client.clock.clone()),
            limits: Limits::default(),
        };
        seam::task::spawn(outbound::serve_with(
            client.clone(),
            client_tls,
            discovery,
            outbound_config,
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut direct = Client {
            env: client.clone(),
            host: "registry-0",
            port: ports::APP,
            sender: None,
        };
        let mut meshed = Client {
            env: client.clone(),
            host: LOCALHOST,
            port: ports::PROXY_OUTBOUND,
            sender: None,
        };
        // Warm the pools: the mesh hop's mTLS handshake is not per request.
        direct.get().await;
        meshed.get().await;
        (direct, meshed)
    });
    let mut group = c.benchmark_group("sidecar");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("direct", |b| b.iter(|| runtime.block_on(direct.get())));
    group.bench_function("through_mesh", |b| {
        b.iter(|| runtime.block_on(meshed.get()))
    });
    group.finish();
}

criterion_group!(benches, bench_sidecar);
criterion_main!(benches);
