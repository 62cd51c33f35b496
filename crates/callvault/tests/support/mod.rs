//! Shared helpers for callvault's integration tests.
//!
//! They start the real `callvault` binary and real SIP peers (SIPp) on
//! 127.0.0.1, on ports found free at run time, and stop and clean up
//! everything they started when dropped. Nothing here skips a test: a
//! missing tool fails it with the command that installs the tool.

#![allow(dead_code, reason = "each test file uses a different part of this module")]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    root.canonicalize().expect("the crate lives two levels below the workspace root")
}

/// Where the SIPp scenarios and their audio live.
pub(crate) fn sipp_fixtures() -> PathBuf {
    workspace_root().join("fixtures/sipp")
}

// ---------------------------------------------------------------------------
// Free ports

/// Ports this test process has handed out, so two tests never share one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn claim(ports: std::ops::Range<u16>) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap();
    let handed_out = guard.get_or_insert_with(HashSet::new);
    if ports.clone().any(|port| handed_out.contains(&port)) {
        return false;
    }
    handed_out.extend(ports);
    true
}

/// A loopback address with a UDP port that was free a moment ago.
pub(crate) fn free_udp_address() -> SocketAddr {
    loop {
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let address = socket.local_addr().unwrap();
        if claim(address.port()..address.port() + 1) {
            return address;
        }
    }
}

/// A loopback address with a TCP port that was free a moment ago.
pub(crate) fn free_tcp_address() -> SocketAddr {
    loop {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let address = listener.local_addr().unwrap();
        if claim(address.port()..address.port() + 1) {
            return address;
        }
    }
}

/// The first of `count` consecutive free UDP ports; the first is even.
///
/// Blocks come from 20000-32000, below Linux's ephemeral range, so that
/// sockets bound to port 0 elsewhere do not land inside them.
pub(crate) fn free_udp_port_block(count: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id() ^ SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    for _ in 0..500 {
        let step = NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(seed);
        let offset = (step.wrapping_mul(2_654_435_761) % 12_000) as u16;
        let first = (20_000 + offset) & !1;
        if block_is_free(first, count) && claim(first..first + count) {
            return first;
        }
    }
    panic!("no block of {count} free UDP ports found between 20000 and 32000");
}

fn block_is_free(first: u16, count: u16) -> bool {
    let sockets: Result<Vec<_>, _> =
        (first..first + count).map(|port| UdpSocket::bind((LOOPBACK, port))).collect();
    sockets.is_ok()
}

// ---------------------------------------------------------------------------
// Socket state from /proc

/// The transport of a socket, for [`is_bound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Udp,
    Tcp,
}

/// Whether some process has a UDP socket bound, or a TCP socket listening,
/// that would take traffic for `address`.
///
/// Reads /proc/net instead of probing with a bind, which could take the
/// port from under a daemon that is still starting.
pub(crate) fn is_bound(protocol: Protocol, address: SocketAddr) -> bool {
    let tables: [&str; 2] = match protocol {
        Protocol::Udp => ["/proc/net/udp", "/proc/net/udp6"],
        Protocol::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
    };
    tables.iter().any(|table| {
        let text = fs::read_to_string(table).unwrap_or_default();
        text.lines().skip(1).any(|line| entry_matches(line, protocol, address))
    })
}

fn entry_matches(line: &str, protocol: Protocol, address: SocketAddr) -> bool {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
        return false;
    };
    let Some((ip, port)) = local.split_once(':') else {
        return false;
    };
    const LISTEN: &str = "0A";
    let listening = protocol == Protocol::Udp || *state == LISTEN;
    let same_port = u16::from_str_radix(port, 16) == Ok(address.port());
    listening && same_port && proc_ip(ip).is_some_and(|ip| ip == address.ip() || ip.is_unspecified())
}

