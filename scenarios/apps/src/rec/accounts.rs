//! `accounts`: participants, their bearer tokens and their cash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::genesis::Genesis;
use super::registry::page;
use super::store::{Reply, StateMachine};

/// What accounts accepts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AccountsCommand {
    /// Which participant a bearer token belongs to (gateway).
    Authenticate {
        /// The token.
        token: String,
    },
    /// Move cash (settlement only).
    Pay {
        /// Idempotency key.
        key: String,
        /// Payer.
        from: String,
        /// Payee.
        to: String,
        /// Amount.
        cents: u64,
    },
    /// Every balance.
    Balances,
    /// A page of the journal of applied payments.
    Journal {
        /// Items to skip.
        after: u64,
        /// Items at most.
        limit: u64,
    },
}

/// One applied payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// The caller's idempotency key.
    pub key: String,
    /// Payer.
    pub from: String,
    /// Payee.
    pub to: String,
    /// Amount.
    pub cents: u64,
}

/// The accounts database.
#[derive(Serialize, Deserialize)]
pub struct AccountsState {
    idempotency: bool,
    tokens: BTreeMap<String, String>,
    balances: BTreeMap<String, u64>,
    journal: Vec<Payment>,
    outcomes: BTreeMap<String, Reply>,
}

impl AccountsState {
    /// Accounts holding the genesis cash.
    pub fn new(genesis: &Genesis, idempotency: bool) -> Self {
        AccountsState {
            idempotency,
            tokens: genesis
                .participants
                .iter()
                .map(|p| (p.token.clone(), p.name.clone()))
                .collect(),
            balances: genesis
                .participants
                .iter()
                .map(|p| (p.name.clone(), genesis.cash_cents))
                .collect(),
            journal: Vec::new(),
            outcomes: BTreeMap::new(),
        }
    }

    fn pay(&mut self, payment: Payment) -> Reply {
        let from_balance = self.balances.get(&payment.from).copied().unwrap_or(0);
        if !self.balances.contains_key(&payment.to) {
            return Reply::error(404, format!("no account {}", payment.to));
        }
        if from_balance < payment.cents {
            return Reply::error(
                409,
                format!("{} cannot pay {}", payment.from, payment.cents),
            );
        }
        self.balances
            .insert(payment.from.clone(), from_balance - payment.cents);
        *self.balances.entry(payment.to.clone()).or_default() += payment.cents;
        let reply = Reply::ok(serde_json::json!({ "paid": payment.cents }));
        self.journal.push(payment);
        reply
    }
}

impl StateMachine for AccountsState {
    type Command = AccountsCommand;

    fn is_write(command: &AccountsCommand) -> bool {
        matches!(command, AccountsCommand::Pay { .. })
    }

    fn apply(&mut self, command: AccountsCommand) -> Reply {
        match command {
            AccountsCommand::Authenticate { token } => match self.tokens.get(&token) {
                Some(name) => Reply::ok(serde_json::json!({ "participant": name })),
                None => Reply::error(401, "unknown token"),
            },
            AccountsCommand::Pay {
                key,
                from,
                to,
                cents,
            } => {
                if self.idempotency
                    && let Some(reply) = self.outcomes.get(&key)
                {
                    return reply.clone();
                }
                let reply = self.pay(Payment {
                    key: key.clone(),
                    from,
                    to,
                    cents,
                });
                if self.idempotency {
                    self.outcomes.insert(key, reply.clone());
                }
                reply
            }
            AccountsCommand::Balances => Reply::ok(&self.balances),
            AccountsCommand::Journal { after, limit } => page(self.journal.iter(), after, limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spec::AppSpec;

    #[test]
    fn payments_conserve_cash_and_refuse_overdrafts() {
        let genesis = Genesis::new(&AppSpec {
            participants: 2,
            initial_cash_cents: 100,
            ..AppSpec::default()
        });
        let mut accounts = AccountsState::new(&genesis, true);
        let pay = |key: &str, cents| AccountsCommand::Pay {
            key: key.into(),
            from: "p000".into(),
            to: "p001".into(),
            cents,
        };
        assert_eq!(accounts.apply(pay("a", 60)).status, 200);
        assert_eq!(accounts.apply(pay("a", 60)).status, 200); // replayed, not re-applied
        assert_eq!(accounts.apply(pay("b", 60)).status, 409);
        assert_eq!(accounts.balances["p000"] + accounts.balances["p001"], 200);
        let token = genesis.participants[1].token.clone();
        let reply = accounts.apply(AccountsCommand::Authenticate { token });
        assert_eq!(reply.body["participant"], "p001");
    }
}
