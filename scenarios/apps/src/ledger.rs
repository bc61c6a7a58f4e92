//! The ledger checker: Jepsen-style invariants of the REC application.
//!
//! It never asks the services whether they are right. Its inputs are what
//! the client saw (every acknowledged write: status and body, as the load
//! generator received them) and one final read of every service's state
//! after the run. From those it rebuilds what must be true and compares:
//!
//! - `rec_supply_conserved`: per product, active plus retired MWh equals
//!   what was issued; per owner, active MWh equals genesis plus settled
//!   trades minus retirements, recomputed here from the trades.
//! - `no_double_sale`: no serial is held twice; no serial moves after it
//!   was retired or is retired twice; no order fills beyond its size, or
//!   after an acknowledged cancel.
//! - `trades_settled_exactly_once`: every trade reached a final saga step,
//!   and the registry and accounts journals hold exactly the movements that
//!   step implies (one REC transfer and one payment for a settled trade).
//! - `cash_conserved`: total cash is unchanged, and each participant's cash
//!   is genesis plus what its settled trades imply.
//! - `no_acknowledged_write_lost`: every acknowledged order, fill, cancel
//!   and retirement is in the final state as acknowledged.

use std::collections::BTreeMap;

use bytes::Bytes;
use reports::{Check, CheckKind};
use serde::Deserialize;

use crate::rec::genesis::{Genesis, SerialRange};
use crate::rec::market::{Order, OrderStatus, Trade};
use crate::rec::settlement::Step;
use crate::rec::workload::FinalState;

/// One request the client finished, as it saw it.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Sequence number in the load schedule.
    pub seq: u64,
    /// Operation name (`order`, `cancel`, `retire`, `quote`).
    pub op: String,
    /// Status, if answered.
    pub status: Option<u16>,
    /// Response body.
    pub body: Bytes,
}

/// Everything the checker reads.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Finished writes, in completion order.
    pub observations: Vec<Observation>,
    /// The final read, or why it failed.
    pub final_state: Option<Result<FinalState, String>>,
}

/// Operations whose acknowledgements the checker needs.
pub fn is_write(op: &str) -> bool {
    matches!(op, "order" | "cancel" | "retire")
}

/// The names of the ledger checks, in report order.
pub const CHECK_NAMES: [&str; 5] = [
    "rec_supply_conserved",
    "no_double_sale",
    "trades_settled_exactly_once",
    "cash_conserved",
    "no_acknowledged_write_lost",
];

#[derive(Deserialize)]
struct OrderAck {
    order: Order,
    fills: Vec<Trade>,
}

#[derive(Deserialize)]
struct CancelAck {
    cancelled: Option<Order>,
}

#[derive(Deserialize)]
struct RetireAck {
    key: String,
    owner: String,
    product: String,
    serials: Vec<SerialRange>,
}

/// Acknowledged writes, parsed.
#[derive(Default)]
struct Acks {
    orders: Vec<OrderAck>,
    cancels: Vec<Order>,
    retirements: Vec<RetireAck>,
    unreadable: Vec<u64>,
}

fn acks(observations: &[Observation]) -> Acks {
    let mut acks = Acks::default();
    for o in observations {
        let Some(status) = o.status.filter(|s| (200..300).contains(s)) else {
            continue;
        };
        let parsed = match o.op.as_str() {
            "order" => serde_json::from_slice(&o.body).map(|a| acks.orders.push(a)),
            "cancel" => serde_json::from_slice::<CancelAck>(&o.body)
                .map(|a| acks.cancels.extend(a.cancelled)),
            "retire" => serde_json::from_slice(&o.body).map(|a| acks.retirements.push(a)),
            _ => Ok(()),
        };
        if parsed.is_err() {
            let _ = status;
            acks.unreadable.push(o.seq);
        }
    }
    acks
}

/// Collects violations; a check passes when it found none.
struct Verdict {
    name: &'static str,
    violations: Vec<String>,
    examined: String,
}

