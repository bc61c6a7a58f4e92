//! The client side of the REC application: what the load generator sends
//! (one HTTP request shape per participant, product, side and price, drawn
//! by the mix), and the final read of every service's state after the run.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use seam::HostEnv;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::accounts::{AccountsCommand, Payment};
use super::call::Caller;
use super::genesis::{Genesis, PRODUCTS, REFERENCE_PRICE_CENTS};
use super::market::{MarketCommand, Order, Trade};
use super::registry::{Holding, RegistryCommand, RegistryEntry};
use super::settlement::{Saga, SettlementCommand};
use spec::{AppSpec, OpSpec, Operation};

/// Limit prices, in cents around the reference price: both sides quote
/// across the same band, so roughly half of all orders cross.
const PRICE_OFFSETS_CENTS: [i64; 5] = [-20, -10, 0, 10, 20];

fn request(
    name: &str,
    method: http::Method,
    path: String,
    body: String,
    token: &str,
) -> loadgen::Operation {
    loadgen::Operation {
        name: name.to_owned(),
        method,
        path,
        body: Bytes::from(body),
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        weight: 1,
    }
}

/// Every request shape of one scenario operation.
fn shapes(op: Operation, genesis: &Genesis) -> Vec<loadgen::Operation> {
    let mut shapes = Vec::new();
    for (i, participant) in genesis.participants.iter().enumerate() {
        let token = participant.token.as_str();
        for product in PRODUCTS {
            match op {
                Operation::Quote => shapes.push(request(
                    op.name(),
                    http::Method::GET,
                    format!("/quote?product={product}"),
                    String::new(),
                    token,
                )),
                Operation::Order => {
                    for side in ["buy", "sell"] {
                        for (level, offset) in PRICE_OFFSETS_CENTS.iter().enumerate() {
                            let price = REFERENCE_PRICE_CENTS as i64 + offset;
                            let mwh = 1 + (i + level) % 10;
                            let body = format!(
                                r#"{{"product":"{product}","side":"{side}","price_cents":{price},"mwh":{mwh}}}"#
                            );
                            shapes.push(request(
                                op.name(),
                                http::Method::POST,
                                "/orders".into(),
                                body,
                                token,
                            ));
                        }
                    }
                }
                Operation::Cancel => shapes.push(request(
                    op.name(),
                    http::Method::POST,
                    "/orders/cancel".into(),
                    format!(r#"{{"product":"{product}"}}"#),
                    token,
                )),
                Operation::Retire => {
                    let mwh = 1 + i % 5;
                    shapes.push(request(
                        op.name(),
                        http::Method::POST,
                        "/retirements".into(),
                        format!(r#"{{"product":"{product}","mwh":{mwh}}}"#),
                        token,
                    ));
                }
            }
        }
    }
    shapes
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Request shapes a size distribution becomes: its quantiles at the
/// middles of this many equal slices, each shape equally likely, so the
/// generator's seeded choice among shapes draws the size (a stratified
/// discretisation: no new random stream, no change to the generator).
const SIZE_QUANTILES: u32 = 32;

/// A mix entry aimed at a synthetic service: one request shape, or one
/// per quantile of its `request_size` distribution.
fn synthetic_requests(spec: &OpSpec) -> Vec<loadgen::Operation> {
    let shape = |bytes: usize| loadgen::Operation {
        name: spec.label(),
        method: http::Method::from_bytes(spec.method().as_bytes()).unwrap_or(http::Method::GET),
        path: spec
            .path
            .as_ref()
            .map_or("/".into(), |p| p.get_ref().clone()),
        body: Bytes::from(vec![b'x'; bytes]),
        headers: Vec::new(),
        weight: 1,
    };
    match &spec.request_size {
        Some(size) => (0..SIZE_QUANTILES)
            .map(|i| {
                let p = (f64::from(i) + 0.5) / f64::from(SIZE_QUANTILES);
                // Body sizes are whole bytes, bounded by what an app reads.
                shape(
                    size.0
                        .quantile(p)
                        .round()
                        .clamp(0.0, 16.0 * 1024.0 * 1024.0) as usize,
                )
            })
            .collect(),
        None => vec![shape(spec.request_bytes as usize)],
    }
}

/// The load generator's mix: each scenario operation becomes its request
/// shapes, weighted so that the operations keep the scenario's proportions.
pub fn client_mix(mix: &[OpSpec], genesis: &Genesis) -> Vec<loadgen::Operation> {
    let expanded: Vec<(u32, Vec<loadgen::Operation>)> = mix
        .iter()
        .map(|spec| {
            let shapes = match spec.operation {
                Some(op) => shapes(op, genesis),
                None => synthetic_requests(spec),
            };
            (spec.weight, shapes)
        })
        .collect();
    let lcm = expanded
        .iter()
        .map(|(_, shapes)| shapes.len().max(1) as u64)
        .fold(1, |l, n| l / gcd(l, n) * n);
    expanded
        .into_iter()
        .flat_map(|(weight, shapes)| {
            let each = u64::from(weight) * lcm / shapes.len().max(1) as u64;
            shapes.into_iter().map(move |mut shape| {
                shape.weight = u32::try_from(each).unwrap_or(u32::MAX);
                shape
            })
        })
        .collect()
}

/// Every service's state at the end of a run, as read through the mesh.
#[derive(Clone, Debug, Default)]
pub struct FinalState {
    /// Every serial range, active and retired.
    pub holdings: Vec<Holding>,
    /// Every applied transfer and retirement.
    pub registry_journal: Vec<RegistryEntry>,
    /// Cash by participant.
    pub balances: BTreeMap<String, u64>,
    /// Every applied payment.
    pub payments: Vec<Payment>,
    /// Every order.
    pub orders: Vec<Order>,
    /// Every trade.
    pub trades: Vec<Trade>,
    /// Every settlement saga.
    pub sagas: Vec<Saga>,
    /// Whether settlement finished every trade before the read.
    pub drained: bool,
}

/// Items per page of the final read.
const PAGE: u64 = 2_000;

async fn read_all<T: DeserializeOwned, C: Serialize>(
    caller: &Caller,
    service: &str,
    command: impl Fn(u64) -> C,
) -> Result<Vec<T>, String> {
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let outcome = caller.command(service, &command(after)).await;
        let page = outcome
            .json()
            .ok_or_else(|| format!("reading {service}: {outcome:?}"))?;
        let batch: Vec<T> = serde_json::from_value(page["items"].clone())
            .map_err(|e| format!("reading {service}: {e}"))?;
        items.extend(batch);
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => return Ok(items),
        }
    }
}

/// Waits (bounded by `app.drain_max`) until settlement has finished every
/// trade the market emitted; true if it did.
async fn wait_for_settlement(caller: &Caller, app: &AppSpec) -> bool {
    let deadline = tokio::time::Instant::now() + app.drain_max.0;
    while tokio::time::Instant::now() < deadline {
        let status = caller
            .command("settlement", &SettlementCommand::Status)
            .await
            .json();
        if let Some(status) = status {
            let cursor = status["cursor"].as_u64().unwrap_or(0);
            let newer = caller
                .command(
                    "market",
                    &MarketCommand::Trades {
                        after: cursor,
                        limit: 1,
                    },
                )
                .await
                .json();
            let caught_up = newer.is_some_and(|p| p["items"].as_array().is_some_and(Vec::is_empty));
            if caught_up && status["unfinished"].as_u64() == Some(0) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    false
}

/// Reads every service's state through `env`'s sidecar, after waiting for
/// settlement to drain.
pub async fn final_read(env: &HostEnv, app: &AppSpec) -> Result<FinalState, String> {
    let caller = Caller::new(env.clone(), Duration::from_secs(10), 5);
    let drained = wait_for_settlement(&caller, app).await;
    let holdings = read_all(&caller, "registry", |after| RegistryCommand::Holdings {
        after,
        limit: PAGE,
    })
    .await?;
    let registry_journal = read_all(&caller, "registry", |after| RegistryCommand::Journal {
        after,
        limit: PAGE,
    })
    .await?;
    let payments = read_all(&caller, "accounts", |after| AccountsCommand::Journal {
        after,
        limit: PAGE,
    })
    .await?;
    let orders = read_all(&caller, "market", |after| MarketCommand::Orders {
        after,
        limit: PAGE,
    })
    .await?;
    let trades = read_all(&caller, "market", |after| MarketCommand::Trades {
        after,
        limit: PAGE,
    })
    .await?;
    let sagas = read_all(&caller, "settlement", |after| SettlementCommand::Sagas {
        after,
        limit: PAGE,
    })
    .await?;
    let balances = caller
        .command("accounts", &AccountsCommand::Balances)
        .await
        .json()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or("reading accounts balances failed")?;
    Ok(FinalState {
        holdings,
        registry_journal,
        balances,
        payments,
        orders,
        trades,
        sagas,
        drained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_keeps_the_scenario_proportions() {
        let genesis = Genesis::new(&AppSpec::default());
        let spec = OpSpec::rec;
        let mix = client_mix(
            &[
                spec(Operation::Quote, 60),
                spec(Operation::Order, 25),
                spec(Operation::Cancel, 10),
                spec(Operation::Retire, 5),
            ],
            &genesis,
        );
        let total = |name: &str| -> u64 {
            mix.iter()
                .filter(|o| o.name == name)
                .map(|o| u64::from(o.weight))
                .sum()
        };
        let all: u64 = mix.iter().map(|o| u64::from(o.weight)).sum();
        assert_eq!(total("quote") * 100 / all, 60);
        assert_eq!(total("order") * 100 / all, 25);
        assert_eq!(total("cancel") * 100 / all, 10);
        assert_eq!(total("retire") * 100 / all, 5);
    }

    #[test]
    fn a_request_size_distribution_becomes_equally_likely_quantile_shapes() {
        let op = OpSpec {
            operation: None,
            name: Some("upload".into()),
            method: Some("POST".into()),
            path: Some(toml::Spanned::new(0..0, "/upload".to_owned())),
            request_bytes: 0,
            request_size: Some(spec::distribution::Size(
                spec::distribution::Distribution::new(spec::distribution::Family::Uniform {
                    min: 1000.0,
                    max: 2000.0,
                }),
            )),
            weight: 1,
        };
        let mix = client_mix(&[op], &Genesis::new(&AppSpec::default()));
        assert_eq!(mix.len(), SIZE_QUANTILES as usize);
        assert!(
            mix.iter()
                .all(|o| o.name == mix[0].name && o.weight == mix[0].weight)
        );
        let sizes: Vec<usize> = mix.iter().map(|o| o.body.len()).collect();
        // Uniform on [1000, 2000] at (i + 0.5) / 32: 1016, 1047, …, 1984.
        assert_eq!((sizes[0], sizes[31]), (1016, 1984));
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!((mean - 1500.0).abs() < 1.0, "{mean}");
    }
}
