//! Recording files: round trips, each kind of damage, rekeying, and crash recovery,
//! including a writer killed with SIGKILL in a child process.

use std::fs;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use callvault_store::file::{
    self, FileError, RecordingReader, RecordingWriter, WriterOptions, RECOVERED_REASON,
};
use callvault_store::keys::{DataKey, KeyError, KeyId, Keyring, MasterKey, WrappedKey};
use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus};
use proptest::prelude::*;

const ID: &str = "0123456789abcdef0123456789abcdef";

/// Header and trailer sizes, as `docs/recording-format.md` specifies them.
const HEADER_LEN: usize = 99;
const TRAILER_LEN: usize = 12;

/// What one call to `write_audio` plays for in most tests: 20 ms, one RTP frame.
const FRAME: Duration = Duration::from_millis(20);

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "callvault-file-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).expect("the temporary directory is writable");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn part(&self) -> PathBuf {
        self.0.join(format!("{ID}.part"))
    }

    fn finished(&self) -> PathBuf {
        self.0.join(format!("{ID}.cvr"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        fs::remove_dir_all(&self.0).ok();
    }
}

fn master() -> MasterKey {
    MasterKey::new(KeyId(1), [7; 32])
}

fn start_metadata() -> RecordingMetadata {
    RecordingMetadata {
        id: RecordingId(ID.into()),
        start_ms: 1_700_000_000_000,
        end_ms: None,
        direction: CallDirection::Inbound,
        caller: "+441632960001".into(),
        callee: "01632960002".into(),
        extension: Some("205".into()),
        media_type: "audio/ogg".into(),
        status: RecordingStatus::Recording,
        status_reason: None,
        lost_packets: 0,
        end_reason: None,
        events: Vec::new(),
    }
}

fn final_metadata() -> RecordingMetadata {
    RecordingMetadata {
        end_ms: Some(1_700_000_060_000),
        status: RecordingStatus::Complete,
        ..start_metadata()
    }
}

fn quiet_options() -> WriterOptions {
    WriterOptions {
        sync_each_segment: false,
        ..WriterOptions::default()
    }
}

/// Writes each of `segments` as one audio segment (each plays a whole interval).
fn write_segments(dir: &TempDir, segments: &[&[u8]]) -> PathBuf {
    let mut writer =
        RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options())
            .expect("a new recording file can be created");
    for audio in segments {
        writer
            .write_audio(audio, Duration::from_secs(1))
            .expect("audio can be written");
    }
    writer
        .finish(&final_metadata())
        .expect("the recording can be finished")
}

/// A finished file with segments 1, 2 and 3 of audio between its metadata.
fn three_segment_file(dir: &TempDir) -> Vec<u8> {
    let path = write_segments(dir, &[b"first second", b"second second", b"third second"]);
    fs::read(path).expect("the finished file is readable")
}

/// Each segment's frame (length field and sealed bytes) in a finished file.
fn frames(bytes: &[u8]) -> Vec<Range<usize>> {
    let end = bytes.len() - TRAILER_LEN;
    let mut offset = HEADER_LEN;
    let mut frames = Vec::new();
    while offset < end {
        let length: [u8; 4] = bytes[offset..offset + 4].try_into().expect("four bytes");
        let next = offset + 4 + u32::from_be_bytes(length) as usize;
        frames.push(offset..next);
        offset = next;
    }
    frames
}

/// Reads every segment of a file held in memory.
fn read_bytes(bytes: &[u8]) -> Result<Vec<u8>, FileError> {
    let mut reader = RecordingReader::new(Cursor::new(bytes), &master())?;
    let mut audio = Vec::new();
    reader.copy_audio(&mut audio)?;
    Ok(audio)
}

