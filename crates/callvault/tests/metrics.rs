//! The Prometheus endpoint, retention, and the runtime log level, through the binary.
//!
//! The metric names come from the daemon's own list (`src/metrics/names.rs`,
//! included here as it is), so a renamed metric fails these tests rather than
//! the operator's dashboards.

mod support;

#[allow(dead_code, reason = "the tests read some of the names")]
#[path = "../src/metrics/names.rs"]
mod names;

use std::net::UdpSocket;
use std::time::{Duration, SystemTime};

use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus};
use support::callvault::{callvault_command, Callvault};
use support::config::TestConfig;
use support::metrics::{fetch, scrape, value};
use support::recordings::{self, End};
use support::rtp::RtpCall;
use support::temp::TempDir;

/// A patient's mobile, the other party of every call here.
const PATIENT: &str = "07700900123";

/// How long a finished call's recording may take to be indexed.
const SETTLE: Duration = Duration::from_secs(10);

fn now_seconds() -> f64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    since.expect("after 1970").as_secs_f64()
}

/// An outbound call from `caller`; SIPp's files go to a directory of the call's own,
/// since a second call's trace in the same one would be read as the first's.
fn call(config: &TestConfig, caller: &str) {
    let dir = TempDir::new(&format!("metrics-call-{caller}"));
    let addresses = (config.pbx_peer, config.trunk_peer, config.pbx_listen);
    let call = RtpCall::run_as(&dir, addresses, caller, PATIENT);
    call.assert_relayed_unchanged();
    assert!(call.uac.succeeded() && call.uas.succeeded());
}

#[test]
fn a_recorded_and_an_excluded_call_show_in_the_metrics() {
    let dir = TempDir::new("metrics-calls");
    let mut config = TestConfig::on_free_ports(&dir);
    config.extra = "[policy]\npersonal_extensions = [\"205\"]\n".to_owned();
    let mut callvault = Callvault::start(&config, &dir);
    let before = scrape(&config);
    assert_eq!(value(&before, names::CALLS_ACTIVE), 0.0);

    call(&config, "201");
    callvault.wait_for_log("recording finished", SETTLE);
    call(&config, "205");
    let ended = |page: &str| value(page, names::CALLS_ENDED) == 2.0;
    assert!(support::wait_until(SETTLE, || ended(&scrape(&config))));
    let page = scrape(&config);

    let recorded = format!("{}{{outcome=\"complete\"}}", names::CALLS_RECORDED);
    assert_eq!(value(&page, &recorded), 1.0);
    for outcome in ["degraded", "failed", "missed"] {
        let series = format!("{}{{outcome=\"{outcome}\"}}", names::CALLS_RECORDED);
        assert_eq!(value(&page, &series), 0.0, "{outcome}");
    }
    let excluded = format!("{}{{rule=\"personal_extension\"}}", names::CALLS_EXCLUDED);
    assert_eq!(value(&page, &excluded), 1.0);
    assert_eq!(value(&page, names::CALLS_ACTIVE), 0.0);
    assert_eq!(value(&page, names::CALLS_ENDED), 2.0);

    // Both calls came from the PBX; the trunk answered them.
    for (method, count) in [
        ("INVITE", 2.0),
        ("ACK", 2.0),
        ("BYE", 2.0),
        ("OPTIONS", 0.0),
    ] {
        let series = format!(
            "{}{{side=\"pbx\",method=\"{method}\"}}",
            names::SIP_REQUESTS
        );
        assert_eq!(value(&page, &series), count, "{method}");
    }
    for class in ["1xx", "2xx"] {
        let series = format!(
            "{}{{side=\"trunk\",class=\"{class}\"}}",
            names::SIP_RESPONSES
        );
        assert!(value(&page, &series) >= 2.0, "{class}:\n{page}");
    }
    let failures = format!("{}{{side=\"trunk\",class=\"4xx\"}}", names::SIP_RESPONSES);
    assert_eq!(value(&page, &failures), 0.0);

    // 50 frames each way per call, each relayed once.
    assert!(
        value(&page, names::MEDIA_RELAYED_PACKETS) >= 200.0,
        "{page}"
    );
    assert!(
        value(&page, names::MEDIA_RELAYED_BYTES) >= 200.0 * 172.0,
        "{page}"
    );
    assert_eq!(value(&page, names::MEDIA_TAP_DROPPED_PACKETS), 0.0);
    assert_eq!(value(&page, names::RECORDER_ACTIVE), 0.0);
    assert!(value(&page, names::RECORDER_WRITTEN_BYTES) > 0.0, "{page}");
    let last_write = value(&page, names::RECORDER_LAST_WRITE);
    assert!((now_seconds() - last_write).abs() < 60.0, "{last_write}");
    let lag_count = format!("{}_count", names::RECORDER_LAG);
    assert!(value(&page, &lag_count) >= 1.0, "{page}");
    assert!(value(&page, names::STORAGE_FREE) > 0.0, "{page}");
    assert_eq!(
        value(&page, names::STORAGE_MIN_FREE),
        1024.0 * 1024.0 * 1024.0
    );

    for name in names::ALL {
        assert!(
            page.contains(&format!("# TYPE {name} ")),
            "{name} is not exported"
        );
    }
    drop(callvault);
}

