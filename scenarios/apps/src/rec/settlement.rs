//! `settlement`: for every trade, moves RECs (registry) and cash (accounts)
//! exactly once, as a saga whose progress lives in `settlement-db`.
//!
//! The market's trade log is the outbox. Every settlement replica runs a
//! worker that copies new trades into `settlement-db` (guarded by a cursor,
//! so each trade is ingested once), claims a batch under a lease, and drives
//! each claimed trade forward one recorded step at a time:
//! `new` → RECs moved → settled, or, when the buyer cannot pay, RECs moved
//! back (`compensating`) → rejected. A replica that crashes or is cut off
//! loses its lease and another replica continues from the recorded step.
//! The step that was in flight may run again: its idempotency key
//! (`trade-<id>-recs`, `-cash`, `-undo`) is what keeps that retry from
//! applying twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use seam::HostEnv;
use serde::{Deserialize, Serialize};

use super::accounts::AccountsCommand;
use super::call::{Caller, Outcome};
use super::market::{MarketCommand, Trade};
use super::registry::{RegistryCommand, page};
use super::store::{Reply, StateMachine};
use spec::AppSpec;

/// Where a trade's saga stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Nothing moved yet.
    New,
    /// RECs are with the buyer; cash not yet paid.
    RecsMoved,
    /// The buyer could not pay: RECs are going back.
    Compensating,
    /// Cash paid: done.
    Settled,
    /// Nothing (net) moved: done.
    Rejected,
}

/// A trade and its saga.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saga {
    /// The trade.
    pub trade: Trade,
    /// Progress.
    pub step: Step,
    /// The replica holding the lease.
    pub holder: String,
    /// Lease end, in run milliseconds.
    pub lease_until_ms: u64,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// What settlement-db accepts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SettlementCommand {
    /// Append trades that follow `from_cursor` (refused if another replica
    /// moved the cursor first).
    Ingest {
        /// The cursor the caller read.
        from_cursor: u64,
        /// Trades with ids above it, in order.
        trades: Vec<Trade>,
    },
    /// Lease unfinished sagas whose lease has expired.
    Claim {
        /// Replica name.
        holder: String,
        /// The caller's run clock, in milliseconds.
        now_ms: u64,
        /// Lease length.
        lease_ms: u64,
        /// Sagas at most.
        limit: u64,
    },
    /// Record a step.
    Progress {
        /// Trade.
        trade_id: u64,
        /// The step reached.
        step: Step,
        /// Why, for a rejection.
        reason: Option<String>,
    },
    /// Cursor and counts.
    Status,
    /// A page of every saga.
    Sagas {
        /// Items to skip.
        after: u64,
        /// Items at most.
        limit: u64,
    },
}

/// The settlement database.
#[derive(Default, Serialize, Deserialize)]
pub struct SettlementState {
    cursor: u64,
    sagas: BTreeMap<u64, Saga>,
    unfinished: BTreeSet<u64>,
}

impl SettlementState {
    fn ingest(&mut self, from_cursor: u64, trades: Vec<Trade>) -> Reply {
        if from_cursor != self.cursor {
            return Reply::error(409, format!("cursor is {}", self.cursor));
        }
        for trade in trades {
            if trade.id <= self.cursor {
                continue;
            }
            self.cursor = trade.id;
            self.unfinished.insert(trade.id);
            self.sagas.insert(
                trade.id,
                Saga {
                    trade,
                    step: Step::New,
                    holder: String::new(),
                    lease_until_ms: 0,
                    reason: None,
                },
            );
        }
        Reply::ok(serde_json::json!({ "cursor": self.cursor }))
    }

    fn claim(&mut self, holder: String, now_ms: u64, lease_ms: u64, limit: u64) -> Reply {
        let mut claimed = Vec::new();
        for id in &self.unfinished {
            if claimed.len() as u64 >= limit {
                break;
            }
            let saga = self.sagas.get_mut(id).expect("unfinished sagas exist");
            if saga.lease_until_ms <= now_ms {
                saga.holder = holder.clone();
                saga.lease_until_ms = now_ms + lease_ms;
                claimed.push(saga.clone());
            }
        }
        Reply::ok(claimed)
    }

