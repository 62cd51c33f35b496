//! The recorder's Ogg Opus, played by headless Chromium and Firefox.
//!
//! Recordings are listened to in a browser, so each test encodes a three-second
//! call, serves it beside a page from a small HTTP server on 127.0.0.1, and opens
//! the page in the browser with a fresh profile. The page reports what the browser
//! made of the file: the `<audio>` element's duration, and a full decode through Web
//! Audio with the loudness of each channel in each half.
//!
//! The browsers come from Debian's `chromium` and `firefox-esr` packages
//! (`scripts/test` installs them). Both ask for outside hosts as they start
//! (updates, telemetry, settings); their proxy is this test's server, which refuses
//! such requests, and host names resolve to nothing (Chromium) or to 127.0.0.1
//! (Firefox), so nothing leaves the machine, not even a DNS query.
//!
//! Playback itself is not asserted: headless Firefox has no audio output without a
//! sound server and fails `play()` with a media sink error, so the page checks what
//! playing rests on, the demuxed duration and the decoded audio.

// clippy's allow-unwrap-in-tests and allow-print-in-tests cover #[test] functions,
// not the helpers beside them.
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "a failed unwrap in a test helper is a failed test; eprintln is the test's log"
)]

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use callvault_recorder::encode::{encoder_for, OutputFormat};

/// Length of the recording, in seconds.
const SECONDS: f64 = 3.0;

/// Tone of the left channel (one party), in Hz.
const LEFT_HZ: f64 = 400.0;

/// Tone of the right channel (the other party), in Hz, after its first half.
const RIGHT_HZ: f64 = 1000.0;

/// Peak of each tone: about 0.3 of full scale, an RMS of about 0.22.
const AMPLITUDE: f64 = 10_000.0;

/// The RMS (of full scale 1.0) above which a half of a channel counts as loud.
const LOUD_RMS: f64 = 0.1;

/// The RMS below which a half of a channel counts as silent.
const SILENT_RMS: f64 = 0.01;

/// How far a browser's idea of the duration may be from the recording's.
const DURATION_TOLERANCE_S: f64 = 0.030;

/// How long a browser has to start, load the page and send its report.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the server waits for a request on an open connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of a browser's stderr quoted in a failure message.
const LOG_TAIL_BYTES: usize = 4000;

/// The page under test: it loads the recording two ways and reports both.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>callvault recording</title>
<link rel="icon" href="data:,">
<audio src="/recording.opus" preload="auto"></audio>
<script>
"use strict";
const report = new URLSearchParams();
const audio = document.querySelector("audio");
let sent = false;

function send() {
  if (!sent) {
    sent = true;
    fetch("/result?" + report.toString());
  }
}

function fail(where, error) {
  report.append("error", where + ": " + error);
  send();
}

window.addEventListener("error", (event) => fail("page", event.message));
window.addEventListener("unhandledrejection", (event) => fail("page", event.reason));

function elementMetadata() {
  return new Promise((resolve) => {
    const loaded = () => {
      report.set("element_duration", audio.duration);
      resolve();
    };
    const failed = () => {
      const error = audio.error;
      report.set("element_error", error ? error.code + " " + error.message : "unknown");
      resolve();
    };
    if (audio.error) {
      failed();
    } else if (audio.readyState >= HTMLMediaElement.HAVE_METADATA) {
      loaded();
    } else {
      audio.addEventListener("loadedmetadata", loaded, { once: true });
      audio.addEventListener("error", failed, { once: true });
    }
  });
}

function rms(samples) {
  let sum = 0;
  for (const sample of samples) {
    sum += sample * sample;
  }
  return Math.sqrt(sum / Math.max(samples.length, 1));
}

async function decode() {
  const response = await fetch("/recording.opus");
  const bytes = await response.arrayBuffer();
  const context = new OfflineAudioContext(2, 1, 48000);
  const buffer = await context.decodeAudioData(bytes);
  report.set("decoded_channels", buffer.numberOfChannels);
  report.set("decoded_duration", buffer.duration);
  report.set("decoded_rate", buffer.sampleRate);
  for (let channel = 0; channel < buffer.numberOfChannels; channel++) {
    const samples = buffer.getChannelData(channel);
    const half = Math.floor(samples.length / 2);
    report.set("rms_" + channel + "_first", rms(samples.subarray(0, half)));
    report.set("rms_" + channel + "_second", rms(samples.subarray(half)));
  }
}