#[test]
fn the_endpoint_answers_only_get_metrics() {
    let dir = TempDir::new("metrics-404");
    let config = TestConfig::on_free_ports(&dir);
    let _callvault = Callvault::start(&config, &dir);
    for (method, path) in [("GET", "/"), ("GET", "/metrics/x"), ("POST", "/metrics")] {
        let (status, _) = fetch(config.metrics_listen, method, path);
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{method} {path}");
    }
    let page = scrape(&config);
    assert!(page.contains(&format!("# TYPE {} counter", names::SIP_REQUESTS)));
}

#[test]
fn a_taken_metrics_address_stops_start_up_with_one_line() {
    let dir = TempDir::new("metrics-taken");
    let mut config = TestConfig::on_free_ports(&dir);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    config.metrics_listen = taken.local_addr().expect("its address");
    let path = config.write(&dir);
    let mut callvault = Callvault::spawn(
        &["run", "--config", path.to_str().expect("UTF-8")],
        dir.path(),
    );
    let status = callvault.wait_for_exit(support::STOP_TIMEOUT);
    assert!(!status.success());
    let output = callvault.output();
    let expected = format!(
        "error: metrics.listen: cannot listen on {}",
        config.metrics_listen
    );
    let line = output.lines().find(|line| line.starts_with("error:"));
    assert!(
        line.is_some_and(|line| line.starts_with(&expected)),
        "{output}"
    );
    assert!(!output.contains("callvault started"), "{output}");
}

/// Writes a finished recording that started `age_days` ago into the data directory.
fn write_old_recording(config: &TestConfig, id: &str, age_days: u64) {
    let age = Duration::from_secs(age_days * 86_400);
    let start = SystemTime::now() - age;
    let start = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    let meta = RecordingMetadata {
        id: RecordingId(id.to_owned()),
        start_ms: i64::try_from(start.as_millis()).expect("a 64-bit time"),
        end_ms: None,
        direction: CallDirection::Inbound,
        caller: PATIENT.into(),
        callee: "01632960100".into(),
        extension: Some("200".into()),
        media_type: "audio/wav".into(),
        status: RecordingStatus::Recording,
        status_reason: None,
        lost_packets: 0,
        end_reason: None,
        events: Vec::new(),
    };
    recordings::write(&config.data_dir, meta, End::Finish);
}

