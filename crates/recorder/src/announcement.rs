//! The recording announcement as RTP: a WAV file in the codec a call negotiated.
//!
//! The practice's policy asks that callers be told their call is recorded. The
//! daemon plays a short WAV file to the external party at the start of each
//! recorded call; this module turns the file into the RTP packets to send, one per
//! 20 ms, in PCMU, PCMA, G.722 or Opus. It reads the file once and holds no
//! clock: whoever sends packet `n` sends it at the start plus `n` × 20 ms.
//!
//! The B2BUA sends them on recorded outbound calls before joining the parties
//! (`crates/b2bua/src/invite.rs`), and to inbound callers as early media
//! (`crates/b2bua/src/early.rs`), followed there by the ringing tone made here
//! until the practice answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ezk_g722::libg722::{encoder::Encoder as G722Encoder, Bitrate};

use crate::codec::g711::{linear_to_alaw, linear_to_ulaw};
use crate::mix::{Downsampler2x, Upsampler2x};

/// One packet's worth of audio.
pub const FRAME: Duration = Duration::from_millis(20);

/// The bitrate of an Opus announcement: clear speech for a one-off message.
const OPUS_BITRATE: i32 = 24_000;

/// An announcement longer than this is refused: callers wait while it plays.
const MAX_SECONDS: u64 = 30;

/// Why an announcement could not be loaded or encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnouncementError {
    #[error("reading {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a mono 16-bit PCM WAV file at 8000 or 16000 Hz ({reason}); \
         convert it with `sox IN -r 8000 -c 1 -b 16 OUT.wav`"
    )]
    Format { path: PathBuf, reason: &'static str },
    #[error("the announcement must last between 20 ms and {MAX_SECONDS} s")]
    Length,
    #[error("an announcement is played from 8000 or 16000 Hz audio, not {rate} Hz")]
    UnsupportedRate { rate: u32 },
    #[error("{encoding}/{clock_rate} is not a codec the announcement can be played in")]
    UnsupportedCodec { encoding: String, clock_rate: u32 },
    #[error("opus encoder failed")]
    Opus(#[source] ::opus::Error),
}

/// The RTP stream an announcement is sent as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpStream {
    /// The `rtpmap` encoding name and clock rate the call negotiated.
    pub encoding: String,
    pub clock_rate: u32,
    pub payload_type: u8,
    pub ssrc: u32,
    pub first_sequence: u16,
    pub first_timestamp: u32,
}

/// An announcement's audio, ready for either rate a codec wants.
#[derive(Debug, Clone)]
pub struct Announcement {
    narrowband: Vec<i16>,
    wideband: Vec<i16>,
}

impl Announcement {
    /// Reads a mono 16-bit PCM WAV file at 8 or 16 kHz.
    pub fn load(path: &Path) -> Result<Self, AnnouncementError> {
        let bytes = std::fs::read(path).map_err(|source| AnnouncementError::Io {
            path: path.to_owned(),
            source,
        })?;
        let (rate, pcm) = read_wav(&bytes).map_err(|reason| AnnouncementError::Format {
            path: path.to_owned(),
            reason,
        })?;
        Self::from_pcm(rate, &pcm)
    }

    /// An announcement from mono PCM at 8000 or 16000 Hz.
    pub fn from_pcm(rate: u32, pcm: &[i16]) -> Result<Self, AnnouncementError> {
        if !matches!(rate, 8000 | 16000) {
            return Err(AnnouncementError::UnsupportedRate { rate });
        }
        let seconds = pcm.len() as f64 / f64::from(rate.max(1));
        if !(FRAME.as_secs_f64()..=MAX_SECONDS as f64).contains(&seconds) {
            return Err(AnnouncementError::Length);
        }
        let (mut narrowband, mut wideband) = (Vec::new(), Vec::new());
        match rate {
            8000 => {
                narrowband = pcm.to_vec();
                Upsampler2x::new().process(pcm, &mut wideband);
            }
            16000 => {
                wideband = pcm.to_vec();
                Downsampler2x::new().process(pcm, &mut narrowband);
            }
            rate => return Err(AnnouncementError::UnsupportedRate { rate }),
        }
        Ok(Self {
            narrowband,
            wideband,
        })
    }

    /// One cadence of the ringing tone callers in the UK know (400 Hz and
    /// 450 Hz together; 0.4 s on, 0.2 s off, 0.4 s on, 2 s off), for a caller
    /// who heard the announcement and waits for the practice to answer.
    pub fn uk_ringing_tone() -> Self {
        const RATE: u32 = 8000;
        const CADENCE: [(u32, bool); 4] = [(400, true), (200, false), (400, true), (2000, false)];
        const AMPLITUDE: f64 = 5000.0;
        let mut pcm = Vec::new();
        for (milliseconds, on) in CADENCE {
            for _ in 0..RATE * milliseconds / 1000 {
                let t = pcm.len() as f64 / f64::from(RATE);
                let tone = |hertz: f64| (2.0 * std::f64::consts::PI * hertz * t).sin();
                let sample = if on {
                    AMPLITUDE * (tone(400.0) + tone(450.0)) / 2.0
                } else {
                    0.0
                };
                pcm.push(sample as i16);
            }
        }
        Self::from_pcm(RATE, &pcm).expect("three seconds at 8 kHz make a valid announcement")
    }

