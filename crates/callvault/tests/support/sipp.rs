//! SIPp runs: scenario, ports, timeout and the traces left behind.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ports::{free_udp_address, free_udp_port_block, is_bound, Protocol};
use super::temp::TempDir;
use super::{sipp_fixtures, wait_until, STARTUP_TIMEOUT};

/// The `sipp` executable; fails the test if it is not installed.
pub(crate) fn sipp_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|directory| directory.join("sipp"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("sipp is not on PATH: install sip-tester (scripts/test does)"))
}

/// One SIPp run, described before it starts.
///
/// SIPp runs in `fixtures/sipp` so that scenarios find their audio, under
/// `timeout`, with every trace file written into the test's directory.
#[derive(Debug, Clone)]
pub(crate) struct Sipp {
    label: String,
    scenario: PathBuf,
    local: SocketAddr,
    remote: Option<SocketAddr>,
    transport: Protocol,
    media_port: u16,
    args: Vec<String>,
    timeout: Duration,
}

impl Sipp {
    /// A SIPp that answers on `local`, running `scenario` from fixtures/sipp.
    pub(crate) fn uas(scenario: &str, local: SocketAddr) -> Self {
        Self::new("uas", scenario, local, None)
    }

    /// A SIPp that calls `remote` from `local`.
    pub(crate) fn uac(scenario: &str, local: SocketAddr, remote: SocketAddr) -> Self {
        Self::new("uac", scenario, local, Some(remote))
    }

    fn new(label: &str, scenario: &str, local: SocketAddr, remote: Option<SocketAddr>) -> Self {
        Self {
            label: label.to_owned(),
            scenario: sipp_fixtures().join(scenario),
            local,
            remote,
            transport: Protocol::Udp,
            media_port: free_udp_port_block(4),
            args: vec!["-m".to_owned(), "1".to_owned()],
            timeout: Duration::from_secs(30),
        }
    }

    /// Names the run's trace files; two runs in one test need two labels.
    pub(crate) fn label(mut self, label: &str) -> Self {
        label.clone_into(&mut self.label);
        self
    }

    pub(crate) fn transport(mut self, transport: Protocol) -> Self {
        self.transport = transport;
        self
    }

    /// The longest the run may take before it is ended and counted failed.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Gives SIPp a block of `count` media ports, for runs of many calls that each
    /// stream RTP from a port of their own.
    pub(crate) fn media_ports(mut self, count: u16) -> Self {
        self.media_port = free_udp_port_block(count);
        self
    }

    /// Adds SIPp options, such as `["-s", "01632960123"]`.
    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Starts SIPp; a UAS is waited for until its SIP socket is bound.
    pub(crate) fn spawn(self, dir: &TempDir) -> SippProcess {
        let files = SippFiles::new(dir, &self.label);
        let child = self.command(&files).spawn().unwrap();
        let mut process = SippProcess {
            child,
            files,
            label: self.label.clone(),
            deadline: Instant::now() + self.timeout + Duration::from_secs(15),
        };
        let protocol = self.transport;
        if self.remote.is_none() && !wait_until(STARTUP_TIMEOUT, || is_bound(protocol, self.local))
        {
            let outcome = process.finish();
            panic!(
                "SIPp {} never bound {}\n{}",
                self.label,
                self.local,
                outcome.report()
            );
        }
        process
    }

    /// Runs SIPp to the end.
    pub(crate) fn run(self, dir: &TempDir) -> SippOutcome {
        self.spawn(dir).wait()
    }

    fn command(&self, files: &SippFiles) -> Command {
        let seconds = self.timeout.as_secs().max(1);
        let mut command = Command::new("timeout");
        command
            .arg("--kill-after=5s")
            .arg(format!("{}s", seconds + 5))
            .arg(sipp_binary());
        if let Some(remote) = self.remote {
            command.arg(remote.to_string());
        }
        let transport = match self.transport {
            Protocol::Udp => "u1",
            Protocol::Tcp => "t1",
        };
        let ip = self.local.ip().to_string();
        command
            .args(["-sf", self.scenario.to_str().unwrap(), "-t", transport])
            .args(["-i", &ip, "-p", &self.local.port().to_string()])
            .args(["-mi", &ip, "-mp", &self.media_port.to_string()])
            .args(["-ci", &ip, "-cp", &free_udp_address().port().to_string()])
            .args([
                "-nostdin",
                "-timeout",
                &format!("{seconds}s"),
                "-timeout_error",
            ])
            .args(files.trace_args())
            .args(&self.args)
            .current_dir(sipp_fixtures())
            .stdin(Stdio::null())
            .stdout(File::create(&files.stdout).unwrap())
            .stderr(File::create(&files.stderr).unwrap());
        command
    }
}

