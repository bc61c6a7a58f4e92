//! The storage half of the seam: a host's durable files.
//!
//! Components persist through [`Disk`] (the CA's serials, the control
//! plane's config log, the REC stores). In the simulation the disk is owned
//! by the world, not the host, so it survives a crash and restart, like a
//! real disk; a write that returned is durable. In real mode it is a
//! directory of files.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Named byte files on one host.
pub trait Disk: Send + Sync + 'static {
    /// The whole file, or `None` if it does not exist.
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Appends to a file (creating it); durable when this returns.
    fn append(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Replaces a file atomically; durable when this returns.
    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
}

/// An in-memory disk. Clones share the files, so the owner (the simulated
/// world) keeps them across host restarts.
#[derive(Clone, Default)]
pub struct MemDisk(Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

impl Disk for MemDisk {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.0.lock().expect("disk poisoned").get(name).cloned())
    }

    fn append(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .expect("disk poisoned")
            .entry(name.to_owned())
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }

    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .expect("disk poisoned")
            .insert(name.to_owned(), bytes.to_vec());
        Ok(())
    }
}

/// A directory on the real file system.
#[derive(Clone)]
pub struct DirDisk(PathBuf);

impl DirDisk {
    /// A disk rooted at `dir` (created if missing), owner-only: a host's
    /// disk holds keys (the CA's) and data, so every file is 0600.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        crate::private_file::private_dir(&dir)?;
        Ok(DirDisk(dir))
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad file name {name:?}"),
            ));
        }
        Ok(self.0.join(name))
    }
}

impl Disk for DirDisk {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(name)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn append(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let mut file = crate::private_file::append_private(&self.path(name)?)?;
        file.write_all(bytes)?;
        file.sync_data()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        crate::private_file::write_private(&self.path(name)?, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(disk: &dyn Disk) {
        assert_eq!(disk.read("log").unwrap(), None);
        disk.append("log", b"a").unwrap();
        disk.append("log", b"b").unwrap();
        assert_eq!(disk.read("log").unwrap().unwrap(), b"ab");
        disk.write("log", b"c").unwrap();
        assert_eq!(disk.read("log").unwrap().unwrap(), b"c");
    }

    #[test]
    fn both_disks_behave_alike() {
        exercise(&MemDisk::default());
        let dir = std::env::temp_dir().join(format!("meshsim-disk-{}", std::process::id()));
        exercise(&DirDisk::new(&dir).unwrap());
        let _ = std::fs::remove_dir_all(dir);
        assert!(
            DirDisk::new(std::env::temp_dir())
                .unwrap()
                .read("../etc")
                .is_err()
        );
    }

    #[test]
    fn mem_disk_clones_share_files() {
        let disk = MemDisk::default();
        disk.write("ca-state", b"serial=7").unwrap();
        assert_eq!(disk.clone().read("ca-state").unwrap().unwrap(), b"serial=7");
    }
}
