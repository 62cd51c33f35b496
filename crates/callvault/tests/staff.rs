//! The staff commands, run through the real binary on a data directory made by
//! real calls: SIPp calls through callvault, recorded as WAV and as Ogg Opus.
//!
//! The calls are recorded once per test process into a template data directory;
//! each test works on a copy of it, with the daemon running (the admin socket
//! path) or stopped (the command opens the data directory itself).

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "a failed unwrap is a failed test, and the export figures are its report"
)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use callvault_store::file::{read_recording, RecordingWriter, WriterOptions};
use callvault_store::keys::Keyring;
use callvault_store::{Layout, RecordingMetadata};
use serde_json::Value;
use support::callvault::{callvault_command, Callvault};
use support::config::TestConfig;
use support::sipp::Sipp;
use support::temp::TempDir;

/// The external numbers of the recorded calls, as SIPp dials or presents them.
const OUTBOUND_WAV: &str = "07700900123";
const OUTBOUND_OPUS: &str = "01632960999";
const INBOUND_CALLER: &str = "01632960123";
const PRACTICE_EXTENSION: &str = "205";
/// The PBX extension that places the outbound calls (`uac_pcmu.xml`'s From).
const CALLING_EXTENSION: &str = "201";

/// How long the recorder may take to finish and transcode the recordings.
const RECORDING_TIMEOUT: Duration = Duration::from_secs(60);

/// Milliseconds in 40 months of 31 days: past the 36-month retention.
const FORTY_MONTHS_MS: i64 = 40 * 31 * 86_400_000;

/// A copy of the template data directory with a config of its own.
struct Practice {
    dir: TempDir,
    config: TestConfig,
    path: String,
}

impl Practice {
    fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let config = TestConfig::on_free_ports(&dir);
        copy_dir(&template().join("data"), &config.data_dir);
        let path = config.write(&dir).to_str().unwrap().to_owned();
        Self { dir, config, path }
    }

    fn start(&self) -> Callvault {
        Callvault::start(&self.config, &self.dir)
    }

    /// Runs `callvault ARGS --config ... --operator "Practice Manager"`.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--config", &self.path]);
        if takes_operator(args) {
            all.extend(["--operator", "Practice Manager"]);
        }
        callvault_command(&all)
    }

    /// Runs a command that must succeed, and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?} failed:\n{}",
            text(&output)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail with one `error:` line, and returns that line.
    fn fails(&self, args: &[&str]) -> String {
        assert_one_error_line(args, &self.run(args))
    }

    fn calls(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["calls"];
        all.extend(args);
        all.extend(["--json", "--reason", "test query"]);
        let json: Value = serde_json::from_str(&self.ok(&all)).unwrap();
        json.as_array().unwrap().clone()
    }

    /// The id of the one call with `field` equal to `value`.
    fn id_where(&self, field: &str, value: &str) -> String {
        let calls = self.calls(&["list"]);
        let found: Vec<&Value> = calls.iter().filter(|c| c[field] == value).collect();
        assert_eq!(found.len(), 1, "{field}={value} in {calls:#?}");
        found[0]["id"].as_str().unwrap().to_owned()
    }

    fn audit_log(&self) -> String {
        fs::read_to_string(self.config.data_dir.join("audit.log")).unwrap()
    }

    fn recording_file(&self, id: &str) -> PathBuf {
        Layout::new(&self.config.data_dir)
            .recordings()
            .join(format!("{id}.cvr"))
    }
}

fn takes_operator(args: &[&str]) -> bool {
    let reads_only = ["verify", "audit"].contains(&args[0]) || args.get(1) == Some(&"verify");
    !reads_only
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_one_error_line(args: &[&str], output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{args:?} succeeded:\n{}",
        text(output)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_owned()
}

/// The template data directory, recorded once per test process.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("staff-template");
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        record_template(&path);
        path
    })
}