impl Verdict {
    fn new(name: &'static str) -> Self {
        Verdict {
            name,
            violations: Vec::new(),
            examined: String::new(),
        }
    }

    fn fail(&mut self, violation: String) {
        self.violations.push(violation);
    }

    fn into_check(self) -> Check {
        let passed = self.violations.is_empty();
        let detail = if passed {
            format!("holds: {}", self.examined)
        } else {
            let shown: Vec<&str> = self.violations.iter().take(3).map(String::as_str).collect();
            format!(
                "{} violation(s), e.g. {}; examined {}",
                self.violations.len(),
                shown.join("; "),
                self.examined
            )
        };
        Check {
            name: self.name.to_owned(),
            kind: CheckKind::Ledger,
            passed,
            detail,
        }
    }
}

/// Per owner and product, MWh.
type Positions = BTreeMap<(String, String), i128>;

/// The five ledger checks of a run.
pub fn checks(genesis: &Genesis, evidence: &Evidence) -> Vec<Check> {
    let state = match &evidence.final_state {
        Some(Ok(state)) => state,
        other => {
            let why = match other {
                Some(Err(e)) => format!("the final read failed: {e}"),
                _ => "no final read of the services' state".to_owned(),
            };
            return CHECK_NAMES
                .iter()
                .map(|name| Check {
                    name: (*name).to_owned(),
                    kind: CheckKind::Ledger,
                    passed: false,
                    detail: why.clone(),
                })
                .collect();
        }
    };
    let acks = acks(&evidence.observations);
    let settled: BTreeMap<u64, Step> = state.sagas.iter().map(|s| (s.trade.id, s.step)).collect();
    vec![
        rec_supply_conserved(genesis, state, &settled),
        no_double_sale(state, &acks),
        trades_settled_exactly_once(state),
        cash_conserved(genesis, state, &settled),
        no_acknowledged_write_lost(state, &acks),
    ]
}

/// Trades whose saga says they settled (moved RECs and cash for good).
fn settled_trades<'a>(
    state: &'a FinalState,
    steps: &'a BTreeMap<u64, Step>,
) -> impl Iterator<Item = &'a Trade> + 'a {
    state
        .trades
        .iter()
        .filter(|t| steps.get(&t.id) == Some(&Step::Settled))
}

fn rec_supply_conserved(
    genesis: &Genesis,
    state: &FinalState,
    steps: &BTreeMap<u64, Step>,
) -> Check {
    let mut verdict = Verdict::new("rec_supply_conserved");
    let mut issued: BTreeMap<&str, u64> = BTreeMap::new();
    let mut expected: Positions = BTreeMap::new();
    for issuance in &genesis.issuances {
        *issued.entry(&issuance.product).or_default() += issuance.serials.len();
        *expected
            .entry((issuance.owner.clone(), issuance.product.clone()))
            .or_default() += i128::from(issuance.serials.len());
    }
    let mut present: BTreeMap<&str, u64> = BTreeMap::new();
    let mut active: Positions = BTreeMap::new();
    for holding in &state.holdings {
        *present.entry(&holding.product).or_default() += holding.serials.len();
        if holding.retired_by.is_none() {
            *active
                .entry((holding.owner.clone(), holding.product.clone()))
                .or_default() += i128::from(holding.serials.len());
        }
    }
    for (product, mwh) in &issued {
        let found = present.get(product).copied().unwrap_or(0);
        if found != *mwh {
            verdict.fail(format!(
                "{product}: issued {mwh} MWh, registry holds {found}"
            ));
        }
    }
    for trade in settled_trades(state, steps) {
        let mwh = i128::from(trade.mwh);
        *expected
            .entry((trade.buyer.clone(), trade.product.clone()))
            .or_default() += mwh;
        *expected
            .entry((trade.seller.clone(), trade.product.clone()))
            .or_default() -= mwh;
    }
    // Each logical retirement counts once, however often it was applied.
    let mut retirements: BTreeMap<&str, (&str, &str, u64)> = BTreeMap::new();
    for entry in state.registry_journal.iter().filter(|e| e.kind == "retire") {
        let mwh = entry.serials.iter().map(SerialRange::len).sum();
        retirements
            .entry(&entry.key)
            .or_insert((&entry.from, &entry.product, mwh));
    }
    for (owner, product, mwh) in retirements.values() {
        *expected
            .entry(((*owner).to_owned(), (*product).to_owned()))
            .or_default() -= i128::from(*mwh);
    }
    for (position, want) in &expected {
        let have = active.get(position).copied().unwrap_or(0);
        if have != *want {
            verdict.fail(format!(
                "{} holds {have} MWh of {}, trades and retirements imply {want}",
                position.0, position.1
            ));
        }
    }
    verdict.examined = format!(
        "{} products, {} positions, {} settled trades, {} retirements",
        issued.len(),
        expected.len(),
        settled_trades(state, steps).count(),
        retirements.len()
    );
    verdict.into_check()
}

