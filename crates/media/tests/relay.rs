//! The relay end to end on 127.0.0.1: fake endpoints exchange RTP through a session.
//!
//! Each test takes its own port range below the kernel's ephemeral range, so tests
//! running in parallel (and sockets bound on port 0) never compete for a port.

// clippy's allow-unwrap-in-tests covers #[test] functions, not the helpers beside them.
#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test helper is a failed test"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use callvault_media::{
    tap, MediaEngine, MediaError, MediaSession, RelayConfig, Side, StreamProtocol,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Long enough for anything that should happen to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

/// How long to listen before concluding that nothing was relayed.
const QUIET: Duration = Duration::from_millis(300);

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn engine_with_timeout(port_min: u16, pairs: u16, rtp_timeout: Duration) -> MediaEngine {
    let config = RelayConfig {
        port_min,
        port_max: port_min + pairs * 2 - 1,
        rtp_timeout,
    };
    MediaEngine::new(config).unwrap()
}

fn engine(port_min: u16) -> MediaEngine {
    engine_with_timeout(port_min, 20, Duration::from_secs(60))
}

async fn endpoint(ip: &str) -> UdpSocket {
    UdpSocket::bind((ip, 0)).await.unwrap()
}

fn address(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().unwrap()
}

/// An RTP packet with the given sequence number and payload.
fn rtp(sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78]);
    packet.extend_from_slice(payload);
    packet
}

/// `packet` with another SSRC.
fn with_ssrc(mut packet: Vec<u8>, ssrc: u32) -> Vec<u8> {
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    packet
}

/// An RTCP receiver report with no report blocks.
fn rtcp() -> Vec<u8> {
    vec![0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78]
}

async fn receive(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buffer = vec![0; 2048];
    let receiving = socket.recv_from(&mut buffer);
    let (len, source) = timeout(PATIENCE, receiving).await.unwrap().unwrap();
    buffer.truncate(len);
    (buffer, source)
}

async fn assert_nothing_arrives(socket: &UdpSocket) {
    let mut buffer = vec![0; 2048];
    let receiving = socket.recv_from(&mut buffer);
    let received = timeout(QUIET, receiving).await;
    assert!(received.is_err(), "a datagram arrived: {received:?}");
}

fn relay_rtp(session: &MediaSession, side: Side) -> SocketAddr {
    SocketAddr::new(LOCALHOST, session.local_rtp_port(side, 0).unwrap())
}

