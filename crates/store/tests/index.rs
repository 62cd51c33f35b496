//! The index on disk: queries, updates, holds, retention, rebuild and damage.

// clippy's allow-unwrap-in-tests covers #[test] functions, not the helpers beside them.
#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test helper is a failed test"
)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use callvault_store::index::{Index, IndexError, IndexedCall};
use callvault_store::number::{normalise, CountryCode, NumberError, E164};
use callvault_store::retention::{self, PurgeMode};
use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus};

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "callvault-index-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn index(&self) -> PathBuf {
        self.0.join("index")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const DAY_MS: i64 = 86_400_000;
/// 2025-06-02 00:00 UTC.
const JUNE_2025: i64 = 1_748_822_400_000;

fn id(n: u32) -> RecordingId {
    RecordingId(format!("{n:032x}"))
}

fn call(n: u32, start_ms: i64, caller: &str, callee: &str, extension: &str) -> RecordingMetadata {
    RecordingMetadata {
        id: id(n),
        start_ms,
        end_ms: Some(start_ms + 60_000),
        direction: CallDirection::Inbound,
        caller: caller.to_owned(),
        callee: callee.to_owned(),
        extension: (!extension.is_empty()).then(|| extension.to_owned()),
        media_type: "audio/ogg".to_owned(),
        status: RecordingStatus::Complete,
        status_reason: None,
        lost_packets: 0,
        end_reason: None,
        events: Vec::new(),
    }
}

fn file_name(meta: &RecordingMetadata) -> String {
    format!("{}.cvr", meta.id)
}

fn uk(number: &str) -> E164 {
    normalise(number, CountryCode::UK).unwrap()
}

fn ids(calls: &[IndexedCall]) -> Vec<RecordingId> {
    calls.iter().map(|call| call.meta.id.clone()).collect()
}

fn create_with(dir: &Path, calls: &[RecordingMetadata]) -> Index {
    let index = Index::create(dir).unwrap();
    for meta in calls {
        index.insert(meta, &file_name(meta)).unwrap();
    }
    index
}

/// A few thousand calls among 300 numbers and 20 extensions, from a fixed seed.
fn synthetic_calls(count: u32) -> Vec<RecordingMetadata> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|n| {
            let external = format!("07700 900{:03}", next() % 300);
            let extension = format!("{}", 200 + next() % 20);
            let start = JUNE_2025 - (next() % (400 * DAY_MS as u64)) as i64;
            if n % 3 == 0 {
                call(
                    n,
                    start,
                    "01632 960000",
                    &format!("sip:{external}@trunk"),
                    &extension,
                )
            } else {
                call(n, start, &external, "+44 1632 960000", &extension)
            }
        })
        .collect()
}

#[test]
fn inserted_call_reads_back_with_its_file_name() {
    let temp = TempDir::new();
    let meta = call(1, JUNE_2025, "07700 900123", "01632 960000", "205");
    let index = create_with(&temp.index(), std::slice::from_ref(&meta));
    let found = index.get(&id(1)).unwrap().unwrap();
    assert_eq!(found.meta, meta);
    assert_eq!(found.file_name, file_name(&meta));
    assert_eq!(found.hold, None);
    assert_eq!(index.get(&id(2)).unwrap(), None);
    assert_eq!(index.len(), 1);
}

