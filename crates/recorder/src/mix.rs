//! Both directions of a call on one timeline, stereo or mono.
//!
//! Each party's decoded audio is placed at a sample position on the recording's
//! timeline (position 0 is the moment the call was answered). The mixer keeps, per
//! party, only the audio that has not been taken yet, so its memory is bounded by
//! [`MAX_AHEAD_SECONDS`] of audio per party whatever the length of the call. Taking
//! up to the call's answered duration yields exactly that many sample frames, which
//! is what makes a recording as long as its call.

use std::collections::VecDeque;

use thiserror::Error;

/// How far ahead of the taken position audio may be added.
pub const MAX_AHEAD_SECONDS: u64 = 10;

/// One side of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The caller or callee on the trunk side: the left channel.
    External,
    /// The surgery's side of the call: the right channel.
    Practice,
}

/// Layout of the mixed output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// Interleaved left (external) and right (practice) samples.
    Stereo,
    /// Both parties summed into one channel, saturating.
    Mono,
}

impl Channels {
    /// Number of interleaved channels in the output.
    pub fn count(self) -> u16 {
        match self {
            Self::Stereo => 2,
            Self::Mono => 1,
        }
    }
}

/// Why audio could not be placed on the timeline.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MixError {
    /// The audio ends beyond the bound ahead of the taken position.
    #[error("audio ending at sample {end} is beyond the limit of sample {limit}")]
    TooFarAhead {
        /// The sample position just after the refused audio.
        end: u64,
        /// The furthest sample position audio may currently reach.
        limit: u64,
    },
}

/// Counters of audio the mixer could not use as given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixStats {
    /// External party's samples dropped because their stretch was already taken.
    pub external_late_samples: u64,
    /// Practice party's samples dropped because their stretch was already taken.
    pub practice_late_samples: u64,
    /// Mono samples whose sum did not fit in 16 bits and was saturated.
    pub clipped_samples: u64,
}

/// Aligns both parties' audio in time and mixes it.
///
/// Audio of one party that overlaps audio already added for that party overwrites
/// it: the later `add` wins. A jitter buffer that re-delivers a stretch (for example
/// real audio after concealment) thus replaces what it gave before.
#[derive(Debug)]
pub struct Mixer {
    channels: Channels,
    max_ahead: u64,
    taken: u64,
    external: PartyBuffer,
    practice: PartyBuffer,
    clipped_samples: u64,
}

impl Mixer {
    /// Creates a mixer whose timeline runs at `sample_rate`.
    pub fn new(sample_rate: u32, channels: Channels) -> Self {
        Self {
            channels,
            max_ahead: u64::from(sample_rate) * MAX_AHEAD_SECONDS,
            taken: 0,
            external: PartyBuffer::default(),
            practice: PartyBuffer::default(),
            clipped_samples: 0,
        }
    }

    /// Places one party's mono audio at sample `at` on the timeline.
    ///
    /// Samples before the taken position are dropped and counted as late. Audio that
    /// would end more than [`MAX_AHEAD_SECONDS`] past the taken position is refused
    /// whole, so a wild timestamp cannot grow memory; nothing is placed then.
    pub fn add(&mut self, party: Party, at: u64, samples: &[i16]) -> Result<(), MixError> {
        let end = at.saturating_add(samples.len() as u64);
        let limit = self.taken.saturating_add(self.max_ahead);
        if end > limit {
            return Err(MixError::TooFarAhead { end, limit });
        }

        let late = self.taken.saturating_sub(at).min(samples.len() as u64);
        let on_time = &samples[late as usize..];
        let offset = at.saturating_sub(self.taken) as usize;

        let buffer = self.buffer_mut(party);
        buffer.late_samples += late;
        buffer.write(offset, on_time);
        Ok(())
    }

    /// Mixed output from the last take up to sample `until`.
    ///
    /// Yields `until - position()` sample frames (none if `until` is not ahead),
    /// interleaved left and right for stereo. A party that added nothing for a
    /// stretch is silent there. The output is allocated whole, so the caller takes in
    /// steps (each frame time, or each second) rather than a whole call at once.
    pub fn take_until(&mut self, until: u64) -> Vec<i16> {
        let frames = until.saturating_sub(self.taken) as usize;
        let mut output = Vec::with_capacity(frames * usize::from(self.channels.count()));

        for _ in 0..frames {
            let external = self.external.pop();
            let practice = self.practice.pop();
            match self.channels {
                Channels::Stereo => output.extend([external, practice]),
                Channels::Mono => output.push(self.sum(external, practice)),
            }
        }

        self.taken += frames as u64;
        output
    }

    /// Sample frames taken so far.
    pub fn position(&self) -> u64 {
        self.taken
    }

    /// Late and clipped sample counts so far.
    pub fn stats(&self) -> MixStats {
        MixStats {
            external_late_samples: self.external.late_samples,
            practice_late_samples: self.practice.late_samples,
            clipped_samples: self.clipped_samples,
        }
    }