fn overlaps(a: &SerialRange, b: &SerialRange) -> bool {
    a.start < b.end && b.start < a.end
}

/// Whether `range` overlaps any range in `set` (keyed by start).
fn hits(set: &BTreeMap<u64, u64>, range: &SerialRange) -> bool {
    set.range(..range.end)
        .next_back()
        .is_some_and(|(start, end)| {
            overlaps(
                range,
                &SerialRange {
                    start: *start,
                    end: *end,
                },
            )
        })
}

fn no_double_sale(state: &FinalState, acks: &Acks) -> Check {
    let mut verdict = Verdict::new("no_double_sale");
    let mut ranges: Vec<&SerialRange> = state.holdings.iter().map(|h| &h.serials).collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        if overlaps(pair[0], pair[1]) {
            verdict.fail(format!(
                "serials {:?} and {:?} are both held",
                pair[0], pair[1]
            ));
        }
    }
    // Replay the journal in application order: nothing retired may move or
    // be retired again. Retired ranges never merge, so a map by start works.
    let mut retired: BTreeMap<u64, u64> = BTreeMap::new();
    for entry in &state.registry_journal {
        for range in &entry.serials {
            if hits(&retired, range) {
                verdict.fail(format!(
                    "{} {} touches already retired serials {range:?}",
                    entry.kind, entry.key
                ));
            }
            if entry.kind == "retire" {
                retired.insert(range.start, range.end);
            }
        }
    }
    let retired_twice = count_keys(
        state
            .registry_journal
            .iter()
            .filter(|e| e.kind == "retire")
            .map(|e| e.key.as_str()),
    );
    for (key, times) in retired_twice.iter().filter(|(_, n)| **n > 1) {
        verdict.fail(format!("retirement {key} was applied {times} times"));
    }
    let placed = count_keys(state.orders.iter().map(|o| o.key.as_str()));
    for (key, times) in placed.iter().filter(|(_, n)| **n > 1) {
        verdict.fail(format!("order {key} was placed {times} times"));
    }
    let mut filled: BTreeMap<u64, u64> = BTreeMap::new();
    for trade in &state.trades {
        *filled.entry(trade.buy_order).or_default() += trade.mwh;
        *filled.entry(trade.sell_order).or_default() += trade.mwh;
    }
    for order in &state.orders {
        let traded = filled.get(&order.id).copied().unwrap_or(0);
        if traded != order.filled_mwh || order.filled_mwh > order.mwh {
            verdict.fail(format!(
                "order {} of {} MWh reports {} filled, its trades {traded}",
                order.id, order.mwh, order.filled_mwh
            ));
        }
    }
    let by_id: BTreeMap<u64, &Order> = state.orders.iter().map(|o| (o.id, o)).collect();
    for cancel in &acks.cancels {
        if let Some(now) = by_id.get(&cancel.id)
            && now.filled_mwh > cancel.filled_mwh
        {
            verdict.fail(format!(
                "order {} filled {} MWh after its cancel was acknowledged at {}",
                cancel.id, now.filled_mwh, cancel.filled_mwh
            ));
        }
    }
    verdict.examined = format!(
        "{} serial ranges, {} journal entries, {} orders",
        ranges.len(),
        state.registry_journal.len(),
        state.orders.len()
    );
    verdict.into_check()
}

