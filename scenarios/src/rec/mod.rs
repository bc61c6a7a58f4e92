//! The REC (Renewable Energy Certificate) trading reference application.
//!
//! Each service is a plain HTTP app on `ports::APP` behind its own sidecar.
//! It calls other services only through its sidecar's outbound listener, so
//! every hop crosses the mesh with mTLS.

pub mod app;
pub mod gateway;
pub mod registry;

use std::sync::Arc;

use mesh::ports;
use seam::HostEnv;

use crate::spec::{AppKind, ServiceSpec};

/// Runs the app a service spec names until the host stops.
pub async fn run_app(env: HostEnv, service: &ServiceSpec) -> Result<(), mesh::MeshError> {
    let model = app::ServiceTimeModel::from_spec(service);
    let handler: Arc<dyn app::Handler> = match service.app {
        AppKind::Gateway => Arc::new(gateway::Gateway::new(env.clone())),
        AppKind::Registry => Arc::new(registry::Registry::default()),
    };
    app::serve(env, ports::APP, handler, model).await
}
