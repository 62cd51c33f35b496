//! The scrape endpoint: HTTP/1.1 `GET /metrics`, and 404 for anything else.
//!
//! One request per connection, answered and closed. The request head is read
//! with a size limit and a deadline, and only so many connections are served
//! at once, so a slow or hostile client costs a few sockets, never the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info};

use super::text::CONTENT_TYPE;
use super::Sources;

/// The largest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// How long a client may take to send its request and read the answer.
const DEADLINE: Duration = Duration::from_secs(10);

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 8;

/// Binds the endpoint; a taken address stops start-up with the key named.
pub(crate) async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics.listen: cannot listen on {listen}"))?;
    info!(metrics.listen = %listen, "metrics endpoint listening");
    Ok(listener)
}

/// Answers scrapes until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, sources: Arc<Sources>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                debug!(%error, "metrics connection not accepted");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let sources = Arc::clone(&sources);
        tokio::spawn(async move {
            if tokio::time::timeout(DEADLINE, answer(stream, &sources))
                .await
                .is_err()
            {
                debug!(%peer, "metrics client too slow; connection closed");
            }
            drop(permit);
        });
    }
}

/// Reads one request and writes its answer.
async fn answer(mut stream: TcpStream, sources: &Sources) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let response = match is_scrape(&head) {
        true => response("200 OK", CONTENT_TYPE, &sources.render()),
        false => response(
            "404 Not Found",
            "text/plain",
            "not found: try GET /metrics\n",
        ),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request head, up to its blank line; `None` if the client gave up first.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            // Too long for a scrape: answered from what arrived, which is a 404.
            break;
        }
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 {
            return (!head.is_empty()).then_some(head);
        }
        head.extend_from_slice(&buffer[..read]);
    }
    Some(head)
}

/// Whether the request line asks for `GET /metrics` (a query string allowed).
fn is_scrape(head: &[u8]) -> bool {
    let line = head.split(|byte| *byte == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, target) = (words.next(), words.next());
    let path = target.map(|target| target.split('?').next().unwrap_or(target));
    method == Some("GET") && path == Some("/metrics")
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_of_the_metrics_path_is_a_scrape() {
        assert!(is_scrape(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(is_scrape(b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n"));
        assert!(!is_scrape(b"POST /metrics HTTP/1.1\r\n\r\n"));
        assert!(!is_scrape(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!is_scrape(b"GET /metrics/x HTTP/1.1\r\n\r\n"));
        assert!(!is_scrape(b"\r\n\r\n"));
    }
}
