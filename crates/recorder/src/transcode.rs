//! Recordings written live as WAV, compressed to their final format afterwards.
//!
//! Encoding Opus is most of what recording a call costs (about 3 ms of CPU per
//! second of a stereo call with both parties talking, against 0.1 ms for WAV), and
//! doing it live is what would make a busy recorder drop audio. So when the final
//! format is Ogg Opus, each call is recorded live as WAV and this thread transcodes
//! the finished file, one at a time, at the lowest CPU priority: a spike of calls
//! delays the compression, never the recording. The store's transcoding queue
//! (`callvault_store::Store::queue_transcoding`) keeps the work across restarts.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use callvault_store::file::{FileError, RecordingReader, RecordingWriter, WriterOptions};
use callvault_store::index::IndexError;
use callvault_store::keys::Keyring;
use callvault_store::{RecordingId, RecordingMetadata, Replaced, Store, StoreError};
use tracing::{debug, error, info, warn};

use crate::encode::{encoder_for, EncodeError, Encoder, OutputFormat};
use crate::wav;

/// How often an idle transcoder looks at its stop flag.
const POLL: Duration = Duration::from_millis(200);

/// The nice value of the transcoding thread: the lowest priority there is.
const LOWEST_PRIORITY: i32 = 19;

/// Why one recording could not be transcoded. Its WAV file stays as it is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TranscodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("the recording's audio is {found}, not a wav file callvault wrote")]
    NotOurWav { found: String },
    #[error("stopped by the daemon's shutdown")]
    Stopped,
}

