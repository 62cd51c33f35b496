//! The B2BUA's event loop: one task that owns every call and transaction.
//!
//! Transports push parsed messages into one queue; the loop matches each to a server or
//! client transaction (RFC 3261 §17), to a call, or to nothing, and acts. Owning all
//! state in one task keeps every call flow sequential and free of locks; the work per
//! SIP message is small next to the RTP that the media tasks carry on their own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use callvault_media::{MediaEngine, Side};
use callvault_sip::transaction::{
    Action, ClientTransaction, ServerTransaction, TimerConfig, TransactionKey,
};
use callvault_sip::{Message, Method, Request, Response};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, trace, Instrument as _};

use crate::call::{Call, CallRef};
use crate::control::Controls;
use crate::hook::CallHook;
use crate::registrar::Registrar;
use crate::rewrite::LocalAddress;
use crate::transport::{Inbound, SideTransport};

/// How often calls are checked for silent media.
const MEDIA_SWEEP: Duration = Duration::from_secs(1);

/// A transaction's place in the maps: the side it runs on and its RFC 3261 key.
pub(crate) type TransactionRef = (Side, TransactionKey);

/// A value for each side.
#[derive(Debug, Clone)]
pub(crate) struct Sides<T> {
    pub pbx: T,
    pub trunk: T,
}

impl<T> std::ops::Index<Side> for Sides<T> {
    type Output = T;

    fn index(&self, side: Side) -> &T {
        match side {
            Side::Pbx => &self.pbx,
            Side::Trunk => &self.trunk,
        }
    }
}

/// A server transaction and where its responses go.
#[derive(Debug)]
pub(crate) struct Server {
    pub transaction: ServerTransaction,
    pub source: SocketAddr,
    pub opened: std::time::Instant,
}

/// What to do with the responses of a client transaction.
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// Relay them back through this server transaction on the other side.
    Relay {
        call: Option<CallRef>,
        server: TransactionRef,
    },
    /// A registration relayed from the PBX.
    Register { server: TransactionRef },
    /// A request callvault made itself (a BYE or CANCEL); responses end here.
    Local,
}

#[derive(Debug)]
pub(crate) struct Client {
    pub transaction: ClientTransaction,
    pub purpose: Purpose,
}

