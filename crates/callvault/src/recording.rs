//! The B2BUA's hook that records calls: it turns call events into the recorder's.
//!
//! The recording policy decides on each call's initial INVITE. A call it excludes
//! never reaches the recorder: no tap is handed out, so the relay copies none of
//! its packets, and none of its events (media, end) is passed on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use callvault_b2bua::{CallHook, CallInfo, EarlyAnnouncement, EndReason, MediaUpdate, TapChange};
use callvault_media::{Side, Tap};
use callvault_recorder::encode::OutputFormat;
use callvault_recorder::mix::Channels;
use callvault_recorder::pipeline::PipelineConfig;
use callvault_recorder::{CallStart, Recorder, RecorderConfig, RecorderHandle};
use callvault_store::file::WriterOptions;
use callvault_store::keys::Keyring;
use callvault_store::{CallDirection, Store};

use anyhow::Context as _;
use callvault_policy::Action;
use callvault_recorder::announcement::{Announcement, RtpStream};
use callvault_recorder::formats::{PayloadFormat, SideMedia};
use callvault_sip::Headers;
use tracing::warn;

use crate::config::{self, AnnounceInbound, Config};
use crate::policy::PolicyState;

/// How long each jitter buffer waits for late packets.
const JITTER_DEPTH: Duration = Duration::from_millis(60);

/// How much audio the writer gathers before sealing a segment. With the task's
/// tick (100 ms) and the pipeline's lag (180 ms), a crash loses under one second
/// (docs/recording.md).
const SEGMENT_INTERVAL: Duration = Duration::from_millis(500);

/// Starts the recorder for the daemon.
pub(crate) fn start_recorder(
    config: &Config,
    store: Arc<Store>,
    keys: Arc<Keyring>,
) -> std::io::Result<Recorder> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // Ogg Opus recordings are made live as WAV and compressed after the call, so
    // that a burst of calls can never make the recorder drop audio for want of CPU
    // (crates/recorder/src/transcode.rs).
    let transcode_to = match config.storage.format {
        config::AudioFormat::Opus => Some(OutputFormat::OggOpus),
        config::AudioFormat::Wav => None,
    };
    let recorder = RecorderConfig {
        pipeline: PipelineConfig {
            format: OutputFormat::Wav,
            channels: match config.storage.channels {
                config::Channels::Stereo => Channels::Stereo,
                config::Channels::Mono => Channels::Mono,
            },
            jitter_depth: JITTER_DEPTH,
        },
        writer: WriterOptions {
            segment_interval: SEGMENT_INTERVAL,
            sync_each_segment: true,
        },
        tap_capacity: config.media.tap_queue_packets,
        threads,
        transcode_to,
    };
    Recorder::new(recorder, store, keys)
}

/// Records every call the recording policy allows.
#[derive(Debug)]
pub(crate) struct RecordingHook {
    recorder: RecorderHandle,
    policy: Arc<PolicyState>,
    early_media: bool,
    /// Played to the external party of each recorded call, if set.
    announcement: Option<Announcement>,
    /// When inbound callers hear it.
    announce_inbound: AnnounceInbound,
    /// What inbound callers hear after it until the practice answers.
    ringing: Announcement,
    /// What the policy decided for each call in progress, by call id.
    calls: Mutex<HashMap<u64, CallState>>,
}

/// One call as the hook knows it.
#[derive(Debug)]
struct CallState {
    /// Whether the call is recorded now: the policy may change its mind when the
    /// call is transferred.
    recorded: bool,
    /// The practice-side extension, when the policy found one.
    extension: Option<String>,
    /// Each side's latest SDP, kept in memory only, so that a recording started
    /// by a transfer knows the codecs.
    media: [Option<MediaUpdate>; 2],
}

impl RecordingHook {
    /// The hook; reads the announcement's WAV file, if one is configured.
    pub(crate) fn new(
        recorder: RecorderHandle,
        policy: Arc<PolicyState>,
        config: &Config,
    ) -> anyhow::Result<Self> {
        let announcement = check_announcement(config)?;
        Ok(Self {
            recorder,
            policy,
            early_media: config.storage.early_media,
            announcement,
            announce_inbound: config.policy.announcement_inbound,
            ringing: Announcement::uk_ringing_tone(),
            calls: Mutex::new(HashMap::new()),
        })
    }

