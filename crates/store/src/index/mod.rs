//! The sled index of recordings, with queries by time, number and extension.
//!
//! The index answers "every recording involving this number between these dates"
//! without opening a recording file. It can always be rebuilt from the files
//! ([`Index::rebuild`], `callvault reindex`), except for legal holds, which live in their
//! own file beside the database (see `docs/index.md`).
//!
//! Layout of the index directory:
//!
//! - `db/`: the sled database, with the trees `calls` (by id), `by_start`,
//!   `by_number`, `by_extension` and `meta` (schema version and call count);
//! - `holds.json`: the legal holds;
//! - `db.rebuild/`, `db.old/`: only while a rebuild runs or after one was interrupted.
//!
//! sled lets one process at a time open a database: while the daemon runs, other
//! processes get [`IndexError::Locked`].

mod commit;
mod holds;
mod keys;

use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;
use sled::Tree;

pub use holds::Hold;

use crate::number::{self, E164};
use crate::{RecordingId, RecordingMetadata};
use commit::CommitWitness;
use holds::HoldFile;

/// Version of the trees' layout; an index of another version must be rebuilt.
pub const SCHEMA_VERSION: u32 = 1;

/// Directory of the sled database inside the index directory.
const DB_DIR: &str = "db";
/// Where a rebuild writes before it swaps the result in.
const REBUILD_DIR: &str = "db.rebuild";
/// Where the replaced database waits to be deleted during the swap.
const OLD_DIR: &str = "db.old";

const META_SCHEMA_VERSION: &[u8] = b"schema_version";
const META_CALL_COUNT: &[u8] = b"call_count";
const META_COMMIT_SEQUENCE: &[u8] = b"commit_sequence";

/// sled's page cache. The default (1 GiB) is sized for servers; queries touch few
/// pages, so this much holds the hot part of a million-call index.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// sled's page cache while rebuilding: random keys across the whole index are
/// written, and a larger cache saves rereading pages (reindex runs on its own).
const REBUILD_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no index at {path}: run `callvault reindex` to build it from the recording files")]
    Missing { path: PathBuf },
    #[error(
        "the index at {path} is corrupt ({reason}): run `callvault reindex` to rebuild it \
         from the recording files (legal holds are kept)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("the index at {path} is in use by another process: is the callvault daemon running?")]
    Locked { path: PathBuf },
    #[error("an index already exists at {path}")]
    AlreadyExists { path: PathBuf },
    #[error(
        "the legal holds in {path} cannot be read; they exist nowhere else, so repair the \
         file by hand (or restore it from a backup) before the index is used"
    )]
    HoldsUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no recording {id} in the index")]
    UnknownRecording { id: RecordingId },
    #[error("recording {id} is already on legal hold")]
    AlreadyHeld { id: RecordingId },
    #[error("recording {id} is on legal hold: release it first")]
    Held { id: RecordingId },
    #[error("a legal hold needs a reason")]
    MissingReason,
    #[error("{action} at {path} failed")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the index storage at {path} failed")]
    Storage {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
}

/// A recording as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedCall {
    pub meta: RecordingMetadata,
    /// The recording's file name in the data directory.
    pub file_name: String,
    /// The legal hold on it, if any.
    pub hold: Option<Hold>,
}

/// What the `calls` tree stores for a recording, as JSON.
#[derive(Deserialize)]
struct StoredCall {
    meta: RecordingMetadata,
    file_name: String,
}

/// [`StoredCall`] borrowed, for writing.
#[derive(Serialize)]
struct StoredCallRef<'a> {
    meta: &'a RecordingMetadata,
    file_name: &'a str,
}

/// The stored form leaves out the call's events: DTMF digits may be a card number,
/// and only the encrypted file may hold them.
fn encode(meta: &RecordingMetadata, file_name: &str) -> Vec<u8> {
    let meta = &RecordingMetadata {
        events: Vec::new(),
        ..meta.clone()
    };
    serde_json::to_vec(&StoredCallRef { meta, file_name })
        .expect("metadata serialises: plain fields")
}

/// The open trees of one sled database.
#[derive(Debug)]
struct Trees {
    calls: Tree,
    by_start: Tree,
    by_number: Tree,
    by_extension: Tree,
    meta: Tree,
}

/// The index of recordings: one sled database and the legal holds.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    db: sled::Db,
    trees: Trees,
    holds: HoldFile,
    commit: CommitWitness,
    call_count: AtomicU64,
}

