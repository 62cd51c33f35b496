//! Shared helpers for callvault's integration tests.
//!
//! They start the real `callvault` binary and real SIP peers (SIPp) on
//! 127.0.0.1, on ports found free at run time, and stop and clean up
//! everything they started when dropped. Nothing here skips a test: a
//! missing tool fails it with the command that installs the tool.

#![allow(
    dead_code,
    reason = "each test file uses a different part of this module"
)]
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test support: a failed unwrap is a failed test, and stderr is its report"
)]

pub(crate) mod audio;
pub(crate) mod baresip;
pub(crate) mod callvault;
pub(crate) mod config;
pub(crate) mod metrics;
pub(crate) mod mount;
pub(crate) mod ports;
pub(crate) mod process;
pub(crate) mod recordings;
pub(crate) mod rtp;
pub(crate) mod sipp;
pub(crate) mod temp;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// How long the daemon may take to start on a busy two-core machine.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the daemon may take to stop after SIGTERM.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The log line `callvault run` writes once its signal handlers are in place.
pub(crate) const STARTED_LINE: &str = "callvault started";

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The repository's root directory.
pub(crate) fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize()
        .expect("the crate lives two levels below the workspace root")
}

/// Where the SIPp scenarios and their audio live.
pub(crate) fn sipp_fixtures() -> PathBuf {
    workspace_root().join("fixtures/sipp")
}

/// Polls `condition` until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
