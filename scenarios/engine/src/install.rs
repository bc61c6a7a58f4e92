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
use mesh::{KeyMode, KeySource, MeshError, SpiffeId, ports};
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
/// the CA's key material and bootstrap tokens (derived from the seed in the
/// simulation, drawn from the OS in a real mesh).
pub struct Install {
    /// The scenario.
    pub scenario: Scenario,
    /// The run seed.
    pub seed: Seed,
    /// When the CA material was made (sim epoch, or now in real mode).
    pub ca_created: SystemTime,
    /// Trust bundle every workload starts with.
    pub trust_roots: Vec<CertificateDer<'static>>,
    /// Where keys and tokens come from.
    pub keys: KeyMode,
    /// The bootstrap token of every identity.
    tokens: BTreeMap<SpiffeId, String>,
    /// With OS keys, the CA's state file as provisioned (its private keys).
    /// `None` with derived keys (the CA derives them again) and in a
    /// deployed process, where only the CA's own disk holds them.
    ca_state: Option<Vec<u8>>,
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

/// How long a real mesh's bootstrap tokens work after the install (a pod's
/// projected service-account token is also short-lived). Renewals present
/// the current certificate instead, so only a first start needs one.
pub const BOOTSTRAP_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

impl Install {
    /// Provisions a simulated run: every key and token from the seed.
    pub fn new(
        scenario: Scenario,
        seed: Seed,
        ca_created: SystemTime,
    ) -> Result<Arc<Install>, MeshError> {
        Self::with_keys(scenario, seed, ca_created, KeyMode::Derived)
    }

    /// Provisions a run whose CA keys and tokens come from `keys`.
    pub fn with_keys(
        scenario: Scenario,
        seed: Seed,
        ca_created: SystemTime,
        keys: KeyMode,
    ) -> Result<Arc<Install>, MeshError> {
        let source = keys.source(seed);
        let material = CaMaterial::generate_with(
            scenario.mesh.key_algorithm,
            &scenario.mesh.trust_domain,
            source.child("ca"),
            ca_created,
        )?;
        let trust_roots = material.trust_bundle();
        let ca_state = match keys {
            KeyMode::Derived => None,
            KeyMode::Os => Some(
                Authority::new(material, scenario.mesh.leaf_ttl.0, BTreeMap::new())
                    .state_bytes()?,
            ),
        };
        let mut install = Install {
            scenario,
            seed,
            ca_created,
            trust_roots,
            keys,
            tokens: BTreeMap::new(),
            ca_state,
            operator: Default::default(),
            telemetry: Telemetry::new(),
            rogues: RogueLog::default(),
        };
        for id in install.every_identity() {
            let token = source
                .child("bootstrap-token")
                .child(&id.to_string())
                .token()?;
            install.tokens.insert(id, token);
        }
        Ok(Arc::new(install))
    }

    /// The install as one process of a deployed real mesh sees it: the
    /// trust bundle and tokens the installer wrote, no CA keys (the CA
    /// process reads them from its own disk).
    pub fn deployed(
        scenario: Scenario,
        seed: Seed,
        ca_created: SystemTime,
        keys: KeyMode,
        trust_roots: Vec<CertificateDer<'static>>,
        tokens: BTreeMap<SpiffeId, String>,
    ) -> Arc<Install> {
        Arc::new(Install {
            scenario,
            seed,
            ca_created,
            trust_roots,
            keys,
            tokens,
            ca_state: None,
            operator: Default::default(),
            telemetry: Telemetry::new(),
            rogues: RogueLog::default(),
        })
    }

    /// The CA's state file as provisioned, for the installer to put on the
    /// CA's disk (`None` with derived keys).
    pub fn ca_state(&self) -> Option<&[u8]> {
        self.ca_state.as_deref()
    }

    /// Every bootstrap token, by identity.
    pub fn tokens(&self) -> &BTreeMap<SpiffeId, String> {
        &self.tokens
    }

    /// The CA's signing state: derived again from the seed, or read from
    /// the provisioned state (a deployed CA: from its own `disk`).
    pub fn ca_authority(&self, disk: &dyn seam::Disk) -> Result<Authority, MeshError> {
        let ttl = self.scenario.mesh.leaf_ttl.0;
        let tokens: BTreeMap<String, SpiffeId> = self
            .tokens
            .iter()
            .map(|(id, token)| (token.clone(), id.clone()))
            .collect();
        let mut authority = match (self.keys, &self.ca_state) {
            (KeyMode::Derived, _) => {
                let material = CaMaterial::generate_with(
                    self.scenario.mesh.key_algorithm,
                    &self.scenario.mesh.trust_domain,
                    KeySource::Derived(self.seed.child("ca")),
                    self.ca_created,
                )?;
                return Ok(Authority::new(material, ttl, tokens));
            }
            (KeyMode::Os, Some(state)) => Authority::from_state(state, ttl, tokens)?,
            (KeyMode::Os, None) => {
                let state = disk.read(mesh::ca::STATE_FILE)?.ok_or_else(|| {
                    MeshError::Cert(format!(
                        "no {} on the CA's disk: the installer did not provision it",
                        mesh::ca::STATE_FILE
                    ))
                })?;
                Authority::from_state(&state, ttl, tokens)?
            }
        };
        authority.expire_tokens_at(self.ca_created + BOOTSTRAP_TOKEN_TTL);
        Ok(authority)
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

    /// The bootstrap token that entitles `identity` (like a service-account
    /// token the platform would mount). An identity without one gets an
    /// empty token, which the CA refuses.
    pub fn token(&self, identity: &SpiffeId) -> String {
        self.tokens.get(identity).cloned().unwrap_or_default()
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

    /// Which identity serves each service (the control plane's
    /// registration authority).
    pub fn service_accounts(&self) -> BTreeMap<String, SpiffeId> {
        self.scenario
            .services
            .iter()
            .map(|s| {
                let name = s.name.get_ref().clone();
                let id = self.identity(None, &name);
                (name, id)
            })
            .collect()
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
            keys: self.keys,
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
                let authority = install.ca_authority(env.disk.as_ref())?;
                mesh::ca::run(
                    CaConfig {
                        identity: install.ca_upstream().identity,
                        authority,
                        operators: vec![install.operator_identity()],
                        keys: install.keys,
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
                    service_accounts: install.service_accounts(),
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
