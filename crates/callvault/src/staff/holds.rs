//! `callvault hold|release|purge`: legal holds and retention.

use callvault_store::audit::AuditAction;
use callvault_store::RecordingId;

use super::{open, recording_id, say, Acting};
use crate::cli::Why;
use crate::config::Config;

/// `callvault hold ID --reason R`.
pub(super) fn hold(config: &Config, id: &str, why: &Why) -> anyhow::Result<()> {
    let acting = Acting::from(why)?;
    let id = recording_id(id)?;
    let (_, access) = open(config)?;
    access.hold(&id, acting.operator.name(), &acting.reason)?;
    acting.audit(config, AuditAction::Hold, &id.to_string())?;
    say(&format!(
        "recording {id} is on legal hold: it is kept past retention until released"
    ));
    Ok(())
}

/// `callvault release ID --reason R`.
pub(super) fn release(config: &Config, id: &str, why: &Why) -> anyhow::Result<()> {
    let acting = Acting::from(why)?;
    let id = recording_id(id)?;
    let (_, access) = open(config)?;
    let hold = access.release(&id)?;
    acting.audit(config, AuditAction::Release, &id.to_string())?;
    say(&format!(
        "recording {id} is released from the hold {} placed ({}); it now expires as any other",
        hold.operator, hold.reason
    ));
    Ok(())
}

/// `callvault purge [--dry-run] --reason R`: each deletion is audited.
///
/// A dry run reads no recording and changes nothing, so it writes no entry.
pub(super) fn purge(config: &Config, dry_run: bool, why: &Why) -> anyhow::Result<()> {
    let acting = Acting::from(why)?;
    let (_, access) = open(config)?;
    let report = access.purge(dry_run)?;
    for id in &report.deleted {
        acting.audit(config, AuditAction::Purge, &id.to_string())?;
    }
    let months = config.storage.retention_months;
    let mut lines = Vec::new();
    let mut list = |label: &str, ids: &[RecordingId]| {
        lines.extend(ids.iter().map(|id| format!("{label} {id}")));
    };
    list("would delete", &report.would_delete);
    list("deleted", &report.deleted);
    list("kept (legal hold)", &report.held_skipped);
    for (id, error) in &report.failed {
        lines.push(format!("not deleted {id}: {error}"));
    }
    let counted = if dry_run {
        format!("{} would be deleted", report.would_delete.len())
    } else {
        format!("{} deleted", report.deleted.len())
    };
    lines.push(format!(
        "recordings older than {months} months: {counted}, {} kept on legal hold, {} failed",
        report.held_skipped.len(),
        report.failed.len()
    ));
    say(&lines.join("\n"));
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} expired recordings could not be deleted",
            report.failed.len()
        );
    }
    Ok(())
}
