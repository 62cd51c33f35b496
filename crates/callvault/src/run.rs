//! The daemon: wiring the configuration into the B2BUA, and signals.
//!
//! Signals are handled here and nowhere else. SIGTERM or SIGINT asks the
//! B2BUA to drain: new calls are refused, calls in progress get
//! `[sip] shutdown_grace_seconds` to end, then the rest are hung up. A second
//! one ends the process at once. SIGHUP reloads the recording policy from the
//! config file and the opt-out list, and the log level. systemd hears of each
//! step (`systemd`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use callvault_b2bua::{B2buaConfig, B2buaStats, Controller, SideConfig};
use callvault_policy::Rule;
use callvault_store::audit::AuditAction;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

use crate::config::{self, Config, Source};
use crate::pid_file::PidFile;
use crate::policy::PolicyState;
use crate::recording::{start_recorder, RecordingHook};
use crate::systemd::{Notifier, State};
use crate::tasks::Tasks;

/// How long recordings may take to be written and indexed once the B2BUA stopped.
const RECORDER_GRACE: Duration = Duration::from_secs(10);

/// How long a peer's host name may take to resolve at start-up.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the daemon until a stop signal, on its own runtime.
pub(crate) fn run(config: Config, source: &Source) -> anyhow::Result<()> {
    // Before anything is logged or opened: a second daemon on the same data
    // says so in one line and touches nothing.
    let _pid_file = PidFile::claim(&config.storage.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("callvault")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(daemon(config, source))
}

async fn daemon(config: Config, source: &Source) -> anyhow::Result<()> {
    info!(config = %source, version = env!("CARGO_PKG_VERSION"), "callvault starting");
    // Keys are checked before anything listens: a daemon that could not protect a
    // recording must not take calls it would be asked to record.
    let keyring = Arc::new(crate::keys::for_daemon(&config, source)?);
    info!(key = %keyring.current().id(), "master keys loaded");
    let store = Arc::new(open_store(&config, &keyring)?);
    let _admin_socket = crate::admin::serve(&config, Arc::clone(&store))?;
    let b2bua = b2bua_config(&config).await?;
    tokio::fs::create_dir_all(&b2bua.state_dir)
        .await
        .with_context(|| format!("cannot create {}", b2bua.state_dir.display()))?;

    let policy = Arc::new(PolicyState::load(&config)?);
    let notifier = Arc::new(Notifier::from_env());
    let (controller, controls) = callvault_b2bua::control_channel();
    let mut tasks = watch_signals(&config, source, &policy, &controller, &notifier)?;

    // Bound before the recorder and retention start: a taken address stops start-up.
    let metrics_listener = crate::metrics::bind(config.metrics.listen).await?;
    let recorder = start_recorder(&config, Arc::clone(&store), keyring)
        .context("cannot start the recorder")?;
    let hook = Arc::new(RecordingHook::new(
        recorder.handle(),
        Arc::clone(&policy),
        &config,
    )?);
    let b2bua_stats = Arc::new(B2buaStats::default());
    let (housekeeping, housekeeping_tasks) = crate::housekeeping::start(&config, store);
    tasks.extend(housekeeping_tasks);
    let sources = crate::metrics::Sources {
        b2bua: Arc::clone(&b2bua_stats),
        recorder: recorder.handle(),
        policy: Arc::clone(&policy),
        housekeeping,
        started_ms: callvault_store::file::unix_ms_now(),
    };
    tasks.push(crate::metrics::spawn(metrics_listener, sources));

    log_started(&b2bua);
    if notifier.is_enabled() {
        let supervise = crate::systemd::supervise(notifier, controller.clone());
        tasks.push(tokio::spawn(supervise));
    }
    // `controller` lives on until the B2BUA stops: were every controller
    // dropped, it would end its calls at once instead of draining them.
    let outcome = callvault_b2bua::serve_controlled(b2bua, hook, b2bua_stats, controls).await;
    drop(controller);
    drop(tasks);
    // The B2BUA ended every call as it stopped; their recordings finish now.
    recorder.shutdown(RECORDER_GRACE).await;
    log_excluded(&policy);

    outcome.context("the B2BUA stopped on an error")?;
    info!("callvault stopped");
    Ok(())
}

/// Installs the signal handlers and the opt-out list's watch.
///
/// Handlers are installed before "started" is logged, so that a stop signal
/// sent as soon as the line appears is never fatal.
fn watch_signals(
    config: &Config,
    source: &Source,
    policy: &Arc<PolicyState>,
    controller: &Controller,
    notifier: &Arc<Notifier>,
) -> anyhow::Result<Tasks> {
    let signals = Signals::install().context("cannot install signal handlers")?;
    let stop = Stop {
        controller: controller.clone(),
        notifier: Arc::clone(notifier),
        grace: Duration::from_secs(config.sip.shutdown_grace_seconds),
    };
    let reload = Reload {
        policy: Arc::clone(policy),
        source: source.clone(),
        notifier: Arc::clone(notifier),
    };
    Ok(Tasks::from([
        tokio::spawn(signals.handle(stop, reload)),
        tokio::spawn(watch_opt_outs(Arc::clone(policy))),
    ]))
}

/// Opens the data directory: recordings a crash left unfinished are recovered and
/// indexed as partial; a missing or corrupt index stops start-up with the way
/// forward. The store stays open while the daemon runs, which also keeps a second
/// daemon off the same data.
pub(crate) fn open_store(
    config: &Config,
    keyring: &callvault_store::keys::Keyring,
) -> anyhow::Result<callvault_store::Store> {
    let data_dir = &config.storage.data_dir;
    let (store, report) = callvault_store::Store::open(data_dir, keyring)
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    for id in &report.recovered {
        info!(recording = %id, "recording recovered after a crash; marked partial");
        let (operator, action) = (crate::operator::Operator::daemon(), AuditAction::Recover);
        let reason = "cut short by a crash; kept up to its last whole segment";
        crate::keys::audit(config, &operator, action, &id.to_string(), reason)?;
    }
    for (path, error) in &report.unrecoverable {
        warn!(path = %path.display(), %error, "unfinished recording could not be recovered");
    }
    Ok(store)
}

fn log_started(b2bua: &B2buaConfig) {
    info!(
        pbx.listen = %b2bua.pbx.listen,
        pbx.peer = %b2bua.pbx.peer,
        trunk.listen = %b2bua.trunk.listen,
        trunk.peer = %b2bua.trunk.peer,
        media.ports = %format_args!("{}-{}", b2bua.media_port_min, b2bua.media_port_max),
        "callvault started"
    );
}

/// Builds what the B2BUA needs, resolving both peers.
async fn b2bua_config(config: &Config) -> anyhow::Result<B2buaConfig> {
    let pbx = side_config("pbx", &config.pbx).await?;
    let trunk = side_config("trunk", &config.trunk).await?;
    Ok(assemble(config, pbx, trunk))
}

/// The parts of the B2BUA's configuration that need no network.
fn assemble(config: &Config, pbx: SideConfig, trunk: SideConfig) -> B2buaConfig {
    B2buaConfig {
        pbx,
        trunk,
        media_port_min: config.media.port_min,
        media_port_max: config.media.port_max,
        rtp_timeout: Duration::from_secs(config.media.rtp_timeout_seconds),
        state_dir: config.storage.data_dir.join("state"),
        t1: Duration::from_millis(config.sip.t1_ms),
    }
}

async fn side_config(name: &str, side: &config::Side) -> anyhow::Result<SideConfig> {
    let peer = resolve_peer(name, side).await?;
    let advertise = match side.advertise {
        Some(address) => Some(address),
        None if side.listen.ip().is_unspecified() => Some(route_source(name, peer).await?),
        None => None,
    };
    let transport = match side.transport {
        config::Transport::Udp => callvault_b2bua::Transport::Udp,
        config::Transport::Tcp => callvault_b2bua::Transport::Tcp,
    };
    Ok(SideConfig {
        listen: side.listen,
        peer,
        advertise,
        transport,
    })
}

/// Resolves a peer once, to an address of the listen socket's IP version.
///
/// The address is fixed until restart: a provider that moves its SIP
/// servers to new addresses needs callvault restarted to follow.
async fn resolve_peer(name: &str, side: &config::Side) -> anyhow::Result<SocketAddr> {
    let peer = &side.peer;
    let lookup = tokio::net::lookup_host((peer.host.as_str(), peer.port));
    let addresses = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .with_context(|| format!("{name}.peer: resolving {peer} timed out"))?
        .with_context(|| format!("{name}.peer: cannot resolve {peer}"))?;

    let wanted_ipv4 = side.listen.is_ipv4();
    let mut addresses = addresses.filter(|address| address.is_ipv4() == wanted_ipv4);
    match addresses.next() {
        Some(address) => Ok(address),
        None => {
            let version = if wanted_ipv4 { "IPv4" } else { "IPv6" };
            bail!("{name}.peer: {peer} has no {version} address, the version of {name}.listen")
        }
    }
}

/// The local address the system would use to reach `peer`.
///
/// A listen address of 0.0.0.0 cannot be put in SIP or SDP, so without an
/// `advertise` key the address routed towards the peer is used. Connecting
/// a UDP socket only consults the routing table; it sends nothing.
async fn route_source(name: &str, peer: SocketAddr) -> anyhow::Result<IpAddr> {
    let unspecified: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = async {
        let socket = tokio::net::UdpSocket::bind(unspecified).await?;
        socket.connect(peer).await?;
        socket.local_addr()
    };
    let address = probe
        .await
        .with_context(|| format!("{name}.advertise: not set, and no route to {peer} to pick one"))?
        .ip();
    info!(side = name, advertise = %address, "advertising the address routed to the peer");
    Ok(address)
}

/// How often the opt-out list's file is looked at for a change. `callvault
/// opt-out add` then takes effect within this long, without a signal.
const OPT_OUT_CHECK: Duration = Duration::from_secs(2);

async fn watch_opt_outs(policy: Arc<PolicyState>) {
    let mut ticker = tokio::time::interval(OPT_OUT_CHECK);
    loop {
        ticker.tick().await;
        let policy = Arc::clone(&policy);
        // A stat, and a read of a small file when it changed: off the async threads.
        let _ = tokio::task::spawn_blocking(move || policy.reload_opt_outs(false)).await;
    }
}

/// What SIGHUP reloads.
struct Reload {
    policy: Arc<PolicyState>,
    source: Source,
    notifier: Arc<Notifier>,
}

impl Reload {
    /// Reloads the recording policy and the log level, with systemd told
    /// around it.
    async fn reload(&self) {
        info!(signal = "SIGHUP", "reload requested");
        self.notifier.tell(&[State::Reloading]);
        let (policy, source) = (Arc::clone(&self.policy), self.source.clone());
        let _ = tokio::task::spawn_blocking(move || {
            policy.reload_rules(&source);
            crate::logging::reload(&source);
        })
        .await;
        self.notifier.tell(&[State::Ready]);
    }
}

/// What the first stop signal starts: a drain of the B2BUA.
struct Stop {
    controller: Controller,
    notifier: Arc<Notifier>,
    grace: Duration,
}

impl Stop {
    async fn begin(&self, signal: &str) {
        let grace_seconds = self.grace.as_secs();
        info!(signal, grace_seconds, "shutdown requested");
        let status = State::Status("draining for shutdown".to_owned());
        self.notifier.tell(&[State::Stopping, status]);
        self.controller.drain(self.grace).await;
    }
}

fn log_excluded(policy: &PolicyState) {
    let count = |rule| policy.excluded(rule);
    info!(
        personal_extension = count(Rule::PersonalExtension),
        personal_ddi = count(Rule::PersonalDdi),
        opt_out = count(Rule::OptOut),
        direction = count(Rule::Direction),
        default = count(Rule::Default),
        "calls excluded from recording, by rule"
    );
}

/// The process's stop and reload signals.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Turns the first stop signal into a drain, a second one into an exit,
    /// and SIGHUP into a reload of the recording policy.
    async fn handle(mut self, stop: Stop, reload: Reload) {
        let mut stopping = false;
        loop {
            let name = tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.hangup.recv() => {
                    reload.reload().await;
                    continue;
                }
            };
            if stopping {
                warn!(
                    signal = name,
                    "second stop signal: exiting without a clean shutdown"
                );
                std::process::exit(1);
            }
            stopping = true;
            stop.begin(name).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn loopback_config() -> Config {
        config::parse(config::EMBEDDED_DEFAULT).unwrap()
    }

    #[tokio::test]
    async fn assembled_config_carries_units_and_state_dir() {
        let config = loopback_config();
        let b2bua = b2bua_config(&config).await.unwrap();
        assert_eq!(b2bua.state_dir, Path::new("./callvault-data/state"));
        assert_eq!(b2bua.t1, Duration::from_millis(500));
        assert_eq!(b2bua.rtp_timeout, Duration::from_secs(60));
        assert_eq!((b2bua.media_port_min, b2bua.media_port_max), (40000, 40999));
        assert_eq!(b2bua.trunk.peer, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(b2bua.pbx.advertise, None);
    }

    #[tokio::test]
    async fn host_name_peer_resolves_to_listen_ip_version() {
        let mut config = loopback_config();
        config.trunk.peer = config::HostPort::try_from("localhost:5080".to_owned()).unwrap();
        let trunk = side_config("trunk", &config.trunk).await.unwrap();
        assert_eq!(trunk.peer, "127.0.0.1:5080".parse().unwrap());
    }

    #[tokio::test]
    async fn peer_of_other_ip_version_is_refused_with_key() {
        let mut config = loopback_config();
        config.pbx.peer = config::HostPort::try_from("[::1]:5070".to_owned()).unwrap();
        let error = side_config("pbx", &config.pbx).await.unwrap_err();
        assert!(
            format!("{error:#}").starts_with("pbx.peer: [::1]:5070 has no IPv4"),
            "{error:#}"
        );
    }

    #[tokio::test]
    async fn wildcard_listen_advertises_routed_address() {
        let mut config = loopback_config();
        config.pbx.listen = "0.0.0.0:5060".parse().unwrap();
        let pbx = side_config("pbx", &config.pbx).await.unwrap();
        assert_eq!(pbx.advertise, Some(IpAddr::from([127, 0, 0, 1])));
    }
}