Promise.all([
  elementMetadata(),
  decode().catch((error) => report.append("error", "decodeAudioData: " + error)),
]).then(send, (error) => fail("page", error));
</script>
"#;

/// Interleaved stereo PCM of a call: left talks throughout, right from half-way.
fn call_pcm(rate: u32) -> Vec<i16> {
    let samples = (SECONDS * f64::from(rate)) as usize;
    let right_starts = samples / 2;
    let tone = |n: usize, hz: f64| {
        let t = n as f64 / f64::from(rate);
        ((t * hz * std::f64::consts::TAU).sin() * AMPLITUDE) as i16
    };

    let mut pcm = Vec::with_capacity(samples * 2);
    for n in 0..samples {
        let right = if n < right_starts {
            0
        } else {
            tone(n, RIGHT_HZ)
        };
        pcm.extend([tone(n, LEFT_HZ), right]);
    }
    pcm
}

/// The Ogg Opus file the recorder writes for that call.
fn call_recording(rate: u32) -> Vec<u8> {
    let mut encoder = encoder_for(OutputFormat::OggOpus, rate, 2).unwrap();
    let mut out = Vec::new();
    // The mixer hands the encoder 20 ms at a time.
    let frame = rate as usize / 50 * 2;
    for chunk in call_pcm(rate).chunks(frame) {
        encoder.encode(chunk, &mut out).unwrap();
    }
    encoder.finish(&mut out).unwrap();
    out
}

/// What the page found, as the query of its `/result` request.
#[derive(Debug)]
struct Report(HashMap<String, String>);

impl Report {
    /// Reads the query; a key given twice (the page's errors) keeps both values.
    fn parse(query: &str) -> Self {
        let mut fields = HashMap::new();
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")));
        for (key, value) in pairs {
            let field: &mut String = fields.entry(percent_decode(key)).or_default();
            if !field.is_empty() {
                field.push_str("; ");
            }
            field.push_str(&percent_decode(value));
        }
        Self(fields)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Decodes `application/x-www-form-urlencoded` text, as URLSearchParams writes it.
fn percent_decode(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, after)) = rest.split_first() {
        let escaped = after
            .get(..2)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (first, escaped) {
            (b'%', Some(byte)) => {
                bytes.push(byte);
                rest = &after[2..];
                continue;
            }
            (b'+', _) => bytes.push(b' '),
            _ => bytes.push(first),
        }
        rest = after;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The part of the recording a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum Slice {
    Whole,
    Part(Range<usize>),
    Unsatisfiable,
}

/// Reads a single `bytes=` range; anything else is answered with the whole file.
fn slice_for(range: Option<&str>, len: usize) -> Slice {
    let Some(spec) = range.and_then(|range| range.trim().strip_prefix("bytes=")) else {
        return Slice::Whole;
    };
    if spec.contains(',') {
        return Slice::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Slice::Whole;
    };
    let (first, last) = (first.trim(), last.trim());

    if first.is_empty() {
        return match last.parse::<usize>() {
            Ok(0) => Slice::Unsatisfiable,
            Ok(suffix) => Slice::Part(len.saturating_sub(suffix)..len),
            Err(_) => Slice::Whole,
        };
    }
    let Ok(start) = first.parse::<usize>() else {
        return Slice::Whole;
    };
    let end = match last {
        "" => len,
        last => match last.parse::<usize>() {
            Ok(last) if last >= start => (last + 1).min(len),
            _ => return Slice::Whole,
        },
    };
    if start >= len {
        return Slice::Unsatisfiable;
    }
    Slice::Part(start..end)
}

/// One request, as far as this server reads it.
struct Request {
    method: String,
    target: String,
    range: Option<String>,
}

impl Request {
    /// Reads a request's head; `None` if the peer sent none in time.
    fn read(stream: &mut TcpStream) -> Option<Self> {
        let mut head = Vec::new();
        let mut buffer = [0; 4096];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).ok().filter(|&read| read > 0)?;
            head.extend_from_slice(&buffer[..read]);
            if head.len() > 64 * 1024 {
                return None;
            }
        }

        let head = String::from_utf8_lossy(&head);
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next()?.split(' ');
        let method = request_line.next()?.to_owned();
        let target = request_line.next()?.to_owned();
        let range = lines
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("range"))
            .map(|(_, value)| value.trim().to_owned());
        Some(Self {
            method,
            target,
            range,
        })
    }
}

