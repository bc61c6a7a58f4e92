//! Which hosts a scenario creates and what software each runs. Both the
//! simulated and the real composition roots walk this one description.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh::ca::{Authority, CaConfig, CaMaterial};
use mesh::client::Upstream;
use mesh::client::certify::CertifyConfig;
use mesh::control::ControlConfig;
use mesh::proxy::{Limits, ProxyConfig};
use mesh::telemetry::Telemetry;
use mesh::{MeshError, SpiffeId, ports};
use rustls_pki_types::CertificateDer;
use seam::{HostEnv, Seed, Shutdown, hosts};

use checks::rogue::RogueLog;
use spec::mesh::{RogueKind, RogueSpec};
use spec::{Scenario, ServiceSpec};

/// A host's software, as a `Send` future (real mode spawns it on tokio).
pub type HostFuture = Pin<Box<dyn Future<Output = Result<(), MeshError>> + Send>>;

/// The role of a host.
#[derive(Clone, Debug)]
pub enum Role {
    /// The certificate authority.
    Ca,
    /// The control plane.
    Control,
    /// One replica of a service: sidecar plus app.
    Workload(Box<ServiceSpec>),
    /// Applies scheduled config changes through the control plane.
    Operator,
    /// A host attacking a service from outside its trust.
    Rogue(Box<RogueSpec>),
}

/// What an installer provisions before anything runs: the trust anchors,
/// the CA's key material (derived from the seed), and bootstrap tokens.
pub struct Install {
    /// The scenario.
    pub scenario: Scenario,
    /// The run seed.
    pub seed: Seed,
    /// When the CA material was made (sim epoch, or now in real mode).
    pub ca_created: SystemTime,
    /// Trust bundle every workload starts with.
    pub trust_roots: Vec<CertificateDer<'static>>,
    /// Configs the operator host applies (fed by the simulator's hook).
    pub operator: crate::operator::OperatorQueue,
    /// Where every proxy of the run records metrics and evidence.
    pub telemetry: Telemetry,
    /// What the rogue hosts tried and got.
    pub rogues: RogueLog,
}

const SYSTEM_NAMESPACE: &str = "system";

/// An endpoint silent for this long is removed (3 missed heartbeats).
const ENDPOINT_TTL: Duration = Duration::from_secs(15);

impl Install {
    /// Provisions a run.
    pub fn new(
        scenario: Scenario,
        seed: Seed,
        ca_created: SystemTime,
    ) -> Result<Arc<Install>, MeshError> {
        let material = CaMaterial::generate_with(
            scenario.mesh.key_algorithm,
            &scenario.mesh.trust_domain,
            seed.child("ca"),
            ca_created,
        )?;
        let trust_roots = material.trust_bundle();
        Ok(Arc::new(Install {
            scenario,
            seed,
            ca_created,
            trust_roots,
            operator: Default::default(),
            telemetry: Telemetry::new(),
            rogues: RogueLog::default(),
        }))
    }

    /// Hosts and their roles, in a stable order (the load generator is
    /// separate: it is the client that ends the run).
    pub fn hosts(&self) -> Vec<(String, Role)> {
        let mut hosts = vec![
            (hosts::CA.to_owned(), Role::Ca),
            (hosts::CONTROL.to_owned(), Role::Control),
        ];
        for service in &self.scenario.services {
            for replica in 0..service.replicas {
                hosts.push((
                    format!("{}-{replica}", service.name.get_ref()),
                    Role::Workload(Box::new(service.clone())),
                ));
            }
        }
        if crate::operator::needed(&self.scenario) {
            hosts.push((hosts::OPERATOR.to_owned(), Role::Operator));
        }
        for rogue in &self.scenario.mesh.rogues {
            hosts.push((
                rogue.name.get_ref().clone(),
                Role::Rogue(Box::new(rogue.clone())),
            ));
        }
        hosts
    }

    /// The identity of a service account.
    pub fn identity(&self, namespace: Option<&str>, service: &str) -> SpiffeId {
        let mesh = &self.scenario.mesh;
        SpiffeId::new(
            &mesh.trust_domain,
            namespace.unwrap_or(&mesh.namespace),
            service,
        )
        .expect("service names are validated DNS labels")
    }