fn count_keys<'a>(keys: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, u32> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn trades_settled_exactly_once(state: &FinalState) -> Check {
    let mut verdict = Verdict::new("trades_settled_exactly_once");
    if !state.drained {
        verdict.fail("settlement did not drain before the final read".into());
    }
    let transfers = count_keys(
        state
            .registry_journal
            .iter()
            .filter(|e| e.kind == "transfer")
            .map(|e| e.key.as_str()),
    );
    let payments = count_keys(state.payments.iter().map(|p| p.key.as_str()));
    let sagas: BTreeMap<u64, Step> = state.sagas.iter().map(|s| (s.trade.id, s.step)).collect();
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    for trade in &state.trades {
        let count = |map: &BTreeMap<&str, u32>, suffix: &str| {
            map.get(format!("trade-{}-{suffix}", trade.id).as_str())
                .copied()
                .unwrap_or(0)
        };
        let moved = (
            count(&transfers, "recs"),
            count(&payments, "cash"),
            count(&transfers, "undo"),
        );
        let step = sagas.get(&trade.id).copied();
        let consistent = match step {
            Some(Step::Settled) => moved == (1, 1, 0),
            Some(Step::Rejected) => moved == (0, 0, 0) || moved == (1, 0, 1),
            _ => false,
        };
        *outcomes
            .entry(step.map_or("missing", step_name))
            .or_default() += 1;
        if !consistent {
            verdict.fail(format!(
                "trade {} is {:?} but RECs moved {}x, cash {}x, undone {}x",
                trade.id, step, moved.0, moved.1, moved.2
            ));
        }
    }
    let known = state.trades.len() as u64;
    let stray = transfers
        .keys()
        .chain(payments.keys())
        .filter(|key| {
            key.strip_prefix("trade-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|id| id.parse::<u64>().ok())
                .is_some_and(|id| id == 0 || id > known)
        })
        .count();
    if stray > 0 {
        verdict.fail(format!(
            "{stray} movements name trades the market never made"
        ));
    }
    verdict.examined = format!("{} trades {outcomes:?}", state.trades.len());
    verdict.into_check()
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::New => "new",
        Step::RecsMoved => "recs_moved",
        Step::Compensating => "compensating",
        Step::Settled => "settled",
        Step::Rejected => "rejected",
    }
}

fn cash_conserved(genesis: &Genesis, state: &FinalState, steps: &BTreeMap<u64, Step>) -> Check {
    let mut verdict = Verdict::new("cash_conserved");
    let mut expected: BTreeMap<&str, i128> = genesis
        .participants
        .iter()
        .map(|p| (p.name.as_str(), i128::from(genesis.cash_cents)))
        .collect();
    let total_start: i128 = expected.values().sum();
    let total_end: i128 = state.balances.values().map(|c| i128::from(*c)).sum();
    if total_start != total_end {
        verdict.fail(format!(
            "total cash went from {total_start} to {total_end} cents"
        ));
    }
    for trade in settled_trades(state, steps) {
        let cents = i128::from(trade.price_cents) * i128::from(trade.mwh);
        *expected.entry(&trade.buyer).or_default() -= cents;
        *expected.entry(&trade.seller).or_default() += cents;
    }
    for (name, want) in &expected {
        let have = state.balances.get(*name).map_or(0, |c| i128::from(*c));
        if have != *want {
            verdict.fail(format!(
                "{name} has {have} cents, its settled trades imply {want}"
            ));
        }
    }
    verdict.examined = format!(
        "{} accounts, {total_end} cents, {} payments",
        state.balances.len(),
        state.payments.len()
    );
    verdict.into_check()
}

