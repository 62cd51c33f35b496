//! A call between two baresip phones through callvault, checked by ear.
//!
//! Each phone's microphone plays a sentence spoken by espeak-ng, and each phone
//! records what it hears. The test then looks for each sentence in the other
//! phone's recording by cross-correlation: G.711 is lossy and the audio arrives
//! later than it left, so the comparison is of waveforms aligned in time, not of
//! bytes.

mod support;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::baresip::{tool, Phone, PhoneProcess};
use support::callvault::Callvault;
use support::config::TestConfig;
use support::temp::TempDir;
use support::wait_until;

const CALLEE: &str = "07700900123";
const SAMPLE_RATE: usize = 8000;

/// Silence before each sentence, so that no word is lost while the call connects.
const LEAD_SECONDS: &str = "0.5";

/// Silence after each sentence. baresip hangs up when its microphone file ends;
/// this keeps it talking until the test hangs up, after `CALL_TIMEOUT` at most.
const TAIL_SECONDS: &str = "100";

/// How long the phones may take to connect and hear every word.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a phone may take to hang up and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The least normalised cross-correlation that counts as the same speech.
/// G.711 alone keeps it above 0.99; unrelated speech stays below 0.5.
const MIN_CORRELATION: f64 = 0.9;

/// The most a phone's own sentence may correlate with what it hears.
const MAX_ECHO_CORRELATION: f64 = 0.5;

/// Envelope blocks for the coarse search: 10 ms.
const BLOCK: usize = SAMPLE_RATE / 100;

/// Windows for the fine comparison: 200 ms, each free to slide by 30 ms.
const WINDOW: usize = SAMPLE_RATE / 5;
const SLIDE: usize = SAMPLE_RATE * 3 / 100;

#[test]
fn speech_crosses_callvault_both_ways_between_two_baresip_phones() {
    let dir = TempDir::new("baresip");
    let pbx_speech = Speech::generate(
        &dir,
        "pbx",
        "The surgery opens at eight in the morning on weekdays.",
    );
    let trunk_speech = Speech::generate(
        &dir,
        "trunk",
        "Please bring your repeat prescription form with you.",
    );
    let config = TestConfig::on_free_ports(&dir);
    let _callvault = Callvault::start(&config, &dir);
    let mut trunk = Phone::new("trunk", config.trunk_peer, CALLEE, &trunk_speech.path)
        .auto_answer()
        .spawn(&dir);
    let mut pbx = Phone::new("pbx", config.pbx_peer, "205", &pbx_speech.path).spawn(&dir);

    pbx.dial(&format!("sip:{CALLEE}@{}", config.pbx_listen));
    let needed = pbx_speech.voiced.end.max(trunk_speech.voiced.end) + 2 * SAMPLE_RATE;
    wait_until_both_heard(&pbx, &trunk, needed);
    hang_up_and_quit(&mut pbx, &mut trunk);

    let heard_by_trunk = read_pcm16(&recording(&trunk));
    let heard_by_pbx = read_pcm16(&recording(&pbx));
    assert_heard("PBX to trunk", &pbx_speech, &heard_by_trunk);
    assert_heard("trunk to PBX", &trunk_speech, &heard_by_pbx);
    assert_no_echo("PBX", &pbx_speech, &heard_by_pbx);
    assert_no_echo("trunk", &trunk_speech, &heard_by_trunk);
}

/// Waits until each phone has recorded `samples` from the other.
fn wait_until_both_heard(pbx: &PhoneProcess, trunk: &PhoneProcess, samples: usize) {
    let samples = samples as u64;
    let heard = wait_until(CALL_TIMEOUT, || {
        pbx.received_samples() >= samples && trunk.received_samples() >= samples
    });
    assert!(
        heard,
        "after {CALL_TIMEOUT:?} the PBX phone had recorded {} and the trunk phone {} \
         of the {samples} samples the speech needs",
        pbx.received_samples(),
        trunk.received_samples()
    );
}