/// What the server serves and what it has seen.
struct Site {
    recording: Vec<u8>,
    reports: mpsc::Sender<Report>,
    /// Hosts asked for that are not this one, with counts: this server is the proxy.
    refused: Mutex<BTreeMap<String, usize>>,
}

impl Site {
    fn serve(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        let Some(request) = Request::read(&mut stream) else {
            return;
        };
        let _ = stream.write_all(&self.respond(&request));
    }

    fn respond(&self, request: &Request) -> Vec<u8> {
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((&request.target, ""));
        match (request.method.as_str(), path) {
            ("GET", "/") => response("200 OK", "text/html; charset=utf-8", &[], PAGE.as_bytes()),
            ("GET", "/recording.opus") => self.recording(request.range.as_deref()),
            ("GET", "/result") => {
                let _ = self.reports.send(Report::parse(query));
                response("204 No Content", "text/plain", &[], b"")
            }
            _ if !path.starts_with('/') => {
                self.refuse(path);
                response("403 Forbidden", "text/plain", &[], b"loopback only\n")
            }
            _ => response("404 Not Found", "text/plain", &[], b"not found\n"),
        }
    }

    /// Counts a request meant for another host, named by its authority.
    fn refuse(&self, target: &str) {
        let without_scheme = target.split_once("://").map_or(target, |(_, rest)| rest);
        let authority = without_scheme.split('/').next().unwrap_or(without_scheme);
        let mut refused = self
            .refused
            .lock()
            .expect("no thread panics holding the lock");
        *refused.entry(authority.to_owned()).or_default() += 1;
    }

    /// The recording, or the part of it a `Range` header asks for.
    fn recording(&self, range: Option<&str>) -> Vec<u8> {
        let len = self.recording.len();
        match slice_for(range, len) {
            Slice::Whole => response("200 OK", "audio/ogg", &[], &self.recording),
            Slice::Part(part) => {
                let content_range = format!("bytes {}-{}/{len}", part.start, part.end - 1);
                let headers = [("Content-Range", content_range.as_str())];
                response(
                    "206 Partial Content",
                    "audio/ogg",
                    &headers,
                    &self.recording[part],
                )
            }
            Slice::Unsatisfiable => {
                let content_range = format!("bytes */{len}");
                let headers = [("Content-Range", content_range.as_str())];
                response("416 Range Not Satisfiable", "text/plain", &headers, b"")
            }
        }
    }
}

