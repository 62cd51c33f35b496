//! The relay task of one socket, and the latching that decides where packets go.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tracing::{debug, trace};

use crate::pool::PortLease;
use crate::session::{SessionShared, StreamProtocol};
use crate::stats::DropReason;
use crate::Side;

/// The longest datagram relayed; anything longer is dropped, not cut short.
pub(crate) const MAX_DATAGRAM: usize = 4096;

/// The smallest RTP packet: the fixed header (RFC 3550 §5.1).
const MIN_RTP_LEN: usize = 12;

/// The smallest RTCP packet: a receiver report with no report blocks (RFC 3550 §6.4.2).
const MIN_RTCP_LEN: usize = 8;

/// Which socket of a pair: RTP on the even port, RTCP on the odd one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Component {
    Rtp,
    Rtcp,
}

impl Component {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Rtp => "rtp",
            Self::Rtcp => "rtcp",
        }
    }
}

/// Whether a datagram may be RTP or RTCP: long enough and version 2.
///
/// Nothing else is parsed, so the relay stays blind to payload types and SSRCs.
pub(crate) fn is_rtp_shaped(packet: &[u8], component: Component) -> bool {
    let min_len = match component {
        Component::Rtp => MIN_RTP_LEN,
        Component::Rtcp => MIN_RTCP_LEN,
    };
    packet.len() >= min_len && packet.first().is_some_and(|first| first >> 6 == 2)
}

/// A side's media endpoint: where SDP says it is and where it really sends from.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Endpoint {
    signalled: Option<SocketAddr>,
    latched: Option<SocketAddr>,
}

/// What latching made of a datagram's source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// The source is the latched address.
    Known,
    /// The source is now the latched address.
    Latched,
    /// The source may not send for this side.
    Stranger,
}

impl Endpoint {
    fn admit(&mut self, source: SocketAddr) -> Admission {
        if self.latched == Some(source) {
            return Admission::Known;
        }
        let allowed = match self.signalled {
            Some(signalled) => signalled.ip().to_canonical() == source.ip().to_canonical(),
            None => self.latched.is_none(),
        };
        if !allowed {
            return Admission::Stranger;
        }
        self.latched = Some(source);
        Admission::Latched
    }

    fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.signalled)
    }

    fn retarget(&mut self, signalled: Option<SocketAddr>) {
        if self.signalled != signalled {
            *self = Self {
                signalled,
                latched: None,
            };
        }
    }
}

/// The two endpoints, PBX and trunk, of one component of one stream.
#[derive(Debug, Default)]
pub(crate) struct Route {
    endpoints: Mutex<[Endpoint; 2]>,
}

impl Route {
    /// Admits a datagram from `from`'s side and finds the other side's address.
    fn admit(&self, from: Side, source: SocketAddr) -> (Admission, Option<SocketAddr>) {
        let mut endpoints = self.lock();
        let admission = endpoints[from.index()].admit(source);
        (admission, endpoints[from.other().index()].destination())
    }

    /// Where packets for `side` go now: where it was latched, else its SDP's address.
    pub(crate) fn destination(&self, side: Side) -> Option<SocketAddr> {
        self.lock()[side.index()].destination()
    }

    /// Sets the address SDP gave for `side`; a change forgets the latched one.
    pub(crate) fn retarget(&self, side: Side, signalled: Option<SocketAddr>) {
        self.lock()[side.index()].retarget(signalled);
    }

    fn lock(&self) -> MutexGuard<'_, [Endpoint; 2]> {
        // Every update writes whole values, so a poisoned lock still holds a valid state.
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the relay tasks of one stream share.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) rtp: Route,
    pub(crate) rtcp: Route,
    protocol: AtomicU8,
}

impl StreamState {
    fn route(&self, component: Component) -> &Route {
        match component {
            Component::Rtp => &self.rtp,
            Component::Rtcp => &self.rtcp,
        }
    }

