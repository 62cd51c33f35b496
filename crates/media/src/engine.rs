//! The media engine: port pool, configuration and global counters.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::pool::{pair_ports, PortPool};
use crate::session::MediaSession;
use crate::stats::{DropCounters, DropReason, EngineStats, TrafficCounters};
use crate::MediaError;

/// How the relay binds ports and when a call counts as dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// The lowest port to bind; must be even (RTP takes even ports).
    pub port_min: u16,
    /// The highest port to bind.
    pub port_max: u16,
    /// How long both sides may send no RTP before a session is inactive.
    pub rtp_timeout: Duration,
}

/// A call stream needs a pair on each side.
const MIN_PAIRS: usize = 2;

impl RelayConfig {
    fn validate(&self) -> Result<(), MediaError> {
        let invalid = |reason| MediaError::InvalidPortRange {
            port_min: self.port_min,
            port_max: self.port_max,
            reason,
        };
        if !self.port_min.is_multiple_of(2) {
            return Err(invalid("port_min must be even"));
        }
        if self.port_min == 0 {
            return Err(invalid("port_min must not be 0"));
        }
        if pair_ports(self.port_min, self.port_max).count() < MIN_PAIRS {
            return Err(invalid("a stream needs at least 4 ports"));
        }
        if self.rtp_timeout.is_zero() {
            return Err(MediaError::ZeroTimeout);
        }
        Ok(())
    }
}

/// Relays the media of every call; cheap to clone.
#[derive(Debug, Clone)]
pub struct MediaEngine {
    shared: Arc<EngineShared>,
}

/// What the engine's sessions and relay tasks share.
#[derive(Debug)]
pub(crate) struct EngineShared {
    pub(crate) config: RelayConfig,
    pub(crate) pool: Arc<PortPool>,
    pub(crate) relayed: TrafficCounters,
    pub(crate) drops: DropCounters,
    tap_drops: AtomicU64,
    sessions_open: AtomicUsize,
}

impl EngineShared {
    pub(crate) fn count_drop(&self, reason: DropReason) {
        self.drops.count(reason);
    }

    pub(crate) fn count_tap_drop(&self) {
        self.tap_drops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn session_closed(&self) {
        self.sessions_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MediaEngine {
    /// Checks the configuration and sets up the port pool; binds nothing.
    pub fn new(config: RelayConfig) -> Result<Self, MediaError> {
        config.validate()?;
        let pool = PortPool::new(config.port_min, config.port_max);
        let shared = EngineShared {
            config,
            pool,
            relayed: TrafficCounters::default(),
            drops: DropCounters::default(),
            tap_drops: AtomicU64::new(0),
            sessions_open: AtomicUsize::new(0),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Opens a call's session; its sockets bind on `pbx_ip` and `trunk_ip`.
    ///
    /// The addresses are callvault's own, one per side (`0.0.0.0` binds all IPv4
    /// interfaces). Nothing is bound until [`MediaSession::ensure_streams`].
    pub async fn open_session(
        &self,
        pbx_ip: IpAddr,
        trunk_ip: IpAddr,
    ) -> Result<MediaSession, MediaError> {
        self.shared.sessions_open.fetch_add(1, Ordering::Relaxed);
        Ok(MediaSession::new(
            Arc::clone(&self.shared),
            pbx_ip,
            trunk_ip,
        ))
    }

    pub fn config(&self) -> &RelayConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> EngineStats {
        let shared = &self.shared;
        let drops = shared.drops.snapshot();
        EngineStats {
            packets_relayed: shared.relayed.packets(),
            bytes_relayed: shared.relayed.bytes(),
            packets_dropped: drops.total(),
            drops,
            tap_drops: shared.tap_drops.load(Ordering::Relaxed),
            ports_in_use: shared.pool.pairs_in_use() * 2,
            ports_total: shared.pool.pairs_total() * 2,
            sessions_open: shared.sessions_open.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(port_min: u16, port_max: u16) -> RelayConfig {
        RelayConfig {
            port_min,
            port_max,
            rtp_timeout: Duration::from_secs(30),
        }
    }

    fn rejection(config: RelayConfig) -> MediaError {
        MediaEngine::new(config).unwrap_err()
    }

    #[test]
    fn odd_port_min_is_rejected() {
        let error = rejection(config(30001, 31000));
        assert!(matches!(error, MediaError::InvalidPortRange { .. }));
    }

    #[test]
    fn range_shorter_than_one_stream_is_rejected() {
        assert!(matches!(
            rejection(config(30000, 30002)),
            MediaError::InvalidPortRange { .. }
        ));
        assert!(matches!(
            rejection(config(30000, 20000)),
            MediaError::InvalidPortRange { .. }
        ));
        assert!(MediaEngine::new(config(30000, 30003)).is_ok());
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let mut config = config(30000, 31000);
        config.rtp_timeout = Duration::ZERO;
        assert!(matches!(rejection(config), MediaError::ZeroTimeout));
    }

    #[test]
    fn new_engine_counts_whole_range() {
        let engine = MediaEngine::new(config(30000, 31999)).unwrap();
        let stats = engine.stats();
        assert_eq!(stats.ports_total, 2000);
        assert_eq!(stats.ports_in_use, 0);
        assert_eq!(stats.sessions_open, 0);
    }
}