/// Secondary keys of one recording.
struct SecondaryKeys {
    start: Vec<u8>,
    numbers: Vec<Vec<u8>>,
    extension: Option<Vec<u8>>,
}

impl SecondaryKeys {
    fn of(meta: &RecordingMetadata) -> Self {
        let mut numbers: Vec<Vec<u8>> = [&meta.caller, &meta.callee]
            .into_iter()
            .filter_map(|party| number::normalise(party, number::DEFAULT_COUNTRY).ok())
            .filter_map(|number| keys::by_term(number.as_str(), meta.start_ms, &meta.id))
            .collect();
        numbers.dedup();
        let extension = meta
            .extension
            .as_deref()
            .and_then(|extension| keys::by_term(extension, meta.start_ms, &meta.id));
        Self {
            start: keys::by_start(meta.start_ms, &meta.id),
            numbers,
            extension,
        }
    }
}

impl Index {
    /// Whether an index database exists in `dir`.
    ///
    /// At start, a missing index while recordings exist means it must be rebuilt.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_DIR).is_dir()
    }

    /// Opens the index in `dir`, checking that it is whole and of this version.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        if !Self::exists(dir) {
            return Err(IndexError::Missing {
                path: dir.to_owned(),
            });
        }
        let db_path = dir.join(DB_DIR);
        let db = open_db(&db_path)?;
        check_schema(&db, &db_path)?;
        let count = read_counter(&db, &db_path, META_CALL_COUNT)?;
        let commit = check_commit(&db, &db_path)?;
        let index = Self::assemble(dir, db, commit, count)?;
        tracing::debug!(path = %dir.display(), calls = count, "index opened");
        Ok(index)
    }

    /// Creates an empty index in `dir`; fails if one is there.
    ///
    /// A `holds.json` already in `dir` is kept and its holds apply.
    pub fn create(dir: &Path) -> Result<Index, IndexError> {
        if Self::exists(dir) {
            return Err(IndexError::AlreadyExists {
                path: dir.to_owned(),
            });
        }
        create_dir(dir)?;
        let db_path = dir.join(DB_DIR);
        let db = open_db(&db_path)?;
        write_marker(&db, &db_path, 0)?;
        let commit = CommitWitness::create(&db_path, 0)?;
        Self::assemble(dir, db, commit, 0)
    }

    fn assemble(
        dir: &Path,
        db: sled::Db,
        commit: CommitWitness,
        count: u64,
    ) -> Result<Index, IndexError> {
        let trees = open_trees(&db, &dir.join(DB_DIR))?;
        Ok(Index {
            dir: dir.to_owned(),
            db,
            trees,
            holds: HoldFile::load(dir)?,
            commit,
            call_count: AtomicU64::new(count),
        })
    }

    /// The directory the index lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds or replaces a recording, with its secondary keys, durably.
    ///
    /// All trees change in one transaction, and the change is flushed to disk before
    /// this returns: sled alone would flush only every 500 ms.
    pub fn insert(&self, meta: &RecordingMetadata, file_name: &str) -> Result<(), IndexError> {
        let value = encode(meta, file_name);
        let new_keys = SecondaryKeys::of(meta);
        let added = self.transaction(|trees| {
            let previous = trees.calls.insert(meta.id.0.as_bytes(), value.as_slice())?;
            let added = match previous {
                Some(previous) => {
                    let previous =
                        decode(&previous).map_err(ConflictableTransactionError::Abort)?;
                    remove_keys(trees, &SecondaryKeys::of(&previous.meta))?;
                    false
                }
                None => {
                    add_to_count(trees, 1)?;
                    true
                }
            };
            insert_keys(trees, &new_keys)?;
            Ok(added)
        })?;
        if added {
            self.call_count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The recording with `id`, if indexed.
    pub fn get(&self, id: &RecordingId) -> Result<Option<IndexedCall>, IndexError> {
        Ok(self.stored(id)?.map(|stored| self.with_hold(stored)))
    }

    /// The recording with `id` as stored, without its hold: callers that hold the
    /// holds' lock use this, as `get` would take it again.
    fn stored(&self, id: &RecordingId) -> Result<Option<StoredCall>, IndexError> {
        let Some(value) = self
            .trees
            .calls
            .get(id.0.as_bytes())
            .map_err(|e| self.storage(e))?
        else {
            return Ok(None);
        };
        decode(&value)
            .map(Some)
            .map_err(|error| self.with_path(error))
    }

    /// Removes a recording from the index; `false` if it was not there.
    ///
    /// A held recording is not removed: [`IndexError::Held`].
    pub fn remove(&self, id: &RecordingId) -> Result<bool, IndexError> {
        let holds = self.holds.lock();
        if holds.contains_key(id) {
            return Err(IndexError::Held { id: id.clone() });
        }
        let removed = self.remove_unheld(id)?;
        drop(holds);
        Ok(removed)
    }

    /// Runs `delete` on an unheld recording, then removes it from the index.
    ///
    /// The holds stay locked throughout, so a hold placed meanwhile waits and then
    /// finds the recording gone, rather than being placed on a destroyed recording.
    pub(crate) fn delete_unless_held<E>(
        &self,
        call: &IndexedCall,
        delete: impl FnOnce(&IndexedCall) -> Result<(), E>,
    ) -> Result<Deletion<E>, IndexError> {
        let holds = self.holds.lock();
        if holds.contains_key(&call.meta.id) {
            return Ok(Deletion::Held);
        }
        if let Err(error) = delete(call) {
            return Ok(Deletion::Failed(error));
        }
        self.remove_unheld(&call.meta.id)?;
        drop(holds);
        Ok(Deletion::Deleted)
    }

    /// Runs `replace` on a recording that is indexed and not held, then indexes
    /// `meta` for it in place of what was there.
    ///
    /// For a recording whose file is swapped for another holding the same call
    /// (transcoding): the holds stay locked throughout, so a hold and the swap
    /// never cross, and a held recording keeps the very file the hold was placed
    /// on.
    pub(crate) fn replace_unless_held<E>(
        &self,
        meta: &RecordingMetadata,
        replace: impl FnOnce(&str) -> Result<(), E>,
    ) -> Result<Replacement<E>, IndexError> {
        let holds = self.holds.lock();
        if holds.contains_key(&meta.id) {
            return Ok(Replacement::Held);
        }
        let Some(call) = self.stored(&meta.id)? else {
            return Ok(Replacement::Absent);
        };
        if let Err(error) = replace(&call.file_name) {
            return Ok(Replacement::Failed(error));
        }
        self.insert(meta, &call.file_name)?;
        drop(holds);
        Ok(Replacement::Replaced)
    }

    fn remove_unheld(&self, id: &RecordingId) -> Result<bool, IndexError> {
        let removed = self.transaction(|trees| {
            let Some(previous) = trees.calls.remove(id.0.as_bytes())? else {
                return Ok(false);
            };
            let previous = decode(&previous).map_err(ConflictableTransactionError::Abort)?;
            remove_keys(trees, &SecondaryKeys::of(&previous.meta))?;
            add_to_count(trees, -1)?;
            Ok(true)
        })?;
        if removed {
            self.call_count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Recordings involving `number` as caller or callee, by start time.
    ///
    /// `from_ms` is inclusive and `to_ms` exclusive; `None` leaves that end open.
    pub fn by_number(
        &self,
        number: &E164,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<IndexedCall>, IndexError> {
        self.by_term(&self.trees.by_number, number.as_str(), from_ms, to_ms)
    }

    /// Recordings with the practice extension `extension`, by start time.
    ///
    /// The range is as for [`Self::by_number`].
    pub fn by_extension(
        &self,
        extension: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<IndexedCall>, IndexError> {
        self.by_term(&self.trees.by_extension, extension, from_ms, to_ms)
    }

    /// Recordings that started in the range, by start time.
    ///
    /// The range is as for [`Self::by_number`].
    pub fn by_time(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<IndexedCall>, IndexError> {
        let ids = self.scan(&self.trees.by_start, Vec::new(), from_ms, to_ms)?;
        self.load_all(ids)
    }

    /// Ids of recordings that started before `to_ms` (exclusive), oldest first.
    pub(crate) fn ids_started_before(
        &self,
        to_ms: i64,
    ) -> Result<Vec<(i64, RecordingId)>, IndexError> {
        self.scan(&self.trees.by_start, Vec::new(), None, Some(to_ms))
    }

    fn by_term(
        &self,
        tree: &Tree,
        term: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<IndexedCall>, IndexError> {
        let Some(prefix) = keys::term_prefix(term) else {
            return Ok(Vec::new());
        };
        let ids = self.scan(tree, prefix, from_ms, to_ms)?;
        self.load_all(ids)
    }

    /// Starts and ids of the keys under `prefix` whose start is in the range.
    fn scan(
        &self,
        tree: &Tree,
        prefix: Vec<u8>,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<(i64, RecordingId)>, IndexError> {
        let prefix_len = prefix.len();
        let mut lower = prefix.clone();
        lower.extend_from_slice(&keys::time(from_ms.unwrap_or(i64::MIN)));
        let mut found = Vec::new();
        for entry in tree.range(lower..) {
            let (key, _) = entry.map_err(|e| self.storage(e))?;
            if !key.starts_with(&prefix) {
                break;
            }
            let (start, id) = keys::start_and_id(&key, prefix_len)
                .ok_or_else(|| self.corrupt("a secondary key is truncated".to_owned()))?;
            if to_ms.is_some_and(|to| start >= to) {
                break;
            }
            found.push((start, id));
        }
        Ok(found)
    }

    fn load_all(&self, ids: Vec<(i64, RecordingId)>) -> Result<Vec<IndexedCall>, IndexError> {
        ids.into_iter()
            .map(|(_, id)| {
                self.get(&id)?.ok_or_else(|| {
                    self.corrupt(format!("a secondary key names {id}, which is not indexed"))
                })
            })
            .collect()
    }

    /// Places a legal hold on a recording; it then survives retention.
    pub fn hold(
        &self,
        id: &RecordingId,
        reason: &str,
        operator: &str,
        at_ms: i64,
    ) -> Result<(), IndexError> {
        if reason.trim().is_empty() {
            return Err(IndexError::MissingReason);
        }
        let mut holds = self.holds.lock();
        if holds.contains_key(id) {
            return Err(IndexError::AlreadyHeld { id: id.clone() });
        }
        // Not `self.get`: it takes the holds' lock, held here.
        let known = self.trees.calls.contains_key(id.0.as_bytes());
        if !known.map_err(|e| self.storage(e))? {
            return Err(IndexError::UnknownRecording { id: id.clone() });
        }
        let hold = Hold {
            reason: reason.to_owned(),
            operator: operator.to_owned(),
            since_ms: at_ms,
        };
        let mut changed = holds.clone();
        changed.insert(id.clone(), hold);
        self.holds.save(&changed)?;
        *holds = changed;
        Ok(())
    }

    /// Releases a recording's hold, returning it; `None` if it was not held.
    pub fn release(&self, id: &RecordingId) -> Result<Option<Hold>, IndexError> {
        let mut holds = self.holds.lock();
        let mut changed = holds.clone();
        let Some(released) = changed.remove(id) else {
            return Ok(None);
        };
        self.holds.save(&changed)?;
        *holds = changed;
        Ok(Some(released))
    }

    /// Every hold, by recording id, including holds on recordings no longer indexed.
    pub fn holds(&self) -> Vec<(RecordingId, Hold)> {
        self.holds
            .lock()
            .iter()
            .map(|(id, hold)| (id.clone(), hold.clone()))
            .collect()
    }

    /// Number of recordings indexed.
    pub fn len(&self) -> usize {
        self.call_count.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index takes on disk: the database and the holds file.
    pub fn size_on_disk(&self) -> Result<u64, IndexError> {
        let db = self.db.size_on_disk().map_err(|e| self.storage(e))?;
        Ok(db + self.holds.size_on_disk())
    }

    /// Rebuilds the index in `dir` from the recordings' own metadata.
    ///
    /// The new database is written beside the old one and swapped in by renames, so a
    /// rebuild that fails leaves the old index as it was. Legal holds are kept: they
    /// live outside the database. A record whose id comes again replaces the earlier
    /// one. The index must not be open, here or in another process.
    pub fn rebuild(
        dir: &Path,
        records: impl IntoIterator<Item = (RecordingMetadata, String)>,
    ) -> Result<Index, IndexError> {
        create_dir(dir)?;
        let holds_path = HoldFile::load(dir)?.path().to_owned();
        ensure_not_open(dir)?;
        let rebuild_path = dir.join(REBUILD_DIR);
        remove_dir_if_present(&rebuild_path)?;
        let count = build(&rebuild_path, records)?;
        swap_in(dir)?;
        tracing::info!(
            path = %dir.display(),
            calls = count,
            holds_file = %holds_path.display(),
            "index rebuilt from the recording files"
        );
        Self::open(dir)
    }

    /// Runs `body` as one transaction over every tree, then flushes it to disk.
    fn transaction<T>(
        &self,
        body: impl Fn(&TransactionTrees<'_>) -> Result<T, ConflictableTransactionError<IndexError>>,
    ) -> Result<T, IndexError> {
        let trees = &self.trees;
        let all = (
            &trees.calls,
            &trees.by_start,
            &trees.by_number,
            &trees.by_extension,
            &trees.meta,
        );
        let (result, sequence) = all
            .transaction(|(calls, by_start, by_number, by_extension, meta)| {
                let trees = TransactionTrees {
                    calls,
                    by_start,
                    by_number,
                    by_extension,
                    meta,
                };
                let result = body(&trees)?;
                Ok((result, next_commit(&trees)?))
            })
            .map_err(|error| match error {
                TransactionError::Abort(error) => self.with_path(error),
                TransactionError::Storage(error) => self.storage(error),
            })?;
        self.db.flush().map_err(|e| self.storage(e))?;
        self.commit.record(sequence)?;
        Ok(result)
    }

    fn with_hold(&self, stored: StoredCall) -> IndexedCall {
        let hold = self.holds.lock().get(&stored.meta.id).cloned();
        IndexedCall {
            meta: stored.meta,
            file_name: stored.file_name,
            hold,
        }
    }

    fn db_path(&self) -> PathBuf {
        self.dir.join(DB_DIR)
    }

    fn storage(&self, error: sled::Error) -> IndexError {
        storage_error(&self.db_path(), error)
    }

    /// Names this index's database in a corruption found without it.
    fn with_path(&self, error: IndexError) -> IndexError {
        match error {
            IndexError::Corrupt { reason, .. } => self.corrupt(reason),
            other => other,
        }
    }

    fn corrupt(&self, reason: String) -> IndexError {
        IndexError::Corrupt {
            path: self.db_path(),
            reason,
        }
    }
}

/// The outcome of [`Index::delete_unless_held`].
#[derive(Debug)]
pub(crate) enum Deletion<E> {
    Deleted,
    Held,
    Failed(E),
}

/// What [`Index::replace_unless_held`] did.
#[derive(Debug)]
pub(crate) enum Replacement<E> {
    Replaced,
    Held,
    /// Not in the index (purged, or never indexed).
    Absent,
    Failed(E),
}

/// Every tree, inside a transaction.
struct TransactionTrees<'a> {
    calls: &'a TransactionalTree,
    by_start: &'a TransactionalTree,
    by_number: &'a TransactionalTree,
    by_extension: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

fn insert_keys(
    trees: &TransactionTrees<'_>,
    keys: &SecondaryKeys,
) -> Result<(), UnabortableTransactionError> {
    trees.by_start.insert(keys.start.as_slice(), &[])?;
    for key in &keys.numbers {
        trees.by_number.insert(key.as_slice(), &[])?;
    }
    if let Some(key) = &keys.extension {
        trees.by_extension.insert(key.as_slice(), &[])?;
    }
    Ok(())
}

fn remove_keys(
    trees: &TransactionTrees<'_>,
    keys: &SecondaryKeys,
) -> Result<(), UnabortableTransactionError> {
    trees.by_start.remove(keys.start.as_slice())?;
    for key in &keys.numbers {
        trees.by_number.remove(key.as_slice())?;
    }
    if let Some(key) = &keys.extension {
        trees.by_extension.remove(key.as_slice())?;
    }
    Ok(())
}

fn add_to_count(
    trees: &TransactionTrees<'_>,
    change: i64,
) -> Result<(), ConflictableTransactionError<IndexError>> {
    let current = read_transactional_counter(trees, META_CALL_COUNT)?;
    let updated = current.saturating_add_signed(change);
    trees.meta.insert(META_CALL_COUNT, &updated.to_be_bytes())?;
    Ok(())
}

/// Bumps the commit sequence; returns the new value.
fn next_commit(
    trees: &TransactionTrees<'_>,
) -> Result<u64, ConflictableTransactionError<IndexError>> {
    let next = read_transactional_counter(trees, META_COMMIT_SEQUENCE)? + 1;
    trees
        .meta
        .insert(META_COMMIT_SEQUENCE, &next.to_be_bytes())?;
    Ok(next)
}

fn read_transactional_counter(
    trees: &TransactionTrees<'_>,
    key: &[u8],
) -> Result<u64, ConflictableTransactionError<IndexError>> {
    trees
        .meta
        .get(key)?
        .and_then(|value| <[u8; 8]>::try_from(value.as_ref()).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| {
            ConflictableTransactionError::Abort(corrupt_reason(
                "a counter in its meta tree is missing",
            ))
        })
}

/// A corruption found inside a transaction; the path is filled in afterwards.
fn corrupt_reason(reason: &str) -> IndexError {
    IndexError::Corrupt {
        path: PathBuf::new(),
        reason: reason.to_owned(),
    }
}

fn decode(value: &[u8]) -> Result<StoredCall, IndexError> {
    serde_json::from_slice(value)
        .map_err(|error| corrupt_reason(&format!("a call record does not decode: {error}")))
}

fn open_db(path: &Path) -> Result<sled::Db, IndexError> {
    open_db_with_cache(path, CACHE_BYTES)
}

fn open_db_with_cache(path: &Path, cache_bytes: u64) -> Result<sled::Db, IndexError> {
    let config = sled::Config::new().path(path).cache_capacity(cache_bytes);
    // sled 0.34 panics on some damaged logs while recovering them at open ("tried to
    // serialize Uninitialized"); that is a corrupt index, not a reason to crash.
    match panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(opened) => opened.map_err(|error| storage_error(path, error)),
        Err(_) => Err(IndexError::Corrupt {
            path: path.to_owned(),
            reason: "sled panicked while recovering its log".to_owned(),
        }),
    }
}

fn open_trees(db: &sled::Db, path: &Path) -> Result<Trees, IndexError> {
    let open = |name: &str| db.open_tree(name).map_err(|e| storage_error(path, e));
    Ok(Trees {
        calls: open("calls")?,
        by_start: open("by_start")?,
        by_number: open("by_number")?,
        by_extension: open("by_extension")?,
        meta: open("meta")?,
    })
}

/// Sorts sled's errors into the ones an operator can act on.
fn storage_error(path: &Path, error: sled::Error) -> IndexError {
    let path = path.to_owned();
    match error {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            IndexError::Locked { path }
        }
        sled::Error::Corruption { .. } => IndexError::Corrupt {
            path,
            reason: "sled found a damaged page".to_owned(),
        },
        sled::Error::Unsupported(reason) | sled::Error::ReportableBug(reason) => {
            IndexError::Corrupt { path, reason }
        }
        source => IndexError::Storage { path, source },
    }
}

fn check_schema(db: &sled::Db, path: &Path) -> Result<(), IndexError> {
    let corrupt = |reason: String| IndexError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let meta = db.open_tree("meta").map_err(|e| storage_error(path, e))?;
    let value = meta
        .get(META_SCHEMA_VERSION)
        .map_err(|e| storage_error(path, e))?
        .ok_or_else(|| corrupt("its schema version marker is missing".to_owned()))?;
    let version = <[u8; 4]>::try_from(value.as_ref())
        .map(u32::from_be_bytes)
        .map_err(|_| corrupt("its schema version marker is damaged".to_owned()))?;
    if version != SCHEMA_VERSION {
        return Err(corrupt(format!(
            "schema version {version}, and this callvault reads version {SCHEMA_VERSION}"
        )));
    }
    Ok(())
}

fn read_counter(db: &sled::Db, path: &Path, key: &[u8]) -> Result<u64, IndexError> {
    let meta = db.open_tree("meta").map_err(|e| storage_error(path, e))?;
    meta.get(key)
        .map_err(|e| storage_error(path, e))?
        .and_then(|value| <[u8; 8]>::try_from(value.as_ref()).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| IndexError::Corrupt {
            path: path.to_owned(),
            reason: format!("its {} is missing", String::from_utf8_lossy(key)),
        })
}

/// Opens the commit witness and checks that the database has every commit it saw.
fn check_commit(db: &sled::Db, path: &Path) -> Result<CommitWitness, IndexError> {
    let in_database = read_counter(db, path, META_COMMIT_SEQUENCE)?;
    let (witness, witnessed) = CommitWitness::open(path)?;
    if in_database < witnessed {
        return Err(IndexError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "it has lost committed changes: it holds commit {in_database}, but commit \
                 {witnessed} was written"
            ),
        });
    }
    Ok(witness)
}

/// Writes the schema version and the counters, then flushes.
fn write_marker(db: &sled::Db, path: &Path, count: u64) -> Result<(), IndexError> {
    let meta = db.open_tree("meta").map_err(|e| storage_error(path, e))?;
    meta.insert(META_CALL_COUNT, &count.to_be_bytes())
        .and_then(|_| meta.insert(META_COMMIT_SEQUENCE, &0u64.to_be_bytes()))
        .and_then(|_| meta.insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes()))
        .and_then(|_| db.flush())
        .map_err(|e| storage_error(path, e))?;
    Ok(())
}

/// Fails with [`IndexError::Locked`] if a process has the index in `dir` open.
fn ensure_not_open(dir: &Path) -> Result<(), IndexError> {
    if !Index::exists(dir) {
        return Ok(());
    }
    // sled's lock is the only sign of another user. Opening a damaged database may
    // fail in other ways; those do not matter, since it is about to be replaced.
    match open_db(&dir.join(DB_DIR)) {
        Err(error @ IndexError::Locked { .. }) => Err(error),
        _ => Ok(()),
    }
}

/// Writes a fresh database at `path` from `records`; returns the call count.
fn build(
    path: &Path,
    records: impl IntoIterator<Item = (RecordingMetadata, String)>,
) -> Result<u64, IndexError> {
    let db = open_db_with_cache(path, REBUILD_CACHE_BYTES)?;
    let trees = open_trees(&db, path)?;
    let storage = |error| storage_error(path, error);
    let mut count = 0;
    // Nothing else sees this database until it is swapped in, so plain writes do: no
    // transaction, and one flush at the end.
    for (meta, file_name) in records {
        let value = encode(&meta, &file_name);
        let previous = trees
            .calls
            .insert(meta.id.0.as_bytes(), value)
            .map_err(storage)?;
        match previous {
            Some(previous) => {
                let previous = decode(&previous)?;
                remove_plain_keys(&trees, &SecondaryKeys::of(&previous.meta)).map_err(storage)?;
            }
            None => count += 1,
        }
        insert_plain_keys(&trees, &SecondaryKeys::of(&meta)).map_err(storage)?;
    }
    write_marker(&db, path, count)?;
    CommitWitness::create(path, 0)?;
    Ok(count)
}

fn insert_plain_keys(trees: &Trees, keys: &SecondaryKeys) -> sled::Result<()> {
    trees.by_start.insert(keys.start.as_slice(), &[])?;
    for key in &keys.numbers {
        trees.by_number.insert(key.as_slice(), &[])?;
    }
    if let Some(key) = &keys.extension {
        trees.by_extension.insert(key.as_slice(), &[])?;
    }
    Ok(())
}

fn remove_plain_keys(trees: &Trees, keys: &SecondaryKeys) -> sled::Result<()> {
    trees.by_start.remove(keys.start.as_slice())?;
    for key in &keys.numbers {
        trees.by_number.remove(key.as_slice())?;
    }
    if let Some(key) = &keys.extension {
        trees.by_extension.remove(key.as_slice())?;
    }
    Ok(())
}

/// Replaces `dir/db` with `dir/db.rebuild`.
///
/// Two renames: a crash between them leaves no `db`, which the next start reports as a
/// missing index; `reindex` then runs again. Holds are outside both, so never at risk.
fn swap_in(dir: &Path) -> Result<(), IndexError> {
    let db = dir.join(DB_DIR);
    let old = dir.join(OLD_DIR);
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| IndexError::Io {
            action,
            path,
            source,
        }
    };
    remove_dir_if_present(&old)?;
    if db.exists() {
        fs::rename(&db, &old).map_err(io("moving the old index aside", &db))?;
    }
    fs::rename(dir.join(REBUILD_DIR), &db).map_err(io("moving the rebuilt index in", &db))?;
    holds::sync_dir(dir).map_err(io("syncing the index directory", dir))?;
    if let Err(error) = fs::remove_dir_all(&old) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::debug!(path = %old.display(), %error, "old index left behind");
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), IndexError> {
    fs::create_dir_all(dir).map_err(|source| IndexError::Io {
        action: "creating the index directory",
        path: dir.to_owned(),
        source,
    })
}

fn remove_dir_if_present(path: &Path) -> Result<(), IndexError> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(IndexError::Io {
            action: "removing a leftover index directory",
            path: path.to_owned(),
            source: error,
        }),
        _ => Ok(()),
    }
}