    fn progress(&mut self, trade_id: u64, step: Step, reason: Option<String>) -> Reply {
        let Some(saga) = self.sagas.get_mut(&trade_id) else {
            return Reply::error(404, format!("no trade {trade_id}"));
        };
        // Steps only move forward: a stale replica cannot undo progress.
        if matches!(saga.step, Step::Settled | Step::Rejected) {
            return Reply::ok(saga.step);
        }
        saga.step = step;
        saga.reason = reason;
        if matches!(step, Step::Settled | Step::Rejected) {
            self.unfinished.remove(&trade_id);
        }
        Reply::ok(step)
    }
}

impl StateMachine for SettlementState {
    type Command = SettlementCommand;

    fn is_write(command: &SettlementCommand) -> bool {
        !matches!(
            command,
            SettlementCommand::Status | SettlementCommand::Sagas { .. }
        )
    }

    fn apply(&mut self, command: SettlementCommand) -> Reply {
        match command {
            SettlementCommand::Ingest {
                from_cursor,
                trades,
            } => self.ingest(from_cursor, trades),
            SettlementCommand::Claim {
                holder,
                now_ms,
                lease_ms,
                limit,
            } => self.claim(holder, now_ms, lease_ms, limit),
            SettlementCommand::Progress {
                trade_id,
                step,
                reason,
            } => self.progress(trade_id, step, reason),
            SettlementCommand::Status => Reply::ok(serde_json::json!({
                "cursor": self.cursor,
                "unfinished": self.unfinished.len(),
                "sagas": self.sagas.len(),
            })),
            SettlementCommand::Sagas { after, limit } => page(self.sagas.values(), after, limit),
        }
    }
}

/// Trades one claim takes at most.
const CLAIM_BATCH: u64 = 32;
/// Trades one ingest copies at most.
const INGEST_BATCH: u64 = 500;

/// The saga worker of one settlement replica.
pub struct Worker {
    env: HostEnv,
    caller: Caller,
    poll: Duration,
    lease: Duration,
}

impl Worker {
    /// A worker with the scenario's timing.
    pub fn new(env: HostEnv, app: &AppSpec) -> Arc<Worker> {
        Arc::new(Worker {
            caller: Caller::new(env.clone(), app.call_timeout.0, app.call_tries),
            env,
            poll: app.settlement_poll.0,
            lease: app.settlement_lease.0,
        })
    }

    /// Runs until the host stops. It sleeps `poll` only when a round found
    /// nothing to do, so an idle market costs few calls and a busy one is
    /// settled back to back.
    pub async fn run(self: Arc<Self>) {
        loop {
            let ingested = self.ingest().await;
            let claimed = self.claim().await;
            if ingested == 0 && claimed.is_empty() {
                tokio::time::sleep(self.poll).await;
                continue;
            }
            let mut running = tokio::task::JoinSet::new();
            for saga in claimed {
                let worker = self.clone();
                // A saga that outlives its lease could race the next holder;
                // stop it first (the next holder redoes the step in flight).
                let budget = self.lease.mul_f64(0.8);
                seam::task::spawn_into(&mut running, async move {
                    let _ = tokio::time::timeout(budget, worker.settle(saga)).await;
                });
            }
            while running.join_next().await.is_some() {}
            // Bounded pace even when every call fails fast (e.g. 503s).
            tokio::time::sleep(self.poll / 10).await;
        }
    }

    /// Copies new trades from the market into settlement-db; how many.
    async fn ingest(&self) -> usize {
        let status = self
            .caller
            .command("settlement-db", &SettlementCommand::Status)
            .await;
        let Some(cursor) = status.json().and_then(|s| s["cursor"].as_u64()) else {
            return 0;
        };
        let feed = MarketCommand::Trades {
            after: cursor,
            limit: INGEST_BATCH,
        };
        let Some(page) = self.caller.command("market", &feed).await.json() else {
            return 0;
        };
        let Ok(trades) = serde_json::from_value::<Vec<Trade>>(page["items"].clone()) else {
            return 0;
        };
        let count = trades.len();
        if count > 0 {
            let ingest = SettlementCommand::Ingest {
                from_cursor: cursor,
                trades,
            };
            self.caller.command("settlement-db", &ingest).await;
        }
        count
    }