    pub(crate) fn protocol(&self) -> StreamProtocol {
        match self.protocol.load(Ordering::Relaxed) {
            0 => StreamProtocol::Rtp,
            _ => StreamProtocol::Udptl,
        }
    }

    pub(crate) fn set_protocol(&self, protocol: StreamProtocol) {
        let code = match protocol {
            StreamProtocol::Rtp => 0,
            StreamProtocol::Udptl => 1,
        };
        self.protocol.store(code, Ordering::Relaxed);
    }
}

/// A bound media socket; its port pair returns to the pool when it closes.
#[derive(Debug)]
pub(crate) struct MediaSocket {
    pub(crate) socket: UdpSocket,
    _lease: Arc<PortLease>,
}

impl MediaSocket {
    pub(crate) fn new(socket: UdpSocket, lease: Arc<PortLease>) -> Self {
        Self {
            socket,
            _lease: lease,
        }
    }
}

/// Relays what one socket receives out of the other side's socket.
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) from: Side,
    pub(crate) stream: usize,
    pub(crate) component: Component,
    pub(crate) inbound: Arc<MediaSocket>,
    pub(crate) outbound: Arc<MediaSocket>,
    pub(crate) state: Arc<StreamState>,
    pub(crate) session: Arc<SessionShared>,
}

