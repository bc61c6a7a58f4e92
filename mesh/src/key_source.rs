//! Where key material comes from: the run's seed tree (the simulation, and
//! real runs under `--insecure-derived-keys`) or the operating system's
//! CSPRNG (every other real run).
//!
//! A key derived from the seed is public to anyone who knows the seed, and
//! the seed is in the scenario file. That is what makes a simulated run
//! replay byte for byte, and it is why a real mesh must never use it.

use seam::Seed;

use crate::MeshError;

/// How a composition root wants keys and tokens made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// From the seed tree: replayable, and recomputable by anyone who knows
    /// the seed. The simulation's mode.
    #[default]
    Derived,
    /// From the operating system's CSPRNG: nobody can recompute them.
    Os,
}

impl KeyMode {
    /// The source of one host's keys (`seed` is the host's seed node).
    pub fn source(self, seed: Seed) -> KeySource {
        match self {
            KeyMode::Derived => KeySource::Derived(seed),
            KeyMode::Os => KeySource::Os,
        }
    }
}

/// A node that key material is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A node of the seed tree: the same label path gives the same bytes.
    Derived(Seed),
    /// The OS CSPRNG: every draw is fresh.
    Os,
}

impl From<Seed> for KeySource {
    fn from(seed: Seed) -> Self {
        KeySource::Derived(seed)
    }
}

impl KeySource {
    /// The node for `label` (the OS has no tree: it stays the OS).
    pub fn child(self, label: &str) -> Self {
        match self {
            KeySource::Derived(seed) => KeySource::Derived(seed.child(label)),
            KeySource::Os => KeySource::Os,
        }
    }

    /// 32 bytes of key material.
    pub fn bytes32(self) -> Result<[u8; 32], MeshError> {
        match self {
            KeySource::Derived(seed) => Ok(seed.bytes32()),
            KeySource::Os => os_bytes32(),
        }
    }

    /// A bearer token, hex: 256 bits from the OS; 128 bits when derived
    /// (the length every recorded simulation has).
    pub fn token(self) -> Result<String, MeshError> {
        let bytes = self.bytes32()?;
        Ok(match self {
            KeySource::Derived(_) => hex::encode(&bytes[..16]),
            KeySource::Os => hex::encode(bytes),
        })
    }
}

/// The one place the mesh reads OS randomness. It never runs inside the
/// simulation: every composition root of a simulated run builds its
/// installs with [`KeyMode::Derived`], and only real mode asks for
/// [`KeyMode::Os`]. ring's `SystemRandom` (behind rustls's ring provider)
/// is `getrandom(2)` on Linux.
fn os_bytes32() -> Result<[u8; 32], MeshError> {
    let mut bytes = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| MeshError::Cert("the OS random number generator failed".into()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_bytes_replay_and_os_bytes_never_repeat() {
        let derived = KeySource::Derived(Seed::new(1)).child("ca");
        assert_eq!(derived.bytes32().unwrap(), derived.bytes32().unwrap());
        let a = KeySource::Os.child("ca").bytes32().unwrap();
        let b = KeySource::Os.child("ca").bytes32().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, derived.bytes32().unwrap());
        assert_eq!(KeySource::Os.token().unwrap().len(), 64);
    }
}
