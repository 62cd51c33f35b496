//! What callvault records of a call between two baresip phones, checked by ear.
//!
//! Each phone plays a sentence from espeak-ng into the call and callvault records
//! the call into an encrypted file. The tests decrypt it with the test's key and
//! look for each sentence in the channel it belongs to: left holds the external
//! party (the phone on the trunk side), right the practice (the phone on the PBX
//! side). support/audio.rs says how speech is found and measured. Every test prints
//! its figures; `cargo test --test recording -- --nocapture` shows them.

#![allow(
    clippy::print_stderr,
    reason = "the measured figures are these tests' report, shown with --nocapture"
)]

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callvault_store::file::{read_recording, Recording};
use callvault_store::keys::Keyring;
use callvault_store::{CallEvent, EventKind, Layout, Party, RecordingMetadata, RecordingStatus};
use support::audio::{
    crosstalk_db, decibels, rms, samples, seconds, Alignment, EnvelopeMatch, Speech, Wav,
    WindowMeasures,
};
use support::baresip::{tool, Codec, Phone, PhoneProcess};
use support::callvault::Callvault;
use support::config::TestConfig;
use support::temp::TempDir;
use support::wait_until;

const CALLEE: &str = "07700900123";
const EXTENSION: &str = "205";

const PBX_SENTENCE: &str = "The surgery opens at eight in the morning on weekdays.";
const TRUNK_SENTENCE: &str = "Please bring your repeat prescription form with you.";

/// Long enough to be put on hold in the middle and still speak after the resume.
const TRUNK_LONG_SENTENCE: &str = "Your blood test results are back and the doctor would \
     like to see you next week, so please ring the surgery to book an appointment.";

/// Silence before each sentence, so that no word is lost while the call connects.
const LEAD: Duration = Duration::from_millis(500);

/// The left channel: the external party.
const LEFT: usize = 0;
/// The right channel: the practice.
const RIGHT: usize = 1;

/// How long the phones may take to connect and hear every word.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a phone may take to hang up and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long callvault may take to finalise a recording after the call ends.
const RECORDING_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the call lasts after the last word, so that it reaches the recorder.
const AFTER_SPEECH_SECONDS: f64 = 1.0;

/// The issue's figures for G.711 recorded in WAV: nearly every voiced 100 ms
/// window is the same waveform (NCC 0.99 is an SNR of 17 dB) and the typical
/// window is as clean as G.711 itself (measured: 37 dB).
const MIN_WINDOW_CORRELATION: f64 = 0.99;
const MIN_SHARE_OF_GOOD_WINDOWS: f64 = 0.98;
const MIN_MEDIAN_SNR_DB: f64 = 30.0;

/// The loudest the other party's speech may be in a channel, relative to that
/// speech, once the channel's own speech is taken out. G.711's noise alone
/// leaves it near -70 dB.
const MAX_CROSSTALK_DB: f64 = -40.0;

/// The least correlation of 10 ms loudness envelopes that counts as the same
/// speech through a codec that keeps how speech sounds but not its waveform.
/// Measured: 0.993-0.994 through the Ogg Opus recording (20 kbit/s a channel),
/// 0.9995-1.0000 for G.722 or Opus phones recorded in WAV.
const MIN_ENVELOPE_CORRELATION: f64 = 0.97;

/// The most a channel's envelope may correlate with the other party's speech.
/// Two unrelated sentences said at once measured -0.11 to -0.07.
const MAX_ENVELOPE_LEAK: f64 = 0.3;

/// How far a recording's length may be from the call's answered duration.
const MAX_LENGTH_ERROR_SECONDS: f64 = 0.1;

/// When a phone's audio may start, in seconds from the recording's sample 0 (the
/// answer): the answering phone starts as it sends its 200 OK, a moment before
/// callvault relays it; the calling phone once it has the 200 OK, a moment after.
/// A busy machine may add a few hundred milliseconds.
const AUDIO_START_SECONDS: std::ops::Range<f64> = -0.1..0.5;

/// How long the PBX phone holds the call.
const HOLD: Duration = Duration::from_secs(3);

/// How long a re-INVITE may take to change what flows; the silence of a hold
/// is checked from this long after `/hold` was typed.
const REINVITE_SECONDS: f64 = 0.5;

/// How far below the speech's level the held party's channel must be on hold.
const MIN_HOLD_SILENCE_DB: f64 = 40.0;

/// How far the speech after a resume may sit from where it would be had the
/// call never been held: the hold must be recorded as silence of its own length.
/// Three 20 ms packets, for a recorder that places a resumed stream by its
/// arrival rather than its RTP timestamps.
const MAX_RESUME_DRIFT_SECONDS: f64 = 0.06;

/// How far a hold event's start and length may be from what the test typed.
const MAX_HOLD_EVENT_ERROR_MS: i64 = 300;

#[test]
fn wav_recording_holds_each_side_on_its_own_channel() {
    let dir = TempDir::new("recording-wav");
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, LEAD);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_SENTENCE, LEAD);
    let mut config = TestConfig::on_free_ports(&dir);
    config.format = Some("wav".to_owned());
    config.channels = Some("stereo".to_owned());

    let recording = record_call(&dir, &config, Codec::Pcmu, &pbx, &trunk);
    assert_complete(&recording.metadata, "audio/wav");
    assert_streamed_wav_header(&recording.audio);
    let wav = stereo_wav(&recording, 8000);
    assert_length_is_answered_duration(&recording.metadata, wav.seconds());

    let (left, right) = (wav.channel_at_8khz(LEFT), wav.channel_at_8khz(RIGHT));
    let trunk_found = assert_waveform_kept("left (trunk phone)", trunk.voiced(), &left);
    let pbx_found = assert_waveform_kept("right (PBX phone)", pbx.voiced(), &right);
    assert_starts_after_lead("left (trunk phone)", &trunk, trunk_found.offset);
    assert_starts_after_lead("right (PBX phone)", &pbx, pbx_found.offset);
    let trunk_found = (trunk.voiced(), trunk_found.offset);
    let pbx_found = (pbx.voiced(), pbx_found.offset);
    assert_no_crosstalk("left", &left, trunk_found, pbx_found);
    assert_no_crosstalk("right", &right, pbx_found, trunk_found);
}

