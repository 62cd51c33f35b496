//! The opt-out list file: round trips, locking updates, and refusals.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use callvault_store::number::{normalise, CountryCode};
use callvault_store::opt_out::{OptOutError, OptOutList};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("callvault-opt-out-{name}-{}", std::process::id()));
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

#[test]
fn a_missing_list_is_empty_and_updates_round_trip_privately() {
    let dir = TempDir::new("round-trip");
    let path = dir.0.join("opt-out.json");
    assert!(OptOutList::load(&path).unwrap().is_empty());
    let number = normalise("07700 900123", CountryCode::UK).unwrap();

    let added = OptOutList::update(&path, |list| list.add(number.clone(), 42)).unwrap();
    let again = OptOutList::update(&path, |list| list.add(number.clone(), 43)).unwrap();
    assert!(added && !again, "a number is listed once");
    let list = OptOutList::load(&path).unwrap();
    assert!(list.contains(&number));
    assert_eq!(list.iter().next().unwrap().1.since_ms, 42);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let threads: Vec<_> = (0..8)
        .map(|n| {
            let path = path.clone();
            std::thread::spawn(move || {
                let other = normalise(&format!("0770090010{n}"), CountryCode::UK).unwrap();
                OptOutList::update(&path, |list| list.add(other, 0)).unwrap()
            })
        })
        .collect();
    assert!(threads.into_iter().all(|thread| thread.join().unwrap()));
    assert_eq!(
        OptOutList::load(&path).unwrap().len(),
        9,
        "no change was lost"
    );
}

#[test]
fn a_list_others_can_read_or_callvault_did_not_write_is_refused() {
    let dir = TempDir::new("refused");
    let path = dir.0.join("opt-out.json");
    std::fs::write(&path, r#"{"version":1,"numbers":{}}"#).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        OptOutList::load(&path),
        Err(OptOutError::Permissions { .. })
    ));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for text in [
        r#"{"version":2,"numbers":{}}"#,
        "[]",
        r#"{"version":1,"numbers":{"0770":{"since_ms":0}}}"#,
    ] {
        std::fs::write(&path, text).unwrap();
        let error = OptOutList::load(&path).unwrap_err();
        assert!(matches!(error, OptOutError::Invalid { .. }), "{text}");
        assert!(!error.to_string().contains("0770"), "{error}");
    }
}