/// An HTTP/1.1 response that closes the connection after its body.
fn response(status: &str, content_type: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Accept-Ranges: bytes\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");

    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A tiny HTTP server on a free loopback port, stopped on drop.
struct PageServer {
    address: SocketAddr,
    site: Arc<Site>,
    reports: mpsc::Receiver<Report>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    fn start(recording: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (sender, reports) = mpsc::channel();
        let site = Arc::new(Site {
            recording,
            reports: sender,
            refused: Mutex::default(),
        });
        let stopping = Arc::new(AtomicBool::new(false));

        let thread = {
            let (site, stopping) = (Arc::clone(&site), Arc::clone(&stopping));
            thread::spawn(move || accept(&listener, &site, &stopping))
        };
        Self {
            address,
            site,
            reports,
            stopping,
            thread: Some(thread),
        }
    }

    fn page_url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// The hosts of requests refused so far, with their counts.
    fn refused(&self) -> BTreeMap<String, usize> {
        let refused = self.site.refused.lock();
        refused.expect("no thread panics holding the lock").clone()
    }
}

/// Serves each connection on its own thread: browsers hold some open idle.
fn accept(listener: &TcpListener, site: &Arc<Site>, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(stream) = stream {
            let site = Arc::clone(site);
            thread::spawn(move || site.serve(stream));
        }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // A connection wakes the accepting thread, which then sees `stopping`.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let count = COUNT.fetch_add(1, Ordering::Relaxed);
        let name = format!("callvault-browsers-{label}-{}-{count}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A browser under test.
#[derive(Debug, Clone, Copy)]
enum Browser {
    Chromium,
    Firefox,
}

impl Browser {
    /// The program, named as Debian's package installs it.
    fn program(self) -> &'static str {
        match self {
            Self::Chromium => "chromium",
            Self::Firefox => "firefox-esr",
        }
    }

    /// The Debian package that holds the program.
    fn package(self) -> &'static str {
        self.program()
    }

    /// The command that opens `url` headless with a fresh profile in `work`.
    ///
    /// Every request for another host goes to `proxy`, this test's own server.
    /// Home and temporary files are in `work` too: Chromium keeps crash reports
    /// beside the user's config whatever its profile, and both browsers leave
    /// sockets under the temporary directory, none of which belongs to a test.
    fn command(self, work: &Path, url: &str, proxy: SocketAddr) -> Command {
        let profile = work.join("profile");
        let temporary = work.join("tmp");
        for directory in [&profile, &temporary] {
            fs::create_dir(directory).unwrap();
        }
        let mut command = Command::new(self.program());
        command
            .env("HOME", work)
            .env("TMPDIR", &temporary)
            .env("XDG_RUNTIME_DIR", &temporary)
            .env("XDG_CONFIG_HOME", work.join("config"))
            .env("XDG_CACHE_HOME", work.join("cache"));
        match self {
            Self::Chromium => {
                command
                    .args(["--headless=new", "--no-sandbox", "--disable-gpu"])
                    .args(["--no-first-run", "--no-default-browser-check"])
                    .args([
                        "--disable-background-networking",
                        "--disable-component-update",
                    ])
                    .arg("--autoplay-policy=no-user-gesture-required")
                    .arg(format!("--user-data-dir={}", profile.display()))
                    .arg(format!("--proxy-server=http://{proxy}"))
                    .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1");
            }
            Self::Firefox => {
                write_firefox_prefs(&profile, proxy);
                command
                    .args(["--headless", "--no-remote", "--profile"])
                    .arg(&profile)
                    .env("MOZ_CRASHREPORTER_DISABLE", "1");
            }
        }
        command.arg(url);
        command
    }

    /// Starts the browser on `url`, its stderr (and stdout) going to `log`.
    fn launch(self, work: &Path, url: &str, proxy: SocketAddr, log: &Path) -> RunningBrowser {
        let log = File::create(log).unwrap();
        let child = self
            .command(work, url, proxy)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so that its helper processes can be killed with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| {
                let (program, package) = (self.program(), self.package());
                panic!(
                    "cannot run {program} ({error}): \
                     install the Debian package {package} (scripts/test does)"
                )
            });
        RunningBrowser { child }
    }
}

/// Preferences for a fresh Firefox profile: no first-run pages, no outside hosts.
///
/// Firefox ESR fetches its remote settings over direct connections whatever the
/// proxy, so every name resolves to 127.0.0.1 as well (where they are refused) and
/// no DNS query leaves the machine either.
fn write_firefox_prefs(profile: &Path, proxy: SocketAddr) {
    let (host, port) = (proxy.ip(), proxy.port());
    let prefs = format!(
        r#"user_pref("media.autoplay.default", 0);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("startup.homepage_welcome_url", "");
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.normandy.enabled", false);
user_pref("dom.push.connection.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.trr.mode", 5);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.dns.forceResolve", "127.0.0.1");
user_pref("network.proxy.type", 1);
user_pref("network.proxy.http", "{host}");
user_pref("network.proxy.http_port", {port});
user_pref("network.proxy.ssl", "{host}");
user_pref("network.proxy.ssl_port", {port});
user_pref("network.proxy.no_proxies_on", "127.0.0.1");
"#
    );
    fs::write(profile.join("user.js"), prefs).unwrap();
}

/// A browser process, killed with its process group on drop.
struct RunningBrowser {
    child: Child,
}

