//! A call between two baresip phones through callvault, checked by ear.
//!
//! Each phone's microphone plays a sentence spoken by espeak-ng, and each phone
//! records what it hears. The test then looks for each sentence in the other
//! phone's recording by cross-correlation: G.711 is lossy and the audio arrives
//! later than it left, so the comparison is of waveforms aligned in time, not of
//! bytes.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::audio::{read_pcm16, Alignment, Speech, SAMPLE_RATE};
use support::baresip::{Phone, PhoneProcess};
use support::callvault::Callvault;
use support::config::TestConfig;
use support::temp::TempDir;
use support::wait_until;

const CALLEE: &str = "07700900123";

/// Silence before each sentence, so that no word is lost while the call connects.
const LEAD: Duration = Duration::from_millis(500);

/// How long the phones may take to connect and hear every word.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a phone may take to hang up and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The least normalised cross-correlation that counts as the same speech.
/// G.711 alone keeps it above 0.99; unrelated speech stays below 0.5.
const MIN_CORRELATION: f64 = 0.9;

/// The most a phone's own sentence may correlate with what it hears.
const MAX_ECHO_CORRELATION: f64 = 0.5;

#[test]
fn speech_crosses_callvault_both_ways_between_two_baresip_phones() {
    let dir = TempDir::new("baresip");
    let config = TestConfig::on_free_ports(&dir);
    let _callvault = talk_both_ways(&dir, &config);
}

/// The practice's policy: a call on a personal line is carried as any other,
/// and nothing of it is kept.
#[test]
fn a_personal_line_call_between_baresip_phones_is_heard_both_ways_and_not_recorded() {
    let dir = TempDir::new("baresip-personal");
    let mut config = TestConfig::on_free_ports(&dir);
    config.extra = "[policy]\npersonal_extensions = [\"205\"]\n".to_owned();
    let mut callvault = talk_both_ways(&dir, &config);
    callvault.wait_for_log("call ended", Duration::from_secs(10));
    let log = callvault.output();
    assert!(log.contains("call excluded from recording"), "{log}");
    assert!(
        log.contains("tapped: 0") && !log.contains("recording started"),
        "{log}"
    );
    assert!(
        !log.contains(CALLEE) && !log.contains("7700900123"),
        "{log}"
    );
    let recordings = config.data_dir.join("recordings");
    let files: Vec<_> = std::fs::read_dir(recordings).map_or(Vec::new(), |d| d.collect());
    assert!(files.is_empty(), "{files:?}");
}

/// Puts a call from the PBX phone (extension 205) to the trunk phone through a
/// callvault with `config`, each phone speaking a sentence; asserts each heard
/// the other's and not its own. Returns the callvault, still running.
fn talk_both_ways(dir: &TempDir, config: &TestConfig) -> Callvault {
    let pbx_speech = Speech::generate(
        dir,
        "pbx",
        "The surgery opens at eight in the morning on weekdays.",
        LEAD,
    );
    let trunk_speech = Speech::generate(
        dir,
        "trunk",
        "Please bring your repeat prescription form with you.",
        LEAD,
    );
    let callvault = Callvault::start(config, dir);
    let mut trunk = Phone::new("trunk", config.trunk_peer, CALLEE, &trunk_speech.path)
        .auto_answer()
        .spawn(dir);
    let mut pbx = Phone::new("pbx", config.pbx_peer, "205", &pbx_speech.path).spawn(dir);

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
    callvault
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
        .received_recordings()
        .pop()
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