fn relay_rtcp(session: &MediaSession, side: Side) -> SocketAddr {
    let rtp = relay_rtp(session, side);
    SocketAddr::new(rtp.ip(), rtp.port() + 1)
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    while !condition() {
        assert!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A session with one stream between a PBX endpoint and a trunk endpoint.
struct Call {
    engine: MediaEngine,
    session: MediaSession,
    pbx: UdpSocket,
    trunk: UdpSocket,
}

async fn call(port_min: u16) -> Call {
    let engine = engine(port_min);
    let mut session = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    session.ensure_streams(1).await.unwrap();
    let pbx = endpoint("127.0.0.1").await;
    let trunk = endpoint("127.0.0.1").await;
    session.set_remote(Side::Pbx, 0, Some(address(&pbx)));
    session.set_remote(Side::Trunk, 0, Some(address(&trunk)));
    Call {
        engine,
        session,
        pbx,
        trunk,
    }
}

#[tokio::test]
async fn rtp_passes_unchanged_both_ways() {
    let call = call(21000).await;
    let to_trunk = rtp(1, b"hello from the practice");
    let to_pbx = rtp(2, b"hello from the outside world");

    call.pbx
        .send_to(&to_trunk, relay_rtp(&call.session, Side::Pbx))
        .await
        .unwrap();
    let (received, source) = receive(&call.trunk).await;
    assert_eq!(received, to_trunk);
    assert_eq!(source, relay_rtp(&call.session, Side::Trunk));

    call.trunk.send_to(&to_pbx, source).await.unwrap();
    let (received, source) = receive(&call.pbx).await;
    assert_eq!(received, to_pbx);
    assert_eq!(source, relay_rtp(&call.session, Side::Pbx));

    let stats = call.session.stats();
    assert_eq!(stats.pbx_to_trunk.packets, 1);
    assert_eq!(stats.pbx_to_trunk.bytes, to_trunk.len() as u64);
    assert_eq!(stats.trunk_to_pbx.packets, 1);
    assert!(stats.last_rtp.is_some());
    assert_eq!(call.engine.stats().packets_relayed, 2);
}

#[tokio::test]
async fn rtcp_is_relayed_between_the_odd_ports() {
    let call = call(21100).await;
    let pbx_rtcp = endpoint("127.0.0.1").await;
    let trunk_rtcp = endpoint("127.0.0.1").await;
    // The trunk's a=rtcp names its RTCP socket; the PBX's RTCP is found by latching.
    call.session
        .set_remote_rtcp(Side::Trunk, 0, Some(address(&trunk_rtcp)));

    pbx_rtcp
        .send_to(&rtcp(), relay_rtcp(&call.session, Side::Pbx))
        .await
        .unwrap();
    let (received, source) = receive(&trunk_rtcp).await;
    assert_eq!(received, rtcp());
    assert_eq!(source, relay_rtcp(&call.session, Side::Trunk));

    trunk_rtcp.send_to(&rtcp(), source).await.unwrap();
    let (received, source) = receive(&pbx_rtcp).await;
    assert_eq!(received, rtcp());
    assert_eq!(source, relay_rtcp(&call.session, Side::Pbx));
}

#[tokio::test]
async fn destination_latches_to_the_real_source() {
    let call = call(21200).await;
    // The PBX endpoint signalled one port but sends from another one.
    let real_pbx = endpoint("127.0.0.1").await;

    call.trunk
        .send_to(&rtp(1, b"before"), relay_rtp(&call.session, Side::Trunk))
        .await
        .unwrap();
    assert_eq!(receive(&call.pbx).await.0, rtp(1, b"before"));

    real_pbx
        .send_to(&rtp(2, b"latch"), relay_rtp(&call.session, Side::Pbx))
        .await
        .unwrap();
    assert_eq!(receive(&call.trunk).await.0, rtp(2, b"latch"));

    call.trunk
        .send_to(&rtp(3, b"after"), relay_rtp(&call.session, Side::Trunk))
        .await
        .unwrap();
    assert_eq!(receive(&real_pbx).await.0, rtp(3, b"after"));
    assert_nothing_arrives(&call.pbx).await;
}

#[tokio::test]
async fn stranger_cannot_hijack_media() {
    let call = call(21300).await;
    let stranger = endpoint("127.0.0.2").await;

    stranger
        .send_to(&rtp(1, b"evil"), relay_rtp(&call.session, Side::Pbx))
        .await
        .unwrap();
    call.trunk
        .send_to(&rtp(2, b"voice"), relay_rtp(&call.session, Side::Trunk))
        .await
        .unwrap();

    assert_eq!(receive(&call.pbx).await.0, rtp(2, b"voice"));
    assert_nothing_arrives(&call.trunk).await;
    assert_nothing_arrives(&stranger).await;
    assert_eq!(call.session.stats().drops.stranger, 1);
    assert_eq!(call.engine.stats().packets_dropped, 1);
}

#[tokio::test]
async fn first_source_latches_when_sdp_gave_no_address() {
    let engine = engine(21400);
    let mut session = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    session.ensure_streams(1).await.unwrap();
    let trunk = endpoint("127.0.0.1").await;
    session.set_remote(Side::Trunk, 0, Some(address(&trunk)));
    let first = endpoint("127.0.0.1").await;
    let second = endpoint("127.0.0.1").await;

    first
        .send_to(&rtp(1, b"first"), relay_rtp(&session, Side::Pbx))
        .await
        .unwrap();
    assert_eq!(receive(&trunk).await.0, rtp(1, b"first"));
    second
        .send_to(&rtp(2, b"second"), relay_rtp(&session, Side::Pbx))
        .await
        .unwrap();
    assert_nothing_arrives(&trunk).await;

    trunk
        .send_to(&rtp(3, b"reply"), relay_rtp(&session, Side::Trunk))
        .await
        .unwrap();
    assert_eq!(receive(&first).await.0, rtp(3, b"reply"));
    assert_eq!(session.stats().drops.stranger, 1);
}

#[tokio::test]
async fn new_remote_address_moves_the_media() {
    let call = call(21500).await;
    call.pbx
        .send_to(&rtp(1, b"latch"), relay_rtp(&call.session, Side::Pbx))
        .await
        .unwrap();
    receive(&call.trunk).await;

    // A re-INVITE from the PBX moves its media to another address.
    let moved = endpoint("127.0.0.3").await;
    call.session.set_remote(Side::Pbx, 0, Some(address(&moved)));

    call.trunk
        .send_to(&rtp(2, b"to new"), relay_rtp(&call.session, Side::Trunk))
        .await
        .unwrap();
    assert_eq!(receive(&moved).await.0, rtp(2, b"to new"));
    moved
        .send_to(&rtp(3, b"from new"), relay_rtp(&call.session, Side::Pbx))
        .await
        .unwrap();
    assert_eq!(receive(&call.trunk).await.0, rtp(3, b"from new"));

    call.pbx
        .send_to(&rtp(4, b"old"), relay_rtp(&call.session, Side::Pbx))
        .await
        .unwrap();
    assert_nothing_arrives(&call.trunk).await;
    assert_nothing_arrives(&call.pbx).await;
}

#[tokio::test]
async fn packets_not_shaped_like_rtp_are_dropped() {
    let call = call(21600).await;
    let relay = relay_rtp(&call.session, Side::Pbx);
    call.pbx.send_to(&[0x80, 0, 0, 1, 0], relay).await.unwrap();
    let mut version_one = rtp(1, b"payload");
    version_one[0] = 0x40;
    call.pbx.send_to(&version_one, relay).await.unwrap();
    call.pbx.send_to(&vec![0x80; 5000], relay).await.unwrap();
    call.pbx.send_to(&rtp(2, b"good"), relay).await.unwrap();

    // Datagrams on loopback arrive in order, so the good packet comes first only if
    // the three bad ones were dropped.
    assert_eq!(receive(&call.trunk).await.0, rtp(2, b"good"));
    assert_eq!(call.session.stats().drops.malformed, 3);
}

#[tokio::test]
async fn udptl_stream_passes_any_datagram_and_skips_the_tap() {
    let call = call(21700).await;
    let (tap, mut receiver) = tap(16);
    call.session.set_tap(Some(tap.clone()));
    call.session.set_protocol(0, StreamProtocol::Udptl);
    let fax = [0x00, 0x01, 0x02];

    call.pbx
        .send_to(&fax, relay_rtp(&call.session, Side::Pbx))
        .await
        .unwrap();
    assert_eq!(receive(&call.trunk).await.0, fax);
    drop(call);
    drop(tap);
    assert!(receiver.recv().await.is_none());
}

#[tokio::test]
async fn full_tap_never_slows_the_relay() {
    const PACKETS: u16 = 5000;
    const CAPACITY: usize = 16;
    const WINDOW: u16 = 50;
    let call = call(21800).await;
    let (tap, mut receiver) = tap(CAPACITY);
    call.session.set_tap(Some(tap.clone()));
    let relay = relay_rtp(&call.session, Side::Pbx);

    // Sent in windows so that no socket buffer on the way can overflow.
    for window in 0..PACKETS / WINDOW {
        let sequences = window * WINDOW..(window + 1) * WINDOW;
        for sequence in sequences.clone() {
            call.pbx
                .send_to(&rtp(sequence, &[0xd5; 160]), relay)
                .await
                .unwrap();
        }
        for sequence in sequences {
            assert_eq!(receive(&call.trunk).await.0, rtp(sequence, &[0xd5; 160]));
        }
    }

    let dropped = u64::from(PACKETS) - CAPACITY as u64;
    assert_eq!(tap.delivered(), CAPACITY as u64);
    assert_eq!(tap.dropped(), dropped);
    assert_eq!(call.session.stats().tap_drops, dropped);
    assert_eq!(call.engine.stats().tap_drops, dropped);
    for sequence in 0..CAPACITY as u16 {
        let copy = receiver.recv().await.unwrap();
        assert_eq!(copy.data, rtp(sequence, &[0xd5; 160]));
    }
}

#[tokio::test]
async fn tap_copies_both_directions_while_set() {
    let call = call(21900).await;
    let pbx_relay = relay_rtp(&call.session, Side::Pbx);
    let trunk_relay = relay_rtp(&call.session, Side::Trunk);
    call.pbx
        .send_to(&rtp(1, b"not recorded"), pbx_relay)
        .await
        .unwrap();
    receive(&call.trunk).await;

    let (tap, mut receiver) = tap(16);
    call.session.set_tap(Some(tap));
    call.pbx.send_to(&rtp(2, b"out"), pbx_relay).await.unwrap();
    receive(&call.trunk).await;
    call.trunk
        .send_to(&rtp(3, b"in"), trunk_relay)
        .await
        .unwrap();
    receive(&call.pbx).await;

    let copy = receiver.recv().await.unwrap();
    assert_eq!((copy.from, copy.stream, copy.rtcp), (Side::Pbx, 0, false));
    assert_eq!(copy.data, rtp(2, b"out"));
    let copy = receiver.recv().await.unwrap();
    assert_eq!((copy.from, copy.data), (Side::Trunk, rtp(3, b"in").into()));

    call.session.set_tap(None);
    call.pbx
        .send_to(&rtp(4, b"after"), pbx_relay)
        .await
        .unwrap();
    receive(&call.trunk).await;
    assert!(receiver.recv().await.is_none(), "tap closed once unset");
}

#[tokio::test]
async fn inactive_resolves_once_both_sides_are_silent() {
    let timeout_length = Duration::from_millis(300);
    let engine = engine_with_timeout(22000, 20, timeout_length);
    let mut session = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    session.ensure_streams(1).await.unwrap();
    let pbx = endpoint("127.0.0.1").await;
    pbx.send_to(&rtp(1, b"last words"), relay_rtp(&session, Side::Pbx))
        .await
        .unwrap();
    wait_until(|| session.stats().last_rtp.is_some()).await;

    timeout(PATIENCE, session.inactive()).await.unwrap();
    let last_rtp = session.stats().last_rtp.unwrap();
    assert!(last_rtp.elapsed() >= timeout_length);
}

#[tokio::test]
async fn inactive_waits_while_one_side_sends() {
    let engine = engine_with_timeout(22100, 20, Duration::from_secs(1));
    let mut session = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    session.ensure_streams(1).await.unwrap();
    let trunk = endpoint("127.0.0.1").await;
    let relay = relay_rtp(&session, Side::Trunk);

    let talking = async {
        for sequence in 0..100 {
            trunk.send_to(&rtp(sequence, b"talk"), relay).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        () = session.inactive() => panic!("timed out while the trunk was talking"),
        () = talking => {}
    }
    timeout(PATIENCE, session.inactive()).await.unwrap();
}

#[tokio::test]
async fn paused_timeout_keeps_a_held_call() {
    let engine = engine_with_timeout(22200, 20, Duration::from_millis(200));
    let session = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    session.pause_timeout();
    assert!(timeout(Duration::from_millis(800), session.inactive())
        .await
        .is_err());

    let resumed = Instant::now();
    session.resume_timeout();
    timeout(PATIENCE, session.inactive()).await.unwrap();
    assert!(resumed.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn dropped_session_frees_ports_and_stops_relaying() {
    let call = call(22300).await;
    let mut session = call.session;
    session.ensure_streams(2).await.unwrap();
    assert_eq!(call.engine.stats().ports_in_use, 8);
    assert_eq!(call.engine.stats().sessions_open, 1);
    let relay = relay_rtp(&session, Side::Pbx);

    drop(session);
    wait_until(|| call.engine.stats().ports_in_use == 0).await;
    assert_eq!(call.engine.stats().sessions_open, 0);
    call.pbx.send_to(&rtp(1, b"anyone?"), relay).await.unwrap();
    assert_nothing_arrives(&call.trunk).await;
    // The sockets are closed: their ports can be bound again.
    UdpSocket::bind(relay).await.unwrap();
}

#[tokio::test]
async fn ten_thousand_sessions_leak_no_ports() {
    // Two pairs: exactly one stream, so any leak fails the next ensure_streams.
    let engine = engine_with_timeout(22400, 2, Duration::from_secs(60));
    for _ in 0..10_000 {
        let mut session = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
        session.ensure_streams(1).await.unwrap();
        assert_eq!(engine.stats().ports_in_use, 4);
        drop(session);
        wait_until(|| engine.stats().ports_in_use == 0).await;
    }
    assert_eq!(engine.stats().sessions_open, 0);
}

#[tokio::test]
async fn exhausted_pool_is_a_typed_error() {
    let engine = engine_with_timeout(22500, 3, Duration::from_secs(60));
    let mut first = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    first.ensure_streams(1).await.unwrap();
    let mut second = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    let error = second.ensure_streams(1).await.unwrap_err();
    assert!(matches!(error, MediaError::PortsExhausted));
}

#[tokio::test]
async fn pair_held_elsewhere_is_skipped() {
    let engine = engine_with_timeout(22600, 3, Duration::from_secs(60));
    let squatter = UdpSocket::bind((LOCALHOST, 22601)).await.unwrap();
    let mut session = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    session.ensure_streams(1).await.unwrap();
    assert_eq!(session.local_rtp_port(Side::Pbx, 0), Some(22602));
    assert_eq!(session.local_rtp_port(Side::Trunk, 0), Some(22604));
    assert_eq!(engine.stats().ports_in_use, 4, "the skipped pair went back");
    drop(squatter);
}

#[tokio::test]
async fn unbindable_address_is_a_bind_error() {
    let engine = engine(22700);
    let elsewhere: IpAddr = "192.0.2.1".parse().unwrap();
    let mut session = engine.open_session(LOCALHOST, elsewhere).await.unwrap();
    let error = session.ensure_streams(1).await.unwrap_err();
    assert!(matches!(error, MediaError::Bind { .. }));
}

#[tokio::test]
async fn parties_held_apart_hear_only_what_callvault_sends_and_the_tap_has_it_all() {
    let call = call(23100).await;
    let (tap, mut receiver) = tap(16);
    call.session.set_tap(Some(tap));
    let (pbx_relay, trunk_relay) = (
        relay_rtp(&call.session, Side::Pbx),
        relay_rtp(&call.session, Side::Trunk),
    );
    call.session.set_joined(false);

    // The announcement reaches the trunk from the socket it sends its RTP to.
    let announcement = with_ssrc(rtp(7, b"calls are recorded"), 42);
    assert!(
        call.session
            .send_own_rtp(Side::Trunk, 0, &announcement)
            .await
    );
    let (received, source) = receive(&call.trunk).await;
    assert_eq!((&received, source), (&announcement, trunk_relay));
    // The parties' own audio is not passed on while they are apart...
    call.pbx
        .send_to(&rtp(1, b"staff"), pbx_relay)
        .await
        .unwrap();
    call.trunk
        .send_to(&rtp(2, b"caller"), trunk_relay)
        .await
        .unwrap();
    assert_nothing_arrives(&call.trunk).await;
    assert_nothing_arrives(&call.pbx).await;
    // ...and nothing was counted lost for it.
    assert_eq!(call.session.stats().drops.no_destination, 0);

    // Joined, the practice's stream goes on as the announcement's: its SSRC, and
    // sequence numbers that continue it, so that no receiver takes it for late.
    call.session.set_joined(true);
    for sequence in [3, 4] {
        let packet = rtp(sequence, b"joined");
        call.pbx.send_to(&packet, pbx_relay).await.unwrap();
        let spliced = with_ssrc(rtp(sequence + 5, b"joined"), 42);
        assert_eq!(receive(&call.trunk).await.0, spliced);
    }

    // The recorder heard the announcement as the practice side, the caller, and
    // not the practice's own phone until the parties were joined.
    let mut copies = Vec::new();
    for _ in 0..4 {
        copies.push(receiver.recv().await.unwrap());
    }
    assert_eq!(
        (copies[0].from, &copies[0].data[..]),
        (Side::Pbx, &announcement[..])
    );
    let rest: Vec<_> = copies[1..].iter().map(|copy| copy.from).collect();
    assert!(receiver.try_recv().is_err(), "nothing else was copied");
    assert_eq!(rest, [Side::Trunk, Side::Pbx, Side::Pbx]);
    // The recorder gets the practice's packets as they came.
    assert_eq!(&copies[2].data[..], &rtp(3, b"joined")[..]);
}

#[tokio::test]
async fn own_rtp_needs_an_address_to_go_to() {
    let engine = engine(23200);
    let mut session = engine.open_session(LOCALHOST, LOCALHOST).await.unwrap();
    session.ensure_streams(1).await.unwrap();
    assert!(
        !session
            .send_own_rtp(Side::Trunk, 0, &rtp(1, b"nobody"))
            .await
    );
    assert!(
        !session
            .send_own_rtp(Side::Trunk, 3, &rtp(1, b"no stream"))
            .await
    );
}
