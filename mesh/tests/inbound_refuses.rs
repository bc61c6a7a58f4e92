//! The inbound listener on a real socket refuses every caller that cannot
//! prove a mesh identity: no certificate, a foreign CA, or plaintext. None
//! of them reaches the app (which would answer 200).

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestCa, id};
use http::{Request, Response};
use mesh::http::{Body, handshake, serve_connection};
use mesh::{ports, proxy};
use rustls_pki_types::ServerName;
use seam::real::{AddressBook, SystemClock};
use seam::{HostEnv, Seed, SkewHandle, Trace};

fn env(book: &AddressBook, clock: &SystemClock, name: &str) -> HostEnv {
    HostEnv {
        name: name.into(),
        net: Arc::new(book.net_for(name)),
        clock: Arc::new(clock.sibling(SkewHandle::default())),
        disk: Arc::new(seam::MemDisk::default()),
        seed: Seed::new(9).child(name),
        trace: Trace::keeping_events(),
        slow: seam::SlowHandle::default(),
    }
}

/// An app that answers 200 to anything, so a 200 means "got through".
async fn app(env: HostEnv) {
    let mut listener = env.net.bind(ports::APP).await.unwrap();
    loop {
        let (io, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, Infallible>(Response::new(Body::from(Bytes::from_static(b"app"))))
        });
        seam::task::spawn(serve_connection(io, service));
    }
}

/// Sends one request over `io`; `None` if no HTTP response came back.
async fn try_request(io: seam::BoxIo) -> Option<u16> {
    let mut sender = handshake(io).await.ok()?;
    let request = Request::get("/")
        .header("host", "registry")
        .body(Body::default())
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .ok()?
        .ok()?;
    Some(response.status().as_u16())
}

fn rogue_tls(roots: &[rustls_pki_types::CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[test]
fn inbound_refuses_callers_without_a_mesh_identity() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let book = AddressBook::ephemeral();
        let clock = SystemClock::new(SkewHandle::default());
        let server = env(&book, &clock, "registry-0");
        let mut ca = TestCa::new(3, server.clock.wall());
        let tls = ca.workload("registry", server.clock.clone(), 1);
        seam::task::spawn(app(server.clone()));
        seam::task::spawn(proxy::inbound::serve(server.clone(), tls));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rogue = env(&book, &clock, "rogue");
        let server_name = ServerName::try_from(id("registry").dns_name()).unwrap();

        // 1. Plaintext HTTP to the mTLS port.
        let io = rogue
            .net
            .connect("registry-0", ports::PROXY_INBOUND)
            .await
            .unwrap();
        assert_eq!(
            try_request(io).await,
            None,
            "plaintext must not get an HTTP response"
        );

        // 2. TLS that trusts the mesh root but presents no certificate.
        let io = rogue
            .net
            .connect("registry-0", ports::PROXY_INBOUND)
            .await
            .unwrap();
        let stream = rogue_tls(&ca.roots)
            .connect(server_name.clone(), io)
            .await
            .unwrap();
        assert_eq!(
            try_request(Box::new(stream)).await,
            None,
            "no client certificate must be refused"
        );

        // 3. A certificate from a foreign CA for the same identity.
        let mut foreign = TestCa::new(4, server.clock.wall());
        let foreign_tls = foreign.workload("gateway", rogue.clock.clone(), 2);
        foreign_tls.set_roots(ca.roots.clone());
        let io = rogue
            .net
            .connect("registry-0", ports::PROXY_INBOUND)
            .await
            .unwrap();
        let refused = match foreign_tls
            .connect(io, &id("registry"), &[b"http/1.1"], true)
            .await
        {
            Ok(stream) => try_request(Box::new(stream)).await.is_none(),
            Err(_) => true,
        };
        assert!(refused, "a foreign CA's certificate must be refused");

        // Control: a genuine mesh workload gets through.
        let good = ca.workload("gateway", rogue.clock.clone(), 5);
        let io = rogue
            .net
            .connect("registry-0", ports::PROXY_INBOUND)
            .await
            .unwrap();
        let stream = good
            .connect(io, &id("registry"), &[b"http/1.1"], true)
            .await
            .unwrap();
        assert_eq!(try_request(Box::new(stream)).await, Some(200));

        let rejects = server
            .trace
            .events()
            .iter()
            .filter(|e| e.kind == seam::event::INBOUND_TLS_REJECT)
            .count();
        assert!(rejects >= 3, "each refusal is traced, saw {rejects}");
    });
}
