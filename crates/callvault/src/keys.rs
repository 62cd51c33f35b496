//! `callvault keys`: creating and rotating the master keys, and loading them for the
//! daemon.

use anyhow::{bail, Context as _};
use callvault_store::audit::{AuditAction, AuditEntry, AuditLog};
use callvault_store::file;
use callvault_store::keys::{KeyError, Keyring};
use tracing::warn;

use crate::config::{Config, Source};
use crate::operator::Operator;

/// `callvault keys init`: creates the key file with a first key.
pub(crate) fn init(config: &Config, operator: &Operator) -> anyhow::Result<String> {
    let path = &config.storage.key_file;
    let keyring = create(path)?;
    let id = keyring.current().id().to_string();
    audit(
        config,
        operator,
        AuditAction::KeyInit,
        &id,
        "first master key",
    )?;
    Ok(format!("created master key {id} in {}", path.display()))
}

/// `callvault keys rotate`: adds a key that new recordings will use.
pub(crate) fn rotate(config: &Config, operator: &Operator, reason: &str) -> anyhow::Result<String> {
    let path = &config.storage.key_file;
    let mut keyring = Keyring::load(path)?;
    let id = keyring.rotate(path)?.to_string();
    audit(config, operator, AuditAction::KeyRotate, &id, reason)?;
    Ok(format!(
        "master key {id} added to {} and now used for new recordings; \
         restart the daemon for it to take effect",
        path.display()
    ))
}

/// `callvault keys rewrap`: moves every recording still sealed by an older key to the
/// current one, so the older key can later be retired. Only each file's key slot is
/// rewritten; the audio is not touched.
pub(crate) fn rewrap(config: &Config, operator: &Operator, reason: &str) -> anyhow::Result<String> {
    let keyring = Keyring::load(&config.storage.key_file)?;
    let current = keyring.current();
    let layout = callvault_store::Layout::new(&config.storage.data_dir);
    let mut moved = 0;
    for path in layout.finished_recordings()? {
        let header = file::read_header(&path).with_context(|| format!("{}", path.display()))?;
        if header.is_shredded() || header.key_id() == current.id() {
            continue;
        }
        file::rewrap(&path, &keyring, current).with_context(|| format!("{}", path.display()))?;
        moved += 1;
    }
    let target = format!("{moved} recordings to key {}", current.id());
    audit(config, operator, AuditAction::Rewrap, &target, reason)?;
    Ok(format!("rewrapped {target}"))
}

/// `callvault reindex`: rebuilds the index from the files, after recovering any that
/// a crash left unfinished.
pub(crate) fn reindex(
    config: &Config,
    operator: &Operator,
    reason: &str,
) -> anyhow::Result<String> {
    let keyring = Keyring::load(&config.storage.key_file)?;
    let data_dir = &config.storage.data_dir;
    let report = callvault_store::Store::reindex(data_dir, &keyring)?;
    let target = format!("{} recordings", report.indexed);
    audit(config, operator, AuditAction::Reindex, &target, reason)?;
    let mut summary = format!(
        "indexed {} recordings ({} recovered after a crash)",
        report.indexed,
        report.recovered.len()
    );
    for (path, error) in &report.unreadable {
        summary.push_str(&format!("\nnot indexed: {}: {error}", path.display()));
    }
    Ok(summary)
}

/// The daemon's keys: the systemd credential if one is configured, else the key
/// file. On the embedded default configuration a missing key file is created, with
/// a warning, so that trying callvault takes no setup; a real configuration needs
/// `callvault keys init` first.
pub(crate) fn for_daemon(config: &Config, source: &Source) -> anyhow::Result<Keyring> {
    if let Some(name) = &config.storage.key_credential {
        return Keyring::from_credential(name)
            .with_context(|| format!("cannot read the systemd credential {name:?}"));
    }
    let path = &config.storage.key_file;
    match Keyring::load(path) {
        Ok(keyring) => Ok(keyring),
        Err(KeyError::Io { source: error, .. })
            if error.kind() == std::io::ErrorKind::NotFound
                && matches!(source, Source::Embedded) =>
        {
            let keyring = create(path)?;
            let path = path.display();
            warn!(%path, "no master key yet: created one; without it no recording opens");
            Ok(keyring)
        }
        Err(KeyError::Io { source: error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "{} does not exist: create the master key with `callvault keys init`",
                path.display()
            )
        }
        Err(error) => Err(error.into()),
    }
}

/// Creates a key file and the directory it lives in.
fn create(path: &std::path::Path) -> anyhow::Result<Keyring> {
    if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
    }
    Keyring::init(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Appends to the audit log in the data directory.
pub(crate) fn audit(
    config: &Config,
    operator: &Operator,
    action: AuditAction,
    target: &str,
    reason: &str,
) -> anyhow::Result<AuditEntry> {
    let path = config.storage.data_dir.join("audit.log");
    std::fs::create_dir_all(&config.storage.data_dir)
        .with_context(|| format!("cannot create {}", config.storage.data_dir.display()))?;
    let mut log = AuditLog::open(&path)?;
    Ok(log.append(operator.name(), action, Some(target), reason)?)
}
