//! `registry`: who owns how many RECs. Skeleton: one product, in memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use http::{Method, Response, StatusCode};
use mesh::http::{Body, json, text};
use seam::BoxFuture;
use serde::{Deserialize, Serialize};

use super::app::{AppRequest, Handler};

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

/// Ownership by account.
pub struct Registry {
    balances: Mutex<BTreeMap<String, u64>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            balances: Mutex::new(BTreeMap::from([(
                ISSUER_ACCOUNT.to_owned(),
                INITIAL_SUPPLY,
            )])),
        }
    }
}

impl Registry {
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

impl Handler for Registry {
    fn handle(&self, request: AppRequest) -> BoxFuture<'_, Response<Body>> {
        let response = match (&request.method, request.path.as_str()) {
            (&Method::GET, "/recs/available") => self.available(),
            (&Method::POST, "/transfers") => self.transfer(&request.body),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        };
        Box::pin(async move { response })
    }
}
