//! The recorder: one task per recorded call, on threads of its own.
//!
//! The B2BUA tells the recorder, through [`RecorderHandle`], when a call starts to be
//! recorded, when a side's SDP changes and when the call ends; each call returns at
//! once. The work runs on the recorder's own runtime, so encoding and disk writes
//! never take a thread the relay is waiting for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use callvault_media::{tap, Side, Tap};
use callvault_sip::sdp::MediaDescription;
use callvault_store::file::WriterOptions;
use callvault_store::keys::Keyring;
use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, Instrument};

use crate::encode::OutputFormat;
use crate::formats::SideMedia;
use crate::pipeline::{CallPipeline, PipelineConfig};
use crate::task::{unix_ms, CallTask, Control, Outcome};
use crate::transcode::{TranscodeCounters, TranscodeQueue, TranscoderThread};

/// How the recorder records.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub pipeline: PipelineConfig,
    pub writer: WriterOptions,
    /// How many packets a call's tap queues before it drops copies.
    pub tap_capacity: usize,
    /// Threads that run the pipelines (disk writes have tokio's blocking pool).
    pub threads: usize,
    /// The format each recording is transcoded to after the call, when the
    /// pipeline records live in a cheaper one (WAV); see `transcode.rs`.
    pub transcode_to: Option<OutputFormat>,
}

/// What the B2BUA knows of a call when its recording starts.
#[derive(Debug, Clone)]
pub struct CallStart {
    /// The B2BUA's id of the call, as in its logs.
    pub call_id: u64,
    pub direction: CallDirection,
    pub caller: String,
    pub callee: String,
    /// The practice extension, when known.
    pub extension: Option<String>,
}

/// Counters since the recorder started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Recordings being made now.
    pub active: u64,
    pub started: u64,
    pub complete: u64,
    pub degraded: u64,
    pub failed: u64,
    /// Calls that should have been recorded and have no usable recording: no file
    /// could be made, or the file could not be indexed.
    pub missed: u64,
    /// Finished recordings waiting to be transcoded to their final format.
    pub transcoding_waiting: u64,
    pub transcoded: u64,
    /// Recordings that could not be transcoded and stay as recorded live.
    pub transcoding_failed: u64,
    /// Encoded audio written into recording files, before encryption's framing.
    pub bytes_written: u64,
    /// When audio last reached a recording file, in Unix milliseconds; 0 before.
    pub last_write_unix_ms: u64,
    /// How long audio waited, summed over writes, between the pipeline making it
    /// and the file holding it; with `writes`, the recorder's mean lag.
    pub write_lag_total: Duration,
    /// Writes of audio into recording files that succeeded.
    pub writes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    complete: AtomicU64,
    degraded: AtomicU64,
    failed: AtomicU64,
    missed: AtomicU64,
    bytes_written: AtomicU64,
    last_write_unix_ms: AtomicU64,
    write_lag_micros: AtomicU64,
    writes: AtomicU64,
}

/// What every call's task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: RecorderConfig,
    pub(crate) store: Arc<Store>,
    pub(crate) keys: Arc<Keyring>,
    calls: Mutex<HashMap<u64, CallSlot>>,
    /// Tasks of calls that ended, until shutdown waits for them.
    finishing: Mutex<Vec<JoinHandle<()>>>,
    counters: Counters,
    /// Where finished recordings go to be transcoded, when they are.
    pub(crate) transcode: Option<TranscodeQueue>,
}

/// One call the recorder knows of: its SDP so far, and its task once recording.
#[derive(Debug, Default)]
struct CallSlot {
    media: [Option<SideMedia>; 2],
    recording: Option<Recording>,
}

