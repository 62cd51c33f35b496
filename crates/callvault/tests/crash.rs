//! A crash of the daemon in the middle of 50 recorded calls, through the binary.
//!
//! `kill -9` leaves every recording in progress as a `.part` file. The next start
//! must recover each as `partial`, with audio up to within a second of the kill
//! (docs/recording.md, "What a crash loses"), index it, and restore the PBX's
//! registration. Run with `--nocapture` to see the figures.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a failed unwrap is a failed test, and the printed figures are its report"
)]

mod support;

#[allow(dead_code, reason = "the test reads some of the names")]
#[path = "../src/metrics/names.rs"]
mod names;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use callvault_store::keys::Keyring;
use callvault_store::{RecordingMetadata, RecordingStatus};
use support::callvault::{callvault_command, Callvault};
use support::config::TestConfig;
use support::metrics::{scrape, value};
use support::ports::free_udp_port_block;
use support::sipp::Sipp;
use support::temp::TempDir;

/// Calls in progress at the kill, as issue 7 asks.
const CALLS: usize = 50;

/// The most audio a crash may lose (docs/recording.md).
const MAX_LOST: Duration = Duration::from_secs(1);

#[test]
fn kill_9_during_50_calls_recovers_every_recording_as_partial_and_keeps_the_registration() {
    let dir = TempDir::new("crash");
    let mut config = TestConfig::on_free_ports(&dir);
    // Four ports a call: RTP and RTCP on each side.
    config.media_port_min = free_udp_port_block(256);
    config.media_port_max = config.media_port_min + 255;
    let mut callvault = Callvault::start(&config, &dir);
    register(&config, &dir);

    let trunk = Sipp::uas("flows/uas_stream.xml", config.trunk_peer)
        .label("trunk")
        .media_ports(256)
        .timeout(Duration::from_secs(90))
        .args(&["-m", &CALLS.to_string()])
        .spawn(&dir);
    let pbx = Sipp::uac("flows/uac_stream.xml", config.pbx_peer, config.pbx_listen)
        .label("pbx")
        .media_ports(256)
        .timeout(Duration::from_secs(90))
        .args(&["-s", "07700900123", "-m", &CALLS.to_string()])
        .args(&["-l", &CALLS.to_string(), "-r", "25", "-d", "60000"])
        .spawn(&dir);

    let all_recording = || value(&scrape(&config), names::RECORDER_ACTIVE) == CALLS as f64;
    assert!(
        support::wait_until(Duration::from_secs(30), all_recording),
        "{CALLS} recordings never ran at once:\n{}",
        scrape(&config)
    );
    // Long enough for every call to have written segments of audio.
    std::thread::sleep(Duration::from_secs(3));
    let killed_ms = unix_ms_now();
    callvault.kill_hard();
    drop((pbx, trunk));
    let parts = files_with(&config.data_dir, "part");
    println!("killed at {killed_ms} ms with {} .part files", parts.len());
    assert_eq!(parts.len(), CALLS, "one unfinished file per call");

    let mut callvault = Callvault::start(&config, &dir);
    let log = callvault.output();
    let recovered = log.matches("recording recovered after a crash").count();
    assert_eq!(recovered, CALLS, "{log}");
    assert!(log.contains("registrations restored count=1"), "{log}");
    callvault.signal("TERM");
    callvault.wait_for_exit(support::STOP_TIMEOUT);

    check_recovered(&config, killed_ms);
    check_index_agrees_with_files(&config, &dir);
}

/// The PBX registers with the provider through callvault.
fn register(config: &TestConfig, dir: &TempDir) {
    let registrar = Sipp::uas("flows/uas_registrar.xml", config.trunk_peer)
        .label("registrar")
        .spawn(dir);
    let register = Sipp::uac("flows/uac_register.xml", config.pbx_peer, config.pbx_listen)
        .label("register")
        .args(&["-set", "caller", "205"])
        .run(dir);
    let registrar = registrar.wait();
    register.assert_success();
    registrar.assert_success();
}

/// Every recording is partial and ends within [`MAX_LOST`] of the kill.
fn check_recovered(config: &TestConfig, killed_ms: i64) {
    let keys = Keyring::load(&config.data_dir.join("master.key")).unwrap();
    let recordings: Vec<RecordingMetadata> = files_with(&config.data_dir, "cvr")
        .iter()
        .map(|path| callvault_store::file::read_metadata(path, &keys).unwrap())
        .collect();
    assert_eq!(recordings.len(), CALLS);
    assert!(files_with(&config.data_dir, "part").is_empty());
    let lost_ms: Vec<i64> = recordings
        .iter()
        .map(|metadata| {
            assert_eq!(metadata.status, RecordingStatus::Partial, "{metadata:?}");
            killed_ms - metadata.end_ms.expect("a recovered recording has an end")
        })
        .collect();
    let (least, most) = (lost_ms.iter().min(), lost_ms.iter().max());
    let mean = lost_ms.iter().sum::<i64>() as f64 / lost_ms.len() as f64;
    println!(
        "audio lost at the kill over {CALLS} recordings: least {least:?} ms, \
         mean {mean:.0} ms, most {most:?} ms"
    );
    let limit = i64::try_from(MAX_LOST.as_millis()).unwrap();
    for lost in lost_ms {
        // Negative would mean audio stamped after the kill: a clock error.
        assert!((-50..=limit).contains(&lost), "lost {lost} ms");
    }
}

/// `calls list` (the index) names exactly the recording files, and `verify`
/// authenticates every one.
fn check_index_agrees_with_files(config: &TestConfig, dir: &TempDir) {
    let path = config.write(dir);
    let config_arg = path.to_str().unwrap();
    let list = callvault_command(&[
        "calls",
        "list",
        "--json",
        "--reason",
        "crash test",
        "--operator",
        "test",
        "--config",
        config_arg,
    ]);
    assert!(list.status.success(), "{list:?}");
    let calls: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let indexed: BTreeSet<String> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|call| {
            assert_eq!(call["status"], "partial", "{call}");
            call["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let on_disk: BTreeSet<String> = files_with(&config.data_dir, "cvr")
        .iter()
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(indexed, on_disk, "the index and the files disagree");

    let verify = callvault_command(&["verify", "--config", config_arg]);
    let report = String::from_utf8_lossy(&verify.stdout);
    println!("callvault verify: {}", report.trim());
    assert!(verify.status.success(), "{verify:?}");
    assert!(
        report.contains(&format!("recordings: {CALLS} of {CALLS} verified")),
        "{report}"
    );
}

/// The recording files of `data_dir` ending in `.extension`.
fn files_with(data_dir: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let entries = std::fs::read_dir(data_dir.join("recordings")).unwrap();
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension() == Some(extension.as_ref()))
        .collect()
}

fn unix_ms_now() -> i64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    i64::try_from(since.unwrap().as_millis()).unwrap()
}
