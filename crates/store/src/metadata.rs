//! What is known about a recorded call, stored encrypted in its file and in the index.

use serde::{Deserialize, Serialize};

/// A recording's id: 32 lowercase hex digits (128 random bits), also its file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordingId(pub String);

impl std::fmt::Display for RecordingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which way a call went, seen from the practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    Inbound,
    Outbound,
    Internal,
}

/// How a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStatus {
    /// Still being written.
    Recording,
    /// Finalised normally, with every packet the tap offered.
    Complete,
    /// Finalised, but the recorder lost packets (tap drops); see `lost_packets`.
    Degraded,
    /// Cut short by a crash and recovered up to its last whole segment.
    Partial,
    /// Recording failed (disk full, I/O error); the file holds what was written.
    Failed,
}

/// The metadata of one recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingMetadata {
    pub id: RecordingId,
    /// Unix time of answer, in milliseconds.
    pub start_ms: i64,
    /// Unix time the recording ended, in milliseconds; `None` while recording.
    pub end_ms: Option<i64>,
    pub direction: CallDirection,
    /// The external and practice parties as signalled (not normalised).
    pub caller: String,
    pub callee: String,
    /// The practice extension involved, when known.
    pub extension: Option<String>,
    /// `audio/ogg` or `audio/wav`.
    pub media_type: String,
    pub status: RecordingStatus,
    /// Why the recording is partial, failed or degraded, in words.
    pub status_reason: Option<String>,
    /// Packets the recorder never received (tap drops).
    pub lost_packets: u64,
}
