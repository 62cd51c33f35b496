//! Recording files, damaged or made up, read with a fixed test master key.
//!
//! Most inputs edit a real recording (written once per process with the test
//! key): each three bytes XOR one byte at an offset, and a lone last byte cuts
//! that many bytes off the end. The rest are read as a whole file. Beyond not
//! panicking: an edited file never verifies, an unedited one verifies to the
//! audio and metadata it was written with, and any file that verifies has the
//! same recording id in its header and in both metadata segments.
#![no_main]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use callvault_store::file::{FileError, RecordingReader, RecordingWriter, WriterOptions};
use callvault_store::keys::{KeyId, MasterKey};
use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus};
use libfuzzer_sys::fuzz_target;

/// The recording id of every base file.
const ID: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";

/// A recording as it was written.
struct Written {
    bytes: Vec<u8>,
    start: RecordingMetadata,
    end: RecordingMetadata,
    audio: Vec<u8>,
}

/// What a reader made of a file that verified.
struct Read {
    header_id: RecordingId,
    start: RecordingMetadata,
    end: RecordingMetadata,
    audio: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 3 == 3 {
        if let Ok(read) = read(rest.to_vec()) {
            assert_eq!(
                read.start.id, read.header_id,
                "start metadata names another file"
            );
            assert_eq!(
                read.end.id, read.header_id,
                "final metadata names another file"
            );
        }
        return;
    }
    let written = &bases()[usize::from(mode % 3)];
    let edited = edit(&written.bytes, rest);
    let result = read(edited.clone());
    if edited != written.bytes {
        assert!(result.is_err(), "an edited recording verified");
        return;
    }
    let read = result.unwrap_or_else(|error| panic!("an intact recording fails: {error}"));
    assert!(
        read.start == written.start && read.end == written.end,
        "metadata changed"
    );
    assert!(
        read.audio == written.audio,
        "the audio read is not the audio written"
    );
});

/// Applies the edits `plan` describes to a copy of `bytes`.
fn edit(bytes: &[u8], plan: &[u8]) -> Vec<u8> {
    let mut edited = bytes.to_vec();
    let mut edits = plan.chunks_exact(3);
    for edit in edits.by_ref() {
        let offset = usize::from(u16::from_be_bytes([edit[0], edit[1]])) % edited.len().max(1);
        if let Some(byte) = edited.get_mut(offset) {
            *byte ^= edit[2];
        }
    }
    if let [cut] = edits.remainder() {
        edited.truncate(edited.len().saturating_sub(usize::from(*cut)));
    }
    edited
}

/// Opens `file` and reads every segment, as `callvault verify` does.
fn read(file: Vec<u8>) -> Result<Read, FileError> {
    let mut reader = RecordingReader::new(Cursor::new(file), &master())?;
    let mut audio = Vec::new();
    while let Some(segment) = reader.next_audio()? {
        audio.extend_from_slice(segment);
    }
    Ok(Read {
        header_id: reader.header().recording_id(),
        start: reader.start_metadata().clone(),
        end: reader.metadata().clone(),
        audio,
    })
}

fn master() -> MasterKey {
    MasterKey::new(KeyId(3), [0x5a; 32])
}

/// Three real recordings: without audio, with one audio segment, with three.
fn bases() -> &'static [Written; 3] {
    static BASES: OnceLock<[Written; 3]> = OnceLock::new();
    BASES.get_or_init(|| {
        let dir = scratch_dir();
        let bases = [0, 1, 3].map(|segments| write(&dir, segments));
        std::fs::remove_dir_all(&dir).ok();
        bases
    })
}

fn scratch_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let parent = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    let dir = parent.join(format!("callvault-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory can be made");
    dir
}

fn write(dir: &std::path::Path, segments: u8) -> Written {
    let start = metadata(RecordingStatus::Recording, None);
    let end = metadata(RecordingStatus::Complete, Some(1_700_000_060_000));
    let options = WriterOptions {
        segment_interval: Duration::from_millis(20),
        sync_each_segment: false,
    };
    let mut writer = RecordingWriter::create(dir, &start, &master(), options)
        .expect("the base recording can be created");
    let mut audio = Vec::new();
    for segment in 0..segments {
        let chunk = vec![segment; 40 + usize::from(segment)];
        writer
            .write_audio(&chunk, Duration::from_millis(20))
            .expect("the base recording takes audio");
        audio.extend_from_slice(&chunk);
    }
    let path = writer
        .finish(&end)
        .expect("the base recording can be finished");
    let bytes = std::fs::read(&path).expect("the base recording can be read");
    std::fs::remove_file(&path).ok();
    Written {
        bytes,
        start,
        end,
        audio,
    }
}

fn metadata(status: RecordingStatus, end_ms: Option<i64>) -> RecordingMetadata {
    RecordingMetadata {
        id: RecordingId(ID.into()),
        start_ms: 1_700_000_000_000,
        end_ms,
        direction: CallDirection::Outbound,
        caller: "205".into(),
        callee: "01632960983".into(),
        extension: Some("205".into()),
        media_type: "audio/wav".into(),
        status,
        status_reason: None,
        lost_packets: 0,
        end_reason: None,
        events: Vec::new(),
    }
}