#[test]
fn audio_and_metadata_read_back_after_finish() {
    let dir = TempDir::new();
    let mut writer = RecordingWriter::create(
        dir.path(),
        &start_metadata(),
        &master(),
        WriterOptions::default(),
    )
    .unwrap();
    let mut expected = Vec::new();
    for i in 0..120u32 {
        let chunk = i.to_be_bytes().repeat(40);
        writer.write_audio(&chunk, FRAME).unwrap();
        expected.extend_from_slice(&chunk);
    }
    let path = writer.finish(&final_metadata()).unwrap();

    let recording = file::read_recording(&path, &master()).unwrap();
    assert_eq!(recording.audio, expected);
    assert_eq!(recording.metadata, final_metadata());
    let reader = RecordingReader::open(&path, &master()).unwrap();
    assert_eq!(reader.start_metadata(), &start_metadata());
    assert_eq!(reader.header().recording_id(), RecordingId(ID.into()));
    assert_eq!(reader.header().key_id(), KeyId(1));
}

/// Opens a sealed value with ring alone, as `docs/recording-format.md` says to.
fn open_as_documented(key: &[u8], nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Vec<u8> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key"));
    let nonce = Nonce::try_assume_unique_for_key(nonce).expect("a 12-byte nonce");
    let mut in_out = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut in_out)
        .expect("it opens");
    plain.to_vec()
}

#[test]
fn file_decrypts_by_the_documented_layout_alone() {
    let dir = TempDir::new();
    let bytes = three_segment_file(&dir);
    let (bound, prefix) = (&bytes[..35], &bytes[28..35]);
    assert_eq!(&bytes[..12], b"CVREC\r\n\x1a\x00\x01\x00\x00");
    assert_eq!(
        bytes[12..28],
        [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef].repeat(2)
    );
    assert_eq!(bytes[35..39], 1u32.to_be_bytes());
    let data_key = open_as_documented(&[7; 32], &bytes[39..51], bound, &bytes[51..99]);

    let frames = frames(&bytes);
    let mut segments = Vec::new();
    for (number, frame) in frames.iter().enumerate() {
        let last = u8::from(number == frames.len() - 1);
        let nonce = [prefix, &(number as u32).to_be_bytes(), &[last]].concat();
        segments.push(open_as_documented(
            &data_key,
            &nonce,
            bound,
            &bytes[frame.start + 4..frame.end],
        ));
    }
    let kinds: Vec<u8> = segments.iter().map(|plain| plain[0]).collect();
    assert_eq!(kinds, [1, 2, 2, 2, 3]);
    assert_eq!(&segments[2][9..], b"second second");
    let end: RecordingMetadata = serde_json::from_slice(&segments[4][1..]).unwrap();
    assert_eq!(end, final_metadata());
    let trailer = &bytes[bytes.len() - TRAILER_LEN..];
    assert_eq!(trailer[..4], 4u32.to_be_bytes());
    assert_eq!(trailer[4..8], ((frames[4].len() - 4) as u32).to_be_bytes());
    assert_eq!(&trailer[8..], b"CVRE");
}

#[test]
fn writer_seals_a_segment_per_interval_of_audio() {
    let dir = TempDir::new();
    let mut writer =
        RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options()).unwrap();
    // 120 frames of 20 ms: two whole seconds sealed as they fill, 0.4 s at finish.
    for _ in 0..120 {
        writer.write_audio(&[1; 80], FRAME).unwrap();
    }
    let path = writer.finish(&final_metadata()).unwrap();

    let mut reader = RecordingReader::open(&path, &master()).unwrap();
    let mut sizes = Vec::new();
    while let Some(audio) = reader.next_audio().unwrap() {
        sizes.push(audio.len());
    }
    assert_eq!(sizes, [50 * 80, 50 * 80, 20 * 80]);
}

#[test]
fn writer_seals_pending_audio_after_interval_of_wall_time() {
    let dir = TempDir::new();
    let options = WriterOptions {
        segment_interval: Duration::from_millis(50),
        ..WriterOptions::default()
    };
    let mut writer =
        RecordingWriter::create(dir.path(), &start_metadata(), &master(), options).unwrap();
    // Audio of unknown duration: only the wall clock can make it due.
    writer.write_audio(b"early", Duration::ZERO).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    writer.write_audio(b" late", Duration::ZERO).unwrap();
    drop(writer);

    let recovered = file::recover(&dir.part(), &master()).unwrap();
    assert_eq!(recovered.audio_segments, 1);
    let recording = file::read_recording(&recovered.path, &master()).unwrap();
    assert_eq!(recording.audio, b"early late");
}

