//! Test fixtures: a CA and workload certificates, issued through the same
//! CSR path the proxies use.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh::SpiffeId;
use mesh::ca::{Authority, CaMaterial};
use mesh::identity::{certificate_request, ed25519_key};
use mesh::tls::MeshTls;
use seam::{Clock, Seed};

/// A trust domain with one authority.
pub struct TestCa {
    pub authority: Authority,
    pub roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

pub fn id(service: &str) -> SpiffeId {
    SpiffeId::new("test.meshsim", "rec", service).unwrap()
}

impl TestCa {
    pub fn new(seed: u64, now: SystemTime) -> Self {
        let material = CaMaterial::generate("test.meshsim", Seed::new(seed), now).unwrap();
        let roots = material.trust_bundle();
        TestCa {
            authority: Authority::new(material, Duration::from_secs(3600), Default::default()),
            roots,
        }
    }

    /// TLS state for `service` holding a freshly issued leaf.
    pub fn workload(&mut self, service: &str, clock: Arc<dyn Clock>, seed: u64) -> Arc<MeshTls> {
        let tls = MeshTls::new(clock.clone(), self.roots.clone());
        let (key, pkcs8) = ed25519_key(Seed::new(seed)).unwrap();
        let csr = certificate_request(&id(service), &key).unwrap();
        let chain = self
            .authority
            .sign(&csr, &id(service), clock.wall())
            .unwrap();
        tls.install(chain, pkcs8.into()).unwrap();
        Arc::new(tls)
    }
}