impl Relay {
    /// Receives and forwards until the task is aborted.
    pub(crate) async fn run(self) {
        // One byte more than the limit, so an oversized datagram shows as too long.
        let mut buffer = vec![0; MAX_DATAGRAM + 1].into_boxed_slice();
        loop {
            match self.inbound.socket.recv_from(&mut buffer).await {
                Ok((len, source)) => self.forward(&buffer[..len], source).await,
                Err(error) => {
                    debug!(%error, stream = self.stream, "media socket receive failed");
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Checks, latches, sends and mirrors one datagram.
    async fn forward(&self, packet: &[u8], source: SocketAddr) {
        let protocol = self.state.protocol();
        if !self.acceptable(packet, protocol) {
            return self.discard(DropReason::Malformed, source, packet.len());
        }
        let arrival = Instant::now();
        let (admission, destination) = self.state.route(self.component).admit(self.from, source);
        match admission {
            Admission::Stranger => return self.discard(DropReason::Stranger, source, packet.len()),
            Admission::Latched => self.log_latch(source),
            Admission::Known => {}
        }

        if self.component == Component::Rtp {
            self.session.mark_activity(self.from, arrival);
        }
        let joined = self.session.joined.load(Ordering::Relaxed);
        match destination {
            Some(destination) if joined && self.spliced() => {
                let mut spliced = packet.to_vec();
                if let Some(splice) = self
                    .session
                    .splice
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_mut()
                {
                    splice.rewrite(&mut spliced);
                }
                self.send(&spliced, destination).await;
            }
            Some(destination) if joined => self.send(packet, destination).await,
            // Held apart for the announcement: not a loss, so not counted as one.
            Some(_) => {}
            None => self.discard(DropReason::NoDestination, source, packet.len()),
        }
        // While the parties are apart, the announcement speaks for the practice
        // side in the recording; what the PBX's phone sends meanwhile nobody hears.
        let heard = joined || self.from == Side::Trunk;
        if protocol == StreamProtocol::Rtp && heard {
            let rtcp = self.component == Component::Rtcp;
            self.session
                .mirror(self.from, self.stream, rtcp, arrival, packet);
        }
    }

    fn acceptable(&self, packet: &[u8], protocol: StreamProtocol) -> bool {
        match protocol {
            _ if packet.len() > MAX_DATAGRAM => false,
            StreamProtocol::Rtp => is_rtp_shaped(packet, self.component),
            StreamProtocol::Udptl => !packet.is_empty(),
        }
    }

    /// Whether this relay's packets go out as callvault's own stream: the
    /// practice's RTP to the trunk after an announcement.
    fn spliced(&self) -> bool {
        self.from == Side::Pbx
            && self.component == Component::Rtp
            && self.session.spliced.load(Ordering::Relaxed)
    }

    async fn send(&self, packet: &[u8], destination: SocketAddr) {
        match self.outbound.socket.send_to(packet, destination).await {
            Ok(_) => {
                self.session.count_relayed(self.from, packet.len());
                trace!(
                    from = self.from.as_str(),
                    stream = self.stream,
                    component = self.component.as_str(),
                    len = packet.len(),
                    "relayed"
                );
            }
            Err(error) => {
                self.session.count_drop(DropReason::SendFailed);
                trace!(%error, %destination, stream = self.stream, "media send failed");
            }
        }
    }

    fn discard(&self, reason: DropReason, source: SocketAddr, len: usize) {
        self.session.count_drop(reason);
        trace!(
            ?reason,
            from = self.from.as_str(),
            stream = self.stream,
            component = self.component.as_str(),
            %source,
            len,
            "dropped"
        );
    }

    fn log_latch(&self, source: SocketAddr) {
        debug!(
            side = self.from.as_str(),
            stream = self.stream,
            component = self.component.as_str(),
            %source,
            "media source latched"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn rtp_shape_needs_version_two_and_a_header() {
        let mut packet = [0u8; 12];
        packet[0] = 0x80;
        assert!(is_rtp_shaped(&packet, Component::Rtp));
        assert!(!is_rtp_shaped(&packet[..11], Component::Rtp));
        assert!(is_rtp_shaped(&packet[..8], Component::Rtcp));
        assert!(!is_rtp_shaped(&packet[..7], Component::Rtcp));
        packet[0] = 0x40;
        assert!(!is_rtp_shaped(&packet, Component::Rtp));
        assert!(!is_rtp_shaped(&[], Component::Rtcp));
    }

    #[test]
    fn signalled_ip_latches_any_port() {
        let mut endpoint = Endpoint::default();
        endpoint.retarget(Some(address("192.0.2.1:4000")));
        assert_eq!(
            endpoint.admit(address("192.0.2.1:5000")),
            Admission::Latched
        );
        assert_eq!(endpoint.admit(address("192.0.2.1:5000")), Admission::Known);
        assert_eq!(endpoint.destination(), Some(address("192.0.2.1:5000")));
    }

    #[test]
    fn other_ip_is_a_stranger() {
        let mut endpoint = Endpoint::default();
        endpoint.retarget(Some(address("192.0.2.1:4000")));
        assert_eq!(
            endpoint.admit(address("198.51.100.7:4000")),
            Admission::Stranger
        );
        assert_eq!(endpoint.destination(), Some(address("192.0.2.1:4000")));
    }

    #[test]
    fn without_sdp_first_source_wins() {
        let mut endpoint = Endpoint::default();
        assert_eq!(
            endpoint.admit(address("192.0.2.1:4000")),
            Admission::Latched
        );
        assert_eq!(
            endpoint.admit(address("192.0.2.1:4002")),
            Admission::Stranger
        );
        assert_eq!(endpoint.destination(), Some(address("192.0.2.1:4000")));
    }

    #[test]
    fn new_sdp_address_forgets_latch() {
        let mut endpoint = Endpoint::default();
        endpoint.retarget(Some(address("192.0.2.1:4000")));
        endpoint.admit(address("192.0.2.1:5000"));
        endpoint.retarget(Some(address("192.0.2.1:4000")));
        assert_eq!(endpoint.destination(), Some(address("192.0.2.1:5000")));
        endpoint.retarget(Some(address("192.0.2.9:6000")));
        assert_eq!(endpoint.destination(), Some(address("192.0.2.9:6000")));
        assert_eq!(
            endpoint.admit(address("192.0.2.1:5000")),
            Admission::Stranger
        );
    }

    #[test]
    fn mapped_ipv4_source_matches_ipv4_sdp() {
        let mut endpoint = Endpoint::default();
        endpoint.retarget(Some(address("192.0.2.1:4000")));
        let mapped = address("[::ffff:192.0.2.1]:4000");
        assert_eq!(endpoint.admit(mapped), Admission::Latched);
    }
}
