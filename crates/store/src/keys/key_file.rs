//! The key file: its text format, and writing it so a crash never loses a key.
//!
//! ```text
//! callvault-keys 1
//! 00000001 <64 hex digits>
//! 00000002 <64 hex digits>
//! ```
//!
//! Ids strictly increase down the file and the last line is the current key.
//! `docs/keys.md` is the full description, for people restoring a backup.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{random_bytes, KeyError, KeyId, MasterKey, KEY_LEN};

/// The first line of every key file: the format's name and version.
pub(super) const HEADER: &str = "callvault-keys 1";

/// Bytes that may hold key material; wiped when dropped.
pub(super) struct SecretText(pub(super) Vec<u8>);

impl Drop for SecretText {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

/// Writes `keys` in the key file format.
pub(super) fn serialise<'a>(keys: impl IntoIterator<Item = &'a MasterKey>) -> SecretText {
    let mut text = SecretText(Vec::with_capacity(256));
    text.0.extend_from_slice(HEADER.as_bytes());
    text.0.push(b'\n');
    for key in keys {
        text.0.extend_from_slice(key.id().to_string().as_bytes());
        text.0.push(b' ');
        push_hex(&mut text.0, key.expose());
        text.0.push(b'\n');
    }
    text
}

/// Reads the key file format; `path` only names the file in errors.
pub(super) fn parse(text: &[u8], path: &Path) -> Result<Vec<MasterKey>, KeyError> {
    let malformed = |line: usize, reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut lines = body.split(|b| *b == b'\n');

    let header = lines.next().unwrap_or_default();
    if header != HEADER.as_bytes() {
        return Err(malformed(1, format!("the first line must be `{HEADER}`")));
    }

    let mut keys: Vec<MasterKey> = Vec::new();
    for (index, line) in lines.enumerate() {
        let number = index + 2;
        let key = parse_key_line(line).map_err(|reason| malformed(number, reason.into()))?;
        if let Some(previous) = keys.last() {
            if key.id() <= previous.id() {
                let reason = format!("key id {} does not follow {}", key.id(), previous.id());
                return Err(malformed(number, reason));
            }
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(malformed(2, "the file holds no key".into()));
    }
    Ok(keys)
}

/// Parses `<8 hex digits> <64 hex digits>`.
fn parse_key_line(line: &[u8]) -> Result<MasterKey, &'static str> {
    if line.is_empty() {
        return Err("blank line");
    }
    if line.ends_with(b"\r") {
        return Err("line ends in a carriage return (save the file with Unix line ends)");
    }
    let Some((id, key)) = split_once(line, b' ') else {
        return Err("expected `<8 hex digit id> <64 hex digit key>`");
    };

    let mut id_bytes = [0u8; 4];
    if id.len() != 8 || !decode_hex(id, &mut id_bytes) {
        return Err("the key id must be 8 hex digits");
    }
    let mut bytes = [0u8; KEY_LEN];
    if key.len() != 2 * KEY_LEN || !decode_hex(key, &mut bytes) {
        return Err("the key must be 64 hex digits");
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err("the key is all zeros, which is a placeholder, not a key");
    }
    Ok(MasterKey::new(KeyId(u32::from_be_bytes(id_bytes)), bytes))
}

fn split_once(line: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = line.iter().position(|b| *b == separator)?;
    Some((&line[..at], &line[at + 1..]))
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
}

/// Decodes hex digits of either case into `out`; false if any is not a digit.
fn decode_hex(text: &[u8], out: &mut [u8]) -> bool {
    fn nibble(digit: u8) -> Option<u8> {
        char::from(digit)
            .to_digit(16)
            .and_then(|n| u8::try_from(n).ok())
    }
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return false,
        }
    }
    true
}

/// Reads a key file after checking that only its owner can reach it.
pub(super) fn read_private(path: &Path) -> Result<SecretText, KeyError> {
    let file = File::open(path).map_err(io_error("open key file", path))?;
    // The mode is checked on the open file, so a swap of the path after the
    // check cannot slip another file in.
    let metadata = file
        .metadata()
        .map_err(io_error("inspect key file", path))?;
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    read_all(file, path, "read key file")
}

