//! The audit log: who did what to which recording or key, when, and why.
//!
//! One JSON object per line in a file of its own, appended and never rewritten.
//! Each entry holds the SHA-256 of the entry before it, so an entry edited,
//! removed or moved breaks the chain at that point. `docs/audit-log.md` defines the
//! hashed bytes exactly, so the chain can be checked without callvault.
//!
//! The daemon and a staff command may append at the same moment: each append
//! holds an exclusive `flock` on the file while it reads the last entry and
//! writes the next, and readers hold a shared one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

/// The `prev_hash` of the first entry: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The most bytes an operator, target or reason may hold.
pub const MAX_FIELD_BYTES: usize = 4096;

/// Bytes hashed before an entry's fields, naming the format.
const DOMAIN: &[u8] = b"callvault-audit-1\0";

/// How far back a read steps at a time to find the last line.
const TAIL_STEP: u64 = 16 * 1024;

/// What was done. Named in the log in kebab case (`key-rotate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A recording written out as an audio file.
    Export,
    /// A recording played to a member of staff.
    Playback,
    /// Recordings looked up by number, extension or date; the target is the query.
    Search,
    /// A legal hold placed on a recording.
    Hold,
    /// A legal hold lifted.
    Release,
    /// A recording deleted by a member of staff.
    Delete,
    /// A recording deleted because its retention period ended.
    Purge,
    /// A recording a crash cut short, recovered up to its last whole segment.
    Recover,
    /// The index rebuilt from the recording files.
    Reindex,
    /// The key file created.
    KeyInit,
    /// A new master key made current.
    KeyRotate,
    /// A recording's data key wrapped anew with the current master key.
    Rewrap,
    /// A recording destroyed by overwriting its wrapped key.
    Shred,
    /// A number added to the patient opt-out list; the target is the number.
    OptOutAdd,
    /// A number removed from the patient opt-out list.
    OptOutRemove,
    /// The recording policy lists reloaded (personal extensions, opt-outs).
    PolicyReload,
    /// A subject access request bundle made; the target is the number.
    SubjectAccessExport,
}

impl AuditAction {
    /// The action's name as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Export => "export",
            Self::Playback => "playback",
            Self::Search => "search",
            Self::Hold => "hold",
            Self::Release => "release",
            Self::Delete => "delete",
            Self::Purge => "purge",
            Self::Recover => "recover",
            Self::Reindex => "reindex",
            Self::KeyInit => "key-init",
            Self::KeyRotate => "key-rotate",
            Self::Rewrap => "rewrap",
            Self::Shred => "shred",
            Self::OptOutAdd => "opt-out-add",
            Self::OptOutRemove => "opt-out-remove",
            Self::PolicyReload => "policy-reload",
            Self::SubjectAccessExport => "subject-access-export",
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// 1 for the first entry, then one more for each.
    pub seq: u64,
    /// Unix time of the action, in milliseconds.
    pub time_ms: i64,
    /// Who acted: a staff login, or `callvault` for the daemon itself.
    pub operator: String,
    pub action: AuditAction,
    /// What was acted on: a recording id, a key id, or a phone number (E.164).
    pub target: Option<String>,
    /// Why, in the operator's words.
    pub reason: String,
    /// The `hash` of the entry before, or [`GENESIS_HASH`].
    pub prev_hash: String,
    /// SHA-256 of this entry's other fields, as 64 lowercase hex digits.
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry's fields call for, whatever its `hash` says.
    pub fn compute_hash(&self) -> String {
        let mut context = Context::new(&SHA256);
        context.update(DOMAIN);
        context.update(&self.seq.to_be_bytes());
        context.update(&self.time_ms.to_be_bytes());
        update_text(&mut context, &self.operator);
        update_text(&mut context, self.action.as_str());
        match &self.target {
            None => context.update(&[0]),
            Some(target) => {
                context.update(&[1]);
                update_text(&mut context, target);
            }
        }
        update_text(&mut context, &self.reason);
        update_text(&mut context, &self.prev_hash);
        to_hex(context.finish().as_ref())
    }
}