/// Counters of the transcoder, for the recorder's stats.
#[derive(Debug, Default)]
pub(crate) struct TranscodeCounters {
    pub(crate) waiting: AtomicU64,
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// What the recorder's tasks hold to hand finished recordings to the transcoder.
#[derive(Debug)]
pub(crate) struct TranscodeQueue {
    sender: mpsc::Sender<RecordingId>,
    pub(crate) counters: Arc<TranscodeCounters>,
}

impl TranscodeQueue {
    /// Transcodes recording `id` once the thread gets to it.
    pub(crate) fn push(&self, id: RecordingId) {
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(id).is_err() {
            // Only after shutdown; the store's queue still has it for the next start.
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The transcoding thread, stopped by [`TranscoderThread::stop`].
#[derive(Debug)]
pub(crate) struct TranscoderThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TranscoderThread {
    /// Starts the thread, queueing first what the store's queue holds from before.
    pub(crate) fn start(
        store: Arc<Store>,
        keys: Arc<Keyring>,
        format: OutputFormat,
        writer: WriterOptions,
    ) -> io::Result<(Self, TranscodeQueue)> {
        let (sender, receiver) = mpsc::channel();
        let queue = TranscodeQueue {
            sender,
            counters: Arc::default(),
        };
        match store.transcoding_queue() {
            Ok(left) => left.into_iter().for_each(|id| queue.push(id)),
            Err(error) => error!(%error, "the transcoding queue could not be read"),
        }
        let stop = Arc::new(AtomicBool::new(false));
        let work = Work {
            store,
            keys,
            format,
            // Only the finished file has to be durable: a crash before it starts over.
            writer: WriterOptions {
                sync_each_segment: false,
                ..writer
            },
            stop: Arc::clone(&stop),
            counters: Arc::clone(&queue.counters),
        };
        let thread = std::thread::Builder::new()
            .name("transcoder".to_owned())
            .spawn(move || work.run(&receiver))?;
        let thread = Some(thread);
        Ok((Self { stop, thread }, queue))
    }

    /// Stops after the current block of audio; what is left stays queued.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("the transcoder panicked");
            }
        }
    }
}

/// What the thread owns.
struct Work {
    store: Arc<Store>,
    keys: Arc<Keyring>,
    format: OutputFormat,
    writer: WriterOptions,
    stop: Arc<AtomicBool>,
    counters: Arc<TranscodeCounters>,
}

/// How one recording ended up.
enum Done {
    Transcoded,
    /// Already in the final format: a crash came between the rename and the queue.
    AlreadyFinal,
    Held,
    /// No longer indexed: purged, or never made it to the index.
    Absent,
}

impl Work {
    fn run(self, queue: &mpsc::Receiver<RecordingId>) {
        lower_priority();
        while !self.stop.load(Ordering::Relaxed) {
            let id = match queue.recv_timeout(POLL) {
                Ok(id) => id,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let span = tracing::info_span!("transcode", recording = %id);
            let _entered = span.enter();
            self.one(&id);
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn one(&self, id: &RecordingId) {
        let result = self.transcode(id).and_then(|done| {
            self.store.transcoding_done(id)?;
            Ok(done)
        });
        match result {
            Ok(Done::Transcoded) => {
                self.counters.done.fetch_add(1, Ordering::Relaxed);
                info!(
                    media_type = self.format.media_type(),
                    "recording transcoded"
                );
            }
            Ok(Done::AlreadyFinal) => debug!("recording was already transcoded"),
            Ok(Done::Held) => info!("recording is under a legal hold; it stays as recorded"),
            Ok(Done::Absent) => debug!("recording is gone; nothing to transcode"),
            Err(TranscodeError::Stopped) => debug!("transcoding stopped; resumed at next start"),
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                let next = "the recording stays as WAV and is tried again at the next start";
                error!(%error, next, "transcoding failed");
            }
        }
    }

    fn transcode(&self, id: &RecordingId) -> Result<Done, TranscodeError> {
        let Some(call) = self.store.index().get(id)? else {
            return Ok(Done::Absent);
        };
        let path = self.store.recording_path(&call);
        let mut reader = RecordingReader::open(&path, self.keys.as_ref())?;
        let final_type = self.format.media_type();
        let end = reader.metadata().clone();
        if end.media_type == final_type {
            self.store.index().insert(&end, &call.file_name)?;
            return Ok(Done::AlreadyFinal);
        }
        if end.media_type != OutputFormat::Wav.media_type() {
            return Err(TranscodeError::NotOurWav {
                found: end.media_type,
            });
        }
        let start = with_media_type(reader.start_metadata(), final_type);
        let end = with_media_type(&end, final_type);
        let work_dir = self.store.transcode_work_dir();
        let mut writer =
            RecordingWriter::create(&work_dir, &start, self.keys.current(), self.writer.clone())?;
        self.convert(&mut reader, &mut writer)?;
        let new_file = writer.finish(&end)?;
        Ok(match self.store.replace_recording(&new_file, &end)? {
            Replaced::Replaced => Done::Transcoded,
            Replaced::Held => Done::Held,
            Replaced::Absent => Done::Absent,
        })
    }

    /// Streams the WAV's samples through the encoder into the writer.
    fn convert<R: io::Read + io::Seek>(
        &self,
        reader: &mut RecordingReader<R>,
        writer: &mut RecordingWriter,
    ) -> Result<(), TranscodeError> {
        let mut samples = WavSamples::default();
        let mut encoder: Option<(Box<dyn Encoder>, u32)> = None;
        let mut pcm = Vec::new();
        let mut out = Vec::new();
        while let Some(audio) = reader.next_audio()? {
            if self.stop.load(Ordering::Relaxed) {
                return Err(TranscodeError::Stopped);
            }
            samples.push(audio, &mut pcm)?;
            if let (None, Some((rate, channels))) = (&encoder, samples.shape) {
                encoder = Some((encoder_for(self.format, rate, channels)?, rate));
            }
            if let Some((encoder, rate)) = &mut encoder {
                encoder.encode(&pcm, &mut out)?;
                writer.write_audio(&out, samples.duration(pcm.len(), *rate))?;
            }
            pcm.clear();
            out.clear();
        }
        // A recording cut short before its first audio is an empty stream.
        let (mut encoder, _) = match encoder {
            Some(encoder) => encoder,
            None => (encoder_for(self.format, 8000, 2)?, 8000),
        };
        encoder.finish(&mut out)?;
        writer.write_audio(&out, Duration::ZERO)?;
        Ok(())
    }
}

/// A WAV file's samples from its bytes, which segments split anywhere.
#[derive(Debug, Default)]
struct WavSamples {
    /// The rate and channels, once the header is read.
    shape: Option<(u32, u16)>,
    /// Bytes of an unfinished header or sample frame.
    carry: Vec<u8>,
}

impl WavSamples {
    /// Appends to `pcm` every whole sample frame `bytes` completes.
    fn push(&mut self, bytes: &[u8], pcm: &mut Vec<i16>) -> Result<(), TranscodeError> {
        self.carry.extend_from_slice(bytes);
        if self.shape.is_none() {
            let Some(header) = self.carry.first_chunk::<{ wav::HEADER_LEN }>() else {
                return Ok(());
            };
            let shape = wav::parse_header(header).ok_or_else(|| TranscodeError::NotOurWav {
                found: "a wav file of another layout".to_owned(),
            })?;
            self.shape = Some(shape);
            self.carry.drain(..wav::HEADER_LEN);
        }
        let channels = self.shape.map_or(1, |(_, channels)| usize::from(channels));
        let whole = self.carry.len() / (2 * channels) * (2 * channels);
        let frames = self.carry[..whole].chunks_exact(2);
        pcm.extend(frames.map(|pair| i16::from_le_bytes([pair[0], pair[1]])));
        self.carry.drain(..whole);
        Ok(())
    }

    /// How long `samples` interleaved samples play.
    fn duration(&self, samples: usize, rate: u32) -> Duration {
        let channels = self.shape.map_or(1, |(_, channels)| u64::from(channels));
        let frames = samples as u64 / channels.max(1);
        Duration::from_micros(frames * 1_000_000 / u64::from(rate.max(1)))
    }
}

fn with_media_type(metadata: &RecordingMetadata, media_type: &str) -> RecordingMetadata {
    RecordingMetadata {
        media_type: media_type.to_owned(),
        ..metadata.clone()
    }
}

/// Makes the calling thread the last to get a core. On Linux, setpriority(2) on
/// a thread id changes that thread alone.
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), LOWEST_PRIORITY) {
        let effect = "it competes with live recordings for the CPU";
        warn!(%error, effect, "the transcoder's priority could not be lowered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let mut bytes = wav::streaming_header(rate, channels).to_vec();
        wav::samples_to_le_bytes(samples, &mut bytes);
        bytes
    }

    #[test]
    fn samples_split_anywhere_come_out_whole_and_in_order() {
        let samples: Vec<i16> = (0..400).map(|n| (n * 37 - 5000) as i16).collect();
        let bytes = wav_bytes(8000, 2, &samples);
        for split in [1, 3, 7, 44, 45, 101] {
            let mut reader = WavSamples::default();
            let mut pcm = Vec::new();
            for chunk in bytes.chunks(split) {
                reader.push(chunk, &mut pcm).unwrap();
                assert_eq!(pcm.len() % 2, 0, "only whole stereo frames");
            }
            assert_eq!(pcm, samples, "split every {split} bytes");
            assert_eq!(reader.shape, Some((8000, 2)));
        }
    }

    #[test]
    fn another_wav_layout_is_refused() {
        let mut bytes = wav_bytes(8000, 1, &[0; 10]);
        bytes[34] = 24;
        let error = WavSamples::default().push(&bytes, &mut Vec::new());
        assert!(matches!(error, Err(TranscodeError::NotOurWav { .. })));
    }

    #[test]
    fn duration_counts_frames_not_samples() {
        let mut reader = WavSamples::default();
        reader
            .push(&wav_bytes(16000, 2, &[]), &mut Vec::new())
            .unwrap();
        assert_eq!(reader.duration(32_000, 16000), Duration::from_secs(1));
    }
}
