//! The daemon's side of the admin socket.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use callvault_store::Store;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::protocol::{self, AdminError, Request, Response, MAX_REQUEST_BYTES};
use crate::config::Config;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin socket while the daemon serves it; dropping it stops serving and
/// removes the socket file.
#[derive(Debug)]
pub(crate) struct AdminSocket {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts serving the admin socket of `config`'s data directory from `store`.
///
/// The daemon holds the store, so a socket file already there was left by a
/// daemon that died: it is replaced.
pub(crate) fn serve(config: &Config, store: Arc<Store>) -> anyhow::Result<AdminSocket> {
    let path = super::socket_path(&config.storage.data_dir);
    let listener = bind(&path).with_context(|| {
        format!(
            "cannot serve the admin socket {}; staff commands need it while the daemon runs",
            path.display()
        )
    })?;
    info!(path = %path.display(), "admin socket ready");
    let retention_months = config.storage.retention_months;
    let task = tokio::spawn(accept(listener, store, retention_months));
    Ok(AdminSocket { path, task })
}

fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(directory) = path.parent() {
        // Only the daemon's user may reach the socket, even in the moment
        // between its creation and its own mode being set.
        std::fs::create_dir_all(directory)?;
        std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn accept(listener: UnixListener, store: Arc<Store>, retention_months: u32) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let store = Arc::clone(&store);
                tokio::spawn(answer(stream, store, retention_months));
            }
            Err(error) => {
                debug!(%error, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request, answers it, and closes the connection.
async fn answer(stream: UnixStream, store: Arc<Store>, retention_months: u32) {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(reader.take(MAX_REQUEST_BYTES));
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let response = match read {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let work = move || protocol::handle(&store, retention_months, request);
                tokio::task::spawn_blocking(work)
                    .await
                    .unwrap_or_else(|_| failed("the daemon failed while answering"))
            }
            Err(error) => failed(&error.to_string()),
        },
        Ok(Err(error)) => failed(&error.to_string()),
        Err(_) => failed("no request within 10 seconds"),
    };
    let mut bytes = serde_json::to_vec(&response).expect("responses serialise: plain fields");
    bytes.push(b'\n');
    if let Err(error) = writer.write_all(&bytes).await {
        debug!(%error, "admin client left before its answer");
    }
}

fn failed(reason: &str) -> Response {
    Response::Failed {
        error: AdminError::BadRequest {
            reason: reason.to_owned(),
        },
    }
}