    /// The trunk side's SDP, if the call is to be recorded.
    fn recorded_trunk_media(&self, call: &CallInfo) -> Option<MediaUpdate> {
        let calls = self.calls();
        let state = calls.get(&call.id).filter(|state| state.recorded)?;
        state.media[side_index(Side::Trunk)].clone()
    }

    fn calls(&self) -> MutexGuard<'_, HashMap<u64, CallState>> {
        // Every change is to one entry at a time: a panic leaves the map whole.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the call's recording, if the policy records it.
    fn start(&self, call: &CallInfo) -> Option<Tap> {
        let extension = match self.calls().get(&call.id) {
            Some(state) if state.recorded => state.extension.clone(),
            _ => return None,
        };
        let direction = match call.direction {
            callvault_b2bua::CallDirection::Outbound => CallDirection::Outbound,
            callvault_b2bua::CallDirection::Inbound => CallDirection::Inbound,
        };
        self.recorder.start(CallStart {
            call_id: call.id,
            direction,
            caller: call.caller.clone(),
            callee: call.callee.clone(),
            extension,
        })
    }

    /// A recording begins mid-call: the recorder learns the SDP it missed first.
    fn start_after_transfer(&self, call: &CallInfo, extension: Option<String>) -> TapChange {
        let media = {
            let mut calls = self.calls();
            let Some(state) = calls.get_mut(&call.id) else {
                return TapChange::Keep;
            };
            state.recorded = true;
            state.extension = extension;
            state.media.clone()
        };
        for update in media.iter().flatten() {
            self.recorder.media(call.id, update.side, &update.streams);
        }
        self.start(call).map_or(TapChange::Keep, TapChange::Start)
    }
}

impl CallHook for RecordingHook {
    fn on_invite(&self, call: &CallInfo) {
        let decision = self.policy.decide(call);
        let state = CallState {
            recorded: decision.action == Action::Record,
            extension: decision.extension,
            media: [None, None],
        };
        self.calls().insert(call.id, state);
    }

    fn on_answer(&self, call: &CallInfo) -> Option<Tap> {
        self.start(call)
    }

    fn on_early_media(&self, call: &CallInfo) -> Option<Tap> {
        if self.early_media {
            self.start(call)
        } else {
            None
        }
    }

    fn announcement(&self, call: &CallInfo) -> Option<Vec<Vec<u8>>> {
        let announcement = self.announcement.as_ref()?;
        let trunk = self.recorded_trunk_media(call)?;
        // The trunk's answer: its first codec is the call's.
        let chosen = SideMedia::from_sdp(&trunk.streams).preferred_payload_type();
        let packets =
            chosen.and_then(|(pt, format)| announcement_packets(announcement, pt, format));
        if packets.is_none() {
            warn!("the announcement cannot be played in this call's codec");
        }
        packets
    }

    fn early_announcement(&self, call: &CallInfo) -> Option<EarlyAnnouncement> {
        let announcement = self.announcement.as_ref()?;
        let before_offer = match self.announce_inbound {
            AnnounceInbound::Never => return None,
            AnnounceInbound::BeforeOffer => true,
            AnnounceInbound::WithRinging => false,
        };
        let offer = SideMedia::from_sdp(&self.recorded_trunk_media(call)?.streams);
        let Some(early) = early_packets([announcement, &self.ringing], &offer) else {
            warn!("the announcement cannot be played in any codec the caller offered");
            return None;
        };
        Some(EarlyAnnouncement {
            formats: early.formats,
            announcement: early.announcement,
            ringback: early.ringback,
            before_offer,
            tap: self.start(call),
        })
    }