#[test]
fn retention_at_start_deletes_an_expired_recording_audits_and_counts_it() {
    let dir = TempDir::new("metrics-retention");
    let config = TestConfig::on_free_ports(&dir);
    let path = config.write(&dir);
    let path = path.to_str().expect("a UTF-8 path");
    let (expired, recent) = (
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
    );
    write_old_recording(&config, expired, 37 * 31);
    write_old_recording(&config, recent, 30);
    let args = ["reindex", "--config", path, "--operator", "test"];
    let reindexed = callvault_command(&args);
    assert!(reindexed.status.success(), "{reindexed:?}");

    let mut callvault = Callvault::start(&config, &dir);
    callvault.wait_for_log("retention run", SETTLE);
    let page = scrape(&config);
    assert_eq!(value(&page, names::RETENTION_DELETED), 1.0);
    assert_eq!(value(&page, names::RETENTION_FAILED), 0.0);
    assert!(value(&page, names::RETENTION_LAST_RUN) > 0.0);
    callvault.signal("TERM");
    callvault.wait_for_exit(support::STOP_TIMEOUT);

    let recordings = config.data_dir.join("recordings");
    assert!(!recordings.join(format!("{expired}.cvr")).exists());
    assert!(recordings.join(format!("{recent}.cvr")).exists());
    let audit = std::fs::read_to_string(config.data_dir.join("audit.log")).expect("audit log");
    let purge = audit
        .lines()
        .find(|line| line.contains("\"purge\""))
        .unwrap_or_else(|| panic!("no purge entry:\n{audit}"));
    assert!(
        purge.contains(expired) && purge.contains("past retention"),
        "{purge}"
    );
    assert!(!audit.contains(recent), "{audit}");
}

#[test]
fn sighup_applies_a_new_log_level_without_a_restart() {
    let dir = TempDir::new("metrics-log-level");
    let mut config = TestConfig::on_free_ports(&dir);
    let mut callvault = Callvault::start(&config, &dir);
    let garbage = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let send_garbage = || {
        garbage
            .send_to(b"not sip at all\r\n\r\n", config.pbx_listen)
            .expect("sent");
    };
    let malformed = format!("{}{{reason=\"malformed\"}}", names::SIP_DROPPED);

    send_garbage();
    let counted = support::wait_until(SETTLE, || value(&scrape(&config), &malformed) == 1.0);
    assert!(counted, "{}", scrape(&config));
    assert!(!callvault.output().contains("malformed sip dropped"));

    config.log_level = "debug".to_owned();
    config.write(&dir);
    callvault.signal("HUP");
    callvault.wait_for_log("log level reloaded", SETTLE);
    send_garbage();
    callvault.wait_for_log("malformed sip dropped", SETTLE);
    assert!(callvault.is_running());
}

/// Metric names in a file: every `callvault_…` word, summary suffixes removed.
fn names_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("callvault_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| names::ALL.contains(base))
            })
            .unwrap_or(name);
        found.push(name.to_owned());
        rest = &tail[end..];
    }
    found
}

#[test]
fn alert_rules_and_dashboard_use_only_exported_metrics() {
    let monitoring = support::workspace_root().join("docs/monitoring");
    let alerts = std::fs::read_to_string(monitoring.join("prometheus-alerts.yml")).expect("alerts");
    let dashboard =
        std::fs::read_to_string(monitoring.join("grafana-dashboard.json")).expect("dashboard");
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"]
        .as_array()
        .is_some_and(|panels| !panels.is_empty()));

    for (file, text) in [("alerts", &alerts), ("dashboard", &dashboard)] {
        let used = names_in(text);
        assert!(!used.is_empty(), "{file} names no metric");
        for name in used {
            assert!(
                names::ALL.contains(&name.as_str()),
                "{file} uses {name}, not exported"
            );
        }
    }
}

#[test]
fn every_metric_is_described_in_the_operations_guide() {
    let guide = support::workspace_root().join("docs/operations.md");
    let guide = std::fs::read_to_string(guide).expect("docs/operations.md");
    for name in names::ALL {
        assert!(
            guide.contains(&format!("`{name}`")),
            "{name} is not in docs/operations.md"
        );
    }
}
