//! A two-tier app for scenarios about the mesh rather than the ledger:
//! `edge` answers `/quote` and `/orders` by calling the service named
//! `registry` through its sidecar; `backend` keeps REC balances in memory.
//! Traffic-management, authorization and control-plane scenarios use it so
//! that what they measure is the mesh, with one hop of application logic.

mod backend {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use http::{Method, Response, StatusCode};
    use mesh::http::{Body, json, text};
    use seam::BoxFuture;
    use serde::{Deserialize, Serialize};

    use super::super::app::{AppRequest, Handler};

    /// The account that holds unsold supply.
    pub const ISSUER_ACCOUNT: &str = "issuer";
    /// Initial supply (MWh, one REC each).
    pub const INITIAL_SUPPLY: u64 = 1_000_000_000;

    /// A transfer of RECs between accounts.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Transfer {
        /// Seller.
        pub from: String,
        /// Buyer.
        pub to: String,
        /// How many.
        pub count: u64,
    }

    /// Ownership by account, in memory.
    pub struct Backend {
        balances: Mutex<BTreeMap<String, u64>>,
    }

    impl Default for Backend {
        fn default() -> Self {
            Backend {
                balances: Mutex::new(BTreeMap::from([(
                    ISSUER_ACCOUNT.to_owned(),
                    INITIAL_SUPPLY,
                )])),
            }
        }
    }

    impl Backend {
        fn available(&self) -> Response<Body> {
            let balances = self.balances.lock().expect("registry poisoned");
            let available = balances.get(ISSUER_ACCOUNT).copied().unwrap_or(0);
            json(
                StatusCode::OK,
                &serde_json::json!({ "available": available }),
            )
        }

        fn transfer(&self, body: &[u8]) -> Response<Body> {
            let Ok(transfer) = serde_json::from_slice::<Transfer>(body) else {
                return text(StatusCode::BAD_REQUEST, "malformed transfer");
            };
            let mut balances = self.balances.lock().expect("registry poisoned");
            let from_balance = balances.get(&transfer.from).copied().unwrap_or(0);
            if from_balance < transfer.count {
                return text(StatusCode::CONFLICT, "insufficient RECs");
            }
            balances.insert(transfer.from.clone(), from_balance - transfer.count);
            *balances.entry(transfer.to.clone()).or_default() += transfer.count;
            json(
                StatusCode::OK,
                &serde_json::json!({ "moved": transfer.count }),
            )
        }
    }

    impl Handler for Backend {
        fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>> {
            let response = match (&request.method, request.path.as_str()) {
                (&Method::GET, "/recs/available") => self.available(),
                (&Method::POST, "/transfers") => self.transfer(&request.body),
                _ => text(StatusCode::NOT_FOUND, "not found"),
            };
            Box::pin(async move { response })
        }
    }
}

mod edge {
    use bytes::Bytes;
    use http::{Method, Response, StatusCode};
    use mesh::MeshError;
    use mesh::client::Sidecar;
    use mesh::http::{Body, text};
    use seam::{BoxFuture, HostEnv};

    use super::super::app::{AppRequest, Handler};
    use super::backend::{ISSUER_ACCOUNT, Transfer};

    /// The edge app: answers `/quote` and `/orders` by calling `registry`.
    pub struct Edge {
        env: HostEnv,
        sidecar: Sidecar,
    }

    impl Edge {
        /// A gateway whose calls go through this host's sidecar.
        pub fn new(env: HostEnv) -> Self {
            Edge {
                sidecar: Sidecar::new(env.clone()),
                env,
            }
        }

        /// Sends a request to `service` via the local outbound proxy.
        async fn call(
            &self,
            service: &str,
            method: Method,
            path: &str,
            body: Bytes,
        ) -> Result<Response<Body>, MeshError> {
            let request = Sidecar::request(service, method, path)
                .body(Body::from(body))
                .map_err(|e| MeshError::BadRequest(e.to_string()))?;
            self.sidecar.send(request).await
        }

        async fn quote(&self) -> Response<Body> {
            self.relay(
                self.call("registry", Method::GET, "/recs/available", Bytes::new())
                    .await,
            )
        }

        async fn order(&self, body: &[u8]) -> Response<Body> {
            /// Any JSON object is an order; the buyer defaults to one account.
            #[derive(serde::Deserialize)]
            struct Order {
                #[serde(default = "default_buyer")]
                buyer: String,
            }
            fn default_buyer() -> String {
                "acme-energy".into()
            }
            let Ok(order) = serde_json::from_slice::<Order>(body) else {
                return text(StatusCode::BAD_REQUEST, "expected a JSON order");
            };
            let transfer = Transfer {
                from: ISSUER_ACCOUNT.into(),
                to: order.buyer,
                count: 1,
            };
            let body = Bytes::from(serde_json::to_vec(&transfer).expect("serialisable"));
            self.relay(
                self.call("registry", Method::POST, "/transfers", body)
                    .await,
            )
        }

        fn relay(&self, result: Result<Response<Body>, MeshError>) -> Response<Body> {
            match result {
                Ok(response) => response,
                Err(error) => {
                    self.env
                        .record(seam::event::GATEWAY_UPSTREAM_ERROR, error.to_string());
                    text(StatusCode::BAD_GATEWAY, "upstream unavailable")
                }
            }
        }
    }

    impl Handler for Edge {
        fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>> {
            Box::pin(async move {
                match (&request.method, request.path.as_str()) {
                    (&Method::GET, "/quote") => self.quote().await,
                    (&Method::POST, "/orders") => self.order(&request.body).await,
                    _ => text(StatusCode::NOT_FOUND, "not found"),
                }
            })
        }
    }
}

pub use backend::{Backend, ISSUER_ACCOUNT, Transfer};
pub use edge::Edge;
