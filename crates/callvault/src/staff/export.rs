//! `callvault export`: one recording decrypted to a file a person can play.
//!
//! The file is written under a temporary name beside the target, the export is
//! audited, and only then is the file linked to its name. So a file appears only
//! with its audit entry, and an existing file is never replaced: the link fails.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use callvault_recorder::encode::OutputFormat;
use callvault_recorder::export::convert;
use callvault_store::audit::AuditAction;
use callvault_store::file::read_recording;
use callvault_store::index::IndexedCall;
use callvault_store::keys::Keyring;

use super::{open, recording_id, recording_path, say, Acting};
use crate::cli::{ExportFormat, Why};
use crate::config::Config;

/// `callvault export ID --format F --out FILE`.
pub(super) fn export(
    config: &Config,
    id: &str,
    format: ExportFormat,
    out: &Path,
    why: &Why,
) -> anyhow::Result<()> {
    let acting = Acting::from(why)?;
    let id = recording_id(id)?;
    refuse_existing(out)?;
    let (keyring, access) = open(config)?;
    let call = access.get(&id)?;
    let audio = decrypt(config, &keyring, &call, format)?;
    publish(out, &audio, || {
        acting.audit(config, AuditAction::Export, &id.to_string())
    })?;
    say(&format!(
        "wrote recording {id} to {} ({} bytes)",
        out.display(),
        audio.len()
    ));
    Ok(())
}

/// A recording's audio in `format`, decrypted and verified.
pub(super) fn decrypt(
    config: &Config,
    keyring: &Keyring,
    call: &IndexedCall,
    format: ExportFormat,
) -> anyhow::Result<Vec<u8>> {
    let id = &call.meta.id;
    let path = recording_path(config, &call.file_name);
    let recording =
        read_recording(&path, keyring).with_context(|| format!("cannot read recording {id}"))?;
    let media_type = &recording.metadata.media_type;
    convert(media_type, recording.audio, output_format(format))
        .with_context(|| format!("cannot convert recording {id}"))
}

fn output_format(format: ExportFormat) -> OutputFormat {
    match format {
        ExportFormat::Wav => OutputFormat::Wav,
        ExportFormat::Opus => OutputFormat::OggOpus,
    }
}

/// The file name extension of a format.
pub(super) fn extension(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Wav => "wav",
        ExportFormat::Opus => "opus",
    }
}

/// Fails if `path` exists: exports never replace a file.
pub(super) fn refuse_existing(path: &Path) -> anyhow::Result<()> {
    if path.symlink_metadata().is_ok() {
        anyhow::bail!("{} already exists; exports never overwrite", path.display());
    }
    Ok(())
}

/// Writes `bytes` to `path` (mode 0600), which must not exist, once `before`
/// succeeded; `before` runs after the bytes are safely on disk.
pub(super) fn publish<T>(
    path: &Path,
    bytes: &[u8],
    before: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let temporary = temporary_name(path);
    let written = write_private(&temporary, bytes)
        .with_context(|| format!("cannot write {}", temporary.display()));
    let outcome = written.and_then(|()| before()).and_then(|value| {
        fs::hard_link(&temporary, path)
            .map(|()| value)
            .with_context(|| match path.symlink_metadata() {
                Ok(_) => format!("{} already exists; exports never overwrite", path.display()),
                Err(_) => format!("cannot write {}", path.display()),
            })
    });
    let _ = fs::remove_file(&temporary);
    outcome
}

/// A new file with `bytes`, synced, readable by its owner only.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `.NAME.partial` beside `path`.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}
