//! Where recordings live: encrypted files, their keys, the index and the audit trail.
//!
//! - [`keys`]: master keys (a key file or a systemd credential), key ids, wrapping of
//!   each recording's data key, rotation and crypto-shredding.
//! - [`file`]: the recording file format, a streaming writer that never puts plaintext
//!   on disk, a verifying reader, and recovery of files a crash left unfinished.
//! - [`index`]: the sled index of calls with secondary indexes by start time, phone
//!   number and extension; legal holds; rebuilding from the files alone.
//! - [`retention`]: deleting what is older than the retention period, unless held.
//! - [`audit`]: the append-only, hash-chained log of every access and change.
//! - [`number`]: normalising phone numbers to E.164, so that any spelling of a number
//!   finds the same recordings.
//! - [`opt_out`]: the list of patients' numbers whose calls are never recorded.
//!
//! [`Store`] opens a data directory as one whole: recovery of unfinished files at
//! start, the index checked or rebuilt, retention applied, and the queue of
//! recordings waiting to be transcoded to their final format.
//!
//! Nothing here knows about SIP: the recorder hands in encoded audio and metadata.

pub mod audit;
pub mod file;
pub mod index;
pub mod keys;
pub mod number;
pub mod opt_out;
pub mod retention;
mod store;
mod transcoding;

mod metadata;

pub use metadata::{
    CallDirection, CallEvent, EventKind, Party, RecordingId, RecordingMetadata, RecordingStatus,
};
pub use store::{Layout, OpenReport, ReindexReport, Store, StoreError};
pub use transcoding::Replaced;