#[test]
fn opus_recording_keeps_the_speech_of_both_sides() {
    let dir = TempDir::new("recording-opus");
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, LEAD);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_SENTENCE, LEAD);
    let config = TestConfig::on_free_ports(&dir);

    let recording = record_call(&dir, &config, Codec::Pcmu, &pbx, &trunk);
    assert_complete(&recording.metadata, "audio/ogg");
    let wav = decode_opus(&dir, &recording.audio);
    assert_eq!(wav.channels.len(), 2, "the default recording is stereo");
    assert_length_is_answered_duration(&recording.metadata, wav.seconds());

    let (left, right) = (wav.channel_at_8khz(LEFT), wav.channel_at_8khz(RIGHT));
    let trunk_found = assert_envelope_kept("left (trunk phone)", trunk.voiced(), &left);
    let pbx_found = assert_envelope_kept("right (PBX phone)", pbx.voiced(), &right);
    assert_starts_after_lead("left (trunk phone)", &trunk, trunk_found.offset);
    assert_starts_after_lead("right (PBX phone)", &pbx, pbx_found.offset);
    assert_no_envelope_leak("left", pbx.voiced(), &left, pbx_found.offset);
    assert_no_envelope_leak("right", trunk.voiced(), &right, trunk_found.offset);
}

#[test]
fn recording_through_hold_and_resume_has_silence_of_the_hold() {
    let dir = TempDir::new("recording-hold");
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, LEAD);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_LONG_SENTENCE, LEAD);
    let mut config = TestConfig::on_free_ports(&dir);
    config.format = Some("wav".to_owned());

    let call = Call::dial(&dir, &config, Codec::Pcmu, &pbx, &trunk);
    let answered = call.wait_for_audio();
    let hold = call.hold_from_pbx(&trunk);
    call.run_until(answered, trunk.end_seconds() + AFTER_SPEECH_SECONDS);
    let recording = call.finish(&config);

    assert_complete(&recording.metadata, "audio/wav");
    let wav = stereo_wav(&recording, 8000);
    assert_length_is_answered_duration(&recording.metadata, wav.seconds());
    assert_hold_event(&recording.metadata, hold);
    let hold = hold.on_timeline(&recording.metadata);
    let left = wav.channel_at_8khz(LEFT);
    let right = wav.channel_at_8khz(RIGHT);
    let shift = assert_speech_before_hold(&trunk, &left, &hold);
    assert_held_party_silent(&trunk, &left, &right, &hold, shift);
    assert_speech_after_resume(&trunk, &left, &hold, shift);
}

#[test]
fn mono_recording_mixes_both_parties() {
    let dir = TempDir::new("recording-mono");
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, LEAD);
    let trunk_lead = Duration::from_secs_f64(pbx.end_seconds() + 0.5);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_SENTENCE, trunk_lead);
    let mut config = TestConfig::on_free_ports(&dir);
    config.format = Some("wav".to_owned());
    config.channels = Some("mono".to_owned());

    let recording = record_call(&dir, &config, Codec::Pcmu, &pbx, &trunk);
    assert_complete(&recording.metadata, "audio/wav");
    let wav = Wav::parse(&recording.audio, "the recording");
    assert_eq!(
        (wav.rate, wav.channels.len()),
        (8000, 1),
        "mono G.711 at 8 kHz"
    );
    assert_length_is_answered_duration(&recording.metadata, wav.seconds());

    let mixed = wav.channel_at_8khz(0);
    let pbx_found = assert_waveform_kept("mono, PBX phone's turn", pbx.voiced(), &mixed);
    let trunk_found = assert_waveform_kept("mono, trunk phone's turn", trunk.voiced(), &mixed);
    assert_starts_after_lead("mono, PBX phone's turn", &pbx, pbx_found.offset);
    assert!(
        trunk_found.offset >= pbx_found.offset + pbx.voiced().len(),
        "the trunk phone spoke after the PBX phone, but the recording has its turn at \
         {:.3} s, inside the PBX phone's ({:.3} s to {:.3} s)",
        seconds(trunk_found.offset),
        seconds(pbx_found.offset),
        seconds(pbx_found.offset + pbx.voiced().len())
    );
}

#[test]
fn g722_call_is_recorded_in_wideband() {
    assert_wideband_call_recorded("recording-g722", Codec::G722);
}

#[test]
fn opus_call_is_recorded_in_wideband() {
    assert_wideband_call_recorded("recording-opus-wire", Codec::Opus);
}

/// A call whose phones speak `codec` is recorded at 16 kHz with both sides' speech.
///
/// Only the envelopes are compared: the phones resample the 8 kHz speech to the
/// codec's rate, and through that and G.722 about one window in ten falls below
/// NCC 0.99 (measured 88-100 %, median SNR 24-26 dB) with no fault of callvault's.
fn assert_wideband_call_recorded(label: &str, codec: Codec) {
    let dir = TempDir::new(label);
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, LEAD);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_SENTENCE, LEAD);
    let mut config = TestConfig::on_free_ports(&dir);
    config.format = Some("wav".to_owned());

    let recording = record_call(&dir, &config, codec, &pbx, &trunk);
    assert_complete(&recording.metadata, "audio/wav");
    let wav = stereo_wav(&recording, 16000);
    assert_length_is_answered_duration(&recording.metadata, wav.seconds());

    let (left, right) = (wav.channel_at_8khz(LEFT), wav.channel_at_8khz(RIGHT));
    let trunk_found = assert_envelope_kept(&format!("{codec:?} left"), trunk.voiced(), &left);
    let pbx_found = assert_envelope_kept(&format!("{codec:?} right"), pbx.voiced(), &right);
    assert_starts_after_lead("left (trunk phone)", &trunk, trunk_found.offset);
    assert_starts_after_lead("right (PBX phone)", &pbx, pbx_found.offset);
}

