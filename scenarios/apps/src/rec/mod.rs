//! The REC (Renewable Energy Certificate) trading reference application.
//!
//! Services, each behind its own sidecar, each with its own database host:
//!
//! | service | tier (3 replicas, stateless) | database (event-sourced) |
//! |---|---|---|
//! | `gateway` | client JSON API, bearer auth ([`gateway`]) | — |
//! | `registry` | [`tier::Tier`] | `registry-db`: serial ranges, ownership, retirement ([`registry`]) |
//! | `market` | [`tier::Tier`] | `market-db`: order books, matching, trades ([`market`]) |
//! | `settlement` | saga workers ([`settlement::Worker`]) + [`tier::Tier`] | `settlement-db`: outbox cursor, saga steps |
//! | `accounts` | [`tier::Tier`] | `accounts-db`: tokens, cash ([`accounts`]) |
//!
//! Services call each other only through their sidecar's outbound listener
//! ([`call`]), and authorize callers by the mesh identity the inbound sidecar
//! asserts. Databases persist through [`seam::Disk`] ([`store`]), so a crash
//! and restart recovers every acknowledged write. The starting state is
//! [`genesis`]; what clients send and how the run's final state is read back
//! is [`workload`].

pub mod accounts;
pub mod app;
pub mod call;
pub mod db;
pub mod gateway;
pub mod genesis;
pub mod market;
pub mod registry;
pub mod settlement;
pub mod simple;
pub mod store;
pub mod tier;
pub mod workload;

use std::sync::Arc;

use mesh::{MeshError, ports};
use seam::HostEnv;

use call::Caller;
use genesis::Genesis;
use spec::{AppKind, AppSpec, ServiceSpec};
use store::{StateMachine, Store};

/// Writes between two snapshots of a database.
const SNAPSHOT_EVERY: u64 = 5_000;

/// Runs the app a service spec names until the host stops.
pub async fn run_app(env: HostEnv, service: &ServiceSpec, app: &AppSpec) -> Result<(), MeshError> {
    let model = app::ServiceTimeModel::from_spec(service);
    let caller = || Caller::new(env.clone(), app.call_timeout.0, app.call_tries);
    // A tier forwards once: its callers own the retries.
    let forwarder = || Caller::new(env.clone(), app.call_timeout.0, 1);
    let genesis = || Genesis::new(app);
    let handler: Arc<dyn app::Handler> = match service.app {
        AppKind::Gateway => Arc::new(gateway::Gateway::new(caller())),
        AppKind::Edge => Arc::new(simple::Edge::new(env.clone())),
        AppKind::Backend => Arc::new(simple::Backend::default()),
        AppKind::Synthetic => Arc::new(crate::synthetic::Synthetic::new(env.clone(), service)),
        AppKind::Registry => Arc::new(tier::Tier::new("registry-db", forwarder(), registry_policy)),
        AppKind::Market => Arc::new(tier::Tier::new("market-db", forwarder(), market_policy)),
        AppKind::Accounts => Arc::new(tier::Tier::new("accounts-db", forwarder(), accounts_policy)),
        AppKind::Settlement => {
            seam::task::spawn(settlement::Worker::new(env.clone(), app).run());
            Arc::new(tier::Tier::new(
                "settlement-db",
                forwarder(),
                settlement_policy,
            ))
        }
        AppKind::RegistryDb => database(&env, "registry", || {
            registry::RegistryState::new(&genesis(), app.idempotency)
        })?,
        AppKind::MarketDb => {
            database(&env, "market", || market::MarketState::new(app.idempotency))?
        }
        AppKind::SettlementDb => {
            database(&env, "settlement", settlement::SettlementState::default)?
        }
        AppKind::AccountsDb => database(&env, "accounts", || {
            accounts::AccountsState::new(&genesis(), app.idempotency)
        })?,
    };
    app::serve(env, ports::APP, handler, model).await
}

/// Opens (recovers) the store of `owner`'s database.
fn database<S: StateMachine>(
    env: &HostEnv,
    owner: &str,
    fresh: impl FnOnce() -> S,
) -> Result<Arc<dyn app::Handler>, MeshError>
where
    S::Command: Sync,
{
    let store = Store::open(env.disk.clone(), owner, SNAPSHOT_EVERY, fresh)
        .map_err(|e| MeshError::Io(std::io::Error::other(e.to_string())))?;
    env.record(seam::event::REC_STORE_OPENED, owner.to_owned());
    Ok(Arc::new(db::Db::new(store, owner)))
}

/// Reads are open to every workload; writes to the one service that owns
/// that kind of change.
fn registry_policy(command: &registry::RegistryCommand, peer: &str) -> bool {
    use registry::RegistryCommand as C;
    match command {
        C::Transfer { .. } => peer == "settlement",
        C::Retire { .. } => peer == "gateway",
        C::Balance { .. } | C::Holdings { .. } | C::Journal { .. } => true,
    }
}

fn market_policy(command: &market::MarketCommand, peer: &str) -> bool {
    use market::MarketCommand as C;
    match command {
        C::Place { .. } | C::CancelOldest { .. } => peer == "gateway",
        C::Quote { .. } | C::Trades { .. } | C::Orders { .. } => true,
    }
}

fn accounts_policy(command: &accounts::AccountsCommand, peer: &str) -> bool {
    use accounts::AccountsCommand as C;
    match command {
        C::Authenticate { .. } => peer == "gateway",
        C::Pay { .. } => peer == "settlement",
        C::Balances | C::Journal { .. } => true,
    }
}

fn settlement_policy(command: &settlement::SettlementCommand, _peer: &str) -> bool {
    use settlement::SettlementCommand as C;
    matches!(command, C::Status | C::Sagas { .. })
}
