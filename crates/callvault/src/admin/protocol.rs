//! The admin socket's requests and responses: one JSON line each way.
//!
//! A client connects, writes one [`Request`] as a line of JSON, reads one
//! [`Response`] line, and the connection ends. [`handle`] answers a request from
//! an open store, in the daemon and in a command that opened the store itself.

use callvault_store::file::unix_ms_now;
use callvault_store::index::{Hold, IndexError, IndexedCall};
use callvault_store::number::{normalise, DEFAULT_COUNTRY};
use callvault_store::retention::{PurgeMode, PurgeReport};
use callvault_store::{CallDirection, RecordingId, RecordingStatus, Store, StoreError};
use serde::{Deserialize, Serialize};

/// The longest request line the daemon reads.
pub(crate) const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// What a staff command asks of the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Request {
    /// Whether a daemon is there, and on which data directory.
    Ping,
    /// Recorded calls matching a query, by start time.
    Query(Query),
    /// One recorded call.
    Get { id: RecordingId },
    /// Places a legal hold.
    Hold {
        id: RecordingId,
        operator: String,
        reason: String,
    },
    /// Lifts a legal hold.
    Release { id: RecordingId },
    /// Deletes what is past retention, unless held; or only lists it.
    Purge { dry_run: bool },
}

/// Which calls a query wants; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Query {
    /// A phone number in any spelling, as caller or callee.
    pub(crate) number: Option<String>,
    pub(crate) extension: Option<String>,
    pub(crate) direction: Option<CallDirection>,
    pub(crate) status: Option<RecordingStatus>,
    /// Unix milliseconds, inclusive.
    pub(crate) from_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub(crate) to_ms: Option<i64>,
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Response {
    Pong { data_dir: String },
    Calls { calls: Vec<IndexedCall> },
    Call { call: Box<IndexedCall> },
    Held,
    Released { hold: Hold },
    Purged { report: PurgeSummary },
    Failed { error: AdminError },
}

/// What a purge did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PurgeSummary {
    pub(crate) would_delete: Vec<RecordingId>,
    pub(crate) deleted: Vec<RecordingId>,
    pub(crate) held_skipped: Vec<RecordingId>,
    /// Recordings whose file could not be deleted, with why.
    pub(crate) failed: Vec<(RecordingId, String)>,
}

impl From<PurgeReport> for PurgeSummary {
    fn from(report: PurgeReport) -> Self {
        Self {
            would_delete: report.would_delete,
            deleted: report.deleted,
            held_skipped: report.held_skipped,
            failed: report
                .failed
                .into_iter()
                .map(|failure| (failure.id, failure.error.to_string()))
                .collect(),
        }
    }
}

/// Why a request failed, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(crate) enum AdminError {
    #[error("no recording {id}")]
    UnknownRecording { id: RecordingId },
    #[error("recording {id} is already on legal hold")]
    AlreadyHeld { id: RecordingId },
    #[error("recording {id} is not on legal hold")]
    NotHeld { id: RecordingId },
    #[error("that is not a phone number: {reason}")]
    BadNumber { reason: String },
    #[error("the request is not understood: {reason}")]
    BadRequest { reason: String },
    #[error("{reason}")]
    Store { reason: String },
}

impl From<IndexError> for AdminError {
    fn from(error: IndexError) -> Self {
        match error {
            IndexError::UnknownRecording { id } => Self::UnknownRecording { id },
            IndexError::AlreadyHeld { id } => Self::AlreadyHeld { id },
            other => Self::Store {
                reason: error_chain(&other),
            },
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Index(error) => error.into(),
            other => Self::Store {
                reason: error_chain(&other),
            },
        }
    }
}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Answers `request` from `store`, whose recordings are kept `retention_months`.
pub(crate) fn handle(store: &Store, retention_months: u32, request: Request) -> Response {
    let answer = match request {
        Request::Ping => Ok(Response::Pong {
            data_dir: store.layout().data_dir().display().to_string(),
        }),
        Request::Query(query) => run_query(store, &query).map(|calls| Response::Calls { calls }),
        Request::Get { id } => get(store, &id).map(|call| Response::Call {
            call: Box::new(call),
        }),
        Request::Hold {
            id,
            operator,
            reason,
        } => hold(store, &id, &operator, &reason),
        Request::Release { id } => release(store, &id),
        Request::Purge { dry_run } => purge(store, retention_months, dry_run),
    };
    answer.unwrap_or_else(|error| Response::Failed { error })
}

/// The calls `query` matches: the narrowest secondary index, then the rest in turn.
fn run_query(store: &Store, query: &Query) -> Result<Vec<IndexedCall>, AdminError> {
    let index = store.index();
    let (from, to) = (query.from_ms, query.to_ms);
    let mut calls = match (&query.number, &query.extension) {
        (Some(number), _) => {
            let number =
                normalise(number, DEFAULT_COUNTRY).map_err(|error| AdminError::BadNumber {
                    reason: error.to_string(),
                })?;
            index.by_number(&number, from, to)?
        }
        (None, Some(extension)) => index.by_extension(extension, from, to)?,
        (None, None) => index.by_time(from, to)?,
    };
    calls.retain(|call| matches(query, call));
    Ok(calls)
}

fn matches(query: &Query, call: &IndexedCall) -> bool {
    let meta = &call.meta;
    let extension = query.extension.as_ref();
    extension.is_none_or(|wanted| meta.extension.as_ref() == Some(wanted))
        && query
            .direction
            .is_none_or(|wanted| meta.direction == wanted)
        && query.status.is_none_or(|wanted| meta.status == wanted)
}

fn get(store: &Store, id: &RecordingId) -> Result<IndexedCall, AdminError> {
    store
        .index()
        .get(id)?
        .ok_or_else(|| AdminError::UnknownRecording { id: id.clone() })
}

fn hold(
    store: &Store,
    id: &RecordingId,
    operator: &str,
    reason: &str,
) -> Result<Response, AdminError> {
    store.index().hold(id, reason, operator, unix_ms_now())?;
    Ok(Response::Held)
}

fn release(store: &Store, id: &RecordingId) -> Result<Response, AdminError> {
    match store.index().release(id)? {
        Some(hold) => Ok(Response::Released { hold }),
        None if store.index().get(id)?.is_none() => {
            Err(AdminError::UnknownRecording { id: id.clone() })
        }
        None => Err(AdminError::NotHeld { id: id.clone() }),
    }
}

fn purge(store: &Store, retention_months: u32, dry_run: bool) -> Result<Response, AdminError> {
    let mode = if dry_run {
        PurgeMode::DryRun
    } else {
        PurgeMode::Delete
    };
    let report = store.purge(unix_ms_now(), retention_months, mode)?;
    Ok(Response::Purged {
        report: report.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_are_one_json_line_each() {
        let request = Request::Hold {
            id: RecordingId("ab".repeat(16)),
            operator: "Dr Patel".to_owned(),
            reason: "complaint\nref 12".to_owned(),
        };
        let line = serde_json::to_string(&request).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"request":"hold""#), "{line}");
        let error = Response::Failed {
            error: AdminError::NotHeld {
                id: RecordingId("cd".repeat(16)),
            },
        };
        let line = serde_json::to_string(&error).unwrap();
        let back: Response = serde_json::from_str(&line).unwrap();
        assert!(matches!(
            back,
            Response::Failed {
                error: AdminError::NotHeld { .. }
            }
        ));
    }

    #[test]
    fn an_unknown_request_is_refused_by_the_parser() {
        let parsed = serde_json::from_str::<Request>(r#"{"request":"drop-everything"}"#);
        assert!(parsed.is_err());
    }
}
