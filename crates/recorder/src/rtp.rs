//! Reading RTP packets (RFC 3550 §5.1) defensively.
//!
//! Every length in the header is checked against the packet before it is used, so
//! any byte string read from the network yields a packet or an [`RtpError`].

/// The fixed header length, before CSRCs and extension.
const FIXED_HEADER_LEN: usize = 12;

/// The fields of an RTP header the recorder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit: for audio, the first packet of a talk spurt.
    pub marker: bool,
    /// The payload type (7 bits).
    pub payload_type: u8,
    /// The sequence number, wrapping at 2^16.
    pub sequence: u16,
    /// The media timestamp, wrapping at 2^32.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
}

/// An RTP packet borrowed from the buffer it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The header.
    pub header: RtpHeader,
    /// The payload, without CSRCs, header extension or padding.
    pub payload: &'a [u8],
}

/// Why a packet is not a readable RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed header.
    #[error("packet of {len} bytes is shorter than the 12-byte rtp header")]
    TooShort {
        /// The packet's length.
        len: usize,
    },
    /// The version field is not 2.
    #[error("rtp version {version} is not 2")]
    Version {
        /// The version found.
        version: u8,
    },
    /// The CSRC list runs past the end of the packet.
    #[error("{count} csrcs do not fit in a packet of {len} bytes")]
    CsrcOverrun {
        /// The CSRC count.
        count: u8,
        /// The packet's length.
        len: usize,
    },
    /// The header extension runs past the end of the packet.
    #[error("header extension runs past the end of a packet of {len} bytes")]
    ExtensionOverrun {
        /// The packet's length.
        len: usize,
    },
    /// The padding count is zero or larger than what follows the header.
    #[error("padding of {padding} bytes does not fit after the header")]
    BadPadding {
        /// The padding count from the last byte.
        padding: u8,
    },
}

/// Reads an RTP packet, checking every length against the packet.
pub fn parse(packet: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let len = packet.len();
    let fixed: &[u8; FIXED_HEADER_LEN] = packet
        .get(..FIXED_HEADER_LEN)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(RtpError::TooShort { len })?;

    let version = fixed[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version { version });
    }
    let header = RtpHeader {
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7f,
        sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
    };

    let payload_start = header_end(packet, fixed[0])?;
    let payload_end = padding_start(packet, fixed[0], payload_start)?;
    let payload = &packet[payload_start..payload_end];
    Ok(RtpPacket { header, payload })
}

/// Where the payload starts, after CSRCs and any header extension.
fn header_end(packet: &[u8], first: u8) -> Result<usize, RtpError> {
    let len = packet.len();
    let count = first & 0x0f;
    let mut end = FIXED_HEADER_LEN + 4 * usize::from(count);
    if end > len {
        return Err(RtpError::CsrcOverrun { count, len });
    }

    let has_extension = first & 0x10 != 0;
    if has_extension {
        // The extension header is 4 bytes: a profile word, then its length in words.
        let words = packet
            .get(end + 2..end + 4)
            .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
            .ok_or(RtpError::ExtensionOverrun { len })?;
        end += 4 + 4 * usize::from(words);
        if end > len {
            return Err(RtpError::ExtensionOverrun { len });
        }
    }
    Ok(end)
}

/// Where the padding starts: the packet's end unless the P bit is set.
fn padding_start(packet: &[u8], first: u8, payload_start: usize) -> Result<usize, RtpError> {
    let has_padding = first & 0x20 != 0;
    if !has_padding {
        return Ok(packet.len());
    }

    // The header ended inside the packet and the packet is not empty, so a last byte exists.
    let padding = packet.last().copied().unwrap_or(0);
    let room = packet.len() - payload_start;
    if padding == 0 || usize::from(padding) > room {
        return Err(RtpError::BadPadding { padding });
    }
    Ok(packet.len() - usize::from(padding))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(first: u8) -> Vec<u8> {
        vec![
            first,
            0x80 | 8,
            0x12,
            0x34,
            0,
            0,
            0x01,
            0x40,
            0xde,
            0xad,
            0xbe,
            0xef,
        ]
    }

    #[test]
    fn plain_packet_reads_every_field() {
        let mut bytes = header_bytes(0x80);
        bytes.extend_from_slice(&[1, 2, 3]);
        let packet = parse(&bytes).unwrap();
        assert_eq!(
            packet.header,
            RtpHeader {
                marker: true,
                payload_type: 8,
                sequence: 0x1234,
                timestamp: 320,
                ssrc: 0xdead_beef,
            }
        );
        assert_eq!(packet.payload, &[1, 2, 3]);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut bytes = header_bytes(0x80 | 0x20 | 0x10 | 2);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]);
        bytes.extend_from_slice(&[7, 7]);
        bytes.extend_from_slice(&[0, 0, 3]);
        assert_eq!(parse(&bytes).unwrap().payload, &[7, 7]);
    }

    #[test]
    fn short_packet_is_too_short() {
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort { len: 11 }));
    }

    #[test]
    fn version_one_is_refused() {
        assert_eq!(
            parse(&header_bytes(0x40)),
            Err(RtpError::Version { version: 1 })
        );
    }

    #[test]
    fn csrc_count_past_the_end_is_refused() {
        let bytes = header_bytes(0x80 | 3);
        assert_eq!(
            parse(&bytes),
            Err(RtpError::CsrcOverrun { count: 3, len: 12 })
        );
    }

    #[test]
    fn extension_length_past_the_end_is_refused() {
        let mut bytes = header_bytes(0x80 | 0x10);
        bytes.extend_from_slice(&[0xbe, 0xde, 0, 2, 1, 1, 1, 1]);
        assert_eq!(parse(&bytes), Err(RtpError::ExtensionOverrun { len: 20 }));
    }

    #[test]
    fn padding_longer_than_the_payload_is_refused() {
        let mut bytes = header_bytes(0x80 | 0x20);
        bytes.extend_from_slice(&[1, 5]);
        assert_eq!(parse(&bytes), Err(RtpError::BadPadding { padding: 5 }));
    }

    #[test]
    fn zero_padding_count_is_refused() {
        let mut bytes = header_bytes(0x80 | 0x20);
        bytes.extend_from_slice(&[1, 0]);
        assert_eq!(parse(&bytes), Err(RtpError::BadPadding { padding: 0 }));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(0u8..=255, 0..64)) {
            if let Ok(packet) = parse(&bytes) {
                proptest::prop_assert!(packet.payload.len() + FIXED_HEADER_LEN <= bytes.len());
            }
        }
    }
}
