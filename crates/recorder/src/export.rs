//! A recording's audio as a file a person can play: exact WAV, or Ogg Opus.
//!
//! Recordings hold a WAV with the streaming header of [`crate::wav`] (sizes
//! unknown) or Ogg Opus (RFC 7845). Most players and clinical systems need a WAV
//! whose header states its length, and Ogg Opus is the small choice for email or
//! a subject access bundle; [`convert`] turns either into either. It works on
//! whole recordings in memory: a ten-minute stereo call is about 20 MB of PCM.

use std::io::Cursor;

use ::opus::{Channels, Decoder};
use ogg::reading::PacketReader;

use crate::encode::{encoder_for, EncodeError, OutputFormat};
use crate::wav;

/// The rate of Ogg Opus granule positions and pre-skip (RFC 7845 §4).
const GRANULE_RATE: u64 = 48_000;

/// Rates libopus decodes to; a stream's original rate is used when it is one.
const DECODE_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

/// Samples per channel in Opus's longest packet (120 ms) at 48 kHz.
const MAX_PACKET_SAMPLES: usize = 5760;

/// Why a recording's audio could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the recording's audio is {0:?}, which callvault cannot convert")]
    UnknownMediaType(String),
    #[error("the recording's wav audio has no header callvault wrote")]
    NotOurWav,
    #[error("the recording's ogg stream is damaged")]
    Ogg(#[source] ogg::OggReadError),
    #[error("the recording's ogg stream is not opus: {0}")]
    NotOpus(&'static str),
    #[error("decoding the recording's opus audio failed")]
    Opus(#[source] ::opus::Error),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Wav(#[from] wav::WavError),
}

/// Decoded audio: interleaved 16-bit samples, left first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub sample_rate: u32,
    pub channels: u16,
    pub samples: Vec<i16>,
}

impl Pcm {
    /// How long the audio plays.
    pub fn seconds(&self) -> f64 {
        let frames = self.samples.len() / usize::from(self.channels.max(1));
        frames as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// The format of a recording's audio, from its media type.
pub fn format_of(media_type: &str) -> Result<OutputFormat, ExportError> {
    [OutputFormat::Wav, OutputFormat::OggOpus]
        .into_iter()
        .find(|format| format.media_type() == media_type)
        .ok_or_else(|| ExportError::UnknownMediaType(media_type.to_owned()))
}

/// Turns a recording's audio of `media_type` into a file of format `to`.
///
/// Ogg Opus to Ogg Opus is the same bytes; everything else is decoded and
/// encoded again, so that a WAV's header always states its exact length.
pub fn convert(media_type: &str, audio: Vec<u8>, to: OutputFormat) -> Result<Vec<u8>, ExportError> {
    let from = format_of(media_type)?;
    if from == OutputFormat::OggOpus && to == OutputFormat::OggOpus {
        return Ok(audio);
    }
    let pcm = decode(from, &audio)?;
    match to {
        OutputFormat::Wav => exact_wav(&pcm),
        OutputFormat::OggOpus => ogg_opus(&pcm),
    }
}

/// The samples of a recording's audio.
pub fn decode(format: OutputFormat, audio: &[u8]) -> Result<Pcm, ExportError> {
    match format {
        OutputFormat::Wav => wav_pcm(audio),
        OutputFormat::OggOpus => ogg_opus_pcm(audio),
    }
}

/// A WAV file whose header states its length.
fn exact_wav(pcm: &Pcm) -> Result<Vec<u8>, ExportError> {
    let data_bytes = pcm.samples.len() as u64 * 2;
    let header = wav::final_header(pcm.sample_rate, pcm.channels, data_bytes)?;
    let mut file = header.to_vec();
    wav::samples_to_le_bytes(&pcm.samples, &mut file);
    Ok(file)
}

fn ogg_opus(pcm: &Pcm) -> Result<Vec<u8>, ExportError> {
    let mut encoder = encoder_for(OutputFormat::OggOpus, pcm.sample_rate, pcm.channels)?;
    let mut file = Vec::new();
    encoder.encode(&pcm.samples, &mut file)?;
    encoder.finish(&mut file)?;
    Ok(file)
}

/// The whole sample frames of a WAV written by [`crate::wav`].
fn wav_pcm(audio: &[u8]) -> Result<Pcm, ExportError> {
    let header = audio.first_chunk().ok_or(ExportError::NotOurWav)?;
    let (sample_rate, channels) = wav::parse_header(header).ok_or(ExportError::NotOurWav)?;
    let frame_bytes = 2 * usize::from(channels.max(1));
    let data = &audio[wav::HEADER_LEN..];
    // A recording cut short by a crash may end inside a frame: that frame is dropped.
    let whole = data.len() / frame_bytes * frame_bytes;
    let samples = data[..whole]
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Ok(Pcm {
        sample_rate,
        channels,
        samples,
    })
}

/// What an OpusHead packet (RFC 7845 §5.1) says about the stream.
struct OpusHead {
    channels: u16,
    pre_skip: u64,
    input_rate: u32,
}

impl OpusHead {
    fn parse(packet: &[u8]) -> Result<Self, ExportError> {
        if packet.len() < 19 || !packet.starts_with(b"OpusHead") {
            return Err(ExportError::NotOpus("the first packet is not an OpusHead"));
        }
        // Versions 0-15 are compatible with version 1 (RFC 7845 §5.1).
        if packet[8] & 0xf0 != 0 {
            return Err(ExportError::NotOpus("an OpusHead version this cannot read"));
        }
        let channels = u16::from(packet[9]);
        if !matches!(channels, 1 | 2) || packet[18] != 0 {
            return Err(ExportError::NotOpus(
                "not mono or stereo (mapping family 0)",
            ));
        }
        Ok(Self {
            channels,
            pre_skip: u64::from(u16::from_le_bytes([packet[10], packet[11]])),
            input_rate: u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]),
        })
    }
}

/// Decodes an Ogg Opus stream, trimming its pre-skip and its end (RFC 7845 §4).
fn ogg_opus_pcm(audio: &[u8]) -> Result<Pcm, ExportError> {
    let mut reader = PacketReader::new(Cursor::new(audio));
    let mut next = || reader.read_packet().map_err(ExportError::Ogg);
    let head = next()?.ok_or(ExportError::NotOpus("the stream is empty"))?;
    let head = OpusHead::parse(&head.data)?;
    let tags = next()?.ok_or(ExportError::NotOpus("the OpusTags packet is missing"))?;
    if !tags.data.starts_with(b"OpusTags") {
        return Err(ExportError::NotOpus("the second packet is not OpusTags"));
    }
    let rate = Some(head.input_rate)
        .filter(|rate| DECODE_RATES.contains(rate))
        .unwrap_or(48_000);
    let layout = if head.channels == 2 {
        Channels::Stereo
    } else {
        Channels::Mono
    };
    let mut decoder = Decoder::new(rate, layout).map_err(ExportError::Opus)?;
    let channels = usize::from(head.channels);
    let mut frame = vec![0i16; MAX_PACKET_SAMPLES * channels];
    let mut samples = Vec::new();
    let mut last_granule = None;
    while let Some(packet) = next()? {
        let decoded = decoder
            .decode(&packet.data, &mut frame, false)
            .map_err(ExportError::Opus)?;
        samples.extend_from_slice(&frame[..decoded * channels]);
        last_granule = Some(packet.absgp_page());
    }
    let frames_at_rate = |granules: u64| granules * u64::from(rate) / GRANULE_RATE;
    let skip = frames_at_rate(head.pre_skip) as usize * channels;
    samples.drain(..skip.min(samples.len()));
    if let Some(granule) = last_granule {
        let end = frames_at_rate(granule.saturating_sub(head.pre_skip)) as usize * channels;
        samples.truncate(end);
    }
    Ok(Pcm {
        sample_rate: rate,
        channels: head.channels,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second of a 440 Hz tone in both channels at `rate`.
    fn tone(rate: u32) -> Pcm {
        let samples = (0..rate)
            .flat_map(|n| {
                let phase = f64::from(n) * 440.0 * std::f64::consts::TAU / f64::from(rate);
                let value = (phase.sin() * 8000.0) as i16;
                [value, value]
            })
            .collect();
        Pcm {
            sample_rate: rate,
            channels: 2,
            samples,
        }
    }

    fn streaming_wav(pcm: &Pcm) -> Vec<u8> {
        let mut file = wav::streaming_header(pcm.sample_rate, pcm.channels).to_vec();
        wav::samples_to_le_bytes(&pcm.samples, &mut file);
        file
    }

    #[test]
    fn a_streaming_wav_becomes_a_wav_with_its_exact_length() {
        let pcm = tone(8000);
        let file = convert("audio/wav", streaming_wav(&pcm), OutputFormat::Wav).unwrap();
        assert_eq!(file.len(), wav::HEADER_LEN + 32_000);
        let riff = u32::from_le_bytes(file[4..8].try_into().unwrap());
        let data = u32::from_le_bytes(file[40..44].try_into().unwrap());
        assert_eq!((riff, data), (32_036, 32_000));
        assert_eq!(decode(OutputFormat::Wav, &file).unwrap(), pcm);
    }

    #[test]
    fn wav_to_ogg_opus_and_back_keeps_the_length_to_the_sample() {
        let pcm = tone(16000);
        let ogg = convert("audio/wav", streaming_wav(&pcm), OutputFormat::OggOpus).unwrap();
        assert!(ogg.starts_with(b"OggS"));
        let back = decode(OutputFormat::OggOpus, &ogg).unwrap();
        assert_eq!((back.sample_rate, back.channels), (16000, 2));
        assert_eq!(back.samples.len(), pcm.samples.len());
        let energy = |p: &Pcm| p.samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
        assert!(energy(&back) > energy(&pcm) * 0.5, "the tone survives");
    }

    #[test]
    fn ogg_opus_is_exported_as_the_same_bytes() {
        let ogg = convert(
            "audio/wav",
            streaming_wav(&tone(8000)),
            OutputFormat::OggOpus,
        )
        .unwrap();
        let again = convert("audio/ogg", ogg.clone(), OutputFormat::OggOpus).unwrap();
        assert_eq!(again, ogg);
    }

    #[test]
    fn unknown_media_and_foreign_bytes_are_refused() {
        let refused = convert("audio/mpeg", vec![0; 64], OutputFormat::Wav);
        assert!(matches!(refused, Err(ExportError::UnknownMediaType(_))));
        let refused = convert("audio/wav", vec![0; 64], OutputFormat::Wav);
        assert!(matches!(refused, Err(ExportError::NotOurWav)));
        let refused = convert(
            "audio/ogg",
            b"not an ogg stream".to_vec(),
            OutputFormat::Wav,
        );
        assert!(refused.is_err());
    }
}
