//! Legal holds, kept in a small JSON file beside the sled database.
//!
//! Holds are the one thing in the index that cannot be rebuilt from the recording
//! files, so they do not live in sled: a corrupt database, or a `reindex` that replaces
//! it, leaves `holds.json` untouched. The file is rewritten whole on every change
//! (holds are few) through a temporary file, `fsync` and a rename.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::IndexError;
use crate::RecordingId;

/// Name of the holds file inside the index directory.
pub(super) const FILE_NAME: &str = "holds.json";

/// Version of the holds file's layout.
const VERSION: u32 = 1;

/// A legal hold: the recording survives retention until released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Why the recording is held, in the operator's words.
    pub reason: String,
    /// Who placed the hold.
    pub operator: String,
    /// Unix time the hold was placed, in milliseconds.
    pub since_ms: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldsDocument {
    version: u32,
    holds: BTreeMap<RecordingId, Hold>,
}

/// The holds file and its contents, loaded once.
#[derive(Debug)]
pub(super) struct HoldFile {
    path: PathBuf,
    holds: Mutex<BTreeMap<RecordingId, Hold>>,
}

/// Every hold, locked: holding the guard keeps holds from changing.
pub(super) type HoldsGuard<'a> = MutexGuard<'a, BTreeMap<RecordingId, Hold>>;

impl HoldFile {
    /// Loads the holds in `dir`; a missing file means no holds.
    pub(super) fn load(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join(FILE_NAME);
        let holds = match fs::read(&path) {
            Ok(bytes) => parse(&bytes).map_err(|source| IndexError::HoldsUnreadable {
                path: path.clone(),
                source,
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(IndexError::HoldsUnreadable { path, source }),
        };
        Ok(Self {
            path,
            holds: Mutex::new(holds),
        })
    }

    /// Locks the holds; changes go through the guard and [`Self::save`].
    pub(super) fn lock(&self) -> HoldsGuard<'_> {
        // The map is changed only after the file is written, so it is whole even if a
        // holder panicked.
        self.holds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `holds` to the file durably, replacing it.
    pub(super) fn save(&self, holds: &BTreeMap<RecordingId, Hold>) -> Result<(), IndexError> {
        let document = HoldsDocument {
            version: VERSION,
            holds: holds.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&document)
            .expect("holds serialise: string keys and plain fields");
        write_durably(&self.path, &bytes).map_err(|source| IndexError::Io {
            action: "writing the legal holds",
            path: self.path.clone(),
            source,
        })
    }

    /// Size of the holds file in bytes.
    pub(super) fn size_on_disk(&self) -> u64 {
        fs::metadata(&self.path).map_or(0, |meta| meta.len())
    }
}

fn parse(bytes: &[u8]) -> Result<BTreeMap<RecordingId, Hold>, io::Error> {
    let document: HoldsDocument = serde_json::from_slice(bytes)?;
    if document.version != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("holds file version {} is unknown", document.version),
        ));
    }
    Ok(document.holds)
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("json.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a rename in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