impl Drop for RunningBrowser {
    fn drop(&mut self) {
        // The group is named by the leader's id, which stays ours until it is waited on.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a browser made of one recording.
#[derive(Debug)]
struct Outcome {
    browser: Browser,
    rate: u32,
    report: Report,
    log_tail: String,
}

/// Serves a recording at `rate` to `browser` and collects the page's report.
fn play(browser: Browser, rate: u32) -> Outcome {
    let server = PageServer::start(call_recording(rate));
    let work = TempDir::new(browser.program());
    let log = work.0.join("browser.log");

    let started = Instant::now();
    let running = browser.launch(&work.0, &server.page_url(), server.address, &log);
    let report = server.reports.recv_timeout(REPORT_TIMEOUT);
    drop(running);
    let log_tail = tail(&log);

    let Ok(report) = report else {
        panic!(
            "{browser:?} sent no report within {REPORT_TIMEOUT:?} at {rate} Hz; \
             its output ended with:\n{log_tail}"
        );
    };
    eprintln!(
        "{browser:?} at {rate} Hz answered in {:.1} s; requests for other hosts refused: {:?}",
        started.elapsed().as_secs_f64(),
        server.refused()
    );
    Outcome {
        browser,
        rate,
        report,
        log_tail,
    }
}

/// The last few kilobytes of a file, as text.
fn tail(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

impl Outcome {
    /// Fails with the report and the browser's output.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{:?} at {} Hz: {what}\nreport: {:?}\nbrowser output ended with:\n{}",
            self.browser, self.rate, self.report, self.log_tail
        );
    }

    fn number(&self, key: &str) -> f64 {
        let value = self.report.get(key).and_then(|value| value.parse().ok());
        value.unwrap_or_else(|| self.fail(&format!("no number for {key}")))
    }

    fn assert_plays_as_recorded(&self) {
        if let Some(error) = self.report.get("element_error") {
            self.fail(&format!("the <audio> element failed: {error}"));
        }
        if let Some(error) = self.report.get("error") {
            self.fail(&format!("the page failed: {error}"));
        }
        let element = self.number("element_duration");
        let decoded = self.number("decoded_duration");
        let channels = self.number("decoded_channels");
        let [left_first, left_second, right_first, right_second] =
            ["rms_0_first", "rms_0_second", "rms_1_first", "rms_1_second"]
                .map(|key| self.number(key));
        eprintln!(
            "{:?} at {} Hz: <audio> duration {element} s; decoded {channels} channels of \
             {decoded} s at {} Hz; RMS left {left_first:.3} then {left_second:.3}, \
             right {right_first:.4} then {right_second:.3}",
            self.browser,
            self.rate,
            self.number("decoded_rate")
        );

        for (what, duration) in [("<audio> duration", element), ("decoded duration", decoded)] {
            if (duration - SECONDS).abs() > DURATION_TOLERANCE_S {
                self.fail(&format!("{what} {duration} s is not {SECONDS} s"));
            }
        }
        if channels != 2.0 {
            self.fail(&format!("{channels} channels decoded, not 2"));
        }
        self.assert_loudness(left_first, left_second, right_first, right_second);
    }

    /// Left talks throughout; right is silent, then talks from half-way.
    fn assert_loudness(&self, left_first: f64, left_second: f64, right_first: f64, right: f64) {
        let checks = [
            ("left, first half", left_first > LOUD_RMS),
            ("left, second half", left_second > LOUD_RMS),
            ("right, first half", right_first < SILENT_RMS),
            ("right, second half", right > LOUD_RMS),
        ];
        for (what, as_expected) in checks {
            if !as_expected {
                self.fail(&format!("{what} is not as recorded"));
            }
        }
    }
}

/// Plays the usual recording (8 kHz stereo) and a wideband one in `browser`.
fn assert_recordings_play(browser: Browser) {
    for rate in [8000, 16000] {
        play(browser, rate).assert_plays_as_recorded();
    }
}

#[test]
fn ogg_opus_recording_plays_in_chromium() {
    assert_recordings_play(Browser::Chromium);
}

#[test]
fn ogg_opus_recording_plays_in_firefox() {
    assert_recordings_play(Browser::Firefox);
}

#[test]
fn range_requests_get_the_bytes_they_ask_for() {
    assert_eq!(slice_for(None, 100), Slice::Whole);
    assert_eq!(slice_for(Some("bytes=0-"), 100), Slice::Part(0..100));
    assert_eq!(slice_for(Some("bytes=10-19"), 100), Slice::Part(10..20));
    assert_eq!(slice_for(Some("bytes=90-200"), 100), Slice::Part(90..100));
    assert_eq!(slice_for(Some("bytes=-30"), 100), Slice::Part(70..100));
    assert_eq!(slice_for(Some("bytes=100-"), 100), Slice::Unsatisfiable);
    assert_eq!(slice_for(Some("bytes=0-1,5-6"), 100), Slice::Whole);
    assert_eq!(slice_for(Some("bytes=9-3"), 100), Slice::Whole);
}

#[test]
fn reports_decode_as_url_search_params_encode() {
    let report = Report::parse("a=1.5&error=decodeAudioData%3A+EncodingError%21&empty=&error=x");
    assert_eq!(report.get("a"), Some("1.5"));
    assert_eq!(
        report.get("error"),
        Some("decodeAudioData: EncodingError!; x")
    );
    assert_eq!(report.get("empty"), Some(""));
    assert_eq!(Report::parse("caf%C3%A9=%E2%9C%93").get("café"), Some("✓"));
}
