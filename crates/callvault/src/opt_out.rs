//! `callvault opt-out`: the patients whose calls are never recorded.
//!
//! Each change is written to the list's file in one rename, which the running
//! daemon notices within seconds, and to the audit log with who and why.

use anyhow::Context as _;
use callvault_store::audit::AuditAction;
use callvault_store::file::unix_ms_now;
use callvault_store::number::{normalise, DEFAULT_COUNTRY, E164};
use callvault_store::opt_out::OptOutList;
use callvault_store::retention::utc_day;

use crate::config::Config;
use crate::operator::Operator;

/// Adds `number` to the list.
pub(crate) fn add(
    config: &Config,
    operator: &Operator,
    number: &str,
    reason: &str,
) -> anyhow::Result<String> {
    let number = patient_number(number)?;
    change(
        config,
        operator,
        &number,
        reason,
        AuditAction::OptOutAdd,
        |list| list.add(number.clone(), unix_ms_now()),
    )?
    .then(|| format!("{number}: added; its calls are no longer recorded"))
    .ok_or_else(|| anyhow::anyhow!("{number} is already on the opt-out list"))
}

/// Removes `number` from the list.
pub(crate) fn remove(
    config: &Config,
    operator: &Operator,
    number: &str,
    reason: &str,
) -> anyhow::Result<String> {
    let number = patient_number(number)?;
    change(
        config,
        operator,
        &number,
        reason,
        AuditAction::OptOutRemove,
        |list| list.remove(&number),
    )?
    .then(|| format!("{number}: removed; its calls are recorded again"))
    .ok_or_else(|| anyhow::anyhow!("{number} is not on the opt-out list"))
}

/// The list, one number a line with the day it was added.
pub(crate) fn list(config: &Config) -> anyhow::Result<String> {
    let path = config.policy.opt_out_path(&config.storage);
    let list = OptOutList::load(&path)?;
    if list.is_empty() {
        return Ok("the opt-out list is empty".to_owned());
    }
    let lines: Vec<String> = list
        .iter()
        .map(|(number, entry)| format!("{number}  since {}", utc_day(entry.since_ms)))
        .collect();
    Ok(lines.join("\n"))
}

/// Applies `edit` and, if it changed the list, saves it and audits the change.
fn change(
    config: &Config,
    operator: &Operator,
    number: &E164,
    reason: &str,
    action: AuditAction,
    edit: impl FnOnce(&mut OptOutList) -> bool,
) -> anyhow::Result<bool> {
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must say why, for the audit log");
    }
    let path = config.policy.opt_out_path(&config.storage);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if !OptOutList::update(&path, edit)? {
        return Ok(false);
    }
    crate::keys::audit(config, operator, action, number.as_str(), reason)?;
    Ok(true)
}

/// A full phone number; the error does not repeat it.
fn patient_number(text: &str) -> anyhow::Result<E164> {
    normalise(text, DEFAULT_COUNTRY)
        .map_err(|error| anyhow::anyhow!("that is not a patient's phone number: {error}"))
}