    fn on_party_change(&self, call: &CallInfo, request: &Headers) -> TapChange {
        let Some(decision) = self.policy.decide_again(call, request) else {
            return TapChange::Keep;
        };
        let recorded = self
            .calls()
            .get(&call.id)
            .is_some_and(|state| state.recorded);
        match (recorded, decision.action) {
            (true, Action::Exclude) => {
                if let Some(state) = self.calls().get_mut(&call.id) {
                    state.recorded = false;
                }
                self.recorder.end(call.id, MOVED_TO_EXCLUDED);
                TapChange::Stop
            }
            (false, Action::Record) => self.start_after_transfer(call, decision.extension),
            _ => TapChange::Keep,
        }
    }

    fn on_media(&self, call: &CallInfo, update: &MediaUpdate) {
        let recorded = {
            let mut calls = self.calls();
            let Some(state) = calls.get_mut(&call.id) else {
                return;
            };
            state.media[side_index(update.side)] = Some(update.clone());
            state.recorded
        };
        if recorded {
            self.recorder.media(call.id, update.side, &update.streams);
        }
    }

    fn on_end(&self, call: &CallInfo, reason: EndReason) {
        let state = self.calls().remove(&call.id);
        if state.is_some_and(|state| state.recorded) {
            self.recorder.end(call.id, &describe(reason));
        }
    }
}

/// What an inbound caller hears before the practice answers, in one codec.
struct EarlyPackets {
    formats: Vec<u8>,
    announcement: Vec<Vec<u8>>,
    ringback: Vec<Vec<u8>>,
}

/// The announcement and the ringing tone in the first codec of the trunk's
/// offer that they can be played in, with its telephone-event so that the
/// caller's digits still reach the practice.
fn early_packets(
    [announcement, ringing]: [&Announcement; 2],
    offer: &SideMedia,
) -> Option<EarlyPackets> {
    offer
        .audio_payload_types()
        .find_map(|(payload_type, format)| {
            let stream = rtp_stream(payload_type, &format);
            let event = offer.telephone_event_at(format.clock_rate);
            Some(EarlyPackets {
                formats: std::iter::once(payload_type).chain(event).collect(),
                announcement: announcement.packets(&stream).ok()?,
                ringback: ringing.packets(&stream).ok()?,
            })
        })
}

/// The announcement's packets for a stream of `format` as `payload_type`.
fn announcement_packets(
    announcement: &Announcement,
    payload_type: u8,
    format: PayloadFormat,
) -> Option<Vec<Vec<u8>>> {
    announcement
        .packets(&rtp_stream(payload_type, &format))
        .ok()
}

/// A stream of callvault's own in `format` as `payload_type`.
fn rtp_stream(payload_type: u8, format: &PayloadFormat) -> RtpStream {
    RtpStream {
        encoding: format.encoding.clone(),
        clock_rate: format.clock_rate,
        payload_type,
        // RFC 3550 §5.1: random initial values, and an SSRC of callvault's own.
        ssrc: rand::random(),
        first_sequence: rand::random(),
        first_timestamp: rand::random(),
    }
}

/// The configured announcement, read and checked; an error names the key.
pub(crate) fn check_announcement(config: &Config) -> anyhow::Result<Option<Announcement>> {
    match &config.policy.announcement {
        Some(path) => Ok(Some(
            Announcement::load(path).context("policy.announcement")?,
        )),
        None => Ok(None),
    }
}

/// Why a recording ended before its call did.
const MOVED_TO_EXCLUDED: &str = "the call moved to a party the policy does not record";

fn side_index(side: Side) -> usize {
    match side {
        Side::Pbx => 0,
        Side::Trunk => 1,
    }
}

/// How a call ended, in the words the recording's metadata keeps.
fn describe(reason: EndReason) -> String {
    match reason {
        EndReason::Bye(Side::Trunk) => "BYE from the external party".to_owned(),
        EndReason::Bye(Side::Pbx) => "BYE from the practice".to_owned(),
        EndReason::Cancelled => "cancelled before answer".to_owned(),
        EndReason::Failed(status) => format!("the call failed with status {status}"),
        EndReason::MediaTimeout => "the RTP stopped for the RTP timeout".to_owned(),
        EndReason::TransactionTimeout => "a SIP transaction timed out".to_owned(),
        EndReason::SessionExpired => "the session timer expired unrefreshed".to_owned(),
        EndReason::Shutdown => "the daemon shut down".to_owned(),
    }
}
