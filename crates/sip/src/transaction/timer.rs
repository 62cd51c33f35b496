//! Timer names and durations of RFC 3261 §17 and RFC 6026.

use std::time::{Duration, Instant};

/// The base durations every transaction timer derives from (RFC 3261 Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip time estimate; retransmissions start at T1.
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Longest time a message stays in the network.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L and M.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: 32 s on UDP, zero on a reliable transport.
    ///
    /// With a T1 above the default, D grows to 64*T1 so that it still outlasts the
    /// server's retransmissions of the final response (Timer H).
    pub(super) fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.transaction_timeout())
        }
    }

    /// Timers I and K: T4 on UDP, zero on a reliable transport.
    pub(super) fn wait_t4(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64*T1 on UDP, zero on a reliable transport.
    pub(super) fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.transaction_timeout()
        }
    }
}

/// Transaction timers by their RFC 3261 and RFC 6026 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client: retransmit the request (UDP only).
    A,
    /// INVITE client: give up waiting for any response.
    B,
    /// INVITE client: absorb retransmitted non-2xx finals.
    D,
    /// Non-INVITE client: retransmit the request (UDP only).
    E,
    /// Non-INVITE client: give up waiting for a final response.
    F,
    /// INVITE server: retransmit the non-2xx final (UDP only).
    G,
    /// INVITE server: give up waiting for the ACK.
    H,
    /// INVITE server: absorb retransmitted ACKs.
    I,
    /// Non-INVITE server: absorb retransmitted requests.
    J,
    /// Non-INVITE client: absorb retransmitted responses.
    K,
    /// INVITE server: absorb INVITE retransmissions after a 2xx (RFC 6026).
    L,
    /// INVITE client: accept 2xx retransmissions and forks (RFC 6026).
    M,
}

/// A retransmission timer: when it fires next and the interval that led there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Retransmit {
    pub(super) due: Instant,
    pub(super) interval: Duration,
}

impl Retransmit {
    /// The first retransmission, T1 after the first send.
    pub(super) fn start(now: Instant, t1: Duration) -> Self {
        Self {
            due: now + t1,
            interval: t1,
        }
    }

    /// The next retransmission after one at `now`: the interval doubles up to `cap`.
    pub(super) fn backoff(self, now: Instant, cap: Duration) -> Self {
        let interval = self.interval.saturating_mul(2).min(cap);
        Self {
            due: now + interval,
            interval,
        }
    }
}

/// Every timer a machine has running, for `next_timer` and `on_timer`.
pub(super) type Pending = Vec<(Timer, Instant)>;

/// The timers of `pending` due at or before `now`, earliest first.
pub(super) fn due(mut pending: Pending, now: Instant) -> Vec<Timer> {
    pending.retain(|(_, at)| *at <= now);
    pending.sort_by_key(|(_, at)| *at);
    pending.into_iter().map(|(timer, _)| timer).collect()
}
