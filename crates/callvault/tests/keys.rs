//! `callvault keys` and how the daemon treats its key file.

mod support;

use std::os::unix::fs::PermissionsExt as _;

use support::callvault::{callvault_command, Callvault};
use support::config::TestConfig;
use support::temp::TempDir;

fn output_text(output: &std::process::Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text
}

/// A configuration on free ports whose key file does not exist yet.
fn config_without_key(dir: &TempDir) -> (TestConfig, String) {
    let config = TestConfig::on_free_ports(dir);
    let path = dir.write("callvault.toml", &config.to_toml());
    (config, path.to_str().expect("UTF-8 temp path").to_owned())
}

#[test]
fn keys_init_creates_a_private_key_file_once_and_audits_it() {
    let dir = TempDir::new("keys-init");
    let (config, path) = config_without_key(&dir);
    let init = ["keys", "init", "--config", &path, "--operator", "Dr Patel"];

    let first = callvault_command(&init);
    assert!(first.status.success(), "{}", output_text(&first));
    assert!(output_text(&first).contains("created master key 00000001"));
    let key_file = config.data_dir.join("master.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let second = callvault_command(&init);
    assert!(
        !second.status.success(),
        "a second init must not replace the key"
    );
    assert_eq!(
        output_text(&second).lines().count(),
        1,
        "{}",
        output_text(&second)
    );

    let audit = std::fs::read_to_string(config.data_dir.join("audit.log")).unwrap();
    assert!(
        audit.contains("\"key-init\"") && audit.contains("Dr Patel"),
        "{audit}"
    );
}

#[test]
fn keys_rotate_adds_a_current_key_and_needs_a_reason() {
    let dir = TempDir::new("keys-rotate");
    let config = TestConfig::on_free_ports(&dir);
    let path = config.write(&dir);
    let path = path.to_str().unwrap();

    let without_reason = callvault_command(&["keys", "rotate", "--config", path]);
    assert!(!without_reason.status.success());

    let rotate = [
        "keys",
        "rotate",
        "--config",
        path,
        "--reason",
        "annual rotation",
        "--operator",
        "GM",
    ];
    let rotated = callvault_command(&rotate);
    assert!(rotated.status.success(), "{}", output_text(&rotated));
    assert!(output_text(&rotated).contains("master key 00000002"));
    let audit = std::fs::read_to_string(config.data_dir.join("audit.log")).unwrap();
    assert!(
        audit.contains("\"key-rotate\"") && audit.contains("annual rotation"),
        "{audit}"
    );
}

#[test]
fn daemon_refuses_a_key_file_others_can_read() {
    let dir = TempDir::new("keys-mode");
    let config = TestConfig::on_free_ports(&dir);
    let path = config.write(&dir);
    let key_file = config.data_dir.join("master.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut daemon = Callvault::spawn(&["run", "--config", path.to_str().unwrap()], dir.path());
    let status = daemon.wait_for_exit(support::STOP_TIMEOUT);
    assert!(!status.success());
    let output = daemon.output();
    assert!(
        output.contains("master.key") && output.contains("chmod 600"),
        "{output}"
    );
}

#[test]
fn daemon_without_a_key_file_says_how_to_make_one() {
    let dir = TempDir::new("keys-missing");
    let (_, path) = config_without_key(&dir);
    let mut daemon = Callvault::spawn(&["run", "--config", &path], dir.path());
    let status = daemon.wait_for_exit(support::STOP_TIMEOUT);
    assert!(!status.success());
    let output = daemon.output();
    assert!(output.contains("callvault keys init"), "{output}");
}
