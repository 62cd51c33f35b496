//! Speech to send through a call, and how well what came out kept it.
//!
//! Speech is spoken by espeak-ng and turned by sox into 8 kHz mono 16-bit WAV.
//! What a phone or a recording holds is compared with what was sent once the two
//! are aligned in time: codecs are lossy and audio arrives later than it left, so
//! the comparison is of waveforms (G.711) or of loudness envelopes (Opus, G.722),
//! never of bytes. Every measure works at 8 kHz; [`to_8khz`] brings a wideband
//! recording down first.
//!
//! - [`Alignment`]: where sent speech lies in a recording, found by its envelope
//!   and then sample by sample, with the normalised cross-correlation (NCC) there.
//! - [`WindowMeasures`]: NCC and signal-to-noise ratio of each voiced 100 ms window.
//! - [`EnvelopeMatch`]: correlation of the 10 ms loudness envelopes, for codecs that
//!   keep how speech sounds but not its waveform.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::baresip::tool;
use super::temp::TempDir;

/// The sample rate of all speech sent and of every measure.
pub(crate) const SAMPLE_RATE: usize = 8000;

/// Silence after each sentence. baresip hangs up when its microphone file ends;
/// this keeps it talking until the test hangs up.
const TAIL_SECONDS: &str = "100";

/// Envelope blocks: 10 ms.
const BLOCK: usize = SAMPLE_RATE / 100;

/// Windows of the whole-speech windowed correlation: 200 ms, each free to slide by
/// 30 ms, so that a frame a phone's jitter buffer drops costs one window only.
const WIDE_WINDOW: usize = SAMPLE_RATE / 5;
const WIDE_SLIDE: usize = SAMPLE_RATE * 3 / 100;

/// Windows of [`WindowMeasures`]: 100 ms.
pub(crate) const WINDOW: usize = SAMPLE_RATE / 10;

/// How far a 100 ms window may slide from the whole speech's alignment: 2 ms.
///
/// A jitter buffer may place a packet a few samples off when it rounds a
/// timestamp; a recorder that shifts audio by more than this is at fault.
pub(crate) const WINDOW_SLIDE: usize = SAMPLE_RATE / 500;

/// A 100 ms window counts as voiced when its energy is within this many dB of the
/// loudest window's: it keeps quiet consonants and drops the pauses between words.
pub(crate) const VOICED_BELOW_LOUDEST_DB: f64 = 30.0;

/// A sentence spoken into an 8 kHz mono WAV file, with silence around it.
#[derive(Debug)]
pub(crate) struct Speech {
    /// The file, for a phone to play as its microphone.
    pub(crate) path: PathBuf,
    pub(crate) samples: Vec<f64>,
    /// Where the speech is, between the silences.
    pub(crate) voiced: Range<usize>,
}

impl Speech {
    /// `text`, after `lead` of silence and followed by 100 s of it.
    pub(crate) fn generate(dir: &TempDir, name: &str, text: &str, lead: Duration) -> Self {
        let spoken = dir.path().join(format!("{name}-espeak.wav"));
        let path = dir.path().join(format!("{name}.wav"));
        run(Command::new(tool("espeak-ng", "espeak-ng"))
            .arg("-w")
            .arg(&spoken)
            .arg(text));
        let lead = format!("{:.3}", lead.as_secs_f64());
        run(Command::new(tool("sox", "sox"))
            .arg(&spoken)
            .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(&path)
            .args(["gain", "-n", "-3", "pad", &lead, TAIL_SECONDS]));
        let samples = read_pcm16(&path);
        let voiced = voiced_span(&samples);
        Self {
            path,
            samples,
            voiced,
        }
    }

    /// The speech as a WAV file at `rate` with `channels` copies of it, for a
    /// phone whose codec takes that; the speech's own file for 8 kHz mono.
    pub(crate) fn microphone(&self, (rate, channels): (u32, u16)) -> PathBuf {
        if (rate, channels) == (8000, 1) {
            return self.path.clone();
        }
        let path = self.path.with_extension(format!("{rate}-{channels}.wav"));
        let (rate, channels) = (rate.to_string(), channels.to_string());
        run(Command::new(tool("sox", "sox"))
            .arg(&self.path)
            .args(["-r", &rate, "-c", &channels])
            .arg(&path));
        path
    }

    pub(crate) fn voiced(&self) -> &[f64] {
        &self.samples[self.voiced.clone()]
    }

    /// Seconds from the start of the file to the end of the last word.
    pub(crate) fn end_seconds(&self) -> f64 {
        seconds(self.voiced.end)
    }
}