    /// How long it plays, to the last whole or partial frame.
    pub fn duration(&self) -> Duration {
        FRAME * u32::try_from(self.frames()).unwrap_or(u32::MAX)
    }

    fn frames(&self) -> usize {
        self.narrowband.len().div_ceil(160)
    }

    /// Every RTP packet of the announcement for `stream`, in sending order.
    pub fn packets(&self, stream: &RtpStream) -> Result<Vec<Vec<u8>>, AnnouncementError> {
        let (payloads, ticks) = self.payloads(&stream.encoding, stream.clock_rate)?;
        let packets = payloads
            .into_iter()
            .enumerate()
            .map(|(index, payload)| {
                let index_u32 = u32::try_from(index).unwrap_or(u32::MAX);
                let sequence = stream.first_sequence.wrapping_add(index as u16);
                let timestamp = stream
                    .first_timestamp
                    .wrapping_add(index_u32.wrapping_mul(ticks));
                rtp_packet(stream, index == 0, sequence, timestamp, &payload)
            })
            .collect();
        Ok(packets)
    }

    /// One payload per frame, and the RTP clock ticks of a frame.
    fn payloads(
        &self,
        encoding: &str,
        clock_rate: u32,
    ) -> Result<(Vec<Vec<u8>>, u32), AnnouncementError> {
        let unsupported = || AnnouncementError::UnsupportedCodec {
            encoding: encoding.to_owned(),
            clock_rate,
        };
        let narrow = || frames_of(&self.narrowband, 160);
        let wide = || frames_of(&self.wideband, 320);
        let name = encoding.to_ascii_uppercase();
        match (name.as_str(), clock_rate) {
            ("PCMU", 8000) => Ok((
                narrow()
                    .map(|f| f.iter().map(|&s| linear_to_ulaw(s)).collect())
                    .collect(),
                160,
            )),
            ("PCMA", 8000) => Ok((
                narrow()
                    .map(|f| f.iter().map(|&s| linear_to_alaw(s)).collect())
                    .collect(),
                160,
            )),
            // G.722's RTP clock is 8000 although it samples at 16 kHz (RFC 3551 §4.5.2).
            ("G722", 8000) => {
                let mut encoder = G722Encoder::new(Bitrate::Mode1_64000, false, false);
                Ok((wide().map(|frame| encoder.encode(&frame)).collect(), 160))
            }
            ("OPUS", 48000) => Ok((encode_opus(wide())?, 960)),
            _ => Err(unsupported()),
        }
    }
}

/// The audio in frames of `length` samples, the last padded with silence.
fn frames_of(pcm: &[i16], length: usize) -> impl Iterator<Item = Vec<i16>> + '_ {
    pcm.chunks(length).map(move |chunk| {
        let mut frame = chunk.to_vec();
        frame.resize(length, 0);
        frame
    })
}

fn encode_opus(frames: impl Iterator<Item = Vec<i16>>) -> Result<Vec<Vec<u8>>, AnnouncementError> {
    let layout = ::opus::Channels::Mono;
    let mut encoder = ::opus::Encoder::new(16000, layout, ::opus::Application::Voip)
        .map_err(AnnouncementError::Opus)?;
    encoder
        .set_bitrate(::opus::Bitrate::Bits(OPUS_BITRATE))
        .map_err(AnnouncementError::Opus)?;
    let mut packet = [0_u8; 1500];
    frames
        .map(|frame| {
            let length = encoder
                .encode(&frame, &mut packet)
                .map_err(AnnouncementError::Opus)?;
            Ok(packet[..length].to_vec())
        })
        .collect()
}

/// An RFC 3550 §5.1 header, version 2, no padding, extension or CSRCs; the
/// marker bit on the first packet of the talk spurt.
fn rtp_packet(
    stream: &RtpStream,
    first: bool,
    sequence: u16,
    timestamp: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut packet = Vec::with_capacity(12 + payload.len());
    packet.push(0x80);
    packet.push(stream.payload_type & 0x7f | if first { 0x80 } else { 0 });
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&stream.ssrc.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// The rate and samples of a mono 16-bit PCM WAV file, walking its RIFF chunks
/// (editors add LIST and other chunks before the data).
fn read_wav(bytes: &[u8]) -> Result<(u32, Vec<i16>), &'static str> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("no RIFF/WAVE header");
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let body_start = at + 8;
        let body_end = body_start.saturating_add(size as usize).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => format = Some(read_format(body)?),
            b"data" => {
                let rate = format.ok_or("the data chunk comes before the fmt chunk")?;
                let pcm = body
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Ok((rate, pcm));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body_start.saturating_add(size as usize + (size as usize & 1));
    }
    Err("no data chunk")
}

/// The sample rate of a fmt chunk that describes mono 16-bit PCM at 8 or 16 kHz.
fn read_format(body: &[u8]) -> Result<u32, &'static str> {
    if body.len() < 16 {
        return Err("a short fmt chunk");
    }
    let u16_at = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
    let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    match (u16_at(0), u16_at(2), u16_at(14), rate) {
        (1, 1, 16, 8000 | 16000) => Ok(rate),
        (1, 1, 16, _) => Err("a sample rate other than 8000 or 16000 Hz"),
        (1, 1, _, _) => Err("samples of other than 16 bits"),
        (1, _, _, _) => Err("more than one channel"),
        _ => Err("a format other than integer PCM"),
    }
}
