//! Root and issuer rotation: the steps an operator drives through the CA's
//! `/v1/rotate/…` endpoints. Each step is persisted before it returns.

use std::time::SystemTime;

use crate::key_source::KeySource;

use super::authority::{Authority, Generation};
use super::material::{new_issuer, new_root};
use crate::MeshError;

impl Authority {
    fn next_generation(&self) -> u32 {
        self.roots
            .iter()
            .chain(&self.issuers)
            .map(|g| g.number)
            .max()
            .unwrap_or(0)
            + 1
    }

    fn generation_seed(&self) -> Result<KeySource, MeshError> {
        self.seed
            .ok_or_else(|| MeshError::Refused("this authority cannot create new keys".into()))
    }

    /// Root rotation, step 1: a new root and an issuer under it join the
    /// bundle; the old issuer keeps signing until [`Self::activate_newest`].
    /// Returns the new root's generation.
    pub fn prepare_root(&mut self, now: SystemTime) -> Result<u32, MeshError> {
        let seed = self.generation_seed()?;
        let number = self.next_generation();
        let root = new_root(&self.trust_domain, self.algorithm, seed, number, now)?;
        let issuer = new_issuer(&self.trust_domain, self.algorithm, seed, number, &root, now)?;
        self.roots.push(Generation {
            number,
            parent: 0,
            cert: root,
        });
        self.issuers.push(Generation {
            number,
            parent: number,
            cert: issuer,
        });
        self.save()?;
        Ok(number)
    }

    /// Root rotation, step 2: the newest issuer signs from now on.
    pub fn activate_newest(&mut self) -> Result<u32, MeshError> {
        self.active_issuer = self.issuers.last().map_or(1, |g| g.number);
        self.save()?;
        Ok(self.active_issuer)
    }

    /// Root rotation, step 3: every root but the active issuer's leaves the
    /// bundle, with the issuers under it. Returns how many roots left.
    pub fn retire_old_roots(&mut self) -> Result<usize, MeshError> {
        let keep = self.active().parent;
        let before = self.roots.len();
        self.roots.retain(|g| g.number == keep);
        self.issuers.retain(|g| g.parent == keep);
        self.save()?;
        Ok(before - self.roots.len())
    }

    /// Issuer rotation: a new intermediate under the current root signs from
    /// now on. Leaves from the old one stay valid (same root) until expiry.
    pub fn rotate_issuer(&mut self, now: SystemTime) -> Result<u32, MeshError> {
        let seed = self.generation_seed()?;
        let number = self.next_generation();
        let parent = self.active().parent;
        let root = &self
            .roots
            .iter()
            .find(|g| g.number == parent)
            .ok_or_else(|| MeshError::Cert("active issuer's root is gone".into()))?
            .cert;
        let issuer = new_issuer(&self.trust_domain, self.algorithm, seed, number, root, now)?;
        self.issuers.push(Generation {
            number,
            parent,
            cert: issuer,
        });
        self.active_issuer = number;
        self.save()?;
        Ok(number)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use seam::{MemDisk, Seed};

    use super::super::testing::*;
    use crate::identity::KeyAlgorithm;

    #[test]
    fn root_rotation_adds_then_switches_then_retires() {
        let mut ca = authority(KeyAlgorithm::Ed25519);
        ca.persist_on(Arc::new(MemDisk::default()), Seed::new(2))
            .unwrap();
        let old_root = ca.trust_bundle()[0].clone();
        assert_eq!(ca.prepare_root(now()).unwrap(), 2);
        assert_eq!(ca.trust_bundle().len(), 2);
        assert_eq!(
            ca.generations(),
            (2, 1),
            "old issuer signs until activation"
        );
        ca.activate_newest().unwrap();
        assert_eq!(ca.retire_old_roots().unwrap(), 1);
        assert_eq!(ca.trust_bundle().len(), 1);
        assert_ne!(ca.trust_bundle()[0], old_root);
        assert_eq!(ca.rotate_issuer(now()).unwrap(), 3);
        assert_eq!(ca.trust_bundle().len(), 1, "issuer rotation keeps the root");
    }
}