/// Feeds `text` prefixed by its length (4 bytes, big-endian).
fn update_text(context: &mut Context, text: &str) {
    let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
    context.update(&length.to_be_bytes());
    context.update(text.as_bytes());
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A chain that verified from its first entry to its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    pub entries: u64,
    /// The last entry's hash ([`GENESIS_HASH`] for an empty log). Kept
    /// elsewhere, it shows later whether entries were cut from the end.
    pub last_hash: String,
}

/// What is wrong at the first broken link of the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkFault {
    #[error("the line is not an audit entry ({0})")]
    Unparseable(String),
    #[error("the line differs from what callvault writes (spacing, escapes or field order)")]
    NotCanonical,
    #[error("the entry has sequence number {found}")]
    SeqGap { found: u64 },
    #[error("its prev_hash is not the hash of the entry before it")]
    PrevHashMismatch,
    #[error("its hash does not match its contents")]
    HashMismatch,
    #[error("the last line is incomplete (no final newline)")]
    TruncatedLastLine,
}

/// Why the audit log could not be read, written or trusted.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("could not {action} audit log {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "audit log {} has mode {mode:04o}, which gives users other than its owner \
         access; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("an audit entry needs a non-empty {field}")]
    EmptyField { field: &'static str },
    #[error("the audit entry's {field} {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("the audit chain is broken at entry {seq} (line {line}): {fault}")]
    BrokenLink {
        seq: u64,
        line: u64,
        #[source]
        fault: LinkFault,
    },
    #[error(
        "audit log {} ends in a partial entry, left by a failed write; keep a copy \
         of the file, then run `truncate -s {offset} {}`",
        path.display(),
        path.display()
    )]
    PartialTail { path: PathBuf, offset: u64 },
    #[error(
        "the last entry of audit log {} is unreadable ({reason}); \
         run `callvault audit verify`",
        path.display()
    )]
    UnreadableTail { path: PathBuf, reason: String },
}

/// The audit log file, open for appending.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
}

impl AuditLog {
    /// Opens the log at `path`, creating it with mode 0600 if missing.
    ///
    /// Refuses a file that users other than its owner may access. A damaged
    /// log still opens, so that [`AuditLog::verify`] can say where it broke;
    /// [`AuditLog::append`] is what refuses to chain to a damaged last entry.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let file = open_or_create(path)?;
        let mode = file.metadata().map_err(io_error("inspect", path))?.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(AuditError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends an entry chained to the last one, and syncs it to disk.
    ///
    /// The last entry is read again under the lock, since another process may
    /// have appended since this one did. A partial or unreadable last entry is
    /// refused ([`AuditError::PartialTail`], [`AuditError::UnreadableTail`]):
    /// an entry chained to it could never verify.
    pub fn append(
        &mut self,
        operator: &str,
        action: AuditAction,
        target: Option<&str>,
        reason: &str,
    ) -> Result<AuditEntry, AuditError> {
        check_field("operator", operator)?;
        check_field("reason", reason)?;
        if let Some(target) = target {
            check_field("target", target)?;
        }

        let _exclusive = self.lock_exclusive()?;
        let last = self.last_entry()?;
        let mut entry = AuditEntry {
            seq: last.as_ref().map_or(1, |entry| entry.seq + 1),
            time_ms: now_ms(),
            operator: operator.to_owned(),
            action,
            target: target.map(str::to_owned),
            reason: reason.to_owned(),
            prev_hash: last.map_or_else(|| GENESIS_HASH.to_owned(), |entry| entry.hash),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        self.write_line(&entry)?;
        Ok(entry)
    }

    /// Every entry, oldest first, without checking the chain.
    pub fn entries(&self) -> Result<Vec<AuditEntry>, AuditError> {
        let mut entries = Vec::new();
        self.scan(|_, entry| {
            entries.push(entry);
            Ok(())
        })?;
        Ok(entries)
    }

    /// Checks every link of the chain, reporting the first broken one.
    pub fn verify(&self) -> Result<VerifiedChain, AuditError> {
        let mut last_hash = GENESIS_HASH.to_owned();
        let entries = self.scan(|line, entry| {
            let fault = link_fault(line, &entry, &last_hash);
            if let Some(fault) = fault {
                return Err(AuditError::BrokenLink {
                    seq: line,
                    line,
                    fault,
                });
            }
            last_hash = entry.hash;
            Ok(())
        })?;
        Ok(VerifiedChain { entries, last_hash })
    }

    /// Reads each line in order, handing `visit` its number and its entry.
    ///
    /// An intact chain holds entry `n` on line `n`, so a line that cannot be
    /// read is reported as the entry its position calls for.
    fn scan(
        &self,
        mut visit: impl FnMut(u64, AuditEntry) -> Result<(), AuditError>,
    ) -> Result<u64, AuditError> {
        let _shared = self.lock_shared()?;
        let mut reader = BufReader::new(ReadAt {
            file: &self.file,
            offset: 0,
        });
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line);
            if read.map_err(io_error("read", &self.path))? == 0 {
                return Ok(number);
            }
            number += 1;
            let broken = |fault| AuditError::BrokenLink {
                seq: number,
                line: number,
                fault,
            };
            let Some(text) = line.strip_suffix(b"\n") else {
                return Err(broken(LinkFault::TruncatedLastLine));
            };
            visit(number, parse_line(text).map_err(broken)?)?;
        }
    }

