//! The task that records one call: it drains the tap each frame time, runs the
//! pipeline, and hands encoded audio to the file writer on the blocking pool.
//!
//! Nothing here waits on the disk. The writer runs on tokio's blocking threads, one
//! job at a time per call; while a job is out, audio gathers in memory. A disk
//! that falls behind by more than [`MAX_BACKLOG`] loses the audio gathered, and the
//! recording is marked degraded; a write that fails ends the file (kept up to its
//! last whole segment, status failed), and the call goes on unrecorded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use callvault_media::TapReceiver;
use callvault_store::file::{recover_as, FileError, RecordingWriter};
use callvault_store::{RecordingMetadata, RecordingStatus};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn};

use crate::formats::SideMedia;
use crate::pipeline::{CallPipeline, PipelineError};
use crate::recorder::Shared;

/// How often the task drains its tap and advances the pipeline.
///
/// Five frames at a time rather than one: with hundreds of calls, a wake-up per
/// frame cost more in scheduling than the G.711 decoding it did, and the tap
/// queue holds far more than a tick's packets. The arrival time each packet
/// carries, not the tick, decides where its audio goes.
const TICK: Duration = Duration::from_millis(100);

/// The most audio gathered for a writer that has not caught up before it is dropped.
const MAX_BACKLOG: Duration = Duration::from_secs(30);

/// A message from the B2BUA's side to a call's task.
#[derive(Debug)]
pub(crate) enum Control {
    Media {
        side: callvault_media::Side,
        media: SideMedia,
        at: Instant,
    },
    End {
        reason: String,
        at: Instant,
    },
}

/// Everything one call's task owns.
pub(crate) struct CallTask {
    pub(crate) shared: Arc<Shared>,
    pub(crate) call_id: u64,
    pub(crate) metadata: RecordingMetadata,
    pub(crate) start: Instant,
    pub(crate) start_wall: SystemTime,
    pub(crate) tap: TapReceiver,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    pub(crate) pipeline: CallPipeline,
}

impl std::fmt::Debug for CallTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallTask")
            .field("call_id", &self.call_id)
            .field("recording", &self.metadata.id)
            .finish_non_exhaustive()
    }
}

/// How the recording went, for its final metadata.
#[derive(Debug, Default)]
struct Trouble {
    /// Why writing stopped, if it did.
    write_failure: Option<String>,
    /// Audio lost because the writer fell behind.
    backlog_dropped: Duration,
    /// Why the pipeline stopped, if it did.
    pipeline_failure: Option<String>,
}

impl CallTask {
    /// Records until told the call ended, then finishes the file and indexes it.
    pub(crate) async fn run(mut self) {
        let mut sink = Sink::create(&self);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut trouble = Trouble::default();
        let (reason, end) = loop {
            tokio::select! {
                control = self.control.recv() => match control {
                    Some(Control::Media { side, media, at }) => self.pipeline.set_media(side, media, at),
                    Some(Control::End { reason, at }) => break (reason, at),
                    None => break ("the recorder stopped".to_owned(), Instant::now()),
                },
                _ = ticker.tick() => {
                    let now = Instant::now();
                    self.drain_tap(&mut trouble);
                    let mut audio = Vec::new();
                    match self.pipeline.advance(now, &mut audio) {
                        Ok(duration) => sink.gather(&audio, duration, &mut trouble),
                        Err(error) => self.pipeline_failed(&error, &mut trouble),
                    }
                    sink.pump(now, &mut trouble).await;
                }
            }
        };
        self.drain_tap(&mut trouble);
        let mut audio = Vec::new();
        match self.pipeline.finish(end, &mut audio) {
            Ok(duration) => sink.gather(&audio, duration, &mut trouble),
            Err(error) => self.pipeline_failed(&error, &mut trouble),
        }
        let metadata = self.final_metadata(&reason, end, &trouble);
        let outcome = sink.finish(metadata, &self.shared, &mut trouble).await;
        self.shared.finished(outcome);
    }