fn no_acknowledged_write_lost(state: &FinalState, acks: &Acks) -> Check {
    let mut verdict = Verdict::new("no_acknowledged_write_lost");
    for seq in &acks.unreadable {
        verdict.fail(format!(
            "request {seq} was acknowledged with an unreadable body"
        ));
    }
    let orders: BTreeMap<u64, &Order> = state.orders.iter().map(|o| (o.id, o)).collect();
    let trades: BTreeMap<u64, &Trade> = state.trades.iter().map(|t| (t.id, t)).collect();
    for ack in &acks.orders {
        let acked = &ack.order;
        match orders.get(&acked.id) {
            Some(now)
                if now.key == acked.key
                    && now.participant == acked.participant
                    && now.product == acked.product
                    && now.side == acked.side
                    && now.price_cents == acked.price_cents
                    && now.mwh == acked.mwh
                    && now.filled_mwh >= acked.filled_mwh => {}
            other => verdict.fail(format!(
                "acknowledged order {} ({}) is {:?} in the market",
                acked.id,
                acked.key,
                other.map(|o| (&o.key, o.filled_mwh, o.status))
            )),
        }
        for fill in &ack.fills {
            if trades.get(&fill.id) != Some(&fill) {
                verdict.fail(format!(
                    "acknowledged trade {} is missing or changed",
                    fill.id
                ));
            }
        }
    }
    for cancel in &acks.cancels {
        if orders.get(&cancel.id).map(|o| o.status) != Some(OrderStatus::Cancelled) {
            verdict.fail(format!(
                "acknowledged cancel of order {} did not stick",
                cancel.id
            ));
        }
    }
    let mut retired: BTreeMap<&str, Vec<SerialRange>> = BTreeMap::new();
    for holding in &state.holdings {
        if let Some(key) = &holding.retired_by {
            retired.entry(key).or_default().push(holding.serials);
        }
    }
    for ack in &acks.retirements {
        let mut want = ack.serials.clone();
        want.sort();
        let mut have = retired.get(ack.key.as_str()).cloned().unwrap_or_default();
        have.sort();
        let owners_match = state
            .holdings
            .iter()
            .filter(|h| h.retired_by.as_deref() == Some(ack.key.as_str()))
            .all(|h| h.owner == ack.owner && h.product == ack.product);
        // A retirement applied twice holds more than was acknowledged; that
        // is a double application (no_double_sale), not a lost write.
        if !want.iter().all(|r| have.contains(r)) || !owners_match {
            verdict.fail(format!(
                "acknowledged retirement {} of {:?} is {:?} in the registry",
                ack.key, want, have
            ));
        }
    }
    verdict.examined = format!(
        "{} orders, {} fills, {} cancels, {} retirements acknowledged",
        acks.orders.len(),
        acks.orders.iter().map(|a| a.fills.len()).sum::<usize>(),
        acks.cancels.len(),
        acks.retirements.len()
    );
    verdict.into_check()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rec::accounts::Payment;
    use crate::rec::market::Side;
    use crate::rec::registry::{RegistryCommand, RegistryState};
    use crate::rec::settlement::Saga;
    use crate::rec::store::StateMachine;
    use spec::AppSpec;

    fn genesis() -> Genesis {
        Genesis::new(&AppSpec {
            participants: 2,
            initial_mwh: 100,
            initial_cash_cents: 1_000,
            ..AppSpec::default()
        })
    }

    fn order(id: u64, who: &str, side: Side) -> Order {
        Order {
            id,
            key: format!("{who}:seq-{id}"),
            participant: who.into(),
            product: "solar-2025".into(),
            side,
            price_cents: 5,
            mwh: 10,
            filled_mwh: 10,
            status: OrderStatus::Filled,
        }
    }

    /// p000 sold 10 MWh of solar to p001 for 50 cents, settled once; the
    /// client saw the buy order acknowledged with its fill.
    fn world(registry_applies: usize) -> (FinalState, Evidence) {
        let mut registry = RegistryState::new(&genesis(), false);
        for _ in 0..registry_applies {
            registry.apply(RegistryCommand::Transfer {
                key: "trade-1-recs".into(),
                product: "solar-2025".into(),
                from: "p000".into(),
                to: "p001".into(),
                mwh: 10,
            });
        }
        let mut items = |command| registry.apply(command).body["items"].clone();
        let holdings = serde_json::from_value(items(RegistryCommand::Holdings {
            after: 0,
            limit: 5_000,
        }))
        .unwrap();
        let registry_journal = serde_json::from_value(items(RegistryCommand::Journal {
            after: 0,
            limit: 5_000,
        }))
        .unwrap();
        let trade = Trade {
            id: 1,
            product: "solar-2025".into(),
            buyer: "p001".into(),
            seller: "p000".into(),
            buy_order: 2,
            sell_order: 1,
            price_cents: 5,
            mwh: 10,
        };
        let buy = order(2, "p001", Side::Buy);
        let state = FinalState {
            holdings,
            registry_journal,
            balances: [("p000".to_owned(), 1_050), ("p001".to_owned(), 950)].into(),
            payments: vec![Payment {
                key: "trade-1-cash".into(),
                from: "p001".into(),
                to: "p000".into(),
                cents: 50,
            }],
            orders: vec![order(1, "p000", Side::Sell), buy.clone()],
            trades: vec![trade.clone()],
            sagas: vec![Saga {
                trade: trade.clone(),
                step: Step::Settled,
                holder: "settlement-0".into(),
                lease_until_ms: 0,
                reason: None,
            }],
            drained: true,
        };
        let ack = serde_json::json!({ "order": buy, "fills": [trade] });
        let evidence = Evidence {
            observations: vec![Observation {
                seq: 2,
                op: "order".into(),
                status: Some(201),
                body: Bytes::from(ack.to_string()),
            }],
            final_state: None,
        };
        (state, evidence)
    }

    fn failing(state: FinalState, mut evidence: Evidence) -> Vec<String> {
        evidence.final_state = Some(Ok(state));
        checks(&genesis(), &evidence)
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn a_consistent_world_passes_every_check() {
        let (state, evidence) = world(1);
        assert!(failing(state, evidence).is_empty());
    }

    #[test]
    fn a_transfer_applied_twice_is_caught() {
        let (state, evidence) = world(2);
        let failed = failing(state, evidence);
        assert!(
            failed.contains(&"trades_settled_exactly_once".to_owned()),
            "{failed:?}"
        );
        assert!(
            failed.contains(&"rec_supply_conserved".to_owned()),
            "{failed:?}"
        );
    }

    #[test]
    fn a_lost_acknowledged_order_is_caught() {
        let (mut state, evidence) = world(1);
        state.orders.pop();
        let failed = failing(state, evidence);
        assert!(
            failed.contains(&"no_acknowledged_write_lost".to_owned()),
            "{failed:?}"
        );
    }

    #[test]
    fn created_cash_and_doubly_held_serials_are_caught() {
        let (mut state, evidence) = world(1);
        *state.balances.get_mut("p000").unwrap() += 1;
        let copy = state.holdings[0].clone();
        state.holdings.push(copy);
        let failed = failing(state, evidence);
        assert!(failed.contains(&"cash_conserved".to_owned()), "{failed:?}");
        assert!(failed.contains(&"no_double_sale".to_owned()), "{failed:?}");
    }

    #[test]
    fn a_failed_final_read_fails_every_check() {
        let evidence = Evidence {
            observations: Vec::new(),
            final_state: Some(Err("registry unreachable".into())),
        };
        let all = checks(&genesis(), &evidence);
        assert_eq!(all.len(), 5);
        assert!(
            all.iter()
                .all(|c| !c.passed && c.detail.contains("unreachable"))
        );
    }
}
