//! The audit log: appending, the hash chain, and finding where it was broken.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use callvault_store::audit::{
    AuditAction, AuditEntry, AuditError, AuditLog, LinkFault, GENESIS_HASH,
};
use proptest::prelude::*;

/// A directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let count = COUNT.fetch_add(1, Ordering::Relaxed);
        let name = format!("callvault-audit-{label}-{}-{count}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A log of five entries of different kinds, with its path.
fn five_entries(dir: &TempDir) -> PathBuf {
    let path = dir.join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    let recording = Some("3f2a9c0d5e6b47a8b1c2d3e4f5a6b7c8");
    log.append(
        "callvault",
        AuditAction::KeyInit,
        Some("00000001"),
        "first start",
    )
    .unwrap();
    log.append(
        "dr.shah",
        AuditAction::Playback,
        recording,
        "complaint 2024/17",
    )
    .unwrap();
    log.append(
        "manager",
        AuditAction::Hold,
        recording,
        "complaint 2024/17: \"keep\"",
    )
    .unwrap();
    log.append(
        "manager",
        AuditAction::OptOutAdd,
        Some("+441632960001"),
        "asked in person",
    )
    .unwrap();
    log.append(
        "callvault",
        AuditAction::Purge,
        None,
        "retention: 36 months",
    )
    .unwrap();
    path
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The seq, line and fault of the first broken link.
fn broken_link(path: &Path) -> (u64, u64, LinkFault) {
    match AuditLog::open(path).unwrap().verify() {
        Err(AuditError::BrokenLink { seq, line, fault }) => (seq, line, fault),
        other => panic!("expected a broken link, got {other:?}"),
    }
}

#[test]
fn appended_entries_chain_from_the_genesis_hash() {
    let dir = TempDir::new("chain");
    let path = five_entries(&dir);
    let log = AuditLog::open(&path).unwrap();

    let entries = log.entries().unwrap();

    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(entry.seq, index as u64 + 1);
        assert_eq!(entry.hash, entry.compute_hash());
        assert_eq!(entry.hash.len(), 64);
        if index > 0 {
            assert_eq!(entry.prev_hash, entries[index - 1].hash);
        }
    }
    assert_eq!(entries[3].action, AuditAction::OptOutAdd);
    assert_eq!(entries[3].target.as_deref(), Some("+441632960001"));
    assert_eq!(entries[4].target, None);
    let chain = log.verify().unwrap();
    assert_eq!(chain.entries, 5);
    assert_eq!(chain.last_hash, entries[4].hash);
}

#[test]
fn each_entry_is_one_json_line_with_kebab_case_actions() {
    let dir = TempDir::new("json");
    let path = five_entries(&dir);

    let first: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();

    assert_eq!(first["seq"], 1);
    assert_eq!(first["action"], "key-init");
    assert_eq!(first["operator"], "callvault");
    assert_eq!(first["target"], "00000001");
    assert!(first["time_ms"].as_i64().unwrap() > 1_600_000_000_000);
}

#[test]
fn an_empty_log_verifies_to_the_genesis_hash() {
    let dir = TempDir::new("empty");
    let log = AuditLog::open(&dir.join("audit.log")).unwrap();

    let chain = log.verify().unwrap();

    assert_eq!(chain.entries, 0);
    assert_eq!(chain.last_hash, GENESIS_HASH);
}

#[test]
fn a_reopened_log_continues_the_chain() {
    let dir = TempDir::new("reopen");
    let path = five_entries(&dir);
    let last = AuditLog::open(&path)
        .unwrap()
        .entries()
        .unwrap()
        .pop()
        .unwrap();

    let mut log = AuditLog::open(&path).unwrap();
    let next = log
        .append(
            "manager",
            AuditAction::Release,
            Some("3f2a"),
            "complaint closed",
        )
        .unwrap();

    assert_eq!(next.seq, 6);
    assert_eq!(next.prev_hash, last.hash);
    assert_eq!(log.verify().unwrap().entries, 6);
}

#[test]
fn open_creates_the_log_private_and_refuses_one_others_can_read() {
    let dir = TempDir::new("mode");
    let path = dir.join("audit.log");
    AuditLog::open(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let error = AuditLog::open(&path).unwrap_err();

    assert!(
        matches!(error, AuditError::Permissions { mode: 0o644, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("chmod 600"));
}

#[test]
fn append_refuses_an_entry_without_operator_or_reason() {
    let dir = TempDir::new("fields");
    let path = dir.join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();

    let no_operator = log.append("", AuditAction::Export, Some("id"), "sar");
    let blank_reason = log.append("manager", AuditAction::Export, Some("id"), "  ");
    let empty_target = log.append("manager", AuditAction::Export, Some(""), "sar");
    let two_lines = log.append("manager", AuditAction::Export, None, "a\nb");

    assert!(matches!(
        no_operator,
        Err(AuditError::EmptyField { field: "operator" })
    ));
    assert!(matches!(
        blank_reason,
        Err(AuditError::EmptyField { field: "reason" })
    ));
    assert!(matches!(
        empty_target,
        Err(AuditError::EmptyField { field: "target" })
    ));
    assert!(matches!(
        two_lines,
        Err(AuditError::InvalidField {
            field: "reason",
            ..
        })
    ));
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn concurrent_appenders_never_break_the_chain() {
    let dir = TempDir::new("concurrent");
    let path = dir.join("audit.log");
    AuditLog::open(&path).unwrap();

    let threads: Vec<_> = (0..4)
        .map(|worker| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Each thread opens its own file description, as a second
                // process would, so only the flock keeps them apart.
                let mut log = AuditLog::open(&path).unwrap();
                for n in 0..25 {
                    let reason = format!("worker {worker} entry {n}");
                    log.append("tester", AuditAction::Playback, None, &reason)
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    assert_eq!(
        AuditLog::open(&path).unwrap().verify().unwrap().entries,
        100
    );
}

#[test]
fn an_edited_field_breaks_that_entry() {
    let dir = TempDir::new("edit");
    let path = five_entries(&dir);
    let mut text = lines(&path);
    text[2] = text[2].replace("complaint 2024/17", "complaint 2024/18");
    write_lines(&path, &text);

    assert_eq!(broken_link(&path), (3, 3, LinkFault::HashMismatch));
}

#[test]
fn an_edit_with_a_recomputed_hash_breaks_the_next_entry() {
    let dir = TempDir::new("rehash");
    let path = five_entries(&dir);
    let mut entries = AuditLog::open(&path).unwrap().entries().unwrap();
    entries[2].operator = "someone.else".into();
    entries[2].hash = entries[2].compute_hash();
    let mut text = lines(&path);
    text[2] = serde_json::to_string(&entries[2]).unwrap();
    write_lines(&path, &text);

    assert_eq!(broken_link(&path), (4, 4, LinkFault::PrevHashMismatch));
}

#[test]
fn a_deleted_line_breaks_the_chain_where_it_was() {
    let dir = TempDir::new("delete");
    let path = five_entries(&dir);
    let mut text = lines(&path);
    text.remove(2);
    write_lines(&path, &text);

    assert_eq!(broken_link(&path), (3, 3, LinkFault::SeqGap { found: 4 }));
}

#[test]
fn a_deleted_first_line_is_found() {
    let dir = TempDir::new("delete-first");
    let path = five_entries(&dir);
    let mut text = lines(&path);
    text.remove(0);
    write_lines(&path, &text);

    assert_eq!(broken_link(&path), (1, 1, LinkFault::SeqGap { found: 2 }));
}

#[test]
fn two_swapped_lines_break_at_the_first_of_them() {
    let dir = TempDir::new("swap");
    let path = five_entries(&dir);
    let mut text = lines(&path);
    text.swap(1, 3);
    write_lines(&path, &text);

    assert_eq!(broken_link(&path), (2, 2, LinkFault::SeqGap { found: 4 }));
}

#[test]
fn a_truncated_last_line_is_reported() {
    let dir = TempDir::new("truncate");
    let path = five_entries(&dir);
    let length = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(length - 20)
        .unwrap();

    assert_eq!(broken_link(&path), (5, 5, LinkFault::TruncatedLastLine));
}

#[test]
fn a_forged_entry_with_a_wrong_prev_hash_is_reported() {
    let dir = TempDir::new("forge");
    let path = five_entries(&dir);
    let mut forged = AuditEntry {
        seq: 6,
        time_ms: 1_700_000_000_000,
        operator: "manager".into(),
        action: AuditAction::Delete,
        target: Some("3f2a9c0d5e6b47a8b1c2d3e4f5a6b7c8".into()),
        reason: "made up".into(),
        prev_hash: "ab".repeat(32),
        hash: String::new(),
    };
    forged.hash = forged.compute_hash();
    let mut text = lines(&path);
    text.push(serde_json::to_string(&forged).unwrap());
    write_lines(&path, &text);

    assert_eq!(broken_link(&path), (6, 6, LinkFault::PrevHashMismatch));
}

#[test]
fn a_respelt_but_equal_line_is_not_canonical() {
    let dir = TempDir::new("respell");
    let path = five_entries(&dir);
    let mut text = lines(&path);
    text[1] = text[1].replacen("\"seq\":2", "\"seq\": 2", 1);
    write_lines(&path, &text);

    assert_eq!(broken_link(&path), (2, 2, LinkFault::NotCanonical));
}

#[test]
fn append_refuses_a_partial_last_entry_and_names_the_fix() {
    let dir = TempDir::new("partial");
    let path = five_entries(&dir);
    let intact = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":6,\"time_ms\":17");
    fs::write(&path, &bytes).unwrap();
    let mut log = AuditLog::open(&path).unwrap();

    let error = log
        .append("manager", AuditAction::Export, None, "sar")
        .unwrap_err();

    assert!(
        matches!(&error, AuditError::PartialTail { offset, .. } if *offset == intact),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .contains(&format!("truncate -s {intact} ")));
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(intact)
        .unwrap();
    log.append("manager", AuditAction::Export, None, "sar")
        .unwrap();
    assert_eq!(log.verify().unwrap().entries, 6);
}

#[test]
fn append_refuses_an_unreadable_last_entry() {
    let dir = TempDir::new("unreadable");
    let path = five_entries(&dir);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"not json\n");
    fs::write(&path, &bytes).unwrap();
    let mut log = AuditLog::open(&path).unwrap();

    let error = log
        .append("manager", AuditAction::Export, None, "sar")
        .unwrap_err();

    assert!(
        matches!(error, AuditError::UnreadableTail { .. }),
        "{error:?}"
    );
}

/// Which line (1-based) holds byte `index` of `bytes`.
fn line_of(bytes: &[u8], index: usize) -> u64 {
    bytes[..index].iter().filter(|b| **b == b'\n').count() as u64 + 1
}

/// The bytes of [`five_entries`], made once for every proptest case.
fn reference_log() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = TempDir::new("reference");
        fs::read(five_entries(&dir)).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_changed_byte_is_found_at_or_before_its_line(
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let mut bytes = reference_log().to_vec();
        let index = position.index(bytes.len());
        prop_assume!(bytes[index] != replacement);
        bytes[index] = replacement;
        let dir = TempDir::new("proptest");
        let path = dir.join("audit.log");
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();

        let result = AuditLog::open(&path).unwrap().verify();

        match result {
            Err(AuditError::BrokenLink { line, .. }) => {
                prop_assert!(line <= line_of(&bytes, index));
            }
            other => prop_assert!(false, "byte {index} changed, verify gave {other:?}"),
        }
    }
}
