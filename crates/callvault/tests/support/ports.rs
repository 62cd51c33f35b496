//! Free loopback ports, and which ports are in use.

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::LOOPBACK;

/// Ports this test process has handed out, so two tests never share one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn claim(ports: std::ops::Range<u16>) -> bool {
    let mut handed_out = HANDED_OUT.lock().unwrap();
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
    let seed = std::process::id()
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
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
    let sockets: Result<Vec<_>, _> = (first..first + count)
        .map(|port| UdpSocket::bind((LOOPBACK, port)))
        .collect();
    sockets.is_ok()
}

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
/// port from under a daemon that is still starting. The kernel hands the table
/// out a page at a time, and a socket that another thread closes between two
/// pages can make a bound one slip out of that read: callers ask again until
/// it shows (`wait_until`), never just once.
pub(crate) fn is_bound(protocol: Protocol, address: SocketAddr) -> bool {
    let tables: [&str; 2] = match protocol {
        Protocol::Udp => ["/proc/net/udp", "/proc/net/udp6"],
        Protocol::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
    };
    tables.iter().any(|table| {
        let text = fs::read_to_string(table).unwrap_or_default();
        text.lines()
            .skip(1)
            .any(|line| entry_matches(line, protocol, address))
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
    listening
        && same_port
        && proc_ip(ip).is_some_and(|ip| ip == address.ip() || ip.is_unspecified())
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