    /// The last entry, read backwards from the end of the file.
    fn last_entry(&self) -> Result<Option<AuditEntry>, AuditError> {
        let Some((offset, line)) = self.last_line()? else {
            return Ok(None);
        };
        let Some(text) = line.strip_suffix(b"\n") else {
            return Err(AuditError::PartialTail {
                path: self.path.clone(),
                offset,
            });
        };
        match parse_line(text) {
            Ok(entry) => Ok(Some(entry)),
            Err(fault) => Err(AuditError::UnreadableTail {
                path: self.path.clone(),
                reason: fault.to_string(),
            }),
        }
    }

    /// The file's last line with its newline, if any, and where it starts.
    fn last_line(&self) -> Result<Option<(u64, Vec<u8>)>, AuditError> {
        let length = self
            .file
            .metadata()
            .map_err(io_error("inspect", &self.path))?
            .len();
        let mut start = length;
        let mut tail = Vec::new();
        while start > 0 {
            let step = TAIL_STEP.min(start);
            start -= step;
            let mut chunk = vec![0; usize::try_from(step).unwrap_or(usize::MAX)];
            let read = self.file.read_exact_at(&mut chunk, start);
            read.map_err(io_error("read", &self.path))?;
            chunk.extend_from_slice(&tail);
            tail = chunk;
            // The newline that ends the last line does not start it.
            if let Some(at) = tail[..tail.len() - 1].iter().rposition(|b| *b == b'\n') {
                return Ok(Some((start + at as u64 + 1, tail.split_off(at + 1))));
            }
        }
        Ok((!tail.is_empty()).then_some((0, tail)))
    }

    fn write_line(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(entry).expect("an audit entry always serialises");
        line.push(b'\n');
        // One write through O_APPEND, under the exclusive lock: no other
        // callvault process can interleave its own line.
        (&self.file)
            .write_all(&line)
            .map_err(io_error("append to", &self.path))?;
        self.file.sync_data().map_err(io_error("sync", &self.path))
    }

    fn lock_exclusive(&self) -> Result<Locked<'_>, AuditError> {
        self.file.lock().map_err(io_error("lock", &self.path))?;
        Ok(Locked(&self.file))
    }

    fn lock_shared(&self) -> Result<Locked<'_>, AuditError> {
        self.file
            .lock_shared()
            .map_err(io_error("lock", &self.path))?;
        Ok(Locked(&self.file))
    }
}

