//! What callvault itself plays to the trunk side: the recording announcement, and
//! after it on an inbound call the ringing tone until the practice answers.
//!
//! One packet goes out every 20 ms from a task of its own, never from the SIP
//! core. A call that ends meanwhile closes its media session, and the task stops
//! at its next packet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use callvault_media::{OwnMedia, Side};
use tracing::info;

/// How long one packet of the announcement or the tone lasts.
const PACKET: Duration = Duration::from_millis(20);

/// The announcement, then ringing until `practice_heard` is set, then the parties
/// are joined.
pub(crate) struct Playout {
    pub media: OwnMedia,
    pub announcement: Vec<Vec<u8>>,
    /// One cadence of tone in the announcement's stream; empty for none.
    pub ringback: Vec<Vec<u8>>,
    /// Set by the SIP core when the practice answered or sent early media.
    pub practice_heard: Arc<AtomicBool>,
}

impl Playout {
    /// How long the announcement lasts.
    pub(crate) fn announcement_length(&self) -> Duration {
        PACKET * u32::try_from(self.announcement.len()).unwrap_or(u32::MAX)
    }

    pub(crate) async fn run(self) {
        let mut ticker = tokio::time::interval(PACKET);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut stream = Restamp::default();
        for packet in &self.announcement {
            ticker.tick().await;
            if !self.send(&mut stream, packet).await {
                return;
            }
        }
        let rings = !self.ringback.is_empty() && !self.practice_heard.load(Ordering::Relaxed);
        if rings {
            info!("announcement played; ringing until the practice answers");
        }
        for packet in self.ringback.iter().cycle().take_while(|_| rings) {
            ticker.tick().await;
            if self.practice_heard.load(Ordering::Relaxed) {
                break;
            }
            if !self.send(&mut stream, packet).await {
                return;
            }
        }
        ticker.tick().await;
        self.media.set_joined(true);
        info!("announcement played; parties joined");
    }

    /// Sends one packet as the next of the stream; `false` once the call is over.
    async fn send(&self, stream: &mut Restamp, packet: &[u8]) -> bool {
        if self.media.is_closed() {
            return false;
        }
        let mut packet = packet.to_vec();
        stream.apply(&mut packet);
        self.media.send_rtp(Side::Trunk, 0, &packet).await;
        true
    }
}

/// Numbers packets as one RTP stream (RFC 3550 §5.1): the tone is one cadence
/// played over and over, so its sequence numbers and timestamps are rewritten to
/// follow on from the packet before.
#[derive(Debug, Default)]
struct Restamp {
    /// The sequence number and timestamp the next packet gets.
    next: Option<(u16, u32)>,
    /// Timestamp ticks per packet, from the first two packets' timestamps.
    ticks: Option<u32>,
    first_timestamp: Option<u32>,
}

impl Restamp {
    fn apply(&mut self, packet: &mut [u8]) {
        let Some(header) = packet.get_mut(..12) else {
            return;
        };
        let timestamp = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        match (self.first_timestamp, self.ticks) {
            (None, _) => self.first_timestamp = Some(timestamp),
            (Some(first), None) => self.ticks = Some(timestamp.wrapping_sub(first)),
            _ => {}
        }
        let (sequence, timestamp) = self
            .next
            .unwrap_or((u16::from_be_bytes([header[2], header[3]]), timestamp));
        header[2..4].copy_from_slice(&sequence.to_be_bytes());
        header[4..8].copy_from_slice(&timestamp.to_be_bytes());
        let ticks = self.ticks.unwrap_or(0);
        self.next = Some((sequence.wrapping_add(1), timestamp.wrapping_add(ticks)));
    }
}
