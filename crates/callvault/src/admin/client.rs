//! A staff command's side: the daemon's socket, or the data directory opened here.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use callvault_store::index::{Hold, IndexedCall};
use callvault_store::keys::Keyring;
use callvault_store::{RecordingId, Store};

use super::protocol::{self, PurgeSummary, Query, Request, Response};
use crate::config::Config;

/// How long the daemon may take to answer: a purge deletes many files.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// The index, through the running daemon or opened by this process.
#[derive(Debug)]
pub(crate) enum IndexAccess {
    Daemon {
        socket: PathBuf,
    },
    Direct {
        store: Box<Store>,
        retention_months: u32,
    },
}

impl IndexAccess {
    /// Asks the daemon if one answers on `config`'s data directory; else opens it.
    pub(crate) fn open(config: &Config, keyring: &Keyring) -> anyhow::Result<Self> {
        let socket = super::socket_path(&config.storage.data_dir);
        if ask(&socket, &Request::Ping)?.is_some() {
            return Ok(Self::Daemon { socket });
        }
        let store = crate::run::open_store(config, keyring)?;
        Ok(Self::Direct {
            store: Box::new(store),
            retention_months: config.storage.retention_months,
        })
    }

    /// Sends `request`; a failure the daemon reports becomes an error.
    fn request(&self, request: Request) -> anyhow::Result<Response> {
        let response = match self {
            Self::Daemon { socket } => ask(socket, &request)?
                .with_context(|| format!("the daemon stopped answering on {}", socket.display()))?,
            Self::Direct {
                store,
                retention_months,
            } => protocol::handle(store, *retention_months, request),
        };
        match response {
            Response::Failed { error } => Err(error.into()),
            response => Ok(response),
        }
    }

    pub(crate) fn query(&self, query: Query) -> anyhow::Result<Vec<IndexedCall>> {
        match self.request(Request::Query(query))? {
            Response::Calls { calls } => Ok(calls),
            other => unexpected(&other),
        }
    }

    pub(crate) fn get(&self, id: &RecordingId) -> anyhow::Result<IndexedCall> {
        match self.request(Request::Get { id: id.clone() })? {
            Response::Call { call } => Ok(*call),
            other => unexpected(&other),
        }
    }

    pub(crate) fn hold(
        &self,
        id: &RecordingId,
        operator: &str,
        reason: &str,
    ) -> anyhow::Result<()> {
        let request = Request::Hold {
            id: id.clone(),
            operator: operator.to_owned(),
            reason: reason.to_owned(),
        };
        match self.request(request)? {
            Response::Held => Ok(()),
            other => unexpected(&other),
        }
    }

    pub(crate) fn release(&self, id: &RecordingId) -> anyhow::Result<Hold> {
        match self.request(Request::Release { id: id.clone() })? {
            Response::Released { hold } => Ok(hold),
            other => unexpected(&other),
        }
    }

    pub(crate) fn purge(&self, dry_run: bool) -> anyhow::Result<PurgeSummary> {
        match self.request(Request::Purge { dry_run })? {
            Response::Purged { report } => Ok(report),
            other => unexpected(&other),
        }
    }
}

fn unexpected<T>(response: &Response) -> anyhow::Result<T> {
    bail!("the daemon gave an answer that does not fit the question: {response:?}")
}

/// Fails when a daemon answers on `config`'s data directory: for `run` and
/// `reindex`, which need the data directory to themselves.
pub(crate) fn refuse_if_daemon_runs(config: &Config, command: &str) -> anyhow::Result<()> {
    let data_dir = &config.storage.data_dir;
    if ask(&super::socket_path(data_dir), &Request::Ping)?.is_some() {
        bail!(
            "there is a callvault daemon running on the data directory {}, and \
             `{command}` needs the data directory to itself",
            data_dir.display()
        );
    }
    Ok(())
}

/// Sends one request; `None` when no daemon listens on `socket`.
fn ask(socket: &Path, request: &Request) -> anyhow::Result<Option<Response>> {
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(error) if no_daemon(&error) => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "cannot reach the daemon's admin socket {} (run the command as the \
                     daemon's user)",
                    socket.display()
                )
            })
        }
    };
    let talk = |stream: &mut UnixStream| -> io::Result<String> {
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let mut line = serde_json::to_vec(request).expect("requests serialise: plain fields");
        line.push(b'\n');
        stream.write_all(&line)?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer)?;
        Ok(answer)
    };
    let context = || format!("talking to the daemon on {} failed", socket.display());
    let answer = talk(&mut stream).with_context(context)?;
    let response = serde_json::from_str(&answer).with_context(context)?;
    Ok(Some(response))
}

/// Whether a failed connect means nobody serves the socket.
fn no_daemon(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}