/// Three calls: outbound with speech as WAV, inbound as WAV, outbound with
/// speech as Ogg Opus.
fn record_template(path: &Path) {
    let dir = TempDir::new("staff-template");
    let mut config = TestConfig::on_free_ports(&dir);
    config.data_dir = path.join("data");
    config.format = Some("wav".to_owned());
    let callvault = Callvault::start(&config, &dir);
    speech_call(&dir, &config, OUTBOUND_WAV);
    inbound_call(&dir, &config);
    wait_for_recordings(&config, &["audio/wav", "audio/wav"]);
    stop(callvault);

    config.format = Some("opus".to_owned());
    let callvault = Callvault::start(&config, &dir);
    speech_call(&dir, &config, OUTBOUND_OPUS);
    wait_for_recordings(&config, &["audio/ogg", "audio/wav", "audio/wav"]);
    stop(callvault);
}

fn stop(mut callvault: Callvault) {
    callvault.signal("TERM");
    assert!(callvault.wait_for_exit(support::STOP_TIMEOUT).success());
}

/// The PBX's extension 201 calls `number` out; both sides play 3 s of speech.
fn speech_call(dir: &TempDir, config: &TestConfig, number: &str) {
    let trunk = Sipp::uas("uas_pcmu.xml", config.trunk_peer).spawn(dir);
    let pbx = Sipp::uac("uac_pcmu.xml", config.pbx_peer, config.pbx_listen)
        .args(&["-s", number])
        .run(dir);
    pbx.assert_success();
    trunk.wait().assert_success();
}

/// `INBOUND_CALLER` rings the practice's `PRACTICE_EXTENSION` from the trunk.
fn inbound_call(dir: &TempDir, config: &TestConfig) {
    let pbx = Sipp::uas("flows/uas_answer.xml", config.pbx_peer)
        .args(&["-set", "rtp", "40000", "-set", "sdpver", "1"])
        .spawn(dir);
    let trunk = Sipp::uac("flows/uac_call.xml", config.trunk_peer, config.trunk_listen)
        .args(&["-s", PRACTICE_EXTENSION, "-set", "caller", INBOUND_CALLER])
        .args(&["-set", "rtp", "40002", "-set", "sdpver", "1", "-d", "1500"])
        .run(dir);
    trunk.assert_success();
    pbx.wait().assert_success();
}

