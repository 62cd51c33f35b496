//! Non-INVITE client transaction (RFC 3261 §17.1.2).

use std::time::Instant;

use super::timer::{Pending, Retransmit, Timer, TimerConfig};
use super::{Action, ClientMachine, Machine, StatusClass, TransactionState};
use crate::message::{Request, Response};

#[derive(Debug)]
pub(super) struct NonInviteClient {
    request: Request,
    reliable: bool,
    timers: TimerConfig,
    state: State,
}

#[derive(Debug)]
enum State {
    Trying(Outstanding),
    /// A provisional arrived: retransmissions continue every T2.
    Proceeding(Outstanding),
    Completed(Completed),
    Terminated,
}

/// No final response yet: Timer E retransmits (UDP only), Timer F gives up.
#[derive(Debug)]
struct Outstanding {
    timer_e: Option<Retransmit>,
    timer_f: Instant,
}

/// A final arrived; its retransmissions are absorbed until Timer K.
#[derive(Debug)]
struct Completed {
    timer_k: Instant,
}

impl NonInviteClient {
    pub(super) fn start(
        request: Request,
        reliable: bool,
        now: Instant,
        timers: TimerConfig,
    ) -> (Self, Vec<Action>) {
        let trying = Outstanding {
            timer_e: (!reliable).then(|| Retransmit::start(now, timers.t1)),
            timer_f: now + timers.transaction_timeout(),
        };
        let actions = vec![Action::Transmit(request.clone().into())];
        let machine = Self {
            request,
            reliable,
            timers,
            state: State::Trying(trying),
        };
        (machine, actions)
    }

    fn complete(&self, response: Response, now: Instant) -> (State, Vec<Action>) {
        let wait = self.timers.wait_t4(self.reliable);
        if wait.is_zero() {
            let actions = vec![Action::Deliver(response), Action::Terminated];
            return (State::Terminated, actions);
        }
        let completed = Completed {
            timer_k: now + wait,
        };
        (State::Completed(completed), vec![Action::Deliver(response)])
    }
}

impl ClientMachine for NonInviteClient {
    fn on_response(&mut self, response: Response, now: Instant) -> Vec<Action> {
        let Some(class) = StatusClass::of(response.status) else {
            return Vec::new();
        };
        let state = std::mem::replace(&mut self.state, State::Terminated);
        let (state, actions) = match (state, class) {
            (
                State::Trying(outstanding) | State::Proceeding(outstanding),
                StatusClass::Provisional,
            ) => (
                State::Proceeding(outstanding),
                vec![Action::Deliver(response)],
            ),
            (State::Trying(_) | State::Proceeding(_), _) => self.complete(response, now),
            // Retransmitted finals in Completed are absorbed.
            (state, _) => (state, Vec::new()),
        };
        self.state = state;
        actions
    }
}

impl Machine for NonInviteClient {
    fn pending(&self) -> Pending {
        match &self.state {
            State::Trying(outstanding) | State::Proceeding(outstanding) => {
                let mut pending = vec![(Timer::F, outstanding.timer_f)];
                pending.extend(outstanding.timer_e.map(|e| (Timer::E, e.due)));
                pending
            }
            State::Completed(completed) => vec![(Timer::K, completed.timer_k)],
            State::Terminated => Vec::new(),
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) -> Vec<Action> {
        let t2 = self.timers.t2;
        match (&mut self.state, timer) {
            (State::Trying(outstanding), Timer::E) => {
                outstanding.timer_e = outstanding.timer_e.map(|e| e.backoff(now, t2));
                vec![Action::Transmit(self.request.clone().into())]
            }
            (State::Proceeding(outstanding), Timer::E) => {
                // After a provisional the interval is T2 at once (§17.1.2.2).
                outstanding.timer_e = outstanding.timer_e.map(|_| Retransmit {
                    due: now + t2,
                    interval: t2,
                });
                vec![Action::Transmit(self.request.clone().into())]
            }
            (State::Trying(_) | State::Proceeding(_), Timer::F) => {
                self.state = State::Terminated;
                vec![Action::Timeout, Action::Terminated]
            }
            (State::Completed(_), Timer::K) => {
                self.state = State::Terminated;
                vec![Action::Terminated]
            }
            _ => Vec::new(),
        }
    }

    fn state(&self) -> TransactionState {
        match self.state {
            State::Trying(_) => TransactionState::Trying,
            State::Proceeding(_) => TransactionState::Proceeding,
            State::Completed(_) => TransactionState::Completed,
            State::Terminated => TransactionState::Terminated,
        }
    }

    fn request(&self) -> &Request {
        &self.request
    }
}
