//! Telling systemd how the daemon is doing: the sd_notify protocol.
//!
//! Under a `Type=notify` unit, systemd names a Unix datagram socket in
//! `$NOTIFY_SOCKET` and reads newline-separated `KEY=value` assignments from
//! it (sd_notify(3)). callvault sends `READY=1` once both SIP sockets are
//! bound and the recorder runs, `WATCHDOG=1` while the B2BUA's event loop
//! answers, `STOPPING=1` when a stop begins, `RELOADING=1` around SIGHUP,
//! and `STATUS=` lines with the calls in progress. Outside systemd nothing
//! is sent. The protocol is a datagram of text, so no C library is needed.

use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use callvault_b2bua::{Controller, Health};
use tracing::{debug, info, warn};

/// How often `STATUS=` is refreshed when systemd asked for no watchdog.
const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// One assignment of the notification protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Start-up is finished.
    Ready,
    /// The configuration is being reloaded; `Ready` follows.
    Reloading,
    /// A stop has begun.
    Stopping,
    /// The daemon is alive; systemd restarts it when these stop coming.
    Watchdog,
    /// A line for `systemctl status`.
    Status(String),
}

impl State {
    fn assignment(&self) -> String {
        match self {
            Self::Ready => "READY=1".to_owned(),
            Self::Reloading => "RELOADING=1".to_owned(),
            Self::Stopping => "STOPPING=1".to_owned(),
            Self::Watchdog => "WATCHDOG=1".to_owned(),
            // An assignment ends at a newline, so a status must not hold one.
            Self::Status(text) => format!("STATUS={}", text.replace('\n', " ")),
        }
    }
}

/// The datagram that carries `states`.
fn message(states: &[State]) -> String {
    let mut text = String::new();
    for state in states {
        text.push_str(&state.assignment());
        text.push('\n');
    }
    text
}

/// The `STATUS=` line for the event loop's state.
pub(crate) fn status(health: Health) -> State {
    let what = if health.draining {
        "draining for shutdown"
    } else {
        "serving"
    };
    State::Status(format!("{what}; calls in progress: {}", health.calls))
}

/// The sending end of systemd's notification socket, if there is one.
#[derive(Debug)]
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier for the socket and watchdog systemd set in the environment.
    pub(crate) fn from_env() -> Self {
        let watchdog = watchdog_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        );
        let socket = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
        if socket.is_empty() {
            return Self::disabled();
        }
        match Self::to(&socket) {
            Ok(notifier) => Self {
                watchdog,
                ..notifier
            },
            Err(error) => {
                warn!(%error, socket, "cannot use NOTIFY_SOCKET; systemd will not hear from callvault");
                Self::disabled()
            }
        }
    }

    /// A notifier that sends nothing.
    pub(crate) fn disabled() -> Self {
        Self {
            target: None,
            watchdog: None,
        }
    }

    /// A notifier for `address`: a path, or `@name` for an abstract socket.
    fn to(address: &str) -> io::Result<Self> {
        let address = if let Some(name) = address.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if address.starts_with('/') {
            SocketAddr::from_pathname(address)?
        } else {
            let reason = "not a socket path or @abstract name";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, reason));
        };
        let socket = UnixDatagram::unbound()?;
        // systemd reads its socket promptly; if it ever does not, a state is
        // lost rather than an async thread blocked.
        socket.set_nonblocking(true)?;
        Ok(Self {
            target: Some((socket, address)),
            watchdog: None,
        })
    }

    /// Whether there is a systemd to tell.
    pub(crate) fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `states` in one datagram; nothing without a socket.
    pub(crate) fn send(&self, states: &[State]) -> io::Result<()> {
        let Some((socket, address)) = &self.target else {
            return Ok(());
        };
        socket.send_to_addr(message(states).as_bytes(), address)?;
        Ok(())
    }

    /// As `send`, for states whose loss only costs a status line or a pet.
    pub(crate) fn tell(&self, states: &[State]) {
        if let Err(error) = self.send(states) {
            debug!(%error, "systemd notification not sent");
        }
    }
}

/// The watchdog period systemd asked for, if it is meant for this process.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&usec| usec > 0)?;
    // Set by a parent for another process (sd_watchdog_enabled(3)).
    if pid.is_some_and(|pid| pid.trim().parse() != Ok(std::process::id())) {
        return None;
    }
    Some(Duration::from_micros(usec))
}

