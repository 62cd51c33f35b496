//! Small file systems a test mounts, to fill or make read-only.
//!
//! The tests run as root (here and in CI); mounting is then allowed. Where it is
//! not, the test fails and says so: a fault test that silently skipped would
//! report a guarantee nobody checked.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mount made by the test, unmounted when dropped.
#[derive(Debug)]
pub(crate) struct Mount {
    target: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs of `size_kib` KiB at `target`, creating the directory.
    pub(crate) fn tmpfs(target: &Path, size_kib: u64) -> Self {
        std::fs::create_dir_all(target).unwrap();
        let options = format!("size={size_kib}k,mode=0700");
        mount(&["-t", "tmpfs", "-o", &options, "tmpfs"], target);
        Self {
            target: target.to_owned(),
        }
    }

    /// Bind-mounts `target` on itself, so that it can be made read-only alone.
    pub(crate) fn bind(target: &Path) -> Self {
        mount(&["--bind", target.to_str().unwrap()], target);
        Self {
            target: target.to_owned(),
        }
    }

    /// Remounts read-only (`true`) or read-write.
    pub(crate) fn set_read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,bind,ro"
        } else {
            "remount,bind,rw"
        };
        mount(&["-o", mode], &self.target);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy, so that a process still holding a file there cannot keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.target).status();
    }
}

fn mount(args: &[&str], target: &Path) {
    let output = Command::new("mount")
        .args(args)
        .arg(target)
        .output()
        .unwrap_or_else(|error| panic!("cannot run mount: {error}"));
    assert!(
        output.status.success(),
        "mount {args:?} {} failed: {}\nthese tests need root (or CAP_SYS_ADMIN) to mount; \
         run them as root",
        target.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Fills the file system holding `dir` with one file, until it refuses more.
///
/// Returns the file's path and how many bytes it took.
pub(crate) fn fill(dir: &Path) -> (PathBuf, u64) {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0x5a_u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(error) if error.raw_os_error() == Some(28) => break,
            Err(error) => panic!("filling {}: {error}", dir.display()),
        }
    }
    (path, written)
}
