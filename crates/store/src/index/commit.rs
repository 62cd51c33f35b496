//! A witness of the last committed change, kept outside sled.
//!
//! sled 0.34 recovers a damaged log by cutting it at the first bad entry, and opens
//! without an error: the index is then whole but silently misses the changes after the
//! damage. Every transaction therefore bumps a commit sequence inside sled, and after
//! the flush the same number is written to a small file beside sled's own. At open, a
//! database behind its witness has lost committed changes and is reported corrupt.
//!
//! The witness is written after sled's flush and not synced itself, so after a power
//! cut it can only lag the database, never lead it: a lag is harmless.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::IndexError;

/// Name of the witness file inside the database directory.
const FILE_NAME: &str = "callvault-commit";

/// The witness file, open for the index's lifetime.
#[derive(Debug)]
pub(super) struct CommitWitness {
    file: File,
    path: PathBuf,
    written: AtomicU64,
}

impl CommitWitness {
    /// Creates the witness of a new database at `sequence`, durably.
    pub(super) fn create(db_dir: &Path, sequence: u64) -> Result<Self, IndexError> {
        let path = db_dir.join(FILE_NAME);
        let io_error = |source| IndexError::Io {
            action: "creating the index's commit witness",
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_error)?;
        file.write_all_at(&sequence.to_be_bytes(), 0)
            .and_then(|()| file.sync_all())
            .map_err(io_error)?;
        Ok(Self {
            file,
            path,
            written: AtomicU64::new(sequence),
        })
    }

    /// Opens the witness of an existing database and reads its sequence.
    pub(super) fn open(db_dir: &Path) -> Result<(Self, u64), IndexError> {
        let path = db_dir.join(FILE_NAME);
        let corrupt = |reason: &str| IndexError::Corrupt {
            path: db_dir.to_owned(),
            reason: reason.to_owned(),
        };
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(corrupt("its commit witness is missing"));
            }
            Err(source) => {
                return Err(IndexError::Io {
                    action: "opening the index's commit witness",
                    path,
                    source,
                })
            }
        };
        let mut bytes = Vec::with_capacity(8);
        file.read_to_end(&mut bytes)
            .map_err(|source| IndexError::Io {
                action: "reading the index's commit witness",
                path: path.clone(),
                source,
            })?;
        let sequence = <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| corrupt("its commit witness is damaged"))?;
        let witness = Self {
            file,
            path,
            written: AtomicU64::new(sequence),
        };
        Ok((witness, sequence))
    }

    /// Records that the database has flushed commit `sequence`.
    pub(super) fn record(&self, sequence: u64) -> Result<(), IndexError> {
        // Concurrent commits may finish out of order; the witness only moves forward.
        if self.written.fetch_max(sequence, Ordering::AcqRel) >= sequence {
            return Ok(());
        }
        self.file
            .write_all_at(&sequence.to_be_bytes(), 0)
            .map_err(|source| IndexError::Io {
                action: "writing the index's commit witness",
                path: self.path.clone(),
                source,
            })
    }
}
