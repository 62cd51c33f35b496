//! The data directory as a whole: start-up recovery, a missing or corrupt index, and
//! retention deleting file and key.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use callvault_store::file::{self, FileError, RecordingWriter, WriterOptions};
use callvault_store::index::IndexError;
use callvault_store::keys::{KeyId, MasterKey};
use callvault_store::number::{normalise, CountryCode};
use callvault_store::retention::PurgeMode;
use callvault_store::{
    CallDirection, RecordingId, RecordingMetadata, RecordingStatus, Store, StoreError,
};

const DAY_MS: i64 = 86_400_000;
const NOW_MS: i64 = 1_796_000_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("callvault-store-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&path).ok();
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn master() -> MasterKey {
    MasterKey::new(KeyId(1), [9; 32])
}

fn metadata(id: u8, start_ms: i64) -> RecordingMetadata {
    RecordingMetadata {
        id: RecordingId(format!("{id:032x}")),
        start_ms,
        end_ms: None,
        direction: CallDirection::Inbound,
        caller: "07700 900123".into(),
        callee: "01632960002".into(),
        extension: Some("205".into()),
        media_type: "audio/wav".into(),
        status: RecordingStatus::Recording,
        status_reason: None,
        lost_packets: 0,
        end_reason: None,
        events: Vec::new(),
    }
}

fn quiet() -> WriterOptions {
    WriterOptions {
        sync_each_segment: false,
        ..WriterOptions::default()
    }
}

/// Writes a recording of `seconds` one-second segments into the store's directory;
/// finishes it unless `crash`, which leaves the `.part` file a crash would.
fn record(store_dir: &Path, meta: &RecordingMetadata, seconds: u32, crash: bool) -> PathBuf {
    let dir = store_dir.join("recordings");
    std::fs::create_dir_all(&dir).unwrap();
    let mut writer = RecordingWriter::create(&dir, meta, &master(), quiet()).unwrap();
    for second in 0..seconds {
        writer
            .write_audio(
                format!("second {second}").as_bytes(),
                Duration::from_secs(1),
            )
            .unwrap();
    }
    if crash {
        let part = writer.part_path().to_owned();
        std::mem::forget(writer);
        return part;
    }
    let done = RecordingMetadata {
        end_ms: Some(meta.start_ms + 60_000),
        status: RecordingStatus::Complete,
        ..meta.clone()
    };
    writer.finish(&done).unwrap()
}

fn number(text: &str) -> callvault_store::number::E164 {
    normalise(text, CountryCode::UK).unwrap()
}

#[test]
fn a_crashed_recording_is_recovered_and_indexed_as_partial_at_start() {
    let dir = TempDir::new("recover");
    let (store, report) = Store::open(&dir.0, &master()).unwrap();
    drop(store);
    let meta = metadata(1, NOW_MS);
    record(&dir.0, &meta, 3, true);

    let (store, report_after_crash) = Store::open(&dir.0, &master()).unwrap();
    assert!(report.recovered.is_empty());
    assert_eq!(report_after_crash.recovered, std::slice::from_ref(&meta.id));
    let call = store.index().get(&meta.id).unwrap().expect("indexed");
    assert_eq!(call.meta.status, RecordingStatus::Partial);
    let found = store
        .index()
        .by_number(&number("+44 7700 900123"), None, None)
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "the subject access query finds the recovered call"
    );
    let audio = file::read_recording(&store.recording_path(&call), &master())
        .unwrap()
        .audio;
    assert_eq!(audio, b"second 0second 1second 2");
}