#[test]
fn updating_a_call_moves_its_secondary_keys() {
    let temp = TempDir::new();
    let before = call(1, JUNE_2025, "07700 900123", "01632 960000", "205");
    let index = create_with(&temp.index(), std::slice::from_ref(&before));
    let after = RecordingMetadata {
        start_ms: JUNE_2025 + DAY_MS,
        caller: "07700 900999".to_owned(),
        extension: Some("206".to_owned()),
        status: RecordingStatus::Degraded,
        ..before.clone()
    };
    index.insert(&after, "renamed.cvr").unwrap();

    assert!(index
        .by_number(&uk("07700900123"), None, None)
        .unwrap()
        .is_empty());
    assert!(index.by_extension("205", None, None).unwrap().is_empty());
    assert!(index.by_time(None, Some(JUNE_2025 + 1)).unwrap().is_empty());
    let moved = index.by_number(&uk("07700900999"), None, None).unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].meta, after);
    assert_eq!(moved[0].file_name, "renamed.cvr");
    assert_eq!(
        ids(&index.by_extension("206", None, None).unwrap()),
        [id(1)]
    );
    assert_eq!(
        ids(&index.by_number(&uk("01632960000"), None, None).unwrap()),
        [id(1)]
    );
    assert_eq!(index.len(), 1);
}

#[test]
fn removed_call_leaves_no_keys_and_count_survives_reopen() {
    let temp = TempDir::new();
    let calls = [
        call(1, JUNE_2025, "07700 900123", "01632 960000", "205"),
        call(2, JUNE_2025 + 1, "07700 900124", "01632 960000", "205"),
    ];
    let index = create_with(&temp.index(), &calls);
    assert!(index.remove(&id(1)).unwrap());
    assert!(!index.remove(&id(1)).unwrap());
    assert!(index
        .by_number(&uk("07700900123"), None, None)
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&index.by_extension("205", None, None).unwrap()),
        [id(2)]
    );
    drop(index);

    let reopened = Index::open(&temp.index()).unwrap();
    assert_eq!(reopened.len(), 1);
    assert_eq!(ids(&reopened.by_time(None, None).unwrap()), [id(2)]);
}

#[test]
fn every_spelling_of_a_number_finds_the_same_calls() {
    let temp = TempDir::new();
    let calls = [
        call(1, JUNE_2025, "07700 900123", "01632 960000", "205"),
        call(
            2,
            JUNE_2025 + 1,
            "01632 960000",
            "sip:+447700900123@trunk",
            "206",
        ),
        call(3, JUNE_2025 + 2, "tel:+44-7700-900123", "01632 960000", ""),
        call(4, JUNE_2025 + 3, "07700 900124", "01632 960000", "205"),
    ];
    let index = create_with(&temp.index(), &calls);
    for spelling in [
        "07700 900123",
        "+44 (0)7700 900123",
        "0044 7700 900123",
        "sip:07700900123@pbx",
    ] {
        let found = index.by_number(&uk(spelling), None, None).unwrap();
        assert_eq!(ids(&found), [id(1), id(2), id(3)], "{spelling}");
    }
}

#[test]
fn short_numbers_are_not_indexed_as_numbers() {
    let temp = TempDir::new();
    let internal = call(1, JUNE_2025, "205", "999", "205");
    let index = create_with(&temp.index(), &[internal]);
    assert_eq!(
        ids(&index.by_extension("205", None, None).unwrap()),
        [id(1)]
    );
    assert_eq!(ids(&index.by_time(None, None).unwrap()), [id(1)]);
    assert_eq!(
        normalise("999", CountryCode::UK),
        Err(NumberError::ShortNumber)
    );
}

#[test]
fn ranges_include_their_start_and_exclude_their_end() {
    let temp = TempDir::new();
    let calls: Vec<_> = (0..5)
        .map(|n| {
            call(
                n,
                JUNE_2025 + i64::from(n) * DAY_MS,
                "07700 900123",
                "205",
                "205",
            )
        })
        .collect();
    let index = create_with(&temp.index(), &calls);
    let number = uk("07700900123");
    let day = |n: i64| JUNE_2025 + n * DAY_MS;

    let between = index
        .by_number(&number, Some(day(1)), Some(day(3)))
        .unwrap();
    assert_eq!(ids(&between), [id(1), id(2)]);
    let from_only = index.by_extension("205", Some(day(3)), None).unwrap();
    assert_eq!(ids(&from_only), [id(3), id(4)]);
    let to_only = index.by_time(None, Some(day(1))).unwrap();
    assert_eq!(ids(&to_only), [id(0)]);
    let one_ms = index.by_time(Some(day(2)), Some(day(2) + 1)).unwrap();
    assert_eq!(ids(&one_ms), [id(2)]);
    assert!(index
        .by_time(Some(day(2) + 1), Some(day(3)))
        .unwrap()
        .is_empty());
    assert!(index
        .by_number(&number, Some(day(3)), Some(day(3)))
        .unwrap()
        .is_empty());
    assert!(index
        .by_number(&number, Some(day(4)), Some(day(1)))
        .unwrap()
        .is_empty());
}

