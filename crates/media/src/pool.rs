//! The pool of RTP/RTCP port pairs a media engine hands out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// Even RTP ports of the configured range, each with its RTCP port above it.
///
/// Ports are taken from the front and returned to the back, so a port freed by one call
/// is reused as late as possible and stray packets of that call do not reach the next.
#[derive(Debug)]
pub(crate) struct PortPool {
    free: Mutex<VecDeque<u16>>,
    pairs: usize,
}

impl PortPool {
    /// A pool of every pair `(p, p + 1)` with even `p` in `port_min..=port_max`.
    pub(crate) fn new(port_min: u16, port_max: u16) -> Arc<Self> {
        let free: VecDeque<u16> = pair_ports(port_min, port_max).collect();
        let pairs = free.len();
        Arc::new(Self {
            free: Mutex::new(free),
            pairs,
        })
    }

    /// Takes the least recently used free pair, if any.
    pub(crate) fn take(self: &Arc<Self>) -> Option<PortLease> {
        let rtp_port = self.lock().pop_front()?;
        Some(PortLease {
            rtp_port,
            pool: Arc::clone(self),
        })
    }

    pub(crate) fn pairs_total(&self) -> usize {
        self.pairs
    }

    pub(crate) fn pairs_in_use(&self) -> usize {
        self.pairs - self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
        // The queue is never left half-updated, so a poisoned lock is still consistent.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The even RTP ports of a range whose RTCP port (`p + 1`) is also in it.
pub(crate) fn pair_ports(port_min: u16, port_max: u16) -> impl Iterator<Item = u16> {
    let first = u32::from(port_min) + u32::from(port_min) % 2;
    (first..u32::from(port_max))
        .step_by(2)
        .filter_map(|port| u16::try_from(port).ok())
}

/// A port pair on loan from the pool; dropping it gives the pair back.
#[derive(Debug)]
pub(crate) struct PortLease {
    rtp_port: u16,
    pool: Arc<PortPool>,
}

impl PortLease {
    pub(crate) fn rtp_port(&self) -> u16 {
        self.rtp_port
    }

    pub(crate) fn rtcp_port(&self) -> u16 {
        self.rtp_port + 1
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.lock().push_back(self.rtp_port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_cover_even_ports_whose_rtcp_port_fits() {
        let ports: Vec<u16> = pair_ports(30000, 30005).collect();
        assert_eq!(ports, [30000, 30002, 30004]);
        let ports: Vec<u16> = pair_ports(30000, 30004).collect();
        assert_eq!(ports, [30000, 30002]);
        let ports: Vec<u16> = pair_ports(65532, 65535).collect();
        assert_eq!(ports, [65532, 65534]);
    }

    #[test]
    fn dropped_lease_returns_to_the_back() {
        let pool = PortPool::new(40000, 40005);
        let first = pool.take().unwrap();
        assert_eq!(first.rtp_port(), 40000);
        assert_eq!(first.rtcp_port(), 40001);
        assert_eq!(pool.pairs_in_use(), 1);
        drop(first);
        assert_eq!(pool.pairs_in_use(), 0);
        assert_eq!(pool.take().unwrap().rtp_port(), 40002);
    }

    #[test]
    fn empty_pool_gives_nothing() {
        let pool = PortPool::new(40000, 40003);
        let held: Vec<PortLease> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(held.len(), 2);
        assert!(pool.take().is_none());
        assert_eq!(pool.pairs_total(), 2);
    }
}
