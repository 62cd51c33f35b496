//! One RTP stream towards the external party across the announcement.
//!
//! callvault plays the recording announcement to the trunk side as a stream of its
//! own, then joins the parties. A receiver that does not start afresh when the
//! SSRC changes (RFC 3550 §8.2 asks it to, not every one does) would take the
//! practice's packets that follow for a late part of the announcement's stream,
//! whose sequence numbers they do not continue, and drop them. So after an
//! announcement the practice's packets are sent on as the announcement's stream:
//! its SSRC, and sequence numbers and timestamps continuing its own, as a
//! media-switching mixer does (RFC 7667 §3.6).
//! A new source on the practice side (a transfer) is spliced on the same way.

/// Where the announcement's stream ended, and how the practice's maps onto it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Splice {
    ssrc: u32,
    /// The sequence number and timestamp the next packet continues from.
    next_sequence: u16,
    next_timestamp: u32,
    /// The practice's source, and where its numbers started, once it sends.
    source: Option<Source>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    first_sequence: u16,
    first_timestamp: u32,
    /// What the first packet of the source became.
    base_sequence: u16,
    base_timestamp: u32,
}

impl Splice {
    /// A splice after the last announcement packet `last`, whose frames last
    /// `frame_ticks` of the RTP clock.
    pub(crate) fn after(last: &[u8], frame_ticks: u32) -> Option<Self> {
        let (ssrc, sequence, timestamp) = header(last)?;
        Some(Self {
            ssrc,
            next_sequence: sequence.wrapping_add(1),
            next_timestamp: timestamp.wrapping_add(frame_ticks),
            source: None,
        })
    }

    /// Rewrites `packet`'s header (an RTP packet of the practice) in place.
    pub(crate) fn rewrite(&mut self, packet: &mut [u8]) {
        let Some((ssrc, sequence, timestamp)) = header(packet) else {
            return;
        };
        let source = match self.source {
            Some(source) if source.ssrc == ssrc => source,
            _ => {
                let source = Source {
                    ssrc,
                    first_sequence: sequence,
                    first_timestamp: timestamp,
                    base_sequence: self.next_sequence,
                    base_timestamp: self.next_timestamp,
                };
                self.source = Some(source);
                source
            }
        };
        let out_sequence = source
            .base_sequence
            .wrapping_add(sequence.wrapping_sub(source.first_sequence));
        let out_timestamp = source
            .base_timestamp
            .wrapping_add(timestamp.wrapping_sub(source.first_timestamp));
        packet[2..4].copy_from_slice(&out_sequence.to_be_bytes());
        packet[4..8].copy_from_slice(&out_timestamp.to_be_bytes());
        packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        // A later source continues from here.
        self.next_sequence = out_sequence.wrapping_add(1);
        self.next_timestamp = out_timestamp.wrapping_add(1);
    }
}

/// SSRC, sequence number and timestamp of an RTP packet (RFC 3550 §5.1).
fn header(packet: &[u8]) -> Option<(u32, u16, u32)> {
    let bytes = packet.get(..12)?;
    let sequence = u16::from_be_bytes([bytes[2], bytes[3]]);
    let timestamp = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let ssrc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    Some((ssrc, sequence, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ssrc: u32, sequence: u16, timestamp: u32) -> Vec<u8> {
        let mut packet = vec![0x80, 0];
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(b"payload");
        packet
    }

    #[test]
    fn the_practice_continues_the_announcements_stream() {
        let mut splice = Splice::after(&rtp(7, 65_535, u32::MAX - 10), 160).unwrap();
        for (index, sequence) in [40_000u16, 40_001, 40_003].into_iter().enumerate() {
            let mut packet = rtp(99, sequence, 1_000 + 160 * u32::from(sequence - 40_000));
            splice.rewrite(&mut packet);
            assert_eq!(header(&packet).unwrap().0, 7, "the announcement's SSRC");
            let expected_sequence = [0u16, 1, 3][index];
            assert_eq!(
                header(&packet).unwrap().1,
                expected_sequence,
                "a gap stays a gap"
            );
            let expected_timestamp =
                (u32::MAX - 10).wrapping_add(160 * (u32::from(expected_sequence) + 1));
            assert_eq!(header(&packet).unwrap().2, expected_timestamp);
            assert_eq!(&packet[12..], b"payload");
        }
    }

    #[test]
    fn a_new_practice_source_is_spliced_on_after_the_last() {
        let mut splice = Splice::after(&rtp(7, 10, 1_600), 160).unwrap();
        let mut first = rtp(1, 500, 9_000);
        splice.rewrite(&mut first);
        let mut second = rtp(2, 30_000, 123);
        splice.rewrite(&mut second);
        assert_eq!(header(&first).unwrap(), (7, 11, 1_760));
        assert_eq!(header(&second).unwrap(), (7, 12, 1_761));
    }
}