/// Waits until the finished recordings have these media types, newest first.
fn wait_for_recordings(config: &TestConfig, media_types: &[&str]) {
    let keys = Keyring::load(&config.data_dir.join("master.key")).unwrap();
    let layout = Layout::new(&config.data_dir);
    let found = || -> Vec<RecordingMetadata> {
        let files = layout.finished_recordings().unwrap();
        let mut metas: Vec<RecordingMetadata> = files
            .iter()
            .filter_map(|file| callvault_store::file::read_metadata(file, &keys).ok())
            .collect();
        metas.sort_by_key(|meta| std::cmp::Reverse(meta.start_ms));
        metas
    };
    let done = support::wait_until(RECORDING_TIMEOUT, || {
        let types: Vec<String> = found().into_iter().map(|m| m.media_type).collect();
        types == media_types
    });
    assert!(done, "recordings: {:#?}", found());
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Today's date in UTC, and the days either side, as `YYYY-MM-DD`.
fn days_around_today() -> (String, String, String) {
    let now = callvault_store::file::unix_ms_now();
    let day = callvault_store::retention::utc_day;
    (day(now - 86_400_000), day(now), day(now + 86_400_000))
}

fn ids(calls: &[Value]) -> Vec<&str> {
    calls
        .iter()
        .map(|call| call["id"].as_str().unwrap())
        .collect()
}

/// Every listing a member of staff makes, the same with the daemon up or down.
fn check_listings(practice: &Practice) {
    let calls = practice.calls(&["list"]);
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let fields = [
        "id",
        "start",
        "duration_seconds",
        "direction",
        "caller",
        "callee",
    ];
    for call in &calls {
        for field in fields.iter().chain(&["extension", "status"]) {
            assert!(call.get(field).is_some(), "no {field} in {call}");
        }
        assert_eq!(call["status"], "complete", "{call}");
    }

    let by_number = practice.calls(&["search", "--number", "+44 (0)7700 900123"]);
    assert_eq!(ids(&by_number), [practice.id_where("callee", OUTBOUND_WAV)]);
    let by_number = practice.calls(&["search", "--number", "0044 1632 960123"]);
    assert_eq!(
        ids(&by_number),
        [practice.id_where("caller", INBOUND_CALLER)]
    );
    let by_extension = practice.calls(&["search", "--extension", CALLING_EXTENSION]);
    let outbound = practice.calls(&["list", "--direction", "outbound"]);
    assert_eq!(ids(&by_extension), ids(&outbound));
    assert_eq!(outbound.len(), 2);
    let inbound = practice.calls(&["list", "--direction", "inbound"]);
    assert_eq!(ids(&inbound), [practice.id_where("caller", INBOUND_CALLER)]);
    assert_eq!(practice.calls(&["list", "--status", "complete"]).len(), 3);
    assert!(practice.calls(&["list", "--status", "partial"]).is_empty());

    let (yesterday, today, tomorrow) = days_around_today();
    assert_eq!(
        practice
            .calls(&["list", "--from", &today, "--to", &today])
            .len(),
        3
    );
    assert!(practice.calls(&["list", "--from", &tomorrow]).is_empty());
    assert!(practice.calls(&["list", "--to", &yesterday]).is_empty());

    let table = practice.ok(&["calls", "list", "--reason", "weekly check"]);
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    let id = practice.id_where("callee", OUTBOUND_WAV);
    let shown = practice.ok(&["calls", "show", &id, "--reason", "complaint 17"]);
    assert!(shown.contains(&format!("id:           {id}")), "{shown}");
    assert!(shown.contains("callee:       07700900123"), "{shown}");
}

#[test]
fn calls_are_listed_and_searched_with_the_daemon_running_and_stopped() {
    let practice = Practice::new("staff-list");
    check_listings(&practice);
    let daemon = practice.start();
    check_listings(&practice);
    drop(daemon);

    let audit = practice.audit_log();
    let searches: Vec<&str> = audit.lines().filter(|l| l.contains("\"search\"")).collect();
    assert!(searches.len() >= 30, "{audit}");
    assert!(searches.iter().all(|l| l.contains("Practice Manager")));
    assert!(audit.contains("number=+447700900123"), "{audit}");
    assert!(audit.contains("complaint 17"), "{audit}");
}

/// The sample rate, channels and seconds of a WAV whose header states its sizes.
fn exact_wav(bytes: &[u8]) -> (u32, u16, f64) {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..16], b"WAVEfmt ");
    assert_eq!(&bytes[36..40], b"data");
    let data = u32_at(40) as usize;
    assert_eq!(data, bytes.len() - 44, "the data size is exact");
    assert_eq!(
        u32_at(4) as usize,
        bytes.len() - 8,
        "the RIFF size is exact"
    );
    let rate = u32_at(24);
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    let seconds = data as f64 / f64::from(rate) / f64::from(channels) / 2.0;
    (rate, channels, seconds)
}

fn assert_opusinfo_accepts(path: &Path) {
    let output = Command::new("opusinfo").arg(path).output().unwrap();
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(
        !report.contains("WARNING") && !report.contains("ERROR"),
        "{report}"
    );
}

#[test]
fn export_writes_wav_and_opus_a_player_accepts_and_never_overwrites() {
    let practice = Practice::new("staff-export");
    let _daemon = practice.start();
    let out = |name: &str| practice.dir.path().join(name);
    for (callee, name) in [(OUTBOUND_WAV, "from-wav"), (OUTBOUND_OPUS, "from-opus")] {
        let call = practice.calls(&["search", "--number", callee]).remove(0);
        let id = call["id"].as_str().unwrap();
        let wav = out(&format!("{name}.wav"));
        let opus = out(&format!("{name}.opus"));
        let reason = "clinical record";
        let wav_arg = wav.to_str().unwrap();
        practice.ok(&[
            "export", id, "--format", "wav", "--out", wav_arg, "--reason", reason,
        ]);
        let opus_arg = opus.to_str().unwrap();
        practice.ok(&[
            "export", id, "--format", "opus", "--out", opus_arg, "--reason", reason,
        ]);

        let (rate, channels, seconds) = exact_wav(&fs::read(&wav).unwrap());
        let expected = call["duration_seconds"].as_f64().unwrap();
        eprintln!("{name}: {rate} Hz, {channels} channels, {seconds:.3} s (listed {expected} s)");
        assert_eq!((rate, channels), (8000, 2));
        assert!(
            (seconds - expected).abs() <= 0.6,
            "{seconds} s against {expected} s"
        );
        assert!(seconds > 2.5, "the call carried 3 s of speech: {seconds} s");
        assert_opusinfo_accepts(&opus);

        let before = fs::read(&wav).unwrap();
        let args = ["export", id, "--out", wav_arg, "--reason", reason];
        let error = practice.fails(&args);
        assert!(error.contains("already exists"), "{error}");
        assert_eq!(fs::read(&wav).unwrap(), before, "the file is untouched");
    }
    let audit = practice.audit_log();
    let exports = audit.lines().filter(|l| l.contains("\"export\"")).count();
    assert_eq!(exports, 4, "{audit}");
    assert!(audit.contains("clinical record"), "{audit}");
}

