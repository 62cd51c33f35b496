//! SIP over UDP: one socket per side, and the filter that admits only that side's peer.
//!
//! Each socket's receive loop parses datagrams and hands them to the core as events.
//! Sending never waits on the core: `send` is a plain `send_to` on a shared socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use callvault_media::Side;
use callvault_sip::{Message, ParseError};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, trace};

use crate::B2buaError;

/// The largest datagram callvault reads; bigger ones are truncated and fail to parse.
const MAX_DATAGRAM: usize = 65_535;

/// A SIP message as it arrived, with where it came from.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub side: Side,
    pub source: SocketAddr,
    pub message: Message,
}

/// Counts of what the transports threw away.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Datagrams from an address that is neither the PBX nor the trunk.
    pub strangers: AtomicU64,
    /// Datagrams from a peer that did not parse as SIP.
    pub malformed: AtomicU64,
}

/// One side's UDP socket.
#[derive(Debug, Clone)]
pub(crate) struct UdpTransport {
    side: Side,
    socket: Arc<UdpSocket>,
}

impl UdpTransport {
    pub(crate) async fn bind(side: Side, listen: SocketAddr) -> Result<Self, B2buaError> {
        let socket = UdpSocket::bind(listen).await.map_err(|source| B2buaError::Bind {
            side: side_name(side),
            address: listen,
            source,
        })?;
        Ok(Self { side, socket: Arc::new(socket) })
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends `message` to `to`. A send error is the network's answer, not ours to retry:
    /// the transaction layer retransmits over UDP anyway.
    pub(crate) async fn send(&self, to: SocketAddr, message: &Message) {
        let bytes = message.to_bytes();
        trace!(side = side_name(self.side), %to, len = bytes.len(), "sip out");
        if let Err(error) = self.socket.send_to(&bytes, to).await {
            debug!(side = side_name(self.side), %to, %error, "sip send failed");
        }
    }

    /// Reads datagrams until the core goes away, admitting only `peer`'s.
    pub(crate) async fn receive_loop(
        self,
        peer: SocketAddr,
        events: mpsc::Sender<Inbound>,
        stats: Arc<TransportStats>,
    ) {
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        loop {
            let (len, source) = match self.socket.recv_from(&mut buffer).await {
                Ok(received) => received,
                // ICMP port unreachable from an earlier send surfaces here on Linux.
                Err(error) => {
                    debug!(side = side_name(self.side), %error, "sip receive error");
                    continue;
                }
            };
            if !admits(peer, source) {
                stats.strangers.fetch_add(1, Ordering::Relaxed);
                trace!(side = side_name(self.side), %source, "sip from a stranger dropped");
                continue;
            }
            match parse_datagram(&buffer[..len]) {
                Ok(Some(message)) => {
                    let inbound = Inbound { side: self.side, source, message };
                    if events.send(inbound).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    debug!(side = side_name(self.side), %source, %error, "malformed sip dropped");
                }
            }
        }
    }
}

/// Keep-alive datagrams (a bare CRLF or two, RFC 5626 §3.5.1) are not messages.
fn parse_datagram(bytes: &[u8]) -> Result<Option<Message>, ParseError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    callvault_sip::parse(bytes).map(Some)
}

/// Only the configured peer may talk to a side. The port is not checked: a PBX or a
/// provider may send from another port than the one it listens on.
fn admits(peer: SocketAddr, source: SocketAddr) -> bool {
    peer.ip() == source.ip()
}

pub(crate) fn side_name(side: Side) -> &'static str {
    match side {
        Side::Pbx => "pbx",
        Side::Trunk => "trunk",
    }
}
