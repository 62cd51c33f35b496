//! Prometheus metrics: the libraries' counters, rendered when scraped.
//!
//! The libraries keep plain atomic counters and know nothing of Prometheus
//! (docs/decisions.md says why); each scrape reads them all and writes the
//! text format afresh. Reading an atomic never waits on the relay, and the
//! endpoint runs on tasks of its own ([`http`]).

mod http;
pub(crate) mod names;
mod text;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use callvault_b2bua::{B2buaSnapshot, B2buaStats};
use callvault_policy::Rule;
use callvault_recorder::{RecorderHandle, RecorderStats};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use self::names::*;
use self::text::{Exposition, Kind};
use crate::housekeeping::Housekeeping;
use crate::policy::PolicyState;

pub(crate) use self::http::bind;

/// Answers scrapes on `listener` from a task of its own.
pub(crate) fn spawn(listener: TcpListener, sources: Sources) -> JoinHandle<()> {
    tokio::spawn(http::serve(listener, Arc::new(sources)))
}

/// Everything a scrape reads.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) b2bua: Arc<B2buaStats>,
    pub(crate) recorder: RecorderHandle,
    pub(crate) policy: Arc<PolicyState>,
    pub(crate) housekeeping: Arc<Housekeeping>,
    /// When the daemon started, in Unix milliseconds.
    pub(crate) started_ms: i64,
}

impl Sources {
    /// The text a scrape returns.
    pub(crate) fn render(&self) -> String {
        let mut page = Exposition::default();
        let b2bua = self.b2bua.snapshot();
        let recorder = self.recorder.stats();
        calls(&mut page, &b2bua, &recorder, &self.policy);
        sip(&mut page, &b2bua);
        media(&mut page, &b2bua);
        recording(&mut page, &recorder);
        storage(&mut page, &self.housekeeping);
        let started = seconds(self.started_ms);
        page.single(START_TIME, Kind::Gauge, "When the daemon started.", started);
        page.finish()
    }
}

fn calls(
    page: &mut Exposition,
    b2bua: &B2buaSnapshot,
    recorder: &RecorderStats,
    policy: &PolicyState,
) {
    let help = "Calls in progress, recorded or not.";
    page.single(CALLS_ACTIVE, Kind::Gauge, help, b2bua.active_calls);
    let help = "Calls that ended.";
    page.single(CALLS_ENDED, Kind::Counter, help, b2bua.calls_ended);

    let help = "Calls to be recorded, by how their recording ended.";
    page.family(CALLS_RECORDED, Kind::Counter, help);
    let outcomes = [
        ("complete", recorder.complete),
        ("degraded", recorder.degraded),
        ("failed", recorder.failed),
        ("missed", recorder.missed),
    ];
    for (outcome, count) in outcomes {
        page.sample(CALLS_RECORDED, &[("outcome", outcome)], count);
    }

    let help = "Calls the recording policy excluded, by rule.";
    page.family(CALLS_EXCLUDED, Kind::Counter, help);
    for rule in Rule::ALL {
        let count = policy.excluded(rule);
        page.sample(CALLS_EXCLUDED, &[("rule", rule.as_str())], count);
    }
}

fn sip(page: &mut Exposition, b2bua: &B2buaSnapshot) {
    page.family(
        SIP_REQUESTS,
        Kind::Counter,
        "SIP requests received, by side and method.",
    );
    for (side, method, count) in &b2bua.requests {
        let labels = [("side", side.as_str()), ("method", *method)];
        page.sample(SIP_REQUESTS, &labels, count);
    }
    page.family(
        SIP_RESPONSES,
        Kind::Counter,
        "SIP responses received, by side and class.",
    );
    for (side, class, count) in &b2bua.responses {
        let labels = [("side", side.as_str()), ("class", *class)];
        page.sample(SIP_RESPONSES, &labels, count);
    }
    let help = "SIP messages dropped: from strangers, or malformed.";
    page.family(SIP_DROPPED, Kind::Counter, help);
    page.sample(SIP_DROPPED, &[("reason", "stranger")], b2bua.sip_strangers);
    page.sample(SIP_DROPPED, &[("reason", "malformed")], b2bua.sip_malformed);
}

