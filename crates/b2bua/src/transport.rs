//! SIP transports: UDP or TCP on each side, and the filter that admits only that side's
//! peer.
//!
//! Receive loops parse and check what arrives (`callvault_sip::validate`), answer what
//! RFC 3261 says to refuse, and hand the rest to the core as events. Sending never waits
//! on the network: UDP is a plain `send_to`, and TCP hands the bytes to the connection's
//! writer task, opening the connection first if there is none.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use callvault_media::Side;
use callvault_sip::validate::{receive, Disposition};
use callvault_sip::{Message, StreamEvent, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, trace};

use crate::config::{SideConfig, Transport};
use crate::B2buaError;

/// The largest datagram callvault reads; bigger ones are truncated and fail to parse.
const MAX_DATAGRAM: usize = 65_535;

/// Messages queued for one TCP connection before further ones are dropped.
const CONNECTION_QUEUE: usize = 256;

/// How long a TCP message may take from its first byte to its last, and an accepted
/// connection to deliver its first message. A peer that trickles a byte a second, or
/// connects and says nothing, would otherwise hold a task and a socket for ever; one
/// task per connection means it never stalls other traffic, but it must still end.
/// A connection may stay idle between whole messages, as a PBX's persistent one does.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A SIP message as it arrived, with where it came from.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub side: Side,
    pub source: SocketAddr,
    pub message: Message,
}

/// Counts of what the transports threw away.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Datagrams or connections from an address that is neither the PBX nor the trunk.
    pub strangers: AtomicU64,
    /// Messages from a peer that were malformed (answered with 400 where possible).
    pub malformed: AtomicU64,
}

/// One side's SIP socket.
#[derive(Debug, Clone)]
pub(crate) enum SideTransport {
    Udp(Arc<UdpSocket>),
    Tcp(Arc<TcpConnections>),
}

/// The open TCP connections of one side, by remote address, with their writer queues.
#[derive(Debug)]
pub(crate) struct TcpConnections {
    writers: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    receiver: Receiver,
}

/// What a receive loop needs besides its socket.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    pub side: Side,
    pub peer: SocketAddr,
    pub events: mpsc::Sender<Inbound>,
    pub stats: Arc<crate::stats::B2buaStats>,
}

impl SideTransport {
    /// Binds a side and starts its receive loop.
    pub(crate) async fn start(
        config: &SideConfig,
        receiver: Receiver,
    ) -> Result<(Self, SocketAddr), B2buaError> {
        let side = receiver.side;
        let bind_error = |source| B2buaError::Bind {
            side: side.as_str(),
            address: config.listen,
            source,
        };
        match config.transport {
            Transport::Udp => {
                let socket = Arc::new(UdpSocket::bind(config.listen).await.map_err(bind_error)?);
                let local = socket.local_addr().map_err(bind_error)?;
                tokio::spawn(udp_receive_loop(socket.clone(), receiver));
                Ok((Self::Udp(socket), local))
            }
            Transport::Tcp => {
                let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
                let local = listener.local_addr().map_err(bind_error)?;
                let connections = Arc::new(TcpConnections {
                    writers: Mutex::default(),
                    receiver,
                });
                tokio::spawn(tcp_accept_loop(listener, connections.clone()));
                Ok((Self::Tcp(connections), local))
            }
        }
    }

    /// Sends `message` to `to`. A send error is the network's answer, not ours to retry:
    /// over UDP the transaction layer retransmits anyway.
    pub(crate) fn send(&self, side: Side, to: SocketAddr, message: &Message) {
        let bytes = Bytes::from(message.to_bytes());
        trace!(side = side.as_str(), %to, len = bytes.len(), "sip out");
        match self {
            Self::Udp(socket) => {
                if let Err(error) = socket.try_send_to(&bytes, to) {
                    debug!(side = side.as_str(), %to, %error, "sip send failed");
                }
            }
            Self::Tcp(connections) => connections.send(side, to, bytes),
        }
    }
}