    fn drain_tap(&mut self, trouble: &mut Trouble) {
        while let Ok(packet) = self.tap.try_recv() {
            if trouble.pipeline_failure.is_some() {
                continue;
            }
            if let Err(error) = self.pipeline.push(&packet) {
                self.pipeline_failed(&error, trouble);
            }
        }
    }

    fn pipeline_failed(&self, error: &PipelineError, trouble: &mut Trouble) {
        if trouble.pipeline_failure.is_none() {
            error!(recording = %self.metadata.id, %error, "recording pipeline failed");
            trouble.pipeline_failure = Some(error.to_string());
        }
    }

    /// What the file's final segment and the index say about the call.
    fn final_metadata(&self, reason: &str, end: Instant, trouble: &Trouble) -> RecordingMetadata {
        let recorded = end.saturating_duration_since(self.start);
        let end_ms = unix_ms(self.start_wall) + i64::try_from(recorded.as_millis()).unwrap_or(0);
        let lost_packets = self.tap.dropped();
        let (status, status_reason) = self.status(lost_packets, trouble);
        RecordingMetadata {
            end_ms: Some(end_ms),
            status,
            status_reason,
            lost_packets,
            end_reason: Some(reason.to_owned()),
            events: self.pipeline.events().to_vec(),
            ..self.metadata.clone()
        }
    }

    fn status(&self, lost_packets: u64, trouble: &Trouble) -> (RecordingStatus, Option<String>) {
        if let Some(failure) = &trouble.write_failure {
            return (RecordingStatus::Failed, Some(failure.clone()));
        }
        if let Some(failure) = &trouble.pipeline_failure {
            return (RecordingStatus::Failed, Some(failure.clone()));
        }
        let mut reasons = Vec::new();
        if lost_packets > 0 {
            reasons.push(format!(
                "the recorder fell behind and lost {lost_packets} packets"
            ));
        }
        if !trouble.backlog_dropped.is_zero() {
            let seconds = trouble.backlog_dropped.as_secs_f64();
            reasons.push(format!(
                "the disk fell behind and {seconds:.1} s of audio were lost"
            ));
        }
        let stats = self.pipeline.stats();
        if stats.undecodable_packets > 0 {
            let codecs = self.pipeline.undecodable_codecs().join(", ");
            let count = stats.undecodable_packets;
            reasons.push(format!(
                "{count} packets in a codec the recorder cannot decode ({codecs})"
            ));
        }
        if reasons.is_empty() {
            (RecordingStatus::Complete, None)
        } else {
            (RecordingStatus::Degraded, Some(reasons.join("; ")))
        }
    }
}

/// The writer of one recording, used from the blocking pool one job at a time.
struct Sink {
    /// The writer, while no job has it.
    writer: Option<RecordingWriter>,
    /// The job that has it: creating the file, or writing.
    job: Option<JoinHandle<Job>>,
    pending: Vec<u8>,
    pending_duration: Duration,
    /// When the oldest pending audio was made, for the recorder's lag.
    pending_since: Option<Instant>,
    last_hand_over: Instant,
    /// How much audio the writer seals at a time (`WriterOptions`).
    segment_interval: Duration,
    /// The `.part` file, once created, for recovery after a failed write.
    part_path: Option<PathBuf>,
    failed: bool,
    shared: Arc<Shared>,
}

/// What a writer job gives back.
struct Job {
    writer: Option<RecordingWriter>,
    result: Result<(), FileError>,
}

impl Sink {
    /// Starts creating the file on the blocking pool.
    fn create(task: &CallTask) -> Self {
        let shared = Arc::clone(&task.shared);
        let metadata = task.metadata.clone();
        let job = tokio::task::spawn_blocking(move || {
            let dir = shared.store.layout().recordings();
            let master = shared.keys.current();
            if shared.transcode.is_some() {
                queue_transcoding(&shared, &metadata);
            }
            match RecordingWriter::create(&dir, &metadata, master, shared.config.writer.clone()) {
                Ok(writer) => Job {
                    writer: Some(writer),
                    result: Ok(()),
                },
                Err(error) => Job {
                    writer: None,
                    result: Err(error),
                },
            }
        });
        Self {
            writer: None,
            job: Some(job),
            pending: Vec::new(),
            pending_duration: Duration::ZERO,
            pending_since: None,
            last_hand_over: Instant::now(),
            segment_interval: task.shared.config.writer.segment_interval,
            part_path: None,
            failed: false,
            shared: Arc::clone(&task.shared),
        }
    }

