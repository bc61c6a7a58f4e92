//! What the CA must not forget across a crash, kept as one JSON file on
//! its host's [`seam::Disk`].

use std::sync::Arc;

use seam::Disk;

use super::authority::{Authority, Generation};
use super::material::SigningCert;
use crate::MeshError;
use crate::identity::KeyAlgorithm;
use crate::key_source::KeySource;

/// One root or issuer as the CA stores it (DER and PKCS#8, hex).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct PersistedCert {
    pub(super) generation: u32,
    /// The root an issuer chains to (0 for a root).
    pub(super) parent: u32,
    pub(super) der_hex: String,
    pub(super) key_hex: String,
}

/// Everything the CA must not forget across a crash: keys, certificates,
/// which issuer signs, and the next serial (a reused serial would make
/// serial revocation hit an innocent certificate).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PersistedCa {
    trust_domain: String,
    algorithm: KeyAlgorithm,
    next_serial: u64,
    roots: Vec<PersistedCert>,
    issuers: Vec<PersistedCert>,
    active_issuer: u32,
}

/// The file the CA keeps its state in on its host's disk.
pub const STATE_FILE: &str = "ca-state.json";

impl Authority {
    /// Makes the authority durable on `disk`: if the disk holds state from
    /// an earlier life, that state (keys, certificates, serials, active
    /// issuer) replaces the freshly provisioned one; otherwise the current
    /// state is written. Later generations derive their keys from `seed`.
    pub fn persist_on(
        &mut self,
        disk: Arc<dyn Disk>,
        source: impl Into<KeySource>,
    ) -> Result<bool, MeshError> {
        self.seed = Some(source.into());
        let recovered = match disk.read(STATE_FILE)? {
            Some(bytes) => {
                let state: PersistedCa = serde_json::from_slice(&bytes)
                    .map_err(|e| MeshError::Cert(format!("corrupt CA state: {e}")))?;
                self.restore(state)?;
                true
            }
            None => false,
        };
        self.disk = Some(disk);
        self.save()?;
        Ok(recovered)
    }

    fn restore(&mut self, state: PersistedCa) -> Result<(), MeshError> {
        let load = |p: &PersistedCert| -> Result<Generation, MeshError> {
            let der = hex::decode(&p.der_hex).map_err(MeshError::cert)?;
            let key = hex::decode(&p.key_hex).map_err(MeshError::cert)?;
            Ok(Generation {
                number: p.generation,
                parent: p.parent,
                cert: SigningCert::load(state.algorithm, der, key)?,
            })
        };
        self.roots = state.roots.iter().map(load).collect::<Result<_, _>>()?;
        self.issuers = state.issuers.iter().map(load).collect::<Result<_, _>>()?;
        self.trust_domain = state.trust_domain;
        self.algorithm = state.algorithm;
        self.next_serial = state.next_serial;
        self.active_issuer = state.active_issuer;
        Ok(())
    }

    /// An authority whose keys and certificates come from a state file
    /// (`ca-state.json`) that an installer wrote: a real mesh's keys are
    /// drawn from the OS once, so every later start reads them back
    /// instead of deriving them.
    pub fn from_state(
        bytes: &[u8],
        leaf_ttl: std::time::Duration,
        tokens: std::collections::BTreeMap<String, crate::SpiffeId>,
    ) -> Result<Self, MeshError> {
        let state: PersistedCa = serde_json::from_slice(bytes)
            .map_err(|e| MeshError::Cert(format!("corrupt CA state: {e}")))?;
        let load = |p: &PersistedCert| -> Result<SigningCert, MeshError> {
            let der = hex::decode(&p.der_hex).map_err(MeshError::cert)?;
            let key = hex::decode(&p.key_hex).map_err(MeshError::cert)?;
            SigningCert::load(state.algorithm, der, key)
        };
        let (Some(root), Some(issuer)) = (state.roots.first(), state.issuers.first()) else {
            return Err(MeshError::Cert("CA state without a root or issuer".into()));
        };
        let material = super::CaMaterial {
            trust_domain: state.trust_domain.clone(),
            algorithm: state.algorithm,
            root: load(root)?,
            issuer: load(issuer)?,
        };
        let mut authority = Authority::new(material, leaf_ttl, tokens);
        authority.restore(state)?;
        Ok(authority)
    }

    /// The state file's bytes (it holds the private keys: write it 0600).
    pub fn state_bytes(&self) -> Result<Vec<u8>, MeshError> {
        let state = PersistedCa {
            trust_domain: self.trust_domain.clone(),
            algorithm: self.algorithm,
            next_serial: self.next_serial,
            roots: self
                .roots
                .iter()
                .map(|g| g.cert.persisted(g.number, g.parent))
                .collect(),
            issuers: self
                .issuers
                .iter()
                .map(|g| g.cert.persisted(g.number, g.parent))
                .collect(),
            active_issuer: self.active_issuer,
        };
        serde_json::to_vec(&state).map_err(MeshError::cert)
    }

    pub(super) fn save(&self) -> Result<(), MeshError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        disk.write(STATE_FILE, &self.state_bytes()?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use seam::{Disk, MemDisk, Seed};

    use super::super::testing::*;
    use crate::ca::{Authority, CaMaterial};
    use crate::identity::KeyAlgorithm;

    #[test]
    fn a_restarted_ca_keeps_its_keys_and_serials() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::default());
        let mut first = authority(KeyAlgorithm::Ed25519);
        assert!(!first.persist_on(disk.clone(), Seed::new(2)).unwrap());
        first.prepare_root(now()).unwrap();
        first.activate_newest().unwrap();
        let a = issue(&mut first, "registry");
        let b = issue(&mut first, "registry");
        let bundle = first.trust_bundle();
        drop(first);

        // A "restart" provisions fresh state from another seed: the disk wins.
        let material = CaMaterial::generate(
            "test.meshsim",
            Seed::new(77),
            now() + Duration::from_secs(5),
        )
        .unwrap();
        let mut second = Authority::new(material, Duration::from_secs(60), BTreeMap::new());
        assert!(second.persist_on(disk, Seed::new(2)).unwrap());
        assert_eq!(second.trust_bundle(), bundle, "same roots, same keys");
        assert_eq!(second.generations(), (2, 2));
        let c = issue(&mut second, "registry");
        assert_ne!(c.serial_hex, a.serial_hex);
        assert_ne!(c.serial_hex, b.serial_hex);
    }
}
