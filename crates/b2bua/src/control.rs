//! What the daemon asks of a running B2BUA: a sign of life, and a graceful stop.
//!
//! Requests travel through a channel into the event loop, so an answer to a
//! ping proves the loop itself is turning, not just that the process lives.
//! A drain refuses new calls with 503 and Retry-After (RFC 3261 §21.5.4,
//! §20.33), lets calls in progress go on until their parties hang up or the
//! grace period ends, and then stops the loop, which ends what is left.

use std::time::Duration;

use callvault_sip::transaction::TransactionState;
use callvault_sip::{Request, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::core::{ensure_to_tag, Core, TransactionRef};

/// A request to the event loop from outside it.
#[derive(Debug)]
pub(crate) enum Control {
    /// Answer with the loop's state.
    Ping(oneshot::Sender<Health>),
    /// Refuse new calls and stop once calls in progress end, or `grace` passes.
    Drain { grace: Duration },
}

/// The event loop's state, as seen from inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Calls being set up or in progress.
    pub calls: usize,
    /// Whether new calls are being refused for a shutdown.
    pub draining: bool,
}

/// The daemon's handle on a running B2BUA.
///
/// When every clone is dropped, the B2BUA stops at once and ends every call,
/// as if the grace period were over.
#[derive(Debug, Clone)]
pub struct Controller {
    sender: mpsc::Sender<Control>,
}

/// The event loop's end of a [`Controller`], given to [`crate::serve_controlled`].
#[derive(Debug)]
pub struct Controls {
    receiver: mpsc::Receiver<Control>,
}

/// A controller and the controls it drives.
pub fn control_channel() -> (Controller, Controls) {
    let (sender, receiver) = mpsc::channel(8);
    (Controller { sender }, Controls { receiver })
}

impl Controller {
    /// Asks the event loop for its state; `None` once the loop has stopped.
    pub async fn ping(&self) -> Option<Health> {
        let (answer, answered) = oneshot::channel();
        self.sender.send(Control::Ping(answer)).await.ok()?;
        answered.await.ok()
    }

    /// Starts a graceful stop with `grace` for calls in progress to end.
    pub async fn drain(&self, grace: Duration) {
        // A loop that has already stopped has nothing left to drain.
        let _ = self.sender.send(Control::Drain { grace }).await;
    }
}

impl Controls {
    pub(crate) async fn recv(&mut self) -> Option<Control> {
        self.receiver.recv().await
    }
}

impl Core {
    pub(crate) fn on_control(&mut self, control: Control) {
        match control {
            Control::Ping(answer) => {
                let _ = answer.send(self.health());
            }
            Control::Drain { grace } => self.start_draining(grace),
        }
    }

    fn health(&self) -> Health {
        Health {
            calls: self.calls.len(),
            draining: self.draining.is_some(),
        }
    }

    fn start_draining(&mut self, grace: Duration) {
        if self.draining.is_some() {
            return;
        }
        self.draining = Some(Instant::now() + grace);
        info!(
            active_calls = self.calls.len(),
            grace_seconds = grace.as_secs(),
            "draining: new calls refused, calls in progress continue"
        );
    }

    /// Whether a drain has nothing left to wait for: no call, and no request
    /// of callvault's waiting for its final response.
    pub(crate) fn is_drained(&self) -> bool {
        let waiting = |state| {
            matches!(
                state,
                TransactionState::Calling | TransactionState::Trying | TransactionState::Proceeding
            )
        };
        self.draining.is_some()
            && self.calls.is_empty()
            && !self
                .clients
                .values()
                .any(|c| waiting(c.transaction.state()))
    }

    /// Answers a new INVITE during a drain with 503 and when to try again.
    pub(crate) async fn refuse_while_draining(
        &mut self,
        server: &TransactionRef,
        request: &Request,
    ) {
        let retry_after = self.retry_after();
        debug!(retry_after, "new call refused: shutting down");
        let mut response = Response::for_request(request, 503, "Service Unavailable");
        ensure_to_tag(&mut response);
        response
            .headers
            .push("Retry-After", retry_after.to_string());
        self.respond(server, response).await;
    }

    /// Seconds until the grace period ends, when callvault expects to be
    /// gone (and, under a supervisor that restarts it, back); at least one.
    fn retry_after(&self) -> u64 {
        let left = self.draining.map_or(Duration::ZERO, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        whole_seconds_at_least_one(left)
    }
}

/// Retry-After takes whole seconds; rounding down could promise too early.
fn whole_seconds_at_least_one(left: Duration) -> u64 {
    let rounded_up = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    rounded_up.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_never_says_zero() {
        assert_eq!(whole_seconds_at_least_one(Duration::ZERO), 1);
        assert_eq!(whole_seconds_at_least_one(Duration::from_millis(200)), 1);
        assert_eq!(
            whole_seconds_at_least_one(Duration::from_millis(29_001)),
            30
        );
        assert_eq!(whole_seconds_at_least_one(Duration::from_secs(30)), 30);
    }
}