#[test]
fn results_come_in_start_order_across_the_epoch() {
    let temp = TempDir::new();
    let calls = [
        call(1, 5_000, "07700 900123", "205", "205"),
        call(2, -5_000, "07700 900123", "205", "205"),
        call(3, 0, "07700 900123", "205", "205"),
        call(4, i64::MIN, "07700 900123", "205", "205"),
    ];
    let index = create_with(&temp.index(), &calls);
    let expected = [id(4), id(2), id(3), id(1)];
    assert_eq!(ids(&index.by_time(None, None).unwrap()), expected);
    assert_eq!(
        ids(&index.by_number(&uk("07700900123"), None, None).unwrap()),
        expected
    );
    assert_eq!(
        ids(&index.by_time(Some(-5_000), Some(1)).unwrap()),
        [id(2), id(3)]
    );
}

#[test]
fn extensions_do_not_match_by_prefix() {
    let temp = TempDir::new();
    let calls = [
        call(1, JUNE_2025, "07700 900123", "01632 960000", "20"),
        call(2, JUNE_2025, "07700 900123", "01632 960000", "205"),
        call(3, JUNE_2025, "07700 900123", "01632 960000", "2050"),
    ];
    let index = create_with(&temp.index(), &calls);
    assert_eq!(ids(&index.by_extension("20", None, None).unwrap()), [id(1)]);
    assert_eq!(
        ids(&index.by_extension("205", None, None).unwrap()),
        [id(2)]
    );
    assert!(index.by_extension("", None, None).unwrap().is_empty());
}

#[test]
fn hold_needs_a_known_recording_and_a_reason() {
    let temp = TempDir::new();
    let index = create_with(&temp.index(), &[call(1, JUNE_2025, "07700 900123", "", "")]);
    assert!(matches!(
        index.hold(&id(9), "complaint", "gm", 1),
        Err(IndexError::UnknownRecording { .. })
    ));
    assert!(matches!(
        index.hold(&id(1), "  ", "gm", 1),
        Err(IndexError::MissingReason)
    ));
    index.hold(&id(1), "complaint 2025/14", "gm", 7).unwrap();
    assert!(matches!(
        index.hold(&id(1), "another", "gm", 8),
        Err(IndexError::AlreadyHeld { .. })
    ));
    let hold = index.get(&id(1)).unwrap().unwrap().hold.unwrap();
    assert_eq!(
        (hold.reason.as_str(), hold.operator.as_str(), hold.since_ms),
        ("complaint 2025/14", "gm", 7)
    );
}

#[test]
fn held_call_cannot_be_removed_until_released() {
    let temp = TempDir::new();
    let index = create_with(&temp.index(), &[call(1, JUNE_2025, "07700 900123", "", "")]);
    index.hold(&id(1), "police request", "gm", 7).unwrap();
    assert!(matches!(index.remove(&id(1)), Err(IndexError::Held { .. })));
    drop(index);

    let index = Index::open(&temp.index()).unwrap();
    assert_eq!(index.holds().len(), 1);
    let released = index.release(&id(1)).unwrap().unwrap();
    assert_eq!(released.reason, "police request");
    assert_eq!(index.release(&id(1)).unwrap(), None);
    assert!(index.remove(&id(1)).unwrap());
}

