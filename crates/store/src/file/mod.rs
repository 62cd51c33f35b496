//! Recording files: one encrypted file per call, written as a stream.
//!
//! A file is a fixed header (magic, format version, recording id, nonce prefix and
//! the call's data key wrapped by a master key), then segments sealed with
//! AES-256-GCM under the data key, then a short trailer. The first segment holds the
//! call's metadata as it was when recording began, the middle ones hold encoded audio,
//! the last holds the final metadata. Each segment's nonce carries its number and a
//! last-segment flag, so reordering, removal and truncation fail authentication.
//! `docs/recording-format.md` specifies every byte.
//!
//! - [`RecordingWriter`] streams audio into `<id>.part`, sealing a segment at least
//!   once per [`WriterOptions::segment_interval`], and renames it to `<id>.cvr` when
//!   the call ends. Plaintext never reaches the disk, not even in a temporary file.
//! - [`RecordingReader`] verifies and decrypts segment by segment; [`read_metadata`]
//!   reads only the first and last segments, for rebuilding the index.
//! - [`recover`] finishes a `.part` file a crash left behind, as [`Partial`].
//! - [`rewrap`] and [`shred`] rewrite only the wrapped key in the header.
//!
//! [`Partial`]: crate::RecordingStatus::Partial

mod format;
mod reader;
mod recover;
mod rekey;
mod writer;

use std::fs::File;
use std::io;
use std::path::Path;

use crate::keys::{DataKey, KeyError, KeyId, Keyring, MasterKey, WrappedKey};

pub use format::{unix_ms_now, FileHeader, FORMAT_VERSION, MAX_SEGMENT_LEN};
pub use reader::{read_metadata, read_recording, verify, Recording, RecordingReader};
pub use recover::{recover, recover_as, RecoveredFile, RECOVERED_REASON};
pub use rekey::{read_header, rewrap, shred};
pub use writer::{RecordingWriter, WriterOptions};

/// Extension of a file still being written.
pub const PART_EXTENSION: &str = "part";

/// Extension of a finished recording file.
pub const FILE_EXTENSION: &str = "cvr";

/// What is wrong with a recording file, or with writing one.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("i/o error while {action}")]
    Io {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("not a callvault recording: bad magic")]
    BadMagic,
    #[error("unknown recording format version {0}")]
    UnknownVersion(u16),
    #[error("unknown header flags {0:#06x}")]
    UnsupportedFlags(u16),
    #[error("the recording is wrapped by master key {0}, which is not loaded")]
    UnknownKey(KeyId),
    #[error("the recording's key does not open with master key {0}: wrong key or tampered header")]
    WrongKey(KeyId),
    #[error("the recording's key has been destroyed (crypto-shredded)")]
    Shredded,
    #[error("key operation failed")]
    Key(#[source] KeyError),
    #[error("the recording is truncated: its final segment is missing or torn")]
    Truncated,
    #[error("segment {segment} fails authentication: tampered or damaged")]
    Tampered { segment: u32 },
    #[error("segment {found} is where segment {expected} belongs: segments were moved or removed")]
    Reordered { expected: u32, found: u32 },
    #[error("segment {segment} is authentic but invalid: {reason}")]
    InvalidSegment { segment: u32, reason: &'static str },
    #[error("segment {segment} holds metadata that does not parse")]
    MetadataDecode {
        segment: u32,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid input for a recording: {0}")]
    InvalidInput(&'static str),
    #[error("the recording has used every segment number")]
    TooManySegments,
    #[error("an earlier write failed; the .part file is left for recovery")]
    WriterFailed,
}

impl FileError {
    pub(crate) fn io(action: &'static str) -> impl FnOnce(io::Error) -> FileError {
        move |source| FileError::Io { action, source }
    }
}

impl From<KeyError> for FileError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::UnknownKey(id) => FileError::UnknownKey(id),
            KeyError::WrongKey(id) => FileError::WrongKey(id),
            KeyError::Shredded => FileError::Shredded,
            other => FileError::Key(other),
        }
    }
}

/// Opens a recording's wrapped data key: a master key, a keyring or a closure.
///
/// `context` is the header's bound bytes, which the key was wrapped with.
pub trait UnwrapKey {
    fn unwrap_key(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, KeyError>;
}

impl UnwrapKey for MasterKey {
    fn unwrap_key(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, KeyError> {
        if wrapped.key_id != self.id() {
            return Err(KeyError::UnknownKey(wrapped.key_id));
        }
        self.unwrap(wrapped, context)
    }
}

impl UnwrapKey for Keyring {
    fn unwrap_key(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, KeyError> {
        self.unwrap(wrapped, context)
    }
}

impl<F> UnwrapKey for F
where
    F: Fn(&WrappedKey, &[u8]) -> Result<DataKey, KeyError>,
{
    fn unwrap_key(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, KeyError> {
        self(wrapped, context)
    }
}

/// Opens the data key named in `header`, telling a shredded key apart.
fn open_data_key<K>(header: &FileHeader, keys: &K) -> Result<DataKey, FileError>
where
    K: UnwrapKey + ?Sized,
{
    if header.is_shredded() {
        return Err(FileError::Shredded);
    }
    Ok(keys.unwrap_key(header.wrapped(), header.context())?)
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FileError::io("syncing the recordings directory"))
}

/// The directory holding `path`, `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
