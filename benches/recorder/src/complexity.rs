//! libopus alone at several complexities, on the same speech as the calls.
//!
//! The recorder's encoder fixes the complexity (`OpusSettings::RECORDING`); this
//! shows what another setting would cost, with the recorder's very encoder at its
//! bitrate, in 20 ms frames, without the Ogg pages.

use std::time::Duration;

use callvault_recorder::encode::{speech_encoder, OpusSettings};
use callvault_recorder::mix::{Channels, Upsampler2x};

use crate::call::Recorded;
use crate::wire::{Hiss, Talk, TURN_SAMPLES};
use crate::Failure;

/// The complexities measured.
pub(crate) const LEVELS: [i32; 5] = [0, 1, 2, 3, 5];

/// Interleaved PCM at one rate and channel layout.
#[derive(Debug)]
pub(crate) struct Signal {
    pub(crate) rate: u32,
    pub(crate) channels: Channels,
    pub(crate) talk: Talk,
    pub(crate) pcm: Vec<i16>,
}

impl Signal {
    /// The shapes a recording takes, from 8 kHz stereo PCM of two parties talking
    /// at once; and, closer to a real call, stereo in which they take turns.
    pub(crate) fn shapes(stereo: &[i16]) -> [Self; 4] {
        let mono = stereo
            .chunks_exact(2)
            .map(|pair| pair[0].saturating_add(pair[1]))
            .collect();
        [
            Self {
                rate: 8000,
                channels: Channels::Mono,
                talk: Talk::Both,
                pcm: mono,
            },
            Self {
                rate: 8000,
                channels: Channels::Stereo,
                talk: Talk::Both,
                pcm: stereo.to_vec(),
            },
            Self {
                rate: 8000,
                channels: Channels::Stereo,
                talk: Talk::Turns,
                pcm: turns(stereo),
            },
            Self {
                rate: 16000,
                channels: Channels::Stereo,
                talk: Talk::Both,
                pcm: wideband_stereo(stereo),
            },
        ]
    }

    pub(crate) fn output_label(&self) -> &'static str {
        match self.rate {
            8000 => "Opus 8 kHz",
            _ => "Opus 16 kHz",
        }
    }

    /// Encodes the whole signal with a fresh encoder, 20 ms at a time.
    pub(crate) fn encode(&self, complexity: i32) -> Result<Recorded, Failure> {
        let count = self.channels.count();
        let settings = OpusSettings {
            complexity,
            ..OpusSettings::RECORDING
        };
        let mut encoder = speech_encoder(self.rate, count, settings)?;

        let frame = usize::try_from(self.rate / 50)? * usize::from(count);
        let mut packet = [0_u8; 1500];
        let mut encoded_bytes = 0;
        for pcm in self.pcm.chunks_exact(frame) {
            encoded_bytes += encoder.encode(pcm, &mut packet)? as u64;
        }
        let samples = (self.pcm.len() / usize::from(count)) as u64;
        Ok(Recorded {
            audio: Duration::from_micros(samples * 1_000_000 / u64::from(self.rate)),
            encoded_bytes,
            file: None,
            stats: None,
            sample_rate: Some(self.rate),
        })
    }
}

/// Stereo speech in which one party talks while the other's line carries only a
/// faint hiss, swapping every 3 s.
fn turns(stereo: &[i16]) -> Vec<i16> {
    let mut hiss = Hiss::new();
    let mut pcm = stereo.to_vec();
    for (n, pair) in pcm.chunks_exact_mut(2).enumerate() {
        let listening = 1 - (n / TURN_SAMPLES) % 2;
        pair[listening] = hiss.next_sample();
    }
    pcm
}

/// Each channel raised to 16 kHz as the recorder's upsampler does it.
fn wideband_stereo(stereo: &[i16]) -> Vec<i16> {
    let mut channels = [Vec::new(), Vec::new()];
    for (index, channel) in channels.iter_mut().enumerate() {
        let narrow: Vec<i16> = stereo.iter().skip(index).step_by(2).copied().collect();
        Upsampler2x::new().process(&narrow, channel);
    }
    let [left, right] = channels;
    left.into_iter()
        .zip(right)
        .flat_map(|(l, r)| [l, r])
        .collect()
}