/// Makes a call in which both phones say their sentence, and returns its recording.
fn record_call(
    dir: &TempDir,
    config: &TestConfig,
    codec: Codec,
    pbx: &Speech,
    trunk: &Speech,
) -> Recording {
    let call = Call::dial(dir, config, codec, pbx, trunk);
    let answered = call.wait_for_audio();
    let heard = pbx.end_seconds().max(trunk.end_seconds()) + AFTER_SPEECH_SECONDS;
    call.wait_until_heard(answered, heard);
    call.finish(config)
}

/// Which phone places the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialler {
    Pbx,
    Trunk,
    /// The trunk's phone, and the PBX's phone rings until told to answer.
    TrunkToRingingPhone,
}

/// A call between the PBX side's phone and the trunk side's, through callvault.
struct Call {
    /// Kept running until the recording is read.
    _callvault: Callvault,
    pbx: PhoneProcess,
    trunk: PhoneProcess,
    /// Held for the whole call; dropped last.
    _turn: MutexGuard<'static, ()>,
}

/// One call at a time: the measures ask for a waveform kept to 0.99, and baresip's
/// own playback stutters when several phones share two busy cores, which would be
/// measured as the recorder's fault.
static ONE_CALL_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Call {
    /// Starts callvault and a phone on each side, and dials from the PBX side.
    fn dial(
        dir: &TempDir,
        config: &TestConfig,
        codec: Codec,
        pbx: &Speech,
        trunk: &Speech,
    ) -> Self {
        Self::dial_from(Dialler::Pbx, dir, config, codec, (pbx, trunk))
    }

    /// As [`dial`](Self::dial), with the call placed by `dialler`'s phone.
    fn dial_from(
        dialler: Dialler,
        dir: &TempDir,
        config: &TestConfig,
        codec: Codec,
        (pbx, trunk): (&Speech, &Speech),
    ) -> Self {
        // A test that failed while holding the turn leaves nothing to repair.
        let turn = ONE_CALL_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let callvault = Callvault::start(config, dir);
        let format = codec.audio_format();
        let inbound = dialler != Dialler::Pbx;
        let trunk = Phone::new(
            "trunk",
            config.trunk_peer,
            CALLEE,
            &trunk.microphone(format),
        )
        .codec(codec);
        let pbx =
            Phone::new("pbx", config.pbx_peer, EXTENSION, &pbx.microphone(format)).codec(codec);
        let (trunk, pbx) = if inbound {
            let pbx = if dialler == Dialler::Trunk {
                pbx.auto_answer()
            } else {
                pbx
            };
            (trunk.spawn(dir), pbx.spawn(dir))
        } else {
            (trunk.auto_answer().spawn(dir), pbx.spawn(dir))
        };
        if inbound {
            // The practice's PBX would map its number to the phone; here the
            // provider dials the phone's own user.
            trunk.dial(&format!("sip:{EXTENSION}@{}", config.trunk_listen));
        } else {
            pbx.dial(&format!("sip:{CALLEE}@{}", config.pbx_listen));
        }
        Self {
            _callvault: callvault,
            pbx,
            trunk,
            _turn: turn,
        }
    }

    /// Waits until each phone hears the other, and returns when that was.
    fn wait_for_audio(&self) -> Instant {
        let connected = wait_until(CALL_TIMEOUT, || {
            self.pbx.received_seconds() > 0.0 && self.trunk.received_seconds() > 0.0
        });
        assert!(
            connected,
            "the phones did not both hear audio {CALL_TIMEOUT:?} after dialling"
        );
        Instant::now()
    }

    /// Waits until `seconds` have passed since `answered` and each phone has heard
    /// that much audio.
    ///
    /// Not for a call that was held: after a hold baresip 1.0.0 restarts its
    /// player without the filter that records what the phone hears.
    fn wait_until_heard(&self, answered: Instant, seconds: f64) {
        let heard = wait_until(CALL_TIMEOUT, || {
            answered.elapsed().as_secs_f64() >= seconds
                && self.pbx.received_seconds() >= seconds
                && self.trunk.received_seconds() >= seconds
        });
        assert!(
            heard,
            "after {CALL_TIMEOUT:?} the PBX phone had heard {:.2} s of the {seconds:.2} s \
             needed, the trunk phone {:.2} s",
            self.pbx.received_seconds(),
            self.trunk.received_seconds()
        );
    }

    /// Lets the call run until `seconds` after `answered`, timed by the clock alone.
    fn run_until(&self, answered: Instant, seconds: f64) {
        let left = Duration::from_secs_f64(seconds).saturating_sub(answered.elapsed());
        thread::sleep(left);
    }

    /// Holds the call from the PBX phone once the trunk phone's sentence is under
    /// way, and resumes it [`HOLD`] later.
    fn hold_from_pbx(&self, trunk: &Speech) -> HoldTimes {
        let hold_after = seconds(trunk.voiced.start) + 1.5;
        let speaking = wait_until(CALL_TIMEOUT, || self.pbx.received_seconds() >= hold_after);
        assert!(
            speaking,
            "the PBX phone never heard {hold_after} s of the call"
        );
        let hold_ms = unix_ms();
        self.pbx.hold();
        thread::sleep(HOLD);
        let resume_ms = unix_ms();
        self.pbx.resume();
        HoldTimes { hold_ms, resume_ms }
    }

    /// Hangs up from the PBX side, stops both phones, and returns the recording
    /// callvault made of the call.
    ///
    /// The PBX phone exits only once its BYE is answered; only then is the trunk
    /// phone told to quit, so that it never sends a BYE of its own.
    fn finish(mut self, config: &TestConfig) -> Recording {
        self.pbx.hang_up();
        self.pbx.quit();
        assert_exits(
            &mut self.pbx,
            "after /hangup and /quit (was its BYE answered?)",
        );
        self.trunk.quit();
        assert_exits(&mut self.trunk, "after the call ended and /quit");
        finished_recording(config)
    }
}

fn assert_exits(phone: &mut PhoneProcess, when: &str) {
    match phone.wait_for_exit(EXIT_TIMEOUT) {
        Some(status) if status.success() => {}
        Some(status) => phone.fail(&format!("exited with {status} {when}")),
        None => phone.fail(&format!("was still running {EXIT_TIMEOUT:?} {when}")),
    }
}

fn unix_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    let now = now.expect("the clock is after 1970");
    i64::try_from(now.as_millis()).expect("milliseconds since 1970 fit in i64")
}

