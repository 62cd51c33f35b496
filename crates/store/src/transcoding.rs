//! Recordings kept in a cheap format until they are transcoded to their final one.
//!
//! The recorder may write a call's audio in real time as WAV, which costs it almost
//! nothing, and compress it to Ogg Opus later, when the CPU is free. Each such
//! recording has a marker in `transcode/queue/` from the moment it starts until its
//! final file has replaced the first; the transcoder writes the final file in
//! `transcode/work/` and renames it over the first, so a crash at any point leaves
//! one whole recording and a marker to try again.
//!
//! ```text
//! <data_dir>/transcode/queue/<id>       one empty file per recording to transcode
//! <data_dir>/transcode/work/<id>.part   the final file being written
//! ```

use std::io;
use std::path::{Path, PathBuf};

use crate::index::Replacement;
use crate::store::{create_private_dir, StoreError};
use crate::{RecordingId, RecordingMetadata, Store};

/// What [`Store::replace_recording`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Replaced {
    /// The new file is the recording now, and the index says so.
    Replaced,
    /// The recording is under a legal hold, and keeps the file it was held with.
    Held,
    /// The recording is no longer indexed (purged); the new file was removed.
    Absent,
}

impl Store {
    /// Where the transcoder writes final files before they replace the first.
    pub fn transcode_work_dir(&self) -> PathBuf {
        self.layout().transcode_dir().join("work")
    }

    fn transcode_queue_dir(&self) -> PathBuf {
        self.layout().transcode_dir().join("queue")
    }

    /// Notes that recording `id` is to be transcoded, durably, before its audio
    /// is written.
    pub fn queue_transcoding(&self, id: &RecordingId) -> Result<(), StoreError> {
        let queue = self.transcode_queue_dir();
        create_private_dir(&queue)?;
        let marker = queue.join(&id.0);
        std::fs::write(&marker, b"").map_err(io_error("creating", &marker))?;
        sync_dir(&queue)
    }

    /// The recordings still to be transcoded, by id.
    pub fn transcoding_queue(&self) -> Result<Vec<RecordingId>, StoreError> {
        let queue = self.transcode_queue_dir();
        let entries = match std::fs::read_dir(&queue) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("listing", &queue)(error)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry.map_err(io_error("listing", &queue))?.file_name();
            ids.push(RecordingId(name.to_string_lossy().into_owned()));
        }
        ids.sort();
        Ok(ids)
    }

    /// Takes recording `id` off the transcoding queue.
    pub fn transcoding_done(&self, id: &RecordingId) -> Result<(), StoreError> {
        let marker = self.transcode_queue_dir().join(&id.0);
        match std::fs::remove_file(&marker) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(io_error("removing", &marker)(error))
            }
            _ => Ok(()),
        }
    }

    /// Makes `new_file` (a finished recording in the work directory) the file of
    /// the recording `metadata` describes, and indexes `metadata` for it.
    ///
    /// The rename is atomic, so a reader sees the old file or the new, never a mix.
    /// A held or purged recording is left as it is and `new_file` is removed.
    pub fn replace_recording(
        &self,
        new_file: &Path,
        metadata: &RecordingMetadata,
    ) -> Result<Replaced, StoreError> {
        let recordings = self.layout().recordings();
        let replacement = self.index().replace_unless_held(metadata, |file_name| {
            let target = recordings.join(file_name);
            std::fs::rename(new_file, &target).map_err(io_error("replacing", &target))?;
            sync_dir(&recordings)
        })?;
        match replacement {
            Replacement::Replaced => Ok(Replaced::Replaced),
            Replacement::Failed(error) => Err(error),
            Replacement::Held => discard(new_file).map(|()| Replaced::Held),
            Replacement::Absent => discard(new_file).map(|()| Replaced::Absent),
        }
    }

    /// Removes what a transcoding cut short by a crash left in the work directory.
    pub(crate) fn clear_transcode_work(&self) -> Result<(), StoreError> {
        let work = self.transcode_work_dir();
        match std::fs::remove_dir_all(&work) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("clearing", &work)(error));
            }
            _ => {}
        }
        create_private_dir(&work)
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("syncing", dir))
}

fn discard(path: &Path) -> Result<(), StoreError> {
    std::fs::remove_file(path).map_err(io_error("removing", path))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}
