//! The SIPp scenarios and the test harness, without callvault.
//!
//! A call from `uac_pcmu.xml` straight to `uas_pcmu.xml` must succeed;
//! otherwise a failing test through callvault could be the scenarios'
//! fault rather than callvault's.

mod support;

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use support::ports::{free_udp_address, free_udp_port_block, is_bound, Protocol};
use support::sipp::Sipp;
use support::temp::TempDir;
use support::wait_until;

/// How long a socket may take to show in /proc/net; see [`is_bound`].
const SHOWS_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn pcmu_scenarios_complete_a_call_directly() {
    let dir = TempDir::new("sipp-direct");
    let uas_address = free_udp_address();
    let uac_address = free_udp_address();

    let uas = Sipp::uas("uas_pcmu.xml", uas_address).spawn(&dir);
    let uac = Sipp::uac("uac_pcmu.xml", uac_address, uas_address)
        .args(&["-s", "01632960123"])
        .run(&dir);
    let uas = uas.wait();

    uac.assert_success();
    uas.assert_success();
    assert_eq!(
        uac.stat("SuccessfulCall(C)").as_deref(),
        Some("1"),
        "{}",
        uac.report()
    );
    assert_eq!(
        uas.stat("SuccessfulCall(C)").as_deref(),
        Some("1"),
        "{}",
        uas.report()
    );
    assert!(uac.messages.contains("BYE sip:"), "{}", uac.report());
}

#[test]
fn harness_sees_a_bound_udp_socket() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    assert!(wait_until(SHOWS_WITHIN, || is_bound(
        Protocol::Udp,
        address
    )));
}

#[test]
fn harness_sees_a_listening_tcp_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    assert!(wait_until(SHOWS_WITHIN, || is_bound(
        Protocol::Tcp,
        address
    )));
}

#[test]
fn harness_port_blocks_are_even_and_free() {
    let first = free_udp_port_block(4);
    assert_eq!(first % 2, 0);
    let sockets: Vec<_> = (first..first + 4)
        .map(|port| UdpSocket::bind(("127.0.0.1", port)).unwrap())
        .collect();
    assert_eq!(sockets.len(), 4);
}
