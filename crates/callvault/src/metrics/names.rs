//! The name of every metric the daemon exports.
//!
//! The integration tests include this file as it is, so a test and the
//! exporter can never disagree on a name. docs/operations.md describes each.

/// Calls in progress in the B2BUA, recorded or not.
pub(crate) const CALLS_ACTIVE: &str = "callvault_calls_active";
/// Calls that ended, whatever their outcome.
pub(crate) const CALLS_ENDED: &str = "callvault_calls_ended_total";
/// Calls to be recorded, by how their recording ended (`outcome`).
pub(crate) const CALLS_RECORDED: &str = "callvault_calls_recorded_total";
/// Calls the recording policy excluded, by the rule that did (`rule`).
pub(crate) const CALLS_EXCLUDED: &str = "callvault_calls_excluded_total";

/// SIP requests received, by `side` and `method`.
pub(crate) const SIP_REQUESTS: &str = "callvault_sip_requests_total";
/// SIP responses received, by `side` and `class`.
pub(crate) const SIP_RESPONSES: &str = "callvault_sip_responses_total";
/// SIP messages dropped before the B2BUA saw them, by `reason`.
pub(crate) const SIP_DROPPED: &str = "callvault_sip_dropped_total";

/// RTP and RTCP packets relayed.
pub(crate) const MEDIA_RELAYED_PACKETS: &str = "callvault_media_relayed_packets_total";
/// Bytes of RTP and RTCP relayed.
pub(crate) const MEDIA_RELAYED_BYTES: &str = "callvault_media_relayed_bytes_total";
/// Media packets not relayed, by `reason`.
pub(crate) const MEDIA_DROPPED_PACKETS: &str = "callvault_media_dropped_packets_total";
/// Copies of relayed packets the recorder's queue could not take.
pub(crate) const MEDIA_TAP_DROPPED_PACKETS: &str = "callvault_media_tap_dropped_packets_total";
/// Media ports bound by calls now.
pub(crate) const MEDIA_PORTS_IN_USE: &str = "callvault_media_ports_in_use";
/// Media ports in the configured range.
pub(crate) const MEDIA_PORTS: &str = "callvault_media_ports";

/// Recordings being made now.
pub(crate) const RECORDER_ACTIVE: &str = "callvault_recorder_active";
/// Encoded audio written into recording files.
pub(crate) const RECORDER_WRITTEN_BYTES: &str = "callvault_recorder_written_bytes_total";
/// When audio last reached a recording file, as a Unix time.
pub(crate) const RECORDER_LAST_WRITE: &str = "callvault_recorder_last_write_timestamp_seconds";
/// How long audio waited between being made and being on disk (a summary).
pub(crate) const RECORDER_LAG: &str = "callvault_recorder_lag_seconds";
/// Recordings waiting to be transcoded to their final format.
pub(crate) const RECORDER_TRANSCODE_WAITING: &str = "callvault_recorder_transcode_waiting";
/// Recordings transcoded, by `outcome`.
pub(crate) const RECORDER_TRANSCODES: &str = "callvault_recorder_transcodes_total";

/// Space left for recordings on the data directory's file system.
pub(crate) const STORAGE_FREE: &str = "callvault_storage_free_bytes";
/// The free space below which the daemon warns (`[storage] min_free_mb`).
pub(crate) const STORAGE_MIN_FREE: &str = "callvault_storage_min_free_bytes";

/// Recordings deleted by retention since the daemon started.
pub(crate) const RETENTION_DELETED: &str = "callvault_retention_deleted_total";
/// Expired recordings retention could not delete.
pub(crate) const RETENTION_FAILED: &str = "callvault_retention_failed_total";
/// When retention last finished a run, as a Unix time.
pub(crate) const RETENTION_LAST_RUN: &str = "callvault_retention_last_run_timestamp_seconds";

/// When the daemon started, as a Unix time.
pub(crate) const START_TIME: &str = "callvault_start_timestamp_seconds";

/// Every name above, for tests that look for each.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "only the tests read the whole list")
)]
pub(crate) const ALL: [&str; 25] = [
    CALLS_ACTIVE,
    CALLS_ENDED,
    CALLS_RECORDED,
    CALLS_EXCLUDED,
    SIP_REQUESTS,
    SIP_RESPONSES,
    SIP_DROPPED,
    MEDIA_RELAYED_PACKETS,
    MEDIA_RELAYED_BYTES,
    MEDIA_DROPPED_PACKETS,
    MEDIA_TAP_DROPPED_PACKETS,
    MEDIA_PORTS_IN_USE,
    MEDIA_PORTS,
    RECORDER_ACTIVE,
    RECORDER_WRITTEN_BYTES,
    RECORDER_LAST_WRITE,
    RECORDER_LAG,
    RECORDER_TRANSCODE_WAITING,
    RECORDER_TRANSCODES,
    STORAGE_FREE,
    STORAGE_MIN_FREE,
    RETENTION_DELETED,
    RETENTION_FAILED,
    RETENTION_LAST_RUN,
    START_TIME,
];
