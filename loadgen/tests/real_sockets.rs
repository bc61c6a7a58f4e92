//! The load generator against real servers on loopback: real TCP, real
//! rustls handshakes with rcgen certificates, HTTP/1.1 and HTTP/2. These
//! assert what happened, not how fast (speed lives in benches/).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Behaviour, Pki, ServerSetup, get_root, plan, start_real, temp_dir};
use http::Version;
use loadgen::{Arrival, LoadReport, Protocol, Target, TlsFiles, TlsTarget};
use seam::real::RealNet;
use seam::{Net, Seed};

async fn load(
    addr: std::net::SocketAddr,
    tls: Option<TlsTarget>,
    protocol: Protocol,
) -> LoadReport {
    let target = Target {
        host: addr.ip().to_string(),
        port: addr.port(),
        authority: format!("localhost:{}", addr.port()),
        tls,
    };
    let mut plan = plan(Arrival::Poisson { rate: 100.0 }, 1, vec![get_root()]);
    plan.protocol = protocol;
    plan.connections_max = 4;
    plan.request_timeout = Duration::from_secs(5);
    let net: Arc<dyn Net> = Arc::new(RealNet::standalone());
    loadgen::run(net, target, plan, Seed::new(1), Arc::new(|_: &_| {}))
        .await
        .unwrap()
}

fn mtls_setup(pki: &Pki) -> ServerSetup {
    ServerSetup {
        http2: false,
        tls: Some(pki.server_config()),
        behaviour: Behaviour::default(),
    }
}

fn client_files(pki: &Pki, with_cert: bool) -> TlsFiles {
    TlsFiles {
        cacert: Some(pki.ca_pem.clone()),
        cert: with_cert.then(|| pki.client_cert.clone()),
        key: with_cert.then(|| pki.client_key.clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_a_client_certificate_works_over_http1_and_http2() {
    let pki = Pki::create(&temp_dir("mtls-ok"));
    let (addr, log) = start_real(mtls_setup(&pki)).await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let tls = client_files(&pki, true)
            .target("localhost", protocol)
            .unwrap();
        let report = load(addr, Some(tls), protocol).await;
        assert!(report.overall.total() > 50, "{protocol:?}");
        assert_eq!(
            report.overall.ok,
            report.overall.total(),
            "{protocol:?}: {:?}",
            report.errors
        );
    }
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.client_cert),
        "every request came over mTLS"
    );
    assert!(seen.iter().any(|s| s.version == Version::HTTP_11));
    assert!(seen.iter().any(|s| s.version == Version::HTTP_2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_the_server_refuses_every_request() {
    let pki = Pki::create(&temp_dir("mtls-refused"));
    let (addr, log) = start_real(mtls_setup(&pki)).await;
    let tls = client_files(&pki, false)
        .target("localhost", Protocol::Http1)
        .unwrap();
    let report = load(addr, Some(tls), Protocol::Http1).await;
    assert!(report.overall.total() > 50);
    assert_eq!(report.overall.ok, 0, "{:?}", report.statuses);
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing reached the handler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_name_the_certificate_does_not_cover_is_rejected() {
    let pki = Pki::create(&temp_dir("mtls-name"));
    let (addr, _log) = start_real(mtls_setup(&pki)).await;
    let tls = client_files(&pki, true)
        .target("elsewhere.example", Protocol::Http1)
        .unwrap();
    let report = load(addr, Some(tls), Protocol::Http1).await;
    assert_eq!(report.overall.ok, 0);
    assert_eq!(report.errors.get("tls"), Some(&report.overall.total()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http2_uses_prior_knowledge() {
    let (addr, log) = start_real(ServerSetup {
        http2: true,
        tls: None,
        behaviour: Behaviour::default(),
    })
    .await;
    let report = load(addr, None, Protocol::Http2).await;
    assert_eq!(
        report.overall.ok,
        report.overall.total(),
        "{:?}",
        report.errors
    );
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .all(|s| s.version == Version::HTTP_2)
    );
}

#[test]
fn tls_files_errors_name_the_file() {
    let pki = Pki::create(&temp_dir("tls-files"));
    let missing = TlsFiles {
        cacert: Some("/nonexistent/ca.pem".into()),
        ..TlsFiles::default()
    };
    let error = missing.target("localhost", Protocol::Http1).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    let not_a_cert = TlsFiles {
        cacert: Some(pki.client_key.clone()),
        ..TlsFiles::default()
    };
    let error = not_a_cert.target("localhost", Protocol::Http1).unwrap_err();
    assert!(error.to_string().contains("client.key"), "{error}");
    let half = TlsFiles {
        cert: Some(pki.client_cert.clone()),
        ..client_files(&pki, false)
    };
    let error = half.target("localhost", Protocol::Http1).unwrap_err();
    assert!(error.to_string().contains("--key"), "{error}");
    let mismatched = TlsFiles {
        key: Some(pki.server_key.clone()),
        ..client_files(&pki, true)
    };
    assert!(mismatched.target("localhost", Protocol::Http1).is_err());
}