/// Where one SIPp run writes its output and traces.
#[derive(Debug, Clone)]
struct SippFiles {
    stdout: PathBuf,
    stderr: PathBuf,
    stat: PathBuf,
    errors: PathBuf,
    messages: PathBuf,
    screen: PathBuf,
}

impl SippFiles {
    fn new(dir: &TempDir, label: &str) -> Self {
        let file = |suffix: &str| dir.path().join(format!("sipp-{label}-{suffix}"));
        Self {
            stdout: file("stdout.log"),
            stderr: file("stderr.log"),
            stat: file("stat.csv"),
            errors: file("errors.log"),
            messages: file("messages.log"),
            screen: file("screen.log"),
        }
    }

    fn trace_args(&self) -> Vec<&str> {
        fn path(path: &Path) -> &str {
            path.to_str().unwrap()
        }
        vec![
            "-trace_stat",
            "-stf",
            path(&self.stat),
            "-trace_err",
            "-error_file",
            path(&self.errors),
            "-trace_msg",
            "-message_file",
            path(&self.messages),
            "-trace_screen",
            "-screen_file",
            path(&self.screen),
        ]
    }
}

/// A SIPp run in progress; killed if dropped before it ends.
#[derive(Debug)]
pub(crate) struct SippProcess {
    child: Child,
    files: SippFiles,
    label: String,
    deadline: Instant,
}

impl SippProcess {
    /// The message trace SIPp writes as the run goes on.
    pub(crate) fn messages_log(&self) -> &Path {
        &self.files.messages
    }

    /// Waits for SIPp to finish and collects what it left behind.
    pub(crate) fn wait(mut self) -> SippOutcome {
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        wait_until(timeout, || self.child.try_wait().unwrap().is_some());
        self.finish()
    }

    fn finish(&mut self) -> SippOutcome {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
        SippOutcome {
            label: self.label.clone(),
            status,
            stdout: read(&self.files.stdout),
            stderr: read(&self.files.stderr),
            stat: read(&self.files.stat),
            errors: read(&self.files.errors),
            messages: read(&self.files.messages),
            screen: read(&self.files.screen),
        }
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished SIPp run produced.
#[derive(Debug, Clone)]
pub(crate) struct SippOutcome {
    pub(crate) label: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// The `-trace_stat` CSV.
    pub(crate) stat: String,
    /// The `-trace_err` log of unexpected messages.
    pub(crate) errors: String,
    /// Every SIP message sent and received.
    pub(crate) messages: String,
    /// The final statistics screen.
    pub(crate) screen: String,
}

impl SippOutcome {
    /// Whether every call succeeded (SIPp's exit code 0).
    pub(crate) fn succeeded(&self) -> bool {
        self.status.code() == Some(0)
    }

    /// Fails the test with SIPp's own account unless every call succeeded.
    pub(crate) fn assert_success(&self) {
        assert!(self.succeeded(), "{}", self.report());
    }

    /// A column of the last row of the statistics CSV, such as
    /// `SuccessfulCall(C)`.
    pub(crate) fn stat(&self, column: &str) -> Option<String> {
        let mut rows = self.stat.lines().filter(|line| !line.trim().is_empty());
        let header: Vec<&str> = rows.next()?.split(';').collect();
        let last: Vec<&str> = rows.next_back()?.split(';').collect();
        let index = header.iter().position(|name| *name == column)?;
        last.get(index).map(|value| value.trim().to_owned())
    }

    /// Everything useful for a failure message, most telling first.
    pub(crate) fn report(&self) -> String {
        let meaning = match self.status.code() {
            Some(0) => "all calls succeeded",
            Some(1) => "at least one call failed",
            Some(97) => "exited on an internal command",
            Some(99) => "no call was processed",
            Some(124) | Some(137) => "killed by timeout: SIPp overran its own -timeout",
            Some(254) => "fatal error binding a socket",
            Some(255) => "fatal error",
            _ => "ended abnormally",
        };
        let tail = |text: &str, lines: usize| {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        };
        format!(
            "SIPp {label}: {status} ({meaning})\n\
             --- stderr ---\n{stderr}\n\
             --- unexpected messages (-trace_err) ---\n{errors}\n\
             --- final screen ---\n{screen}\n\
             --- last SIP messages ---\n{messages}",
            label = self.label,
            status = self.status,
            stderr = tail(&self.stderr, 20),
            errors = tail(&self.errors, 60),
            screen = tail(&self.screen, 40),
            messages = tail(&self.messages, 80),
        )
    }
}
