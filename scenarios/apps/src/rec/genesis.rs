//! The market's starting point: participants, their bearer tokens, the REC
//! blocks issued to them and their cash.
//!
//! The registry and accounts databases create their first state from it, the
//! load generator takes tokens from it, and the ledger checker takes the
//! initial balances from it (a test knows what it loaded into the database).
//! It derives from a fixed seed, not the run seed, so the plan of a scenario
//! does not depend on `--seed` (tokens are still not guessable from names).

use seam::Seed;
use serde::{Deserialize, Serialize};

use spec::AppSpec;

/// The products traded: a generation type and a vintage year.
pub const PRODUCTS: [&str; 3] = ["solar-2025", "wind-2025", "hydro-2024"];

/// The reference price (cents per MWh) around which participants quote.
pub const REFERENCE_PRICE_CENTS: u64 = 1_500;

/// A contiguous run of REC serial numbers, `start..end` (one REC per MWh).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SerialRange {
    /// First serial.
    pub start: u64,
    /// One past the last serial.
    pub end: u64,
}

impl SerialRange {
    /// MWh in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it holds no serial.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A block of RECs issued for one device's generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    /// The generating device.
    pub device: String,
    /// Product (type and vintage).
    pub product: String,
    /// First owner.
    pub owner: String,
    /// The serials issued.
    pub serials: SerialRange,
}

/// One participant.
#[derive(Clone, Debug)]
pub struct Participant {
    /// Account name (`p000`…).
    pub name: String,
    /// Bearer token the gateway accepts for it.
    pub token: String,
}

/// Everything a fresh market starts with.
#[derive(Clone, Debug)]
pub struct Genesis {
    /// The participants.
    pub participants: Vec<Participant>,
    /// The REC blocks issued to them.
    pub issuances: Vec<Issuance>,
    /// Cash (cents) each participant starts with.
    pub cash_cents: u64,
}

/// The fixed root from which genesis derives.
const GENESIS_SEED: u64 = 0x5245_435f_4745_4e45; // "REC_GENE"

/// Serials of different products never overlap, so a serial names one REC.
const FIRST_SERIAL: u64 = 1_000_000;

impl Genesis {
    /// The genesis a scenario's `[app]` describes.
    pub fn new(app: &AppSpec) -> Genesis {
        let seed = Seed::new(GENESIS_SEED).child("participants");
        let participants: Vec<Participant> = (0..app.participants.max(2))
            .map(|i| {
                let name = format!("p{i:03}");
                let token: String = seed.child(&name).bytes32()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Participant { name, token }
            })
            .collect();
        let mut next_serial = FIRST_SERIAL;
        let mut issuances = Vec::new();
        for product in PRODUCTS {
            let kind = product.split('-').next().unwrap_or(product);
            for participant in &participants {
                let serials = SerialRange {
                    start: next_serial,
                    end: next_serial + app.initial_mwh,
                };
                next_serial = serials.end;
                issuances.push(Issuance {
                    device: format!("{kind}-farm-{}", participant.name),
                    product: product.to_owned(),
                    owner: participant.name.clone(),
                    serials,
                });
            }
        }
        Genesis {
            participants,
            issuances,
            cash_cents: app.initial_cash_cents,
        }
    }

    /// The participant a bearer token belongs to.
    pub fn participant_of(&self, token: &str) -> Option<&str> {
        self.participants
            .iter()
            .find(|p| p.token == token)
            .map(|p| p.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_never_overlap_and_tokens_differ() {
        let genesis = Genesis::new(&AppSpec::default());
        let mut ranges: Vec<SerialRange> = genesis.issuances.iter().map(|i| i.serials).collect();
        ranges.sort();
        assert!(ranges.windows(2).all(|w| w[0].end <= w[1].start));
        let mut tokens: Vec<&str> = genesis
            .participants
            .iter()
            .map(|p| p.token.as_str())
            .collect();
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), genesis.participants.len());
        let first = &genesis.participants[0];
        assert_eq!(
            genesis.participant_of(&first.token),
            Some(first.name.as_str())
        );
        assert_eq!(genesis.participant_of("nope"), None);
    }
}
