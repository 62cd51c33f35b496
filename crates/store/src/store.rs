//! The data directory as one whole: recording files and the index, kept in step.
//!
//! ```text
//! <data_dir>/recordings/<id>.cvr   finished recordings (.part while being written)
//! <data_dir>/index/                the sled index and the legal holds
//! <data_dir>/audit.log             the audit log (see `audit`)
//! <data_dir>/opt-out.json          patients' numbers never recorded (see `opt_out`)
//! <data_dir>/transcode/            recordings waiting for their final format
//!                                  (see `transcoding`)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use crate::file::{self, FileError, UnwrapKey, FILE_EXTENSION, PART_EXTENSION};
use crate::index::{Index, IndexError, IndexedCall};
use crate::retention::{self, PurgeMode, PurgeReport};
use crate::RecordingId;

/// Why the data directory could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{action} {path} failed")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What opening the data directory found and did.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Recordings a crash left unfinished, now recovered and indexed as partial.
    pub recovered: Vec<RecordingId>,
    /// Unfinished files that could not be recovered, with why; they are left in place.
    pub unrecoverable: Vec<(PathBuf, FileError)>,
}

/// What `reindex` found.
#[derive(Debug, Default)]
pub struct ReindexReport {
    pub indexed: usize,
    /// Files whose metadata could not be read (wrong key, damage), with why.
    pub unreadable: Vec<(PathBuf, FileError)>,
    pub recovered: Vec<RecordingId>,
}

/// The paths of a data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    data_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
        }
    }

    /// The data directory itself.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn recordings(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    pub fn index(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }

    /// The patient opt-out list (see `opt_out`).
    pub fn opt_out(&self) -> PathBuf {
        self.data_dir.join("opt-out.json")
    }

    pub fn transcode_dir(&self) -> PathBuf {
        self.data_dir.join("transcode")
    }

    /// The finished recording files, sorted by name; none before the first is made.
    pub fn finished_recordings(&self) -> Result<Vec<PathBuf>, StoreError> {
        match files_with(&self.recordings(), FILE_EXTENSION) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(Vec::new())
            }
            listed => listed,
        }
    }
}

/// An open data directory.
#[derive(Debug)]
pub struct Store {
    layout: Layout,
    index: Index,
}

impl Store {
    /// Opens the data directory at start-up: checks the index, then recovers and
    /// indexes every recording a crash left unfinished.
    ///
    /// A missing index while recordings exist, or a corrupt one, is an error that
    /// says to run `callvault reindex`: the daemon does not start on an index that
    /// would hide recordings from a subject access request.
    pub fn open(data_dir: &Path, keys: &impl UnwrapKey) -> Result<(Self, OpenReport), StoreError> {
        let layout = Layout::new(data_dir);
        let recordings = layout.recordings();
        create_private_dir(&recordings)?;
        let index = if Index::exists(&layout.index()) {
            Index::open(&layout.index())?
        } else if layout.finished_recordings()?.is_empty() {
            Index::create(&layout.index())?
        } else {
            return Err(IndexError::Missing {
                path: layout.index(),
            }
            .into());
        };
        let store = Self { layout, index };
        let report = store.recover_unfinished(keys)?;
        store.clear_transcode_work()?;
        Ok((store, report))
    }

    /// Rebuilds the index from the recording files alone, after recovering any
    /// unfinished ones. The daemon must not be running.
    pub fn reindex(data_dir: &Path, keys: &impl UnwrapKey) -> Result<ReindexReport, StoreError> {
        let layout = Layout::new(data_dir);
        let recordings = layout.recordings();
        create_private_dir(&recordings)?;
        let mut report = ReindexReport::default();
        for part in files_with(&recordings, PART_EXTENSION)? {
            match file::recover(&part, keys) {
                Ok(recovered) => report.recovered.push(recovered.metadata.id),
                Err(error) => report.unreadable.push((part, error)),
            }
        }
        let mut records = Vec::new();
        for path in layout.finished_recordings()? {
            match file::read_metadata(&path, keys) {
                Ok(metadata) => records.push((metadata, file_name(&path))),
                Err(error) => report.unreadable.push((path, error)),
            }
        }
        report.indexed = records.len();
        Index::rebuild(&layout.index(), records)?;
        Ok(report)
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where a recording's file is.
    pub fn recording_path(&self, call: &IndexedCall) -> PathBuf {
        self.layout.recordings().join(&call.file_name)
    }

    /// Deletes what is past retention, unless held: each file's key is shredded
    /// before the file is unlinked, so a copy left on the disk's free blocks or in a
    /// backup cannot be decrypted either.
    pub fn purge(
        &self,
        now_ms: i64,
        retention_months: u32,
        mode: PurgeMode,
    ) -> Result<PurgeReport, StoreError> {
        let delete = |call: &IndexedCall| destroy(&self.recording_path(call));
        Ok(retention::purge(
            &self.index,
            now_ms,
            retention_months,
            mode,
            delete,
        )?)
    }

    fn recover_unfinished(&self, keys: &impl UnwrapKey) -> Result<OpenReport, StoreError> {
        let mut report = OpenReport::default();
        for part in files_with(&self.layout.recordings(), PART_EXTENSION)? {
            match file::recover(&part, keys) {
                Ok(recovered) => {
                    self.index
                        .insert(&recovered.metadata, &file_name(&recovered.path))?;
                    report.recovered.push(recovered.metadata.id);
                }
                Err(error) => report.unrecoverable.push((part, error)),
            }
        }
        Ok(report)
    }
}

/// Shreds a recording's key, then removes the file; a file already gone is fine.
fn destroy(path: &Path) -> io::Result<()> {
    match file::shred(path) {
        Ok(()) => {}
        Err(FileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(error) => return Err(io::Error::other(error)),
    }
    std::fs::remove_file(path)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The files in `dir` whose extension is `extension`, sorted by name.
fn files_with(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, StoreError> {
    let io_error = |source| StoreError::Io {
        action: "listing",
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let wanted = extension.trim_start_matches('.');
        if path.extension().is_some_and(|e| e == wanted) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Io {
            action: "creating",
            path: dir.to_owned(),
            source,
        })
}