/// A count of samples at 8 kHz, in seconds.
pub(crate) fn seconds(samples: usize) -> f64 {
    samples as f64 / SAMPLE_RATE as f64
}

/// Seconds, as a count of samples at 8 kHz.
pub(crate) fn samples(seconds: f64) -> usize {
    (seconds * SAMPLE_RATE as f64).round().max(0.0) as usize
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .expect("the tool was found on PATH, so it starts");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// From the first to the last 20 ms frame within 30 dB of the loudest.
fn voiced_span(samples: &[f64]) -> Range<usize> {
    const FRAME: usize = SAMPLE_RATE / 50;
    let energies: Vec<f64> = samples.chunks(FRAME).map(energy).collect();
    let loudest = energies.iter().copied().fold(0.0, f64::max);
    let voiced = |energy: &f64| *energy > loudest / 1000.0;
    let first = energies.iter().position(voiced).expect("espeak-ng spoke");
    let last = energies.iter().rposition(voiced).expect("espeak-ng spoke");
    first * FRAME..((last + 1) * FRAME).min(samples.len())
}

fn energy(samples: &[f64]) -> f64 {
    samples.iter().map(|s| s * s).sum()
}

/// Root mean square of `samples`; 0 for none.
pub(crate) fn rms(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (energy(samples) / samples.len() as f64).sqrt()
}

/// A level ratio in decibels; minus infinity for silence.
pub(crate) fn decibels(ratio: f64) -> f64 {
    20.0 * ratio.log10()
}

/// The samples of a 16-bit mono 8 kHz WAV file.
pub(crate) fn read_pcm16(path: &Path) -> Vec<f64> {
    let wav = Wav::read(path);
    assert!(
        wav.rate == 8000 && wav.channels.len() == 1,
        "{}: {} channels at {} Hz; expected mono at 8000 Hz",
        path.display(),
        wav.channels.len(),
        wav.rate
    );
    wav.channels.into_iter().next().expect("one channel")
}

/// A 16-bit PCM WAV file, one vector of samples per channel.
#[derive(Debug)]
pub(crate) struct Wav {
    pub(crate) rate: u32,
    pub(crate) channels: Vec<Vec<f64>>,
}

impl Wav {
    pub(crate) fn read(path: &Path) -> Self {
        let bytes = fs::read(path).expect("the WAV file was just written");
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parses a whole WAV file; `name` says which in a failure.
    ///
    /// A data chunk whose length is missing or runs past the end, as a killed
    /// writer or a stream written once leaves it, is read to the end of the file.
    pub(crate) fn parse(bytes: &[u8], name: &str) -> Self {
        assert!(
            bytes.get(0..4) == Some(b"RIFF") && bytes.get(8..12) == Some(b"WAVE"),
            "{name} is not a WAV file"
        );
        let mut format = None;
        let mut at = 12;
        while let Some(header) = bytes.get(at..at + 8) {
            let size = le_u32(&header[4..8]) as usize;
            let body = &bytes[at + 8..];
            match &header[..4] {
                b"fmt " => format = Some(PcmFormat::parse(body, name)),
                b"data" => {
                    let format = format.unwrap_or_else(|| panic!("{name}: data before fmt"));
                    let length = if size == 0 || size > body.len() {
                        body.len()
                    } else {
                        size
                    };
                    return format.samples(&body[..length]);
                }
                _ => {}
            }
            at += 8 + size + size % 2;
        }
        panic!("{name} has no data chunk");
    }

    /// The length in seconds.
    pub(crate) fn seconds(&self) -> f64 {
        let length = self.channels.first().map_or(0, Vec::len);
        length as f64 / f64::from(self.rate)
    }

    /// Channel `index` at 8 kHz.
    pub(crate) fn channel_at_8khz(&self, index: usize) -> Vec<f64> {
        to_8khz(&self.channels[index], self.rate)
    }
}

/// The fields of a `fmt ` chunk that reading the samples needs.
#[derive(Debug, Clone, Copy)]
struct PcmFormat {
    rate: u32,
    channels: usize,
}

impl PcmFormat {
    fn parse(body: &[u8], name: &str) -> Self {
        assert!(body.len() >= 16, "{name}: short fmt chunk");
        let field = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
        let (tag, channels, bits) = (field(0), field(2), field(14));
        let rate = le_u32(&body[4..8]);
        assert!(
            matches!(tag, 1 | 0xFFFE) && bits == 16 && channels > 0,
            "{name}: format {tag}, {channels} channels, {bits} bits; expected 16-bit PCM"
        );
        Self {
            rate,
            channels: usize::from(channels),
        }
    }

    /// De-interleaves `data`; a trailing partial frame is left out.
    fn samples(self, data: &[u8]) -> Wav {
        let mut channels = vec![Vec::new(); self.channels];
        for frame in data.chunks_exact(2 * self.channels) {
            for (channel, pair) in channels.iter_mut().zip(frame.chunks_exact(2)) {
                channel.push(f64::from(i16::from_le_bytes([pair[0], pair[1]])));
            }
        }
        Wav {
            rate: self.rate,
            channels,
        }
    }
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// `samples` taken at `rate` (a multiple of 8 kHz), low-pass filtered and
/// decimated to 8 kHz.
pub(crate) fn to_8khz(samples: &[f64], rate: u32) -> Vec<f64> {
    let rate = rate as usize;
    assert!(
        rate.is_multiple_of(SAMPLE_RATE) && rate > 0,
        "{rate} Hz is not a multiple of 8 kHz"
    );
    let factor = rate / SAMPLE_RATE;
    if factor == 1 {
        return samples.to_vec();
    }
    let taps = low_pass(factor);
    let half = taps.len() / 2;
    (0..samples.len() / factor)
        .map(|index| {
            let first = (index * factor).saturating_sub(half);
            let skipped = half.saturating_sub(index * factor);
            let span = samples.iter().skip(first);
            taps.iter()
                .skip(skipped)
                .zip(span)
                .map(|(t, s)| t * s)
                .sum()
        })
        .collect()
}

/// A windowed-sinc (Blackman) low-pass filter for decimating by `factor`: unit
/// gain up to about 3.4 kHz, and nothing left to fold back from 3.8 kHz up.
fn low_pass(factor: usize) -> Vec<f64> {
    use std::f64::consts::PI;
    let length = 128 * factor + 1;
    let cutoff = 0.45 / factor as f64;
    let centre = (length / 2) as f64;
    let last = (length - 1) as f64;
    let taps: Vec<f64> = (0..length)
        .map(|n| {
            let n = n as f64;
            let x = n - centre;
            let sinc = if x == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * PI * cutoff * x).sin() / (PI * x)
            };
            let window =
                0.42 - 0.5 * (2.0 * PI * n / last).cos() + 0.08 * (4.0 * PI * n / last).cos();
            sinc * window
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|tap| tap / sum).collect()
}

/// Where a sent signal lies in a recording, and how alike the two are there.
#[derive(Debug)]
pub(crate) struct Alignment {
    /// The recording's sample where the sent signal starts.
    pub(crate) offset: usize,
    /// Normalised cross-correlation at `offset`, over the whole signal.
    pub(crate) correlation: f64,
    /// The same, with each 200 ms window free to slide by up to 30 ms.
    pub(crate) windowed_correlation: f64,
    /// Recorded level over sent level.
    pub(crate) gain: f64,
}

impl Alignment {
    /// Finds `sent` in `recorded`: by its loudness envelope, then sample by
    /// sample. `None` if the recording is shorter than `sent`.
    pub(crate) fn find(sent: &[f64], recorded: &[f64]) -> Option<Self> {
        let last = recorded.len().checked_sub(sent.len())?;
        let coarse = coarse_offset(sent, recorded, last);
        let candidates = coarse.saturating_sub(BLOCK)..=(coarse + BLOCK).min(last);
        let (offset, products) = best_match(sent, recorded, candidates);
        Some(Self {
            offset,
            correlation: products.correlation(),
            windowed_correlation: windowed(sent, recorded, offset).correlation(),
            gain: products.gain(),
        })
    }
}

/// The normalised cross-correlation of `sent` with `recorded` from `offset`,
/// over as much of `sent` as the recording holds.
pub(crate) fn correlation_at(sent: &[f64], recorded: &[f64], offset: usize) -> f64 {
    Products::of(sent, recorded.get(offset..).unwrap_or_default()).correlation()
}

/// How loud `other` is in `recorded` from `other_offset`, in dB relative to
/// `other` itself, once `own` (from `own_offset`) is taken out at its
/// least-squares gain.
///
/// Taking the channel's own speech out first leaves only codec noise, which does
/// not correlate with the other party's speech: crosstalk shows down to about
/// -60 dB instead of hiding under chance correlation of two sentences.
pub(crate) fn crosstalk_db(
    recorded: &[f64],
    (own, own_offset): (&[f64], usize),
    (other, other_offset): (&[f64], usize),
) -> f64 {
    let mut residual = recorded.to_vec();
    let products = Products::of(own, recorded.get(own_offset..).unwrap_or_default());
    let gain = products.cross / products.sent;
    for (sample, own) in residual.iter_mut().skip(own_offset).zip(own) {
        *sample -= gain * own;
    }
    let leaked = Products::of(other, residual.get(other_offset..).unwrap_or_default());
    decibels((leaked.cross / leaked.sent).abs())
}

/// The offset, to a block, where the envelopes of `sent` and `recorded` agree best.
fn coarse_offset(sent: &[f64], recorded: &[f64], last: usize) -> usize {
    let sent = envelope(sent);
    let recorded = envelope(recorded);
    (0..=last / BLOCK)
        .filter(|block| block + sent.len() <= recorded.len())
        .map(|block| (block, pearson(&sent, &recorded[block..block + sent.len()])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(block, _)| block * BLOCK)
}

/// The loudness of each 10 ms block: its root mean square.
fn envelope(samples: &[f64]) -> Vec<f64> {
    samples.chunks_exact(BLOCK).map(rms).collect()
}

/// Pearson's correlation of two series of the same length.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (mean_a, mean_b) = (mean(a), mean(b));
    let centred_a: Vec<f64> = a.iter().map(|x| x - mean_a).collect();
    let centred_b: Vec<f64> = b.iter().map(|x| x - mean_b).collect();
    Products::of(&centred_a, &centred_b).correlation()
}

/// The candidate offset in `recorded` that correlates best with `sent`.
fn best_match(
    sent: &[f64],
    recorded: &[f64],
    candidates: impl Iterator<Item = usize>,
) -> (usize, Products) {
    candidates
        .map(|offset| (offset, Products::of(sent, &recorded[offset..])))
        .max_by(|a, b| a.1.correlation().total_cmp(&b.1.correlation()))
        .expect("at least one candidate offset")
}

/// The products of `sent` against `recorded` from `offset`, summed over
/// windows that each sit where they correlate best.
fn windowed(sent: &[f64], recorded: &[f64], offset: usize) -> Products {
    let mut total = Products::default();
    for (index, window) in sent.chunks(WIDE_WINDOW).enumerate() {
        let expected = offset + index * WIDE_WINDOW;
        let last = recorded.len() - window.len();
        let candidates = expected.saturating_sub(WIDE_SLIDE)..=(expected + WIDE_SLIDE).min(last);
        total.add(&best_match(window, recorded, candidates).1);
    }
    total
}

/// NCC and signal-to-noise ratio of each voiced 100 ms window of sent speech.
///
/// The whole speech is aligned first; each window is then compared where that
/// puts it, free to slide by [`WINDOW_SLIDE`] (±2 ms) to absorb a jitter buffer's
/// rounding, and keeps the slide with the highest NCC. The SNR is taken after the
/// least-squares gain: the recording is read as g × sent + noise with the g that
/// leaves the least noise, so a change of level is not counted as noise. For NCC
/// c that makes SNR = c² / (1 − c²): NCC 0.99 is 17 dB, 0.9995 is 30 dB.
#[derive(Debug)]
pub(crate) struct WindowMeasures {
    /// The NCC of each voiced window, in order.
    pub(crate) correlations: Vec<f64>,
    /// The SNR of each voiced window in dB, in order.
    pub(crate) snr_db: Vec<f64>,
}

impl WindowMeasures {
    /// Measures `sent`'s voiced windows in `recorded`, `sent` starting at `offset`.
    ///
    /// A window the recording ends before counts as NCC 0 and SNR −∞.
    pub(crate) fn measure(sent: &[f64], recorded: &[f64], offset: usize) -> Self {
        let loudest = sent.chunks(WINDOW).map(energy).fold(0.0, f64::max);
        let quietest_voiced = loudest * 10f64.powf(-VOICED_BELOW_LOUDEST_DB / 10.0);
        let mut measures = Self {
            correlations: Vec::new(),
            snr_db: Vec::new(),
        };
        for (index, window) in sent.chunks_exact(WINDOW).enumerate() {
            if energy(window) <= quietest_voiced || loudest == 0.0 {
                continue;
            }
            let products = slid_window(window, recorded, offset + index * WINDOW);
            measures.correlations.push(products.correlation());
            measures.snr_db.push(products.snr_db());
        }
        measures
    }

    /// The share of windows, from 0 to 1, whose NCC is at least `correlation`.
    pub(crate) fn share_at_least(&self, correlation: f64) -> f64 {
        let good = self.correlations.iter().filter(|c| **c >= correlation);
        good.count() as f64 / self.correlations.len().max(1) as f64
    }

    pub(crate) fn median_snr_db(&self) -> f64 {
        percentile(&self.snr_db, 0.5)
    }

    /// One line of the figures, for a test's report.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{} voiced windows, {:.1} % with NCC >= 0.99, lowest NCC {:.4}, \
             SNR median {:.1} dB, 10th percentile {:.1} dB, lowest {:.1} dB",
            self.correlations.len(),
            100.0 * self.share_at_least(0.99),
            percentile(&self.correlations, 0.0),
            self.median_snr_db(),
            percentile(&self.snr_db, 0.1),
            percentile(&self.snr_db, 0.0),
        )
    }
}

