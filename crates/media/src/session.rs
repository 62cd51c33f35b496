//! A call's media session: its sockets, relay tasks, tap and inactivity timer.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;
use tracing::{debug, Instrument};

use crate::engine::EngineShared;
use crate::pool::PortLease;
use crate::relay::{Component, MediaSocket, Relay, StreamState};
use crate::splice::Splice;
use crate::stats::{DirectionStats, DropCounters, DropReason, SessionStats, TrafficCounters};
use crate::tap::{Tap, TapPacket};
use crate::{MediaError, Side};

/// What a stream carries, which decides what the relay lets through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StreamProtocol {
    /// RTP and RTCP: datagrams must look like them, and are mirrored to the tap.
    #[default]
    Rtp,
    /// T.38 fax over UDPTL (`m=image ... udptl t38`): any datagram passes on the RTP
    /// port and counts as activity; nothing is mirrored, the recorder cannot play it.
    Udptl,
}

/// One call's media relay; dropping it stops its tasks and frees its ports.
///
/// Ports go back to the pool when the relay tasks have closed their sockets, which
/// happens the next time the runtime polls the aborted tasks, not inside `drop`.
#[derive(Debug)]
pub struct MediaSession {
    shared: Arc<SessionShared>,
    local_ips: [IpAddr; 2],
    streams: Vec<Stream>,
    tasks: Vec<AbortHandle>,
}

/// What callvault sends on a session itself: the recording announcement.
///
/// Holding one keeps the session's sockets open; a task playing an announcement
/// holds it for the announcement's length at most.
#[derive(Debug, Clone)]
pub struct OwnMedia {
    shared: Arc<SessionShared>,
    streams: Vec<(Arc<StreamState>, [Arc<MediaSocket>; 2])>,
}

impl OwnMedia {
    /// Whether the call's session is gone (the call ended): send nothing more.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// See [`MediaSession::set_joined`]. Joining after an announcement was sent
    /// splices the practice's stream onto it (see `splice.rs`).
    pub fn set_joined(&self, joined: bool) {
        self.shared.set_joined(joined);
    }

    /// Sends `packet` to `to` on `stream`, from the socket `to` sends its RTP to,
    /// and mirrors it to the tap as coming from the other side. `false` when `to`
    /// has no address yet or the send failed.
    pub async fn send_rtp(&self, to: Side, stream: usize, packet: &[u8]) -> bool {
        let Some((state, sockets)) = self.streams.get(stream) else {
            return false;
        };
        let Some(destination) = state.rtp.destination(to) else {
            return false;
        };
        let sent = sockets[to.index()]
            .socket
            .send_to(packet, destination)
            .await
            .is_ok();
        if sent {
            self.shared.note_own_rtp(packet);
            self.shared
                .mirror(to.other(), stream, false, Instant::now(), packet);
        }
        sent
    }
}

/// The sockets of one stream and what each side's SDP said about it.
#[derive(Debug)]
struct Stream {
    state: Arc<StreamState>,
    rtp_ports: [u16; 2],
    /// The RTP socket facing each side, for what callvault itself sends.
    rtp_sockets: [Arc<MediaSocket>; 2],
    signalled: Mutex<[Signalled; 2]>,
}

/// A side's media addresses as its SDP gave them.
#[derive(Debug, Default, Clone, Copy)]
struct Signalled {
    rtp: Option<SocketAddr>,
    /// From `a=rtcp`; without it RTCP goes to the RTP port plus one.
    rtcp: Option<SocketAddr>,
}

impl Signalled {
    fn rtcp_destination(&self) -> Option<SocketAddr> {
        let next_port = |rtp: SocketAddr| {
            let port = rtp.port().checked_add(1)?;
            Some(SocketAddr::new(rtp.ip(), port))
        };
        self.rtcp.or_else(|| self.rtp.and_then(next_port))
    }
}

