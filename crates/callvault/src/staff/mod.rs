//! The staff commands: finding, exporting, holding and purging recordings.
//!
//! Each command that reads or changes recordings names its operator and reason
//! and writes them to the audit log. What needs the index goes through
//! [`IndexAccess`] (the running daemon, or the data directory opened here);
//! decrypting files and writing exports happen in this process.

mod calls;
mod export;
mod holds;
mod sar;
mod time;
mod verify;

use std::path::PathBuf;

use anyhow::Context as _;
use callvault_store::audit::{AuditAction, AuditEntry};
use callvault_store::keys::Keyring;
use callvault_store::{Layout, RecordingId};

use crate::admin::IndexAccess;
use crate::cli::{AuditCommand, CallsCommand, SarCommand, StaffCommand, Why};
use crate::config::{Config, Source};
use crate::operator::Operator;

/// Runs one staff command on the configuration `source` names.
pub(crate) fn run(source: &Source, command: StaffCommand) -> anyhow::Result<()> {
    let config = source.load()?;
    match command {
        StaffCommand::Calls { command } => match command {
            CallsCommand::List {
                filter,
                output,
                why,
            } => calls::list(&config, &filter, output, &why),
            CallsCommand::Search {
                filter,
                output,
                why,
            } => calls::search(&config, &filter, output, &why),
            CallsCommand::Show { id, output, why } => calls::show(&config, &id, output, &why),
        },
        StaffCommand::Export {
            id,
            format,
            out,
            why,
        } => export::export(&config, &id, format, &out, &why),
        StaffCommand::Sar(sar) => match sar.command {
            Some(SarCommand::Verify { dir }) => sar::verify(source, &dir),
            None => sar::make(&config, sar),
        },
        StaffCommand::Hold { id, why } => holds::hold(&config, &id, &why),
        StaffCommand::Release { id, why } => holds::release(&config, &id, &why),
        StaffCommand::Purge { dry_run, why } => holds::purge(&config, dry_run, &why),
        StaffCommand::Verify => verify::recordings_and_audit_log(&config),
        StaffCommand::Audit { command } => match command {
            AuditCommand::Show { last, output } => verify::show_audit(&config, last, output),
            AuditCommand::Verify => verify::audit_chain(&config),
        },
    }
}

/// Who acts and why, checked: the audit log needs both.
#[derive(Debug)]
struct Acting {
    operator: Operator,
    reason: String,
}

impl Acting {
    fn from(why: &Why) -> anyhow::Result<Self> {
        let reason = why.reason.trim();
        if reason.is_empty() {
            anyhow::bail!("--reason must say why, for the audit log");
        }
        Ok(Self {
            operator: Operator::choose(why.operator.operator.clone())?,
            reason: reason.to_owned(),
        })
    }

    /// Writes one entry of this operator and reason to the audit log.
    fn audit(
        &self,
        config: &Config,
        action: AuditAction,
        target: &str,
    ) -> anyhow::Result<AuditEntry> {
        crate::keys::audit(config, &self.operator, action, target, &self.reason)
    }
}

/// The master keys from the key file, which staff commands read directly.
fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    let path = &config.storage.key_file;
    Keyring::load(path)
        .with_context(|| format!("cannot load the master keys from {}", path.display()))
}

/// The keys and the index, through the daemon if it runs.
fn open(config: &Config) -> anyhow::Result<(Keyring, IndexAccess)> {
    let keyring = keyring(config)?;
    let access = IndexAccess::open(config, &keyring)?;
    Ok((keyring, access))
}

/// A recording id as typed: 32 hex digits.
fn recording_id(text: &str) -> anyhow::Result<RecordingId> {
    let text = text.trim().to_ascii_lowercase();
    let well_formed = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        anyhow::bail!("that is not a recording id: an id is 32 hex digits, as `calls list` shows");
    }
    Ok(RecordingId(text))
}

/// Where a recording's file is, from the file name the index gives.
fn recording_path(config: &Config, file_name: &str) -> PathBuf {
    Layout::new(&config.storage.data_dir)
        .recordings()
        .join(file_name)
}

#[expect(
    clippy::print_stdout,
    reason = "a staff command's result is its output"
)]
fn say(text: &str) {
    println!("{text}");
}
