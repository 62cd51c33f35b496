//! INVITE server transaction (RFC 3261 §17.2.1, with the Accepted state of RFC 6026).

use std::time::Instant;

use super::timer::{Pending, Retransmit, Timer, TimerConfig};
use super::{Action, Machine, ServerMachine, StatusClass, TransactionState};
use crate::message::{Method, Request, Response};

#[derive(Debug)]
pub(super) struct InviteServer {
    request: Request,
    reliable: bool,
    timers: TimerConfig,
    state: State,
}

#[derive(Debug)]
enum State {
    Proceeding(Proceeding),
    Completed(Completed),
    Confirmed(Confirmed),
    Accepted(Accepted),
    Terminated,
}

/// The TU has not sent a final response yet; no timer runs.
#[derive(Debug)]
struct Proceeding {
    /// Resent when the INVITE is retransmitted.
    provisional: Option<Response>,
}

/// A non-2xx final was sent: Timer G resends it (UDP only) until the ACK or Timer H.
#[derive(Debug)]
struct Completed {
    response: Response,
    timer_g: Option<Retransmit>,
    timer_h: Instant,
}

/// The ACK arrived; its retransmissions are absorbed until Timer I.
#[derive(Debug)]
struct Confirmed {
    response: Response,
    timer_i: Instant,
}

/// A 2xx was sent; INVITE retransmissions are absorbed until Timer L, the TU resends
/// the 2xx itself.
#[derive(Debug)]
struct Accepted {
    response: Response,
    timer_l: Instant,
}

impl InviteServer {
    pub(super) fn new(request: Request, reliable: bool, timers: TimerConfig) -> Self {
        Self {
            request,
            reliable,
            timers,
            state: State::Proceeding(Proceeding { provisional: None }),
        }
    }

    fn accept(&self, response: Response, now: Instant) -> (State, Vec<Action>) {
        let actions = vec![Action::Transmit(response.clone().into())];
        let accepted = Accepted {
            response,
            timer_l: now + self.timers.transaction_timeout(),
        };
        (State::Accepted(accepted), actions)
    }

    fn complete(&self, response: Response, now: Instant) -> (State, Vec<Action>) {
        let actions = vec![Action::Transmit(response.clone().into())];
        let completed = Completed {
            response,
            timer_g: (!self.reliable).then(|| Retransmit::start(now, self.timers.t1)),
            timer_h: now + self.timers.transaction_timeout(),
        };
        (State::Completed(completed), actions)
    }

    /// The ACK of the non-2xx final: stop resending and absorb its copies (Timer I).
    fn confirm(&self, completed: Completed, now: Instant) -> (State, Vec<Action>) {
        let wait = self.timers.wait_t4(self.reliable);
        if wait.is_zero() {
            return (State::Terminated, vec![Action::Terminated]);
        }
        let confirmed = Confirmed {
            response: completed.response,
            timer_i: now + wait,
        };
        (State::Confirmed(confirmed), Vec::new())
    }
}

impl ServerMachine for InviteServer {
    fn on_request(&mut self, request: Request, now: Instant) -> Vec<Action> {
        let state = std::mem::replace(&mut self.state, State::Terminated);
        let (state, actions) = match (state, request.method == Method::Ack) {
            (State::Completed(completed), true) => self.confirm(completed, now),
            (State::Proceeding(proceeding), false) => {
                let resend = proceeding
                    .provisional
                    .clone()
                    .map(|r| Action::Transmit(r.into()));
                (State::Proceeding(proceeding), resend.into_iter().collect())
            }
            (State::Completed(completed), false) => {
                let resend = Action::Transmit(completed.response.clone().into());
                (State::Completed(completed), vec![resend])
            }
            // Confirmed and Accepted absorb both INVITE and ACK copies.
            (state, _) => (state, Vec::new()),
        };
        self.state = state;
        actions
    }

    fn respond(&mut self, response: Response, now: Instant) -> Vec<Action> {
        let Some(class) = StatusClass::of(response.status) else {
            tracing::debug!(status = response.status, "TU response status out of range");
            return Vec::new();
        };
        let state = std::mem::replace(&mut self.state, State::Terminated);
        let (state, actions) = match (state, class) {
            (State::Proceeding(_), StatusClass::Provisional) => {
                let actions = vec![Action::Transmit(response.clone().into())];
                let proceeding = Proceeding {
                    provisional: Some(response),
                };
                (State::Proceeding(proceeding), actions)
            }
            (State::Proceeding(_), StatusClass::Success) => self.accept(response, now),
            (State::Proceeding(_), StatusClass::Failure) => self.complete(response, now),
            (State::Accepted(accepted), StatusClass::Success) => {
                let actions = vec![Action::Transmit(response.clone().into())];
                let accepted = Accepted {
                    response,
                    timer_l: accepted.timer_l,
                };
                (State::Accepted(accepted), actions)
            }
            (state, _) => {
                tracing::debug!(
                    status = response.status,
                    "TU response after the final dropped"
                );
                (state, Vec::new())
            }
        };
        self.state = state;
        actions
    }

    fn last_response(&self) -> Option<&Response> {
        match &self.state {
            State::Proceeding(proceeding) => proceeding.provisional.as_ref(),
            State::Completed(completed) => Some(&completed.response),
            State::Confirmed(confirmed) => Some(&confirmed.response),
            State::Accepted(accepted) => Some(&accepted.response),
            State::Terminated => None,
        }
    }
}

impl Machine for InviteServer {
    fn pending(&self) -> Pending {
        match &self.state {
            State::Completed(completed) => {
                let mut pending = vec![(Timer::H, completed.timer_h)];
                pending.extend(completed.timer_g.map(|g| (Timer::G, g.due)));
                pending
            }
            State::Confirmed(confirmed) => vec![(Timer::I, confirmed.timer_i)],
            State::Accepted(accepted) => vec![(Timer::L, accepted.timer_l)],
            State::Proceeding(_) | State::Terminated => Vec::new(),
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) -> Vec<Action> {
        let t2 = self.timers.t2;
        match (&mut self.state, timer) {
            (State::Completed(completed), Timer::G) => {
                completed.timer_g = completed.timer_g.map(|g| g.backoff(now, t2));
                vec![Action::Transmit(completed.response.clone().into())]
            }
            (State::Completed(_), Timer::H) => {
                self.state = State::Terminated;
                vec![Action::Timeout, Action::Terminated]
            }
            (State::Confirmed(_), Timer::I) | (State::Accepted(_), Timer::L) => {
                self.state = State::Terminated;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }

    fn state(&self) -> TransactionState {
        match self.state {
            State::Proceeding(_) => TransactionState::Proceeding,
            State::Completed(_) => TransactionState::Completed,
            State::Confirmed(_) => TransactionState::Confirmed,
            State::Accepted(_) => TransactionState::Accepted,
            State::Terminated => TransactionState::Terminated,
        }
    }

    fn request(&self) -> &Request {
        &self.request
    }
}
