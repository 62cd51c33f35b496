//! One call recorded from tap packets to an encrypted file, and its stages alone.
//!
//! [`record`] does what the recorder's call task does, without the tokio task
//! around it: each 20 ms it pushes the packets that came in and advances the
//! pipeline, and every 100 ms it hands the encoded audio to the file writer.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callvault_recorder::codec::g711::ulaw_to_linear;
use callvault_recorder::encode::{encoder_for, OutputFormat};
use callvault_recorder::mix::Channels;
use callvault_recorder::pipeline::{CallPipeline, PipelineConfig, PipelineStats};
use callvault_store::file::{read_recording, RecordingWriter, WriterOptions};
use callvault_store::keys::Keyring;
use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus};

use crate::wire::{CallInput, FRAME};
use crate::Failure;

/// The daemon's jitter depth (`crates/callvault/src/recording.rs`).
const JITTER_DEPTH: Duration = Duration::from_millis(60);

/// The daemon's segment interval.
const SEGMENT_INTERVAL: Duration = Duration::from_millis(500);

/// Frames between hand-overs to the writer: the call task's 100 ms.
const HAND_OVER_FRAMES: usize = 5;

/// Length of the RTP header the wire module writes.
const RTP_HEADER_LEN: usize = 12;

/// How a call is recorded: container and codec, and channel layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) format: OutputFormat,
    pub(crate) channels: Channels,
}

/// Where recordings are written, and the key they are sealed with.
#[derive(Debug)]
pub(crate) struct Vault {
    dir: PathBuf,
    keys: Keyring,
}

impl Vault {
    pub(crate) fn new(dir: PathBuf) -> Result<Self, Failure> {
        Ok(Self {
            dir,
            keys: Keyring::generate()?,
        })
    }

    /// Checks that a finished file decrypts to `expected_bytes` of audio.
    pub(crate) fn check(&self, path: &Path, expected_bytes: u64) -> Result<(), String> {
        let recording = read_recording(path, &self.keys).map_err(|error| error.to_string())?;
        let read = recording.audio.len() as u64;
        if read != expected_bytes {
            return Err(format!(
                "the file holds {read} bytes of audio, {expected_bytes} written"
            ));
        }
        Ok(())
    }

    fn writer(&self, metadata: &RecordingMetadata) -> Result<RecordingWriter, Failure> {
        let options = WriterOptions {
            segment_interval: SEGMENT_INTERVAL,
            sync_each_segment: false,
        };
        Ok(RecordingWriter::create(
            &self.dir,
            metadata,
            self.keys.current(),
            options,
        )?)
    }
}

/// What recording one call gave.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// Audio the encoder was given, as the pipeline counts it.
    pub(crate) audio: Duration,
    /// Bytes of the media file (before encryption).
    pub(crate) encoded_bytes: u64,
    /// The encrypted file, when one was written.
    pub(crate) file: Option<PathBuf>,
    /// The pipeline's counters, when the pipeline ran.
    pub(crate) stats: Option<PipelineStats>,
    /// The recording's sample rate, when known.
    pub(crate) sample_rate: Option<u32>,
}

/// Records one call; into an encrypted file if `vault` is given, else discarding
/// the encoded bytes.
pub(crate) fn record(
    input: &CallInput,
    shape: Shape,
    vault: Option<&Vault>,
) -> Result<Recorded, Failure> {
    let config = PipelineConfig {
        format: shape.format,
        channels: shape.channels,
        jitter_depth: JITTER_DEPTH,
    };
    let mut pipeline = CallPipeline::new(config, input.start);
    for (side, media) in &input.media {
        pipeline.set_media(*side, media.clone(), input.start);
    }
    let mut sink = Sink::open(vault, shape.format)?;

    let mut audio = Vec::new();
    let mut pending = Duration::ZERO;
    for (n, packets) in input.frames.iter().enumerate() {
        for packet in packets {
            pipeline.push(packet)?;
        }
        pending += pipeline.advance(input.start + FRAME * u32::try_from(n)?, &mut audio)?;
        if (n + 1) % HAND_OVER_FRAMES == 0 {
            sink.write(&audio, pending)?;
            audio.clear();
            pending = Duration::ZERO;
        }
    }
    pending += pipeline.finish(input.start + input.duration(), &mut audio)?;
    sink.write(&audio, pending)?;

    let mut recorded = sink.finish()?;
    recorded.stats = Some(pipeline.stats());
    recorded.sample_rate = pipeline.sample_rate();
    Ok(recorded)
}

/// Encoded audio as the writer is handed it: bytes, and how long they play.
pub(crate) type Chunks = Vec<(Vec<u8>, Duration)>;

