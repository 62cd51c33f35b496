//! Ogg Opus files checked by Xiph's own tools: `opusinfo` and `opusdec`.
//!
//! Both come with opus-tools (`scripts/test` installs it). Each test writes a file
//! under the system's temporary directory and removes it when done.

// clippy's allow-unwrap-in-tests covers #[test] functions, not the helpers beside them.
#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test helper is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use callvault_recorder::encode::{encoder_for, OutputFormat};

/// Call sizes the encoder is fed in turn: a packet, a burst, and odd remainders.
const CHUNKS: [usize; 5] = [160, 2000, 7, 320, 1];

/// Tone of the left channel, in Hz.
const LEFT_HZ: f64 = 400.0;

/// Tone of the right channel, in Hz.
const RIGHT_HZ: f64 = 1000.0;

/// A file under the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let unique = format!("callvault-ogg-opus-{}-{name}", std::process::id());
        Self(std::env::temp_dir().join(unique))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs an opus-tools program, explaining how to get it if it is missing.
fn run(program: &str, args: &[&Path]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {program} ({error}): install opus-tools (scripts/test does)")
        })
}

/// Interleaved PCM: a tone per channel (left 400 Hz, right 1 kHz) at 0.3 of full scale.
fn two_tones(samples: usize, rate: u32, channels: u16) -> Vec<i16> {
    let tones = [LEFT_HZ, RIGHT_HZ];
    let mut pcm = Vec::with_capacity(samples * usize::from(channels));
    for n in 0..samples {
        let t = n as f64 / f64::from(rate);
        for hz in &tones[..usize::from(channels)] {
            let value = (t * hz * std::f64::consts::TAU).sin() * 10_000.0;
            pcm.push(value as i16);
        }
    }
    pcm
}

/// Encodes `pcm` in calls of varied sizes and writes the stream to `path`.
fn write_ogg_opus(path: &Path, pcm: &[i16], rate: u32, channels: u16) {
    let mut encoder = encoder_for(OutputFormat::OggOpus, rate, channels).unwrap();
    let mut out = Vec::new();
    let width = usize::from(channels);

    let mut rest = pcm;
    for size in CHUNKS.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at((size * width).min(rest.len()));
        encoder.encode(chunk, &mut out).unwrap();
        rest = after;
    }
    encoder.finish(&mut out).unwrap();
    std::fs::write(path, out).unwrap();
}

/// Fails unless `opusinfo` accepts the file without a warning or an error.
fn assert_opusinfo_accepts(path: &Path) {
    let output = run("opusinfo", &[path]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "opusinfo failed:\n{text}");
    assert!(!text.contains("WARNING"), "opusinfo warned:\n{text}");
    assert!(!text.contains("ERROR"), "opusinfo found errors:\n{text}");
}

/// Decodes with `opusdec` at `rate`; returns the channel count and samples.
fn opusdec(path: &Path, rate: u32, name: &str) -> (u16, Vec<i16>) {
    let wav = TempFile::new(&format!("{name}.wav"));
    let output = Command::new("opusdec")
        .arg("--rate")
        .arg(rate.to_string())
        .arg(path)
        .arg(&wav.0)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run opusdec ({error}): install opus-tools (scripts/test does)")
        });
    assert!(
        output.status.success(),
        "opusdec failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    read_wav(&std::fs::read(&wav.0).unwrap(), rate)
}

/// Reads a 16-bit PCM WAV, checking its rate; returns channels and samples.
fn read_wav(bytes: &[u8], rate: u32) -> (u16, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let mut at = 12;
    let mut channels = 0;
    loop {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..];
        if id == b"fmt " {
            channels = u16::from_le_bytes([body[2], body[3]]);
            assert_eq!(u32::from_le_bytes(body[4..8].try_into().unwrap()), rate);
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "bits");
        } else if id == b"data" {
            let samples = body[..size]
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            return (channels, samples);
        }
        at += 8 + size + size % 2;
    }
}

/// One channel of interleaved PCM.
fn channel(pcm: &[i16], channels: u16, index: usize) -> Vec<i16> {
    pcm.iter()
        .skip(index)
        .step_by(usize::from(channels))
        .copied()
        .collect()
}

/// Estimates a tone's frequency from its rising zero crossings.
fn frequency(pcm: &[i16], rate: u32) -> f64 {
    let crossings = pcm.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    crossings as f64 * f64::from(rate) / pcm.len() as f64
}

fn assert_tone(pcm: &[i16], rate: u32, hz: f64, what: &str) {
    // The first 100 ms hold the codec's start-up.
    let steady = &pcm[(rate / 10) as usize..];
    let measured = frequency(steady, rate);
    assert!(
        (measured - hz).abs() < hz * 0.03,
        "{what}: {measured:.0} Hz, not {hz} Hz"
    );
}

/// Writes, checks and decodes a two-second stream; returns the decoded PCM.
fn round_trip(rate: u32, channels: u16, name: &str) -> Vec<i16> {
    let samples = 2 * rate as usize;
    let input = two_tones(samples, rate, channels);
    let file = TempFile::new(&format!("{name}.opus"));
    write_ogg_opus(&file.0, &input, rate, channels);
    assert_opusinfo_accepts(&file.0);

    let (decoded_channels, decoded) = opusdec(&file.0, rate, name);
    assert_eq!(decoded_channels, channels);
    assert_eq!(decoded.len(), input.len(), "decoded length");
    decoded
}

#[test]
fn narrowband_mono_decodes_to_its_exact_length() {
    let decoded = round_trip(8000, 1, "8k-mono");
    assert_tone(&decoded, 8000, LEFT_HZ, "mono");
}

#[test]
fn narrowband_stereo_keeps_left_left_and_right_right() {
    let decoded = round_trip(8000, 2, "8k-stereo");
    assert_tone(&channel(&decoded, 2, 0), 8000, LEFT_HZ, "left");
    assert_tone(&channel(&decoded, 2, 1), 8000, RIGHT_HZ, "right");
}

#[test]
fn wideband_stereo_keeps_left_left_and_right_right() {
    let decoded = round_trip(16000, 2, "16k-stereo");
    assert_tone(&channel(&decoded, 2, 0), 16000, LEFT_HZ, "left");
    assert_tone(&channel(&decoded, 2, 1), 16000, RIGHT_HZ, "right");
}

#[test]
fn a_one_sample_stream_decodes_to_one_sample() {
    let file = TempFile::new("one-sample.opus");
    write_ogg_opus(&file.0, &[1000], 8000, 1);
    assert_opusinfo_accepts(&file.0);

    let (channels, decoded) = opusdec(&file.0, 8000, "one-sample");
    assert_eq!(channels, 1);
    assert_eq!(decoded.len(), 1);
}

#[test]
fn an_empty_stream_is_a_valid_file_with_no_samples() {
    let file = TempFile::new("empty.opus");
    let mut encoder = encoder_for(OutputFormat::OggOpus, 16000, 2).unwrap();
    let mut out = Vec::new();
    encoder.finish(&mut out).unwrap();
    std::fs::write(&file.0, out).unwrap();
    assert_opusinfo_accepts(&file.0);

    let (channels, decoded) = opusdec(&file.0, 16000, "empty");
    assert_eq!(channels, 2);
    assert!(decoded.is_empty());
}
