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
    /// RTP packets, one per 20 ms, numbered as one stream.
    pub announcement: Vec<Vec<u8>>,
    /// One cadence of tone in the announcement's codec and SSRC; empty for none.
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
        let ticks = frame_ticks(&self.announcement)
            .or_else(|| frame_ticks(&self.ringback))
            .unwrap_or(DEFAULT_FRAME_TICKS);
        let mut stream = Restamp::new(ticks);
        for packet in &self.announcement {
            ticker.tick().await;
            if !self.send(&mut stream, packet).await {
                return;
            }
        }
        if !self.ringback.is_empty() && !self.heard() {
            info!("announcement played; ringing until the practice answers");
            for packet in self.ringback.iter().cycle() {
                ticker.tick().await;
                if self.heard() {
                    break;
                }
                if !self.send(&mut stream, packet).await {
                    return;
                }
            }
        }
        ticker.tick().await;
        self.media.set_joined(true);
        info!("announcement played; parties joined");
    }

    fn heard(&self) -> bool {
        self.practice_heard.load(Ordering::Relaxed)
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

/// 20 ms at 8000 Hz, the RTP clock of every codec but Opus.
const DEFAULT_FRAME_TICKS: u32 = 160;

/// The RTP clock ticks from one packet to the next, from the first two.
fn frame_ticks(packets: &[Vec<u8>]) -> Option<u32> {
    let [first, second, ..] = packets else {
        return None;
    };
    Some(timestamp(second)?.wrapping_sub(timestamp(first)?))
}

fn timestamp(packet: &[u8]) -> Option<u32> {
    let bytes = packet.get(4..8)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Numbers packets as one RTP stream (RFC 3550 §5.1). The tone is one cadence
/// played over and over after the announcement, so each packet's sequence number
/// and timestamp are rewritten to follow on from the packet before.
#[derive(Debug)]
struct Restamp {
    /// The sequence number and timestamp the next packet gets; `None` keeps the
    /// first packet's own.
    next: Option<(u16, u32)>,
    ticks: u32,
}

impl Restamp {
    fn new(ticks: u32) -> Self {
        Self { next: None, ticks }
    }

    fn apply(&mut self, packet: &mut [u8]) {
        let Some(header) = packet.get_mut(..12) else {
            return;
        };
        let (sequence, timestamp) = self.next.unwrap_or_else(|| {
            let sequence = u16::from_be_bytes([header[2], header[3]]);
            let timestamp = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            (sequence, timestamp)
        });
        header[2..4].copy_from_slice(&sequence.to_be_bytes());
        header[4..8].copy_from_slice(&timestamp.to_be_bytes());
        self.next = Some((sequence.wrapping_add(1), timestamp.wrapping_add(self.ticks)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(sequence: u16, timestamp: u32) -> Vec<u8> {
        let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0xff];
        packet[2..4].copy_from_slice(&sequence.to_be_bytes());
        packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
        packet
    }

    fn numbers(packet: &[u8]) -> (u16, u32) {
        (
            u16::from_be_bytes([packet[2], packet[3]]),
            timestamp(packet).unwrap(),
        )
    }

    #[test]
    fn a_repeated_cadence_continues_the_announcement_as_one_stream() {
        let announcement = [packet(65_535, u32::MAX - 159), packet(0, 0)];
        let tone = [packet(7, 1000), packet(8, 1160)];
        let ticks = frame_ticks(&announcement).unwrap();
        assert_eq!(ticks, 160);

        let mut stream = Restamp::new(ticks);
        let sent: Vec<(u16, u32)> = announcement
            .iter()
            .chain(tone.iter().cycle().take(5))
            .map(|packet| {
                let mut packet = packet.clone();
                stream.apply(&mut packet);
                assert_eq!(packet[8..], [1, 2, 3, 4, 0xff], "SSRC and payload kept");
                numbers(&packet)
            })
            .collect();
        let expected: Vec<(u16, u32)> = (0..7_u16)
            .map(|n| {
                let sequence = 65_535_u16.wrapping_add(n);
                let timestamp = (u32::MAX - 159).wrapping_add(160 * u32::from(n));
                (sequence, timestamp)
            })
            .collect();
        assert_eq!(sent, expected);
    }

    #[test]
    fn frame_ticks_need_two_packets() {
        assert_eq!(frame_ticks(&[packet(1, 100)]), None);
        assert_eq!(frame_ticks(&[packet(1, 100), packet(2, 1060)]), Some(960));
    }
}
