//! Non-INVITE server transaction (RFC 3261 §17.2.2).

use std::time::Instant;

use super::timer::{Pending, Timer, TimerConfig};
use super::{Action, Machine, ServerMachine, StatusClass, TransactionState};
use crate::message::{Request, Response};

#[derive(Debug)]
pub(super) struct NonInviteServer {
    request: Request,
    reliable: bool,
    timers: TimerConfig,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Nothing sent yet: retransmitted requests are absorbed.
    Trying,
    Proceeding(Proceeding),
    Completed(Completed),
    Terminated,
}

/// A provisional was sent; it is resent on each retransmitted request.
#[derive(Debug)]
struct Proceeding {
    provisional: Response,
}

/// The final was sent; it is resent on each retransmitted request until Timer J.
#[derive(Debug)]
struct Completed {
    response: Response,
    timer_j: Instant,
}

impl NonInviteServer {
    pub(super) fn new(request: Request, reliable: bool, timers: TimerConfig) -> Self {
        Self {
            request,
            reliable,
            timers,
            state: State::Trying,
        }
    }

    fn complete(&self, response: Response, now: Instant) -> (State, Vec<Action>) {
        let mut actions = vec![Action::Transmit(response.clone().into())];
        let wait = self.timers.timer_j(self.reliable);
        if wait.is_zero() {
            actions.push(Action::Terminated);
            return (State::Terminated, actions);
        }
        let completed = Completed {
            response,
            timer_j: now + wait,
        };
        (State::Completed(completed), actions)
    }
}

impl ServerMachine for NonInviteServer {
    fn on_request(&mut self, _request: Request, _now: Instant) -> Vec<Action> {
        let resend = match &self.state {
            State::Proceeding(proceeding) => &proceeding.provisional,
            State::Completed(completed) => &completed.response,
            State::Trying | State::Terminated => return Vec::new(),
        };
        vec![Action::Transmit(resend.clone().into())]
    }

    fn respond(&mut self, response: Response, now: Instant) -> Vec<Action> {
        let Some(class) = StatusClass::of(response.status) else {
            tracing::debug!(status = response.status, "TU response status out of range");
            return Vec::new();
        };
        let state = std::mem::replace(&mut self.state, State::Terminated);
        let (state, actions) = match (state, class) {
            (State::Trying | State::Proceeding(_), StatusClass::Provisional) => {
                let actions = vec![Action::Transmit(response.clone().into())];
                let proceeding = Proceeding {
                    provisional: response,
                };
                (State::Proceeding(proceeding), actions)
            }
            (State::Trying | State::Proceeding(_), _) => self.complete(response, now),
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
            State::Proceeding(proceeding) => Some(&proceeding.provisional),
            State::Completed(completed) => Some(&completed.response),
            State::Trying | State::Terminated => None,
        }
    }
}

impl Machine for NonInviteServer {
    fn pending(&self) -> Pending {
        match &self.state {
            State::Completed(completed) => vec![(Timer::J, completed.timer_j)],
            _ => Vec::new(),
        }
    }

    fn fire(&mut self, timer: Timer, _now: Instant) -> Vec<Action> {
        match (&self.state, timer) {
            (State::Completed(_), Timer::J) => {
                self.state = State::Terminated;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }

    fn state(&self) -> TransactionState {
        match self.state {
            State::Trying => TransactionState::Trying,
            State::Proceeding(_) => TransactionState::Proceeding,
            State::Completed(_) => TransactionState::Completed,
            State::Terminated => TransactionState::Terminated,
        }
    }

    fn request(&self) -> &Request {
        &self.request
    }
}
