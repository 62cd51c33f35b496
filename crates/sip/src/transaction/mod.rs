//! Transaction state machines of RFC 3261 §17, with the RFC 6026 changes.
//!
//! A transaction is driven by three inputs: a message from the peer, a message from the
//! transaction user (TU), and the current time. Each input returns the `Action`s the
//! owner must carry out, and `next_timer` says when to call `on_timer` next. Nothing here
//! reads a clock or touches a socket.
//!
//! Each machine keeps its state as an enum of per-state structs, so a timer can only
//! exist in the state that runs it (Timer D only in Completed, Timer A only in Calling).
//!
//! On a reliable transport the zero-length Timers D, I, J and K are not scheduled: the
//! transaction ends in the same call that would have started them.

mod client_invite;
mod client_non_invite;
mod key;
mod server_invite;
mod server_non_invite;
mod timer;

use std::fmt;
use std::time::Instant;

pub use key::TransactionKey;
pub use timer::{Timer, TimerConfig};

use crate::message::{Message, Method, Request, Response};
use client_invite::InviteClient;
use client_non_invite::NonInviteClient;
use server_invite::InviteServer;
use server_non_invite::NonInviteServer;
use timer::Pending;

/// What a transaction asks its owner (the transport or the TU) to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send to the peer: a first send, a retransmission, or the ACK of a non-2xx final.
    Transmit(Message),
    /// Client: pass a response up to the TU.
    Deliver(Response),
    /// Client: Timer B or F fired with no final response; the TU acts as on a 408.
    /// Server: Timer H fired with no ACK for the non-2xx final.
    Timeout,
    /// The transaction is over; the owner drops it.
    Terminated,
}

/// The states of RFC 3261 §17 and RFC 6026, for logs and for the owner's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// A client transaction: INVITE or non-INVITE, chosen from the request's method.
#[derive(Debug)]
pub struct ClientTransaction {
    machine: Box<dyn ClientMachine>,
}

impl ClientTransaction {
    /// Starts the transaction; the actions include the first `Transmit`.
    ///
    /// An ACK is not a transaction (§17.1.1.3, §13.2.2.4): the ACK of a non-2xx is sent
    /// by the INVITE transaction, the ACK of a 2xx by the TU straight to the transport.
    pub fn new(
        request: Request,
        reliable: bool,
        now: Instant,
        timers: TimerConfig,
    ) -> (Self, Vec<Action>) {
        let (machine, actions): (Box<dyn ClientMachine>, _) = if request.method == Method::Invite {
            let (machine, actions) = InviteClient::start(request, reliable, now, timers);
            (Box::new(machine), actions)
        } else {
            let (machine, actions) = NonInviteClient::start(request, reliable, now, timers);
            (Box::new(machine), actions)
        };
        (Self { machine }, actions)
    }

    /// Handles a response whose `TransactionKey::for_client` matches this transaction.
    pub fn on_response(&mut self, response: Response, now: Instant) -> Vec<Action> {
        step(self.machine.as_mut(), |m| m.on_response(response, now))
    }

    /// Fires every timer due at or before `now`.
    ///
    /// A retransmission timer fires once per call and is re-armed from `now`, so an owner
    /// that calls late sends one retransmission, not a burst.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        step(self.machine.as_mut(), |m| fire_due(m, now))
    }

    /// When `on_timer` must be called next; `None` once nothing is pending.
    pub fn next_timer(&self) -> Option<Instant> {
        next_due(self.machine.pending())
    }

    /// Every running timer, earliest first, for logs and tests.
    pub fn timers(&self) -> Vec<(Timer, Instant)> {
        sorted(self.machine.pending())
    }

    pub fn state(&self) -> TransactionState {
        self.machine.state()
    }

    pub fn is_terminated(&self) -> bool {
        self.state() == TransactionState::Terminated
    }

    /// The request this transaction sends.
    pub fn request(&self) -> &Request {
        self.machine.request()
    }
}

/// A server transaction: INVITE or non-INVITE, chosen from the request's method.
#[derive(Debug)]
pub struct ServerTransaction {
    machine: Box<dyn ServerMachine>,
}

impl ServerTransaction {
    /// Creates the transaction for a request the TU already has.
    ///
    /// A received ACK never creates one: it either matches an INVITE server transaction
    /// (the ACK of a non-2xx) or belongs to the TU (the ACK of a 2xx).
    ///
    /// No response is sent: the TU decides on 100 Trying. No timer runs before the
    /// first response, so `_now` is taken only to keep the constructors alike.
    pub fn new(request: Request, reliable: bool, _now: Instant, timers: TimerConfig) -> Self {
        let machine: Box<dyn ServerMachine> = if request.method == Method::Invite {
            Box::new(InviteServer::new(request, reliable, timers))
        } else {
            Box::new(NonInviteServer::new(request, reliable, timers))
        };
        Self { machine }
    }

