//! Encoders that turn the mixer's PCM into a media file's bytes.
//!
//! A recording is written as a stream to an append-only encrypted file, so an
//! encoder never goes back: every byte it appends is final, and a file cut short by
//! a crash still plays up to its last complete unit.
//!
//! - [`OutputFormat::OggOpus`]: Opus in Ogg (RFC 7845), small and playable in
//!   browsers; a crash loses at most [`MAX_PACKETS_PER_PAGE`] packets of audio.
//! - [`OutputFormat::Wav`]: 16-bit PCM with the streaming header of [`crate::wav`],
//!   for clinical systems; an export writes the exact sizes.

use std::fmt;

mod ogg_opus;
mod wav;

pub use ogg_opus::{speech_encoder, OpusSettings, MAX_PACKETS_PER_PAGE};

/// The container and codec of a recording's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Opus in Ogg (RFC 7845).
    OggOpus,
    /// RIFF/WAVE holding 16-bit little-endian PCM.
    Wav,
}

impl OutputFormat {
    /// The media type of files in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::OggOpus => "audio/ogg",
            Self::Wav => "audio/wav",
        }
    }
}

/// Why audio could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Recordings are narrowband or wideband.
    #[error("sample rate {sample_rate} Hz is not 8000 or 16000")]
    UnsupportedSampleRate {
        /// The rate asked for.
        sample_rate: u32,
    },
    /// Recordings are mono or stereo.
    #[error("{channels} channels are not 1 or 2")]
    UnsupportedChannels {
        /// The channel count asked for.
        channels: u16,
    },
    /// Interleaved PCM must hold the same number of samples for every channel.
    #[error("{samples} samples are not whole frames of {channels} channels")]
    PartialFrame {
        /// Samples given.
        samples: usize,
        /// Channels of the stream.
        channels: u16,
    },
    /// Audio was given after the stream was finished.
    #[error("the stream is already finished")]
    Finished,
    /// libopus refused to set up or encode.
    #[error("opus encoder failed")]
    Opus(#[source] ::opus::Error),
}

/// Turns the mixer's interleaved PCM into a media file, as a stream of bytes.
pub trait Encoder: Send + fmt::Debug {
    /// Encodes interleaved 16-bit PCM (length a multiple of channels), appending
    /// bytes of the media file to `out`. The first call (or finish) writes the headers.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Ends the stream: encodes what is buffered (padding the last frame) and appends
    /// the final bytes. The stream's decoded length must equal exactly the samples
    /// given to encode (Ogg Opus: end trimming via the last page's granule position).
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

/// Returns an encoder for a stream of the given shape.
///
/// `sample_rate` is 8000 or 16000; `channels` is 1 or 2, interleaved left first.
/// An Ogg Opus stream gets a random serial number (RFC 3533 §6 asks for one so that
/// streams can be chained or multiplexed without clashing).
pub fn encoder_for(
    format: OutputFormat,
    sample_rate: u32,
    channels: u16,
) -> Result<Box<dyn Encoder>, EncodeError> {
    check_shape(sample_rate, channels)?;
    Ok(match format {
        OutputFormat::OggOpus => {
            let serial = rand::random();
            let encoder = ogg_opus::OggOpusEncoder::new(sample_rate, channels, serial)?;
            Box::new(encoder)
        }
        OutputFormat::Wav => Box::new(wav::WavEncoder::new(sample_rate, channels)),
    })
}

/// Refuses rates and channel counts a recording never has.
fn check_shape(sample_rate: u32, channels: u16) -> Result<(), EncodeError> {
    if !matches!(sample_rate, 8000 | 16000) {
        return Err(EncodeError::UnsupportedSampleRate { sample_rate });
    }
    if !matches!(channels, 1 | 2) {
        return Err(EncodeError::UnsupportedChannels { channels });
    }
    Ok(())
}

/// Refuses PCM that does not end on a whole sample frame.
fn check_whole_frames(pcm: &[i16], channels: u16) -> Result<(), EncodeError> {
    if !pcm.len().is_multiple_of(usize::from(channels)) {
        return Err(EncodeError::PartialFrame {
            samples: pcm.len(),
            channels,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_name_the_container() {
        assert_eq!(OutputFormat::OggOpus.media_type(), "audio/ogg");
        assert_eq!(OutputFormat::Wav.media_type(), "audio/wav");
    }

    #[test]
    fn encoder_for_refuses_other_rates_and_channel_counts() {
        for format in [OutputFormat::OggOpus, OutputFormat::Wav] {
            for rate in [0, 12000, 44100, 48000] {
                let error = encoder_for(format, rate, 1).unwrap_err();
                assert!(matches!(error, EncodeError::UnsupportedSampleRate { .. }));
            }
            for channels in [0, 3, 8] {
                let error = encoder_for(format, 8000, channels).unwrap_err();
                assert!(matches!(error, EncodeError::UnsupportedChannels { .. }));
            }
        }
    }

    #[test]
    fn encoders_refuse_partial_stereo_frames() {
        for format in [OutputFormat::OggOpus, OutputFormat::Wav] {
            let mut encoder = encoder_for(format, 8000, 2).unwrap();
            let error = encoder.encode(&[1, 2, 3], &mut Vec::new()).unwrap_err();
            assert!(matches!(
                error,
                EncodeError::PartialFrame {
                    samples: 3,
                    channels: 2
                }
            ));
        }
    }

    #[test]
    fn encoders_refuse_audio_after_finish() {
        for format in [OutputFormat::OggOpus, OutputFormat::Wav] {
            let mut encoder = encoder_for(format, 16000, 1).unwrap();
            let mut out = Vec::new();
            encoder.finish(&mut out).unwrap();
            let written = out.len();
            assert!(matches!(
                encoder.encode(&[0; 320], &mut out),
                Err(EncodeError::Finished)
            ));
            assert!(matches!(
                encoder.finish(&mut out),
                Err(EncodeError::Finished)
            ));
            assert_eq!(out.len(), written);
        }
    }
}
