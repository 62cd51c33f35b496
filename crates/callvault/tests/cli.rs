//! The `callvault` binary's commands, run as a user would run them.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::callvault::{callvault_binary, callvault_command, Callvault};
use support::config::TestConfig;
use support::temp::TempDir;
use support::{STARTED_LINE, STARTUP_TIMEOUT, STOP_TIMEOUT};

/// Every TOML block of a Markdown file, in order.
fn toml_blocks(markdown: &Path) -> Vec<String> {
    let text = fs::read_to_string(markdown).expect("the documents with examples exist");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Every example configuration in the repository, as files.
fn example_configs(dir: &TempDir) -> Vec<PathBuf> {
    let root = support::workspace_root();
    let fixtures = root.join("fixtures/config");
    let mut paths: Vec<PathBuf> = fs::read_dir(&fixtures)
        .expect("fixtures/config exists")
        .map(|entry| entry.expect("fixtures/config is readable").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .collect();
    paths.push(root.join("crates/callvault/src/default.toml"));

    for document in ["README.md", "docs/configuration.md"] {
        for (index, block) in toml_blocks(&root.join(document)).into_iter().enumerate() {
            let name = format!("{}-{index}.toml", document.replace(['/', '.'], "-"));
            paths.push(dir.write(&name, &block));
        }
    }
    paths
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs check-config on a variant of a valid config; returns its error line.
fn check_config_error(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.write(name, text);
    let path = path.to_str().expect("temporary paths are UTF-8");
    let output = callvault_command(&["check-config", path]);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{name}: {error}");
    assert!(stdout(&output).is_empty(), "{name}: {}", stdout(&output));
    assert_eq!(error.lines().count(), 1, "{name}: not one line:\n{error}");
    error
}

fn valid_config(dir: &TempDir) -> String {
    TestConfig::on_free_ports(dir).to_toml()
}

#[test]
fn check_config_accepts_every_example_config() {
    let dir = TempDir::new("examples");
    let examples = example_configs(&dir);
    assert!(examples.len() >= 4, "too few examples found: {examples:?}");

    for path in examples {
        let output = callvault_command(&["check-config", path.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}: {}",
            path.display(),
            stderr(&output)
        );
        assert_eq!(stdout(&output), format!("{}: ok\n", path.display()));
    }
}

#[test]
fn check_config_accepts_the_file_given_with_config() {
    let dir = TempDir::new("config-flag");
    let path = dir.write("given.toml", &valid_config(&dir));
    let output = callvault_command(&["--config", path.to_str().unwrap(), "check-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("{}: ok\n", path.display()));
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = TempDir::new("unknown-key");
    let text = valid_config(&dir).replace("port_min", "port_minimum");
    let error = check_config_error(&dir, "unknown.toml", &text);
    assert!(
        error.contains("unknown.toml: media.port_minimum: unknown field"),
        "{error}"
    );
}

#[test]
fn check_config_names_key_and_reason_for_bad_values() {
    let dir = TempDir::new("bad-values");
    let valid = valid_config(&dir);
    let cases = [
        (
            "[media]\n",
            "[media]\nrtp_timeout_seconds = 0\n",
            "media.rtp_timeout_seconds: must be",
        ),
        (
            "[storage]\n",
            "[storage]\nformat = \"mp3\"\n",
            "storage.format: unknown variant `mp3`",
        ),
        (
            "[storage]\n",
            "[storage]\nchannels = \"quad\"\n",
            "storage.channels: unknown variant",
        ),
        (
            "[storage]\n",
            "[storage]\nretention_months = 240\n",
            "storage.retention_months: must",
        ),
        (
            "transport = \"udp\"",
            "transport = \"sctp\"",
            "pbx.transport: unknown variant",
        ),
        (
            "[log]\n",
            "[log]\nshow_numbers = \"yes\"\n",
            "log.show_numbers: invalid type",
        ),
    ];
    for (index, (from, to, expected)) in cases.into_iter().enumerate() {
        let text = valid.replacen(from, to, 1);
        assert_ne!(text, valid, "case {index} changed nothing");
        let error = check_config_error(&dir, &format!("case-{index}.toml"), &text);
        assert!(error.contains(expected), "case {index}: {error}");
    }

    let mut odd = TestConfig::on_free_ports(&dir);
    odd.media_port_min += 1;
    let error = check_config_error(&dir, "odd.toml", &odd.to_toml());
    assert!(error.contains("media.port_min: must be even"), "{error}");
}

#[test]
fn errors_are_one_line_even_with_backtraces_enabled() {
    let dir = TempDir::new("backtrace");
    let path = dir.write("broken.toml", "[pbx\nlisten = 1\n");
    let output = std::process::Command::new(callvault_binary())
        .args(["check-config", path.to_str().unwrap()])
        .env("RUST_BACKTRACE", "full")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .unwrap();
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.starts_with("error: ") && error.contains("line 1"),
        "{error}"
    );
}

#[test]
fn a_command_line_mistake_is_one_line_naming_what_is_wrong() {
    let cases: [(&[&str], &str); 3] = [
        (&["hold", "0123"], "--reason"),
        (&["calls", "list", "--frm", "2026-01-01"], "'--from'"),
        (&["frobnicate"], "'frobnicate'"),
    ];
    for (args, named) in cases {
        let output = callvault_command(args);
        let error = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {error}");
        assert_eq!(error.lines().count(), 1, "{args:?}: {error}");
        assert!(
            error.starts_with("error: ") && error.contains(named),
            "{error}"
        );
    }
    let help = callvault_command(&["--help"]);
    assert!(help.status.success() && stdout(&help).contains("Usage:"));
}

#[test]
fn check_config_reports_a_missing_file() {
    let dir = TempDir::new("missing");
    let path = dir.path().join("absent.toml");
    let output = callvault_command(&["check-config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("absent.toml: No such file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn run_refuses_a_bad_config_before_starting() {
    let dir = TempDir::new("run-bad");
    let text = valid_config(&dir).replacen("[media]\n", "[media]\ntap_queue_packets = 0\n", 1);
    let path = dir.write("bad.toml", &text);
    let output = callvault_command(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("media.tap_queue_packets: must be"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn run_on_the_embedded_default_stops_cleanly_on_sigterm() {
    let dir = TempDir::new("default-run");
    let mut callvault = Callvault::spawn(&["run"], dir.path());
    callvault.wait_for_log(STARTED_LINE, STARTUP_TIMEOUT);

    callvault.signal("TERM");
    let status = callvault.wait_for_exit(STOP_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", callvault.output());
    assert!(
        callvault.output().contains("shutdown requested"),
        "{}",
        callvault.output()
    );
    assert!(dir.path().join("callvault-data/state").is_dir());
}

#[test]
fn run_binds_both_sides_and_stops_cleanly_on_sigint() {
    let dir = TempDir::new("sigint");
    let config = TestConfig::on_free_ports(&dir);
    let mut callvault = Callvault::start(&config, &dir);

    callvault.signal("INT");
    assert_eq!(callvault.wait_for_exit(STOP_TIMEOUT).code(), Some(0));
    assert!(config.data_dir.join("state").is_dir());
}

#[test]
fn sighup_is_logged_and_keeps_the_daemon_running() {
    let dir = TempDir::new("sighup");
    let path = TestConfig::on_free_ports(&dir).write(&dir);
    let mut callvault = Callvault::spawn(&["run", "--config", path.to_str().unwrap()], dir.path());
    callvault.wait_for_log(STARTED_LINE, STARTUP_TIMEOUT);

    callvault.signal("HUP");
    callvault.wait_for_log("reload requested", STARTUP_TIMEOUT);
    assert!(callvault.is_running(), "{}", callvault.output());

    callvault.signal("TERM");
    assert_eq!(callvault.wait_for_exit(STOP_TIMEOUT).code(), Some(0));
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let dir = TempDir::new("json-log");
    let mut config = TestConfig::on_free_ports(&dir);
    config.log_format = "json".to_owned();
    let path = config.write(&dir);
    let mut callvault = Callvault::spawn(&["run", "--config", path.to_str().unwrap()], dir.path());
    callvault.wait_for_log(STARTED_LINE, STARTUP_TIMEOUT);
    callvault.signal("TERM");
    callvault.wait_for_exit(STOP_TIMEOUT);

    let output = callvault.output();
    let mut messages = Vec::new();
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        messages.extend(object["fields"]["message"].as_str().map(str::to_owned));
    }
    assert!(
        messages.iter().any(|message| message == STARTED_LINE),
        "{output}"
    );
}

#[test]
fn check_config_names_bad_policy_keys_without_repeating_numbers() {
    let dir = TempDir::new("bad-policy");
    let cases = [
        (
            "personal_ddis = [\"0123\"]",
            "policy.personal_ddis[0]: must be a full phone number",
        ),
        (
            "ddi_extensions = { \"01632960100\" = \"\" }",
            "policy.ddi_extensions.01632960100: must be an extension",
        ),
        (
            "identity_order = [\"via\"]",
            "policy.identity_order[0]: unknown variant `via`",
        ),
        (
            "identity_order = []",
            "policy.identity_order: must name at least one source",
        ),
        (
            "identity_header = \"X Extension\"",
            "policy.identity_header: must be a header name",
        ),
        (
            "directions = { sideways = \"record\" }",
            "policy.directions.sideways: unknown field `sideways`",
        ),
        (
            "default = \"maybe\"",
            "policy.default: unknown variant `maybe`",
        ),
    ];
    for (index, (line, expected)) in cases.into_iter().enumerate() {
        let mut config = TestConfig::on_free_ports(&dir);
        config.extra = format!("[policy]\n{line}\n");
        let error = check_config_error(&dir, &format!("policy-{index}.toml"), &config.to_toml());
        assert!(error.contains(expected), "case {index}: {error}");
    }
    let mut config = TestConfig::on_free_ports(&dir);
    config.extra = "[policy]\npersonal_ddis = [\"07700\"]\n".to_owned();
    let error = check_config_error(&dir, "policy-number.toml", &config.to_toml());
    assert!(
        !error.contains("07700"),
        "the number stays out of the message: {error}"
    );
}

#[test]
fn opt_out_commands_change_the_list_and_audit_each_change() {
    let dir = TempDir::new("opt-out-cli");
    let config = TestConfig::on_free_ports(&dir);
    let path = config.write(&dir);
    let path = path.to_str().expect("a UTF-8 path");
    let opt_out = |args: &[&str]| {
        let common = ["--config", path, "--operator", "Practice Manager"];
        callvault_command(&[&["opt-out"], args, &common[..]].concat())
    };

    let added = opt_out(&["add", "07700 900123", "--reason", "asked at reception"]);
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(
        stdout(&added).contains("+447700900123: added"),
        "{}",
        stdout(&added)
    );
    let again = opt_out(&["add", "+44 7700 900123", "--reason", "twice"]);
    assert!(!again.status.success());
    assert_eq!(stderr(&again).lines().count(), 1, "{}", stderr(&again));
    assert!(stderr(&again).contains("already on the opt-out list"));

    let listed = opt_out(&["list"]);
    assert!(
        stdout(&listed).starts_with("+447700900123  since 20"),
        "{}",
        stdout(&listed)
    );
    let list_file = config.data_dir.join("opt-out.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&list_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let removed = opt_out(&["remove", "00447700900123", "--reason", "changed her mind"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(stdout(&opt_out(&["list"])).contains("empty"));

    let audit = fs::read_to_string(config.data_dir.join("audit.log")).unwrap();
    for expected in [
        "\"opt-out-add\"",
        "\"opt-out-remove\"",
        "Practice Manager",
        "changed her mind",
    ] {
        assert!(audit.contains(expected), "{expected} in {audit}");
    }
    assert_eq!(audit.lines().count(), 3, "key init, add, remove: {audit}");
}

#[test]
fn opt_out_refuses_what_is_not_a_number_in_one_line() {
    let dir = TempDir::new("opt-out-bad");
    let path = TestConfig::on_free_ports(&dir).write(&dir);
    let path = path.to_str().expect("a UTF-8 path");
    for number in ["reception", "205", "07700"] {
        let args = [
            "opt-out",
            "add",
            number,
            "--reason",
            "r",
            "--config",
            path,
            "--operator",
            "GM",
        ];
        let output = callvault_command(&args);
        assert_eq!(output.status.code(), Some(1), "{number}");
        let error = stderr(&output);
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(error.contains("not a patient's phone number"), "{error}");
        assert!(
            !error.contains(number),
            "the input stays out of the message: {error}"
        );
    }
}

#[test]
fn sighup_reloads_the_policy_and_a_broken_config_keeps_the_rules_in_force() {
    let dir = TempDir::new("sighup-policy");
    let mut config = TestConfig::on_free_ports(&dir);
    config.extra = "[policy]\npersonal_extensions = [\"205\"]\n".to_owned();
    let path = config.write(&dir);
    let mut callvault = Callvault::spawn(&["run", "--config", path.to_str().unwrap()], dir.path());
    callvault.wait_for_log(STARTED_LINE, STARTUP_TIMEOUT);

    config.extra = "[policy]\npersonal_extensions = [\"205\", \"206\"]\n".to_owned();
    fs::write(&path, config.to_toml()).unwrap();
    callvault.signal("HUP");
    callvault.wait_for_log("recording policy reloaded", STARTUP_TIMEOUT);

    fs::write(
        &path,
        config
            .to_toml()
            .replace("[policy]", "[policy]\ndefault = \"maybe\""),
    )
    .unwrap();
    callvault.signal("HUP");
    callvault.wait_for_log("the rules in force stay", STARTUP_TIMEOUT);
    assert!(
        callvault.output().contains("policy.default"),
        "{}",
        callvault.output()
    );
    assert!(callvault.is_running(), "{}", callvault.output());
    callvault.signal("TERM");
    assert_eq!(callvault.wait_for_exit(STOP_TIMEOUT).code(), Some(0));
}

#[test]
fn check_config_reads_the_announcement_and_says_how_to_fix_it() {
    let dir = TempDir::new("announcement-config");
    let mut config = TestConfig::on_free_ports(&dir);
    let wav = dir.write("announcement.wav", "not a wav file");
    config.extra = format!("[policy]\nannouncement = \"{}\"\n", wav.display());
    let error = check_config_error(&dir, "announcement.toml", &config.to_toml());
    assert!(
        error.contains("policy.announcement") && error.contains("sox"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");

    config.extra = "[policy]\nannouncement = \"/nonexistent/announcement.wav\"\n".to_owned();
    let error = check_config_error(&dir, "missing.toml", &config.to_toml());
    assert!(
        error.contains("policy.announcement: reading /nonexistent"),
        "{error}"
    );
}
