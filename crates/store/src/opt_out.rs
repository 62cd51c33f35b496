//! The patient opt-out list: numbers whose calls are relayed but never recorded.
//!
//! One JSON file, `<data_dir>/opt-out.json`, mode 0600, replaced whole through a
//! temporary file on every change, so that the daemon, which reads it again when
//! it changes, sees the old list or the new one and never half of one. Who changed
//! it and why is in the audit log, written by the command that changes it.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::number::{normalise, DEFAULT_COUNTRY, E164};

/// The version of the file's layout.
const VERSION: u32 = 1;

/// Why the opt-out list could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OptOutError {
    #[error("{action} {path} failed")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not an opt-out list callvault wrote: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} may be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
}

/// One number on the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOut {
    /// Unix time the number was added, in milliseconds.
    pub since_ms: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    numbers: BTreeMap<String, OptOut>,
}

/// The numbers that opted out, normalised to E.164.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptOutList {
    numbers: BTreeMap<E164, OptOut>,
}

impl OptOutList {
    /// Reads the list at `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<Self, OptOutError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(io_error("reading", path, source)),
        };
        check_private(path)?;
        let invalid = |reason: String| OptOutError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let document: Document =
            serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
        if document.version != VERSION {
            return Err(invalid(format!("unknown version {}", document.version)));
        }
        let mut numbers = BTreeMap::new();
        for (number, entry) in document.numbers {
            // The error never repeats the entry: it is a patient's number.
            let parsed = normalise(&number, DEFAULT_COUNTRY)
                .map_err(|error| invalid(format!("an entry is {error}")))?;
            numbers.insert(parsed, entry);
        }
        Ok(Self { numbers })
    }

    /// Reads the list at `path`, applies `edit`, and writes it back if `edit`
    /// changed it (returned `true`), all under an exclusive lock, so that two
    /// staff commands at once cannot lose each other's change.
    pub fn update(
        path: &Path,
        edit: impl FnOnce(&mut OptOutList) -> bool,
    ) -> Result<bool, OptOutError> {
        let lock_path = path.with_extension("json.lock");
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| io_error("creating", &lock_path, source))?;
        lock.lock()
            .map_err(|source| io_error("locking", &lock_path, source))?;
        let mut list = Self::load(path)?;
        let changed = edit(&mut list);
        if changed {
            list.save(path)?;
        }
        // The lock goes with the file handle.
        Ok(changed)
    }

    /// Writes the list to `path` in one rename, with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), OptOutError> {
        let document = Document {
            version: VERSION,
            numbers: self
                .numbers
                .iter()
                .map(|(number, entry)| (number.as_str().to_owned(), entry.clone()))
                .collect(),
        };
        let text = serde_json::to_string_pretty(&document)
            .expect("the opt-out document serialises: string keys, plain values");
        let temporary = path.with_extension("json.new");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|source| io_error("creating", &temporary, source))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_error("writing", &temporary, source))?;
        std::fs::rename(&temporary, path).map_err(|source| io_error("replacing", path, source))
    }

    pub fn contains(&self, number: &E164) -> bool {
        self.numbers.contains_key(number)
    }

    /// Adds `number`; `false` if it was already there.
    pub fn add(&mut self, number: E164, since_ms: i64) -> bool {
        if self.numbers.contains_key(&number) {
            return false;
        }
        self.numbers.insert(number, OptOut { since_ms });
        true
    }

    /// Removes `number`; `false` if it was not there.
    pub fn remove(&mut self, number: &E164) -> bool {
        self.numbers.remove(number).is_some()
    }

    /// Every number, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&E164, &OptOut)> {
        self.numbers.iter()
    }

    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }
}

/// Refuses a list other users may read: it names patients.
fn check_private(path: &Path) -> Result<(), OptOutError> {
    let metadata =
        std::fs::metadata(path).map_err(|source| io_error("inspecting", path, source))?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(OptOutError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> OptOutError {
    OptOutError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