    /// Keeps encoded audio until the writer takes it.
    fn gather(&mut self, audio: &[u8], duration: Duration, trouble: &mut Trouble) {
        if self.failed {
            return;
        }
        if !audio.is_empty() {
            self.pending_since.get_or_insert_with(Instant::now);
        }
        self.pending.extend_from_slice(audio);
        self.pending_duration += duration;
        if self.pending_duration > MAX_BACKLOG {
            warn!(
                seconds = self.pending_duration.as_secs(),
                "the disk is not keeping up; audio of this recording dropped"
            );
            trouble.backlog_dropped += self.pending_duration;
            self.pending.clear();
            self.pending_duration = Duration::ZERO;
            self.pending_since = None;
        }
    }

    /// Collects a finished job, and hands over gathered audio when it is time.
    async fn pump(&mut self, now: Instant, trouble: &mut Trouble) {
        if self.job.as_ref().is_some_and(JoinHandle::is_finished) {
            self.collect(trouble).await;
        }
        // One job per segment: the writer seals what it is handed at once, so
        // nothing waits twice, and the blocking pool sees a job per call every
        // half second rather than every tick.
        let interval = self.segment_interval;
        let due = self.pending_duration >= interval
            || now.duration_since(self.last_hand_over) >= interval;
        if due && self.job.is_none() && !self.pending.is_empty() {
            if let Some(writer) = self.writer.take() {
                self.hand_over(writer);
                self.last_hand_over = now;
            }
        }
    }

    fn hand_over(&mut self, mut writer: RecordingWriter) {
        let audio = std::mem::take(&mut self.pending);
        let duration = std::mem::replace(&mut self.pending_duration, Duration::ZERO);
        let made = self.pending_since.take().unwrap_or_else(Instant::now);
        let shared = Arc::clone(&self.shared);
        self.job = Some(tokio::task::spawn_blocking(move || {
            let result = writer.write_audio(&audio, duration);
            if result.is_ok() {
                shared.wrote(audio.len(), made.elapsed());
            }
            Job {
                writer: Some(writer),
                result,
            }
        }));
    }

    /// Waits for the job out, if any, and takes back the writer.
    async fn collect(&mut self, trouble: &mut Trouble) {
        let Some(job) = self.job.take() else {
            return;
        };
        let job = match job.await {
            Ok(job) => job,
            Err(error) => {
                self.fail(
                    format!("the writer task ended abnormally: {error}"),
                    trouble,
                );
                return;
            }
        };
        if let Some(writer) = &job.writer {
            self.part_path = Some(writer.part_path().to_owned());
        }
        match job.result {
            Ok(()) => self.writer = job.writer,
            Err(error) => self.fail(format!("writing the recording failed: {error}"), trouble),
        }
    }

    fn fail(&mut self, reason: String, trouble: &mut Trouble) {
        error!(%reason, "recording failed; the call goes on unrecorded");
        self.failed = true;
        self.writer = None;
        self.pending.clear();
        trouble.write_failure.get_or_insert(reason);
    }

    /// Writes what is left and the final metadata, then indexes the recording.
    async fn finish(
        mut self,
        mut metadata: RecordingMetadata,
        shared: &Arc<Shared>,
        trouble: &mut Trouble,
    ) -> Outcome {
        self.collect(trouble).await;
        if let Some(reason) = &trouble.write_failure {
            metadata.status = RecordingStatus::Failed;
            metadata.status_reason = Some(reason.clone());
        }
        let writer = self.writer.take();
        let (audio, duration) = (self.pending, self.pending_duration);
        let made = self.pending_since.unwrap_or_else(Instant::now);
        let part_path = self.part_path;
        let shared = Arc::clone(shared);
        // The blocking pool does not carry the call's span along by itself.
        let span = tracing::Span::current();
        let finishing = tokio::task::spawn_blocking(move || {
            let written = Written {
                audio: &audio,
                duration,
                made,
            };
            span.in_scope(|| finish_file(&shared, writer, part_path, written, metadata))
        });
        match finishing.await {
            Ok(outcome) => outcome,
            Err(error) => {
                error!(%error, "finishing the recording ended abnormally");
                Outcome::NotWritten
            }
        }
    }
}

