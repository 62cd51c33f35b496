//! Opus (RFC 6716) carried in RTP (RFC 7587), decoded by libopus.
//!
//! RFC 7587 fixes Opus's RTP clock at 48000 whatever the audio's bandwidth, and a
//! sender may put stereo in any packet; libopus mixes it down to the mono decoder's
//! one channel and resamples to the rate asked for.

use std::fmt;

use ::opus::{Channels, Decoder as Inner, ErrorCode};

use super::{CodecError, Decoder};

/// Output rates libopus can decode to.
const OUTPUT_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

/// Opus's longest packet, and the longest loss libopus extrapolates (RFC 6716 §3.2).
const MAX_FRAME_MS: u32 = 120;

/// Opus frame durations are multiples of 2.5 ms; libopus conceals in such steps.
const STEPS_PER_SECOND: u32 = 400;

/// An RTP payload longer than this cannot have come in one UDP datagram.
const MAX_PAYLOAD_BYTES: usize = u16::MAX as usize;

/// Decodes Opus payloads to mono PCM at a rate chosen at construction.
///
/// A loss is filled by libopus's concealment, which extrapolates the last decoded
/// audio and fades it; after 120 ms of consecutive loss the rest is silence, as it
/// is before the first packet.
pub struct OpusDecoder {
    inner: Inner,
    output_rate: u32,
    /// Room for the longest packet's PCM.
    frame: Vec<i16>,
    /// Concealment made beyond what was asked for, owed to the next `conceal`.
    spare: Vec<i16>,
    /// Samples concealed since the last decoded packet.
    concealed: usize,
    /// Whether a packet has been decoded, so concealment has something to extend.
    decoded_any: bool,
}

impl OpusDecoder {
    /// Creates a decoder whose PCM is at `output_rate`.
    ///
    /// The rate must be one libopus decodes to: 8000, 12000, 16000, 24000 or 48000.
    pub fn new(output_rate: u32) -> Result<Self, CodecError> {
        if !OUTPUT_RATES.contains(&output_rate) {
            return Err(CodecError::UnsupportedOpusRate { output_rate });
        }
        let inner = Inner::new(output_rate, Channels::Mono)
            .map_err(|_| CodecError::UnsupportedOpusRate { output_rate })?;

        Ok(Self {
            inner,
            output_rate,
            frame: vec![0; samples_in(output_rate, MAX_FRAME_MS)],
            spare: Vec::new(),
            concealed: 0,
            decoded_any: false,
        })
    }

    /// Samples in one concealment step of 2.5 ms.
    fn step(&self) -> usize {
        usize::try_from(self.output_rate / STEPS_PER_SECOND).expect("a step fits a usize")
    }

    /// Samples in libopus's longest concealment.
    fn max_frame(&self) -> usize {
        self.frame.len()
    }

    /// Moves up to `wanted` owed samples to `out`, returning how many.
    fn take_spare(&mut self, wanted: usize, out: &mut Vec<i16>) -> usize {
        let taken = wanted.min(self.spare.len());
        out.extend(self.spare.drain(..taken));
        taken
    }

    /// Asks libopus to extend the audio by whole steps covering `wanted`.
    ///
    /// Returns false when concealment is over and the rest must be silence.
    fn extrapolate(&mut self, wanted: usize) -> bool {
        let budget = self.max_frame().saturating_sub(self.concealed);
        if !self.decoded_any || budget == 0 {
            return false;
        }

        let step = self.step();
        let length = wanted.min(budget).div_ceil(step) * step;
        match self.inner.decode(&[], &mut self.frame[..length], false) {
            Ok(made) => {
                self.spare.extend_from_slice(&self.frame[..made]);
                self.concealed = self.concealed.saturating_add(made);
                made > 0
            }
            Err(error) => {
                tracing::debug!(%error, "opus concealment failed; filling with silence");
                self.concealed = self.max_frame();
                false
            }
        }
    }
}

impl fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The PCM buffers are audio, which stays out of logs.
        f.debug_struct("OpusDecoder")
            .field("output_rate", &self.output_rate)
            .field("concealed", &self.concealed)
            .field("decoded_any", &self.decoded_any)
            .finish_non_exhaustive()
    }
}

