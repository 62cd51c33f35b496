//! INVITE client transaction (RFC 3261 §17.1.1, with the Accepted state of RFC 6026).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Pending, Retransmit, Timer, TimerConfig};
use super::{Action, ClientMachine, Machine, StatusClass, TransactionState};
use crate::message::{Headers, Method, Request, Response};

#[derive(Debug)]
pub(super) struct InviteClient {
    request: Request,
    reliable: bool,
    timers: TimerConfig,
    state: State,
}

#[derive(Debug)]
enum State {
    Calling(Calling),
    /// A provisional arrived: no more retransmissions and no Timer B.
    Proceeding,
    Completed(Completed),
    Accepted(Accepted),
    Terminated,
}

/// Waiting for any response; the request is retransmitted on UDP.
#[derive(Debug)]
struct Calling {
    timer_a: Option<Retransmit>,
    timer_b: Instant,
}

/// A non-2xx final was acknowledged; its retransmissions are acknowledged again.
#[derive(Debug)]
struct Completed {
    ack: Request,
    timer_d: Instant,
}

/// A 2xx arrived; later 2xx (retransmissions, forks) go to the TU, which ACKs them.
#[derive(Debug)]
struct Accepted {
    timer_m: Instant,
}

impl InviteClient {
    pub(super) fn start(
        request: Request,
        reliable: bool,
        now: Instant,
        timers: TimerConfig,
    ) -> (Self, Vec<Action>) {
        let calling = Calling {
            timer_a: (!reliable).then(|| Retransmit::start(now, timers.t1)),
            timer_b: now + timers.transaction_timeout(),
        };
        let actions = vec![Action::Transmit(request.clone().into())];
        let machine = Self {
            request,
            reliable,
            timers,
            state: State::Calling(calling),
        };
        (machine, actions)
    }

    /// Acknowledges a non-2xx final and waits out its retransmissions (Timer D).
    fn complete(&self, response: Response, now: Instant) -> (State, Vec<Action>) {
        let ack = ack_for_failure(&self.request, &response);
        let mut actions = vec![
            Action::Transmit(ack.clone().into()),
            Action::Deliver(response),
        ];
        let wait = self.timers.timer_d(self.reliable);
        if wait.is_zero() {
            actions.push(Action::Terminated);
            return (State::Terminated, actions);
        }
        let completed = Completed {
            ack,
            timer_d: now + wait,
        };
        (State::Completed(completed), actions)
    }

    fn accept(&self, response: Response, now: Instant) -> (State, Vec<Action>) {
        let accepted = Accepted {
            timer_m: now + self.timers.transaction_timeout(),
        };
        (State::Accepted(accepted), vec![Action::Deliver(response)])
    }
}

impl ClientMachine for InviteClient {
    fn on_response(&mut self, response: Response, now: Instant) -> Vec<Action> {
        let Some(class) = StatusClass::of(response.status) else {
            return Vec::new();
        };
        let state = std::mem::replace(&mut self.state, State::Terminated);
        let (state, actions) = match (state, class) {
            (State::Calling(_) | State::Proceeding, StatusClass::Provisional) => {
                (State::Proceeding, vec![Action::Deliver(response)])
            }
            (State::Calling(_) | State::Proceeding, StatusClass::Success) => {
                self.accept(response, now)
            }
            (State::Calling(_) | State::Proceeding, StatusClass::Failure) => {
                self.complete(response, now)
            }
            (State::Completed(completed), StatusClass::Failure) => {
                let ack = Action::Transmit(completed.ack.clone().into());
                (State::Completed(completed), vec![ack])
            }
            (State::Accepted(accepted), StatusClass::Success) => {
                (State::Accepted(accepted), vec![Action::Deliver(response)])
            }
            // Late provisionals, and finals of the other kind, are absorbed.
            (state, _) => (state, Vec::new()),
        };
        self.state = state;
        actions
    }
}

impl Machine for InviteClient {
    fn pending(&self) -> Pending {
        match &self.state {
            State::Calling(calling) => {
                let mut pending = vec![(Timer::B, calling.timer_b)];
                pending.extend(calling.timer_a.map(|a| (Timer::A, a.due)));
                pending
            }
            State::Completed(completed) => vec![(Timer::D, completed.timer_d)],
            State::Accepted(accepted) => vec![(Timer::M, accepted.timer_m)],
            State::Proceeding | State::Terminated => Vec::new(),
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) -> Vec<Action> {
        match (&mut self.state, timer) {
            (State::Calling(calling), Timer::A) => {
                // Timer A doubles without a cap: B ends the transaction first.
                calling.timer_a = calling.timer_a.map(|a| a.backoff(now, Duration::MAX));
                vec![Action::Transmit(self.request.clone().into())]
            }
            (State::Calling(_), Timer::B) => {
                self.state = State::Terminated;
                vec![Action::Timeout, Action::Terminated]
            }
            (State::Completed(_), Timer::D) | (State::Accepted(_), Timer::M) => {
                self.state = State::Terminated;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }

    fn state(&self) -> TransactionState {
        match self.state {
            State::Calling(_) => TransactionState::Calling,
            State::Proceeding => TransactionState::Proceeding,
            State::Completed(_) => TransactionState::Completed,
            State::Accepted(_) => TransactionState::Accepted,
            State::Terminated => TransactionState::Terminated,
        }
    }

    fn request(&self) -> &Request {
        &self.request
    }
}

/// Builds the ACK of a non-2xx final, as RFC 3261 §17.1.1.3 lays it out.
///
/// It goes hop by hop with the INVITE's branch: the INVITE's top Via only, its Route
/// headers, Request-URI, Call-ID and From, the To of the response (with the tag the
/// peer chose) and the INVITE's CSeq number with method ACK.
fn ack_for_failure(invite: &Request, response: &Response) -> Request {
    let mut headers = Headers::new();
    if let Some(via) = invite.headers.get("Via") {
        headers.push("Via", via);
    }
    for route in invite.headers.get_all("Route") {
        headers.push("Route", route);
    }
    headers.push(
        "Max-Forwards",
        invite.headers.get("Max-Forwards").unwrap_or("70"),
    );
    copy(&invite.headers, &mut headers, "From");
    match response.headers.get("To") {
        Some(to) => headers.push("To", to),
        None => copy(&invite.headers, &mut headers, "To"),
    }
    copy(&invite.headers, &mut headers, "Call-ID");
    // The response was matched on this transaction's branch, so its CSeq number is
    // the INVITE's unless the INVITE itself carried none that parses.
    let seq = invite
        .headers
        .cseq()
        .or_else(|_| response.headers.cseq())
        .map_or(0, |cseq| cseq.seq);
    headers.push("CSeq", format!("{seq} ACK"));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

fn copy(from: &Headers, to: &mut Headers, name: &str) {
    if let Some(value) = from.get(name) {
        to.push(name, value);
    }
}
