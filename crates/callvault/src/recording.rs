//! The B2BUA's hook that records calls: it turns call events into the recorder's.
//!
//! The recording policy decides on each call's initial INVITE. A call it excludes
//! never reaches the recorder: no tap is handed out, so the relay copies none of
//! its packets, and none of its events (media, end) is passed on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use callvault_b2bua::{CallHook, CallInfo, EndReason, MediaUpdate};
use callvault_media::{Side, Tap};
use callvault_recorder::encode::OutputFormat;
use callvault_recorder::mix::Channels;
use callvault_recorder::pipeline::PipelineConfig;
use callvault_recorder::{CallStart, Recorder, RecorderConfig, RecorderHandle};
use callvault_store::file::WriterOptions;
use callvault_store::keys::Keyring;
use callvault_store::{CallDirection, Store};

use callvault_policy::Action;

use crate::config::{self, Config};
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
    /// The practice-side extension of each call to be recorded, by call id; a
    /// call not here was excluded.
    recorded: Mutex<HashMap<u64, Option<String>>>,
}

impl RecordingHook {
    pub(crate) fn new(recorder: RecorderHandle, policy: Arc<PolicyState>, config: &Config) -> Self {
        Self {
            recorder,
            policy,
            early_media: config.storage.early_media,
            recorded: Mutex::new(HashMap::new()),
        }
    }

    fn recorded(&self) -> MutexGuard<'_, HashMap<u64, Option<String>>> {
        // Every change is one insert or remove: a panic leaves the map whole.
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The call's extension if it is to be recorded, `None` if it was excluded.
    fn extension_if_recorded(&self, call: &CallInfo) -> Option<Option<String>> {
        self.recorded().get(&call.id).cloned()
    }

    fn start(&self, call: &CallInfo) -> Option<Tap> {
        let extension = self.extension_if_recorded(call)?;
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
}

impl CallHook for RecordingHook {
    fn on_invite(&self, call: &CallInfo) {
        let decision = self.policy.decide(call);
        if decision.action == Action::Record {
            self.recorded().insert(call.id, decision.extension);
        }
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

    fn on_media(&self, call: &CallInfo, update: &MediaUpdate) {
        if self.extension_if_recorded(call).is_some() {
            self.recorder.media(call.id, update.side, &update.streams);
        }
    }

    fn on_end(&self, call: &CallInfo, reason: EndReason) {
        if self.recorded().remove(&call.id).is_some() {
            self.recorder.end(call.id, &describe(reason));
        }
    }
}

/// How a call ended, in the words the recording's metadata keeps.
fn describe(reason: EndReason) -> String {
    match reason {
        EndReason::Bye(Side::Trunk) => "BYE from the external party".to_owned(),
        EndReason::Bye(Side::Pbx) => "BYE from the practice".to_owned(),
        EndReason::Cancelled => "cancelled before answer".to_owned(),
        EndReason::Failed(status) => format!("the call failed with status {status}"),
        EndReason::MediaTimeout => "no RTP either way for the RTP timeout".to_owned(),
        EndReason::TransactionTimeout => "a SIP transaction timed out".to_owned(),
        EndReason::SessionExpired => "the session timer expired unrefreshed".to_owned(),
        EndReason::Shutdown => "the daemon shut down".to_owned(),
    }
}
