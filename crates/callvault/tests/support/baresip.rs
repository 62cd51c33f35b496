//! baresip phones: one config directory each, driven over the `cons` console.
//!
//! A phone plays a WAV file as its microphone (`aufile`), records what it hears
//! (`sndfile`), speaks one codec only (G.711 PCMU unless told otherwise), over UDP
//! on 127.0.0.1, and never registers. The test types commands at it (`/dial`,
//! `/hold`, `/resume`, `/hangup`, `/quit`) by UDP datagrams to its console port, as
//! a person would at its prompt.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use super::ports::{free_tcp_address, free_udp_port_block, is_bound, Protocol};
use super::temp::TempDir;
use super::{wait_until, STARTUP_TIMEOUT};

/// The longest a phone may live before `timeout` ends it.
const LIFETIME: Duration = Duration::from_secs(240);

/// How long a phone may take to stop once told to.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The size of the header libsndfile writes before a WAV file's samples.
const WAV_HEADER_BYTES: u64 = 44;

/// An executable on PATH; fails the test, naming its Debian package, if missing.
pub(crate) fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: install {package} (scripts/test does)"))
}

/// The one audio codec a phone offers and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Codec {
    /// G.711 µ-law, 8 kHz.
    #[default]
    Pcmu,
    /// G.722, 16 kHz audio (signalled as 8000 in SDP).
    G722,
    /// Opus, 48 kHz on the wire.
    Opus,
}

impl Codec {
    /// The baresip module that provides the codec.
    fn module(self) -> &'static str {
        match self {
            Self::Pcmu => "g711.so",
            Self::G722 => "g722.so",
            Self::Opus => "opus.so",
        }
    }

    /// The sample rate and channels of the audio baresip codes; `aufile` refuses a
    /// microphone file of any other.
    pub(crate) fn audio_format(self) -> (u32, u16) {
        match self {
            Self::Pcmu => (8000, 1),
            Self::G722 => (16000, 1),
            Self::Opus => (48000, 2),
        }
    }

    /// The entry of an account's `audio_codecs` list: name, sample rate and
    /// channels, since baresip takes a bare name to mean 8000 Hz mono.
    fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "pcmu",
            Self::G722 => "g722/16000/1",
            Self::Opus => "opus/48000/2",
        }
    }
}

/// A baresip phone, described before it starts.
#[derive(Debug, Clone)]
pub(crate) struct Phone {
    label: String,
    sip: SocketAddr,
    user: String,
    microphone: PathBuf,
    auto_answer: bool,
    codec: Codec,
}

impl Phone {
    /// A phone called `label`, taking SIP on `sip` for `user`, whose
    /// microphone plays `microphone`: 16-bit WAV in the codec's
    /// [`Codec::audio_format`].
    pub(crate) fn new(label: &str, sip: SocketAddr, user: &str, microphone: &Path) -> Self {
        Self {
            label: label.to_owned(),
            sip,
            user: user.to_owned(),
            microphone: microphone.to_owned(),
            auto_answer: false,
            codec: Codec::default(),
        }
    }

    /// Offers and accepts `codec` only.
    pub(crate) fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Answers incoming calls at once.
    pub(crate) fn auto_answer(mut self) -> Self {
        self.auto_answer = true;
        self
    }

    /// Starts baresip and waits until its SIP and console sockets are bound.
    pub(crate) fn spawn(self, dir: &TempDir) -> PhoneProcess {
        let home = dir.path().join(format!("baresip-{}", self.label));
        let recordings = home.join("recordings");
        fs::create_dir_all(&recordings).unwrap();
        let console = free_console_address();
        fs::write(home.join("config"), self.config(console, &recordings)).unwrap();
        fs::write(home.join("accounts"), self.account()).unwrap();

        let log = dir.path().join(format!("baresip-{}.log", self.label));
        let child = command(&home, &log).spawn().unwrap();
        let control = UdpSocket::bind((console.ip(), 0)).unwrap();
        let mut phone = PhoneProcess {
            label: self.label,
            child,
            console,
            control,
            recordings,
            log,
            status: None,
        };
        let bound = wait_until(STARTUP_TIMEOUT, || {
            is_bound(Protocol::Udp, self.sip) && is_bound(Protocol::Udp, console)
        });
        if !bound {
            phone.fail(&format!(
                "never bound SIP {} and console {console}",
                self.sip
            ));
        }
        phone
    }

    /// The `config` file: no sound card, one codec, everything on loopback.
    fn config(&self, console: SocketAddr, recordings: &Path) -> String {
        let rtp = free_udp_port_block(16);
        let lines = [
            "poll_method epoll".to_owned(),
            format!("sip_listen {}", self.sip),
            format!("net_interface {}", self.sip.ip()),
            "call_local_timeout 60".to_owned(),
            "call_max_calls 1".to_owned(),
            // A bridge with no source on its far end: what the phone would play goes
            // nowhere, with no sound card and no thread spinning to play it.
            "audio_player aubridge,nowhere".to_owned(),
            "audio_alert aubridge,nowhere".to_owned(),
            format!("audio_source aufile,{}", self.microphone.display()),
            format!("rtp_ports {rtp}-{}", rtp + 15),
            "rtcp_mux no".to_owned(),
            "jitter_buffer_delay 5-10".to_owned(),
            "statmode_default off".to_owned(),
            "module_path /usr/lib/baresip/modules".to_owned(),
            format!("module {}", self.codec.module()),
            "module aufile.so".to_owned(),
            "module aubridge.so".to_owned(),
            "module sndfile.so".to_owned(),
            "module cons.so".to_owned(),
            "module_tmp account.so".to_owned(),
            "module_app menu.so".to_owned(),
            format!("cons_listen {console}"),
            format!("snd_path {}", recordings.display()),
        ];
        lines.join("\n") + "\n"
    }

