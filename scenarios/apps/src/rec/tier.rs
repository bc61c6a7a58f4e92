//! The stateless tier of a service: it checks who may send which command
//! (by the caller's mesh identity) and forwards it to the service's own
//! database. Its replicas share nothing, so any of them can serve any call
//! and a crash loses only requests in flight.

use std::marker::PhantomData;

use http::{Method, Response, StatusCode};
use mesh::http::{Body, text};
use seam::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::app::{AppRequest, Handler};
use super::call::{COMMAND_PATH, Caller, Outcome};

/// Who may send a command: `(command, caller's service name) -> allowed`.
pub type Policy<C> = fn(&C, &str) -> bool;

/// The service a mesh identity (`spiffe://…/sa/<service>`) belongs to.
pub fn peer_service(peer: Option<&str>) -> Option<&str> {
    peer?.rsplit_once("/sa/").map(|(_, service)| service)
}

/// A forwarding tier for commands of type `C`.
pub struct Tier<C> {
    database: String,
    caller: Caller,
    policy: Policy<C>,
    _commands: PhantomData<fn() -> C>,
}

impl<C> Tier<C> {
    /// A tier in front of `database`, calling it through `caller`.
    pub fn new(database: &str, caller: Caller, policy: Policy<C>) -> Self {
        Tier {
            database: database.to_owned(),
            caller,
            policy,
            _commands: PhantomData,
        }
    }
}

/// Relays a downstream answer; no answer becomes 503.
pub fn relay(outcome: Outcome) -> Response<Body> {
    match outcome {
        Outcome::Answered { status, body } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Outcome::Unknown(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &reason),
    }
}

impl<C> Handler for Tier<C>
where
    C: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(async move {
            if request.method != Method::POST || request.path != COMMAND_PATH {
                return text(StatusCode::NOT_FOUND, "not found");
            }
            let command: C = match serde_json::from_slice(&request.body) {
                Ok(command) => command,
                Err(e) => return text(StatusCode::BAD_REQUEST, &format!("bad command: {e}")),
            };
            let Some(peer) = peer_service(request.peer.as_deref()) else {
                return text(StatusCode::UNAUTHORIZED, "no mesh identity");
            };
            if !(self.policy)(&command, peer) {
                return text(
                    StatusCode::FORBIDDEN,
                    &format!("{peer} may not send this command"),
                );
            }
            relay(self.caller.command(&self.database, &command).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_the_last_segment_of_the_identity() {
        assert_eq!(
            peer_service(Some("spiffe://rec.meshsim/ns/rec/sa/settlement")),
            Some("settlement")
        );
        assert_eq!(peer_service(Some("spiffe://x/ns/y")), None);
        assert_eq!(peer_service(None), None);
    }
}
