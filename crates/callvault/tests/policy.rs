//! The recording policy through the real binary: excluded calls leave no trace.
//!
//! Each test puts a call with RTP both ways through callvault (SIPp for the
//! signalling, the test's own sockets for the audio) and then checks what the
//! issue asks of an excluded call: it completed with audio both ways; no copy of
//! a packet went to the recorder (`tapped: 0` in the call's log line); the data
//! directory holds no recording and no index entry for it; and the call's numbers
//! appear nowhere in the data directory or the logs. The log says which rule
//! excluded the call.

mod support;

use std::path::Path;
use std::time::Duration;

use support::callvault::{callvault_command, Callvault};
use support::config::TestConfig;
use support::rtp::RtpCall;
use support::temp::TempDir;

/// A patient's mobile, as the trunk presents it and as a person types it.
const PATIENT: &str = "07700900123";
const PATIENT_DIGITS: &str = "7700900123";

/// The practice's number that rings extension 205 in these tests.
const PERSONAL_DDI: &str = "01632960205";

/// How long a finished call's recording (if any) could take to appear.
const SETTLE: Duration = Duration::from_secs(2);

/// Personal extension 205 and its DDI, and an announcement, which an excluded
/// call must not hear: any packet of it would fail the relayed-unchanged check.
fn policy_config(dir: &TempDir) -> TestConfig {
    let announcement = dir.path().join("announcement.wav");
    let sox = std::process::Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(&announcement)
        .args(["synth", "1", "sine", "440"])
        .status()
        .expect("sox runs");
    assert!(sox.success());
    let mut config = TestConfig::on_free_ports(dir);
    config.extra = format!(
        "[policy]\npersonal_extensions = [\"205\"]\n\
         ddi_extensions = {{ \"{PERSONAL_DDI}\" = \"205\", \"01632960100\" = \"200\" }}\n\
         announcement = \"{}\"\n",
        announcement.display()
    );
    config
}

/// Runs one call with RTP both ways; `outbound` is from the PBX to the trunk.
fn call(dir: &TempDir, config: &TestConfig, outbound: bool, caller: &str, callee: &str) {
    let addresses = match outbound {
        true => (config.pbx_peer, config.trunk_peer, config.pbx_listen),
        false => (config.trunk_peer, config.pbx_peer, config.trunk_listen),
    };
    let call = RtpCall::run_as(dir, addresses, caller, callee);
    call.assert_relayed_unchanged();
    assert!(
        call.uac.succeeded() && call.uas.succeeded(),
        "{}\n{}",
        call.uac.report(),
        call.uas.report()
    );
}

/// Stops the daemon and returns everything it logged.
fn stop(mut callvault: Callvault) -> String {
    callvault.wait_for_log("call ended", Duration::from_secs(10));
    std::thread::sleep(SETTLE);
    callvault.signal("TERM");
    callvault.wait_for_exit(support::STOP_TIMEOUT);
    callvault.output()
}

/// Everything an excluded call must not have left behind.
fn assert_no_trace(config: &TestConfig, log: &str, rule: &str) {
    assert!(
        log.contains("call excluded from recording") && log.contains(&format!("rule=\"{rule}\"")),
        "the log names the rule:\n{log}"
    );
    assert!(log.contains("tapped: 0"), "no packet was copied:\n{log}");
    assert!(!log.contains("recording started"), "{log}");
    let recordings = config.data_dir.join("recordings");
    let files: Vec<_> = std::fs::read_dir(&recordings).map_or(Vec::new(), |d| d.collect());
    assert!(files.is_empty(), "no recording file: {files:?}");
    for (what, text) in [("the logs".to_owned(), log.to_owned())]
        .into_iter()
        .chain(files_under(&config.data_dir))
    {
        assert!(
            !text.contains(PATIENT_DIGITS),
            "the patient's number appears in {what}"
        );
    }
    let index = callvault_store::index::Index::open(&config.data_dir.join("index")).expect("index");
    assert_eq!(index.len(), 0, "no index entry");
}

/// Every file under `dir` (sled's included), as lossy text, with its path.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    found
}

#[test]
fn a_call_from_a_personal_extension_is_relayed_and_leaves_no_trace() {
    let dir = TempDir::new("policy-from-personal");
    let config = policy_config(&dir);
    let callvault = Callvault::start(&config, &dir);
    call(&dir, &config, true, "205", PATIENT);
    let log = stop(callvault);
    assert_no_trace(&config, &log, "personal_extension");
}

#[test]
fn a_call_to_a_personal_extensions_number_is_relayed_and_leaves_no_trace() {
    let dir = TempDir::new("policy-to-personal");
    let config = policy_config(&dir);
    let callvault = Callvault::start(&config, &dir);
    call(&dir, &config, false, PATIENT, PERSONAL_DDI);
    let log = stop(callvault);
    assert_no_trace(&config, &log, "personal_extension");
}

#[test]
fn an_opted_out_caller_added_while_the_daemon_runs_is_not_recorded() {
    let dir = TempDir::new("policy-opt-out");
    let config = policy_config(&dir);
    let path = config.write(&dir);
    let path = path.to_str().expect("a UTF-8 path");
    let mut callvault = Callvault::start(&config, &dir);
    let added = callvault_command(&[
        "opt-out",
        "add",
        "+44 7700 900123",
        "--config",
        path,
        "--reason",
        "asked in person at reception",
        "--operator",
        "GM",
    ]);
    assert!(added.status.success(), "{added:?}");
    callvault.wait_for_log("opt-out list reloaded", Duration::from_secs(10));

    call(&dir, &config, false, PATIENT, "01632960100");
    let log = stop(callvault);
    let audit = std::fs::read_to_string(config.data_dir.join("audit.log")).expect("audit log");
    assert!(
        audit.contains("\"opt-out-add\"") && audit.contains("GM"),
        "{audit}"
    );
    // The list and the audit log hold the number by design; nothing else may.
    std::fs::remove_file(config.data_dir.join("opt-out.json")).expect("the list");
    std::fs::remove_file(config.data_dir.join("audit.log")).expect("the audit log");
    assert_no_trace(&config, &log, "opt_out");
}

#[test]
fn a_call_between_ordinary_parties_is_still_recorded() {
    let dir = TempDir::new("policy-recorded");
    let mut config = policy_config(&dir);
    // Its announcement would reach the callee before the test's own audio.
    config.extra = config.extra.replace("announcement =", "# announcement =");
    let callvault = Callvault::start(&config, &dir);
    call(&dir, &config, true, "201", PATIENT);
    let log = stop(callvault);
    assert!(log.contains("recording started"), "{log}");
    assert!(!log.contains("call excluded"), "{log}");
    let files = std::fs::read_dir(config.data_dir.join("recordings")).expect("recordings");
    assert_eq!(files.count(), 1);
}