/// An advisory lock on the log, released when dropped.
struct Locked<'a>(&'a File);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an error here leaves nothing
        // to undo.
        let _ = self.0.unlock();
    }
}

/// Reads a file from an offset of its own, leaving the descriptor's alone.
struct ReadAt<'a> {
    file: &'a File,
    offset: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buffer, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

fn open_or_create(path: &Path) -> Result<File, AuditError> {
    let created = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(file) => {
            sync_directory(path)?;
            tracing::info!(path = %path.display(), "created audit log");
            Ok(file)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_error("open", path)),
        Err(error) => Err(io_error("create", path)(error)),
    }
}

/// Syncs the directory holding `path`, so a new file survives a power cut.
fn sync_directory(path: &Path) -> Result<(), AuditError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("sync the directory of", path))
}

/// Parses one line (without its newline), which must be exactly as written.
fn parse_line(text: &[u8]) -> Result<AuditEntry, LinkFault> {
    let entry: AuditEntry =
        serde_json::from_slice(text).map_err(|error| LinkFault::Unparseable(error.to_string()))?;
    // Any other spelling of the same values (spaces, escapes, key order) is a
    // change the hash would not see.
    if serde_json::to_vec(&entry).ok().as_deref() != Some(text) {
        return Err(LinkFault::NotCanonical);
    }
    Ok(entry)
}

/// What breaks the link from the entry before (hash `prev_hash`) to `entry`.
fn link_fault(seq: u64, entry: &AuditEntry, prev_hash: &str) -> Option<LinkFault> {
    if entry.seq != seq {
        Some(LinkFault::SeqGap { found: entry.seq })
    } else if entry.prev_hash != prev_hash {
        Some(LinkFault::PrevHashMismatch)
    } else if entry.hash != entry.compute_hash() {
        Some(LinkFault::HashMismatch)
    } else {
        None
    }
}

/// Refuses what would make a useless or unreadable entry.
fn check_field(field: &'static str, value: &str) -> Result<(), AuditError> {
    let invalid = |reason| Err(AuditError::InvalidField { field, reason });
    if value.trim().is_empty() {
        return Err(AuditError::EmptyField { field });
    }
    if value.len() > MAX_FIELD_BYTES {
        return invalid("is longer than 4096 bytes");
    }
    if value.chars().any(char::is_control) {
        return invalid("holds a control character (line break, tab or similar)");
    }
    Ok(())
}

fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_match_their_serde_names() {
        use AuditAction::*;
        let all = [
            Export,
            Playback,
            Search,
            Hold,
            Release,
            Delete,
            Purge,
            Recover,
            Reindex,
            KeyInit,
            KeyRotate,
            Rewrap,
            Shred,
            OptOutAdd,
            OptOutRemove,
            PolicyReload,
            SubjectAccessExport,
        ];
        for action in all {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
        }
    }

    #[test]
    fn hash_binds_the_difference_between_no_target_and_an_empty_one() {
        let mut entry = AuditEntry {
            seq: 1,
            time_ms: 0,
            operator: "a".into(),
            action: AuditAction::Hold,
            target: None,
            reason: "r".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        let without = entry.compute_hash();
        entry.target = Some(String::new());
        assert_ne!(without, entry.compute_hash());
    }

    #[test]
    fn fields_with_line_breaks_or_only_spaces_are_refused() {
        assert!(matches!(
            check_field("reason", " \t"),
            Err(AuditError::EmptyField { field: "reason" })
        ));
        assert!(matches!(
            check_field("reason", "two\nlines"),
            Err(AuditError::InvalidField { .. })
        ));
        assert!(check_field("reason", "complaint ref 2024/17, Dr Shah").is_ok());
    }
}
