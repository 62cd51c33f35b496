//! Counters the relay updates per packet, and the snapshots callers read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Why a received datagram was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// It came from an address that is not the side's endpoint.
    Stranger,
    /// It is not shaped like RTP or RTCP, or is too large for the buffer.
    Malformed,
    /// The other side has no address to send it to yet.
    NoDestination,
    /// The operating system refused to send it.
    SendFailed,
}

/// Dropped datagrams by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    pub stranger: u64,
    pub malformed: u64,
    pub no_destination: u64,
    pub send_failed: u64,
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.stranger + self.malformed + self.no_destination + self.send_failed
    }
}

/// Packets and bytes relayed in one direction of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub packets: u64,
    pub bytes: u64,
    /// When the last RTP packet from this direction's source side arrived.
    pub last_rtp: Option<Instant>,
}

/// A snapshot of one session's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub pbx_to_trunk: DirectionStats,
    pub trunk_to_pbx: DirectionStats,
    pub drops: Drops,
    /// Copies the tap could not take because its queue was full or closed.
    pub tap_drops: u64,
    /// Copies the tap took: zero for a call no recorder ever saw.
    pub tapped: u64,
    /// When the last RTP packet from either side arrived.
    pub last_rtp: Option<Instant>,
}

/// A snapshot of the engine's counters over all sessions, past and open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub packets_relayed: u64,
    pub bytes_relayed: u64,
    /// The sum of `drops`.
    pub packets_dropped: u64,
    pub drops: Drops,
    pub tap_drops: u64,
    /// RTP and RTCP ports bound or about to be released by sessions.
    pub ports_in_use: usize,
    /// RTP and RTCP ports in the configured range.
    pub ports_total: usize,
    pub sessions_open: usize,
}

/// Atomic drop counters, one per reason.
#[derive(Debug, Default)]
pub(crate) struct DropCounters {
    stranger: AtomicU64,
    malformed: AtomicU64,
    no_destination: AtomicU64,
    send_failed: AtomicU64,
}

impl DropCounters {
    pub(crate) fn count(&self, reason: DropReason) {
        let counter = match reason {
            DropReason::Stranger => &self.stranger,
            DropReason::Malformed => &self.malformed,
            DropReason::NoDestination => &self.no_destination,
            DropReason::SendFailed => &self.send_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Drops {
        Drops {
            stranger: self.stranger.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            no_destination: self.no_destination.load(Ordering::Relaxed),
            send_failed: self.send_failed.load(Ordering::Relaxed),
        }
    }
}

/// Atomic packet and byte counters.
#[derive(Debug, Default)]
pub(crate) struct TrafficCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl TrafficCounters {
    pub(crate) fn count(&self, bytes: usize) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}