/// Hangs up from the PBX side, then stops both phones.
///
/// The PBX phone exits only once its BYE is answered, which callvault does after
/// the trunk phone answered the BYE relayed to it; only then is the trunk phone
/// told to quit, so that it never sends a BYE of its own. Two BYEs that cross
/// are another flow, and one that baresip cannot be made to produce on cue.
fn hang_up_and_quit(pbx: &mut PhoneProcess, trunk: &mut PhoneProcess) {
    pbx.hang_up();
    pbx.quit();
    assert_exits(pbx, "after /hangup and /quit (was its BYE answered?)");
    trunk.quit();
    assert_exits(trunk, "after the call ended and /quit");
}

fn assert_exits(phone: &mut PhoneProcess, when: &str) {
    match phone.wait_for_exit(EXIT_TIMEOUT) {
        Some(status) if status.success() => {}
        Some(status) => phone.fail(&format!("exited with {status} {when}")),
        None => phone.fail(&format!("was still running {EXIT_TIMEOUT:?} {when}")),
    }
}

fn recording(phone: &PhoneProcess) -> PathBuf {
    phone
        .received_recording()
        .expect("a phone that heard the speech has a recording of it")
}

/// Asserts that `recorded` holds `sent`'s sentence, whole and undistorted.
#[allow(
    clippy::print_stderr,
    reason = "the measured figures are this test's report, shown with --nocapture"
)]
fn assert_heard(direction: &str, sent: &Speech, recorded: &[f64]) {
    let voiced = sent.voiced();
    let Some(alignment) = Alignment::find(voiced, recorded) else {
        panic!(
            "{direction}: the recording's {} samples cannot hold the {} samples of speech",
            recorded.len(),
            voiced.len()
        );
    };
    eprintln!(
        "{direction}: correlation {:.4} (windowed {:.4}), gain {:.3}, found {:.3} s \
         into a recording of {:.3} s",
        alignment.correlation,
        alignment.windowed_correlation,
        alignment.gain,
        alignment.offset as f64 / SAMPLE_RATE as f64,
        recorded.len() as f64 / SAMPLE_RATE as f64,
    );
    assert!(
        alignment.windowed_correlation >= MIN_CORRELATION,
        "{direction}: the recording does not match the speech sent: {alignment:?}"
    );
    assert!(
        (0.7..1.4).contains(&alignment.gain),
        "{direction}: the speech arrived at another level: {alignment:?}"
    );
}

/// Asserts that a phone does not hear its own sentence back.
#[allow(
    clippy::print_stderr,
    reason = "the measured figures are this test's report, shown with --nocapture"
)]
fn assert_no_echo(phone: &str, own: &Speech, recorded: &[f64]) {
    let Some(echo) = Alignment::find(own.voiced(), recorded) else {
        return;
    };
    eprintln!(
        "{phone} phone's own speech in what it heard: correlation {:.4} (windowed {:.4})",
        echo.correlation, echo.windowed_correlation
    );
    assert!(
        echo.windowed_correlation < MAX_ECHO_CORRELATION,
        "the {phone} phone heard its own speech: {echo:?}"
    );
}

/// A sentence spoken into an 8 kHz mono WAV file, with silence around it.
#[derive(Debug)]
struct Speech {
    path: PathBuf,
    samples: Vec<f64>,
    /// Where the speech is, between the silences.
    voiced: Range<usize>,
}

impl Speech {
    fn generate(dir: &TempDir, name: &str, text: &str) -> Self {
        let spoken = dir.path().join(format!("{name}-espeak.wav"));
        let path = dir.path().join(format!("{name}.wav"));
        run(Command::new(tool("espeak-ng", "espeak-ng"))
            .arg("-w")
            .arg(&spoken)
            .arg(text));
        run(Command::new(tool("sox", "sox"))
            .arg(&spoken)
            .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(&path)
            .args(["gain", "-n", "-3", "pad", LEAD_SECONDS, TAIL_SECONDS]));
        let samples = read_pcm16(&path);
        let voiced = voiced_span(&samples);
        Self {
            path,
            samples,
            voiced,
        }
    }

    fn voiced(&self) -> &[f64] {
        &self.samples[self.voiced.clone()]
    }
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
    let energies: Vec<f64> = samples
        .chunks(FRAME)
        .map(|frame| frame.iter().map(|s| s * s).sum())
        .collect();
    let loudest = energies.iter().copied().fold(0.0, f64::max);
    let voiced = |energy: &f64| *energy > loudest / 1000.0;
    let first = energies.iter().position(voiced).expect("espeak-ng spoke");
    let last = energies.iter().rposition(voiced).expect("espeak-ng spoke");
    first * FRAME..((last + 1) * FRAME).min(samples.len())
}

