//! Hostile and broken peers, through the binary on loopback.
//!
//! A peer that vanishes, floods of RTP and SIP from a stranger (another
//! 127.0.0.x address, which is neither the PBX nor the trunk), slow TCP
//! clients, a 64 KiB SIP message, and RTP that tries to take over a call's
//! media. Each test checks that calls from the real peers carry on. Run with
//! `--nocapture` to see the figures.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a failed unwrap is a failed test, and the printed figures are its report"
)]

mod support;

#[allow(dead_code, reason = "the tests read some of the names")]
#[path = "../src/metrics/names.rs"]
mod names;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use callvault_store::RecordingStatus;
use support::callvault::Callvault;
use support::config::TestConfig;
use support::metrics::{labelled, scrape, value};
use support::ports::Protocol;
use support::process::Usage;
use support::rtp::{audio_port_in_log, RtpCall, RtpPeer, Stream};
use support::sipp::Sipp;
use support::temp::TempDir;

/// The address the hostile party sends from: on loopback, but not a peer's.
const STRANGER: &str = "127.0.0.2:0";

/// Held by each flood test: two floods at once on a two-core machine measure
/// the machine, not callvault.
static FLOODS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An SSRC no real peer in these tests uses.
const STRANGER_SSRC: u32 = 0x5eed_5eed;

/// A call from the PBX whose audio must cross both ways whole.
///
/// A flood on the call's own relay ports makes the kernel drop packets at those
/// sockets whenever the machine is too busy to read them at once, real packets
/// among them; up to 1 % of the call's may go, all the rest must cross intact.
fn call_with(config: &TestConfig, stream: Stream, during: impl FnOnce([SocketAddr; 2]) + Send) {
    let dir = TempDir::new("hostile-call");
    let addresses = (config.pbx_peer, config.trunk_peer, config.pbx_listen);
    let call = RtpCall::run_with(&dir, addresses, ("201", "07700900123"), stream, during);
    call.assert_relayed_intact(call.frames.len() / 100);
    for packet in call.at_callee.iter().chain(&call.at_caller) {
        assert_ne!(
            packet[8..12],
            STRANGER_SSRC.to_be_bytes(),
            "a stranger's packet"
        );
    }
    assert!(
        call.uac.succeeded() && call.uas.succeeded(),
        "{}\n{}",
        call.uac.report(),
        call.uas.report()
    );
}

/// An RTP packet of 160 bytes of payload from the stranger.
fn stranger_packet(sequence: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&(u32::from(sequence) * 160).to_be_bytes());
    packet.extend_from_slice(&STRANGER_SSRC.to_be_bytes());
    packet.extend_from_slice(&[0x55; 160]);
    packet
}