    /// Handles a request whose `TransactionKey::for_server` matches this transaction.
    ///
    /// A retransmission resends the last response; the ACK of a non-2xx final moves
    /// Completed to Confirmed. Both are absorbed: the TU never sees them. An ACK that
    /// arrives in Accepted acknowledges a 2xx and belongs to the TU: pass it on when
    /// `state()` is `Accepted`, before or instead of calling this.
    pub fn on_request(&mut self, request: Request, now: Instant) -> Vec<Action> {
        step(self.machine.as_mut(), |m| m.on_request(request, now))
    }

    /// Sends the TU's response and moves the state on.
    ///
    /// A response that does not fit the state (a second final, a provisional after a
    /// final) is dropped, as RFC 3261 §17.2 asks. In Accepted, further 2xx pass through:
    /// the TU, not the transaction, retransmits a 2xx (RFC 6026).
    pub fn respond(&mut self, response: Response, now: Instant) -> Vec<Action> {
        step(self.machine.as_mut(), |m| m.respond(response, now))
    }

    /// Fires every timer due at or before `now` (see `ClientTransaction::on_timer`).
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        step(self.machine.as_mut(), |m| fire_due(m, now))
    }

    pub fn next_timer(&self) -> Option<Instant> {
        next_due(self.machine.pending())
    }

    /// Every running timer, earliest first, for logs and tests.
    pub fn timers(&self) -> Vec<(Timer, Instant)> {
        sorted(self.machine.pending())
    }

    pub fn state(&self) -> TransactionState {
        self.machine.state()
    }

    pub fn is_terminated(&self) -> bool {
        self.state() == TransactionState::Terminated
    }

    /// The request that created this transaction.
    pub fn request(&self) -> &Request {
        self.machine.request()
    }

    /// The response sent last; `None` before the first one and once terminated.
    pub fn last_response(&self) -> Option<&Response> {
        self.machine.last_response()
    }
}

/// What every machine offers to the shared timer and logging code.
trait Machine: fmt::Debug + Send + Sync {
    fn pending(&self) -> Pending;
    /// Fires `timer` if the current state still runs it.
    fn fire(&mut self, timer: Timer, now: Instant) -> Vec<Action>;
    fn state(&self) -> TransactionState;
    fn request(&self) -> &Request;
}

trait ClientMachine: Machine {
    fn on_response(&mut self, response: Response, now: Instant) -> Vec<Action>;
}

trait ServerMachine: Machine {
    fn on_request(&mut self, request: Request, now: Instant) -> Vec<Action>;
    fn respond(&mut self, response: Response, now: Instant) -> Vec<Action>;
    fn last_response(&self) -> Option<&Response>;
}

/// Runs one input through a machine and traces the state change it caused.
fn step<M: Machine + ?Sized>(
    machine: &mut M,
    input: impl FnOnce(&mut M) -> Vec<Action>,
) -> Vec<Action> {
    let before = machine.state();
    let actions = input(machine);
    let after = machine.state();
    if before != after {
        tracing::trace!(
            method = %machine.request().method,
            from = ?before,
            to = ?after,
            "transaction state changed"
        );
    }
    actions
}

fn fire_due<M: Machine + ?Sized>(machine: &mut M, now: Instant) -> Vec<Action> {
    let mut actions = Vec::new();
    for timer in timer::due(machine.pending(), now) {
        actions.extend(machine.fire(timer, now));
    }
    actions
}

fn sorted(mut pending: Pending) -> Pending {
    pending.sort_by_key(|(_, at)| *at);
    pending
}

fn next_due(pending: Pending) -> Option<Instant> {
    pending.into_iter().map(|(_, at)| at).min()
}

/// The three kinds of response status that drive every machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusClass {
    /// 1xx.
    Provisional,
    /// 2xx.
    Success,
    /// 3xx to 6xx.
    Failure,
}

impl StatusClass {
    /// `None` for a status outside 100-699, which the parser already rejects.
    fn of(status: u16) -> Option<Self> {
        match status {
            100..=199 => Some(Self::Provisional),
            200..=299 => Some(Self::Success),
            300..=699 => Some(Self::Failure),
            _ => None,
        }
    }
}