#[test]
fn a_missing_index_stops_start_until_reindex_rebuilds_it() {
    let dir = TempDir::new("missing");
    let (store, _) = Store::open(&dir.0, &master()).unwrap();
    let meta = metadata(2, NOW_MS);
    let path = record(&dir.0, &meta, 2, false);
    store
        .index()
        .insert(
            &file::read_metadata(&path, &master()).unwrap(),
            &format!("{}.cvr", meta.id),
        )
        .unwrap();
    drop(store);
    std::fs::remove_dir_all(dir.0.join("index")).unwrap();

    let error = Store::open(&dir.0, &master()).unwrap_err();
    assert!(
        matches!(error, StoreError::Index(IndexError::Missing { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("callvault reindex"), "{error}");

    let report = reindex(&dir.0);
    assert_eq!(report.indexed, 1);
    let (store, _) = Store::open(&dir.0, &master()).unwrap();
    assert_eq!(
        store.index().by_extension("205", None, None).unwrap().len(),
        1
    );
}

#[test]
fn reindex_reports_a_file_it_cannot_read_and_indexes_the_rest() {
    let dir = TempDir::new("reindex-damage");
    record(&dir.0, &metadata(3, NOW_MS), 1, false);
    let damaged = record(&dir.0, &metadata(4, NOW_MS), 1, false);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();

    let report = reindex(&dir.0);
    assert_eq!(report.indexed, 1);
    assert_eq!(report.unreadable.len(), 1);
    assert!(
        matches!(report.unreadable[0].1, FileError::Tampered { .. }),
        "{:?}",
        report.unreadable
    );
}

#[test]
fn purge_shreds_and_deletes_expired_recordings_but_keeps_held_ones() {
    let dir = TempDir::new("purge");
    let (store, _) = Store::open(&dir.0, &master()).unwrap();
    let old = metadata(5, NOW_MS - 40 * 31 * DAY_MS);
    let held = metadata(6, NOW_MS - 40 * 31 * DAY_MS);
    let recent = metadata(7, NOW_MS - DAY_MS);
    for meta in [&old, &held, &recent] {
        let path = record(&dir.0, meta, 1, false);
        store
            .index()
            .insert(
                &file::read_metadata(&path, &master()).unwrap(),
                &format!("{}.cvr", meta.id),
            )
            .unwrap();
    }
    store
        .index()
        .hold(&held.id, "complaint under investigation", "GM", NOW_MS)
        .unwrap();

    let dry = store.purge(NOW_MS, 36, PurgeMode::DryRun).unwrap();
    assert_eq!(dry.would_delete, std::slice::from_ref(&old.id));
    assert_eq!(dry.held_skipped, std::slice::from_ref(&held.id));
    let old_path = dir.0.join("recordings").join(format!("{}.cvr", old.id));
    assert!(old_path.exists(), "a dry run deletes nothing");

    let done = store.purge(NOW_MS, 36, PurgeMode::Delete).unwrap();
    assert_eq!(done.deleted, std::slice::from_ref(&old.id));
    assert!(!old_path.exists());
    assert!(store.index().get(&old.id).unwrap().is_none());
    assert!(store.index().get(&held.id).unwrap().is_some());
    assert!(store.index().get(&recent.id).unwrap().is_some());
}

/// What `callvault reindex` does, with the test's master key.
fn reindex(dir: &Path) -> callvault_store::ReindexReport {
    Store::reindex(dir, &master()).unwrap()
}

#[test]
fn the_transcoding_queue_survives_a_restart_and_its_leftover_work_does_not() {
    let dir = TempDir::new("transcode-queue");
    let (store, _) = Store::open(&dir.0, &master()).unwrap();
    let (first, second) = (metadata(3, NOW_MS).id, metadata(4, NOW_MS).id);
    store.queue_transcoding(&second).unwrap();
    store.queue_transcoding(&first).unwrap();
    let leftover = store.transcode_work_dir().join(format!("{first}.part"));
    std::fs::write(&leftover, b"half a transcoding").unwrap();
    drop(store);

    let (store, _) = Store::open(&dir.0, &master()).unwrap();
    assert_eq!(
        store.transcoding_queue().unwrap(),
        vec![first.clone(), second]
    );
    assert!(
        !leftover.exists(),
        "a crash's half-written file is cleared at start"
    );
    store.transcoding_done(&first).unwrap();
    store.transcoding_done(&first).unwrap();
    assert_eq!(store.transcoding_queue().unwrap().len(), 1);
}

#[test]
fn a_replacement_for_a_purged_recording_is_discarded() {
    let dir = TempDir::new("transcode-absent");
    let (store, _) = Store::open(&dir.0, &master()).unwrap();
    let meta = metadata(5, NOW_MS);
    let new_file = store.transcode_work_dir().join(format!("{}.cvr", meta.id));
    std::fs::write(&new_file, b"a transcoded recording").unwrap();

    let replaced = store.replace_recording(&new_file, &meta).unwrap();
    assert_eq!(replaced, callvault_store::Replaced::Absent);
    assert!(!new_file.exists());
    assert!(store.layout().finished_recordings().unwrap().is_empty());
}

#[test]
fn a_replacement_takes_the_recordings_place_and_index_entry() {
    let dir = TempDir::new("transcode-replace");
    let (store, _) = Store::open(&dir.0, &master()).unwrap();
    let meta = metadata(6, NOW_MS);
    let path = record(&dir.0, &meta, 2, false);
    let file_name = format!("{}.cvr", meta.id);
    store
        .index()
        .insert(&file::read_metadata(&path, &master()).unwrap(), &file_name)
        .unwrap();

    let work = store.transcode_work_dir();
    let final_meta = RecordingMetadata {
        media_type: "audio/ogg".into(),
        end_ms: Some(NOW_MS + 60_000),
        status: RecordingStatus::Complete,
        ..meta.clone()
    };
    let mut writer = RecordingWriter::create(&work, &final_meta, &master(), quiet()).unwrap();
    writer
        .write_audio(b"OggS...", Duration::from_secs(2))
        .unwrap();
    let new_file = writer.finish(&final_meta).unwrap();

    let replaced = store.replace_recording(&new_file, &final_meta).unwrap();
    assert_eq!(replaced, callvault_store::Replaced::Replaced);
    let call = store.index().get(&meta.id).unwrap().unwrap();
    assert_eq!(call.meta.media_type, "audio/ogg");
    assert_eq!(call.file_name, file_name);
    let recording = file::read_recording(&store.recording_path(&call), &master()).unwrap();
    assert_eq!(recording.audio, b"OggS...");
    assert!(!new_file.exists());
}