/// How a recording ended up, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Indexed(RecordingStatus),
    /// The file exists (finished or left for recovery) but is not in the index.
    NotIndexed,
    /// No file could be made at all.
    NotWritten,
}

/// The last audio of a recording, and when its oldest part was made.
struct Written<'a> {
    audio: &'a [u8],
    duration: Duration,
    made: Instant,
}

/// On the blocking pool: the last audio, the final segment, the index entry.
fn finish_file(
    shared: &Shared,
    writer: Option<RecordingWriter>,
    part_path: Option<PathBuf>,
    last: Written<'_>,
    metadata: RecordingMetadata,
) -> Outcome {
    let finished = match writer {
        Some(mut writer) => writer
            .write_audio(last.audio, last.duration)
            .and_then(|()| writer.finish(&metadata))
            .inspect(|_| shared.wrote(last.audio.len(), last.made.elapsed()))
            .map(|path| (path, metadata.clone()))
            .or_else(|error| {
                let reason = format!("finishing the recording failed: {error}");
                error!(%reason, "recording failed");
                recover_failed(shared, part_path.as_deref(), &reason)
            }),
        None => {
            let reason = metadata.status_reason.clone().unwrap_or_default();
            recover_failed(shared, part_path.as_deref(), &reason)
        }
    };
    let (path, metadata) = match finished {
        Ok(done) => done,
        Err(outcome) => return outcome,
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Err(error) = shared.store.index().insert(&metadata, &file_name) {
        error!(recording = %metadata.id, %error, "the recording could not be indexed; `callvault reindex` will find it");
        return Outcome::NotIndexed;
    }
    log_finished(&metadata);
    if let Some(transcode) = &shared.transcode {
        transcode.push(metadata.id.clone());
    }
    Outcome::Indexed(metadata.status)
}

/// Notes before any audio is written that the recording is to be transcoded, so
/// that a crash during the call leaves a recovered file that still will be.
fn queue_transcoding(shared: &Shared, metadata: &RecordingMetadata) {
    if let Err(error) = shared.store.queue_transcoding(&metadata.id) {
        error!(%error, "the recording could not be queued for transcoding; it stays as WAV");
    }
}

/// Ends a file whose writing failed, keeping what reached the disk.
fn recover_failed(
    shared: &Shared,
    part_path: Option<&std::path::Path>,
    reason: &str,
) -> Result<(PathBuf, RecordingMetadata), Outcome> {
    let Some(part_path) = part_path else {
        error!(%reason, "no recording file could be made for an answered call");
        return Err(Outcome::NotWritten);
    };
    match recover_as(
        part_path,
        shared.keys.as_ref(),
        RecordingStatus::Failed,
        reason,
    ) {
        Ok(recovered) => Ok((recovered.path, recovered.metadata)),
        Err(error) => {
            // The .part file stays; the next start recovers it as partial.
            error!(%error, "a failed recording could not be closed; it is recovered at the next start");
            Err(Outcome::NotIndexed)
        }
    }
}

fn log_finished(metadata: &RecordingMetadata) {
    let seconds = metadata
        .end_ms
        .map(|end| (end - metadata.start_ms) as f64 / 1000.0)
        .unwrap_or_default();
    let status = format!("{:?}", metadata.status).to_lowercase();
    match metadata.status {
        RecordingStatus::Complete => info!(
            recording = %metadata.id, status, seconds, "recording finished"
        ),
        _ => warn!(
            recording = %metadata.id,
            status,
            seconds,
            lost_packets = metadata.lost_packets,
            reason = metadata.status_reason.as_deref().unwrap_or(""),
            "recording finished incomplete"
        ),
    }
}

pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