/// The products of `window` at the best place within ±2 ms of `expected`.
fn slid_window(window: &[f64], recorded: &[f64], expected: usize) -> Products {
    let Some(last) = recorded.len().checked_sub(window.len()) else {
        return Products::missing(window);
    };
    let first = expected.saturating_sub(WINDOW_SLIDE);
    if first > last {
        return Products::missing(window);
    }
    let candidates = first..=(expected + WINDOW_SLIDE).min(last);
    best_match(window, recorded, candidates).1
}

/// The value below which `fraction` of `values` lie; NaN for none.
pub(crate) fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(top) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    sorted[(fraction * top as f64).round() as usize]
}

/// How alike the loudness of sent speech and of a recording are, once aligned.
///
/// For codecs that keep how speech sounds but not its waveform (Opus) the 10 ms
/// RMS envelopes are compared with Pearson's correlation, after aligning to the
/// sample the offset where they agree best.
#[derive(Debug)]
pub(crate) struct EnvelopeMatch {
    /// The recording's sample where the sent signal starts.
    pub(crate) offset: usize,
    /// Pearson's correlation of the two envelopes.
    pub(crate) correlation: f64,
    /// Recorded RMS over sent RMS.
    pub(crate) gain: f64,
}

impl EnvelopeMatch {
    /// Finds `sent` in `recorded`; `None` if the recording is shorter.
    pub(crate) fn find(sent: &[f64], recorded: &[f64]) -> Option<Self> {
        let last = recorded.len().checked_sub(sent.len())?;
        let coarse = coarse_offset(sent, recorded, last);
        let candidates = coarse.saturating_sub(BLOCK)..=(coarse + BLOCK).min(last);
        candidates
            .map(|offset| Self::at(sent, recorded, offset))
            .max_by(|a, b| a.correlation.total_cmp(&b.correlation))
    }

