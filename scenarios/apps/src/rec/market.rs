//! `market`: a limit order book per product, price-time priority matching,
//! and the trades it emits (the outbox settlement reads).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::genesis::PRODUCTS;
use super::registry::page;
use super::store::{Reply, StateMachine};

/// Order side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy RECs for cash.
    Buy,
    /// Sell RECs for cash.
    Sell,
}

/// Order lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Resting in the book.
    Open,
    /// Completely filled.
    Filled,
    /// Cancelled with a remainder.
    Cancelled,
}

/// An order as the market keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Id (1-based, in arrival order).
    pub id: u64,
    /// The client's idempotency key.
    pub key: String,
    /// Who placed it.
    pub participant: String,
    /// Product.
    pub product: String,
    /// Side.
    pub side: Side,
    /// Limit price per MWh.
    pub price_cents: u64,
    /// Quantity.
    pub mwh: u64,
    /// Quantity filled so far.
    pub filled_mwh: u64,
    /// Status.
    pub status: OrderStatus,
}

/// A match between a buy and a sell order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Id (1-based, in match order).
    pub id: u64,
    /// Product.
    pub product: String,
    /// Buyer.
    pub buyer: String,
    /// Seller.
    pub seller: String,
    /// The buy order.
    pub buy_order: u64,
    /// The sell order.
    pub sell_order: u64,
    /// Price per MWh (the resting order's).
    pub price_cents: u64,
    /// Quantity.
    pub mwh: u64,
}

/// What the market accepts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MarketCommand {
    /// Place a limit order (gateway).
    Place {
        /// Idempotency key.
        key: String,
        /// Who.
        participant: String,
        /// Product.
        product: String,
        /// Side.
        side: Side,
        /// Limit price.
        price_cents: u64,
        /// Quantity.
        mwh: u64,
    },
    /// Cancel the participant's oldest open order in a product (gateway).
    CancelOldest {
        /// Idempotency key.
        key: String,
        /// Who.
        participant: String,
        /// Product.
        product: String,
    },
    /// Best bid, best ask and last price.
    Quote {
        /// Product.
        product: String,
    },
    /// Trades with id greater than `after` (the settlement feed).
    Trades {
        /// Last trade id already seen.
        after: u64,
        /// Items at most.
        limit: u64,
    },
    /// A page of every order.
    Orders {
        /// Items to skip.
        after: u64,
        /// Items at most.
        limit: u64,
    },
}

/// Largest order, in MWh.
pub const ORDER_MWH_MAX: u64 = 1_000;

/// Price → order ids at that price, oldest first.
type Levels = BTreeMap<u64, VecDeque<u64>>;

#[derive(Default, Serialize, Deserialize)]
struct Book {
    bids: Levels,
    asks: Levels,
    last_price_cents: Option<u64>,
}

/// The market database.
#[derive(Serialize, Deserialize)]
pub struct MarketState {
    idempotency: bool,
    orders: Vec<Order>,
    books: BTreeMap<String, Book>,
    trades: Vec<Trade>,
    /// `participant/product` → ids of open orders (oldest first).
    open: BTreeMap<String, BTreeSet<u64>>,
    outcomes: BTreeMap<String, Reply>,
}

impl MarketState {
    /// An empty market.
    pub fn new(idempotency: bool) -> Self {
        MarketState {
            idempotency,
            orders: Vec::new(),
            books: PRODUCTS
                .iter()
                .map(|p| ((*p).to_owned(), Book::default()))
                .collect(),
            trades: Vec::new(),
            open: BTreeMap::new(),
            outcomes: BTreeMap::new(),
        }
    }

    fn order_mut(&mut self, id: u64) -> &mut Order {
        &mut self.orders[(id - 1) as usize]
    }

    fn place(&mut self, mut order: Order) -> Reply {
        if !self.books.contains_key(&order.product) {
            return Reply::error(400, format!("unknown product {}", order.product));
        }
        if order.mwh == 0 || order.mwh > ORDER_MWH_MAX || order.price_cents == 0 {
            return Reply::error(400, "mwh must be 1..=1000 and price positive");
        }
        order.id = self.orders.len() as u64 + 1;
        self.orders.push(order.clone());
        let fills = self.match_order(order.id);
        let order = self.orders[(order.id - 1) as usize].clone();
        if order.status == OrderStatus::Open {
            let book = self.books.get_mut(&order.product).expect("checked");
            let side = match order.side {
                Side::Buy => &mut book.bids,
                Side::Sell => &mut book.asks,
            };
            side.entry(order.price_cents)
                .or_default()
                .push_back(order.id);
            self.open
                .entry(format!("{}/{}", order.participant, order.product))
                .or_default()
                .insert(order.id);
        }
        Reply {
            status: 201,
            body: serde_json::json!({ "order": order, "fills": fills }),
        }
    }

