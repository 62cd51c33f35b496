//! A full disk and a read-only recordings directory, through the binary.
//!
//! Calls must go on with their audio both ways whatever the disk does; the
//! recordings that cannot be written are marked failed (or counted missed when
//! no file could be made at all), an `error` line and the metrics say so, and
//! recording resumes by itself once the disk takes writes again. The tests
//! mount file systems, so they run as root (see `support::mount`). Run with
//! `--nocapture` to see the figures.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a failed unwrap is a failed test, and the printed figures are its report"
)]

mod support;

#[allow(dead_code, reason = "the tests read some of the names")]
#[path = "../src/metrics/names.rs"]
mod names;

use std::net::SocketAddr;
use std::time::Duration;

use support::callvault::Callvault;
use support::config::TestConfig;
use support::metrics::{labelled, scrape, value};
use support::mount::{fill, Mount};
use support::rtp::{RtpCall, Stream};
use support::temp::TempDir;

/// How long a finished call's recording may take to be finished and counted.
const SETTLE: Duration = Duration::from_secs(15);

/// A data directory of 16 MiB: room for the index, the key and a few calls.
const DATA_DIR_KIB: u64 = 16 * 1024;

/// The number of recordings that ended with `outcome`, as exported.
fn recorded(config: &TestConfig, outcome: &str) -> f64 {
    let series = labelled(names::CALLS_RECORDED, "outcome", outcome);
    value(&scrape(config), &series)
}

/// Waits until `outcome` has been counted `count` times.
fn wait_for_outcome(config: &TestConfig, outcome: &str, count: f64) {
    let counted = support::wait_until(SETTLE, || recorded(config, outcome) == count);
    assert!(counted, "{outcome} is not {count}:\n{}", scrape(config));
}

/// Waits until `count` recordings have ended failed or missed, together.
fn wait_for_unrecorded(config: &TestConfig, count: f64) {
    let unrecorded = || recorded(config, "failed") + recorded(config, "missed");
    let counted = support::wait_until(SETTLE, || unrecorded() == count);
    assert!(
        counted,
        "failed + missed is not {count}:\n{}",
        scrape(config)
    );
}

/// A call from the PBX to the trunk whose audio must cross both ways whole.
fn call(
    config: &TestConfig,
    label: &str,
    stream: Stream,
    during: impl FnOnce([SocketAddr; 2]) + Send,
) {
    let dir = TempDir::new(label);
    let addresses = (config.pbx_peer, config.trunk_peer, config.pbx_listen);
    let call = RtpCall::run_with(&dir, addresses, ("201", "07700900123"), stream, during);
    call.assert_relayed_unchanged();
    assert!(
        call.uac.succeeded() && call.uas.succeeded(),
        "{}\n{}",
        call.uac.report(),
        call.uas.report()
    );
    println!(
        "{label}: {} frames each way relayed unchanged, call set up and hung up",
        call.frames.len()
    );
}

/// WAV, so that no transcoding after a call competes for the little space left.
fn wav_config(dir: &TempDir) -> TestConfig {
    let mut config = TestConfig::on_free_ports(dir);
    config.format = Some("wav".to_owned());
    config
}

#[test]
fn a_full_disk_fails_recordings_not_calls_and_recording_resumes_when_space_returns() {
    let dir = TempDir::new("disk-full");
    let config = wav_config(&dir);
    let _data = Mount::tmpfs(&config.data_dir, DATA_DIR_KIB);
    let mut callvault = Callvault::start(&config, &dir);

    // The disk fills two seconds into a six-second call.
    let filler = std::sync::Mutex::new(None);
    call(&config, "filled-mid-call", Stream::real_time(6), |_| {
        std::thread::sleep(Duration::from_secs(2));
        *filler.lock().unwrap() = Some(fill(&config.data_dir));
    });
    let (filler, filled) = filler.into_inner().unwrap().unwrap();
    println!("filled the data directory with {} KiB", filled / 1024);
    // Closed as failed if the file system found room for its last segment, or
    // left as a .part for the next start's recovery if not: which of the two
    // depends on the bytes the filler left, so either counts.
    wait_for_unrecorded(&config, 1.0);
    callvault.wait_for_log("recording failed; the call goes on unrecorded", SETTLE);

    // A call that starts on a full disk gets no file at all.
    call(&config, "on-a-full-disk", Stream::SHORT, |_| {});
    wait_for_unrecorded(&config, 2.0);
    callvault.wait_for_log("no recording file could be made", SETTLE);

    std::fs::remove_file(filler).unwrap();
    call(&config, "space-returned", Stream::SHORT, |_| {});
    wait_for_outcome(&config, "complete", 1.0);
    let page = scrape(&config);
    println!(
        "recorded: complete {}, failed {}, missed {}",
        recorded(&config, "complete"),
        recorded(&config, "failed"),
        recorded(&config, "missed")
    );
    assert_eq!(value(&page, names::CALLS_ENDED), 3.0);
    assert!(callvault.is_running());
}

#[test]
fn a_read_only_recordings_directory_costs_recordings_not_calls_until_it_is_writable() {
    let dir = TempDir::new("disk-read-only");
    let config = wav_config(&dir);
    let mut callvault = Callvault::start(&config, &dir);
    let recordings = Mount::bind(&config.data_dir.join("recordings"));

    recordings.set_read_only(true);
    call(&config, "read-only", Stream::SHORT, |_| {});
    wait_for_outcome(&config, "missed", 1.0);
    callvault.wait_for_log("no recording file could be made", SETTLE);

    recordings.set_read_only(false);
    call(&config, "writable-again", Stream::SHORT, |_| {});
    wait_for_outcome(&config, "complete", 1.0);
    assert_eq!(recorded(&config, "failed"), 0.0);
    assert!(callvault.is_running());
}