#[test]
fn sar_bundle_verifies_and_names_a_tampered_file_or_manifest() {
    let practice = Practice::new("staff-sar");
    let bundle = practice.dir.path().join("sar-bundle");
    let bundle_arg = bundle.to_str().unwrap();
    let args = ["sar", "--number", "+447700900123", "--out", bundle_arg];
    let made = practice.ok(&[&args[..], &["--reason", "SAR ref 2024-031"]].concat());
    assert!(made.contains("wrote 1 recordings"), "{made}");

    let index = fs::read_to_string(bundle.join("index.txt")).unwrap();
    assert!(index.contains("other party 07700900123"), "{index}");
    let custody = fs::read_to_string(bundle.join("custody.txt")).unwrap();
    assert!(
        custody.contains("made by:        Practice Manager"),
        "{custody}"
    );
    assert!(custody.contains("SAR ref 2024-031"), "{custody}");
    let audit = practice.audit_log();
    let entry = audit
        .lines()
        .find(|l| l.contains("subject-access-export"))
        .unwrap();
    let entry: Value = serde_json::from_str(entry).unwrap();
    assert!(
        custody.contains(entry["hash"].as_str().unwrap()),
        "{custody}"
    );

    let sums = Command::new("sha256sum")
        .args(["-c", "MANIFEST.sha256"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", text(&sums));
    let openssl = Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "public-key.pem",
            "-rawin",
        ])
        .args(["-in", "MANIFEST.sha256", "-sigfile", "MANIFEST.sha256.sig"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(openssl.status.success(), "{}", text(&openssl));

    let verified = practice.ok(&["sar", "verify", bundle_arg]);
    assert!(
        verified.contains("signed by this practice's key"),
        "{verified}"
    );
    let stranger = Practice::new("staff-sar-stranger");
    fs::copy(
        template_key_of_another_practice(&stranger),
        stranger.config.data_dir.join("master.key"),
    )
    .unwrap();
    let foreign = stranger.ok(&["sar", "verify", bundle_arg]);
    assert!(foreign.contains("NOT this practice's"), "{foreign}");

    let recording = fs::read_dir(bundle.join("recordings"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let name = format!("recordings/{}", recording.file_name().to_string_lossy());
    let original = fs::read(recording.path()).unwrap();
    let mut tampered = original.clone();
    tampered[1000] ^= 1;
    fs::write(recording.path(), &tampered).unwrap();
    let error = practice.fails(&["sar", "verify", bundle_arg]);
    assert!(
        error.contains(&name) && error.contains("SHA-256"),
        "{error}"
    );
    fs::write(recording.path(), &original).unwrap();

    let manifest = bundle.join("MANIFEST.sha256");
    let mut changed = fs::read_to_string(&manifest).unwrap();
    changed.push_str(&format!("{}  index.txt\n", "0".repeat(64)));
    fs::write(&manifest, changed).unwrap();
    let error = practice.fails(&["sar", "verify", bundle_arg]);
    assert!(
        error.contains("MANIFEST.sha256") && error.contains("signature"),
        "{error}"
    );
}

/// A key file of a practice other than the template's.
fn template_key_of_another_practice(practice: &Practice) -> PathBuf {
    let path = practice.dir.path().join("other.key");
    Keyring::init(&path).unwrap();
    path
}

/// Moves every recording 40 months into the past, as if it were that old.
fn age_recordings(practice: &Practice) {
    let keys = Keyring::load(&practice.config.data_dir.join("master.key")).unwrap();
    let layout = Layout::new(&practice.config.data_dir);
    for path in layout.finished_recordings().unwrap() {
        let recording = read_recording(&path, &keys).unwrap();
        fs::remove_file(&path).unwrap();
        let meta = recording.metadata;
        let old = RecordingMetadata {
            start_ms: meta.start_ms - FORTY_MONTHS_MS,
            end_ms: meta.end_ms.map(|end| end - FORTY_MONTHS_MS),
            ..meta
        };
        let options = WriterOptions::default();
        let mut writer =
            RecordingWriter::create(&layout.recordings(), &old, keys.current(), options).unwrap();
        writer
            .write_audio(&recording.audio, Duration::from_secs(1))
            .unwrap();
        writer.finish(&old).unwrap();
    }
    practice.ok(&["reindex", "--reason", "test: recordings aged"]);
}

#[test]
fn a_held_recording_survives_purge_until_released() {
    let practice = Practice::new("staff-purge");
    age_recordings(&practice);
    // With the daemon stopped, the commands open the data directory themselves.
    let held = practice.id_where("callee", OUTBOUND_WAV);
    practice.ok(&[
        "hold",
        &held,
        "--reason",
        "complaint 17 under investigation",
    ]);
    let listed = practice.calls(&["list"]);
    let held_call = listed.iter().find(|c| c["id"] == held.as_str()).unwrap();
    assert_eq!(held_call["held"], true);
    let error = practice.fails(&["hold", &held, "--reason", "again"]);
    assert!(error.contains("already on legal hold"), "{error}");

    let dry = practice.ok(&["purge", "--dry-run", "--reason", "monthly retention"]);
    assert_eq!(
        dry.lines()
            .filter(|l| l.starts_with("would delete"))
            .count(),
        2,
        "{dry}"
    );
    assert!(dry.contains(&format!("kept (legal hold) {held}")), "{dry}");
    assert_eq!(
        practice.calls(&["list"]).len(),
        3,
        "a dry run deletes nothing"
    );

    // The daemon applies retention as it starts: the held recording stays.
    let mut daemon = practice.start();
    daemon.wait_for_log("retention run", Duration::from_secs(20));
    assert_eq!(ids(&practice.calls(&["list"])), [held.as_str()]);
    assert_eq!(
        Layout::new(&practice.config.data_dir)
            .finished_recordings()
            .unwrap()
            .len(),
        1
    );

    // Through the running daemon's socket.
    practice.ok(&["release", &held, "--reason", "complaint closed"]);
    let error = practice.fails(&["release", &held, "--reason", "again"]);
    assert!(error.contains("not on legal hold"), "{error}");
    let purged = practice.ok(&["purge", "--reason", "monthly retention"]);
    assert_eq!(
        purged.lines().filter(|l| l.starts_with("deleted")).count(),
        1,
        "{purged}"
    );
    assert!(practice.calls(&["list"]).is_empty());

    let audit = practice.audit_log();
    for action in ["\"hold\"", "\"release\"", "\"purge\""] {
        assert!(audit.contains(action), "no {action} in {audit}");
    }
    assert_eq!(
        audit.lines().filter(|l| l.contains("\"purge\"")).count(),
        3,
        "{audit}"
    );
    assert!(audit.contains("complaint closed"), "{audit}");
}

#[test]
fn verify_names_a_tampered_recording_and_audit_verify_a_broken_chain() {
    let practice = Practice::new("staff-verify");
    let verified = practice.ok(&["verify"]);
    assert!(
        verified.contains("recordings: 3 of 3 verified"),
        "{verified}"
    );
    let id = practice.id_where("callee", OUTBOUND_OPUS);
    let file = practice.recording_file(&id);
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&file, bytes).unwrap();
    let output = practice.run(&["verify"]);
    let error = assert_one_error_line(&["verify"], &output);
    assert!(error.contains("1 recording files failed"), "{error}");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains(&format!("FAILED {}", file.display())),
        "{report}"
    );

    let shown = practice.ok(&["audit", "show", "--last", "2"]);
    assert_eq!(shown.lines().count(), 2, "{shown}");
    let chain = practice.ok(&["audit", "verify"]);
    assert!(chain.contains("chain intact"), "{chain}");
    let log = practice.config.data_dir.join("audit.log");
    let edited = fs::read_to_string(&log)
        .unwrap()
        .replacen("test query", "test-query", 1);
    fs::write(&log, edited).unwrap();
    let error = practice.fails(&["audit", "verify"]);
    assert!(error.contains("entry"), "{error}");
}

#[test]
fn each_error_a_person_can_cause_is_one_line_and_a_failure() {
    let practice = Practice::new("staff-errors");
    let unknown = "0123456789abcdef0123456789abcdef";
    let reason = ["--reason", "test"];
    let cases: [(&[&str], &str); 7] = [
        (&["calls", "show", unknown], "no recording"),
        (&["calls", "show", "12345"], "not a recording id"),
        (
            &["calls", "search", "--number", "call me"],
            "not a phone number",
        ),
        (&["calls", "list", "--from", "1/2/2024"], "YYYY-MM-DD"),
        (&["calls", "search"], "--number or --extension"),
        (&["hold", unknown], "no recording"),
        (
            &["export", unknown, "--out", "/nonexistent/x.wav"],
            "no recording",
        ),
    ];
    for (args, expected) in cases {
        let error = practice.fails(&[args, &reason[..]].concat());
        assert!(error.contains(expected), "{args:?}: {error}");
    }
    let bundle = practice.dir.path().to_str().unwrap().to_owned();
    let sar = [
        "sar",
        "--number",
        "07700900123",
        "--out",
        &bundle,
        "--reason",
        "x",
    ];
    assert!(practice.fails(&sar).contains("already exists"));

    let _daemon = practice.start();
    let error = practice.fails(&["reindex", "--reason", "x"]);
    assert!(
        error.contains("daemon running on the data directory"),
        "{error}"
    );
    let data_dir = practice.config.data_dir.display().to_string();
    assert!(error.contains(&data_dir), "{error}");
    let second = callvault_command(&["run", "--config", &practice.path]);
    let error = assert_one_error_line(&["run"], &second);
    assert!(error.contains(&data_dir), "{error}");

    let wrong_key = practice.dir.path().join("wrong.key");
    Keyring::init(&wrong_key).unwrap();
    fs::copy(&wrong_key, practice.config.data_dir.join("master.key")).unwrap();
    let id = practice.id_where("callee", OUTBOUND_WAV);
    let out = practice.dir.path().join("x.wav");
    let args = [
        "export",
        &id,
        "--out",
        out.to_str().unwrap(),
        "--reason",
        "x",
    ];
    let error = practice.fails(&args);
    assert!(error.contains("wrong key"), "{error}");
    assert!(!out.exists());
}

/// A tmpfs of `kib` KiB mounted at a new directory under `dir`, unmounted when
/// dropped. The tests run as root (here and in CI); a mount that is refused
/// fails the test with the reason rather than skipping it.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &std::path::Path, kib: u32) -> Self {
        let path = dir.join("small-disk");
        fs::create_dir_all(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a {kib} KiB tmpfs at {} failed: these tests run as root",
            path.display()
        );
        Self { path }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

#[test]
fn an_export_onto_a_full_disk_fails_in_one_line_and_leaves_nothing_behind() {
    let practice = Practice::new("staff-full-disk");
    let disk = SmallDisk::mount(practice.dir.path(), 16);
    let id = practice.id_where("callee", OUTBOUND_WAV);
    let out = disk.path.join("call.wav");
    let out_arg = out.to_str().unwrap();
    let args = ["export", &id, "--format", "wav", "--out", out_arg];
    let output = practice.run(&[&args[..], &["--reason", "clinical record"]].concat());
    let error = assert_one_error_line(&args, &output);
    assert!(error.contains("No space left on device"), "{error}");
    let left: Vec<_> = fs::read_dir(&disk.path).unwrap().collect();
    assert!(left.is_empty(), "nothing half-written stays: {left:?}");
    let audit = practice.audit_log();
    assert!(
        !audit.lines().any(|l| l.contains("\"export\"")),
        "a failed export is not recorded as done: {audit}"
    );
}
