//! Rewrapping and shredding: changes to the key slot, never to the audio.
//!
//! Both write the 64-byte key slot in place with one `pwrite`, then `fdatasync`. The
//! slot sits within the file's first 512 bytes, and drives write a sector whole, so
//! a power cut leaves the old slot or the new one. A device that tears sector writes
//! could leave a recording being rewrapped at that moment unreadable: there is one
//! slot, not two, so that any change to a header byte is detected.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::format::{self, FileHeader, BOUND_LEN, KEY_SLOT_LEN};
use super::{open_data_key, FileError, UnwrapKey};
use crate::keys::{KeyId, MasterKey};

/// Reads and checks a recording's header, without any key.
pub fn read_header(path: &Path) -> Result<FileHeader, FileError> {
    let mut file = File::open(path).map_err(FileError::io("opening the recording file"))?;
    FileHeader::read_from(&mut file)
}

/// Wraps a recording's data key with `new_master`, rewriting only the key slot.
///
/// Returns the id of the master key it was wrapped with before. The segments are
/// untouched: they stay sealed under the same data key.
pub fn rewrap<K>(path: &Path, keys: &K, new_master: &MasterKey) -> Result<KeyId, FileError>
where
    K: UnwrapKey + ?Sized,
{
    let mut file = open_for_update(path)?;
    let header = FileHeader::read_from(&mut file)?;
    let data_key = open_data_key(&header, keys)?;
    let wrapped = new_master.wrap(&data_key, header.context())?;
    write_key_slot(&file, &format::encode_key_slot(&wrapped))?;
    tracing::debug!(
        old_key_id = %header.key_id(),
        new_key_id = %new_master.id(),
        "rewrapped recording key"
    );
    Ok(header.key_id())
}

/// Destroys a recording by overwriting its wrapped key with zeros.
///
/// Readers then report [`FileError::Shredded`]. Copies of the file made before (a
/// backup) still hold the wrapped key and open with the master key.
pub fn shred(path: &Path) -> Result<(), FileError> {
    let mut file = open_for_update(path)?;
    // Parsing first makes sure only a recording's key slot is ever overwritten.
    FileHeader::read_from(&mut file)?;
    write_key_slot(&file, &[0; KEY_SLOT_LEN])
}

fn open_for_update(path: &Path) -> Result<File, FileError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(FileError::io("opening the recording file for update"))
}

fn write_key_slot(file: &File, slot: &[u8; KEY_SLOT_LEN]) -> Result<(), FileError> {
    file.write_all_at(slot, BOUND_LEN as u64)
        .map_err(FileError::io("writing the recording's key slot"))?;
    file.sync_data()
        .map_err(FileError::io("syncing the recording's key slot"))
}
