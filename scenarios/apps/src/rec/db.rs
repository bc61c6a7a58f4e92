//! A service's database host: one event-sourced [`Store`] served over HTTP.
//! Only the owning service's tier may call it (checked on the mesh identity
//! the inbound sidecar asserts).

use std::sync::Mutex;

use http::{Method, Response, StatusCode};
use mesh::http::{Body, json, text};
use seam::BoxFuture;

use super::app::{AppRequest, Handler};
use super::call::COMMAND_PATH;
use super::store::{StateMachine, Store};
use super::tier::peer_service;

/// The database of `owner`.
pub struct Db<S: StateMachine> {
    store: Mutex<Store<S>>,
    owner: String,
}

impl<S: StateMachine> Db<S> {
    /// Serves `store` to `owner` only.
    pub fn new(store: Store<S>, owner: &str) -> Self {
        Db {
            store: Mutex::new(store),
            owner: owner.to_owned(),
        }
    }
}

impl<S: StateMachine> Handler for Db<S>
where
    S::Command: Sync,
{
    fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>> {
        let response = (|| {
            if request.method != Method::POST || request.path != COMMAND_PATH {
                return text(StatusCode::NOT_FOUND, "not found");
            }
            if peer_service(request.peer.as_deref()) != Some(self.owner.as_str()) {
                return text(
                    StatusCode::FORBIDDEN,
                    "only the owning service may call its database",
                );
            }
            let command: S::Command = match serde_json::from_slice(&request.body) {
                Ok(command) => command,
                Err(e) => return text(StatusCode::BAD_REQUEST, &format!("bad command: {e}")),
            };
            match self.store.lock().expect("store poisoned").execute(command) {
                Ok(reply) => json(
                    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    &reply.body,
                ),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        })();
        Box::pin(async move { response })
    }
}