#[test]
fn chunk_larger_than_a_segment_is_split_and_reads_back() {
    let dir = TempDir::new();
    let audio: Vec<u8> = (0..3 * file::MAX_SEGMENT_LEN + 5)
        .map(|i| (i % 251) as u8)
        .collect();
    let path = write_segments(&dir, &[&audio]);

    let mut reader = RecordingReader::open(&path, &master()).unwrap();
    let mut read = Vec::new();
    let mut segments = 0;
    while let Some(chunk) = reader.next_audio().unwrap() {
        read.extend_from_slice(chunk);
        segments += 1;
    }
    assert_eq!(read, audio);
    assert_eq!(segments, 4);
}

#[test]
fn recording_with_no_audio_reads_back_empty() {
    let dir = TempDir::new();
    let path = write_segments(&dir, &[]);
    let recording = file::read_recording(&path, &master()).unwrap();
    assert!(recording.audio.is_empty());
    assert_eq!(recording.metadata, final_metadata());
}

#[test]
fn finished_file_replaces_part_file_and_is_private() {
    let dir = TempDir::new();
    let mut writer =
        RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options()).unwrap();
    assert_eq!(writer.part_path(), dir.part());
    let mode = fs::metadata(dir.part()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    writer.write_audio(b"audio", FRAME).unwrap();

    let path = writer.finish(&final_metadata()).unwrap();
    assert_eq!(path, dir.finished());
    assert!(!dir.part().exists());
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn no_plaintext_audio_metadata_or_key_reaches_the_disk() {
    let dir = TempDir::new();
    let marker = b"PLAINTEXT-AUDIO-MARKER".repeat(100);
    let mut writer = RecordingWriter::create(
        dir.path(),
        &start_metadata(),
        &master(),
        WriterOptions::default(),
    )
    .unwrap();
    writer.write_audio(&marker, Duration::from_secs(1)).unwrap();
    let part = fs::read(dir.part()).unwrap();
    let path = writer.finish(&final_metadata()).unwrap();
    let finished = fs::read(path).unwrap();

    let secrets: [&[u8]; 5] = [
        b"PLAINTEXT",
        b"+441632960001",
        b"audio/ogg",
        b"\"caller\"",
        &[7; 32],
    ];
    for bytes in [&part, &finished] {
        for secret in secrets {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
    }
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [format!("{ID}.cvr").as_str()]);
}

#[test]
fn read_metadata_reads_only_first_and_last_segments() {
    let dir = TempDir::new();
    let mut bytes = three_segment_file(&dir);
    let frames = frames(&bytes);
    bytes[frames[2].end - 1] ^= 0x40;
    fs::write(dir.finished(), &bytes).unwrap();

    let metadata = file::read_metadata(&dir.finished(), &master()).unwrap();
    assert_eq!(metadata, final_metadata());
    assert!(matches!(
        file::verify(&dir.finished(), &master()),
        Err(FileError::Tampered { segment: 2 })
    ));
}

#[test]
fn flipped_byte_in_a_segment_reports_that_segment() {
    let dir = TempDir::new();
    let original = three_segment_file(&dir);
    for (segment, frame) in frames(&original).into_iter().enumerate() {
        let mut bytes = original.clone();
        bytes[frame.start + 10] ^= 1;
        let error = read_bytes(&bytes).unwrap_err();
        assert!(
            matches!(error, FileError::Tampered { segment: s } if s as usize == segment),
            "segment {segment}: {error:?}"
        );
    }
}

#[test]
fn swapped_segments_report_reordered() {
    let dir = TempDir::new();
    let bytes = three_segment_file(&dir);
    let frames = frames(&bytes);
    let mut swapped = bytes[..HEADER_LEN].to_vec();
    for index in [0, 2, 1, 3, 4] {
        swapped.extend_from_slice(&bytes[frames[index].clone()]);
    }
    swapped.extend_from_slice(&bytes[bytes.len() - TRAILER_LEN..]);

    assert!(matches!(
        read_bytes(&swapped),
        Err(FileError::Reordered {
            expected: 1,
            found: 2
        })
    ));
}

#[test]
fn removed_segment_reports_reordered() {
    let dir = TempDir::new();
    let bytes = three_segment_file(&dir);
    let frames = frames(&bytes);
    let mut removed = bytes[..frames[2].start].to_vec();
    removed.extend_from_slice(&bytes[frames[2].end..]);

    assert!(matches!(
        read_bytes(&removed),
        Err(FileError::Reordered {
            expected: 2,
            found: 3
        })
    ));
}

#[test]
fn truncated_file_reports_truncated() {
    let dir = TempDir::new();
    let bytes = three_segment_file(&dir);
    let frames = frames(&bytes);
    let cuts = [
        bytes.len() - 1,
        bytes.len() - TRAILER_LEN,
        frames[4].start + 7,
        frames[3].end,
        frames[1].start,
        HEADER_LEN - 1,
        3,
        0,
    ];
    for cut in cuts {
        assert!(
            matches!(read_bytes(&bytes[..cut]), Err(FileError::Truncated)),
            "cut at {cut}"
        );
    }
}

#[test]
fn audio_segment_posing_as_final_reports_truncated() {
    let dir = TempDir::new();
    let bytes = three_segment_file(&dir);
    let frames = frames(&bytes);
    // Cut after segment 2 and forge a trailer that names it as the final segment.
    let mut cut = bytes[..frames[2].end].to_vec();
    cut.extend_from_slice(&2u32.to_be_bytes());
    cut.extend_from_slice(&((frames[2].len() - 4) as u32).to_be_bytes());
    cut.extend_from_slice(b"CVRE");

    assert!(matches!(read_bytes(&cut), Err(FileError::Truncated)));
}

#[test]
fn hostile_segment_length_is_rejected() {
    let dir = TempDir::new();
    let mut bytes = three_segment_file(&dir);
    let frames = frames(&bytes);
    bytes[frames[1].start..frames[1].start + 4].copy_from_slice(&u32::MAX.to_be_bytes());

    assert!(matches!(
        read_bytes(&bytes),
        Err(FileError::Tampered { segment: 1 })
    ));
}

#[test]
fn wrong_master_key_reports_wrong_key() {
    let dir = TempDir::new();
    let path = write_segments(&dir, &[b"audio"]);
    let impostor = MasterKey::new(KeyId(1), [8; 32]);
    assert!(matches!(
        file::read_recording(&path, &impostor),
        Err(FileError::WrongKey(KeyId(1)))
    ));
}

#[test]
fn unknown_key_id_reports_unknown_key() {
    let dir = TempDir::new();
    let path = write_segments(&dir, &[b"audio"]);
    let other = MasterKey::new(KeyId(2), [7; 32]);
    assert!(matches!(
        file::read_recording(&path, &other),
        Err(FileError::UnknownKey(KeyId(1)))
    ));
    let keyring = Keyring::generate().unwrap();
    assert!(matches!(
        file::read_recording(&path, &keyring),
        Err(FileError::WrongKey(KeyId(1)))
    ));
}

#[test]
fn keyring_and_closure_open_a_recording() {
    let dir = TempDir::new();
    let keyring = Keyring::generate().unwrap();
    let mut writer = RecordingWriter::create(
        dir.path(),
        &start_metadata(),
        keyring.current(),
        quiet_options(),
    )
    .unwrap();
    writer.write_audio(b"audio", FRAME).unwrap();
    let path = writer.finish(&final_metadata()).unwrap();

    assert_eq!(
        file::read_recording(&path, &keyring).unwrap().audio,
        b"audio"
    );
    let by_closure = |wrapped: &WrappedKey, context: &[u8]| -> Result<DataKey, KeyError> {
        keyring.unwrap(wrapped, context)
    };
    assert_eq!(
        file::read_recording(&path, &by_closure).unwrap().audio,
        b"audio"
    );
}

#[test]
fn unknown_version_and_bad_magic_are_reported() {
    let dir = TempDir::new();
    let original = three_segment_file(&dir);

    let mut newer = original.clone();
    newer[8..10].copy_from_slice(&2u16.to_be_bytes());
    assert!(matches!(
        read_bytes(&newer),
        Err(FileError::UnknownVersion(2))
    ));

    let mut flagged = original.clone();
    flagged[11] = 1;
    assert!(matches!(
        read_bytes(&flagged),
        Err(FileError::UnsupportedFlags(1))
    ));

    let mut foreign = original;
    foreign[0] = b'X';
    assert!(matches!(read_bytes(&foreign), Err(FileError::BadMagic)));
    assert!(matches!(read_bytes(b"RIFF"), Err(FileError::BadMagic)));
}

#[test]
fn shredded_file_reports_shredded() {
    let dir = TempDir::new();
    let path = write_segments(&dir, &[b"audio"]);
    let before = fs::read(&path).unwrap();
    file::shred(&path).unwrap();
    let after = fs::read(&path).unwrap();

    assert!(after[35..99].iter().all(|b| *b == 0));
    assert_eq!(before[..35], after[..35]);
    assert_eq!(before[99..], after[99..]);
    assert!(file::read_header(&path).unwrap().is_shredded());
    assert!(matches!(
        file::read_recording(&path, &master()),
        Err(FileError::Shredded)
    ));
    assert!(matches!(
        file::read_metadata(&path, &master()),
        Err(FileError::Shredded)
    ));
}

#[test]
fn shred_refuses_a_file_that_is_not_a_recording() {
    let dir = TempDir::new();
    let path = dir.path().join("notes.txt");
    let text = b"not a recording, but long enough to hold a whole header if it were one".repeat(2);
    fs::write(&path, &text).unwrap();
    assert!(matches!(file::shred(&path), Err(FileError::BadMagic)));
    assert_eq!(fs::read(&path).unwrap(), text);
}

#[test]
fn rewrap_moves_to_new_key_and_leaves_segments_untouched() {
    let dir = TempDir::new();
    let path = write_segments(&dir, &[b"first", b"second"]);
    let before = fs::read(&path).unwrap();
    let new_master = MasterKey::new(KeyId(2), [9; 32]);

    assert_eq!(
        file::rewrap(&path, &master(), &new_master).unwrap(),
        KeyId(1)
    );
    let after = fs::read(&path).unwrap();
    assert_eq!(before.len(), after.len());
    assert_eq!(before[..35], after[..35]);
    assert_eq!(before[99..], after[99..]);
    assert_eq!(file::read_header(&path).unwrap().key_id(), KeyId(2));
    assert_eq!(
        file::read_recording(&path, &new_master).unwrap().audio,
        b"firstsecond"
    );
    assert!(matches!(
        file::read_recording(&path, &master()),
        Err(FileError::UnknownKey(KeyId(2)))
    ));
}

#[test]
fn recover_keeps_whole_segments_and_marks_partial() {
    let dir = TempDir::new();
    let mut writer =
        RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options()).unwrap();
    writer.write_audio(b"one ", Duration::from_secs(1)).unwrap();
    writer.write_audio(b"two ", Duration::from_secs(1)).unwrap();
    writer.write_audio(b"never sealed", FRAME).unwrap();
    drop(writer);
    // A segment torn by the crash: a length and half its bytes.
    let mut part = fs::OpenOptions::new()
        .append(true)
        .open(dir.part())
        .unwrap();
    part.write_all(&[0, 0, 0, 40]).unwrap();
    part.write_all(&[0xAB; 20]).unwrap();
    drop(part);

    let recovered = file::recover(&dir.part(), &master()).unwrap();
    assert_eq!(recovered.path, dir.finished());
    assert!(!dir.part().exists());
    assert_eq!(recovered.audio_segments, 2);
    assert_eq!(recovered.discarded_bytes, 24);
    assert_eq!(recovered.metadata.status, RecordingStatus::Partial);
    assert_eq!(
        recovered.metadata.status_reason.as_deref(),
        Some(RECOVERED_REASON)
    );
    assert!(recovered.metadata.end_ms >= Some(start_metadata().start_ms));

    let recording = file::read_recording(&recovered.path, &master()).unwrap();
    assert_eq!(recording.audio, b"one two ");
    assert_eq!(recording.metadata, recovered.metadata);
}