#[test]
fn expired_excludes_held_and_recent_calls() {
    let temp = TempDir::new();
    // 2023-12-03 10:00 UTC, and the moment 36 months later.
    let start = 1_701_597_600_000;
    let now = 1_796_292_000_000;
    let calls = [
        call(1, start, "07700 900123", "", ""),
        call(2, start + 1, "07700 900124", "", ""),
        call(3, start - DAY_MS, "07700 900125", "", ""),
        call(4, start - 400 * DAY_MS, "07700 900126", "", ""),
    ];
    let index = create_with(&temp.index(), &calls);
    index.hold(&id(3), "complaint", "gm", now).unwrap();

    let expired = retention::expired(&index, now, 36).unwrap();
    assert_eq!(ids(&expired), [id(4), id(1)]);
    assert_eq!(retention::retention_ends(start, 36), Some(now));
    assert_eq!(
        ids(&retention::expired(&index, now - 1, 36).unwrap()),
        [id(4)]
    );
    assert!(retention::expired(&index, now, 120).unwrap().is_empty());
}

#[test]
fn dry_run_lists_and_deletes_nothing() {
    let temp = TempDir::new();
    let now = JUNE_2025;
    let old = now - 4 * 366 * DAY_MS;
    let calls = [
        call(1, old, "07700 900123", "", ""),
        call(2, old, "07700 900124", "", ""),
        call(3, now - DAY_MS, "07700 900125", "", ""),
    ];
    let index = create_with(&temp.index(), &calls);
    index.hold(&id(2), "complaint", "gm", now).unwrap();
    let report = retention::purge(&index, now, 36, PurgeMode::DryRun, |_| {
        panic!("a dry run deletes no file")
    })
    .unwrap();
    assert_eq!(report.would_delete, [id(1)]);
    assert_eq!(report.held_skipped, [id(2)]);
    assert!(report.deleted.is_empty());
    assert_eq!(index.len(), 3);
}

#[test]
fn purge_deletes_files_then_entries_and_keeps_failures() {
    let temp = TempDir::new();
    let now = JUNE_2025;
    let old = now - 4 * 366 * DAY_MS;
    let calls: Vec<_> = (1..=4)
        .map(|n| call(n, old + i64::from(n), "07700 900123", "", ""))
        .collect();
    let index = create_with(&temp.index(), &calls);
    index.hold(&id(4), "complaint", "gm", now).unwrap();

    let mut asked = Vec::new();
    let report = retention::purge(&index, now, 36, PurgeMode::Delete, |call| {
        asked.push(call.file_name.clone());
        match call.meta.id {
            ref failing if *failing == id(2) => Err(io::Error::other("disk error")),
            ref gone if *gone == id(3) => Err(io::ErrorKind::NotFound.into()),
            _ => Ok(()),
        }
    })
    .unwrap();

    assert_eq!(
        asked,
        [
            file_name(&calls[0]),
            file_name(&calls[1]),
            file_name(&calls[2])
        ]
    );
    assert_eq!(report.deleted, [id(1), id(3)]);
    assert_eq!(report.held_skipped, [id(4)]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].id, id(2));
    assert_eq!(ids(&index.by_time(None, None).unwrap()), [id(2), id(4)]);
    assert_eq!(index.len(), 2);
}