impl Decoder for OpusDecoder {
    fn sample_rate(&self) -> u32 {
        self.output_rate
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() {
            return Ok(());
        }
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(CodecError::OpusPayloadTooLong {
                bytes: payload.len(),
            });
        }

        let made = self
            .inner
            .decode(payload, &mut self.frame, false)
            .map_err(|error| rejected(payload.len(), error.code()))?;
        out.extend_from_slice(&self.frame[..made]);

        self.spare.clear();
        self.concealed = 0;
        self.decoded_any = true;
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        out.reserve(samples);
        let mut remaining = samples;
        loop {
            remaining -= self.take_spare(remaining, out);
            if remaining == 0 || !self.extrapolate(remaining) {
                break;
            }
        }
        out.resize(out.len() + remaining, 0);
    }
}

/// Maps libopus's refusal of a packet to a decoding error.
fn rejected(bytes: usize, code: ErrorCode) -> CodecError {
    CodecError::OpusPacketRejected {
        bytes,
        reason: code.description(),
    }
}

/// Samples in `ms` milliseconds at `rate`.
fn samples_in(rate: u32, ms: u32) -> usize {
    usize::try_from(rate / 1000 * ms).expect("120 ms of samples fits a usize")
}

#[cfg(test)]
mod tests {
    use ::opus::{Application, Bitrate, Encoder};
    use proptest::prelude::*;

    use super::*;
    use crate::codec::decoder_for;

    /// A sine of `hz` at `rate`, `ms` long, at about a third of full scale.
    fn sine(hz: f64, rate: u32, ms: u32, channels: usize) -> Vec<i16> {
        let samples = samples_in(rate, ms);
        let mut pcm = Vec::with_capacity(samples * channels);
        for n in 0..samples {
            let phase = 2.0 * std::f64::consts::PI * hz * n as f64 / f64::from(rate);
            let value = (phase.sin() * 10_000.0) as i16;
            pcm.extend(std::iter::repeat_n(value, channels));
        }
        pcm
    }

    /// Encodes `pcm` in 20 ms packets as an RTP sender would.
    fn packets(pcm: &[i16], rate: u32, channels: Channels) -> Vec<Vec<u8>> {
        let mut encoder = Encoder::new(rate, channels, Application::Voip).unwrap();
        encoder.set_bitrate(Bitrate::Bits(32_000)).unwrap();
        let frame = samples_in(rate, 20) * channels as usize;
        pcm.chunks_exact(frame)
            .map(|chunk| encoder.encode_vec(chunk, 1500).unwrap())
            .collect()
    }

    fn decode_all(decoder: &mut OpusDecoder, packets: &[Vec<u8>]) -> Vec<i16> {
        let mut out = Vec::new();
        for packet in packets {
            let before = out.len();
            decoder.decode(packet, &mut out).unwrap();
            assert_eq!(out.len() - before, samples_in(decoder.sample_rate(), 20));
        }
        out
    }

