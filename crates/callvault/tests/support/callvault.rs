//! The `callvault` binary, run as a child process.

use std::io::{BufRead as _, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::config::TestConfig;
use super::ports::is_bound;
use super::temp::TempDir;
use super::{wait_until, STARTED_LINE, STARTUP_TIMEOUT};

/// The binary under test.
pub(crate) fn callvault_binary() -> &'static str {
    env!("CARGO_BIN_EXE_callvault")
}

/// Runs a short callvault command, such as `check-config`, to completion.
pub(crate) fn callvault_command(args: &[&str]) -> std::process::Output {
    Command::new(callvault_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A running `callvault` process whose output is captured.
///
/// Dropping it kills the process; if the test is failing, its output is
/// printed first.
#[derive(Debug)]
pub(crate) struct Callvault {
    child: Child,
    output: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Callvault {
    /// Starts `callvault run` on `config` and waits until both SIP sockets
    /// are bound.
    pub(crate) fn start(config: &TestConfig, dir: &TempDir) -> Self {
        let path = config.write(dir);
        let mut callvault = Self::spawn(&["run", "--config", path.to_str().unwrap()], dir.path());
        callvault.wait_for_log(STARTED_LINE, STARTUP_TIMEOUT);
        let sides = [
            (config.pbx_transport, config.pbx_listen),
            (config.trunk_transport, config.trunk_listen),
        ];
        for (protocol, address) in sides {
            if !wait_until(STARTUP_TIMEOUT, || is_bound(protocol, address)) {
                callvault.fail(&format!("nothing is bound to {address} ({protocol:?})"));
            }
        }
        callvault
    }

    /// Starts callvault with `args` in `directory`, without waiting.
    pub(crate) fn spawn(args: &[&str], directory: &Path) -> Self {
        Self::spawn_with_env(args, directory, &[])
    }

    /// As `spawn`, with variables added to the environment, such as systemd's
    /// `NOTIFY_SOCKET`.
    pub(crate) fn spawn_with_env(args: &[&str], directory: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(callvault_binary())
            .args(args)
            .current_dir(directory)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        Self {
            child,
            output,
            status: None,
        }
    }

    /// Everything the process has written to stdout and stderr so far.
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits for a line containing `needle`; fails the test if the process
    /// exits or the time runs out first.
    pub(crate) fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let found = wait_until(timeout, || {
            self.output().contains(needle) || self.child.try_wait().unwrap().is_some()
        });
        if !self.output().contains(needle) {
            let why = if found { "exited" } else { "timed out" };
            self.fail(&format!("{why} before logging {needle:?}"));
        }
    }

    /// The process's id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.status.is_none() && self.child.try_wait().unwrap().is_none()
    }

    /// Sends a signal by name, such as `TERM` or `HUP`.
    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} {pid} failed");
    }

    /// Kills the process with SIGKILL, as a crash would end it, and reaps it.
    pub(crate) fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.status = Some(self.child.wait().unwrap());
    }

    /// Waits for the process to exit; fails the test after `timeout`.
    pub(crate) fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        match status {
            Some(status) => {
                self.status = Some(status);
                status
            }
            None => self.fail(&format!("still running {timeout:?} later")),
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("callvault {what}; its output:\n{}", self.output());
    }
}

impl Drop for Callvault {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("callvault's output:\n{}", self.output());
        }
    }
}

/// Appends a pipe's lines to `output` from a thread of its own.
fn collect(pipe: impl Read + Send + 'static, output: Arc<Mutex<String>>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
}