fn media(page: &mut Exposition, b2bua: &B2buaSnapshot) {
    let media = &b2bua.media;
    let help = "RTP and RTCP packets relayed.";
    page.single(
        MEDIA_RELAYED_PACKETS,
        Kind::Counter,
        help,
        media.packets_relayed,
    );
    let help = "Bytes of RTP and RTCP relayed.";
    page.single(
        MEDIA_RELAYED_BYTES,
        Kind::Counter,
        help,
        media.bytes_relayed,
    );

    let help = "Media packets not relayed, by reason.";
    page.family(MEDIA_DROPPED_PACKETS, Kind::Counter, help);
    let drops = [
        ("stranger", media.drops.stranger),
        ("malformed", media.drops.malformed),
        ("no_destination", media.drops.no_destination),
        ("send_failed", media.drops.send_failed),
    ];
    for (reason, count) in drops {
        page.sample(MEDIA_DROPPED_PACKETS, &[("reason", reason)], count);
    }
    let help = "Copies of relayed packets the recorder could not take.";
    page.single(
        MEDIA_TAP_DROPPED_PACKETS,
        Kind::Counter,
        help,
        media.tap_drops,
    );
    let help = "Media ports bound by calls.";
    page.single(MEDIA_PORTS_IN_USE, Kind::Gauge, help, media.ports_in_use);
    page.single(
        MEDIA_PORTS,
        Kind::Gauge,
        "Media ports configured.",
        media.ports_total,
    );
}

fn recording(page: &mut Exposition, recorder: &RecorderStats) {
    let help = "Recordings being made.";
    page.single(RECORDER_ACTIVE, Kind::Gauge, help, recorder.active);
    let help = "Encoded audio written into recording files.";
    page.single(
        RECORDER_WRITTEN_BYTES,
        Kind::Counter,
        help,
        recorder.bytes_written,
    );
    let help = "When audio last reached a recording file (0: not yet).";
    let last_write = seconds(i64::try_from(recorder.last_write_unix_ms).unwrap_or(i64::MAX));
    page.single(RECORDER_LAST_WRITE, Kind::Gauge, help, last_write);

    let help = "How long audio waited between being made and being on disk.";
    page.family(RECORDER_LAG, Kind::Summary, help);
    let lag_sum = recorder.write_lag_total.as_secs_f64();
    page.sample(&format!("{RECORDER_LAG}_sum"), &[], lag_sum);
    page.sample(&format!("{RECORDER_LAG}_count"), &[], recorder.writes);

    let help = "Recordings waiting to be transcoded to their final format.";
    page.single(
        RECORDER_TRANSCODE_WAITING,
        Kind::Gauge,
        help,
        recorder.transcoding_waiting,
    );
    page.family(
        RECORDER_TRANSCODES,
        Kind::Counter,
        "Recordings transcoded, by outcome.",
    );
    page.sample(
        RECORDER_TRANSCODES,
        &[("outcome", "done")],
        recorder.transcoded,
    );
    page.sample(
        RECORDER_TRANSCODES,
        &[("outcome", "failed")],
        recorder.transcoding_failed,
    );
}

fn storage(page: &mut Exposition, state: &Housekeeping) {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let help = "Space left on the data directory's file system.";
    page.single(STORAGE_FREE, Kind::Gauge, help, load(&state.free_bytes));
    let help = "Free space below which the daemon warns (0: off).";
    page.single(STORAGE_MIN_FREE, Kind::Gauge, help, state.min_free_bytes);

    let help = "Recordings deleted by retention.";
    page.single(
        RETENTION_DELETED,
        Kind::Counter,
        help,
        load(&state.retention_deleted),
    );
    let help = "Expired recordings retention could not delete.";
    page.single(
        RETENTION_FAILED,
        Kind::Counter,
        help,
        load(&state.retention_failed),
    );
    let help = "When retention last finished a run (0: not yet).";
    let last_run = i64::try_from(load(&state.retention_last_run_ms)).unwrap_or(i64::MAX);
    page.single(RETENTION_LAST_RUN, Kind::Gauge, help, seconds(last_run));
}

/// Unix milliseconds as the seconds Prometheus times are given in.
fn seconds(unix_ms: i64) -> f64 {
    // A time in milliseconds needs 41 bits; an f64 holds 53 exactly.
    unix_ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention_and_are_unique() {
        let areas = [
            "calls",
            "sip",
            "media",
            "recorder",
            "storage",
            "retention",
            "start",
        ];
        for (index, name) in names::ALL.iter().enumerate() {
            let area = name
                .strip_prefix("callvault_")
                .and_then(|rest| rest.split('_').next());
            assert!(area.is_some_and(|area| areas.contains(&area)), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(!names::ALL[..index].contains(name), "{name} twice");
        }
    }

    #[test]
    fn unix_milliseconds_become_fractional_seconds() {
        assert_eq!(seconds(1_796_000_000_123), 1_796_000_000.123);
        assert_eq!(seconds(0), 0.0);
    }
}