    /// The `accounts` file: one account that never registers.
    fn account(&self) -> String {
        let answer = if self.auto_answer { "auto" } else { "manual" };
        format!(
            "<sip:{}@{}>;regint=0;answermode={answer};audio_codecs={}\n",
            self.user,
            self.sip,
            self.codec.name()
        )
    }
}

/// baresip under `timeout`, with line-buffered output into `log`.
fn command(home: &Path, log: &Path) -> Command {
    let mut command = Command::new("timeout");
    command
        .arg("--kill-after=5s")
        .arg(format!("{}s", LIFETIME.as_secs()))
        .args(["stdbuf", "-oL", "-eL"])
        .arg(tool("baresip", "baresip-core"))
        .arg("-f")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(fs::File::create(log).unwrap())
        .stderr(Stdio::from(
            fs::File::create(log.with_extension("stderr")).unwrap(),
        ));
    command
}

/// A port free for both UDP and TCP: the console listens on both.
fn free_console_address() -> SocketAddr {
    loop {
        let address = free_tcp_address();
        if UdpSocket::bind(address).is_ok() {
            return address;
        }
    }
}

/// A running baresip phone; stopped when dropped.
#[derive(Debug)]
pub(crate) struct PhoneProcess {
    label: String,
    child: Child,
    console: SocketAddr,
    control: UdpSocket,
    recordings: PathBuf,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl PhoneProcess {
    /// Types `/line` and Enter at the phone's console.
    pub(crate) fn command(&self, line: &str) {
        let typed = format!("/{line}\n");
        self.control
            .send_to(typed.as_bytes(), self.console)
            .unwrap();
    }

    pub(crate) fn dial(&self, uri: &str) {
        self.command(&format!("dial {uri}"));
    }

    /// Answers the call that is ringing.
    pub(crate) fn accept(&self) {
        self.command("accept");
    }

    pub(crate) fn hang_up(&self) {
        self.command("hangup");
    }

    /// Puts the call on hold: a re-INVITE offering `a=sendonly`.
    pub(crate) fn hold(&self) {
        self.command("hold");
    }

    /// Takes the call off hold: a re-INVITE offering `a=sendrecv`.
    pub(crate) fn resume(&self) {
        self.command("resume");
    }

    /// Asks baresip to end its calls and exit.
    pub(crate) fn quit(&self) {
        self.command("quit");
    }

    /// Waits for the process to exit by itself; `None` if it is still running.
    pub(crate) fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || {
            self.status = self.status.or_else(|| self.child.try_wait().unwrap());
            self.status.is_some()
        });
        self.status
    }

    /// The files `sndfile` writes what the phone hears into, in the order they
    /// were made. baresip starts a new one each time it restarts its audio: at
    /// early media, at every provisional response after it, and at the answer.
    /// Names are to the second, so a restart within the same second starts the
    /// file again.
    pub(crate) fn received_recordings(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.recordings) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        files.sort();
        files
    }

    /// Everything the phone heard, its files one after the other, at 8 kHz.
    pub(crate) fn heard_at_8khz(&self) -> Vec<f64> {
        let files = self.received_recordings();
        assert!(!files.is_empty(), "baresip {} heard nothing", self.label);
        files
            .iter()
            .flat_map(|path| super::audio::Wav::read(path).channel_at_8khz(0))
            .collect()
    }

    /// How many samples the phone has recorded from the far end so far.
    ///
    /// Counted from the files' sizes, because a WAV header gets its lengths
    /// only when baresip closes the file.
    pub(crate) fn received_samples(&self) -> u64 {
        self.received_recordings()
            .iter()
            .filter_map(|path| fs::metadata(path).ok())
            .map(|metadata| metadata.len().saturating_sub(WAV_HEADER_BYTES) / 2)
            .sum()
    }

    /// How many seconds of audio the phone has recorded from the far end so far,
    /// at whatever rate and channel count its decoder gives.
    pub(crate) fn received_seconds(&self) -> f64 {
        let Some(path) = self.received_recordings().pop() else {
            return 0.0;
        };
        let header = fs::File::open(&path).and_then(|mut file| {
            let mut header = [0; WAV_HEADER_BYTES as usize];
            std::io::Read::read_exact(&mut file, &mut header).map(|()| header)
        });
        let Ok(header) = header else {
            return 0.0;
        };
        let channels = u64::from(u16::from_le_bytes([header[22], header[23]]));
        let rate = u64::from(u32::from_le_bytes([
            header[24], header[25], header[26], header[27],
        ]));
        let frames = self.received_samples() / channels.max(1);
        frames as f64 / rate.max(1) as f64
    }

    /// What baresip has printed so far.
    pub(crate) fn log(&self) -> String {
        let stdout = fs::read_to_string(&self.log).unwrap_or_default();
        let stderr = fs::read_to_string(self.log.with_extension("stderr")).unwrap_or_default();
        format!("{stdout}{stderr}")
    }

    /// Fails the test with the phone's log.
    pub(crate) fn fail(&mut self, what: &str) -> ! {
        self.stop();
        panic!("baresip {} {what}; its log:\n{}", self.label, self.log());
    }

    /// Ends the process: SIGTERM reaches baresip through `timeout`, which
    /// kills it if it lingers; SIGKILL only if even that fails.
    fn stop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-s", "TERM", &pid]).status();
        if self.wait_for_exit(STOP_TIMEOUT).is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for PhoneProcess {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("baresip {}'s log:\n{}", self.label, self.log());
        }
    }
}
