//! The daemon and the data directory: the index checked at start, `reindex`, and one
//! daemon per data directory.

mod support;

use std::time::Duration;

use callvault_store::keys::Keyring;
use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus};
use support::callvault::{callvault_command, Callvault};
use support::config::TestConfig;
use support::recordings::{self, End};
use support::temp::TempDir;

/// Writes one recording into the data directory, as the recorder will; `Crash` leaves
/// the unfinished `.part` file a killed daemon would.
fn write_recording(config: &TestConfig, end: End) {
    let meta = RecordingMetadata {
        id: RecordingId("00112233445566778899aabbccddeeff".into()),
        start_ms: 1_796_000_000_000,
        end_ms: None,
        direction: CallDirection::Outbound,
        caller: "205".into(),
        callee: "07700900123".into(),
        extension: Some("205".into()),
        media_type: "audio/wav".into(),
        status: RecordingStatus::Recording,
        status_reason: None,
        lost_packets: 0,
        end_reason: None,
        events: Vec::new(),
    };
    recordings::write(&config.data_dir, meta, end);
}

fn text(output: &std::process::Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text
}

#[test]
fn daemon_stops_on_a_missing_index_until_reindex_rebuilds_it() {
    let dir = TempDir::new("store-reindex");
    let config = TestConfig::on_free_ports(&dir);
    let path = config.write(&dir);
    let path = path.to_str().expect("UTF-8 path");
    let mut first = Callvault::start(&config, &dir);
    first.signal("TERM");
    first.wait_for_exit(support::STOP_TIMEOUT);
    write_recording(&config, End::Finish);
    std::fs::remove_dir_all(config.data_dir.join("index")).expect("the index existed");

    let mut refused = Callvault::spawn(&["run", "--config", path], dir.path());
    assert!(!refused.wait_for_exit(support::STOP_TIMEOUT).success());
    assert!(
        refused.output().contains("callvault reindex"),
        "{}",
        refused.output()
    );

    let reindex = callvault_command(&["reindex", "--config", path, "--operator", "IT support"]);
    assert!(reindex.status.success(), "{}", text(&reindex));
    assert!(
        text(&reindex).contains("indexed 1 recordings"),
        "{}",
        text(&reindex)
    );
    let audit = std::fs::read_to_string(config.data_dir.join("audit.log")).expect("audit log");
    assert!(
        audit.contains("\"reindex\"") && audit.contains("IT support"),
        "{audit}"
    );

    let started = Callvault::start(&config, &dir);
    drop(started);
}

#[test]
fn a_second_daemon_on_the_same_data_is_refused_in_one_line_naming_it() {
    let dir = TempDir::new("store-twice");
    let config = TestConfig::on_free_ports(&dir);
    let running = Callvault::start(&config, &dir);

    let other = TempDir::new("store-twice-other");
    let mut second_config = TestConfig::on_free_ports(&other);
    second_config.data_dir = config.data_dir.clone();
    let path = second_config.write(&other);
    let mut second = Callvault::spawn(&["run", "--config", path.to_str().unwrap()], other.path());
    assert_eq!(second.wait_for_exit(support::STOP_TIMEOUT).code(), Some(1));
    // The pipes are read on threads of their own, which may lag the exit.
    support::wait_until(Duration::from_secs(5), || second.output().ends_with('\n'));
    let output = second.output();
    let expected = format!(
        "error: the data directory {} is in use by another callvault (pid {})",
        config.data_dir.display(),
        running.pid()
    );
    assert!(output.starts_with(&expected), "{output}");
    assert_eq!(output.lines().count(), 1, "{output}");
}

#[test]
fn keys_rewrap_moves_recordings_to_the_new_key_and_they_still_play() {
    let dir = TempDir::new("store-rewrap");
    let config = TestConfig::on_free_ports(&dir);
    let path = config.write(&dir);
    let path = path.to_str().expect("UTF-8 path");
    write_recording(&config, End::Finish);
    let operator = ["--operator", "GM"];
    let rotate = callvault_command(
        &[
            &["keys", "rotate", "--config", path, "--reason", "annual"][..],
            &operator,
        ]
        .concat(),
    );
    assert!(rotate.status.success(), "{}", text(&rotate));
    let rewrap = callvault_command(
        &[
            &[
                "keys",
                "rewrap",
                "--config",
                path,
                "--reason",
                "retire key 1",
            ][..],
            &operator,
        ]
        .concat(),
    );
    assert!(rewrap.status.success(), "{}", text(&rewrap));
    assert!(
        text(&rewrap).contains("rewrapped 1 recordings to key 00000002"),
        "{}",
        text(&rewrap)
    );

    let keyring = Keyring::load(&config.data_dir.join("master.key")).expect("keys");
    let file = config
        .data_dir
        .join("recordings/00112233445566778899aabbccddeeff.cvr");
    let header = callvault_store::file::read_header(&file).expect("a header");
    assert_eq!(header.key_id().to_string(), "00000002");
    let audio = callvault_store::file::read_recording(&file, &keyring)
        .expect("still plays")
        .audio;
    assert_eq!(audio, b"audio");
}

#[test]
fn daemon_recovers_a_recording_a_crash_left_unfinished_and_audits_it() {
    let dir = TempDir::new("store-recover");
    let config = TestConfig::on_free_ports(&dir);
    config.write(&dir);
    write_recording(&config, End::Crash);

    let daemon = Callvault::start(&config, &dir);
    assert!(
        daemon
            .output()
            .contains("recording recovered after a crash"),
        "{}",
        daemon.output()
    );
    let recordings = config.data_dir.join("recordings");
    assert!(recordings
        .join("00112233445566778899aabbccddeeff.cvr")
        .exists());
    let audit = std::fs::read_to_string(config.data_dir.join("audit.log")).expect("audit log");
    assert!(
        audit.contains("\"recover\"") && audit.contains("callvault daemon"),
        "{audit}"
    );
}
