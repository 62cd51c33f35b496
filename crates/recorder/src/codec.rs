//! Audio decoders for the codecs a UK trunk offers: PCMU, PCMA, G.722 and Opus.
//!
//! A [`Decoder`] turns one RTP payload into mono PCM at its own sample rate and
//! stands in for lost frames. [`decoder_for`] picks one from an SDP `rtpmap`
//! encoding name; [`static_payload_type`] names the RFC 3551 static payload types
//! that need no `rtpmap`.
//!
//! Opus conceals a loss with libopus's own extrapolation (see [`opus`]). For the
//! others concealment is deliberately simple: the last decoded frame is played
//! backwards and forwards (so the waveform joins the last real sample without a
//! step) while fading linearly to silence over 20 ms; a longer loss is silence.
//! ITU-T G.711 Appendix I's pitch-based concealment and G.722 Appendix III/IV are
//! not implemented.

use std::fmt;

pub mod g711;
mod g722;
pub mod opus;

/// Decodes one codec's RTP payloads to mono PCM.
///
/// `Debug` is a supertrait so that whatever holds a `Box<dyn Decoder>` can derive it.
pub trait Decoder: Send + fmt::Debug {
    /// Samples per second of the decoded PCM.
    ///
    /// 8000 for G.711 and 16000 for G.722. G.722's RTP clock is 8000 all the same
    /// (RFC 3551 §4.5.2), and Opus's is 48000 at any output rate (RFC 7587 §4.1), so
    /// this is not the rate of RTP timestamps.
    fn sample_rate(&self) -> u32;

    /// Decodes one RTP payload, appending mono PCM to `out`.
    ///
    /// An empty payload appends nothing.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError>;

    /// Appends `samples` samples (at [`Self::sample_rate`]) for a lost frame.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>);
}

/// Why a payload could not be decoded, or a decoder made.
///
/// Every byte string is a valid G.711 payload, and a valid G.722 one at 64 kbit/s,
/// the only G.722 mode RTP carries (RFC 3551 §4.5.2); only Opus, which has framing,
/// can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// libopus does not decode to this rate.
    #[error("opus cannot be decoded at {output_rate} Hz")]
    UnsupportedOpusRate {
        /// The rate asked for.
        output_rate: u32,
    },
    /// libopus found the packet malformed (RFC 6716 §3.4 lists the rules).
    #[error("opus packet of {bytes} bytes rejected: {reason}")]
    OpusPacketRejected {
        /// Length of the payload.
        bytes: usize,
        /// libopus's description of the fault.
        reason: &'static str,
    },
    /// The payload is longer than any UDP datagram could carry.
    #[error("opus payload of {bytes} bytes is longer than a datagram")]
    OpusPayloadTooLong {
        /// Length of the payload.
        bytes: usize,
    },
}

/// Returns a decoder for an SDP `rtpmap` encoding, or `None` if unsupported.
///
/// The name is matched without regard to case (RFC 4855 §3). The clock rate must be
/// the encoding's RTP clock rate: 8000 for PCMU, PCMA and G.722 (RFC 3551), 48000
/// for Opus (RFC 7587 §4.1).
///
/// Opus is decoded to 16 kHz: recordings are at most wideband, and 16 kHz is the
/// mixer's top rate, so decoding more bandwidth would only be thrown away.
pub fn decoder_for(encoding: &str, clock_rate: u32) -> Option<Box<dyn Decoder>> {
    if encoding.eq_ignore_ascii_case("opus") && clock_rate == 48000 {
        let decoder = opus::OpusDecoder::new(16000).expect("libopus decodes to 16 kHz");
        return Some(Box::new(decoder));
    }
    if clock_rate != 8000 {
        return None;
    }
    if encoding.eq_ignore_ascii_case("PCMU") {
        Some(Box::new(g711::UlawDecoder::new()))
    } else if encoding.eq_ignore_ascii_case("PCMA") {
        Some(Box::new(g711::AlawDecoder::new()))
    } else if encoding.eq_ignore_ascii_case("G722") {
        Some(Box::new(g722::G722Decoder::new()))
    } else {
        None
    }
}

/// Names an RFC 3551 static audio payload type with its RTP clock rate.
///
/// Covers the audio rows of RFC 3551 table 4 (payload types 0-18), so that a skipped
/// payload can be logged by name. Types 1, 2 and 19 are reserved and return `None`,
/// as do video and dynamic types. L16 (10 and 11) differ only in channel count, which
/// this does not return.
pub fn static_payload_type(pt: u8) -> Option<(&'static str, u32)> {
    let entry = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        6 => ("DVI4", 16000),
        7 => ("LPC", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        10 | 11 => ("L16", 44100),
        12 => ("QCELP", 8000),
        13 => ("CN", 8000),
        14 => ("MPA", 90000),
        15 => ("G728", 8000),
        16 => ("DVI4", 11025),
        17 => ("DVI4", 22050),
        18 => ("G729", 8000),
        _ => return None,
    };
    Some(entry)
}

/// Fills lost frames from the last good one, fading to silence.
#[derive(Debug)]
struct Concealment {
    /// The tail of the last decoded frame, at most `fade_len` samples.
    last_frame: Vec<i16>,
    /// Samples concealed since the last good frame.
    concealed: usize,
    /// Samples over which the repeated frame fades to silence (20 ms).
    fade_len: usize,
}

impl Concealment {
    fn new(sample_rate: u32) -> Self {
        let fade_len = usize::try_from(sample_rate / 50).expect("20 ms of samples fits a usize");
        Self {
            last_frame: Vec::with_capacity(fade_len),
            concealed: 0,
            fade_len,
        }
    }

    /// Keeps a good frame to repeat if the next one is lost.
    fn remember(&mut self, frame: &[i16]) {
        if frame.is_empty() {
            return;
        }
        let tail = &frame[frame.len().saturating_sub(self.fade_len)..];
        self.last_frame.clear();
        self.last_frame.extend_from_slice(tail);
        self.concealed = 0;
    }

    fn fill(&mut self, samples: usize, out: &mut Vec<i16>) {
        out.reserve(samples);
        for _ in 0..samples {
            let sample = self.next_sample();
            out.push(sample);
        }
    }

    fn next_sample(&mut self) -> i16 {
        let n = self.concealed;
        self.concealed = n.saturating_add(1);
        if n >= self.fade_len || self.last_frame.is_empty() {
            return 0;
        }

        // Walking the frame back and forth from its end keeps the waveform continuous
        // where the real audio stopped and at every turn.
        let len = self.last_frame.len();
        let position = n % (2 * len);
        let index = if position < len {
            len - 1 - position
        } else {
            position - len
        };

        let gain = i64::try_from(self.fade_len - n).expect("a 20 ms count fits an i64");
        let full = i64::try_from(self.fade_len).expect("a 20 ms count fits an i64");
        let faded = i64::from(self.last_frame[index]) * gain / full;
        i16::try_from(faded).expect("a gain of at most one keeps a sample in range")
    }
}