    /// Compares `sent` with `recorded` from `offset`, over what the recording holds.
    pub(crate) fn at(sent: &[f64], recorded: &[f64], offset: usize) -> Self {
        let recorded = recorded.get(offset..).unwrap_or_default();
        let length = sent.len().min(recorded.len());
        let (sent, recorded) = (&sent[..length], &recorded[..length]);
        let (sent_envelope, recorded_envelope) = (envelope(sent), envelope(recorded));
        let correlation = if sent_envelope.is_empty() {
            0.0
        } else {
            pearson(&sent_envelope, &recorded_envelope)
        };
        Self {
            offset,
            correlation,
            gain: rms(recorded) / rms(sent),
        }
    }
}

/// Sums of products of two signals: the cross term and each one's energy.
#[derive(Debug, Default, Clone, Copy)]
struct Products {
    cross: f64,
    sent: f64,
    recorded: f64,
}

impl Products {
    /// Over the shorter of the two.
    fn of(sent: &[f64], recorded: &[f64]) -> Self {
        let mut products = Self::default();
        for (s, r) in sent.iter().zip(recorded) {
            products.cross += s * r;
            products.sent += s * s;
            products.recorded += r * r;
        }
        products
    }

    /// A window that the recording does not hold at all.
    fn missing(sent: &[f64]) -> Self {
        Self {
            sent: energy(sent),
            ..Self::default()
        }
    }

    fn add(&mut self, other: &Self) {
        self.cross += other.cross;
        self.sent += other.sent;
        self.recorded += other.recorded;
    }

    fn correlation(&self) -> f64 {
        let energy = (self.sent * self.recorded).sqrt();
        if energy > 0.0 {
            self.cross / energy
        } else {
            0.0
        }
    }

    fn gain(&self) -> f64 {
        (self.recorded / self.sent).sqrt()
    }

    /// Signal over residual after the least-squares gain, in dB.
    fn snr_db(&self) -> f64 {
        if self.sent == 0.0 || self.cross <= 0.0 {
            return f64::NEG_INFINITY;
        }
        let signal = self.cross * self.cross / self.sent;
        let noise = self.recorded - signal;
        if noise <= 0.0 {
            return f64::INFINITY;
        }
        10.0 * (signal / noise).log10()
    }
}