#[test]
fn recover_of_finished_but_unrenamed_file_keeps_its_metadata() {
    let dir = TempDir::new();
    let path = write_segments(&dir, &[b"whole call"]);
    let finished = fs::read(&path).unwrap();
    // The crash came after the trailer was written, before the rename.
    fs::write(dir.part(), &finished[..finished.len() - 3]).unwrap();
    fs::remove_file(&path).unwrap();

    let recovered = file::recover(&dir.part(), &master()).unwrap();
    assert_eq!(recovered.metadata, final_metadata());
    assert_eq!(fs::read(&recovered.path).unwrap(), finished);
}

#[test]
fn recovery_interrupted_and_run_again_writes_the_same_bytes() {
    let dir = TempDir::new();
    let mut writer =
        RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options()).unwrap();
    writer
        .write_audio(b"sealed", Duration::from_secs(1))
        .unwrap();
    drop(writer);
    let part = fs::read(dir.part()).unwrap();

    let first = fs::read(file::recover(&dir.part(), &master()).unwrap().path).unwrap();
    // Recovery cut short while writing its final segment, then run again.
    fs::write(dir.part(), &first[..part.len() + 9]).unwrap();
    fs::remove_file(dir.finished()).unwrap();
    let second = fs::read(file::recover(&dir.part(), &master()).unwrap().path).unwrap();
    assert_eq!(first, second);
}

