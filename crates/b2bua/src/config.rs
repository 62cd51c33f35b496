//! What the daemon tells the B2BUA: addresses, timers and media settings.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The SIP transport of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One side of callvault: the PBX side or the trunk side.
#[derive(Debug, Clone)]
pub struct SideConfig {
    /// Where callvault takes SIP from this side.
    pub listen: SocketAddr,
    /// The peer on this side, resolved. SIP from any other address is dropped.
    pub peer: SocketAddr,
    /// The address put in Via, Contact, Record-Route and SDP; `listen`'s IP when `None`.
    pub advertise: Option<IpAddr>,
    pub transport: Transport,
}

/// Everything the B2BUA needs to run.
#[derive(Debug, Clone)]
pub struct B2buaConfig {
    pub pbx: SideConfig,
    pub trunk: SideConfig,
    /// First and last UDP port for RTP (RTCP uses the odd port above each RTP port).
    pub media_port_min: u16,
    pub media_port_max: u16,
    /// A call whose media has been silent both ways, or from a side that had
    /// been sending, for this long is ended.
    pub rtp_timeout: Duration,
    /// Where registration bindings are kept so they survive a restart.
    pub state_dir: PathBuf,
    /// RFC 3261 T1, the round-trip estimate (500 ms by default).
    pub t1: Duration,
}