    async fn claim(&self) -> Vec<Saga> {
        let claim = SettlementCommand::Claim {
            holder: self.env.name.clone(),
            now_ms: self.env.clock.run_elapsed().as_millis() as u64,
            lease_ms: self.lease.as_millis() as u64,
            limit: CLAIM_BATCH,
        };
        self.caller
            .command("settlement-db", &claim)
            .await
            .json()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    async fn record(&self, trade_id: u64, step: Step, reason: Option<&str>) -> bool {
        let progress = SettlementCommand::Progress {
            trade_id,
            step,
            reason: reason.map(str::to_owned),
        };
        self.caller
            .command("settlement-db", &progress)
            .await
            .is_success()
    }

    /// Moves one saga as far as it goes; stops at the first step whose
    /// outcome is unknown (the lease then expires and someone retries).
    async fn settle(&self, saga: Saga) {
        let trade = &saga.trade;
        let mut step = saga.step;
        if step == Step::New {
            let transfer = RegistryCommand::Transfer {
                key: format!("trade-{}-recs", trade.id),
                product: trade.product.clone(),
                from: trade.seller.clone(),
                to: trade.buyer.clone(),
                mwh: trade.mwh,
            };
            step = match self.caller.command("registry", &transfer).await {
                outcome if outcome.is_success() => Step::RecsMoved,
                Outcome::Answered { status: 409, .. } => {
                    self.record(trade.id, Step::Rejected, Some("seller lacks RECs"))
                        .await;
                    return;
                }
                _ => return,
            };
            if !self.record(trade.id, step, None).await {
                return;
            }
        }
        if step == Step::RecsMoved {
            let pay = AccountsCommand::Pay {
                key: format!("trade-{}-cash", trade.id),
                from: trade.buyer.clone(),
                to: trade.seller.clone(),
                cents: trade.price_cents * trade.mwh,
            };
            match self.caller.command("accounts", &pay).await {
                outcome if outcome.is_success() => {
                    self.record(trade.id, Step::Settled, None).await;
                    return;
                }
                Outcome::Answered { status: 409, .. } => {
                    step = Step::Compensating;
                    if !self.record(trade.id, step, None).await {
                        return;
                    }
                }
                _ => return,
            }
        }
        if step == Step::Compensating {
            let undo = RegistryCommand::Transfer {
                key: format!("trade-{}-undo", trade.id),
                product: trade.product.clone(),
                from: trade.buyer.clone(),
                to: trade.seller.clone(),
                mwh: trade.mwh,
            };
            if self.caller.command("registry", &undo).await.is_success() {
                self.record(trade.id, Step::Rejected, Some("buyer lacks cash"))
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(id: u64) -> Trade {
        Trade {
            id,
            product: "solar-2025".into(),
            buyer: "b".into(),
            seller: "s".into(),
            buy_order: 1,
            sell_order: 2,
            price_cents: 10,
            mwh: 1,
        }
    }

    #[test]
    fn ingest_is_guarded_by_the_cursor() {
        let mut s = SettlementState::default();
        assert_eq!(
            s.apply(SettlementCommand::Ingest {
                from_cursor: 0,
                trades: vec![trade(1), trade(2)]
            })
            .status,
            200
        );
        // A second replica that read the old cursor cannot ingest again.
        assert_eq!(
            s.apply(SettlementCommand::Ingest {
                from_cursor: 0,
                trades: vec![trade(1), trade(2)]
            })
            .status,
            409
        );
        assert_eq!(s.sagas.len(), 2);
    }

    #[test]
    fn leases_hand_a_stalled_saga_to_another_replica() {
        let mut s = SettlementState::default();
        s.apply(SettlementCommand::Ingest {
            from_cursor: 0,
            trades: vec![trade(1)],
        });
        let claim = |holder: &str, now_ms| SettlementCommand::Claim {
            holder: holder.into(),
            now_ms,
            lease_ms: 1_000,
            limit: 10,
        };
        let first: Vec<Saga> = serde_json::from_value(s.apply(claim("a", 0)).body).unwrap();
        assert_eq!(first.len(), 1);
        let during: Vec<Saga> = serde_json::from_value(s.apply(claim("b", 500)).body).unwrap();
        assert!(during.is_empty());
        s.apply(SettlementCommand::Progress {
            trade_id: 1,
            step: Step::RecsMoved,
            reason: None,
        });
        let after: Vec<Saga> = serde_json::from_value(s.apply(claim("b", 1_000)).body).unwrap();
        assert_eq!(after[0].step, Step::RecsMoved);
        s.apply(SettlementCommand::Progress {
            trade_id: 1,
            step: Step::Settled,
            reason: None,
        });
        s.apply(SettlementCommand::Progress {
            trade_id: 1,
            step: Step::New,
            reason: None,
        });
        assert_eq!(s.sagas[&1].step, Step::Settled);
        assert!(s.unfinished.is_empty());
    }
}
