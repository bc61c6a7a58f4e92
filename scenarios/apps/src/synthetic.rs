//! `app = "synthetic"`: a service made of the endpoints a scenario
//! describes. The capacity model ([`crate::rec::app::serve`]) has already
//! held a slot for the endpoint's service time when [`Synthetic::handle`]
//! runs; the handler then plays the endpoint's call script through the
//! host's own sidecar (so the mesh's routes, retries, timeouts, budgets,
//! balancing and authorization apply), draws the error model and answers
//! with a body of the drawn response size.
//!
//! Every draw (call probabilities, sizes, errors) comes from the host's
//! `synthetic` stream, in the order requests reach the handler, which the
//! simulation fixes.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use mesh::MeshError;
use mesh::client::Sidecar;
use mesh::http::{Body, text};
use rand::Rng;
use rand_chacha::ChaCha12Rng;
use seam::{BoxFuture, HostEnv};
use spec::{CallSpec, EndpointSpec, OnFailure, ServiceSpec, Size};

use crate::rec::app::{AppRequest, Handler};

/// Header naming the failed call when an endpoint fails because of one.
pub const FAILED_CALL_HEADER: &str = "x-meshsim-failed-call";

/// A synthetic service's request handler.
pub struct Synthetic {
    endpoints: Vec<EndpointSpec>,
    sidecar: Arc<Sidecar>,
    rng: Mutex<ChaCha12Rng>,
}

/// How one call of a script ended.
#[derive(Clone, Debug, PartialEq)]
enum CallOutcome {
    /// A status below 400.
    Succeeded,
    /// An answer of 400 or more (the mesh's or the service's).
    Status(u16),
    /// No answer (deadline, connect failure).
    NoAnswer(String),
}

impl Synthetic {
    /// The handler of `service`, calling through `env`'s sidecar.
    pub fn new(env: HostEnv, service: &ServiceSpec) -> Self {
        Synthetic {
            endpoints: service.endpoints.clone(),
            rng: Mutex::new(env.seed.child("synthetic").rng()),
            sidecar: Arc::new(Sidecar::new(env)),
        }
    }

    fn draw<T>(&self, f: impl FnOnce(&mut ChaCha12Rng) -> T) -> T {
        f(&mut self.rng.lock().expect("rng poisoned"))
    }

    fn bytes(&self, size: Option<&Size>) -> Bytes {
        let Some(size) = size else {
            return Bytes::new();
        };
        let n = self.draw(|rng| size.0.sample(rng)).round().max(0.0) as usize;
        Bytes::from(vec![b'x'; n])
    }

    /// Plays `endpoint`'s script; the first failure (in script order) of a
    /// step, if the endpoint fails on failures.
    async fn script(&self, endpoint: &EndpointSpec) -> Option<(String, CallOutcome)> {
        for step in &endpoint.script {
            // Draw every call's fate and body before sending any, so the
            // draws do not depend on which answer comes back first.
            let calls: Vec<(&CallSpec, Bytes)> = step
                .calls()
                .iter()
                .filter(|call| self.draw(|rng| rng.random::<f64>()) < *call.probability.get_ref())
                .map(|call| (call, self.bytes(call.request_size.as_ref())))
                .collect();
            let handles: Vec<_> = calls
                .iter()
                .map(|(call, body)| {
                    let sidecar = self.sidecar.clone();
                    let request = Sidecar::request(
                        call.service.get_ref(),
                        Method::from_bytes(call.method.as_bytes()).unwrap_or(Method::GET),
                        call.path.get_ref(),
                    )
                    .body(Body::from(body.clone()));
                    let timeout = call.timeout.0;
                    seam::task::spawn(async move {
                        let request = request.map_err(|e| MeshError::BadRequest(e.to_string()))?;
                        sidecar.send_with_timeout(request, timeout).await
                    })
                })
                .collect();
            let mut failure = None;
            for ((call, _), handle) in calls.iter().zip(handles) {
                let outcome = match handle.await {
                    Ok(Ok(response)) if response.status().as_u16() < 400 => CallOutcome::Succeeded,
                    Ok(Ok(response)) => CallOutcome::Status(response.status().as_u16()),
                    Ok(Err(error)) => CallOutcome::NoAnswer(error.to_string()),
                    Err(join) => CallOutcome::NoAnswer(join.to_string()),
                };
                if failure.is_none() && outcome != CallOutcome::Succeeded {
                    let name = format!(
                        "{} {} {}",
                        call.service.get_ref(),
                        call.method,
                        call.path.get_ref()
                    );
                    failure = Some((name, outcome));
                }
            }
            if failure.is_some() && endpoint.on_failure == OnFailure::Fail {
                return failure;
            }
        }
        None
    }

    /// The status the error model draws for one answer.
    fn drawn_status(&self, endpoint: &EndpointSpec) -> StatusCode {
        if endpoint.errors.is_empty() {
            return StatusCode::OK;
        }
        let u = self.draw(|rng| rng.random::<f64>());
        let mut cumulative = 0.0;
        for (status, probability) in &endpoint.errors {
            cumulative += probability.get_ref();
            if u < cumulative {
                return status
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            }
        }
        StatusCode::OK
    }

    async fn serve(&self, endpoint: &EndpointSpec) -> Response<Body> {
        if let Some((call, outcome)) = self.script(endpoint).await {
            let status = match outcome {
                CallOutcome::Status(status) => {
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            let mut response = text(status, &format!("call {call} failed: {outcome:?}"));
            if let Ok(value) = http::HeaderValue::from_str(&call) {
                response.headers_mut().insert(FAILED_CALL_HEADER, value);
            }
            return response;
        }
        let status = self.drawn_status(endpoint);
        let mut response = Response::new(Body::from(self.bytes(endpoint.response_size.as_ref())));
        *response.status_mut() = status;
        response
    }
}

impl Handler for Synthetic {
    fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(async move {
            let endpoint = self.endpoints.iter().find(|e| {
                e.method.eq_ignore_ascii_case(request.method.as_str())
                    && *e.path.get_ref() == request.path
            });
            match endpoint {
                Some(endpoint) => self.serve(endpoint).await,
                None => text(StatusCode::NOT_FOUND, "no such endpoint"),
            }
        })
    }
}