#[derive(Debug)]
struct Recording {
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

impl Shared {
    fn calls(&self) -> MutexGuard<'_, HashMap<u64, CallSlot>> {
        // A panic while holding the lock leaves a map that is still consistent:
        // every change to it is a single insert or remove.
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Called by a call's task when its recording is done.
    pub(crate) fn finished(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Indexed(RecordingStatus::Complete) => &self.counters.complete,
            Outcome::Indexed(RecordingStatus::Degraded) => &self.counters.degraded,
            Outcome::Indexed(_) => &self.counters.failed,
            Outcome::NotIndexed | Outcome::NotWritten => &self.counters.missed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Called once `bytes` of audio reached a file, `lag` after it was made.
    pub(crate) fn wrote(&self, bytes: usize, lag: Duration) {
        let counters = &self.counters;
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        counters.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        let lag = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        counters.write_lag_micros.fetch_add(lag, Ordering::Relaxed);
        counters.writes.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(unix_ms(SystemTime::now())).unwrap_or(0);
        counters
            .last_write_unix_ms
            .fetch_max(now, Ordering::Relaxed);
    }

    fn finishing(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.finishing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The recorder and its runtime; [`Recorder::shutdown`] finishes every recording.
#[derive(Debug)]
pub struct Recorder {
    runtime: Option<tokio::runtime::Runtime>,
    transcoder: Option<TranscoderThread>,
    handle: RecorderHandle,
}

/// The cheap, cloneable side of the recorder that the B2BUA's hook calls.
#[derive(Debug, Clone)]
pub struct RecorderHandle {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

impl Recorder {
    /// Starts the recorder's threads.
    pub fn new(
        config: RecorderConfig,
        store: Arc<Store>,
        keys: Arc<Keyring>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("recorder")
            .enable_time()
            .build()?;
        let (transcoder, transcode) = match config.transcode_to {
            Some(format) => {
                let (store, keys) = (Arc::clone(&store), Arc::clone(&keys));
                let started = TranscoderThread::start(store, keys, format, config.writer.clone())?;
                (Some(started.0), Some(started.1))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            config,
            store,
            keys,
            calls: Mutex::new(HashMap::new()),
            finishing: Mutex::new(Vec::new()),
            counters: Counters::default(),
            transcode,
        });
        let handle = RecorderHandle {
            shared,
            runtime: runtime.handle().clone(),
        };
        Ok(Self {
            runtime: Some(runtime),
            transcoder,
            handle,
        })
    }

    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// Ends every recording still running as of now, and waits for each to be
    /// written and indexed, for at most `timeout`.
    pub async fn shutdown(mut self, timeout: Duration) {
        let calls: Vec<u64> = self.handle.shared.calls().keys().copied().collect();
        for call_id in calls {
            self.handle.end(call_id, "the daemon shut down");
        }
        let tasks = self.handle.take_finishing();
        let waiting = tasks.len();
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            error!(
                waiting,
                "recordings still finishing at shutdown; they are recovered at the next start"
            );
        }
        let stats = self.handle.stats();
        info!(
            started = stats.started,
            complete = stats.complete,
            degraded = stats.degraded,
            failed = stats.failed,
            missed = stats.missed,
            transcoding_waiting = stats.transcoding_waiting,
            "recorder stopped"
        );
        if let Some(transcoder) = self.transcoder.take() {
            // Joining waits for at most one segment's encoding; not on an async thread.
            let _ = tokio::task::spawn_blocking(move || transcoder.stop()).await;
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which an async caller must not do.
            runtime.shutdown_background();
        }
    }
}

impl RecorderHandle {
    /// Starts recording a call from now; the returned tap feeds it.
    pub fn start(&self, call: CallStart) -> Option<Tap> {
        let id = match RecordingId::random() {
            Ok(id) => id,
            Err(error) => {
                error!(%error, "no recording id could be made; the call is not recorded");
                self.shared.counters.missed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let (tap, receiver) = tap(self.shared.config.tap_capacity);
        let (control, control_receiver) = mpsc::unbounded_channel();
        let start = Instant::now();
        let start_wall = SystemTime::now();
        let mut pipeline = CallPipeline::new(self.shared.config.pipeline, start);

        let mut calls = self.shared.calls();
        let slot = calls.entry(call.call_id).or_default();
        for (side, media) in [Side::Pbx, Side::Trunk].into_iter().zip(&slot.media) {
            if let Some(media) = media {
                pipeline.set_media(side, media.clone(), start);
            }
        }
        let span = tracing::info_span!("call", id = call.call_id);
        span.in_scope(|| info!(recording = %id, "recording started"));
        let task = CallTask {
            shared: Arc::clone(&self.shared),
            call_id: call.call_id,
            metadata: start_metadata(id, &call, start_wall, &self.shared.config),
            start,
            start_wall,
            tap: receiver,
            control: control_receiver,
            pipeline,
        };
        let task = self.runtime.spawn(task.run().instrument(span));
        slot.recording = Some(Recording { control, task });
        self.shared.counters.started.fetch_add(1, Ordering::Relaxed);
        Some(tap)
    }

    /// A side's SDP was accepted, before or during recording.
    pub fn media(&self, call_id: u64, side: Side, streams: &[MediaDescription]) {
        let media = SideMedia::from_sdp(streams);
        let mut calls = self.shared.calls();
        let slot = calls.entry(call_id).or_default();
        if let Some(recording) = &slot.recording {
            let at = Instant::now();
            let _ = recording.control.send(Control::Media {
                side,
                media: media.clone(),
                at,
            });
        }
        slot.media[side_index(side)] = Some(media);
    }

    /// The call ended; its recording, if any, is finished in the background.
    pub fn end(&self, call_id: u64, reason: &str) {
        let slot = self.shared.calls().remove(&call_id);
        let Some(Recording { control, task }) = slot.and_then(|slot| slot.recording) else {
            return;
        };
        let at = Instant::now();
        let _ = control.send(Control::End {
            reason: reason.to_owned(),
            at,
        });
        let mut finishing = self.shared.finishing();
        // Tasks already done need no waiting for at shutdown.
        finishing.retain(|task| !task.is_finished());
        finishing.push(task);
    }

    pub fn stats(&self) -> RecorderStats {
        let counters = &self.shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let started = load(&counters.started);
        let (complete, degraded, failed, missed) = (
            load(&counters.complete),
            load(&counters.degraded),
            load(&counters.failed),
            load(&counters.missed),
        );
        let transcode = self.shared.transcode.as_ref().map(|queue| &queue.counters);
        let transcode =
            |pick: fn(&TranscodeCounters) -> &AtomicU64| transcode.map_or(0, |c| load(pick(c)));
        RecorderStats {
            active: started.saturating_sub(complete + degraded + failed + missed),
            started,
            complete,
            degraded,
            failed,
            missed,
            transcoding_waiting: transcode(|counters| &counters.waiting),
            transcoded: transcode(|counters| &counters.done),
            transcoding_failed: transcode(|counters| &counters.failed),
            bytes_written: load(&counters.bytes_written),
            last_write_unix_ms: load(&counters.last_write_unix_ms),
            write_lag_total: Duration::from_micros(load(&counters.write_lag_micros)),
            writes: load(&counters.writes),
        }
    }

    fn take_finishing(&self) -> Vec<JoinHandle<()>> {
        let mut finishing = self.shared.finishing();
        finishing.retain(|task| !task.is_finished());
        std::mem::take(&mut *finishing)
    }
}

fn start_metadata(
    id: RecordingId,
    call: &CallStart,
    start: SystemTime,
    config: &RecorderConfig,
) -> RecordingMetadata {
    RecordingMetadata {
        id,
        start_ms: unix_ms(start),
        end_ms: None,
        direction: call.direction,
        caller: call.caller.clone(),
        callee: call.callee.clone(),
        extension: call.extension.clone(),
        media_type: config.pipeline.format.media_type().to_owned(),
        status: RecordingStatus::Recording,
        status_reason: None,
        lost_packets: 0,
        end_reason: None,
        events: Vec::new(),
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Pbx => 0,
        Side::Trunk => 1,
    }
}