    fn buffer_mut(&mut self, party: Party) -> &mut PartyBuffer {
        match party {
            Party::External => &mut self.external,
            Party::Practice => &mut self.practice,
        }
    }

    fn sum(&mut self, external: i16, practice: i16) -> i16 {
        let (sum, overflowed) = external.overflowing_add(practice);
        if !overflowed {
            return sum;
        }
        self.clipped_samples += 1;
        external.saturating_add(practice)
    }
}

/// One party's audio from the taken position on, silence where none was added.
#[derive(Debug, Default)]
struct PartyBuffer {
    pending: VecDeque<i16>,
    late_samples: u64,
}

impl PartyBuffer {
    /// Writes `samples` starting `offset` samples past the taken position.
    fn write(&mut self, offset: usize, samples: &[i16]) {
        let end = offset + samples.len();
        if self.pending.len() < end {
            self.pending.resize(end, 0);
        }
        for (slot, &sample) in self.pending.range_mut(offset..end).zip(samples) {
            *slot = sample;
        }
    }

    fn pop(&mut self) -> i16 {
        self.pending.pop_front().unwrap_or(0)
    }
}

/// Doubles the sample rate by linear interpolation.
///
/// For a call whose two sides use G.711 (8 kHz) and G.722 (16 kHz), the 8 kHz side
/// is raised to 16 kHz before mixing. Each input sample `x[n]` becomes the midpoint
/// of `x[n-1]` and `x[n]`, then `x[n]` itself; `x[n-1]` is carried from the previous
/// call, so frames join without clicks. The cost is a delay of one output sample
/// (62.5 µs at 16 kHz). Linear interpolation leaves some image above 4 kHz, which is
/// acceptable for speech recordings.
#[derive(Debug, Default)]
pub struct Upsampler2x {
    previous: i16,
}

impl Upsampler2x {
    /// Creates an upsampler that starts from silence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends two output samples per input sample to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        out.reserve(input.len() * 2);
        for &sample in input {
            let midpoint = (i32::from(self.previous) + i32::from(sample)) / 2;
            let midpoint = i16::try_from(midpoint).expect("the mean of two i16 fits an i16");
            out.extend([midpoint, sample]);
            self.previous = sample;
        }
    }
}

/// Halves the sample rate, with a short low-pass filter against aliasing.
///
/// Used when a recording runs at 8 kHz (both sides began on G.711) and a side
/// changes to a 16 kHz codec mid-call. Each output sample is the input pair and its
/// neighbours weighted 1-3-3-1 (a binomial low-pass that halves at 4 kHz); the
/// first input sample of the next call is carried, so frames join without clicks.
/// It is no brick-wall filter, and some energy above 4 kHz folds back; for speech
/// in a recording that is acceptable, and such a call is rare.
#[derive(Debug, Default)]
pub struct Downsampler2x {
    /// The last input sample of the previous pair, and an odd sample left over.
    previous: i16,
    pending: Option<i16>,
}

impl Downsampler2x {
    /// Creates a downsampler that starts from silence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one output sample per two input samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        out.reserve(input.len() / 2 + 1);
        let mut samples = self.pending.take().into_iter().chain(input.iter().copied());
        while let Some(first) = samples.next() {
            let Some(second) = samples.next() else {
                self.pending = Some(first);
                break;
            };
            let next = samples.clone().next().unwrap_or(second);
            let sum = i32::from(self.previous)
                + 3 * i32::from(first)
                + 3 * i32::from(second)
                + i32::from(next);
            let mean = i16::try_from(sum / 8).expect("a weighted mean of i16 fits an i16");
            out.push(mean);
            self.previous = second;
        }
    }
}

#[cfg(test)]
mod resampler_tests {
    use super::*;

    #[test]
    fn downsampler_halves_length_across_odd_calls() {
        let mut down = Downsampler2x::new();
        let mut out = Vec::new();
        down.process(&[1000; 3], &mut out);
        down.process(&[1000; 5], &mut out);
        assert_eq!(out.len(), 4);
        // A constant signal stays constant once the filter has filled.
        assert_eq!(out[1..], [1000, 1000, 1000]);
    }

    #[test]
    fn downsampler_keeps_a_low_tone_and_removes_a_high_one() {
        let tone = |hz: f64| -> Vec<i16> {
            (0..1600)
                .map(|n| {
                    (10000.0 * (2.0 * std::f64::consts::PI * hz * n as f64 / 16000.0).sin()) as i16
                })
                .collect()
        };
        let rms = |samples: &[i16]| {
            (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64)
                .sqrt()
        };
        let (mut low, mut high) = (Vec::new(), Vec::new());
        Downsampler2x::new().process(&tone(500.0), &mut low);
        Downsampler2x::new().process(&tone(7500.0), &mut high);
        assert!(rms(&low[10..]) > 6500.0, "500 Hz kept: {}", rms(&low[10..]));
        assert!(
            rms(&high[10..]) < 500.0,
            "7.5 kHz removed: {}",
            rms(&high[10..])
        );
    }
}