    /// Matches order `id` against the opposite side; returns the trades.
    fn match_order(&mut self, id: u64) -> Vec<Trade> {
        let incoming = self.orders[(id - 1) as usize].clone();
        let mut remaining = incoming.mwh;
        let mut fills = Vec::new();
        while remaining > 0 {
            let book = self.books.get_mut(&incoming.product).expect("checked");
            let (levels, crosses): (&mut Levels, fn(u64, u64) -> bool) = match incoming.side {
                Side::Buy => (&mut book.asks, |best, limit| best <= limit),
                Side::Sell => (&mut book.bids, |best, limit| best >= limit),
            };
            let best = match incoming.side {
                Side::Buy => levels.keys().next().copied(),
                Side::Sell => levels.keys().next_back().copied(),
            };
            let Some(price) = best.filter(|p| crosses(*p, incoming.price_cents)) else {
                break;
            };
            let queue = levels.get_mut(&price).expect("level exists");
            let resting_id = *queue.front().expect("levels are never empty");
            let resting = self.order_mut(resting_id);
            let mwh = remaining.min(resting.mwh - resting.filled_mwh);
            resting.filled_mwh += mwh;
            let resting_done = resting.filled_mwh == resting.mwh;
            let resting_owner = resting.participant.clone();
            if resting_done {
                resting.status = OrderStatus::Filled;
                let book = self.books.get_mut(&incoming.product).expect("checked");
                let levels = match incoming.side {
                    Side::Buy => &mut book.asks,
                    Side::Sell => &mut book.bids,
                };
                let queue = levels.get_mut(&price).expect("level exists");
                queue.pop_front();
                if queue.is_empty() {
                    levels.remove(&price);
                }
                if let Some(open) = self
                    .open
                    .get_mut(&format!("{resting_owner}/{}", incoming.product))
                {
                    open.remove(&resting_id);
                }
            }
            remaining -= mwh;
            let (buyer, seller, buy_order, sell_order) = match incoming.side {
                Side::Buy => (incoming.participant.clone(), resting_owner, id, resting_id),
                Side::Sell => (resting_owner, incoming.participant.clone(), resting_id, id),
            };
            let trade = Trade {
                id: self.trades.len() as u64 + 1,
                product: incoming.product.clone(),
                buyer,
                seller,
                buy_order,
                sell_order,
                price_cents: price,
                mwh,
            };
            self.books
                .get_mut(&incoming.product)
                .expect("checked")
                .last_price_cents = Some(price);
            self.trades.push(trade.clone());
            fills.push(trade);
        }
        let order = self.order_mut(id);
        order.filled_mwh = order.mwh - remaining;
        if remaining == 0 {
            order.status = OrderStatus::Filled;
        }
        fills
    }

    fn cancel_oldest(&mut self, participant: &str, product: &str) -> Reply {
        let Some(open) = self.open.get_mut(&format!("{participant}/{product}")) else {
            return Reply::ok(serde_json::json!({ "cancelled": null }));
        };
        let Some(id) = open.pop_first() else {
            return Reply::ok(serde_json::json!({ "cancelled": null }));
        };
        let order = self.order_mut(id);
        order.status = OrderStatus::Cancelled;
        let order = order.clone();
        let book = self.books.get_mut(product).expect("open orders have books");
        let levels = match order.side {
            Side::Buy => &mut book.bids,
            Side::Sell => &mut book.asks,
        };
        if let Some(queue) = levels.get_mut(&order.price_cents) {
            queue.retain(|o| *o != id);
            if queue.is_empty() {
                levels.remove(&order.price_cents);
            }
        }
        Reply::ok(serde_json::json!({ "cancelled": order }))
    }