#[test]
fn rebuild_answers_queries_as_the_original_did() {
    let temp = TempDir::new();
    let calls = synthetic_calls(3000);
    let original = create_with(&temp.0.join("original"), &calls);
    let records = calls.iter().map(|meta| (meta.clone(), file_name(meta)));
    let rebuilt = Index::rebuild(&temp.index(), records).unwrap();

    assert_eq!(rebuilt.len(), original.len());
    assert_eq!(
        rebuilt.by_time(None, None).unwrap(),
        original.by_time(None, None).unwrap()
    );
    let (from, to) = (
        Some(JUNE_2025 - 300 * DAY_MS),
        Some(JUNE_2025 - 100 * DAY_MS),
    );
    let mut in_range = 0;
    for n in (0..300).step_by(37) {
        let number = uk(&format!("07700900{n:03}"));
        let everything = original.by_number(&number, None, None).unwrap();
        assert!(!everything.is_empty());
        assert_eq!(rebuilt.by_number(&number, None, None).unwrap(), everything);
        let expected = original.by_number(&number, from, to).unwrap();
        assert_eq!(rebuilt.by_number(&number, from, to).unwrap(), expected);
        in_range += expected.len();
    }
    assert!(in_range > 0);
    let practice = uk("01632 960000");
    assert_eq!(
        rebuilt.by_number(&practice, None, None).unwrap().len(),
        3000
    );
    let by_extension = original.by_extension("207", None, None).unwrap();
    assert_eq!(
        rebuilt.by_extension("207", None, None).unwrap(),
        by_extension
    );
}

#[test]
fn rebuild_replaces_the_index_and_keeps_holds() {
    let temp = TempDir::new();
    let calls = synthetic_calls(50);
    let index = create_with(&temp.index(), &calls[..10]);
    index.hold(&id(3), "complaint", "gm", 1).unwrap();
    drop(index);

    let records = calls.iter().map(|meta| (meta.clone(), file_name(meta)));
    let rebuilt = Index::rebuild(&temp.index(), records).unwrap();
    assert_eq!(rebuilt.len(), 50);
    assert_eq!(
        rebuilt.get(&id(3)).unwrap().unwrap().hold.unwrap().reason,
        "complaint"
    );
    assert!(!temp.index().join("db.rebuild").exists());
    assert!(!temp.index().join("db.old").exists());
}

#[test]
fn rebuild_keeps_the_last_record_of_a_repeated_id() {
    let temp = TempDir::new();
    let first = call(1, JUNE_2025, "07700 900123", "", "205");
    let second = call(1, JUNE_2025 + DAY_MS, "07700 900124", "", "206");
    let records = [first, second.clone()].map(|meta| (meta.clone(), file_name(&meta)));
    let index = Index::rebuild(&temp.index(), records).unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index.get(&id(1)).unwrap().unwrap().meta, second);
    assert!(index
        .by_number(&uk("07700900123"), None, None)
        .unwrap()
        .is_empty());
    assert!(index.by_extension("205", None, None).unwrap().is_empty());
}

#[test]
fn failed_rebuild_leaves_the_old_index() {
    let temp = TempDir::new();
    let calls = synthetic_calls(20);
    drop(create_with(&temp.index(), &calls));
    // A file where the rebuild wants its directory makes it fail before the swap.
    fs::write(temp.index().join("db.rebuild"), b"in the way").unwrap();
    let records = calls.iter().map(|meta| (meta.clone(), file_name(meta)));
    assert!(matches!(
        Index::rebuild(&temp.index(), records.take(5)),
        Err(IndexError::Io { .. })
    ));
    assert_eq!(Index::open(&temp.index()).unwrap().len(), 20);
}

#[test]
fn rebuild_refuses_an_index_in_use() {
    let temp = TempDir::new();
    let open = create_with(&temp.index(), &synthetic_calls(5));
    let rebuilt = Index::rebuild(&temp.index(), std::iter::empty());
    assert!(matches!(rebuilt, Err(IndexError::Locked { .. })));
    assert!(matches!(
        Index::open(&temp.index()),
        Err(IndexError::Locked { .. })
    ));
    assert_eq!(open.len(), 5);
}

#[test]
fn missing_index_is_detected_before_opening() {
    let temp = TempDir::new();
    assert!(!Index::exists(&temp.index()));
    let error = Index::open(&temp.index()).unwrap_err();
    assert!(matches!(error, IndexError::Missing { .. }));
    assert!(error.to_string().contains("callvault reindex"), "{error}");
    assert!(
        !Index::exists(&temp.index()),
        "open must not create an index"
    );
    drop(Index::create(&temp.index()).unwrap());
    assert!(Index::exists(&temp.index()));
    assert!(matches!(
        Index::create(&temp.index()),
        Err(IndexError::AlreadyExists { .. })
    ));
}

