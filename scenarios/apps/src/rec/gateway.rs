//! `gateway`: the client-facing JSON API.
//!
//! | request | body | does |
//! |---|---|---|
//! | `GET /quote?product=P` | — | best bid, ask and last price |
//! | `POST /orders` | `{product, side, price_cents, mwh}` | places a limit order |
//! | `POST /orders/cancel` | `{product}` | cancels the caller's oldest open order |
//! | `POST /retirements` | `{product, mwh}` | retires the caller's RECs |
//!
//! Every request carries `Authorization: Bearer <token>`, checked against
//! `accounts` (answers are cached: tokens do not change). Writes take their
//! idempotency key from the `idempotency-key` header, else from the load
//! generator's `x-request-seq`, scoped to the participant.

use std::collections::BTreeMap;
use std::sync::Mutex;

use http::{Method, Response, StatusCode};
use mesh::http::{Body, text};
use seam::BoxFuture;
use serde::Deserialize;

use super::accounts::AccountsCommand;
use super::app::{AppRequest, Handler};
use super::call::{Caller, Outcome};
use super::market::{MarketCommand, Side};
use super::registry::RegistryCommand;
use super::tier::relay;

/// Header a client names its write with.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Header the load generator numbers its requests with.
pub const REQUEST_SEQ_HEADER: &str = "x-request-seq";

/// The gateway app.
pub struct Gateway {
    caller: Caller,
    tokens: Mutex<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct OrderBody {
    product: String,
    side: Side,
    price_cents: u64,
    mwh: u64,
}

#[derive(Deserialize)]
struct CancelBody {
    product: String,
}

#[derive(Deserialize)]
struct RetireBody {
    product: String,
    mwh: u64,
}

/// An error answer, boxed: responses are large and errors are rare.
type Refusal = Box<Response<Body>>;

fn refuse(status: StatusCode, message: &str) -> Refusal {
    Box::new(text(status, message))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, &format!("bad request body: {e}")))
}

impl Gateway {
    /// A gateway calling the services through `caller`.
    pub fn new(caller: Caller) -> Self {
        Gateway {
            caller,
            tokens: Mutex::default(),
        }
    }

    /// The participant behind the request's bearer token.
    async fn authenticate(&self, request: &AppRequest) -> Result<String, Refusal> {
        let Some(token) = request.bearer.as_deref() else {
            return Err(refuse(StatusCode::UNAUTHORIZED, "missing bearer token"));
        };
        if let Some(name) = self.tokens.lock().expect("cache poisoned").get(token) {
            return Ok(name.clone());
        }
        let check = AccountsCommand::Authenticate {
            token: token.to_owned(),
        };
        match self.caller.command("accounts", &check).await {
            Outcome::Answered { status: 401, .. } => {
                Err(refuse(StatusCode::UNAUTHORIZED, "unknown bearer token"))
            }
            outcome => match outcome
                .json()
                .and_then(|v| v["participant"].as_str().map(str::to_owned))
            {
                Some(name) => {
                    self.tokens
                        .lock()
                        .expect("cache poisoned")
                        .insert(token.to_owned(), name.clone());
                    Ok(name)
                }
                None => Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "accounts unavailable",
                )),
            },
        }
    }

    async fn route(&self, request: AppRequest) -> Result<Response<Body>, Refusal> {
        let participant = self.authenticate(&request).await?;
        let key = || {
            request
                .idempotency_key
                .as_deref()
                .map(|k| format!("{participant}:{k}"))
                .ok_or_else(|| {
                    refuse(
                        StatusCode::BAD_REQUEST,
                        "writes need an idempotency-key header",
                    )
                })
        };
        let outcome = match (&request.method, request.path.as_str()) {
            (&Method::GET, "/quote") => {
                let product = request
                    .query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("product="))
                    .unwrap_or_default()
                    .to_owned();
                self.caller
                    .command("market", &MarketCommand::Quote { product })
                    .await
            }
            (&Method::POST, "/orders") => {
                let order: OrderBody = parse(&request.body)?;
                let place = MarketCommand::Place {
                    key: key()?,
                    participant,
                    product: order.product,
                    side: order.side,
                    price_cents: order.price_cents,
                    mwh: order.mwh,
                };
                self.caller.command("market", &place).await
            }
            (&Method::POST, "/orders/cancel") => {
                let cancel: CancelBody = parse(&request.body)?;
                let cancel = MarketCommand::CancelOldest {
                    key: key()?,
                    participant,
                    product: cancel.product,
                };
                self.caller.command("market", &cancel).await
            }
            (&Method::POST, "/retirements") => {
                let retire: RetireBody = parse(&request.body)?;
                let retire = RegistryCommand::Retire {
                    key: key()?,
                    owner: participant,
                    product: retire.product,
                    mwh: retire.mwh,
                };
                self.caller.command("registry", &retire).await
            }
            _ => return Err(refuse(StatusCode::NOT_FOUND, "not found")),
        };
        Ok(match outcome {
            Outcome::Unknown(reason) => text(StatusCode::GATEWAY_TIMEOUT, &reason),
            answered => relay(answered),
        })
    }
}

impl Handler for Gateway {
    fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(async move {
            if request.path == "/health" {
                return text(StatusCode::OK, "ok");
            }
            match self.route(request).await {
                Ok(response) => response,
                Err(refusal) => *refusal,
            }
        })
    }
}