/// Reads a file whose access someone else controls (a systemd credential).
pub(super) fn read_unchecked(path: &Path) -> Result<SecretText, KeyError> {
    let file = File::open(path).map_err(io_error("open credential", path))?;
    read_all(file, path, "read credential")
}

fn read_all(mut file: File, path: &Path, action: &'static str) -> Result<SecretText, KeyError> {
    let mut text = SecretText(Vec::new());
    file.read_to_end(&mut text.0)
        .map_err(io_error(action, path))?;
    Ok(text)
}

/// Creates `path` with mode 0600, refusing to replace an existing file.
pub(super) fn create_new(path: &Path, text: &SecretText) -> Result<(), KeyError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
            _ => io_error("create key file", path)(source),
        })?;
    let written = write_synced(&mut file, text, path);
    if written.is_err() {
        // A half-written key file would make the next `keys init` refuse.
        let _ = fs::remove_file(path);
    }
    written?;
    sync_directory(path)
}

/// Replaces `path` by a new file holding `text`, atomically.
///
/// The new file is written beside the old one with mode 0600 and the old one's
/// owner, synced, then renamed over it; a crash leaves either file whole.
pub(super) fn replace(path: &Path, text: &SecretText) -> Result<(), KeyError> {
    let owner = fs::metadata(path).map_err(io_error("inspect key file", path))?;
    let temporary = temporary_path(path)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error("create key file", &temporary))?;

    let written = keep_owner(&file, &owner, &temporary)
        .and_then(|()| write_synced(&mut file, text, &temporary))
        .and_then(|()| fs::rename(&temporary, path).map_err(io_error("rename", &temporary)));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    sync_directory(path)
}

/// Gives the new file the old one's owner, so the daemon can still read it.
fn keep_owner(file: &File, owner: &fs::Metadata, path: &Path) -> Result<(), KeyError> {
    let metadata = file
        .metadata()
        .map_err(io_error("inspect key file", path))?;
    if metadata.uid() == owner.uid() && metadata.gid() == owner.gid() {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
        .map_err(io_error("give the old owner to", path))
}

fn temporary_path(path: &Path) -> Result<PathBuf, KeyError> {
    let mut suffix = [0u8; 8];
    random_bytes(&mut suffix)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    let mut hex = Vec::new();
    push_hex(&mut hex, &suffix);
    name.push(format!(".{}.tmp", String::from_utf8_lossy(&hex)));
    Ok(path.with_file_name(name))
}

fn write_synced(file: &mut File, text: &SecretText, path: &Path) -> Result<(), KeyError> {
    file.write_all(&text.0).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("sync", path))
}

/// Syncs the directory holding `path`, so the new name survives a power cut.
fn sync_directory(path: &Path) -> Result<(), KeyError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("sync directory", directory))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeyError {
    let path = path.to_path_buf();
    move |source| KeyError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialised_keys_parse_back_to_the_same_bytes() {
        let keys = [
            MasterKey::new(KeyId(1), [0x11; KEY_LEN]),
            MasterKey::new(KeyId(0xabcd), [0xfe; KEY_LEN]),
        ];
        let text = serialise(&keys);
        let parsed = parse(&text.0, Path::new("k")).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].id(), KeyId(0xabcd));
        assert_eq!(parsed[1].expose(), &[0xfe; KEY_LEN]);
    }

    #[test]
    fn uppercase_hex_and_a_missing_final_newline_are_accepted() {
        let text = format!("{HEADER}\n0000000A {}", "AB".repeat(KEY_LEN));
        let parsed = parse(text.as_bytes(), Path::new("k")).unwrap();
        assert_eq!(parsed[0].id(), KeyId(10));
        assert_eq!(parsed[0].expose(), &[0xab; KEY_LEN]);
    }

    #[test]
    fn signs_and_spaces_are_not_hex_digits() {
        let mut out = [0u8; 1];
        assert!(!decode_hex(b"+1", &mut out));
        assert!(!decode_hex(b" 1", &mut out));
        assert!(decode_hex(b"f0", &mut out));
        assert_eq!(out, [0xf0]);
    }
}
