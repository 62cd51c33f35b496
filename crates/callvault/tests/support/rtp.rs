//! A test's own RTP endpoint: sends numbered packets and keeps what it receives.
//!
//! SIPp does the signalling of a call; this endpoint stands where the SDP says the
//! phone's media is, so the test can check every payload byte that crossed callvault.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sipp::{Sipp, SippOutcome};
use super::temp::TempDir;

/// Bytes of a minimal RTP header (RFC 3550 §5.1), no CSRCs, no extension.
const HEADER: usize = 12;

/// One RTP endpoint on 127.0.0.1.
pub(crate) struct RtpPeer {
    socket: Arc<UdpSocket>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl RtpPeer {
    pub(crate) fn bind() -> Self {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind an RTP socket"));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (socket, received, stop) = (socket.clone(), received.clone(), stop.clone());
            std::thread::spawn(move || read_until_stopped(&socket, &received, &stop))
        };
        Self {
            socket,
            received,
            stop,
            reader: Some(reader),
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.socket.local_addr().expect("local address").port()
    }

    /// Sends `payloads` as PCMU packets to `to`, one every `gap`, with sequence numbers
    /// from `first_seq` so the receiver can tell order.
    pub(crate) fn send_stream(&self, to: SocketAddr, payloads: &[&[u8]], ssrc: u32, gap: Duration) {
        for (index, payload) in payloads.iter().enumerate() {
            let seq = u16::try_from(index % 65_536).expect("fits");
            let timestamp = u32::try_from(index).expect("fits") * 160;
            let mut packet = Vec::with_capacity(HEADER + payload.len());
            packet.extend_from_slice(&[0x80, 0x00]);
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&timestamp.to_be_bytes());
            packet.extend_from_slice(&ssrc.to_be_bytes());
            packet.extend_from_slice(payload);
            self.socket
                .send_to(&packet, to)
                .expect("send RTP on loopback");
            std::thread::sleep(gap);
        }
    }

    /// Every packet received so far, whole, in arrival order.
    pub(crate) fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("reader never panics").clone()
    }

    /// Waits until `count` packets have arrived or `timeout` passes.
    pub(crate) fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while self.received.lock().expect("reader never panics").len() < count
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.received()
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Reads until told to stop; the socket's read timeout bounds how long that takes.
fn read_until_stopped(socket: &UdpSocket, received: &Mutex<Vec<Vec<u8>>>, stop: &AtomicBool) {
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, _)) = socket.recv_from(&mut buffer) {
            received
                .lock()
                .expect("no panic while held")
                .push(buffer[..n].to_vec());
        }
    }
}

/// The payload of an RTP packet with a 12-byte header.
pub(crate) fn payload(packet: &[u8]) -> &[u8] {
    &packet[HEADER.min(packet.len())..]
}

/// The port of the `nth` `m=audio` line (0-based) in a SIPp message log, once written.
pub(crate) fn audio_port_in_log(log: &Path, nth: usize, timeout: Duration) -> Option<u16> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("m=audio "))
            .nth(nth)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok());
        if port.is_some() || Instant::now() >= deadline {
            return port;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SSRCs of the test's two RTP endpoints.
const CALLER_SSRC: u32 = 0x1111_1111;
const CALLEE_SSRC: u32 = 0x2222_2222;

/// How much audio each side of an [`RtpCall`] sends, and how fast.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stream {
    /// 160-byte PCMU frames, `speech.ulaw` over and over.
    pub(crate) frames: usize,
    pub(crate) gap: Duration,
}

impl Stream {
    /// Half a second: 50 frames, one every 10 ms.
    pub(crate) const SHORT: Self = Self {
        frames: 50,
        gap: Duration::from_millis(10),
    };

    /// `seconds` of audio in real time: a frame every 20 ms.
    pub(crate) fn real_time(seconds: usize) -> Self {
        Self {
            frames: seconds * 50,
            gap: Duration::from_millis(20),
        }
    }

    fn length(self) -> Duration {
        self.gap * u32::try_from(self.frames).expect("a test's stream is short")
    }
}

/// A call whose RTP both ways came from the test's own endpoints.
pub(crate) struct RtpCall {
    /// What each side sent, 160-byte PCMU frames of `speech.ulaw`.
    pub(crate) frames: Vec<Vec<u8>>,
    /// Whole RTP packets as they arrived at the callee and at the caller.
    pub(crate) at_callee: Vec<Vec<u8>>,
    pub(crate) at_caller: Vec<Vec<u8>>,
    pub(crate) uac: SippOutcome,
    pub(crate) uas: SippOutcome,
}

impl RtpCall {
    /// Places a call from SIPp at `from` through callvault's `entry` to SIPp at `to`,
    /// and streams 50 frames each way between RTP endpoints the test owns.
    pub(crate) fn run(dir: &TempDir, from: SocketAddr, to: SocketAddr, entry: SocketAddr) -> Self {
        Self::run_as(dir, (from, to, entry), "205", "07700900123")
    }

