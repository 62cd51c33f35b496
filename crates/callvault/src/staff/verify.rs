//! `callvault verify` and `callvault audit show|verify`: integrity checks.
//!
//! Neither shows anyone a recording's content, so neither writes to the audit
//! log; `verify` decrypts every file to check it, and keeps nothing.

use callvault_store::audit::{AuditEntry, AuditLog};
use callvault_store::file::{self, FileError};
use callvault_store::Layout;

use super::{keyring, say, time};
use crate::cli::Output;
use crate::config::Config;

/// Checks every finished recording and the audit log's chain.
pub(super) fn recordings_and_audit_log(config: &Config) -> anyhow::Result<()> {
    let keyring = keyring(config)?;
    let layout = Layout::new(&config.storage.data_dir);
    let files = layout.finished_recordings()?;
    let mut failed = 0;
    for path in &files {
        match file::verify(path, &keyring) {
            Ok(_) | Err(FileError::Shredded) => {}
            Err(error) => {
                failed += 1;
                say(&format!("FAILED {}: {error}", path.display()));
            }
        }
    }
    say(&format!(
        "recordings: {} of {} verified",
        files.len() - failed,
        files.len()
    ));
    let chain = audit_log(config)?.verify();
    if let Ok(chain) = &chain {
        say(&format!(
            "audit log: {} entries, chain intact",
            chain.entries
        ));
    }
    chain?;
    if failed > 0 {
        anyhow::bail!("{failed} recording files failed verification");
    }
    Ok(())
}

/// `audit verify`.
pub(super) fn audit_chain(config: &Config) -> anyhow::Result<()> {
    let log = audit_log(config)?;
    let chain = log.verify()?;
    say(&format!(
        "audit log: {} entries, chain intact; last hash {}",
        chain.entries, chain.last_hash
    ));
    Ok(())
}

/// `audit show [--last N] [--json]`.
pub(super) fn show_audit(
    config: &Config,
    last: Option<usize>,
    output: Output,
) -> anyhow::Result<()> {
    let entries = audit_log(config)?.entries()?;
    let skip = last.map_or(0, |last| entries.len().saturating_sub(last));
    let entries = &entries[skip..];
    if output.json {
        say(&serde_json::to_string_pretty(entries)?);
    } else if entries.is_empty() {
        say("the audit log is empty");
    } else {
        let lines: Vec<String> = entries.iter().map(line).collect();
        say(&lines.join("\n"));
    }
    Ok(())
}

/// One entry as a line: number, time, who, what, on what, why.
fn line(entry: &AuditEntry) -> String {
    format!(
        "{:>5}  {}  {}  {}  {}  {}",
        entry.seq,
        time::date_time(entry.time_ms),
        entry.operator,
        entry.action.as_str(),
        entry.target.as_deref().unwrap_or("-"),
        entry.reason
    )
}

fn audit_log(config: &Config) -> anyhow::Result<AuditLog> {
    let path = Layout::new(&config.storage.data_dir).audit_log();
    if !path.exists() {
        anyhow::bail!("there is no audit log at {}", path.display());
    }
    Ok(AuditLog::open(&path)?)
}