/// The call's one recording, decrypted, once callvault has finalised it.
/// The call's one recording, once finished and in its final format (an Ogg Opus
/// recording is made as WAV and transcoded after the call).
fn finished_recording(config: &TestConfig) -> Recording {
    let layout = Layout::new(&config.data_dir);
    let queue = layout.transcode_dir().join("queue");
    let transcoded = || fs::read_dir(&queue).map_or(true, |mut queued| queued.next().is_none());
    let mut finished = Vec::new();
    wait_until(RECORDING_TIMEOUT, || {
        finished = layout.finished_recordings().unwrap_or_default();
        !finished.is_empty() && transcoded()
    });
    let [path] = finished.as_slice() else {
        panic!(
            "one call should leave one finished recording in {}, {RECORDING_TIMEOUT:?} \
             after it ended; found {finished:?}",
            layout.recordings().display()
        );
    };
    let keyring = Keyring::load(&config.data_dir.join("master.key")).expect("the test's key");
    read_recording(path, &keyring)
        .unwrap_or_else(|error| panic!("{} does not read: {error}", path.display()))
}

/// Asserts the metadata of a call that ended normally with no packet lost.
fn assert_complete(metadata: &RecordingMetadata, media_type: &str) {
    eprintln!(
        "metadata: status {:?}, reason {:?}, lost packets {}, media type {}, \
         {} -> {}, extension {:?}, direction {:?}",
        metadata.status,
        metadata.status_reason,
        metadata.lost_packets,
        metadata.media_type,
        metadata.caller,
        metadata.callee,
        metadata.extension,
        metadata.direction,
    );
    assert_eq!(metadata.status, RecordingStatus::Complete, "{metadata:?}");
    assert_eq!(metadata.lost_packets, 0, "{metadata:?}");
    assert_eq!(metadata.media_type, media_type, "{metadata:?}");
    assert!(
        metadata.end_ms.is_some(),
        "a finished recording has an end: {metadata:?}"
    );
}

/// Asserts that the audio lasts as long as the call was answered, within 100 ms.
fn assert_length_is_answered_duration(metadata: &RecordingMetadata, audio_seconds: f64) {
    let end_ms = metadata.end_ms.expect("a finished recording has an end");
    let answered = (end_ms - metadata.start_ms) as f64 / 1000.0;
    let error = audio_seconds - answered;
    eprintln!("length: audio {audio_seconds:.3} s, answered {answered:.3} s, off by {error:+.3} s");
    assert!(
        error.abs() <= MAX_LENGTH_ERROR_SECONDS,
        "the recording lasts {audio_seconds:.3} s but the call was answered for \
         {answered:.3} s"
    );
}

/// Asserts the header of a WAV stream written once, front to back: 44 bytes,
/// with the RIFF and data lengths left at 0xFFFFFFFF since they were unknown.
fn assert_streamed_wav_header(audio: &[u8]) {
    let header = audio.get(..44).expect("a WAV file has a 44-byte header");
    let field = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    assert!(
        &header[36..40] == b"data" && field(4) == u32::MAX && field(40) == u32::MAX,
        "not a streamed WAV header: {header:02x?}"
    );
}

/// The recording's audio as a stereo WAV at `rate`.
fn stereo_wav(recording: &Recording, rate: u32) -> Wav {
    let wav = Wav::parse(&recording.audio, "the recording");
    eprintln!("WAV: {} Hz, {} channels", wav.rate, wav.channels.len());
    assert_eq!(wav.rate, rate, "the recording's sample rate");
    assert_eq!(wav.channels.len(), 2, "the recording is stereo");
    wav
}

/// Checks an Ogg Opus recording with opusinfo and decodes it with opusdec to 8 kHz.
fn decode_opus(dir: &TempDir, audio: &[u8]) -> Wav {
    let opus = dir.path().join("recording.opus");
    fs::write(&opus, audio).expect("the temp directory is writable");
    let info = Command::new(tool("opusinfo", "opus-tools"))
        .arg(&opus)
        .output()
        .expect("opusinfo starts");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&info.stdout),
        String::from_utf8_lossy(&info.stderr)
    );
    eprintln!("opusinfo:\n{report}");
    assert!(
        info.status.success() && !report.contains("WARNING") && !report.contains("ERROR"),
        "opusinfo finds fault with the recording:\n{report}"
    );

    let decoded = dir.path().join("recording-decoded.wav");
    let output = Command::new(tool("opusdec", "opus-tools"))
        .args(["--quiet", "--rate", "8000"])
        .arg(&opus)
        .arg(&decoded)
        .output()
        .expect("opusdec starts");
    assert!(
        output.status.success(),
        "opusdec cannot decode the recording: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Wav::read(&decoded)
}

/// Asserts that `channel` holds `sent` with its waveform intact, per 100 ms window.
fn assert_waveform_kept(label: &str, sent: &[f64], channel: &[f64]) -> Alignment {
    let found = find_speech(label, sent, channel);
    let windows = WindowMeasures::measure(sent, channel, found.offset);
    eprintln!(
        "{label}: found at {:.3} s, whole NCC {:.4}, gain {:.3}; {}",
        seconds(found.offset),
        found.correlation,
        found.gain,
        windows.summary()
    );
    let share = windows.share_at_least(MIN_WINDOW_CORRELATION);
    assert!(
        share >= MIN_SHARE_OF_GOOD_WINDOWS,
        "{label}: only {:.1} % of voiced windows have NCC >= {MIN_WINDOW_CORRELATION}; \
         NCCs: {:.4?}",
        100.0 * share,
        windows.correlations
    );
    let median = windows.median_snr_db();
    assert!(
        median >= MIN_MEDIAN_SNR_DB,
        "{label}: median SNR {median:.1} dB is below {MIN_MEDIAN_SNR_DB} dB; \
         SNRs: {:.1?}",
        windows.snr_db
    );
    found
}

fn find_speech(label: &str, sent: &[f64], channel: &[f64]) -> Alignment {
    Alignment::find(sent, channel).unwrap_or_else(|| {
        panic!(
            "{label}: the channel's {:.3} s cannot hold the {:.3} s of speech",
            seconds(channel.len()),
            seconds(sent.len())
        )
    })
}

