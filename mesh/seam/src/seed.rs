//! The seed tree: one `u64` run seed, from which every random stream derives.
//!
//! Each subsystem asks for a child by label, so a new draw in one subsystem
//! never shifts another's stream, and nothing is global: two runs in one
//! process never share state.

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use sha2::{Digest, Sha256};

/// A node in the seed tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seed(u64);

impl Seed {
    /// The root of a run.
    pub fn new(run_seed: u64) -> Self {
        Seed(run_seed)
    }

    /// The raw value (for turmoil's `rng_seed` and for printing).
    pub fn value(self) -> u64 {
        self.0
    }

    /// Derives an independent child seed for `label`.
    ///
    /// SHA-256 over (parent, label) rather than an RNG draw: the child depends
    /// only on its path in the tree, not on how many siblings were drawn first.
    pub fn child(self, label: &str) -> Seed {
        let mut hasher = Sha256::new();
        hasher.update(self.0.to_le_bytes());
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Seed(u64::from_le_bytes(first))
    }

    /// A ChaCha stream for this node.
    pub fn rng(self) -> ChaCha12Rng {
        ChaCha12Rng::seed_from_u64(self.0)
    }

    /// 32 bytes of key material for this node (for deterministic keys).
    pub fn bytes32(self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"meshsim-key-material");
        hasher.update(self.0.to_le_bytes());
        hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn children_are_stable_and_distinct() {
        let root = Seed::new(7);
        assert_eq!(root.child("net"), root.child("net"));
        assert_ne!(root.child("net"), root.child("faults"));
        assert_ne!(Seed::new(8).child("net"), root.child("net"));
    }

    #[test]
    fn drawing_from_one_stream_does_not_shift_another() {
        let root = Seed::new(1);
        let mut arrivals = root.child("arrivals").rng();
        let expected: u64 = arrivals.random();
        let mut faults = root.child("faults").rng();
        let _: [u64; 4] = faults.random();
        let mut arrivals_again = root.child("arrivals").rng();
        assert_eq!(arrivals_again.random::<u64>(), expected);
    }
}