    fn rms(pcm: &[i16]) -> f64 {
        let sum: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / pcm.len() as f64).sqrt()
    }

    /// Estimates the frequency of a pure tone from its rising zero crossings.
    fn frequency(pcm: &[i16], rate: u32) -> f64 {
        let crossings = pcm.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        crossings as f64 * f64::from(rate) / pcm.len() as f64
    }

    #[test]
    fn a_sine_survives_encode_and_decode() {
        let input = sine(440.0, 48000, 1000, 1);
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let output = decode_all(&mut decoder, &packets(&input, 48000, Channels::Mono));

        assert_eq!(output.len(), 16000);
        // Skip the codec's start-up before measuring.
        let steady = &output[1600..];
        let ratio = rms(steady) / rms(&input);
        assert!((0.7..1.3).contains(&ratio), "level ratio {ratio}");
        let hz = frequency(steady, 16000);
        assert!((430.0..450.0).contains(&hz), "frequency {hz}");
    }

    #[test]
    fn a_stereo_payload_decodes_to_mono() {
        let input = sine(300.0, 48000, 400, 2);
        let mut decoder = OpusDecoder::new(8000).unwrap();
        let output = decode_all(&mut decoder, &packets(&input, 48000, Channels::Stereo));

        assert_eq!(output.len(), 8 * 400);
        let hz = frequency(&output[800..], 8000);
        assert!((290.0..310.0).contains(&hz), "frequency {hz}");
    }

    #[test]
    fn concealment_gives_exactly_the_samples_asked_for() {
        let input = sine(440.0, 16000, 200, 1);
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut out = decode_all(&mut decoder, &packets(&input, 16000, Channels::Mono));

        // 333 is not a whole number of 2.5 ms steps at 16 kHz (40 samples).
        for wanted in [333, 7, 320, 1] {
            let before = out.len();
            decoder.conceal(wanted, &mut out);
            assert_eq!(out.len() - before, wanted);
        }
    }

    #[test]
    fn concealment_extends_the_audio_then_falls_silent_after_120_ms() {
        let input = sine(440.0, 16000, 200, 1);
        let mut decoder = OpusDecoder::new(16000).unwrap();
        decode_all(&mut decoder, &packets(&input, 16000, Channels::Mono));

        let mut out = Vec::new();
        decoder.conceal(16000, &mut out);
        assert_eq!(out.len(), 16000);
        assert!(
            rms(&out[..320]) > 1000.0,
            "the first 20 ms carry on the tone"
        );
        assert!(out[1920..].iter().all(|&s| s == 0), "silence after 120 ms");
    }

    #[test]
    fn concealment_before_any_packet_is_silence() {
        let mut decoder = OpusDecoder::new(8000).unwrap();
        let mut out = Vec::new();
        decoder.conceal(500, &mut out);
        assert_eq!(out, vec![0; 500]);
    }

    #[test]
    fn a_packet_after_a_loss_decodes_normally() {
        let input = sine(440.0, 16000, 400, 1);
        let all = packets(&input, 16000, Channels::Mono);
        let mut decoder = OpusDecoder::new(16000).unwrap();

        let mut out = decode_all(&mut decoder, &all[..5]);
        decoder.conceal(50, &mut out);
        decode_all(&mut decoder, &all[10..]);
        // The spare concealment was dropped: the next loss starts afresh.
        let before = out.len();
        decoder.conceal(40, &mut out);
        assert_eq!(out.len() - before, 40);
    }

    #[test]
    fn a_malformed_packet_is_an_error() {
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut out = Vec::new();
        // Code 3 (several frames) needs a frame count byte after the TOC.
        let error = decoder.decode(&[0x03], &mut out).unwrap_err();
        assert!(matches!(
            error,
            CodecError::OpusPacketRejected { bytes: 1, .. }
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn an_empty_payload_appends_nothing() {
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut out = Vec::new();
        decoder.decode(&[], &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn unsupported_output_rates_are_refused() {
        for rate in [0, 11025, 44100, 96000] {
            assert_eq!(
                OpusDecoder::new(rate).unwrap_err(),
                CodecError::UnsupportedOpusRate { output_rate: rate }
            );
        }
    }

    #[test]
    fn decoder_for_gives_wideband_opus_whatever_the_case() {
        for name in ["opus", "OPUS", "Opus"] {
            let decoder = decoder_for(name, 48000).expect("opus is supported");
            assert_eq!(decoder.sample_rate(), 16000);
        }
        assert!(decoder_for("opus", 8000).is_none());
        assert!(decoder_for("opus", 16000).is_none());
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(
            payloads in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..1500), 1..8),
            losses in proptest::collection::vec(0usize..3000, 1..8),
        ) {
            let mut decoder = OpusDecoder::new(16000).unwrap();
            let mut out = Vec::new();
            for (payload, loss) in payloads.iter().zip(losses.iter().cycle()) {
                let before = out.len();
                if decoder.decode(payload, &mut out).is_ok() {
                    prop_assert!(out.len() - before <= 1920);
                } else {
                    prop_assert_eq!(out.len(), before);
                }
                let before = out.len();
                decoder.conceal(*loss, &mut out);
                prop_assert_eq!(out.len() - before, *loss);
            }
        }
    }
}