/// Asserts that `channel`'s loudness follows `sent`'s.
fn assert_envelope_kept(label: &str, sent: &[f64], channel: &[f64]) -> EnvelopeMatch {
    let Some(found) = EnvelopeMatch::find(sent, channel) else {
        panic!(
            "{label}: the channel's {:.3} s cannot hold the {:.3} s of speech",
            seconds(channel.len()),
            seconds(sent.len())
        );
    };
    eprintln!(
        "{label}: found at {:.3} s, envelope correlation {:.4} (at least \
         {MIN_ENVELOPE_CORRELATION}), gain {:.3}",
        seconds(found.offset),
        found.correlation,
        found.gain
    );
    assert!(
        found.correlation >= MIN_ENVELOPE_CORRELATION,
        "{label}: envelope correlation {:.4} is below {MIN_ENVELOPE_CORRELATION}",
        found.correlation
    );
    found
}

/// Asserts that speech sits on the recording's timeline where it was said:
/// sample 0 is the answer, and a phone plays its microphone file from then on.
fn assert_starts_after_lead(label: &str, sent: &Speech, offset: usize) {
    let audio_start = seconds(offset) - seconds(sent.voiced.start);
    eprintln!("{label}: the phone's audio starts {audio_start:+.3} s after sample 0");
    assert!(
        AUDIO_START_SECONDS.contains(&audio_start),
        "{label}: the phone's audio starts {audio_start:+.3} s after sample 0, outside \
         {AUDIO_START_SECONDS:?}: is sample 0 the answer?"
    );
}

/// Asserts that `channel`'s loudness does not follow the other party's speech.
fn assert_no_envelope_leak(label: &str, other: &[f64], channel: &[f64], other_offset: usize) {
    let leak = EnvelopeMatch::at(other, channel, other_offset).correlation;
    eprintln!("{label}: envelope correlation with the other party's speech {leak:+.4}");
    assert!(
        leak.abs() < MAX_ENVELOPE_LEAK,
        "{label}: the other party's speech leaks into the channel: envelope correlation \
         {leak:.4}"
    );
}

/// Asserts that the other party's speech is not in `channel`, beside its own.
fn assert_no_crosstalk(label: &str, channel: &[f64], own: (&[f64], usize), other: (&[f64], usize)) {
    let crosstalk = crosstalk_db(channel, own, other);
    eprintln!("{label}: the other party's speech is in it at {crosstalk:.1} dB");
    assert!(
        crosstalk <= MAX_CROSSTALK_DB,
        "{label}: the other party's speech leaks into the channel at {crosstalk:.1} dB"
    );
}

/// Asserts that the metadata holds one hold, by the practice, when it was typed.
fn assert_hold_event(metadata: &RecordingMetadata, typed: HoldTimes) {
    eprintln!("events in the recording: {:?}", metadata.events);
    let holds: Vec<&CallEvent> = metadata
        .events
        .iter()
        .filter(|event| matches!(event.kind, EventKind::Hold { .. }))
        .collect();
    let [hold] = holds.as_slice() else {
        panic!("one hold should be in the events: {:?}", metadata.events);
    };
    let EventKind::Hold { duration_ms } = hold.kind else {
        unreachable!("filtered to holds");
    };
    let typed_at = typed.hold_ms - metadata.start_ms;
    let typed_for = typed.resume_ms - typed.hold_ms;
    let at_ms = i64::try_from(hold.at_ms).expect("a call shorter than 290 million years");
    let for_ms = duration_ms.and_then(|ms| i64::try_from(ms).ok());
    assert_eq!(hold.party, Party::Practice, "the PBX phone held: {hold:?}");
    assert!(
        (at_ms - typed_at).abs() <= MAX_HOLD_EVENT_ERROR_MS
            && for_ms.is_some_and(|ms| (ms - typed_for).abs() <= MAX_HOLD_EVENT_ERROR_MS),
        "hold typed at {typed_at} ms for {typed_for} ms, recorded as {hold:?}"
    );
}

/// When `/hold` and `/resume` were typed, in Unix milliseconds.
#[derive(Debug, Clone, Copy)]
struct HoldTimes {
    hold_ms: i64,
    resume_ms: i64,
}

impl HoldTimes {
    /// The two moments as samples of the recording, whose sample 0 is the answer.
    fn on_timeline(self, metadata: &RecordingMetadata) -> HoldSpan {
        let at = |ms: i64| samples((ms - metadata.start_ms) as f64 / 1000.0);
        let span = HoldSpan {
            hold: at(self.hold_ms),
            resume: at(self.resume_ms),
        };
        eprintln!(
            "hold typed at {:.3} s, resume at {:.3} s of the recording",
            seconds(span.hold),
            seconds(span.resume)
        );
        span
    }
}

/// Where on the recording's timeline `/hold` and `/resume` were typed.
#[derive(Debug, Clone, Copy)]
struct HoldSpan {
    hold: usize,
    resume: usize,
}

/// Asserts that the held party's speech before the hold is intact, and returns
/// where the recording puts the first sample of its microphone file.
fn assert_speech_before_hold(sent: &Speech, left: &[f64], hold: &HoldSpan) -> isize {
    let end = (hold.hold - samples(REINVITE_SECONDS)).min(sent.samples.len());
    let before = &sent.samples[sent.voiced.start..end];
    let found = assert_waveform_kept("left before the hold", before, left);
    found.offset as isize - sent.voiced.start as isize
}

