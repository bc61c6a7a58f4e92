//! Files on the real file system that hold keys, tokens or seeds: created
//! owner-only and written atomically (a temporary file in the same
//! directory, synced, then renamed over the target), so no other user can
//! read them and no reader ever sees half of one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Mode of a directory that holds private files.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of a file that holds a key, a token or a seed.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of a file meant for others to read (a trust bundle, addresses).
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Creates `dir` (and its parents) and makes it owner-only, also when it
/// already existed with a looser mode.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, PRIVATE_DIR_MODE)
}

/// Writes `bytes` to `path` owner-only, atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, bytes, PRIVATE_FILE_MODE)
}

/// Writes `bytes` to `path` with `mode`, atomically: a fresh temporary
/// file created with `mode` (never a looser one, not even for a moment),
/// synced, renamed over `path`, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = temp_path(path);
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let written = (|| {
        let mut file = options.open(&temp)?;
        // The umask may have narrowed the mode further; never widen it.
        set_mode(&temp, mode)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    std::fs::rename(&temp, path)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The rename is durable only once the directory is.
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Opens `path` for appending, creating it owner-only.
pub fn append_private(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE_MODE);
    }
    options.open(path)
}

/// Creates (or truncates) `path` owner-only, for a log.
pub fn create_private(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE_MODE);
    }
    let file = options.open(path)?;
    set_mode(path, PRIVATE_FILE_MODE)?;
    Ok(file)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.partial", std::process::id()));
    path.with_file_name(name)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_owner_only_and_replace_atomically() {
        let dir = std::env::temp_dir().join(format!("seam-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "a loose existing directory is tightened");
        let key = dir.join("key.json");
        std::fs::write(&key, b"old").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&key, b"new").unwrap();
        assert_eq!(mode(&key), 0o600, "the replacement is a new 0600 file");
        assert_eq!(std::fs::read(&key).unwrap(), b"new");
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        write_atomic(&dir.join("ca.pem"), b"pem", PUBLIC_FILE_MODE).unwrap();
        assert_eq!(mode(&dir.join("ca.pem")), 0o644);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
