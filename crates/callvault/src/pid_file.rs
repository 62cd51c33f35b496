//! The pid file that keeps a second daemon off the same data directory.
//!
//! The file holds the running daemon's process id and is locked with
//! flock(2) for as long as the daemon runs. The kernel drops the lock when
//! the process ends, however it ends, so a stale file from a crash never
//! blocks a restart; only a live daemon does.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// The pid file's name inside the data directory.
pub(crate) const PID_FILE: &str = "callvault.pid";

/// The locked pid file; the lock lasts as long as this value.
#[derive(Debug)]
pub(crate) struct PidFile {
    _file: File,
}

impl PidFile {
    /// Claims `data_dir` for this process, or says which daemon holds it.
    pub(crate) fn claim(data_dir: &Path) -> anyhow::Result<Self> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(PID_FILE);
        let mut file = open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                bail!(
                    "the data directory {} is in use by another callvault{holder}; \
                     stop it first, or give this one its own storage.data_dir",
                    data_dir.display()
                )
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        write_pid(&mut file).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

fn open(path: &PathBuf) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Not truncated on open: the holder's pid must survive a refused claim.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// ` (pid N)` from the holder's file, or nothing if it cannot be read.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let name = format!("callvault-pid-{label}-{}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn claim_writes_own_pid_and_creates_the_directory() {
        let dir = temp_dir("own");
        let _claim = PidFile::claim(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(PID_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn second_claim_is_refused_naming_directory_and_holder() {
        let dir = temp_dir("second");
        let _first = PidFile::claim(&dir).unwrap();
        let error = PidFile::claim(&dir).unwrap_err();
        let expected = format!(
            "the data directory {} is in use by another callvault (pid {})",
            dir.display(),
            std::process::id()
        );
        assert!(format!("{error:#}").starts_with(&expected), "{error:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn released_claim_can_be_taken_again() {
        let dir = temp_dir("again");
        drop(PidFile::claim(&dir).unwrap());
        assert!(PidFile::claim(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