/// Asserts that the held party's channel is silent through the hold, while its
/// microphone file kept speaking.
fn assert_held_party_silent(
    sent: &Speech,
    left: &[f64],
    right: &[f64],
    hold: &HoldSpan,
    shift: isize,
) {
    let held = hold.hold + samples(REINVITE_SECONDS)..hold.resume;
    let microphone = unshifted(held.start, shift)..unshifted(held.end, shift);
    let speech_level = rms(sent.voiced());
    let sent_level = rms(&sent.samples[microphone]);
    let left_level = rms(&left[held.clone()]);
    let right_level = rms(&right[held.clone()]);
    eprintln!(
        "hold, {:.3} s to {:.3} s: trunk phone's microphone at {:+.1} dB of its speech, \
         left at {:+.1} dB, right (the holding PBX phone) at {:+.1} dB",
        seconds(held.start),
        seconds(held.end),
        decibels(sent_level / speech_level),
        decibels(left_level / speech_level),
        decibels(right_level / speech_level),
    );
    assert!(
        sent_level > speech_level / 10.0,
        "the test's speech should go on through the hold, so that silence means something"
    );
    assert!(
        decibels(left_level / speech_level) <= -MIN_HOLD_SILENCE_DB,
        "the held party's channel is not silent on hold"
    );
}

/// Asserts that the held party's speech after the resume is intact, aligned on
/// its own in the recording after the resume.
fn assert_speech_after_resume(sent: &Speech, left: &[f64], hold: &HoldSpan, shift: isize) {
    let resumed = hold.resume + samples(REINVITE_SECONDS);
    let microphone = unshifted(resumed, shift);
    let after = &sent.samples[microphone..sent.voiced.end];
    let found = assert_waveform_kept("left after the resume", after, &left[hold.resume..]);
    let drift = seconds(found.offset) - seconds(resumed - hold.resume);
    eprintln!(
        "after the resume the speech is {drift:+.3} s from where it would be had the call \
         not been held"
    );
    assert!(
        drift.abs() <= MAX_RESUME_DRIFT_SECONDS,
        "the hold was not recorded as silence of its length: the speech after it is \
         {drift:+.3} s off"
    );
}

/// The microphone file's sample that the recording has at `at`.
fn unshifted(at: usize, shift: isize) -> usize {
    at.checked_add_signed(-shift)
        .expect("the microphone file started before the recording's sample")
}

/// The measures of support/audio.rs on signals made up for the purpose.
mod analysis {
    use super::support::audio::{
        correlation_at, crosstalk_db, decibels, rms, to_8khz, Alignment, EnvelopeMatch,
        WindowMeasures, SAMPLE_RATE, WINDOW,
    };

    /// Noise low-passed to sound like speech's spectrum, in bursts like syllables.
    fn speechlike(seed: u64, length: usize) -> Vec<f64> {
        let mut state = seed;
        let mut smoothed = 0.0;
        (0..length)
            .map(|index| {
                smoothed = 0.7 * smoothed + 0.3 * noise(&mut state);
                let syllable = (index as f64 * std::f64::consts::PI / 1200.0).sin().abs();
                8000.0 * smoothed * (0.1 + syllable)
            })
            .collect()
    }

