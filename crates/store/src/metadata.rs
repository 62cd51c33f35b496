//! What is known about a recorded call, stored encrypted in its file and in the index.

use serde::{Deserialize, Serialize};

/// A recording's id: 32 lowercase hex digits (128 random bits), also its file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordingId(pub String);

impl RecordingId {
    /// A new id of 128 bits from the operating system's random number generator.
    pub fn random() -> Result<Self, crate::keys::KeyError> {
        let mut bytes = [0u8; 16];
        crate::keys::random_bytes(&mut bytes)?;
        Ok(Self(
            bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
        ))
    }
}

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
    /// How the call ended, in words ("BYE from the external party", "daemon shutdown");
    /// `None` while recording, and in files written before the field existed.
    #[serde(default)]
    pub end_reason: Option<String>,
    /// DTMF digits, comfort noise and holds, on the recording's timeline.
    ///
    /// Kept only in the encrypted file: DTMF digits may be a card number or a PIN, so
    /// the index never stores them (see `Index::insert`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<CallEvent>,
}

/// Which party of the call an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    /// The caller or callee on the trunk side: the left channel of a stereo recording.
    External,
    /// The practice's side: the right channel.
    Practice,
}

/// Something that happened at a moment of the recording, other than audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// Milliseconds from the start of the recording.
    pub at_ms: u64,
    pub party: Party,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What kind of event, with what it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// An RFC 4733 telephone event: `0`-`9`, `*`, `#`, `A`-`D`, or `E<code>` for others.
    Dtmf { digit: String, duration_ms: u64 },
    /// RFC 3389 comfort noise: the party sent no speech, recorded as silence.
    ComfortNoise { duration_ms: u64 },
    /// The party put the call on hold (its SDP turned sendonly or inactive); the
    /// duration is `None` when the call ended on hold.
    Hold { duration_ms: Option<u64> },
}
