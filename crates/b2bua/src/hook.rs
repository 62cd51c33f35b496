//! The per-call hook through which the recorder learns of calls and taps their media.
//!
//! The B2BUA calls the hook from its event loop, so an implementation must return at
//! once: it may start a task, never wait for one. Whatever the hook does, the call goes
//! on; a hook cannot fail a call.

use std::time::SystemTime;

use callvault_media::{Side, Tap};
use callvault_sip::sdp::MediaDescription;

/// Which way a call goes, seen from the practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    /// From the trunk to the PBX.
    Inbound,
    /// From the PBX to the trunk.
    Outbound,
}

/// What the B2BUA knows about a call, for the recorder and the recording policy.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// callvault's own id for the call, used in logs and file names.
    pub id: u64,
    pub direction: CallDirection,
    /// The user part or telephone number of From, as the caller's side sent it.
    pub caller: String,
    /// The user part of the Request-URI (the dialled number or extension).
    pub callee: String,
    /// Every header of the initial INVITE as received from the caller's side, so that
    /// policy can read P-Asserted-Identity or a PBX's own header.
    pub invite_headers: callvault_sip::Headers,
    pub started: SystemTime,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A BYE from this side.
    Bye(Side),
    /// The caller cancelled before answer.
    Cancelled,
    /// The call was rejected or failed before answer, with this status.
    Failed(u16),
    /// No RTP either way for the configured time.
    MediaTimeout,
    /// A transaction on this call timed out (no answer from a peer).
    TransactionTimeout,
    /// Session timers were in use and the session was not refreshed (RFC 4028 §10).
    SessionExpired,
    /// The daemon shut down.
    Shutdown,
}

/// The negotiated media of one side, whenever it changes (answer, re-INVITE, UPDATE).
#[derive(Debug, Clone)]
pub struct MediaUpdate {
    pub side: Side,
    pub streams: Vec<MediaDescription>,
}

/// The recording announcement for the caller of an inbound call, played as early
/// media (RFC 3960) before the practice answers.
#[derive(Debug)]
pub struct EarlyAnnouncement {
    /// The payload types, from the trunk's offer, that callvault's own 183 accepts:
    /// the announcement's codec, and telephone-event when offered so that the
    /// caller's digits still reach the practice. The PBX is offered only these,
    /// so that its answer needs no transcoding.
    pub formats: Vec<u8>,
    /// The announcement, one RTP packet per 20 ms.
    pub announcement: Vec<Vec<u8>>,
    /// One cadence of ringing tone in the same stream, played over and over after
    /// the announcement until the practice answers or sends media of its own:
    /// a caller who has early media hears no ringing of their own phone's.
    pub ringback: Vec<Vec<u8>>,
    /// The PBX is offered the call only once the announcement has played.
    pub before_offer: bool,
    /// The call's recording, started now so that it holds what the caller hears.
    pub tap: Option<Tap>,
}

/// What to do with a call's tap after [`CallHook::on_party_change`].
#[derive(Debug)]
pub enum TapChange {
    /// As it was.
    Keep,
    /// Copy the call's packets to this tap from now on.
    Start(Tap),
    /// Copy nothing from now on.
    Stop,
}

/// What the recorder implements.
pub trait CallHook: Send + Sync + 'static {
    /// A call's initial INVITE was accepted and is about to be relayed; no media
    /// has flowed yet. The recording policy decides here.
    fn on_invite(&self, call: &CallInfo) {
        let _ = call;
    }

    /// A call was answered. A returned tap receives a copy of every packet from now on.
    ///
    /// Not called when [`on_early_media`](Self::on_early_media) already returned a
    /// tap for the call: that tap stays for the whole call.
    fn on_answer(&self, call: &CallInfo) -> Option<Tap>;

    /// A provisional response with SDP was relayed, so early media may flow before
    /// the answer. A returned tap receives a copy of every packet from now on.
    fn on_early_media(&self, call: &CallInfo) -> Option<Tap> {
        let _ = call;
        None
    }

    /// The recording announcement for an answered outbound call whose recording
    /// has started: RTP packets to send to the trunk side, one every 20 ms, while
    /// the parties are held apart. `None` plays nothing.
    fn announcement(&self, call: &CallInfo) -> Option<Vec<Vec<u8>>> {
        let _ = call;
        None
    }

    /// The recording announcement for an inbound call the policy records, given
    /// the trunk's offer (already passed to [`on_media`](Self::on_media)). `None`
    /// plays nothing and the call goes on as any other.
    fn early_announcement(&self, call: &CallInfo) -> Option<EarlyAnnouncement> {
        let _ = call;
        None
    }

    /// An in-dialog request from the PBX (a REFER, a re-INVITE or an UPDATE) may
    /// name a new practice-side party, as a transfer does; the recording policy
    /// decides again. Never called for requests from the trunk.
    fn on_party_change(&self, call: &CallInfo, request: &callvault_sip::Headers) -> TapChange {
        let _ = (call, request);
        TapChange::Keep
    }

    /// One side's SDP was accepted; codecs and directions may have changed.
    fn on_media(&self, call: &CallInfo, update: &MediaUpdate) {
        let _ = (call, update);
    }

    /// The call is over; its media is released after this returns.
    fn on_end(&self, call: &CallInfo, reason: EndReason);
}

/// The hook of a B2BUA that records nothing.
#[derive(Debug, Default)]
pub struct NoRecording;

impl CallHook for NoRecording {
    fn on_answer(&self, _call: &CallInfo) -> Option<Tap> {
        None
    }

    fn on_end(&self, _call: &CallInfo, _reason: EndReason) {}
}