    /// A uniform sample in [-1, 1) from a xorshift generator.
    fn noise(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    #[test]
    fn an_exact_copy_has_correlation_one_in_every_window() {
        let sent = speechlike(1, 3 * SAMPLE_RATE);
        let windows = WindowMeasures::measure(&sent, &sent, 0);
        assert!(windows.correlations.len() > 20, "{windows:?}");
        assert!(windows.correlations.iter().all(|c| (c - 1.0).abs() < 1e-9));
        assert!(windows.median_snr_db() > 100.0, "{windows:?}");
    }

    #[test]
    fn a_delayed_copy_is_found_at_its_delay() {
        let sent = speechlike(2, 3 * SAMPLE_RATE);
        let delay = 4321;
        let mut recorded = speechlike(3, delay);
        recorded.iter_mut().for_each(|sample| *sample *= 0.01);
        recorded.extend(sent.iter().map(|sample| 0.5 * sample));
        recorded.extend(vec![0.0; SAMPLE_RATE]);

        let found = Alignment::find(&sent, &recorded).expect("long enough");
        assert_eq!(found.offset, delay);
        assert!((found.gain - 0.5).abs() < 1e-6, "{found:?}");
        let envelope = EnvelopeMatch::find(&sent, &recorded).expect("long enough");
        assert_eq!(envelope.offset, delay);
        assert!(envelope.correlation > 0.999_999, "{envelope:?}");
    }

    #[test]
    fn windows_slide_by_two_milliseconds_and_no_more() {
        let sent = speechlike(4, 2 * SAMPLE_RATE);
        let within = [vec![0.0; 16], sent.clone()].concat();
        let beyond = [vec![0.0; 40], sent.clone()].concat();
        let slid = WindowMeasures::measure(&sent, &within, 0);
        let too_far = WindowMeasures::measure(&sent, &beyond, 0);
        assert_eq!(slid.share_at_least(0.999_999), 1.0, "{slid:?}");
        assert!(too_far.share_at_least(0.99) < 0.5, "{too_far:?}");
    }

    #[test]
    fn noise_30_db_below_the_speech_measures_30_db() {
        let sent: Vec<f64> = speechlike(5, 3 * SAMPLE_RATE);
        let mut state = 6;
        let recorded: Vec<f64> = sent
            .chunks(WINDOW)
            .flat_map(|window| {
                let level = rms(window) * 10f64.powf(-30.0 / 20.0) * 3f64.sqrt();
                let noise: Vec<f64> = window.iter().map(|_| level * noise(&mut state)).collect();
                window
                    .iter()
                    .zip(noise)
                    .map(|(s, n)| s + n)
                    .collect::<Vec<_>>()
            })
            .collect();

        let windows = WindowMeasures::measure(&sent, &recorded, 0);
        let median = windows.median_snr_db();
        assert!((median - 30.0).abs() < 0.5, "median SNR {median:.2} dB");
        assert_eq!(windows.share_at_least(0.99), 1.0, "{windows:?}");
    }

    #[test]
    fn unrelated_speech_hardly_correlates() {
        let one = speechlike(7, 3 * SAMPLE_RATE);
        let other = speechlike(8, 3 * SAMPLE_RATE);
        let correlation = correlation_at(&one, &other, 0);
        assert!(correlation.abs() < 0.05, "{correlation}");
    }

    #[test]
    fn crosstalk_is_measured_beside_the_channels_own_speech() {
        let own = speechlike(9, 3 * SAMPLE_RATE);
        let other = speechlike(10, 3 * SAMPLE_RATE);
        let (own_offset, other_offset) = (400, 1300);
        let mut clean = vec![0.0; 4 * SAMPLE_RATE];
        own.iter()
            .enumerate()
            .for_each(|(at, s)| clean[own_offset + at] += 0.9 * s);
        let mut leaky = clean.clone();
        other
            .iter()
            .enumerate()
            .for_each(|(at, s)| leaky[other_offset + at] += 0.01 * s);

        let found =
            |recorded: &[f64]| crosstalk_db(recorded, (&own, own_offset), (&other, other_offset));
        assert!(found(&clean) < -100.0, "{}", found(&clean));
        assert!((found(&leaky) + 40.0).abs() < 0.01, "{}", found(&leaky));
    }

    #[test]
    fn decimating_to_8khz_keeps_speech_band_and_drops_the_rest() {
        let tone = |hertz: f64, rate: f64, length: usize| -> Vec<f64> {
            let step = 2.0 * std::f64::consts::PI * hertz / rate;
            (0..length).map(|n| (step * n as f64).sin()).collect()
        };
        let kept = to_8khz(&tone(1000.0, 16000.0, 32000), 16000);
        let expected = tone(1000.0, 8000.0, 16000);
        let middle = 1000..15000;
        let correlation = correlation_at(&expected[middle.clone()], &kept[middle.clone()], 0);
        assert!(correlation > 0.9999, "{correlation}");
        assert!((rms(&kept[middle.clone()]) - rms(&expected)).abs() < 0.01);

        let dropped = to_8khz(&tone(6000.0, 16000.0, 32000), 16000);
        let level = decibels(rms(&dropped[middle]) / rms(&expected));
        assert!(level < -60.0, "a 6 kHz tone comes through at {level:.1} dB");
    }
}

/// What the announcement says.
const ANNOUNCEMENT: &str = "Calls to the surgery are recorded for training and quality purposes.";

/// The announcement as an 8 kHz mono 16-bit WAV file with no silence around it.
fn announcement_file(dir: &TempDir) -> (std::path::PathBuf, Vec<f64>) {
    let spoken = dir.path().join("announcement-espeak.wav");
    let path = dir.path().join("announcement.wav");
    let espeak = Command::new(tool("espeak-ng", "espeak-ng"))
        .arg("-w")
        .arg(&spoken)
        .arg(ANNOUNCEMENT)
        .status()
        .expect("espeak-ng runs");
    assert!(espeak.success());
    let sox = Command::new(tool("sox", "sox"))
        .arg(&spoken)
        .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(&path)
        .args(["gain", "-n", "-3"])
        .status()
        .expect("sox runs");
    assert!(sox.success());
    let samples = Wav::read(&path).channel_at_8khz(0);
    (path, samples)
}

#[test]
fn the_announcement_is_heard_by_the_external_party_first_and_is_in_the_recording() {
    let dir = TempDir::new("recording-announcement");
    let (path, announcement) = announcement_file(&dir);
    let announcement_seconds = seconds(announcement.len());
    // The PBX phone speaks once the announcement is over: until then the parties
    // are held apart and would not hear each other.
    let pbx_lead = Duration::from_secs_f64(announcement_seconds + 1.5);
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, pbx_lead);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_SENTENCE, LEAD);
    let mut config = TestConfig::on_free_ports(&dir);
    config.format = Some("wav".to_owned());
    config.extra = format!("[policy]\nannouncement = \"{}\"\n", path.display());

    let call = Call::dial(&dir, &config, Codec::Pcmu, &pbx, &trunk);
    let answered = call.wait_for_audio();
    let heard = pbx.end_seconds().max(trunk.end_seconds()) + AFTER_SPEECH_SECONDS;
    call.wait_until_heard(answered, heard);
    let heard_by_trunk = call.trunk.heard_at_8khz();
    let recording = call.finish(&config);

    let found = Alignment::find(&announcement, &heard_by_trunk).expect("room for the announcement");
    eprintln!("announcement heard by the external party: {found:?}");
    assert!(found.windowed_correlation >= 0.9, "{found:?}");
    assert!(
        seconds(found.offset) < 1.5,
        "it plays at the answer: {found:?}"
    );
    let after = Alignment::find(pbx.voiced(), &heard_by_trunk).expect("room for the speech");
    assert!(
        after.windowed_correlation >= 0.9,
        "the practice is heard after it: {after:?}"
    );

    assert_complete(&recording.metadata, "audio/wav");
    let wav = stereo_wav(&recording, 8000);
    let right = wav.channel_at_8khz(RIGHT);
    let recorded = Alignment::find(&announcement, &right).expect("room in the recording");
    eprintln!("announcement in the recording's practice channel: {recorded:?}");
    assert!(recorded.windowed_correlation >= 0.9, "{recorded:?}");
    assert!(seconds(recorded.offset) < 1.0, "{recorded:?}");
}

/// An inbound call with the announcement; `mode` is `announcement_inbound`.
fn inbound_announcement_config(dir: &TempDir, path: &Path, mode: &str) -> TestConfig {
    let mut config = TestConfig::on_free_ports(dir);
    config.format = Some("wav".to_owned());
    config.extra = format!(
        "[policy]\nannouncement = \"{}\"\nannouncement_inbound = \"{mode}\"\n",
        path.display()
    );
    config
}

/// Where the announcement starts in what the caller heard, asserting that it is
/// there, whole, at the start.
fn assert_heard_first(announcement: &[f64], heard: &[f64]) -> usize {
    let found = Alignment::find(announcement, heard).expect("room for the announcement");
    eprintln!("announcement heard by the inbound caller: {found:?}");
    assert!(found.windowed_correlation >= 0.9, "{found:?}");
    assert!(seconds(found.offset) < 1.0, "it plays at once: {found:?}");
    found.offset
}

/// The practice's sentence, whole, after `after` in what the caller heard.
fn assert_practice_heard_after(pbx: &Speech, heard: &[f64], after: usize) {
    let found = Alignment::find(pbx.voiced(), heard).expect("room for the speech");
    eprintln!("the practice heard by the inbound caller: {found:?}");
    assert!(found.windowed_correlation >= 0.9, "{found:?}");
    assert!(
        found.offset > after,
        "the practice is heard after it: {found:?}"
    );
}