/// Sends `rate` packets a second made by `packet` to `targets` for `length`;
/// returns how many were sent.
fn flood(
    targets: &[SocketAddr],
    rate: u32,
    length: Duration,
    packet: impl Fn(u32) -> Vec<u8>,
) -> u64 {
    let socket = UdpSocket::bind(STRANGER).unwrap();
    let (start, mut sent) = (Instant::now(), 0u64);
    while start.elapsed() < length {
        // Paced in bursts of a millisecond's worth, not one sleep per packet.
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sent < due {
            let target = targets[sent as usize % targets.len()];
            let index = u32::try_from(sent % u64::from(u32::MAX)).unwrap();
            let _ = socket.send_to(&packet(index), target);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

fn dropped(config: &TestConfig, name: &str, reason: &str) -> f64 {
    value(&scrape(config), &labelled(name, "reason", reason))
}

#[test]
fn a_peer_that_vanishes_mid_call_is_hung_up_and_its_recording_finished() {
    let dir = TempDir::new("vanish");
    let mut config = TestConfig::on_free_ports(&dir);
    config.rtp_timeout_seconds = Some(2);
    let callvault = Callvault::start(&config, &dir);
    let (phone, provider) = (RtpPeer::bind(), RtpPeer::bind());
    let trunk = Sipp::uas("flows/uas_answer.xml", config.trunk_peer)
        .args(&[
            "-set",
            "rtp",
            &provider.port().to_string(),
            "-set",
            "sdpver",
            "1",
        ])
        .spawn(&dir);
    let pbx = Sipp::uac("flows/uac_wait_bye.xml", config.pbx_peer, config.pbx_listen)
        .args(&[
            "-s",
            "07700900123",
            "-set",
            "caller",
            "201",
            "-set",
            "sdpver",
            "1",
        ])
        .args(&["-set", "rtp", &phone.port().to_string()])
        .spawn(&dir);
    let wait = Duration::from_secs(15);
    let pbx_side = audio_port_in_log(pbx.messages_log(), 1, wait).expect("answer SDP");
    let trunk_side = audio_port_in_log(trunk.messages_log(), 0, wait).expect("offer SDP");

    let frame = [0xff_u8; 160];
    let second: Vec<&[u8]> = vec![&frame; 50];
    let gap = Duration::from_millis(20);
    let to_trunk_side = (config.pbx_listen.ip(), trunk_side).into();
    let to_pbx_side = (config.pbx_listen.ip(), pbx_side).into();
    // One second of talk both ways, then the provider is gone: no SIP, no RTP.
    std::thread::scope(|scope| {
        scope.spawn(|| provider.send_stream(to_trunk_side, &second, 2, gap));
        phone.send_stream(to_pbx_side, &second, 1, gap);
    });
    let vanished = Instant::now();
    drop(trunk);
    // The practice's phone goes on sending until callvault hangs up.
    let talking: Vec<&[u8]> = vec![&frame; 400];
    std::thread::scope(|scope| {
        scope.spawn(|| phone.send_stream(to_pbx_side, &talking, 1, gap));
        let pbx = pbx.wait();
        println!(
            "the PBX got BYE {:.1} s after the provider vanished (rtp_timeout_seconds = 2)",
            vanished.elapsed().as_secs_f64()
        );
        pbx.assert_success();
    });
    assert!(callvault.output().contains("media timeout"));

    let metadata = &support::recordings::finished(&config.data_dir, 1)[0];
    assert_eq!(metadata.status, RecordingStatus::Complete);
    assert_eq!(
        metadata.end_reason.as_deref(),
        Some("the RTP stopped for the RTP timeout")
    );
}

#[test]
fn an_rtp_flood_from_a_stranger_is_dropped_and_counted_while_the_call_flows() {
    let _alone = FLOODS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("rtp-flood");
    let config = TestConfig::on_free_ports(&dir);
    let callvault = Callvault::start(&config, &dir);
    let before = Usage::of(callvault.pid());
    let started = Instant::now();
    let rate = 10_000;
    let mut sent = 0;
    call_with(&config, Stream::real_time(4), |relay| {
        sent = flood(&relay, rate, Duration::from_secs(3), |index| {
            stranger_packet(index as u16)
        });
    });
    let after = Usage::of(callvault.pid());
    let stranger = dropped(&config, names::MEDIA_DROPPED_PACKETS, "stranger");
    let cpu = after.cpu_seconds - before.cpu_seconds;
    println!(
        "RTP flood: {sent} packets at {rate}/s from 127.0.0.2, {stranger} counted dropped \
         as stranger; callvault used {cpu:.2} CPU-s over {:.1} s, resident memory \
         {} KiB before, {} KiB after",
        started.elapsed().as_secs_f64(),
        before.resident_kib,
        after.resident_kib
    );
    // The kernel may drop some of a flood before callvault reads it; none is relayed.
    assert!(stranger >= sent as f64 * 0.9, "{stranger} of {sent}");
    assert!(after.resident_kib < before.resident_kib + 64 * 1024);
}

#[test]
fn rtp_from_a_stranger_never_takes_over_the_call_media() {
    let dir = TempDir::new("hijack");
    let config = TestConfig::on_free_ports(&dir);
    let _callvault = Callvault::start(&config, &dir);
    let mut sent = 0;
    // From the first moment the relay ports are known, before either peer is
    // latched, and all through the call.
    call_with(&config, Stream::real_time(2), |relay| {
        sent = flood(&relay, 500, Duration::from_secs(2), |index| {
            stranger_packet(index as u16)
        });
    });
    let stranger = dropped(&config, names::MEDIA_DROPPED_PACKETS, "stranger");
    println!("{sent} stranger packets at both relay ports: {stranger} dropped, none relayed");
    assert!(stranger >= sent as f64 * 0.9, "{stranger} of {sent}");
}

#[test]
fn a_sip_flood_from_a_stranger_is_dropped_while_a_call_completes() {
    let _alone = FLOODS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("sip-flood");
    let config = TestConfig::on_free_ports(&dir);
    let callvault = Callvault::start(&config, &dir);
    let before = Usage::of(callvault.pid());
    let targets = [config.pbx_listen, config.trunk_listen];
    let rate = 10_000;
    let mut sent = 0;
    call_with(&config, Stream::real_time(3), |_| {
        sent = flood(&targets, rate, Duration::from_secs(3), |index| {
            format!(
                "INVITE sip:07700900123@callvault SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-flood-{index}\r\n\
                 From: <sip:intruder@127.0.0.2>;tag={index}\r\nTo: <sip:07700900123@callvault>\r\n\
                 Call-ID: flood-{index}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .into_bytes()
        });
    });
    let after = Usage::of(callvault.pid());
    let page = scrape(&config);
    let stranger = value(&page, &labelled(names::SIP_DROPPED, "reason", "stranger"));
    let cpu = after.cpu_seconds - before.cpu_seconds;
    println!(
        "SIP flood: {sent} INVITEs at {rate}/s from 127.0.0.2, {stranger} dropped as \
         stranger; callvault used {cpu:.2} CPU-s; resident memory {} KiB before, {} KiB after",
        before.resident_kib, after.resident_kib
    );
    assert!(stranger >= sent as f64 * 0.9, "{stranger} of {sent}");
    assert_eq!(value(&page, names::CALLS_ENDED), 1.0, "only the real call");
}

/// An OPTIONS from `from` to `to`, as one peer probes another.
fn options(to: SocketAddr, from: SocketAddr, transport: &str, padding: usize) -> Vec<u8> {
    let filler = "x".repeat(padding);
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bK-p{padding}\r\n\
         From: <sip:probe@{from}>;tag=1\r\nTo: <sip:{to}>\r\nCall-ID: probe-{padding}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nSubject: {filler}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends an OPTIONS over a new TCP connection and returns the status line.
fn options_over_tcp(to: SocketAddr) -> String {
    let mut stream = TcpStream::connect(to).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let from = stream.local_addr().unwrap();
    stream.write_all(&options(to, from, "TCP", 0)).unwrap();
    let mut answer = [0u8; 2048];
    let n = stream.read(&mut answer).expect("an answer over TCP");
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

/// Sends an OPTIONS over UDP from the peer's address; returns the status line.
fn options_over_udp(to: SocketAddr, padding: usize) -> Option<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let from = socket.local_addr().unwrap();
    socket
        .send_to(&options(to, from, "UDP", padding), to)
        .unwrap();
    let mut answer = vec![0u8; 65_536];
    let (n, _) = socket.recv_from(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    Some(text.lines().next().unwrap_or_default().to_owned())
}

/// Whether the peer closed `stream` (end of stream or a reset) within `timeout`.
fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn slow_tcp_clients_stall_nothing_and_are_disconnected() {
    let dir = TempDir::new("slow-tcp");
    let mut config = TestConfig::on_free_ports(&dir);
    config.pbx_transport = Protocol::Tcp;
    config.pbx_listen = support::ports::free_tcp_address();
    let callvault = Callvault::start(&config, &dir);

    let opened = Instant::now();
    let mut silent = TcpStream::connect(config.pbx_listen).unwrap();
    let mut trickle = TcpStream::connect(config.pbx_listen).unwrap();
    let message = options(config.pbx_listen, trickle.local_addr().unwrap(), "TCP", 0);
    let trickler = {
        let mut trickle = trickle.try_clone().unwrap();
        std::thread::spawn(move || {
            for byte in message {
                if trickle.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    // While both hang on, other TCP and UDP traffic is answered at once.
    for _ in 0..3 {
        let asked = Instant::now();
        assert_eq!(options_over_tcp(config.pbx_listen), "SIP/2.0 200 OK");
        let udp = options_over_udp(config.trunk_listen, 0);
        assert_eq!(udp.as_deref(), Some("SIP/2.0 200 OK"));
        assert!(asked.elapsed() < Duration::from_secs(1));
        std::thread::sleep(Duration::from_secs(1));
    }

    let limit = Duration::from_secs(15);
    assert!(
        closed_within(&mut silent, limit),
        "the silent client is still connected"
    );
    assert!(
        closed_within(&mut trickle, limit),
        "the trickling client is still connected"
    );
    println!(
        "a silent and a byte-a-second TCP client were disconnected {:.1} s after connecting",
        opened.elapsed().as_secs_f64()
    );
    let _ = trickler.join();
    assert_eq!(options_over_tcp(config.pbx_listen), "SIP/2.0 200 OK");
    drop(callvault);
}

#[test]
fn a_64_kib_sip_message_is_refused_and_the_next_one_answered() {
    let dir = TempDir::new("big-sip");
    let mut config = TestConfig::on_free_ports(&dir);
    config.pbx_transport = Protocol::Tcp;
    config.pbx_listen = support::ports::free_tcp_address();
    let mut callvault = Callvault::start(&config, &dir);

    // Over TCP: 64 KiB of header, past the framer's limit of 64 KiB a message.
    let mut stream = TcpStream::connect(config.pbx_listen).unwrap();
    let from = stream.local_addr().unwrap();
    let big = options(config.pbx_listen, from, "TCP", 64 * 1024);
    let _ = stream.write_all(&big);
    let mut answer = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    println!(
        "TCP, {} bytes: {}",
        big.len(),
        answer
            .lines()
            .next()
            .unwrap_or("connection closed, no answer")
    );
    assert!(
        answer.is_empty() || answer.starts_with("SIP/2.0 413"),
        "{answer}"
    );
    assert_eq!(options_over_tcp(config.pbx_listen), "SIP/2.0 200 OK");

    // Over UDP the largest datagram there is (65,507 bytes) stays under the limit:
    // it is a valid message, and must not harm the next one either.
    let udp_from: SocketAddr = "127.0.0.1:65535".parse().unwrap();
    let length = |padding| options(config.trunk_listen, udp_from, "UDP", padding).len();
    let mut padding = 65_507 - length(0);
    while length(padding) > 65_507 {
        padding -= 1;
    }
    let largest = options_over_udp(config.trunk_listen, padding);
    println!("UDP, 65507 bytes: {largest:?}");
    let next = options_over_udp(config.trunk_listen, 0);
    assert_eq!(next.as_deref(), Some("SIP/2.0 200 OK"));
    assert!(callvault.is_running());
}