#[test]
fn part_file_without_its_first_segment_is_not_recoverable() {
    let dir = TempDir::new();
    let mut writer =
        RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options()).unwrap();
    writer
        .write_audio(b"audio", Duration::from_secs(1))
        .unwrap();
    drop(writer);
    let part = fs::read(dir.part()).unwrap();
    fs::write(dir.part(), &part[..HEADER_LEN + 30]).unwrap();

    assert!(matches!(
        file::recover(&dir.part(), &master()),
        Err(FileError::Truncated)
    ));
}

#[test]
fn invalid_recording_ids_are_refused() {
    let dir = TempDir::new();
    for id in ["../../etc/cron.d/x", "0123456789ABCDEF0123456789ABCDEF", ""] {
        let metadata = RecordingMetadata {
            id: RecordingId(id.into()),
            ..start_metadata()
        };
        let created = RecordingWriter::create(dir.path(), &metadata, &master(), quiet_options());
        assert!(matches!(created, Err(FileError::InvalidInput(_))));
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn finish_with_another_recordings_metadata_is_refused() {
    let dir = TempDir::new();
    let writer =
        RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options()).unwrap();
    let other = RecordingMetadata {
        id: RecordingId("ffffffffffffffffffffffffffffffff".into()),
        ..final_metadata()
    };
    assert!(matches!(
        writer.finish(&other),
        Err(FileError::InvalidInput(_))
    ));
}

#[test]
fn every_single_byte_change_is_detected() {
    let bytes = small_finished_file();
    for index in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut changed = bytes.to_vec();
            changed[index] ^= flip;
            assert!(read_bytes(&changed).is_err(), "byte {index} ^ {flip:#x}");
        }
    }
}

