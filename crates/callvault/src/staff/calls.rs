//! `callvault calls list|search|show`: finding recorded calls.

use callvault_store::audit::AuditAction;
use callvault_store::index::IndexedCall;
use callvault_store::number::{normalise, DEFAULT_COUNTRY};
use callvault_store::{CallDirection, RecordingStatus};
use serde::Serialize;

use super::{open, recording_id, say, time, Acting};
use crate::admin::protocol::Query;
use crate::cli::{CallFilter, DirectionArg, Output, StatusArg, Why};
use crate::config::Config;

/// `calls list`: every call the filter lets through.
pub(super) fn list(
    config: &Config,
    filter: &CallFilter,
    output: Output,
    why: &Why,
) -> anyhow::Result<()> {
    let acting = Acting::from(why)?;
    let query = query(filter)?;
    let (_, access) = open(config)?;
    let calls = access.query(query.clone())?;
    acting.audit(config, AuditAction::Search, &describe(&query))?;
    print_calls(&calls, output)
}

/// `calls search`: as `list`, for a number or an extension.
pub(super) fn search(
    config: &Config,
    filter: &CallFilter,
    output: Output,
    why: &Why,
) -> anyhow::Result<()> {
    if filter.number.is_none() && filter.extension.is_none() {
        anyhow::bail!("search needs --number or --extension; `calls list` shows every call");
    }
    list(config, filter, output, why)
}

/// `calls show ID`: one call, with its hold and how it ended.
pub(super) fn show(config: &Config, id: &str, output: Output, why: &Why) -> anyhow::Result<()> {
    let acting = Acting::from(why)?;
    let id = recording_id(id)?;
    let (_, access) = open(config)?;
    let call = access.get(&id)?;
    acting.audit(config, AuditAction::Search, &format!("recording {id}"))?;
    if output.json {
        say(&to_json(&CallJson::of(&call))?);
    } else {
        say(&details(&call));
    }
    Ok(())
}

/// The query a filter asks for; a number must be a full phone number.
pub(super) fn query(filter: &CallFilter) -> anyhow::Result<Query> {
    let number = match &filter.number {
        Some(text) => Some(
            normalise(text, DEFAULT_COUNTRY)
                .map_err(|error| anyhow::anyhow!("that is not a phone number: {error}"))?
                .to_string(),
        ),
        None => None,
    };
    let (from_ms, to_ms) = time::range(filter.from.as_deref(), filter.to.as_deref())?;
    Ok(Query {
        number,
        extension: filter.extension.clone(),
        direction: filter.direction.map(direction),
        status: filter.status.map(status),
        from_ms,
        to_ms,
    })
}

fn direction(arg: DirectionArg) -> CallDirection {
    match arg {
        DirectionArg::Inbound => CallDirection::Inbound,
        DirectionArg::Outbound => CallDirection::Outbound,
        DirectionArg::Internal => CallDirection::Internal,
    }
}

fn status(arg: StatusArg) -> RecordingStatus {
    match arg {
        StatusArg::Recording => RecordingStatus::Recording,
        StatusArg::Complete => RecordingStatus::Complete,
        StatusArg::Degraded => RecordingStatus::Degraded,
        StatusArg::Partial => RecordingStatus::Partial,
        StatusArg::Failed => RecordingStatus::Failed,
    }
}

/// The query in words, as the audit log's target.
fn describe(query: &Query) -> String {
    let mut terms = Vec::new();
    let mut term = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            terms.push(format!("{name}={value}"));
        }
    };
    term("number", query.number.clone());
    term("extension", query.extension.clone());
    term("direction", query.direction.map(|d| json_name(&d)));
    term("status", query.status.map(|s| json_name(&s)));
    term("from", query.from_ms.map(time::rfc3339));
    term("to", query.to_ms.map(time::rfc3339));
    if terms.is_empty() {
        "all calls".to_owned()
    } else {
        terms.join(" ")
    }
}

/// A call as `--json` prints it.
#[derive(Debug, Serialize)]
pub(super) struct CallJson {
    id: String,
    start: String,
    duration_seconds: u64,
    direction: CallDirection,
    caller: String,
    callee: String,
    extension: Option<String>,
    status: RecordingStatus,
    media_type: String,
    held: bool,
    hold_reason: Option<String>,
    end_reason: Option<String>,
    lost_packets: u64,
}

