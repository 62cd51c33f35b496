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
