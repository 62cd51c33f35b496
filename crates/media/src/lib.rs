//! RTP and RTCP relay for callvault's B2BUA.
//!
//! callvault anchors media: the PBX and the trunk each send RTP to callvault, never to
//! each other. A [`MediaEngine`] owns the port pool and the global counters; each call
//! opens a [`MediaSession`], which binds one socket pair per media stream (SDP `m=` line)
//! on each side: RTP on an even port, RTCP on the port above it.
//!
//! ```text
//!   PBX endpoint <--> [PBX-side pair] ==relay== [trunk-side pair] <--> trunk endpoint
//!                                        |
//!                                   Tap (try_send)
//!                                        v
//!                                     recorder
//! ```
//!
//! A datagram that arrives on a side's socket leaves, unchanged, from the other side's
//! socket of the same stream and component. Payload types, SSRCs and bytes pass as they
//! came; the relay reads only the RTP version bits and the length.
//!
//! # Where packets go: symmetric latching
//!
//! The destination starts as the address the side's SDP gave ([`MediaSession::set_remote`]).
//! Endpoints behind NAT or with a port other than the one they signalled are reached by
//! sending back to where their packets really come from (RFC 4961 symmetric RTP): the
//! first packet from the signalled IP address latches the destination to its source
//! address and port. A packet from any other IP address is dropped and counted, so a
//! stranger who guesses a port cannot take over a call's media. With no signalled
//! address the first source latches. A new signalled address (re-INVITE) drops the latch.
//!
//! Because the source IP must equal the signalled one, an endpoint behind a NAT that
//! puts its private address in SDP is not reached; trunks and LAN PBXs signal the
//! address they send from, which is the case callvault serves.
//!
//! # Recording
//!
//! A [`Tap`] set on a session receives a copy of every relayed packet through a bounded
//! queue. The relay never waits on it: when the queue is full the copy is dropped and
//! counted ([`Tap::dropped`]), and the packet still goes on its way.
//!
//! # Cost per packet, and what is not done yet
//!
//! Each socket has one task running `recv_from` then `send_to` with a buffer it reuses,
//! so relaying allocates nothing; a tapped packet costs one copy into [`bytes::Bytes`].
//! Batching system calls (`recvmmsg`/`sendmmsg`) is not implemented: one datagram costs
//! two system calls. The per-packet work lives in `Relay::forward`, apart from the
//! receive loop, so a batched loop can later call it for each datagram of a batch.

mod engine;
mod pool;
mod relay;
mod session;
mod splice;
mod stats;
mod tap;

use std::net::IpAddr;

pub use engine::{MediaEngine, RelayConfig};
pub use session::{Inactivity, MediaSession, OwnMedia, StreamProtocol};
pub use stats::{DirectionStats, Drops, EngineStats, SessionStats};
pub use tap::{tap, Tap, TapPacket, TapReceiver};

/// One of the two parties a call's media flows between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The practice PBX and its phones.
    Pbx,
    /// The SIP trunk provider.
    Trunk,
}

impl Side {
    /// The side packets from this side are relayed to.
    pub fn other(self) -> Self {
        match self {
            Self::Pbx => Self::Trunk,
            Self::Trunk => Self::Pbx,
        }
    }

    /// A lowercase name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pbx => "pbx",
            Self::Trunk => "trunk",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Pbx => 0,
            Self::Trunk => 1,
        }
    }
}

/// Why the media engine or a session could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media port range {port_min}-{port_max} is invalid: {reason}")]
    InvalidPortRange {
        port_min: u16,
        port_max: u16,
        reason: &'static str,
    },
    #[error("rtp timeout must be longer than zero")]
    ZeroTimeout,
    #[error("no free port pair left in the media port range")]
    PortsExhausted,
    #[error("cannot bind a media socket on {address}")]
    Bind {
        address: IpAddr,
        #[source]
        source: std::io::Error,
    },
}