impl CallJson {
    fn of(call: &IndexedCall) -> Self {
        let meta = &call.meta;
        Self {
            id: meta.id.to_string(),
            start: time::rfc3339(meta.start_ms),
            duration_seconds: duration_seconds(call),
            direction: meta.direction,
            caller: meta.caller.clone(),
            callee: meta.callee.clone(),
            extension: meta.extension.clone(),
            status: meta.status,
            media_type: meta.media_type.clone(),
            held: call.hold.is_some(),
            hold_reason: call.hold.as_ref().map(|hold| hold.reason.clone()),
            end_reason: meta.end_reason.clone(),
            lost_packets: meta.lost_packets,
        }
    }
}

/// Whole seconds from answer to the end of the recording, rounded.
pub(super) fn duration_seconds(call: &IndexedCall) -> u64 {
    let end = call.meta.end_ms.unwrap_or(call.meta.start_ms);
    u64::try_from((end - call.meta.start_ms + 500) / 1000).unwrap_or(0)
}

/// A serde enum's name as JSON writes it (`inbound`, `complete`).
pub(super) fn json_name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn to_json(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

fn print_calls(calls: &[IndexedCall], output: Output) -> anyhow::Result<()> {
    if output.json {
        let rows: Vec<CallJson> = calls.iter().map(CallJson::of).collect();
        say(&to_json(&rows)?);
    } else if calls.is_empty() {
        say("no calls match");
    } else {
        say(&table(calls));
    }
    Ok(())
}

/// The readable table: one call a line, the columns lined up.
fn table(calls: &[IndexedCall]) -> String {
    let header = [
        "ID",
        "START (UTC)",
        "LENGTH",
        "DIRECTION",
        "CALLER",
        "CALLEE",
    ];
    let header = header.into_iter().chain(["EXT", "STATUS", "HOLD"]);
    let mut rows = vec![header.map(str::to_owned).collect::<Vec<_>>()];
    for call in calls {
        let meta = &call.meta;
        rows.push(vec![
            meta.id.to_string(),
            time::date_time(meta.start_ms),
            time::duration(duration_seconds(call)),
            json_name(&meta.direction),
            meta.caller.clone(),
            meta.callee.clone(),
            meta.extension.clone().unwrap_or_else(|| "-".to_owned()),
            json_name(&meta.status),
            if call.hold.is_some() { "held" } else { "-" }.to_owned(),
        ]);
    }
    align(&rows)
}

/// Lines of cells, each column as wide as its widest cell.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells = row.iter().zip(&widths);
            let line: Vec<String> = cells
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            line.join("  ").trim_end().to_owned()
        })
        .collect();
    lines.join("\n")
}

/// Everything about one call, a field a line.
fn details(call: &IndexedCall) -> String {
    let meta = &call.meta;
    let or_dash = |value: Option<&String>| value.cloned().unwrap_or_else(|| "-".to_owned());
    let mut lines = vec![
        format!("id:           {}", meta.id),
        format!("start (UTC):  {}", time::date_time(meta.start_ms)),
        format!("length:       {}", time::duration(duration_seconds(call))),
        format!("direction:    {}", json_name(&meta.direction)),
        format!("caller:       {}", meta.caller),
        format!("callee:       {}", meta.callee),
        format!("extension:    {}", or_dash(meta.extension.as_ref())),
        format!("status:       {}", json_name(&meta.status)),
        format!("ended by:     {}", or_dash(meta.end_reason.as_ref())),
        format!("format:       {}", meta.media_type),
        format!("lost packets: {}", meta.lost_packets),
    ];
    if let Some(why) = &meta.status_reason {
        lines.push(format!("status note:  {why}"));
    }
    lines.push(match &call.hold {
        Some(hold) => format!(
            "legal hold:   since {} by {}: {}",
            time::date_time(hold.since_ms),
            hold.operator,
            hold.reason
        ),
        None => "legal hold:   none".to_owned(),
    });
    lines.join("\n")
}