/// The samples of a 16-bit mono 8 kHz WAV file.
///
/// A data chunk whose length is missing or too long, as a killed writer leaves
/// it, is read to the end of the file.
fn read_pcm16(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).expect("the WAV file was just written");
    let name = path.display();
    assert!(
        bytes.get(0..4) == Some(b"RIFF") && bytes.get(8..12) == Some(b"WAVE"),
        "{name} is not a WAV file"
    );
    let mut at = 12;
    while let Some(header) = bytes.get(at..at + 8) {
        let size = le_u32(&header[4..8]) as usize;
        let body = &bytes[at + 8..];
        match &header[..4] {
            b"fmt " => assert_pcm16_mono_8khz(path, body),
            b"data" => {
                let length = if size == 0 || size > body.len() {
                    body.len()
                } else {
                    size
                };
                return body[..length]
                    .chunks_exact(2)
                    .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])))
                    .collect();
            }
            _ => {}
        }
        at += 8 + size + size % 2;
    }
    panic!("{name} has no data chunk");
}

fn assert_pcm16_mono_8khz(path: &Path, format: &[u8]) {
    let field = |at: usize| u16::from_le_bytes([format[at], format[at + 1]]);
    let rate = le_u32(&format[4..8]);
    let (tag, channels, bits) = (field(0), field(2), field(14));
    assert!(
        matches!(tag, 1 | 0xFFFE) && channels == 1 && rate == 8000 && bits == 16,
        "{}: format {tag}, {channels} channels, {rate} Hz, {bits} bits; \
         expected 16-bit PCM, mono, 8000 Hz",
        path.display()
    );
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Where a sent signal lies in a recording, and how alike the two are there.
#[derive(Debug)]
struct Alignment {
    /// The recording's sample where the sent signal starts.
    offset: usize,
    /// Normalised cross-correlation at `offset`, over the whole signal.
    correlation: f64,
    /// The same, with each 200 ms window free to slide by up to 30 ms: a frame
    /// that a jitter buffer drops then costs one window, not the rest.
    windowed_correlation: f64,
    /// Recorded level over sent level.
    gain: f64,
}

impl Alignment {
    /// Finds `sent` in `recorded`: by its loudness envelope, then sample by
    /// sample. `None` if the recording is shorter than `sent`.
    fn find(sent: &[f64], recorded: &[f64]) -> Option<Self> {
        let last = recorded.len().checked_sub(sent.len())?;
        let coarse = coarse_offset(sent, recorded, last);
        let candidates = coarse.saturating_sub(BLOCK)..=(coarse + BLOCK).min(last);
        let (offset, products) = best_match(sent, recorded, candidates);
        Some(Self {
            offset,
            correlation: products.correlation(),
            windowed_correlation: windowed(sent, recorded, offset).correlation(),
            gain: (products.recorded / products.sent).sqrt(),
        })
    }
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

/// The loudness of each block: its root mean square.
fn envelope(samples: &[f64]) -> Vec<f64> {
    samples
        .chunks_exact(BLOCK)
        .map(|block| (block.iter().map(|s| s * s).sum::<f64>() / BLOCK as f64).sqrt())
        .collect()
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
    for (index, window) in sent.chunks(WINDOW).enumerate() {
        let expected = offset + index * WINDOW;
        let last = recorded.len() - window.len();
        let candidates = expected.saturating_sub(SLIDE)..=(expected + SLIDE).min(last);
        total.add(&best_match(window, recorded, candidates).1);
    }
    total
}

/// Sums of products of two signals: the cross term and each one's energy.
#[derive(Debug, Default, Clone, Copy)]
struct Products {
    cross: f64,
    sent: f64,
    recorded: f64,
}

impl Products {
    /// Over the length of `sent`; `recorded` is at least as long.
    fn of(sent: &[f64], recorded: &[f64]) -> Self {
        let mut products = Self::default();
        for (s, r) in sent.iter().zip(recorded) {
            products.cross += s * r;
            products.sent += s * s;
            products.recorded += r * r;
        }
        products
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
}