/// The announcement at the start of the recording's practice channel.
fn assert_announcement_recorded(recording: &Recording, announcement: &[f64]) {
    assert_complete(&recording.metadata, "audio/wav");
    let right = stereo_wav(recording, 8000).channel_at_8khz(RIGHT);
    let recorded = Alignment::find(announcement, &right).expect("room in the recording");
    eprintln!("announcement in the inbound recording's practice channel: {recorded:?}");
    assert!(recorded.windowed_correlation >= 0.9, "{recorded:?}");
    assert!(seconds(recorded.offset) < 1.0, "{recorded:?}");
}

#[test]
fn an_inbound_caller_hears_the_announcement_while_the_practice_rings_and_it_is_recorded() {
    let dir = TempDir::new("recording-announcement-inbound");
    let (path, announcement) = announcement_file(&dir);
    // The PBX phone answers at once, and speaks once the parties are joined.
    let pbx_lead = Duration::from_secs_f64(seconds(announcement.len()) + 1.5);
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, pbx_lead);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_SENTENCE, pbx_lead);
    let config = inbound_announcement_config(&dir, &path, "with-ringing");

    let call = Call::dial_from(Dialler::Trunk, &dir, &config, Codec::Pcmu, (&pbx, &trunk));
    let answered = call.wait_for_audio();
    let heard = pbx.end_seconds().max(trunk.end_seconds()) + AFTER_SPEECH_SECONDS;
    call.wait_until_heard(answered, heard);
    let heard_by_caller = call.trunk.heard_at_8khz();
    let recording = call.finish(&config);

    let start = assert_heard_first(&announcement, &heard_by_caller);
    assert_practice_heard_after(&pbx, &heard_by_caller, start + announcement.len());
    assert_announcement_recorded(&recording, &announcement);
}

#[test]
fn an_inbound_caller_hears_ringing_after_the_announcement_until_the_practice_answers() {
    let dir = TempDir::new("recording-announcement-inbound-late");
    let (path, announcement) = announcement_file(&dir);
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, LEAD);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_SENTENCE, LEAD);
    let config = inbound_announcement_config(&dir, &path, "with-ringing");

    let call = Call::dial_from(
        Dialler::TrunkToRingingPhone,
        &dir,
        &config,
        Codec::Pcmu,
        (&pbx, &trunk),
    );
    let ringing = Duration::from_secs(4);
    thread::sleep(Duration::from_secs_f64(seconds(announcement.len())) + ringing);
    call.pbx.accept();
    let answered = call.wait_for_audio();
    let heard = pbx.end_seconds().max(trunk.end_seconds()) + AFTER_SPEECH_SECONDS;
    call.wait_until_heard(answered, heard);
    let heard_by_caller = call.trunk.heard_at_8khz();
    let recording = call.finish(&config);

    let start = assert_heard_first(&announcement, &heard_by_caller);
    let end = start + announcement.len();
    // The first second of the cadence: 0.4 s of tone, 0.2 s off, 0.4 s of tone.
    let burst = |from: f64, to: f64| &heard_by_caller[end + samples(from)..end + samples(to)];
    for (from, to) in [(0.05, 0.35), (0.65, 0.95)] {
        let share = ringing_tone_share(burst(from, to));
        assert!(
            share > 0.9,
            "ringing tone from {from} s to {to} s: {share:.3}"
        );
    }
    let (tone, gap) = (rms(burst(0.05, 0.35)), rms(burst(0.45, 0.55)));
    assert!(
        gap < tone / 100.0,
        "the cadence's gap is silent: {gap} against {tone}"
    );
    assert_practice_heard_after(&pbx, &heard_by_caller, end + samples(ringing.as_secs_f64()));
    assert_announcement_recorded(&recording, &announcement);
}

#[test]
fn an_inbound_call_is_offered_to_the_practice_after_the_announcement_when_so_configured() {
    let dir = TempDir::new("recording-announcement-before-offer");
    let (path, announcement) = announcement_file(&dir);
    let pbx = Speech::generate(&dir, "pbx", PBX_SENTENCE, LEAD);
    let trunk = Speech::generate(&dir, "trunk", TRUNK_SENTENCE, LEAD);
    let config = inbound_announcement_config(&dir, &path, "before-offer");

    let dialled = Instant::now();
    let call = Call::dial_from(Dialler::Trunk, &dir, &config, Codec::Pcmu, (&pbx, &trunk));
    let offered = wait_until(CALL_TIMEOUT, || call.pbx.log().contains("answering call"));
    assert!(offered, "the PBX phone was never offered the call");
    let offered_after = dialled.elapsed().as_secs_f64();
    let answered = call.wait_for_audio();
    let heard = pbx.end_seconds().max(trunk.end_seconds()) + AFTER_SPEECH_SECONDS;
    call.wait_until_heard(answered, heard);
    let heard_by_caller = call.trunk.heard_at_8khz();
    let recording = call.finish(&config);

    let length = seconds(announcement.len());
    eprintln!("the PBX was offered the call {offered_after:.2} s after dialling; the announcement lasts {length:.2} s");
    assert!(offered_after >= length, "offered during the announcement");
    let start = assert_heard_first(&announcement, &heard_by_caller);
    assert_practice_heard_after(&pbx, &heard_by_caller, start + announcement.len());
    assert_announcement_recorded(&recording, &announcement);
}

/// How much of `samples`' power is at 400 Hz and 450 Hz, the UK ringing tone.
fn ringing_tone_share(samples: &[f64]) -> f64 {
    let power_at = |hertz: f64| {
        let step = 2.0 * std::f64::consts::PI * hertz / 8000.0;
        let (re, im) = samples
            .iter()
            .enumerate()
            .fold((0.0, 0.0), |(re, im), (n, &x)| {
                (
                    re + x * (step * n as f64).cos(),
                    im + x * (step * n as f64).sin(),
                )
            });
        2.0 * (re * re + im * im) / samples.len() as f64
    };
    let total: f64 = samples.iter().map(|x| x * x).sum();
    (power_at(400.0) + power_at(450.0)) / total.max(f64::MIN_POSITIVE)
}
