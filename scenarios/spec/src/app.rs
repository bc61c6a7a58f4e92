//! `[app]`: settings of the REC trading application.

use std::time::Duration;

use serde::Deserialize;

use super::Dur;

/// How the REC application behaves. Every field has a default, so a
/// scenario without `[app]` runs the correct (idempotent) application.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppSpec {
    /// When `false`, `registry`, `accounts` and `market` ignore idempotency
    /// keys and apply every retried command again. Gateway and settlement
    /// still retry calls whose outcome they did not see, so a retry after a
    /// lost response (a partition, a crash) applies twice. This is the
    /// planted bug the ledger checks must catch; keep it `true` otherwise.
    pub idempotency: bool,
    /// Trading participants (each gets RECs, cash and a bearer token).
    pub participants: u32,
    /// RECs (MWh) each participant holds per product at the start.
    pub initial_mwh: u64,
    /// Cash (cents) each participant holds at the start.
    pub initial_cash_cents: u64,
    /// How long an idle settlement replica waits before looking for new
    /// trades again (a busy one keeps going).
    pub settlement_poll: Dur,
    /// How long a settlement replica owns a trade it claimed; after that,
    /// another replica may take the trade over (crash recovery).
    pub settlement_lease: Dur,
    /// Deadline of one service-to-service call (one try).
    pub call_timeout: Dur,
    /// Tries of a service-to-service call that failed without an answer.
    pub call_tries: u32,
    /// How long the final read waits for settlement to drain.
    pub drain_max: Dur,
}

impl Default for AppSpec {
    fn default() -> Self {
        AppSpec {
            idempotency: true,
            participants: 40,
            initial_mwh: 20_000,
            initial_cash_cents: 100_000_000,
            settlement_poll: Dur(Duration::from_secs(1)),
            settlement_lease: Dur(Duration::from_secs(5)),
            call_timeout: Dur(Duration::from_secs(2)),
            call_tries: 3,
            drain_max: Dur(Duration::from_secs(120)),
        }
    }
}