/// Encodes interleaved PCM alone, 20 ms at a time, in 100 ms chunks.
pub(crate) fn encode_alone(
    pcm: &[i16],
    rate: u32,
    shape: Shape,
) -> Result<(Duration, Chunks), Failure> {
    let channels = usize::from(shape.channels.count());
    let frame = usize::try_from(rate / 50)? * channels;
    let mut encoder = encoder_for(shape.format, rate, shape.channels.count())?;
    let mut chunks = Vec::new();
    let mut out = Vec::new();
    for (n, pcm) in pcm.chunks(frame).enumerate() {
        encoder.encode(pcm, &mut out)?;
        if (n + 1) % HAND_OVER_FRAMES == 0 {
            chunks.push((std::mem::take(&mut out), FRAME * HAND_OVER_FRAMES as u32));
        }
    }
    encoder.finish(&mut out)?;
    chunks.push((out, Duration::ZERO));
    let samples = pcm.len() / channels;
    let audio = Duration::from_micros(samples as u64 * 1_000_000 / u64::from(rate));
    Ok((audio, chunks))
}

/// Writes already encoded audio to an encrypted file, the writer alone.
pub(crate) fn encrypt_alone(
    chunks: &Chunks,
    format: OutputFormat,
    vault: &Vault,
) -> Result<Recorded, Failure> {
    let mut sink = Sink::open(Some(vault), format)?;
    for (bytes, duration) in chunks {
        sink.write(bytes, *duration)?;
    }
    sink.finish()
}

/// Both directions of a PCMU call decoded and interleaved, as the mixer's stereo
/// output would be: the input of [`encode_alone`].
pub(crate) fn stereo_pcm(input: &CallInput) -> Vec<i16> {
    let mut pcm = Vec::new();
    for [trunk, pbx] in &input.frames {
        let external = &trunk.data[RTP_HEADER_LEN..];
        let practice = &pbx.data[RTP_HEADER_LEN..];
        for (&left, &right) in external.iter().zip(practice) {
            pcm.extend([ulaw_to_linear(left), ulaw_to_linear(right)]);
        }
    }
    pcm
}

/// The writer of one recording, or nothing when the bytes are only counted.
struct Sink {
    writer: Option<(RecordingWriter, RecordingMetadata)>,
    encoded_bytes: u64,
    audio: Duration,
}

impl Sink {
    fn open(vault: Option<&Vault>, format: OutputFormat) -> Result<Self, Failure> {
        let writer = match vault {
            Some(vault) => {
                let metadata = new_metadata(format)?;
                Some((vault.writer(&metadata)?, metadata))
            }
            None => None,
        };
        Ok(Self {
            writer,
            encoded_bytes: 0,
            audio: Duration::ZERO,
        })
    }

    /// Hands over encoded audio that plays for `duration`.
    fn write(&mut self, audio: &[u8], duration: Duration) -> Result<(), Failure> {
        if let Some((writer, _)) = &mut self.writer {
            writer.write_audio(audio, duration)?;
        }
        self.encoded_bytes += audio.len() as u64;
        self.audio += duration;
        Ok(())
    }

    fn finish(self) -> Result<Recorded, Failure> {
        let file = match self.writer {
            Some((writer, metadata)) => Some(writer.finish(&final_metadata(metadata, self.audio))?),
            None => None,
        };
        Ok(Recorded {
            audio: self.audio,
            encoded_bytes: self.encoded_bytes,
            file,
            stats: None,
            sample_rate: None,
        })
    }
}

fn new_metadata(format: OutputFormat) -> Result<RecordingMetadata, Failure> {
    Ok(RecordingMetadata {
        id: RecordingId::random()?,
        start_ms: i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?,
        end_ms: None,
        direction: CallDirection::Inbound,
        caller: "+447700900123".to_owned(),
        callee: "+441632960000".to_owned(),
        extension: Some("201".to_owned()),
        media_type: format.media_type().to_owned(),
        status: RecordingStatus::Recording,
        status_reason: None,
        lost_packets: 0,
        end_reason: None,
        events: Vec::new(),
    })
}

fn final_metadata(metadata: RecordingMetadata, audio: Duration) -> RecordingMetadata {
    let length_ms = i64::try_from(audio.as_millis()).unwrap_or(i64::MAX);
    RecordingMetadata {
        end_ms: Some(metadata.start_ms.saturating_add(length_ms)),
        status: RecordingStatus::Complete,
        end_reason: Some("BYE from the external party".to_owned()),
        ..metadata
    }
}
