//! WAV as a stream: the header of unknown length, then the samples.

use super::{check_whole_frames, EncodeError, Encoder};
use crate::wav::{samples_to_le_bytes, streaming_header};

/// Writes 16-bit PCM after a header whose sizes say "unknown".
///
/// The file is never rewritten, so [`finish`](Encoder::finish) appends nothing; an
/// export patches in [`crate::wav::final_header`] once the length is known.
#[derive(Debug)]
pub(super) struct WavEncoder {
    sample_rate: u32,
    channels: u16,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing written yet, not even the header.
    Fresh,
    /// The header is out; samples follow.
    Streaming,
    Finished,
}

impl WavEncoder {
    pub(super) fn new(sample_rate: u32, channels: u16) -> Self {
        Self {
            sample_rate,
            channels,
            stage: Stage::Fresh,
        }
    }

    /// Writes the header unless it is out already.
    fn start(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self.stage {
            Stage::Fresh => {
                out.extend_from_slice(&streaming_header(self.sample_rate, self.channels));
                self.stage = Stage::Streaming;
                Ok(())
            }
            Stage::Streaming => Ok(()),
            Stage::Finished => Err(EncodeError::Finished),
        }
    }
}

impl Encoder for WavEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_whole_frames(pcm, self.channels)?;
        self.start(out)?;
        samples_to_le_bytes(pcm, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.start(out)?;
        self.stage = Stage::Finished;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::HEADER_LEN;

    #[test]
    fn the_first_call_writes_the_streaming_header_then_samples() {
        let mut encoder = WavEncoder::new(8000, 2);
        let mut out = Vec::new();
        encoder.encode(&[1, -2], &mut out).unwrap();
        encoder.encode(&[0x1234, -1], &mut out).unwrap();

        assert_eq!(&out[..HEADER_LEN], &streaming_header(8000, 2));
        assert_eq!(&out[4..8], &[0xFF; 4], "riff size unknown");
        assert_eq!(&out[40..44], &[0xFF; 4], "data size unknown");
        assert_eq!(
            &out[HEADER_LEN..],
            &[0x01, 0x00, 0xFE, 0xFF, 0x34, 0x12, 0xFF, 0xFF]
        );
    }

    #[test]
    fn finish_appends_nothing_after_samples() {
        let mut encoder = WavEncoder::new(16000, 1);
        let mut out = Vec::new();
        encoder.encode(&[7; 320], &mut out).unwrap();
        let written = out.len();
        encoder.finish(&mut out).unwrap();
        assert_eq!(out.len(), written);
        assert_eq!(written, HEADER_LEN + 640);
    }

    #[test]
    fn an_empty_stream_is_a_header() {
        let mut encoder = WavEncoder::new(16000, 1);
        let mut out = Vec::new();
        encoder.finish(&mut out).unwrap();
        assert_eq!(out, streaming_header(16000, 1));
    }
}
