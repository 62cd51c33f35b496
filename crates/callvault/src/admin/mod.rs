//! The daemon's admin socket, and one way for staff commands to reach the index.
//!
//! sled lets one process open the index, and the daemon keeps it open while it
//! runs. So the daemon serves a Unix socket, `<data_dir>/state/admin.sock` (mode
//! 0600), through which a staff command asks for what needs the index: queries,
//! one call by id, holds and releases, purges. When no daemon answers, the command
//! opens the data directory itself. [`IndexAccess`] hides which of the two it is,
//! so that each command is written once; both end in [`protocol::handle`].
//!
//! Reading recording files, writing exports and appending to the audit log are
//! the command's own work: the files need no lock, and the audit log takes an
//! exclusive `flock` for each append, whoever appends.

mod client;
pub(crate) mod protocol;
mod server;

use std::path::{Path, PathBuf};

pub(crate) use client::{refuse_if_daemon_runs, IndexAccess};
pub(crate) use server::serve;

/// Where the daemon serving `data_dir` listens.
pub(crate) fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("admin.sock")
}