/// Decodes an address as /proc/net prints it: 32-bit words in host order.
fn proc_ip(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<[u8; 4]>> = (0..hex.len() / 8)
        .map(|index| hex.get(index * 8..index * 8 + 8))
        .map(|word| Some(u32::from_str_radix(word?, 16).ok()?.to_ne_bytes()))
        .collect();
    match words?.concat().as_slice() {
        &[a, b, c, d] => Some(IpAddr::from([a, b, c, d])),
        bytes => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
    }
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

// ---------------------------------------------------------------------------
// Temporary directories

/// A directory under the system's temp dir, removed on drop.
///
/// When the test is failing it is kept, and its path printed, so that the
/// logs and SIPp traces inside can be read.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new(label: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let count = COUNT.fetch_add(1, Ordering::Relaxed);
        let name = format!("callvault-test-{label}-{}-{count}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to a file in this directory and returns its path.
    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// A callvault configuration on free loopback ports.
#[derive(Debug, Clone)]
pub(crate) struct TestConfig {
    pub(crate) pbx_listen: SocketAddr,
    pub(crate) pbx_peer: SocketAddr,
    pub(crate) pbx_transport: Protocol,
    pub(crate) trunk_listen: SocketAddr,
    pub(crate) trunk_peer: SocketAddr,
    pub(crate) trunk_transport: Protocol,
    pub(crate) media_port_min: u16,
    pub(crate) media_port_max: u16,
    pub(crate) metrics_listen: SocketAddr,
    pub(crate) console_listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    /// `text` or `json`.
    pub(crate) log_format: String,
    pub(crate) log_level: String,
    /// Whole sections not written above, such as `[sip]` or `[policy]`.
    pub(crate) extra: String,
}

impl TestConfig {
    /// Every address on a free loopback port; data under `dir`.
    pub(crate) fn on_free_ports(dir: &TempDir) -> Self {
        let media_port_min = free_udp_port_block(64);
        Self {
            pbx_listen: free_udp_address(),
            pbx_peer: free_udp_address(),
            pbx_transport: Protocol::Udp,
            trunk_listen: free_udp_address(),
            trunk_peer: free_udp_address(),
            trunk_transport: Protocol::Udp,
            media_port_min,
            media_port_max: media_port_min + 63,
            metrics_listen: free_tcp_address(),
            console_listen: free_tcp_address(),
            data_dir: dir.path().join("data"),
            log_format: "text".to_owned(),
            log_level: "info".to_owned(),
            extra: String::new(),
        }
    }

    pub(crate) fn to_toml(&self) -> String {
        let transport = |protocol| match protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        };
        let mut text = String::new();
        let sides = [
            ("pbx", self.pbx_listen, self.pbx_peer, self.pbx_transport),
            ("trunk", self.trunk_listen, self.trunk_peer, self.trunk_transport),
        ];
        for (name, listen, peer, protocol) in sides {
            let protocol = transport(protocol);
            writeln!(text, "[{name}]\nlisten = \"{listen}\"\npeer = \"{peer}\"").unwrap();
            writeln!(text, "transport = \"{protocol}\"\n").unwrap();
        }
        let (min, max) = (self.media_port_min, self.media_port_max);
        writeln!(text, "[media]\nport_min = {min}\nport_max = {max}\n").unwrap();
        let (data, key) = (self.data_dir.display(), self.data_dir.join("master.key"));
        writeln!(text, "[storage]\ndata_dir = \"{data}\"\nkey_file = \"{}\"\n", key.display())
            .unwrap();
        writeln!(text, "[metrics]\nlisten = \"{}\"\n", self.metrics_listen).unwrap();
        writeln!(text, "[console]\nlisten = \"{}\"\n", self.console_listen).unwrap();
        let (format, level) = (&self.log_format, &self.log_level);
        writeln!(text, "[log]\nformat = \"{format}\"\nlevel = \"{level}\"\n").unwrap();
        text.push_str(&self.extra);
        text
    }

    /// Writes the configuration into `dir` and returns the file's path.
    pub(crate) fn write(&self, dir: &TempDir) -> PathBuf {
        dir.write("callvault.toml", &self.to_toml())
    }
}

// ---------------------------------------------------------------------------
// The callvault binary

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
        let mut child = Command::new(callvault_binary())
            .args(args)
            .current_dir(directory)
            .env_remove("RUST_LOG")
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

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.status.is_none() && self.child.try_wait().unwrap().is_none()
    }

    /// Sends a signal by name, such as `TERM` or `HUP`.
    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-s", name, &pid]).status().unwrap();
        assert!(status.success(), "kill -s {name} {pid} failed");
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

// ---------------------------------------------------------------------------
// SIPp

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
            panic!("SIPp {} never bound {}\n{}", self.label, self.local, outcome.report());
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
        command.arg("--kill-after=5s").arg(format!("{}s", seconds + 5)).arg(sipp_binary());
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
            .args(["-nostdin", "-timeout", &format!("{seconds}s"), "-timeout_error"])
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
        let last: Vec<&str> = rows.last()?.split(';').collect();
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