    /// The bootstrap token that entitles `identity` (derived from the seed,
    /// like a service-account token the platform would mount).
    pub fn token(&self, identity: &SpiffeId) -> String {
        let bytes = self
            .seed
            .child("bootstrap-token")
            .child(&identity.to_string())
            .bytes32();
        bytes[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every identity the CA holds a bootstrap token for.
    pub fn every_identity(&self) -> Vec<SpiffeId> {
        let mut ids = vec![
            self.identity(Some(SYSTEM_NAMESPACE), hosts::CONTROL),
            self.operator_identity(),
            self.identity(None, hosts::LOADGEN),
        ];
        ids.extend(
            self.scenario
                .services
                .iter()
                .map(|s| self.identity(None, s.name.get_ref())),
        );
        // A rogue with a mesh identity got it the way any workload would.
        ids.extend(
            self.scenario
                .mesh
                .rogues
                .iter()
                .filter(|r| r.kind == RogueKind::DisallowedIdentity)
                .map(|r| self.identity(None, r.name.get_ref())),
        );
        ids
    }

    /// The identity allowed to change mesh config (`meshsim`'s operator host).
    pub fn operator_identity(&self) -> SpiffeId {
        self.identity(Some(SYSTEM_NAMESPACE), hosts::OPERATOR)
    }

    /// Where the control plane is, for operators.
    pub fn control_upstream(&self) -> Upstream {
        Upstream {
            host: hosts::CONTROL.into(),
            port: ports::CONTROL,
            identity: self.identity(Some(SYSTEM_NAMESPACE), hosts::CONTROL),
        }
    }

    /// Where the CA is, and the identity it proves.
    pub fn ca_upstream(&self) -> Upstream {
        Upstream {
            host: hosts::CA.into(),
            port: ports::CA,
            identity: self.identity(Some(SYSTEM_NAMESPACE), hosts::CA),
        }
    }

    /// How a workload with `identity` obtains its certificate.
    pub fn certify(&self, identity: SpiffeId) -> CertifyConfig {
        CertifyConfig {
            token: self.token(&identity),
            identity,
            ca: self.ca_upstream(),
            renew_fraction: self.scenario.mesh.renew_fraction,
            key_algorithm: self.scenario.mesh.key_algorithm,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        }
    }

    /// The mesh configuration the scenario declares.
    pub fn mesh_config(&self) -> mesh::config::MeshConfig {
        self.scenario
            .mesh
            .to_config(self.scenario.workload.warmup.0)
    }

    /// The sidecar config of a workload of `service` (`inbound` false for
    /// the load generator, which only calls out).
    pub fn proxy_config(&self, service: &str, inbound: bool) -> ProxyConfig {
        ProxyConfig {
            service: service.to_owned(),
            certify: self.certify(self.identity(None, service)),
            control: self.control_upstream(),
            trust_roots: self.trust_roots.clone(),
            inbound,
            request_timeout: self.scenario.mesh.request_timeout.0,
            telemetry: self.telemetry.clone(),
            limits: Limits::default(),
            admin: true,
        }
    }

    /// The sidecar half of a workload host (`meshsim proxy` runs only this).
    pub fn sidecar(&self, service: &ServiceSpec, env: HostEnv) -> mesh::proxy::ProxyHandle {
        mesh::proxy::start(self.proxy_config(service.name.get_ref(), true), env)
    }

    /// The app half of a workload host (`meshsim app` runs only this).
    pub fn app(self: &Arc<Self>, service: &ServiceSpec, env: HostEnv) -> HostFuture {
        let install = self.clone();
        let service = service.clone();
        Box::pin(async move { apps::rec::run_app(env, &service, &install.scenario.app).await })
    }

    /// The role of the host called `name`, if the scenario has one.
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.hosts()
            .into_iter()
            .find(|(host, _)| host == name)
            .map(|(_, role)| role)
    }

    /// The software of one host. Called again after a crash and restart.
    pub fn software(self: &Arc<Self>, role: &Role, env: HostEnv) -> HostFuture {
        let install = self.clone();
        match role.clone() {
            Role::Ca => Box::pin(async move {
                let material = CaMaterial::generate_with(
                    install.scenario.mesh.key_algorithm,
                    &install.scenario.mesh.trust_domain,
                    install.seed.child("ca"),
                    install.ca_created,
                )?;
                let tokens: BTreeMap<String, SpiffeId> = install
                    .every_identity()
                    .into_iter()
                    .map(|id| (install.token(&id), id))
                    .collect();
                let authority = Authority::new(material, install.scenario.mesh.leaf_ttl.0, tokens);
                mesh::ca::run(
                    CaConfig {
                        identity: install.ca_upstream().identity,
                        authority,
                        operators: vec![install.operator_identity()],
                    },
                    env,
                    Shutdown::never(),
                )
                .await
            }),
            Role::Control => Box::pin(async move {
                let config = ControlConfig {
                    certify: install.certify(install.control_upstream().identity),
                    trust_roots: install.trust_roots.clone(),
                    initial: install.mesh_config(),
                    operators: vec![install.operator_identity()],
                    endpoint_ttl: ENDPOINT_TTL,
                };
                mesh::control::run(config, env, Shutdown::never()).await
            }),
            Role::Operator => Box::pin(crate::operator::run(install, env)),
            Role::Workload(service) => Box::pin(async move {
                let _proxy = install.sidecar(&service, env.clone());
                install.app(&service, env).await
            }),
            Role::Rogue(spec) => Box::pin(crate::rogue::run(install, *spec, env)),
        }
    }
}
