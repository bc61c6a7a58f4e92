//! `registry`: RECs as serial ranges, who owns them, and their retirement.
//!
//! The state machine lives in the `registry-db` host; the `registry` tier
//! authorizes callers and forwards (see [`super::tier`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::genesis::{Genesis, Issuance, SerialRange};
use super::store::{Reply, StateMachine};

/// What the registry accepts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegistryCommand {
    /// Move `mwh` RECs of `product` from `from` to `to` (settlement only).
    Transfer {
        /// Idempotency key.
        key: String,
        /// Product.
        product: String,
        /// Seller.
        from: String,
        /// Buyer.
        to: String,
        /// How many.
        mwh: u64,
    },
    /// Retire `mwh` of `owner`'s RECs: they count toward a compliance
    /// obligation and may never move again (gateway only).
    Retire {
        /// Idempotency key.
        key: String,
        /// Owner (and beneficiary).
        owner: String,
        /// Product.
        product: String,
        /// How many.
        mwh: u64,
    },
    /// Active MWh of `owner` in `product`.
    Balance {
        /// Owner.
        owner: String,
        /// Product.
        product: String,
    },
    /// A page of every serial range (active and retired).
    Holdings {
        /// Items to skip.
        after: u64,
        /// Items at most.
        limit: u64,
    },
    /// A page of the journal of applied transfers and retirements.
    Journal {
        /// Items to skip.
        after: u64,
        /// Items at most.
        limit: u64,
    },
}

/// A range in the final state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holding {
    /// Owner.
    pub owner: String,
    /// Product.
    pub product: String,
    /// Serials.
    pub serials: SerialRange,
    /// The key of the retirement, if retired.
    pub retired_by: Option<String>,
}

/// One applied change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The caller's idempotency key.
    pub key: String,
    /// `transfer` or `retire`.
    pub kind: String,
    /// Product.
    pub product: String,
    /// From (the owner, for a retirement).
    pub from: String,
    /// To (empty for a retirement).
    pub to: String,
    /// Serials moved or retired.
    pub serials: Vec<SerialRange>,
}

/// The registry database.
#[derive(Serialize, Deserialize)]
pub struct RegistryState {
    idempotency: bool,
    issuances: Vec<Issuance>,
    /// owner → product → active ranges.
    active: BTreeMap<String, BTreeMap<String, Vec<SerialRange>>>,
    retired: Vec<Holding>,
    journal: Vec<RegistryEntry>,
    outcomes: BTreeMap<String, Reply>,
}

impl RegistryState {
    /// A registry that has issued the genesis blocks.
    pub fn new(genesis: &Genesis, idempotency: bool) -> Self {
        let mut active: BTreeMap<String, BTreeMap<String, Vec<SerialRange>>> = BTreeMap::new();
        for issuance in &genesis.issuances {
            active
                .entry(issuance.owner.clone())
                .or_default()
                .entry(issuance.product.clone())
                .or_default()
                .push(issuance.serials);
        }
        RegistryState {
            idempotency,
            issuances: genesis.issuances.clone(),
            active,
            retired: Vec::new(),
            journal: Vec::new(),
            outcomes: BTreeMap::new(),
        }
    }

    fn balance(&self, owner: &str, product: &str) -> u64 {
        self.active
            .get(owner)
            .and_then(|p| p.get(product))
            .map_or(0, |ranges| ranges.iter().map(SerialRange::len).sum())
    }

    /// Removes `mwh` serials from `owner`'s active ranges (newest first).
    fn take(&mut self, owner: &str, product: &str, mwh: u64) -> Option<Vec<SerialRange>> {
        if mwh == 0 || self.balance(owner, product) < mwh {
            return None;
        }
        let ranges = self.active.get_mut(owner)?.get_mut(product)?;
        let mut taken = Vec::new();
        let mut missing = mwh;
        while missing > 0 {
            let last = ranges.last_mut().expect("balance checked");
            if last.len() <= missing {
                missing -= last.len();
                taken.push(ranges.pop().expect("non-empty"));
            } else {
                let split = last.end - missing;
                taken.push(SerialRange {
                    start: split,
                    end: last.end,
                });
                last.end = split;
                missing = 0;
            }
        }
        Some(taken)
    }

    fn transfer(
        &mut self,
        key: String,
        product: String,
        from: String,
        to: String,
        mwh: u64,
    ) -> Reply {
        let Some(serials) = self.take(&from, &product, mwh) else {
            return Reply::error(
                409,
                format!("{from} holds fewer than {mwh} MWh of {product}"),
            );
        };
        self.active
            .entry(to.clone())
            .or_default()
            .entry(product.clone())
            .or_default()
            .extend(serials.iter().copied());
        let reply = Reply::ok(serde_json::json!({ "serials": serials }));
        self.journal.push(RegistryEntry {
            key,
            kind: "transfer".into(),
            product,
            from,
            to,
            serials,
        });
        reply
    }

