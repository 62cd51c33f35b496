//! The mirror that copies a call's packets to the recorder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::Side;

/// Creates a tap whose queue holds up to `capacity` packets (at least one).
pub fn tap(capacity: usize) -> (Tap, TapReceiver) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let counters = Arc::new(TapCounters::default());
    let tap = Tap {
        sender,
        counters: Arc::clone(&counters),
    };
    (tap, TapReceiver { receiver, counters })
}

/// A copy of one relayed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapPacket {
    /// The side that sent the packet.
    pub from: Side,
    /// The media stream (SDP `m=` line index).
    pub stream: usize,
    /// When callvault received it.
    pub arrival: Instant,
    /// Whether it came in on the RTCP socket rather than the RTP one.
    pub rtcp: bool,
    pub data: Bytes,
}

#[derive(Debug, Default)]
struct TapCounters {
    delivered: AtomicU64,
    dropped: AtomicU64,
}

/// The sending half of a tap, given to sessions with `set_tap`.
#[derive(Debug, Clone)]
pub struct Tap {
    sender: mpsc::Sender<TapPacket>,
    counters: Arc<TapCounters>,
}

impl Tap {
    /// Copies not queued because the queue was full or the receiver gone.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Copies queued for the receiver.
    pub fn delivered(&self) -> u64 {
        self.counters.delivered.load(Ordering::Relaxed)
    }

    /// Queues a copy without waiting; false when it had to be dropped.
    ///
    /// The relay calls this for each packet of a tapped call; it is public so that
    /// the recorder's tests can feed a tap as the relay would.
    pub fn offer(&self, packet: TapPacket) -> bool {
        let queued = self.sender.try_send(packet).is_ok();
        let counter = if queued {
            &self.counters.delivered
        } else {
            &self.counters.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        queued
    }
}

/// The receiving half of a tap, read by the recorder.
#[derive(Debug)]
pub struct TapReceiver {
    receiver: mpsc::Receiver<TapPacket>,
    counters: Arc<TapCounters>,
}

impl TapReceiver {
    /// The next copy; `None` once every [`Tap`] is dropped and the queue is empty.
    pub async fn recv(&mut self) -> Option<TapPacket> {
        self.receiver.recv().await
    }

    /// The next copy if one is queued, without waiting.
    ///
    /// The recorder drains its queue once per frame time rather than waking for
    /// every packet; each copy carries its own arrival time, so reading it later
    /// changes nothing. `Err(Disconnected)` once every [`Tap`] is dropped and the
    /// queue is empty.
    pub fn try_recv(&mut self) -> Result<TapPacket, mpsc::error::TryRecvError> {
        self.receiver.try_recv()
    }

    /// Copies lost before reaching this receiver, for marking a recording degraded.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> TapPacket {
        TapPacket {
            from: Side::Pbx,
            stream: 0,
            arrival: Instant::now(),
            rtcp: false,
            data: Bytes::from_static(&[0x80; 12]),
        }
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let (tap, receiver) = tap(2);
        let queued: Vec<bool> = (0..5).map(|_| tap.offer(packet())).collect();
        assert_eq!(queued, [true, true, false, false, false]);
        assert_eq!(tap.delivered(), 2);
        assert_eq!(tap.dropped(), 3);
        assert_eq!(receiver.dropped(), 3);
    }

    #[test]
    fn closed_receiver_counts_as_dropped() {
        let (tap, receiver) = tap(4);
        drop(receiver);
        assert!(!tap.offer(packet()));
        assert_eq!(tap.dropped(), 1);
    }
}