/// A finished file of a few segments, written once and kept in memory.
fn small_finished_file() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = TempDir::new();
        three_segment_file(&dir)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_chunking_reads_back_identically(
        chunks in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..3000), 0u64..1500),
            0..40,
        )
    ) {
        let dir = TempDir::new();
        let mut writer =
            RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options())
                .unwrap();
        let mut expected = Vec::new();
        for (audio, millis) in &chunks {
            writer.write_audio(audio, Duration::from_millis(*millis)).unwrap();
            expected.extend_from_slice(audio);
        }
        let path = writer.finish(&final_metadata()).unwrap();
        prop_assert_eq!(file::read_recording(&path, &master()).unwrap().audio, expected);
    }

    #[test]
    fn any_single_byte_change_is_an_error(index in any::<prop::sample::Index>(), flip in 1u8..) {
        let mut bytes = small_finished_file().to_vec();
        let at = index.index(bytes.len());
        bytes[at] ^= flip;
        prop_assert!(read_bytes(&bytes).is_err());
    }

    #[test]
    fn recovery_after_a_cut_anywhere_keeps_a_prefix(cut in any::<prop::sample::Index>()) {
        let dir = TempDir::new();
        let mut writer =
            RecordingWriter::create(dir.path(), &start_metadata(), &master(), quiet_options())
                .unwrap();
        let chunks: [&[u8]; 4] = [b"zero ", b"one ", b"two ", b"three "];
        for chunk in chunks {
            writer.write_audio(chunk, Duration::from_secs(1)).unwrap();
        }
        drop(writer);
        let part = fs::read(dir.part()).unwrap();
        let cut = cut.index(part.len() + 1);
        fs::write(dir.part(), &part[..cut]).unwrap();

        let length: [u8; 4] = part[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap();
        let first_segment_end = HEADER_LEN + 4 + u32::from_be_bytes(length) as usize;
        match file::recover(&dir.part(), &master()) {
            Ok(recovered) => {
                prop_assert!(cut >= first_segment_end);
                let audio = file::read_recording(&recovered.path, &master()).unwrap().audio;
                let kept = chunks[..recovered.audio_segments as usize].concat();
                prop_assert_eq!(audio, kept);
            }
            Err(FileError::Truncated) => prop_assert!(cut < first_segment_end),
            Err(other) => prop_assert!(false, "recovery failed: {other:?}"),
        }
    }
}