impl TcpConnections {
    fn send(self: &Arc<Self>, side: Side, to: SocketAddr, bytes: Bytes) {
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(writer) = writers.get(&to) {
            if writer.try_send(bytes).is_err() {
                debug!(side = side.as_str(), %to, "tcp connection backed up; message dropped");
            }
            return;
        }
        let (writer, queue) = mpsc::channel(CONNECTION_QUEUE);
        let _ = writer.try_send(bytes);
        writers.insert(to, writer.clone());
        tokio::spawn(connect(self.clone(), to, writer, queue));
    }

    fn remove(&self, remote: SocketAddr) {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&remote);
    }
}

async fn udp_receive_loop(socket: Arc<UdpSocket>, receiver: Receiver) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, source) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            // ICMP port unreachable from an earlier send surfaces here on Linux.
            Err(error) => {
                debug!(side = receiver.side.as_str(), %error, "sip receive error");
                continue;
            }
        };
        if !receiver.admits(source) {
            continue;
        }
        if buffer[..len].iter().all(u8::is_ascii_whitespace) {
            continue; // a CRLF keep-alive (RFC 5626 §3.5.1)
        }
        if let Some(answer) = receiver.deliver(source, &buffer[..len]).await {
            if let Err(error) = socket.try_send_to(&answer, source) {
                debug!(%error, "cannot answer a malformed request");
            }
        }
    }
}

async fn tcp_accept_loop(listener: TcpListener, connections: Arc<TcpConnections>) {
    let receiver = &connections.receiver;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                debug!(side = receiver.side.as_str(), %error, "tcp accept failed");
                continue;
            }
        };
        if !receiver.admits(remote) {
            continue;
        }
        let (writer, queue) = mpsc::channel(CONNECTION_QUEUE);
        connections
            .writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(remote, writer.clone());
        let connection = Connection {
            remote,
            writer,
            first_message_by: Some(Instant::now() + MESSAGE_TIMEOUT),
        };
        tokio::spawn(serve_connection(
            stream,
            connection,
            queue,
            connections.clone(),
        ));
    }
}

/// Opens a connection for a message to a peer that has none open to callvault.
async fn connect(
    connections: Arc<TcpConnections>,
    to: SocketAddr,
    writer: mpsc::Sender<Bytes>,
    queue: mpsc::Receiver<Bytes>,
) {
    let connection = Connection {
        remote: to,
        writer,
        first_message_by: None,
    };
    match TcpStream::connect(to).await {
        Ok(stream) => serve_connection(stream, connection, queue, connections).await,
        Err(error) => {
            let side = connections.receiver.side.as_str();
            debug!(side, %to, %error, "tcp connect failed");
            connections.remove(to);
        }
    }
}

/// Carries one connection both ways until either end closes it. Responses to requests
/// callvault sent over it come back on it too (RFC 3261 §18.1.2).
async fn serve_connection(
    stream: TcpStream,
    connection: Connection,
    queue: mpsc::Receiver<Bytes>,
    connections: Arc<TcpConnections>,
) {
    let remote = connection.remote;
    let (read, write) = stream.into_split();
    tokio::spawn(write_loop(write, queue));
    read_loop(read, connection, &connections.receiver).await;
    connections.remove(remote);
}

/// One TCP connection as its read loop sees it.
struct Connection {
    remote: SocketAddr,
    writer: mpsc::Sender<Bytes>,
    /// For a connection the peer opened: when its first message must be whole.
    first_message_by: Option<Instant>,
}

async fn write_loop(mut write: tokio::net::tcp::OwnedWriteHalf, mut queue: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = queue.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Reads one connection, frames it by Content-Length and hands messages on, until
/// the peer closes it, it cannot be framed, or a message is too slow to arrive.
async fn read_loop(
    mut read: tokio::net::tcp::OwnedReadHalf,
    connection: Connection,
    receiver: &Receiver,
) {
    let remote = connection.remote;
    let mut framer = StreamFramer::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut deadline = connection.first_message_by;
    loop {
        let read = read.read(&mut buffer);
        let n = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(result) => result,
                Err(_) => {
                    let side = receiver.side.as_str();
                    debug!(side, %remote, "tcp message too slow to arrive; closing");
                    return;
                }
            },
            None => read.await,
        };
        let n = match n {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        framer.push(&buffer[..n]);
        let Some(delivered) = deliver_framed(&mut framer, &connection, receiver).await else {
            return;
        };
        deadline = next_deadline(deadline, delivered, framer.buffered_len());
    }
}

