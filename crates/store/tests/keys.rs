//! The key file, systemd credentials, rotation and unwrapping through a keyring.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use callvault_store::keys::{DataKey, KeyError, KeyId, Keyring, MasterKey};

/// A directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let count = COUNT.fetch_add(1, Ordering::Relaxed);
        let name = format!("callvault-keys-{label}-{}-{count}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` with `mode` and returns its path.
    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.join(name);
        fs::write(&path, text).unwrap();
        set_mode(&path, mode);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

#[test]
fn init_creates_a_private_file_with_one_key() {
    let dir = TempDir::new("init");
    let path = dir.join("master.key");

    let keyring = Keyring::init(&path).unwrap();

    assert_eq!(mode(&path), 0o600);
    assert_eq!(keyring.ids(), vec![KeyId(1)]);
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "callvault-keys 1");
    assert_eq!(lines.len(), 2);
    let (id, key) = lines[1].split_once(' ').unwrap();
    assert_eq!(id, "00000001");
    assert_eq!(key.len(), 64);
    assert!(key
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(text.ends_with('\n'));
}

#[test]
fn init_refuses_to_overwrite_an_existing_file() {
    let dir = TempDir::new("init-exists");
    let path = dir.join("master.key");
    Keyring::init(&path).unwrap();
    let before = fs::read(&path).unwrap();

    let error = Keyring::init(&path).unwrap_err();

    assert!(
        matches!(&error, KeyError::Exists(p) if p == &path),
        "{error:?}"
    );
    assert!(error.to_string().contains("already exists"));
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn a_loaded_key_file_opens_what_init_wrapped() {
    let dir = TempDir::new("load");
    let path = dir.join("master.key");
    let created = Keyring::init(&path).unwrap();
    let data = DataKey::generate().unwrap();
    let wrapped = created.current().wrap(&data, b"header").unwrap();

    let loaded = Keyring::load(&path).unwrap();

    assert_eq!(loaded.ids(), created.ids());
    assert!(loaded.unwrap(&wrapped, b"header").is_ok());
}

#[test]
fn load_refuses_a_file_others_can_access() {
    let dir = TempDir::new("mode");
    let text = format!("callvault-keys 1\n00000001 {KEY_A}\n");
    for refused in [0o640, 0o644, 0o604, 0o660, 0o700 | 0o001] {
        let path = dir.write("master.key", &text, refused);

        let error = Keyring::load(&path).unwrap_err();

        match &error {
            KeyError::Permissions { path: p, mode } => {
                assert_eq!(p, &path);
                assert_eq!(*mode, refused);
            }
            other => panic!("mode {refused:o}: expected Permissions, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains(&format!("{refused:04o}")), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
    }
    for accepted in [0o600, 0o400] {
        let path = dir.write("master.key", &text, accepted);
        assert!(Keyring::load(&path).is_ok(), "mode {accepted:o} refused");
    }
}

#[test]
fn malformed_key_files_name_the_line_at_fault() {
    let good = format!("00000001 {KEY_A}");
    let cases: Vec<(String, usize)> = vec![
        (String::new(), 1),
        ("callvault-keys 2\n".into(), 1),
        (format!("callvault-keys 1\r\n{good}\n"), 1),
        ("callvault-keys 1\n".into(), 2),
        (format!("callvault-keys 1\n0000001 {KEY_A}\n"), 2),
        (format!("callvault-keys 1\n0000000g {KEY_A}\n"), 2),
        (format!("callvault-keys 1\n00000001 {}\n", &KEY_A[..62]), 2),
        (format!("callvault-keys 1\n00000001  {KEY_A}\n"), 2),
        (
            format!("callvault-keys 1\n00000001 {}\n", "0".repeat(64)),
            2,
        ),
        (format!("callvault-keys 1\n{good}\n00000001 {KEY_B}\n"), 3),
        (format!("callvault-keys 1\n{good}\n\n00000002 {KEY_B}\n"), 3),
        (
            format!("callvault-keys 1\n{good}\n00000002 {}x\n", &KEY_B[..63]),
            3,
        ),
        (format!("callvault-keys 1\n{good}\n\n"), 3),
    ];
    let dir = TempDir::new("malformed");
    for (text, expected_line) in cases {
        let path = dir.write("master.key", &text, 0o600);

        let error = Keyring::load(&path).unwrap_err();

        match &error {
            KeyError::Malformed { path: p, line, .. } => {
                assert_eq!(p, &path);
                assert_eq!(*line, expected_line, "{text:?}: {error}");
            }
            other => panic!("{text:?}: expected Malformed, got {other:?}"),
        }
        assert!(
            !error.to_string().contains(KEY_A),
            "key bytes in the message"
        );
    }
}

#[test]
fn the_last_line_is_the_current_key() {
    let dir = TempDir::new("current");
    let text = format!("callvault-keys 1\n00000003 {KEY_A}\n0000000A {KEY_B}\n");
    let path = dir.write("master.key", &text, 0o600);

    let keyring = Keyring::load(&path).unwrap();

    assert_eq!(keyring.ids(), vec![KeyId(3), KeyId(10)]);
    assert_eq!(keyring.current().id(), KeyId(10));
    assert!(keyring.get(KeyId(3)).is_some());
    assert!(keyring.get(KeyId(4)).is_none());
}

#[test]
fn rotation_adds_a_current_key_and_old_recordings_still_open() {
    let dir = TempDir::new("rotate");
    let path = dir.join("master.key");
    let mut keyring = Keyring::init(&path).unwrap();
    let old = keyring
        .current()
        .wrap(&DataKey::generate().unwrap(), b"old")
        .unwrap();

    let new_id = keyring.rotate(&path).unwrap();

    assert_eq!(new_id, KeyId(2));
    assert_eq!(keyring.ids(), vec![KeyId(1), KeyId(2)]);
    assert_eq!(keyring.current().id(), KeyId(2));
    assert_eq!(mode(&path), 0o600);
    let reloaded = Keyring::load(&path).unwrap();
    assert_eq!(reloaded.ids(), vec![KeyId(1), KeyId(2)]);
    assert!(keyring.unwrap(&old, b"old").is_ok());
    assert!(reloaded.unwrap(&old, b"old").is_ok());
    let new = reloaded
        .current()
        .wrap(&DataKey::generate().unwrap(), b"new")
        .unwrap();
    assert_eq!(new.key_id, KeyId(2));
    assert!(keyring.unwrap(&new, b"new").is_ok());
    let names: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec!["master.key"],
        "a temporary file was left behind"
    );
}

#[test]
fn rotation_refuses_a_key_file_changed_since_loading() {
    let dir = TempDir::new("rotate-changed");
    let path = dir.join("master.key");
    Keyring::init(&path).unwrap();
    let mut stale = Keyring::load(&path).unwrap();
    let mut fresh = Keyring::load(&path).unwrap();
    fresh.rotate(&path).unwrap();
    let after_fresh = fs::read(&path).unwrap();

    let error = stale.rotate(&path).unwrap_err();

    assert!(matches!(error, KeyError::Changed { .. }), "{error:?}");
    assert_eq!(fs::read(&path).unwrap(), after_fresh);
    assert_eq!(stale.ids(), vec![KeyId(1)]);
}

#[test]
fn rotation_refuses_a_key_file_others_can_access() {
    let dir = TempDir::new("rotate-mode");
    let path = dir.join("master.key");
    let mut keyring = Keyring::init(&path).unwrap();
    set_mode(&path, 0o644);

    let error = keyring.rotate(&path).unwrap_err();

    assert!(matches!(error, KeyError::Permissions { .. }), "{error:?}");
    assert_eq!(keyring.ids(), vec![KeyId(1)]);
}

#[test]
fn rewrap_moves_a_recording_to_the_current_key() {
    let dir = TempDir::new("rewrap");
    let path = dir.join("master.key");
    let mut keyring = Keyring::init(&path).unwrap();
    let old = keyring
        .current()
        .wrap(&DataKey::generate().unwrap(), b"key 1")
        .unwrap();
    keyring.rotate(&path).unwrap();

    let new = keyring.rewrap(&old, b"key 1", b"key 2").unwrap();

    assert_eq!(new.key_id, KeyId(2));
    assert!(keyring.unwrap(&new, b"key 2").is_ok());
    assert!(keyring.unwrap(&new, b"key 1").is_err());
}

#[test]
fn unwrap_names_unknown_wrong_and_shredded_keys() {
    let keyring = Keyring::generate().unwrap();
    let data = DataKey::generate().unwrap();

    let foreign_id = MasterKey::generate(KeyId(9))
        .unwrap()
        .wrap(&data, b"h")
        .unwrap();
    assert!(matches!(
        keyring.unwrap(&foreign_id, b"h"),
        Err(KeyError::UnknownKey(KeyId(9)))
    ));

    let same_id_other_key = Keyring::generate()
        .unwrap()
        .current()
        .wrap(&data, b"h")
        .unwrap();
    assert!(matches!(
        keyring.unwrap(&same_id_other_key, b"h"),
        Err(KeyError::WrongKey(KeyId(1)))
    ));

    let mut shredded = keyring.current().wrap(&data, b"h").unwrap();
    assert!(keyring.unwrap(&shredded, b"h").is_ok());
    shredded.shred();
    assert!(shredded.is_shredded());
    assert!(matches!(
        keyring.unwrap(&shredded, b"h"),
        Err(KeyError::Shredded)
    ));

    let mut shredded_foreign = foreign_id.clone();
    shredded_foreign.shred();
    assert!(matches!(
        keyring.unwrap(&shredded_foreign, b"h"),
        Err(KeyError::Shredded)
    ));
}

#[test]
fn debug_output_never_holds_key_bytes() {
    let dir = TempDir::new("debug");
    let path = dir.write(
        "master.key",
        &format!("callvault-keys 1\n00000001 {KEY_A}\n"),
        0o600,
    );
    let keyring = Keyring::load(&path).unwrap();

    let text = format!("{keyring:?} {:?}", keyring.current());

    assert!(!text.contains(KEY_A) && !text.contains("0x11") && !text.contains("17, 34"));
    assert!(text.contains("KeyId(1)"));
}

#[test]
fn a_credential_is_read_whatever_its_mode() {
    let dir = TempDir::new("credential");
    let text = format!("callvault-keys 1\n00000001 {KEY_A}\n00000002 {KEY_B}\n");
    dir.write("master.key", &text, 0o444);

    let keyring = Keyring::from_credential_in(&dir.0, "master.key").unwrap();

    assert_eq!(keyring.ids(), vec![KeyId(1), KeyId(2)]);
}

#[test]
fn credential_errors_name_the_problem() {
    let dir = TempDir::new("credential-errors");
    dir.write("broken.key", "callvault-keys 1\n", 0o400);

    let missing = Keyring::from_credential_in(&dir.0, "master.key").unwrap_err();
    assert!(matches!(missing, KeyError::Io { .. }), "{missing:?}");
    assert!(missing.to_string().contains("master.key"));

    let broken = Keyring::from_credential_in(&dir.0, "broken.key").unwrap_err();
    assert!(
        matches!(broken, KeyError::Malformed { line: 2, .. }),
        "{broken:?}"
    );

    let escaping = Keyring::from_credential_in(&dir.0, "../master.key").unwrap_err();
    assert!(
        matches!(escaping, KeyError::InvalidCredentialName(_)),
        "{escaping:?}"
    );
}

/// The only test that touches `CREDENTIALS_DIRECTORY`: the environment is
/// shared by every test thread.
#[test]
fn from_credential_reads_the_directory_systemd_names() {
    let dir = TempDir::new("credential-env");
    dir.write(
        "master.key",
        &format!("callvault-keys 1\n00000005 {KEY_A}\n"),
        0o400,
    );

    std::env::remove_var("CREDENTIALS_DIRECTORY");
    let unset = Keyring::from_credential("master.key").unwrap_err();
    std::env::set_var("CREDENTIALS_DIRECTORY", &dir.0);
    let loaded = Keyring::from_credential("master.key");
    std::env::remove_var("CREDENTIALS_DIRECTORY");

    assert!(
        matches!(unset, KeyError::NoCredentialsDirectory),
        "{unset:?}"
    );
    assert_eq!(loaded.unwrap().ids(), vec![KeyId(5)]);
}