    fn retire(&mut self, key: String, owner: String, product: String, mwh: u64) -> Reply {
        let Some(serials) = self.take(&owner, &product, mwh) else {
            return Reply::error(
                409,
                format!("{owner} holds fewer than {mwh} MWh of {product}"),
            );
        };
        for range in &serials {
            self.retired.push(Holding {
                owner: owner.clone(),
                product: product.clone(),
                serials: *range,
                retired_by: Some(key.clone()),
            });
        }
        let reply = Reply::ok(serde_json::json!({
            "key": key, "owner": owner, "product": product, "mwh": mwh, "serials": serials,
        }));
        self.journal.push(RegistryEntry {
            key,
            kind: "retire".into(),
            product,
            from: owner,
            to: String::new(),
            serials,
        });
        reply
    }

    fn holdings(&self) -> impl Iterator<Item = Holding> + '_ {
        let active = self.active.iter().flat_map(|(owner, products)| {
            products.iter().flat_map(move |(product, ranges)| {
                ranges.iter().map(move |serials| Holding {
                    owner: owner.clone(),
                    product: product.clone(),
                    serials: *serials,
                    retired_by: None,
                })
            })
        });
        active.chain(self.retired.iter().cloned())
    }

    /// Replays the stored answer to a key already applied (when idempotent).
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

/// A page of items as `{items, next}` (`next` absent on the last page).
pub fn page<T: Serialize>(items: impl Iterator<Item = T>, after: u64, limit: u64) -> Reply {
    let limit = limit.clamp(1, 5_000);
    let mut page: Vec<T> = items
        .skip(after as usize)
        .take(limit as usize + 1)
        .collect();
    let more = page.len() as u64 > limit;
    page.truncate(limit as usize);
    let next = more.then_some(after + limit);
    Reply::ok(serde_json::json!({ "items": page, "next": next }))
}

impl StateMachine for RegistryState {
    type Command = RegistryCommand;

    fn is_write(command: &RegistryCommand) -> bool {
        matches!(
            command,
            RegistryCommand::Transfer { .. } | RegistryCommand::Retire { .. }
        )
    }

    fn apply(&mut self, command: RegistryCommand) -> Reply {
        match command {
            RegistryCommand::Transfer {
                key,
                product,
                from,
                to,
                mwh,
            } => self.once(&key.clone(), |s| s.transfer(key, product, from, to, mwh)),
            RegistryCommand::Retire {
                key,
                owner,
                product,
                mwh,
            } => self.once(&key.clone(), |s| s.retire(key, owner, product, mwh)),
            RegistryCommand::Balance { owner, product } => {
                Reply::ok(serde_json::json!({ "mwh": self.balance(&owner, &product) }))
            }
            RegistryCommand::Holdings { after, limit } => page(self.holdings(), after, limit),
            RegistryCommand::Journal { after, limit } => page(self.journal.iter(), after, limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spec::AppSpec;

    fn registry(idempotency: bool) -> RegistryState {
        let app = AppSpec {
            participants: 2,
            initial_mwh: 100,
            ..AppSpec::default()
        };
        RegistryState::new(&Genesis::new(&app), idempotency)
    }

    fn transfer(key: &str, mwh: u64) -> RegistryCommand {
        RegistryCommand::Transfer {
            key: key.into(),
            product: "solar-2025".into(),
            from: "p000".into(),
            to: "p001".into(),
            mwh,
        }
    }

    #[test]
    fn transfers_split_ranges_and_refuse_overdrafts() {
        let mut r = registry(true);
        assert_eq!(r.apply(transfer("a", 30)).status, 200);
        assert_eq!(r.balance("p000", "solar-2025"), 70);
        assert_eq!(r.balance("p001", "solar-2025"), 130);
        assert_eq!(r.apply(transfer("b", 71)).status, 409);
        let total: u64 = r.holdings().map(|h| h.serials.len()).sum();
        assert_eq!(total, 600);
    }

    #[test]
    fn a_retried_key_applies_once_only_when_idempotent() {
        let mut r = registry(true);
        let first = r.apply(transfer("k", 10));
        assert_eq!(r.apply(transfer("k", 10)), first);
        assert_eq!(r.balance("p000", "solar-2025"), 90);
        let mut buggy = registry(false);
        buggy.apply(transfer("k", 10));
        buggy.apply(transfer("k", 10));
        assert_eq!(buggy.balance("p000", "solar-2025"), 80);
    }

    #[test]
    fn retired_serials_never_move_again() {
        let mut r = registry(true);
        let retire = RegistryCommand::Retire {
            key: "r".into(),
            owner: "p000".into(),
            product: "solar-2025".into(),
            mwh: 100,
        };
        assert_eq!(r.apply(retire).status, 200);
        assert_eq!(r.apply(transfer("t", 1)).status, 409);
        assert_eq!(r.holdings().filter(|h| h.retired_by.is_some()).count(), 1);
    }
}