/// Hands on every whole message the framer holds; `None` if the stream is
/// unframeable, else how many there were.
async fn deliver_framed(
    framer: &mut StreamFramer,
    connection: &Connection,
    receiver: &Receiver,
) -> Option<usize> {
    let remote = connection.remote;
    let mut delivered = 0;
    while let Some(event) = framer.pop() {
        delivered += 1;
        let reply = match event {
            Ok(StreamEvent::Message(message)) => receiver.hand_on(remote, message).await,
            Ok(StreamEvent::Malformed { frame, .. }) => receiver.deliver(remote, &frame).await,
            Ok(StreamEvent::Ping) => Some(Bytes::from_static(b"\r\n")),
            Ok(StreamEvent::Pong) => None,
            Err(error) => {
                receiver
                    .stats
                    .transport
                    .malformed
                    .fetch_add(1, Ordering::Relaxed);
                let side = receiver.side.as_str();
                debug!(side, %remote, %error, "tcp stream unframeable; closing");
                return None;
            }
        };
        if let Some(reply) = reply {
            let _ = connection.writer.try_send(reply);
        }
    }
    Some(delivered)
}

/// When the message now arriving must be whole: nothing is due with no part of
/// one held, and a message begun after a whole one has time of its own.
fn next_deadline(deadline: Option<Instant>, delivered: usize, buffered: usize) -> Option<Instant> {
    match (buffered, delivered, deadline) {
        (0, 0, deadline) => deadline,
        (0, _, _) => None,
        (_, 0, Some(deadline)) => Some(deadline),
        _ => Some(Instant::now() + MESSAGE_TIMEOUT),
    }
}

impl Receiver {
    /// Only the configured peer may talk to a side. The port is not checked: a PBX or a
    /// provider may send from another port than the one it listens on.
    fn admits(&self, source: SocketAddr) -> bool {
        let admitted = self.peer.ip() == source.ip();
        if !admitted {
            self.stats
                .transport
                .strangers
                .fetch_add(1, Ordering::Relaxed);
            trace!(side = self.side.as_str(), %source, "sip from a stranger dropped");
        }
        admitted
    }

    /// Parses and checks one message; returns the bytes of a refusal to send back.
    async fn deliver(&self, source: SocketAddr, bytes: &[u8]) -> Option<Bytes> {
        match receive(bytes) {
            Disposition::Accept(message) => self.hand_on(source, message).await,
            Disposition::Answer(response) => {
                self.stats
                    .transport
                    .malformed
                    .fetch_add(1, Ordering::Relaxed);
                let (side, status) = (self.side.as_str(), response.status);
                debug!(side, %source, status, "request refused");
                Some(Bytes::from(response.to_bytes()))
            }
            Disposition::Discard(reason) => {
                self.stats
                    .transport
                    .malformed
                    .fetch_add(1, Ordering::Relaxed);
                debug!(side = self.side.as_str(), %source, %reason, "malformed sip dropped");
                None
            }
        }
    }

    async fn hand_on(&self, source: SocketAddr, message: Message) -> Option<Bytes> {
        let inbound = Inbound {
            side: self.side,
            source,
            message,
        };
        // The core has stopped only when the daemon is shutting down.
        let _ = self.events.send(inbound).await;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_keeps_the_deadline_of_its_first_byte() {
        let first = Instant::now() + Duration::from_secs(3);
        assert_eq!(next_deadline(Some(first), 0, 10), Some(first));
    }

    #[test]
    fn a_whole_message_lifts_the_deadline_until_the_next_begins() {
        let first = Instant::now();
        assert_eq!(next_deadline(Some(first), 1, 0), None);
        let next = next_deadline(None, 0, 5).unwrap();
        assert!(next >= first + MESSAGE_TIMEOUT);
        let after_whole = next_deadline(Some(first), 1, 5).unwrap();
        assert!(after_whole >= first + MESSAGE_TIMEOUT);
    }

    #[test]
    fn a_silent_accepted_connection_keeps_its_first_deadline() {
        let first = Instant::now();
        assert_eq!(next_deadline(Some(first), 0, 0), Some(first));
    }
}