/// The environment variable that turns the test binary into the killed writer.
const CHILD_DIR: &str = "CALLVAULT_TEST_KILLED_WRITER_DIR";

/// Bytes of one 20 ms chunk the child writes: its index, repeated.
const CHUNK_LEN: usize = 40;

fn chunk(index: u32) -> Vec<u8> {
    index.to_be_bytes().repeat(CHUNK_LEN / 4)
}

#[test]
fn writer_killed_mid_call_recovers_partial_with_at_most_one_second_lost() {
    let dir = TempDir::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writes_audio_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut handed_over = 0;
    // 3.5 seconds of audio: three segments sealed, the fourth half full.
    while handed_over < 175 {
        let line = lines
            .next()
            .expect("the child writes until it is killed")
            .unwrap();
        handed_over = chunks_reported(&line).unwrap_or(handed_over);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines the child wrote before it died may still be in the pipe.
    for line in lines {
        handed_over = chunks_reported(&line.unwrap()).unwrap_or(handed_over);
    }

    let recovered = file::recover(&dir.part(), &master()).unwrap();
    assert_eq!(recovered.metadata.status, RecordingStatus::Partial);
    let audio = file::read_recording(&recovered.path, &master())
        .unwrap()
        .audio;
    let kept = (audio.len() / CHUNK_LEN) as u32;
    let expected: Vec<u8> = (0..kept).flat_map(chunk).collect();
    assert_eq!(audio, expected);
    let lost = FRAME * handed_over.saturating_sub(kept);
    assert!(lost < Duration::from_secs(1), "lost {lost:?} of audio");
}

fn chunks_reported(line: &str) -> Option<u32> {
    line.strip_prefix("chunks ")?.parse().ok()
}

/// The child half of the test above: writes 20 ms chunks until killed.
///
/// Each line `chunks N` on stdout says `write_audio` returned for N chunks. It writes
/// faster than real time; it gives up after a minute in case its parent is gone.
#[test]
#[ignore = "run as a child process by writer_killed_mid_call_recovers_partial"]
fn child_writes_audio_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mut writer = RecordingWriter::create(
        Path::new(&dir),
        &start_metadata(),
        &master(),
        WriterOptions::default(),
    )
    .unwrap();
    let mut stdout = std::io::stdout();
    let began = Instant::now();
    for index in 0.. {
        writer.write_audio(&chunk(index), FRAME).unwrap();
        writeln!(stdout, "chunks {}", index + 1).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        if began.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
}