    fn quote(&self, product: &str) -> Reply {
        let Some(book) = self.books.get(product) else {
            return Reply::error(400, format!("unknown product {product}"));
        };
        Reply::ok(serde_json::json!({
            "product": product,
            "bid_cents": book.bids.keys().next_back(),
            "ask_cents": book.asks.keys().next(),
            "last_cents": book.last_price_cents,
        }))
    }

    fn once(&mut self, key: &str, apply: impl FnOnce(&mut Self) -> Reply) -> Reply {
        if self.idempotency
            && let Some(reply) = self.outcomes.get(key)
        {
            return reply.clone();
        }
        let reply = apply(self);
        if self.idempotency {
            self.outcomes.insert(key.to_owned(), reply.clone());
        }
        reply
    }
}

impl StateMachine for MarketState {
    type Command = MarketCommand;

    fn is_write(command: &MarketCommand) -> bool {
        matches!(
            command,
            MarketCommand::Place { .. } | MarketCommand::CancelOldest { .. }
        )
    }

    fn apply(&mut self, command: MarketCommand) -> Reply {
        match command {
            MarketCommand::Place {
                key,
                participant,
                product,
                side,
                price_cents,
                mwh,
            } => self.once(&key.clone(), |s| {
                s.place(Order {
                    id: 0,
                    key,
                    participant,
                    product,
                    side,
                    price_cents,
                    mwh,
                    filled_mwh: 0,
                    status: OrderStatus::Open,
                })
            }),
            MarketCommand::CancelOldest {
                key,
                participant,
                product,
            } => self.once(&key, |s| s.cancel_oldest(&participant, &product)),
            MarketCommand::Quote { product } => self.quote(&product),
            MarketCommand::Trades { after, limit } => page(self.trades.iter(), after, limit),
            MarketCommand::Orders { after, limit } => page(self.orders.iter(), after, limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(key: &str, who: &str, side: Side, price_cents: u64, mwh: u64) -> MarketCommand {
        MarketCommand::Place {
            key: key.into(),
            participant: who.into(),
            product: "solar-2025".into(),
            side,
            price_cents,
            mwh,
        }
    }

    #[test]
    fn crossing_orders_trade_at_the_resting_price_in_time_priority() {
        let mut m = MarketState::new(true);
        m.apply(place("1", "a", Side::Sell, 1500, 5));
        m.apply(place("2", "b", Side::Sell, 1500, 5));
        m.apply(place("3", "c", Side::Sell, 1400, 5));
        let reply = m.apply(place("4", "d", Side::Buy, 1600, 8));
        assert_eq!(reply.status, 201);
        let fills: Vec<Trade> = serde_json::from_value(reply.body["fills"].clone()).unwrap();
        assert_eq!(
            fills
                .iter()
                .map(|t| (t.seller.as_str(), t.price_cents, t.mwh))
                .collect::<Vec<_>>(),
            [("c", 1400, 5), ("a", 1500, 3)]
        );
        assert_eq!(m.orders[0].filled_mwh, 3);
        assert_eq!(m.orders[3].status, OrderStatus::Filled);
        let quote = m.apply(MarketCommand::Quote {
            product: "solar-2025".into(),
        });
        assert_eq!(quote.body["ask_cents"], 1500);
    }

    #[test]
    fn cancel_takes_the_oldest_open_order_out_of_the_book() {
        let mut m = MarketState::new(true);
        m.apply(place("1", "a", Side::Buy, 1500, 5));
        m.apply(place("2", "a", Side::Buy, 1510, 5));
        let cancel = MarketCommand::CancelOldest {
            key: "c".into(),
            participant: "a".into(),
            product: "solar-2025".into(),
        };
        let reply = m.apply(cancel.clone());
        assert_eq!(reply.body["cancelled"]["id"], 1);
        assert_eq!(m.apply(cancel).body["cancelled"]["id"], 1); // replayed
        let fill = m.apply(place("3", "b", Side::Sell, 1400, 10));
        assert_eq!(fill.body["order"]["filled_mwh"], 5);
    }

    #[test]
    fn without_idempotency_a_retried_order_is_placed_twice() {
        let mut m = MarketState::new(false);
        m.apply(place("1", "a", Side::Buy, 1500, 5));
        m.apply(place("1", "a", Side::Buy, 1500, 5));
        assert_eq!(m.orders.len(), 2);
    }
}