    /// As [`run`](Self::run), with the From user and the dialled number given.
    pub(crate) fn run_as(
        dir: &TempDir,
        addresses: (SocketAddr, SocketAddr, SocketAddr),
        caller: &str,
        callee: &str,
    ) -> Self {
        Self::run_with(dir, addresses, (caller, callee), Stream::SHORT, |_| {})
    }

    /// As [`run_as`](Self::run_as), streaming `stream` each way, with `during`
    /// run on a thread of its own while the audio flows; it is given callvault's
    /// relay addresses, the caller's side first.
    pub(crate) fn run_with(
        dir: &TempDir,
        (from, to, entry): (SocketAddr, SocketAddr, SocketAddr),
        (caller, callee): (&str, &str),
        stream: Stream,
        during: impl FnOnce([SocketAddr; 2]) + Send,
    ) -> Self {
        let audio = std::fs::read(super::sipp_fixtures().join("speech.ulaw")).expect("audio");
        let frames: Vec<Vec<u8>> = audio
            .chunks_exact(160)
            .cycle()
            .take(stream.frames)
            .map(<[u8]>::to_vec)
            .collect();
        let (caller_rtp, callee_rtp) = (RtpPeer::bind(), RtpPeer::bind());
        let callee_port = callee_rtp.port().to_string();
        let uas = Sipp::uas("flows/uas_answer.xml", to)
            .args(&["-set", "rtp", &callee_port, "-set", "sdpver", "1"])
            .spawn(dir);
        let caller_port = caller_rtp.port().to_string();
        // The caller hangs up 3.5 s after the streams would end.
        let hold_ms = (stream.length() + Duration::from_millis(3500)).as_millis();
        let uac = Sipp::uac("flows/uac_call.xml", from, entry)
            .args(&[
                "-s", callee, "-set", "caller", caller, "-set", "sdpver", "1",
            ])
            .args(&["-set", "rtp", &caller_port, "-d", &hold_ms.to_string()])
            .spawn(dir);

        // The caller's log holds its own offer, then callvault's answer; the callee's
        // log starts with callvault's offer.
        let wait = Duration::from_secs(15);
        let caller_side = audio_port_in_log(uac.messages_log(), 1, wait).expect("answer SDP");
        let callee_side = audio_port_in_log(uas.messages_log(), 0, wait).expect("offer SDP");
        let slices: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let gap = stream.gap;
        let to_caller_side: SocketAddr = (entry.ip(), caller_side).into();
        let to_callee_side: SocketAddr = (entry.ip(), callee_side).into();
        std::thread::scope(|scope| {
            scope.spawn(|| caller_rtp.send_stream(to_caller_side, &slices, CALLER_SSRC, gap));
            scope.spawn(|| callee_rtp.send_stream(to_callee_side, &slices, CALLEE_SSRC, gap));
            scope.spawn(move || during([to_caller_side, to_callee_side]));
        });
        let at_callee = callee_rtp.wait_for(frames.len(), Duration::from_secs(5));
        let at_caller = caller_rtp.wait_for(frames.len(), Duration::from_secs(5));
        let (uac, uas) = (uac.wait(), uas.wait());
        Self {
            frames,
            at_callee,
            at_caller,
            uac,
            uas,
        }
    }

    /// All but `max_lost` frames each way arrived, in order, each with the
    /// payload and SSRC it was sent with: for calls that cross a flood, where the
    /// kernel may drop a real packet along with the flood when the CPU is busy.
    pub(crate) fn assert_relayed_intact(&self, max_lost: usize) {
        for (received, ssrc) in [
            (&self.at_callee, CALLER_SSRC),
            (&self.at_caller, CALLEE_SSRC),
        ] {
            let lost = self.frames.len().saturating_sub(received.len());
            assert!(
                lost <= max_lost,
                "{lost} packets lost, at most {max_lost} allowed"
            );
            let mut previous = None;
            for packet in received {
                let sequence = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
                assert!(previous < Some(sequence), "out of order at {sequence}");
                previous = Some(sequence);
                let frame = self.frames.get(sequence).expect("a frame that was sent");
                assert_eq!(payload(packet), frame.as_slice(), "payload changed");
                assert_eq!(packet[8..12], ssrc.to_be_bytes(), "SSRC changed");
            }
        }
    }

    /// Every frame arrived on the other side, in order, with payload and SSRC unchanged.
    pub(crate) fn assert_relayed_unchanged(&self) {
        for (received, ssrc) in [
            (&self.at_callee, CALLER_SSRC),
            (&self.at_caller, CALLEE_SSRC),
        ] {
            assert_eq!(received.len(), self.frames.len(), "packets lost");
            for (packet, frame) in received.iter().zip(&self.frames) {
                assert_eq!(payload(packet), frame.as_slice(), "payload changed");
                assert_eq!(packet[8..12], ssrc.to_be_bytes(), "SSRC changed");
            }
        }
    }
}