/// Says READY once the B2BUA's loop answers, then feeds the watchdog and
/// refreshes the status for as long as it keeps answering.
pub(crate) async fn supervise(notifier: Arc<Notifier>, controller: Controller) {
    // The loop takes requests only once both SIP sockets are bound.
    let Some(health) = controller.ping().await else {
        return;
    };
    if let Err(error) = notifier.send(&[State::Ready, status(health)]) {
        warn!(%error, "cannot tell systemd callvault is ready; it may stop the service");
    }
    let watchdog_seconds = notifier.watchdog.map(|period| period.as_secs_f64());
    info!(?watchdog_seconds, "systemd told callvault is ready");

    let period = notifier.watchdog.map_or(STATUS_PERIOD, |period| period / 2);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last = health;
    loop {
        ticker.tick().await;
        match tokio::time::timeout(period, controller.ping()).await {
            Ok(Some(health)) => {
                feed(&notifier, health, last);
                last = health;
            }
            // The loop has stopped: the daemon is on its way out.
            Ok(None) => return,
            Err(_) => warn!(
                waited_seconds = period.as_secs_f64(),
                "the B2BUA's event loop did not answer; systemd's watchdog is not fed"
            ),
        }
    }
}

/// One round of the watchdog: a pet, and the status when it changed.
fn feed(notifier: &Notifier, health: Health, last: Health) {
    let mut states = Vec::new();
    if notifier.watchdog.is_some() {
        states.push(State::Watchdog);
    }
    if health != last {
        states.push(status(health));
    }
    if !states.is_empty() {
        notifier.tell(&states);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_written_one_assignment_a_line() {
        let states = [State::Ready, State::Status("serving; calls: 2".to_owned())];
        assert_eq!(message(&states), "READY=1\nSTATUS=serving; calls: 2\n");
        let stop = [State::Stopping, State::Watchdog, State::Reloading];
        assert_eq!(message(&stop), "STOPPING=1\nWATCHDOG=1\nRELOADING=1\n");
    }

    #[test]
    fn a_newline_in_a_status_cannot_start_another_assignment() {
        let state = State::Status("one\nREADY=1".to_owned());
        assert_eq!(message(&[state]), "STATUS=one READY=1\n");
    }

    #[test]
    fn status_names_the_calls_in_progress_and_a_drain() {
        let serving = Health {
            calls: 3,
            draining: false,
        };
        let expected = "serving; calls in progress: 3";
        assert_eq!(status(serving), State::Status(expected.to_owned()));
        let draining = Health {
            calls: 1,
            draining: true,
        };
        let expected = "draining for shutdown; calls in progress: 1";
        assert_eq!(status(draining), State::Status(expected.to_owned()));
    }

    #[test]
    fn watchdog_period_is_read_from_microseconds() {
        let period = watchdog_from(Some("20000000"), None);
        assert_eq!(period, Some(Duration::from_secs(20)));
        assert_eq!(watchdog_from(None, None), None);
        assert_eq!(watchdog_from(Some("0"), None), None);
        assert_eq!(watchdog_from(Some("soon"), None), None);
    }

    #[test]
    fn watchdog_meant_for_another_process_is_ignored() {
        let own = std::process::id().to_string();
        let other = (std::process::id() + 1).to_string();
        assert!(watchdog_from(Some("1000000"), Some(&own)).is_some());
        assert_eq!(watchdog_from(Some("1000000"), Some(&other)), None);
    }

    #[test]
    fn datagram_reaches_a_socket_named_by_path() {
        let dir = std::env::temp_dir().join(format!("callvault-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();

        let notifier = Notifier::to(path.to_str().unwrap()).unwrap();
        notifier.send(&[State::Ready]).unwrap();
        assert_eq!(received(&listener), "READY=1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn datagram_reaches_an_abstract_socket() {
        let name = format!("callvault-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();

        let notifier = Notifier::to(&format!("@{name}")).unwrap();
        notifier.send(&[State::Stopping]).unwrap();
        assert_eq!(received(&listener), "STOPPING=1\n");
    }

    #[test]
    fn unusable_socket_addresses_are_refused() {
        let error = Notifier::to("vsock:2:1234").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_enabled());
        notifier.send(&[State::Ready]).unwrap();
    }

    fn received(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 512];
        let length = listener.recv(&mut buffer).unwrap();
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    }
}