/// The RTP and RTCP sockets of one side of one stream.
struct SocketPair {
    rtp: Arc<MediaSocket>,
    rtcp: Arc<MediaSocket>,
    rtp_port: u16,
}

impl SocketPair {
    fn get(&self, component: Component) -> &Arc<MediaSocket> {
        match component {
            Component::Rtp => &self.rtp,
            Component::Rtcp => &self.rtcp,
        }
    }
}

impl MediaSession {
    pub(crate) fn new(engine: Arc<EngineShared>, pbx_ip: IpAddr, trunk_ip: IpAddr) -> Self {
        let timeout = engine.config.rtp_timeout;
        let shared = SessionShared {
            engine,
            traffic: Default::default(),
            drops: DropCounters::default(),
            tap_drops: AtomicU64::new(0),
            tapped: AtomicU64::new(0),
            tap: RwLock::new(None),
            joined: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            last_own_rtp: Mutex::new(None),
            spliced: AtomicBool::new(false),
            splice: Mutex::new(None),
            activity: Activity::new(timeout),
        };
        Self {
            shared: Arc::new(shared),
            local_ips: [pbx_ip, trunk_ip],
            streams: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Binds socket pairs on both sides for streams `0..count`.
    ///
    /// Streams already bound are kept (SDP never removes an `m=` line), so this is
    /// called with the stream count of every offer and answer.
    pub async fn ensure_streams(&mut self, count: usize) -> Result<(), MediaError> {
        while self.streams.len() < count {
            let pbx = self.bind_pair(Side::Pbx)?;
            let trunk = self.bind_pair(Side::Trunk)?;
            let stream = self.start_stream([pbx, trunk]);
            self.streams.push(stream);
        }
        Ok(())
    }

    /// How many streams have sockets.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The RTP port callvault advertises to `side` in SDP for `stream`.
    pub fn local_rtp_port(&self, side: Side, stream: usize) -> Option<u16> {
        Some(self.streams.get(stream)?.rtp_ports[side.index()])
    }

    /// Sets `side`'s RTP address from its SDP; `None` for port 0 or no address.
    ///
    /// RTCP follows to the port above unless [`Self::set_remote_rtcp`] says otherwise.
    /// A changed address forgets where the side was latched. Ignored for a stream that
    /// [`Self::ensure_streams`] has not bound.
    pub fn set_remote(&self, side: Side, stream: usize, remote: Option<SocketAddr>) {
        self.update_signalled(side, stream, |signalled| signalled.rtp = usable(remote));
    }

    /// Sets `side`'s RTCP address from an `a=rtcp` attribute; `None` when absent.
    pub fn set_remote_rtcp(&self, side: Side, stream: usize, remote: Option<SocketAddr>) {
        self.update_signalled(side, stream, |signalled| signalled.rtcp = usable(remote));
    }

    /// Says what `stream` carries; streams start as [`StreamProtocol::Rtp`].
    pub fn set_protocol(&self, stream: usize, protocol: StreamProtocol) {
        if let Some(stream) = self.streams.get(stream) {
            stream.state.set_protocol(protocol);
        }
    }

    /// Holds the parties apart (`false`) or joins them (`true`, the default).
    ///
    /// Apart, each side's packets are still received, latched and mirrored to the
    /// tap, but not sent on: while callvault plays the recording announcement to
    /// the external party, neither hears the other.
    pub fn set_joined(&self, joined: bool) {
        self.shared.set_joined(joined);
    }

    /// Sends an RTP packet of callvault's own; see [`OwnMedia::send_rtp`].
    pub async fn send_own_rtp(&self, to: Side, stream: usize, packet: &[u8]) -> bool {
        self.own_media().send_rtp(to, stream, packet).await
    }

    /// A handle for what callvault itself sends on this session, which a task
    /// pacing an announcement can own. It keeps the streams bound now.
    pub fn own_media(&self) -> OwnMedia {
        let streams = self
            .streams
            .iter()
            .map(|stream| (Arc::clone(&stream.state), stream.rtp_sockets.clone()))
            .collect();
        OwnMedia {
            shared: Arc::clone(&self.shared),
            streams,
        }
    }

    /// Starts, replaces or (with `None`) stops mirroring packets to a tap.
    pub fn set_tap(&self, tap: Option<Tap>) {
        *self.shared.tap_slot() = tap;
    }

    pub fn stats(&self) -> SessionStats {
        self.shared.stats()
    }

    /// Resolves once neither side has sent RTP for the configured `rtp_timeout`.
    ///
    /// Time counts from the session's opening or the last [`Self::resume_timeout`]. The
    /// check runs on a coarse timer, so it resolves up to a quarter of the timeout (at
    /// most a second) late.
    pub async fn inactive(&self) {
        self.inactivity().wait().await;
    }

    /// A handle on [`Self::inactive`] that does not borrow the session.
    pub fn inactivity(&self) -> Inactivity {
        Inactivity {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stops the inactivity timer, for a call on hold that sends no RTP.
    pub fn pause_timeout(&self) {
        self.shared.activity.paused.store(true, Ordering::Relaxed);
    }

    /// Restarts the inactivity timer from now.
    pub fn resume_timeout(&self) {
        self.shared.activity.resume(Instant::now());
    }

    /// Takes free port pairs until one binds on `side`'s address.
    ///
    /// A pair some other program holds is skipped; its lease is kept until the end so
    /// the same pair is not drawn twice.
    fn bind_pair(&self, side: Side) -> Result<SocketPair, MediaError> {
        let ip = self.local_ips[side.index()];
        let mut skipped = Vec::new();
        loop {
            let lease = self.shared.engine.pool.take();
            let lease = lease.ok_or(MediaError::PortsExhausted)?;
            match bind_both(ip, &lease) {
                Ok((rtp, rtcp)) => return Ok(SocketPair::new(rtp, rtcp, lease)),
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                    debug!(port = lease.rtp_port(), "media port pair in use elsewhere");
                    skipped.push(lease);
                }
                Err(source) => {
                    return Err(MediaError::Bind {
                        address: ip,
                        source,
                    })
                }
            }
        }
    }

    /// Spawns the four relay tasks of a stream.
    fn start_stream(&mut self, pairs: [SocketPair; 2]) -> Stream {
        let index = self.streams.len();
        let state = Arc::new(StreamState::default());
        for from in [Side::Pbx, Side::Trunk] {
            for component in [Component::Rtp, Component::Rtcp] {
                let relay = Relay {
                    from,
                    stream: index,
                    component,
                    inbound: Arc::clone(pairs[from.index()].get(component)),
                    outbound: Arc::clone(pairs[from.other().index()].get(component)),
                    state: Arc::clone(&state),
                    session: Arc::clone(&self.shared),
                };
                let task = tokio::spawn(relay.run().in_current_span());
                self.tasks.push(task.abort_handle());
            }
        }
        Stream {
            state,
            rtp_ports: [pairs[0].rtp_port, pairs[1].rtp_port],
            rtp_sockets: [Arc::clone(&pairs[0].rtp), Arc::clone(&pairs[1].rtp)],
            signalled: Mutex::default(),
        }
    }

    fn update_signalled(&self, side: Side, index: usize, change: impl FnOnce(&mut Signalled)) {
        let Some(stream) = self.streams.get(index) else {
            debug!(
                side = side.as_str(),
                stream = index,
                "remote address for unbound stream"
            );
            return;
        };
        // Whole values are written under the lock, so a poisoned one is still consistent.
        let mut signalled = stream
            .signalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = &mut signalled[side.index()];
        change(entry);
        stream.state.rtp.retarget(side, entry.rtp);
        stream.state.rtcp.retarget(side, entry.rtcp_destination());
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
        // An Inactivity handle may outlive the session; the recorder must still see
        // its tap close.
        *self.shared.tap_slot() = None;
        self.shared.engine.session_closed();
    }
}

impl SocketPair {
    fn new(rtp: UdpSocket, rtcp: UdpSocket, lease: PortLease) -> Self {
        let rtp_port = lease.rtp_port();
        let lease = Arc::new(lease);
        Self {
            rtp: Arc::new(MediaSocket::new(rtp, Arc::clone(&lease))),
            rtcp: Arc::new(MediaSocket::new(rtcp, lease)),
            rtp_port,
        }
    }
}

fn bind_both(ip: IpAddr, lease: &PortLease) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let rtp = bind(SocketAddr::new(ip, lease.rtp_port()))?;
    let rtcp = bind(SocketAddr::new(ip, lease.rtcp_port()))?;
    Ok((rtp, rtcp))
}

/// Binds without waiting: tokio's own `bind` would resolve the address first.
fn bind(address: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(address)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// An address media can be sent to: not port 0, not `0.0.0.0` (RFC 2543 hold).
fn usable(remote: Option<SocketAddr>) -> Option<SocketAddr> {
    remote.filter(|address| address.port() != 0 && !address.ip().is_unspecified())
}

/// What a session and its relay tasks share.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) engine: Arc<EngineShared>,
    /// Indexed by the side packets came from.
    traffic: [TrafficCounters; 2],
    drops: DropCounters,
    tap_drops: AtomicU64,
    tapped: AtomicU64,
    tap: RwLock<Option<Tap>>,
    activity: Activity,
    /// Whether each side's packets are sent on to the other.
    pub(crate) joined: AtomicBool,
    /// Set when the session is dropped, for holders of [`OwnMedia`].
    closed: AtomicBool,
    /// The last RTP header callvault sent itself, and its frame length in ticks.
    last_own_rtp: Mutex<Option<([u8; 12], u32)>>,
    /// Whether the practice's packets to the trunk go out as callvault's stream.
    pub(crate) spliced: AtomicBool,
    pub(crate) splice: Mutex<Option<Splice>>,
}

impl SessionShared {
    /// Remembers a packet callvault sent itself, for the splice after it.
    fn note_own_rtp(&self, packet: &[u8]) {
        let Some(header) = packet.first_chunk::<12>().copied() else {
            return;
        };
        let timestamp = |h: &[u8; 12]| u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let mut last = self
            .last_own_rtp
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ticks = last.map_or(0, |(previous, _)| {
            timestamp(&header).wrapping_sub(timestamp(&previous))
        });
        *last = Some((header, ticks));
    }

    /// Joining after an announcement splices the practice's stream onto it.
    fn set_joined(&self, joined: bool) {
        if joined {
            self.splice_after_own_rtp();
        }
        self.joined.store(joined, Ordering::Relaxed);
    }

    fn splice_after_own_rtp(&self) {
        let last = *self
            .last_own_rtp
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(splice) = last.and_then(|(header, ticks)| Splice::after(&header, ticks)) else {
            return;
        };
        *self.splice.lock().unwrap_or_else(PoisonError::into_inner) = Some(splice);
        self.spliced.store(true, Ordering::Relaxed);
    }

    pub(crate) fn count_relayed(&self, from: Side, bytes: usize) {
        self.traffic[from.index()].count(bytes);
        self.engine.relayed.count(bytes);
    }

    pub(crate) fn count_drop(&self, reason: DropReason) {
        self.drops.count(reason);
        self.engine.count_drop(reason);
    }

    pub(crate) fn mark_activity(&self, from: Side, at: Instant) {
        self.activity.mark(from, at);
    }

    /// Offers a copy to the tap, if one is set; never waits.
    pub(crate) fn mirror(
        &self,
        from: Side,
        stream: usize,
        rtcp: bool,
        arrival: Instant,
        data: &[u8],
    ) {
        let slot = self.tap.read().unwrap_or_else(PoisonError::into_inner);
        let Some(tap) = slot.as_ref() else {
            return;
        };
        let packet = TapPacket {
            from,
            stream,
            arrival,
            rtcp,
            data: Bytes::copy_from_slice(data),
        };
        if tap.offer(packet) {
            self.tapped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.tap_drops.fetch_add(1, Ordering::Relaxed);
            self.engine.count_tap_drop();
        }
    }

    fn tap_slot(&self) -> std::sync::RwLockWriteGuard<'_, Option<Tap>> {
        // The slot holds one whole value; a poisoned lock cannot have left it half set.
        self.tap.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> SessionStats {
        let direction = |from: Side| DirectionStats {
            packets: self.traffic[from.index()].packets(),
            bytes: self.traffic[from.index()].bytes(),
            last_rtp: self.activity.last_rtp(from),
        };
        let pbx_to_trunk = direction(Side::Pbx);
        let trunk_to_pbx = direction(Side::Trunk);
        SessionStats {
            pbx_to_trunk,
            trunk_to_pbx,
            drops: self.drops.snapshot(),
            tap_drops: self.tap_drops.load(Ordering::Relaxed),
            tapped: self.tapped.load(Ordering::Relaxed),
            last_rtp: pbx_to_trunk.last_rtp.max(trunk_to_pbx.last_rtp),
        }
    }
}

/// When each side last sent RTP, as nanoseconds after `origin` plus one (0: never).
#[derive(Debug)]
struct Activity {
    origin: Instant,
    timeout: Duration,
    last_rtp: [AtomicU64; 2],
    /// When the timer last (re)started, as nanoseconds after `origin`.
    since: AtomicU64,
    paused: AtomicBool,
}

impl Activity {
    fn new(timeout: Duration) -> Self {
        Self {
            origin: Instant::now(),
            timeout,
            last_rtp: Default::default(),
            since: AtomicU64::new(0),
            paused: AtomicBool::new(false),
        }
    }

    fn mark(&self, from: Side, at: Instant) {
        let stamp = self.stamp(at).saturating_add(1);
        self.last_rtp[from.index()].store(stamp, Ordering::Relaxed);
    }

    fn resume(&self, now: Instant) {
        self.since.store(self.stamp(now), Ordering::Relaxed);
        self.paused.store(false, Ordering::Relaxed);
    }

    fn last_rtp(&self, from: Side) -> Option<Instant> {
        let stamp = self.last_rtp[from.index()].load(Ordering::Relaxed);
        let nanos = stamp.checked_sub(1)?;
        Some(self.origin + Duration::from_nanos(nanos))
    }

    fn expired(&self, now: Instant) -> bool {
        if self.paused.load(Ordering::Relaxed) {
            return false;
        }
        let last_rtp = self.last_rtp.iter().map(|stamp| {
            let stamp = stamp.load(Ordering::Relaxed);
            stamp.saturating_sub(1)
        });
        let latest = last_rtp.fold(self.since.load(Ordering::Relaxed), u64::max);
        self.stamp(now).saturating_sub(latest) >= duration_nanos(self.timeout)
    }

    fn stamp(&self, at: Instant) -> u64 {
        duration_nanos(at.saturating_duration_since(self.origin))
    }

    /// How often to look: often enough for short test timeouts, cheap for long ones.
    fn check_period(&self) -> Duration {
        let period = self.timeout / 4;
        period.clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Waits for a session's media to go quiet; cheap to clone.
///
/// Once the session is dropped no RTP arrives, so a held handle resolves after the timeout.
#[derive(Debug, Clone)]
pub struct Inactivity {
    shared: Arc<SessionShared>,
}

impl Inactivity {
    /// Resolves once neither side has sent RTP for the session's `rtp_timeout`.
    pub async fn wait(&self) {
        let activity = &self.shared.activity;
        let mut ticker = tokio::time::interval(activity.check_period());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if activity.expired(Instant::now()) {
                return;
            }
        }
    }
}