fn assert_corrupt(dir: &Path) {
    let error = Index::open(dir).unwrap_err();
    assert!(matches!(error, IndexError::Corrupt { .. }), "{error:?}");
    assert!(
        error.to_string().contains("run `callvault reindex`"),
        "{error}"
    );
}

#[test]
fn index_without_its_marker_is_corrupt() {
    let temp = TempDir::new();
    fs::create_dir_all(temp.index().join("db")).unwrap();
    assert!(Index::exists(&temp.index()));
    assert_corrupt(&temp.index());
}

#[test]
fn index_of_another_schema_version_is_corrupt() {
    let temp = TempDir::new();
    drop(create_with(&temp.index(), &synthetic_calls(3)));
    {
        let db = sled::open(temp.index().join("db")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    assert_corrupt(&temp.index());
}

/// Copies the files of a sled directory, but not the commit witness.
fn copy_sled_files(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.ends_with("callvault-commit") {
            fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn index_that_lost_committed_changes_is_corrupt() {
    let temp = TempDir::new();
    let calls = synthetic_calls(10);
    drop(create_with(&temp.index(), &calls[..5]));
    let db_dir = temp.index().join("db");
    let earlier = temp.0.join("earlier");
    copy_sled_files(&db_dir, &earlier);
    let index = Index::open(&temp.index()).unwrap();
    for meta in &calls[5..] {
        index.insert(meta, &file_name(meta)).unwrap();
    }
    drop(index);

    // What sled does when it cuts a damaged log short: an older, consistent state.
    for entry in fs::read_dir(&db_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.ends_with("callvault-commit") {
            fs::remove_file(path).unwrap();
        }
    }
    copy_sled_files(&earlier, &db_dir);
    assert_corrupt(&temp.index());
}

#[test]
fn index_without_its_commit_witness_is_corrupt() {
    let temp = TempDir::new();
    drop(create_with(&temp.index(), &synthetic_calls(3)));
    fs::remove_file(temp.index().join("db").join("callvault-commit")).unwrap();
    assert_corrupt(&temp.index());
}

#[test]
fn garbage_in_the_database_files_is_corrupt() {
    let temp = TempDir::new();
    drop(create_with(&temp.index(), &synthetic_calls(200)));
    let db_dir = temp.index().join("db");
    for entry in fs::read_dir(&db_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let length = fs::metadata(&path).unwrap().len().max(64) as usize;
            fs::write(&path, vec![0x5a; length]).unwrap();
        }
    }
    assert_corrupt(&temp.index());

    let records = synthetic_calls(200).into_iter().map(|meta| {
        let name = file_name(&meta);
        (meta, name)
    });
    assert_eq!(Index::rebuild(&temp.index(), records).unwrap().len(), 200);
}

#[test]
fn unreadable_holds_stop_open_and_rebuild() {
    let temp = TempDir::new();
    drop(create_with(&temp.index(), &synthetic_calls(3)));
    fs::write(temp.index().join("holds.json"), b"{ not json").unwrap();
    let error = Index::open(&temp.index()).unwrap_err();
    assert!(
        matches!(error, IndexError::HoldsUnreadable { .. }),
        "{error:?}"
    );
    assert!(matches!(
        Index::rebuild(&temp.index(), std::iter::empty()),
        Err(IndexError::HoldsUnreadable { .. })
    ));
}

#[test]
fn size_on_disk_counts_the_database() {
    let temp = TempDir::new();
    let index = create_with(&temp.index(), &synthetic_calls(100));
    assert!(index.size_on_disk().unwrap() > 0);
    assert!(!index.is_empty());
}