/// Everything the event loop owns.
pub(crate) struct Core {
    pub local: Sides<LocalAddress>,
    pub peer: Sides<SocketAddr>,
    pub transports: Sides<SideTransport>,
    pub media: MediaEngine,
    pub media_ips: Sides<std::net::IpAddr>,
    pub hook: Arc<dyn CallHook>,
    pub timers: TimerConfig,
    pub rtp_timeout: Duration,
    pub registrar: Registrar,
    pub stats: Arc<crate::stats::B2buaStats>,
    pub servers: HashMap<TransactionRef, Server>,
    pub clients: HashMap<TransactionRef, Client>,
    pub calls: HashMap<CallRef, Call>,
    /// Calls by the Call-ID of each of their legs.
    pub call_index: HashMap<(Side, String), CallRef>,
    pub next_call: CallRef,
    /// When a drain for shutdown ends; new calls are refused until then.
    pub draining: Option<Instant>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Runs until a drain is over or every controller is gone, then ends every call.
    pub(crate) async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut controls: Controls,
    ) {
        let mut sweep = tokio::time::interval(MEDIA_SWEEP);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                Some(message) = inbound.recv() => self.on_inbound(message).await,
                _ = sleep_until_optional(deadline) => self.on_timers(Instant::now()).await,
                _ = sweep.tick() => {
                    self.sweep_media().await;
                    self.answer_forgotten_requests().await;
                }
                control = controls.recv() => match control {
                    Some(control) => self.on_control(control),
                    None => break,
                },
                () = sleep_until_optional(self.draining) => {
                    info!(active_calls = self.calls.len(), "grace period over");
                    break;
                }
            }
            if self.is_drained() {
                info!("drained: every call has ended");
                break;
            }
        }
        self.end_all_calls().await;
        self.log_totals();
    }

    /// What an operator wants to know when the daemon stops.
    fn log_totals(&self) {
        let stats = self.stats.snapshot();
        let media = stats.media;
        info!(
            sip_from_strangers = stats.sip_strangers,
            sip_malformed = stats.sip_malformed,
            rtp_packets_relayed = media.packets_relayed,
            rtp_packets_dropped = media.packets_dropped,
            tap_drops = media.tap_drops,
            "b2bua stopped"
        );
    }

    async fn on_inbound(&mut self, inbound: Inbound) {
        let Inbound {
            side,
            source,
            message,
        } = inbound;
        self.stats.count_message(side, &message);
        // Whatever a message leads to is logged inside its call's span, and a span for
        // the side it came from, so an operator can follow one call through the log.
        let span = self.message_span(side, &message);
        match message {
            Message::Request(request) => {
                self.on_request(side, source, request)
                    .instrument(span)
                    .await;
            }
            Message::Response(response) => self.on_response(side, response).instrument(span).await,
        }
    }

    /// `call{id} > leg{side}` for a message of a known call, `leg{side}` otherwise.
    fn message_span(&self, side: Side, message: &Message) -> tracing::Span {
        let call = message
            .headers()
            .call_id()
            .ok()
            .and_then(|id| self.call_index.get(&(side, id.to_owned())))
            .and_then(|id| self.calls.get(id));
        match call {
            Some(call) => tracing::debug_span!(parent: &call.span, "leg", side = side.as_str()),
            None => tracing::debug_span!("leg", side = side.as_str()),
        }
    }

    /// Sends a message to a side's peer (requests) or to where a request came from.
    pub(crate) fn send(&self, side: Side, to: SocketAddr, message: &Message) {
        self.transports[side].send(side, to, message);
    }

    pub(crate) fn reliable(&self, side: Side) -> bool {
        matches!(self.local[side].transport, crate::config::Transport::Tcp)
    }

    /// Starts a client transaction for `request` towards `side`'s peer.
    pub(crate) async fn start_client(&mut self, side: Side, request: Request, purpose: Purpose) {
        let key = match TransactionKey::of_request_sent(&request) {
            Ok(key) => key,
            Err(error) => {
                debug!(%error, "cannot key an outgoing request");
                return;
            }
        };
        let (transaction, actions) =
            ClientTransaction::new(request, self.reliable(side), now(), self.timers);
        self.clients.insert(
            (side, key),
            Client {
                transaction,
                purpose,
            },
        );
        // A new transaction only ever asks for its first transmission.
        for action in actions {
            if let Action::Transmit(message) = action {
                self.send(side, self.peer[side], &message);
            }
        }
    }

    /// The request a server transaction is answering, if it is still running.
    pub(crate) fn server_request(&self, server: &TransactionRef) -> Option<Request> {
        self.servers
            .get(server)
            .map(|s| s.transaction.request().clone())
    }

    /// The request a client transaction sent, if it is still running.
    pub(crate) fn client_request(&self, client: &TransactionRef) -> Option<Request> {
        self.clients
            .get(client)
            .map(|c| c.transaction.request().clone())
    }

    /// Starts the server transaction of a request callvault will answer.
    pub(crate) fn open_server(
        &mut self,
        key: TransactionRef,
        request: Request,
        source: SocketAddr,
    ) {
        let reliable = self.reliable(key.0);
        let transaction = ServerTransaction::new(request, reliable, now(), self.timers);
        self.servers.insert(
            key,
            Server {
                transaction,
                source,
                opened: now(),
            },
        );
    }

    /// Answers non-INVITE requests that nothing answered in time. Every path through
    /// the relay answers its requests; this keeps a path that forgets from leaving the
    /// peer retransmitting and the transaction in memory for ever.
    pub(crate) async fn answer_forgotten_requests(&mut self) {
        let limit = self.timers.transaction_timeout() * 2;
        let forgotten: Vec<TransactionRef> = self
            .servers
            .iter()
            .filter(|(_, s)| s.transaction.request().method != Method::Invite)
            .filter(|(_, s)| s.transaction.last_response().is_none_or(|r| r.status < 200))
            .filter(|(_, s)| s.opened.elapsed() > limit)
            .map(|(key, _)| key.clone())
            .collect();
        for key in forgotten {
            debug!(method = %key.1.method(), "request left unanswered; answering 500");
            self.respond_with_status(&key, 500, "Server Internal Error")
                .await;
        }
    }

    /// Answers a server transaction and applies what it asks.
    pub(crate) async fn respond(&mut self, server: &TransactionRef, response: Response) {
        let Some(entry) = self.servers.get_mut(server) else {
            trace!("response for a finished server transaction dropped");
            return;
        };
        let actions = entry.transaction.respond(response, now());
        self.apply_server_actions(server.clone(), actions).await;
    }

    /// Answers `request` with `status`, creating the server transaction if needed.
    pub(crate) async fn reject(
        &mut self,
        side: Side,
        source: SocketAddr,
        request: Request,
        status: u16,
        reason: &str,
    ) {
        if request.method == Method::Ack {
            // An ACK is never answered (RFC 3261 §17.1.1.3).
            return;
        }
        let mut response = Response::for_request(&request, status, reason);
        ensure_to_tag(&mut response);
        match TransactionKey::for_server(&request) {
            Ok(key) => {
                let server = (side, key);
                if !self.servers.contains_key(&server) {
                    self.open_server(server.clone(), request, source);
                }
                self.respond(&server, response).await;
            }
            _ => self.send(side, source, &response.into()),
        }
    }

    pub(crate) async fn apply_client_actions(&mut self, key: TransactionRef, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Transmit(message) => {
                    self.send(key.0, self.peer[key.0], &message);
                }
                Action::Deliver(response) => self.on_client_response(&key, response).await,
                Action::Timeout => self.on_client_timeout(&key).await,
                Action::Terminated => {
                    self.clients.remove(&key);
                }
            }
        }
    }

    pub(crate) async fn apply_server_actions(&mut self, key: TransactionRef, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Transmit(message) => {
                    if let Some(server) = self.servers.get(&key) {
                        self.send(key.0, server.source, &message);
                    }
                }
                Action::Terminated => {
                    self.servers.remove(&key);
                }
                Action::Deliver(_) | Action::Timeout => {}
            }
        }
    }

    async fn on_response(&mut self, side: Side, response: Response) {
        let key = match TransactionKey::for_client(&response) {
            Ok(key) => (side, key),
            Err(error) => {
                debug!(%error, "response without a usable Via or CSeq dropped");
                return;
            }
        };
        let Some(client) = self.clients.get_mut(&key) else {
            self.on_stray_response(side, response).await;
            return;
        };
        let actions = client.transaction.on_response(response, now());
        self.apply_client_actions(key, actions).await;
    }

    async fn on_client_response(&mut self, key: &TransactionRef, response: Response) {
        let Some(purpose) = self.clients.get(key).map(|c| c.purpose.clone()) else {
            return;
        };
        match purpose {
            Purpose::Relay { call, server } => {
                self.relay_response(call, key, &server, response).await;
            }
            Purpose::Register { server } => self.relay_register_response(&server, response).await,
            Purpose::Local => {}
        }
    }

    async fn on_client_timeout(&mut self, key: &TransactionRef) {
        let Some(purpose) = self.clients.get(key).map(|c| c.purpose.clone()) else {
            return;
        };
        let method = self
            .clients
            .get(key)
            .map(|c| c.transaction.request().method.clone());
        debug!(side = key.0.as_str(), ?method, "transaction timed out");
        match purpose {
            Purpose::Relay { call, server } => self.relay_timeout(call, key, &server).await,
            Purpose::Register { server } => {
                self.respond_with_status(&server, 408, "Request Timeout")
                    .await;
            }
            Purpose::Local => {}
        }
    }

    /// Answers a server transaction with a bare status, as after a timeout.
    pub(crate) async fn respond_with_status(
        &mut self,
        server: &TransactionRef,
        status: u16,
        reason: &str,
    ) {
        let Some(request) = self.server_request(server) else {
            return;
        };
        let mut response = Response::for_request(&request, status, reason);
        ensure_to_tag(&mut response);
        self.respond(server, response).await;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let transactions = self
            .clients
            .values()
            .filter_map(|c| c.transaction.next_timer())
            .chain(
                self.servers
                    .values()
                    .filter_map(|s| s.transaction.next_timer()),
            );
        let calls = self.calls.values().filter_map(Call::next_retransmission);
        let offers = self.next_deferred_offer();
        transactions
            .chain(calls)
            .chain(offers)
            .min()
            .map(Instant::from_std)
    }

    async fn on_timers(&mut self, now: Instant) {
        let now = now.into_std();
        let due = |at: Option<std::time::Instant>| at.is_some_and(|at| at <= now);
        let clients: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, c)| due(c.transaction.next_timer()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in clients {
            if let Some(client) = self.clients.get_mut(&key) {
                let actions = client.transaction.on_timer(now);
                self.apply_client_actions(key, actions).await;
            }
        }
        let servers: Vec<_> = self
            .servers
            .iter()
            .filter(|(_, s)| due(s.transaction.next_timer()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in servers {
            if let Some(server) = self.servers.get_mut(&key) {
                let actions = server.transaction.on_timer(now);
                self.apply_server_actions(key, actions).await;
            }
        }
        let calls: Vec<_> = self
            .calls
            .iter()
            .filter(|(_, c)| due(c.next_retransmission()))
            .map(|(k, _)| *k)
            .collect();
        for call in calls {
            self.retransmit_answers(call, now).await;
        }
        self.send_deferred_offers(now).await;
    }
}

/// RFC 3261 §8.2.6.2: a final response, or a provisional one other than 100, carries a
/// To tag; callvault adds one where the request had none.
pub(crate) fn ensure_to_tag(response: &mut Response) {
    set_to_tag(response, &crate::rewrite::new_tag());
}

/// Gives `response` the To tag `tag` unless it is a 100 or already has one.
pub(crate) fn set_to_tag(response: &mut Response, tag: &str) {
    if response.status == 100 {
        return;
    }
    if let Ok(mut to) = response.headers.to() {
        if to.tag().is_none() {
            to.params.set("tag", Some(tag));
            response.headers.set("To", to.to_string());
        }
    }
}

pub(crate) fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
