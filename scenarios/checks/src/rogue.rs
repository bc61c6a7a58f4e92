//! What the rogue hosts tried and what they got back: the evidence the
//! security checks judge. The engine's rogue hosts write it; only checks
//! read it, so it lives here, below the engine.

use std::sync::{Arc, Mutex};

use spec::mesh::RogueKind;

/// Attempts kept per run.
const ATTEMPTS_MAX: usize = 100_000;
/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RogueOutcome {
    /// No HTTP response: refused handshake, reset, or silence.
    NoResponse(String),
    /// An HTTP status came back.
    Status(u16),
}

/// One attempt by a rogue.
#[derive(Clone, Debug)]
pub struct RogueAttempt {
    /// Rogue host.
    pub rogue: String,
    /// How it attacks.
    pub kind: RogueKind,
    /// The identity it presented, if any.
    pub principal: Option<String>,
    /// Attacked service.
    pub service: String,
    /// Replica host.
    pub host: String,
    /// Method.
    pub method: String,
    /// The raw request target sent.
    pub target: String,
    /// Whether this is the allowed control request.
    pub control: bool,
    /// What came back.
    pub outcome: RogueOutcome,
}

/// Every rogue attempt of a run. Cloning shares it.
#[derive(Clone, Default)]
pub struct RogueLog(Arc<Mutex<Vec<RogueAttempt>>>);

impl RogueLog {
    /// Keeps `attempt`, up to a bound so a long run cannot grow without limit.
    pub fn record(&self, attempt: RogueAttempt) {
        let mut attempts = self.0.lock().expect("rogue log poisoned");
        if attempts.len() < ATTEMPTS_MAX {
            attempts.push(attempt);
        }
    }

    /// A copy of the attempts so far.
    pub fn attempts(&self) -> Vec<RogueAttempt> {
        self.0.lock().expect("rogue log poisoned").clone()
    }
}

/// The path-normalization corpus (notes/anchors.md: Envoy CVE-2019-9901,
/// Istio CVE-2021-31920/39156, Consul CVE-2024-10005) around one private
/// path, for a policy that allows only `/public*`.
pub fn corpus(private_path: &str) -> Vec<String> {
    let p = private_path.trim_start_matches('/');
    vec![
        format!("/{p}"),
        format!("/public/../{p}"),
        format!("/public/./../{p}"),
        format!("/public/%2E%2E/{p}"),
        format!("/public/%2e%2e/{p}"),
        format!("/public/%2e/%2e%2e/{p}"),
        format!("//{p}"),
        format!("/public/..//{p}"),
        format!("/public%2F..%2F{p}"),
        format!("/public/..%2F{p}"),
        format!("/public%5C..%5C{p}"),
        format!("/public\\..\\{p}"),
        format!("/{p}#/public"),
        format!("/public/../{p}#fragment"),
        format!("/%2E%2E/public/../{p}"),
    ]
}
