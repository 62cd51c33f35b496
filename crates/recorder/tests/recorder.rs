//! The recorder with a real store: files written, encrypted, indexed and counted.
//!
//! The tap is fed as the relay feeds it; the recorder runs on its own threads, so
//! the tests wait for its results with a deadline rather than a fixed sleep.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use callvault_media::{Side, Tap, TapPacket};
use callvault_recorder::encode::OutputFormat;
use callvault_recorder::mix::Channels;
use callvault_recorder::pipeline::PipelineConfig;
use callvault_recorder::{CallStart, Recorder, RecorderConfig, RecorderHandle};
use callvault_sip::sdp::SessionDescription;
use callvault_store::file::{read_recording, WriterOptions};
use callvault_store::keys::Keyring;
use callvault_store::{CallDirection, RecordingStatus, Store};

struct Fixture {
    dir: PathBuf,
    store: Arc<Store>,
    keys: Arc<Keyring>,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("callvault-recorder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let keys = Arc::new(Keyring::generate().unwrap());
        let (store, _) = Store::open(&dir, keys.as_ref()).unwrap();
        Self {
            dir,
            store: Arc::new(store),
            keys,
        }
    }

    fn recorder(&self, tap_capacity: usize) -> Recorder {
        self.recorder_transcoding(tap_capacity, None)
    }

    fn recorder_transcoding(
        &self,
        tap_capacity: usize,
        transcode_to: Option<OutputFormat>,
    ) -> Recorder {
        let config = RecorderConfig {
            pipeline: PipelineConfig {
                format: OutputFormat::Wav,
                channels: Channels::Stereo,
                jitter_depth: Duration::from_millis(60),
            },
            writer: WriterOptions {
                segment_interval: Duration::from_millis(500),
                sync_each_segment: false,
            },
            tap_capacity,
            threads: 1,
            transcode_to,
        };
        Recorder::new(config, Arc::clone(&self.store), Arc::clone(&self.keys)).unwrap()
    }

    fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("recordings"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        files
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn call(call_id: u64) -> CallStart {
    CallStart {
        call_id,
        direction: CallDirection::Outbound,
        caller: "205".to_owned(),
        callee: "01632960123".to_owned(),
        extension: Some("205".to_owned()),
    }
}

fn pcmu_sdp(recorder: &RecorderHandle, call_id: u64) {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 0\r\n";
    let media = SessionDescription::parse(sdp.as_bytes()).unwrap().media();
    recorder.media(call_id, Side::Pbx, &media);
    recorder.media(call_id, Side::Trunk, &media);
}

fn packet(from: Side, sequence: u16, arrival: Instant) -> TapPacket {
    let mut data = vec![0x80, 0];
    data.extend_from_slice(&sequence.to_be_bytes());
    data.extend_from_slice(&(u32::from(sequence) * 160).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 7]);
    data.extend(std::iter::repeat_n(0x20, 160));
    TapPacket {
        from,
        stream: 0,
        arrival,
        rtcp: false,
        data: Bytes::from(data),
    }
}

/// Feeds `frames` frames each way in real time, as the relay would.
async fn talk(tap: &Tap, frames: u16) {
    for sequence in 0..frames {
        let now = Instant::now();
        tap.offer(packet(Side::Pbx, sequence, now));
        tap.offer(packet(Side::Trunk, sequence, now));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn only_recording(fixture: &Fixture) -> callvault_store::file::Recording {
    let files = fixture.recordings();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().unwrap(), "cvr");
    read_recording(&files[0], fixture.keys.as_ref()).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn answered_call_is_recorded_encrypted_indexed_and_as_long_as_the_call() {
    let fixture = Fixture::new("complete");
    let recorder = fixture.recorder(64);
    let handle = recorder.handle();
    pcmu_sdp(&handle, 1);
    let began = Instant::now();
    let tap = handle.start(call(1)).expect("a tap");
    talk(&tap, 50).await;
    handle.end(1, "BYE from the practice");
    let length = began.elapsed();
    wait_for("the recording to be indexed", || {
        handle.stats().complete == 1
    })
    .await;

    let recording = only_recording(&fixture);
    let metadata = &recording.metadata;
    assert_eq!(metadata.status, RecordingStatus::Complete);
    assert_eq!(
        metadata.end_reason.as_deref(),
        Some("BYE from the practice")
    );
    assert_eq!(metadata.lost_packets, 0);
    assert_eq!(metadata.media_type, "audio/wav");
    let seconds = (recording.audio.len() - 44) as f64 / (8000.0 * 4.0);
    let recorded = (metadata.end_ms.unwrap() - metadata.start_ms) as f64 / 1000.0;
    assert!(
        (seconds - recorded).abs() < 0.1,
        "audio {seconds} s, call {recorded} s"
    );
    assert!(
        (seconds - length.as_secs_f64()).abs() < 0.1,
        "audio {seconds} s, measured {length:?}"
    );

    let indexed = fixture
        .store
        .index()
        .get(&metadata.id)
        .unwrap()
        .expect("indexed");
    assert_eq!(indexed.meta.status, RecordingStatus::Complete);
    // Neither the audio nor the numbers are on disk in the clear.
    let raw = std::fs::read(&fixture.recordings()[0]).unwrap();
    assert!(!contains(&raw, b"RIFF") && !contains(&raw, b"01632960123"));
    recorder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tap_overflow_marks_the_recording_degraded_with_the_packets_lost() {
    let fixture = Fixture::new("degraded");
    let recorder = fixture.recorder(4);
    let handle = recorder.handle();
    pcmu_sdp(&handle, 2);
    let tap = handle.start(call(2)).expect("a tap");
    // A burst far larger than the queue, faster than any recorder drains it.
    let now = Instant::now();
    for sequence in 0..100 {
        tap.offer(packet(Side::Trunk, sequence, now));
    }
    let dropped = tap.dropped();
    assert!(dropped >= 90, "only {dropped} dropped");
    handle.end(2, "BYE from the external party");
    wait_for("the recording to be indexed", || {
        handle.stats().degraded == 1
    })
    .await;

    let metadata = only_recording(&fixture).metadata;
    assert_eq!(metadata.status, RecordingStatus::Degraded);
    assert_eq!(metadata.lost_packets, dropped);
    let reason = metadata.status_reason.unwrap();
    assert!(
        reason.contains(&format!("lost {dropped} packets")),
        "{reason}"
    );
    recorder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_finishes_every_recording_in_progress() {
    let fixture = Fixture::new("shutdown");
    let recorder = fixture.recorder(64);
    let handle = recorder.handle();
    let taps: Vec<Tap> = (10..13)
        .map(|call_id| {
            pcmu_sdp(&handle, call_id);
            handle.start(call(call_id)).expect("a tap")
        })
        .collect();
    for tap in &taps {
        talk(tap, 10).await;
    }
    recorder.shutdown(Duration::from_secs(10)).await;

    let files = fixture.recordings();
    assert_eq!(files.len(), 3, "{files:?}");
    for file in files {
        assert_eq!(file.extension().unwrap(), "cvr");
        let metadata = read_recording(&file, fixture.keys.as_ref())
            .unwrap()
            .metadata;
        assert_eq!(metadata.status, RecordingStatus::Complete);
        assert_eq!(metadata.end_reason.as_deref(), Some("the daemon shut down"));
        assert!(fixture.store.index().get(&metadata.id).unwrap().is_some());
    }
}

#[tokio::test]
async fn a_recording_that_cannot_be_created_is_counted_missed_and_the_tap_still_works() {
    let fixture = Fixture::new("missed");
    let recordings = fixture.dir.join("recordings");
    std::fs::remove_dir_all(&recordings).unwrap();
    // A file where the directory should be: no recording can be created there.
    std::fs::write(&recordings, b"not a directory").unwrap();
    let recorder = fixture.recorder(64);
    let handle = recorder.handle();
    pcmu_sdp(&handle, 3);
    let tap = handle
        .start(call(3))
        .expect("a tap, even if the file fails");
    talk(&tap, 10).await;
    assert_eq!(tap.dropped(), 0, "the recorder kept draining its tap");
    handle.end(3, "BYE from the practice");
    wait_for("the miss to be counted", || handle.stats().missed == 1).await;
    assert_eq!(handle.stats().active, 0);
    assert!(is_file(&recordings));
    recorder.shutdown(Duration::from_secs(5)).await;
}

fn is_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file())
}

/// The length an Ogg Opus stream plays for: its last granule position less the
/// pre-skip (RFC 7845 §4), at 48 kHz.
fn ogg_opus_seconds(ogg: &[u8]) -> f64 {
    let last_page = (0..ogg.len() - 4)
        .rev()
        .find(|&at| &ogg[at..at + 4] == b"OggS")
        .unwrap();
    let granule = u64::from_le_bytes(ogg[last_page + 6..last_page + 14].try_into().unwrap());
    let head = (0..ogg.len() - 8)
        .find(|&at| &ogg[at..at + 8] == b"OpusHead")
        .unwrap();
    let pre_skip = u16::from_le_bytes([ogg[head + 10], ogg[head + 11]]);
    (granule - u64::from(pre_skip)) as f64 / 48_000.0
}

/// Records one call of `frames` frames each way, waits until it is indexed.
async fn record_one_call(fixture: &Fixture, recorder: &Recorder, call_id: u64, frames: u16) {
    let handle = recorder.handle();
    pcmu_sdp(&handle, call_id);
    let tap = handle.start(call(call_id)).expect("a tap");
    talk(&tap, frames).await;
    handle.end(call_id, "BYE from the practice");
    wait_for("the recording to be indexed", || {
        fixture.store.index().len() == 1
    })
    .await;
}

#[tokio::test]
async fn opus_recording_is_made_as_wav_then_transcoded_to_ogg_opus_in_its_place() {
    let fixture = Fixture::new("transcode");
    let recorder = fixture.recorder_transcoding(64, Some(OutputFormat::OggOpus));
    record_one_call(&fixture, &recorder, 4, 100).await;
    let handle = recorder.handle();
    wait_for("the transcoding", || handle.stats().transcoded == 1).await;

    let recording = only_recording(&fixture);
    let metadata = &recording.metadata;
    assert_eq!(metadata.media_type, "audio/ogg");
    assert_eq!(metadata.status, RecordingStatus::Complete);
    assert!(recording.audio.starts_with(b"OggS"));
    let recorded = (metadata.end_ms.unwrap() - metadata.start_ms) as f64 / 1000.0;
    let seconds = ogg_opus_seconds(&recording.audio);
    assert!(
        (seconds - recorded).abs() < 0.1,
        "audio {seconds} s, call {recorded} s"
    );
    let indexed = fixture.store.index().get(&metadata.id).unwrap().unwrap();
    assert_eq!(indexed.meta.media_type, "audio/ogg");
    assert_eq!(fixture.store.transcoding_queue().unwrap(), Vec::new());
    let work = std::fs::read_dir(fixture.store.transcode_work_dir()).unwrap();
    assert_eq!(work.count(), 0, "nothing left in the work directory");
    let stats = handle.stats();
    assert_eq!(
        (stats.transcoding_waiting, stats.transcoding_failed),
        (0, 0)
    );
    recorder.shutdown(Duration::from_secs(5)).await;
}

/// A WAV recording left on the transcoding queue, as a crash leaves it.
async fn wav_recording_left_queued(fixture: &Fixture) -> callvault_store::RecordingId {
    let recorder = fixture.recorder(64);
    record_one_call(fixture, &recorder, 5, 25).await;
    recorder.shutdown(Duration::from_secs(5)).await;
    let id = only_recording(fixture).metadata.id;
    fixture.store.queue_transcoding(&id).unwrap();
    id
}

#[tokio::test]
async fn transcoding_left_by_a_crash_is_done_at_the_next_start() {
    let fixture = Fixture::new("transcode-restart");
    let id = wav_recording_left_queued(&fixture).await;

    let recorder = fixture.recorder_transcoding(64, Some(OutputFormat::OggOpus));
    let handle = recorder.handle();
    wait_for("the transcoding", || handle.stats().transcoded == 1).await;
    let recording = only_recording(&fixture);
    assert_eq!(recording.metadata.id, id);
    assert_eq!(recording.metadata.media_type, "audio/ogg");
    assert_eq!(fixture.store.transcoding_queue().unwrap(), Vec::new());
    recorder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_held_recording_keeps_the_file_it_was_held_with() {
    let fixture = Fixture::new("transcode-held");
    let id = wav_recording_left_queued(&fixture).await;
    let before = std::fs::read(&fixture.recordings()[0]).unwrap();
    let index = fixture.store.index();
    index.hold(&id, "police request", "manager", 0).unwrap();

    let recorder = fixture.recorder_transcoding(64, Some(OutputFormat::OggOpus));
    wait_for("the queue to be worked through", || {
        fixture.store.transcoding_queue().unwrap().is_empty()
    })
    .await;
    recorder.shutdown(Duration::from_secs(5)).await;
    assert_eq!(std::fs::read(&fixture.recordings()[0]).unwrap(), before);
    assert_eq!(
        index.get(&id).unwrap().unwrap().meta.media_type,
        "audio/wav"
    );
}
