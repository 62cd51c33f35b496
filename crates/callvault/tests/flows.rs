//! Call flows through the real `callvault` binary, driven by SIPp on both sides.
//!
//! Each test starts callvault on free loopback ports, a SIPp UAS where callvault expects
//! the callee's side (trunk or PBX) and a SIPp UAC where it expects the caller's, and
//! asserts that both SIPp scenarios complete: every message each side expects arrives,
//! in order, with what the scenario checks. The scenarios live in `fixtures/sipp/flows`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use callvault_store::{EventKind, Party, RecordingMetadata, RecordingStatus};
use support::callvault::Callvault;
use support::config::TestConfig;
use support::ports::{free_udp_address, Protocol};
use support::rtp::{audio_port_in_log, RtpCall, RtpPeer};
use support::sipp::{Sipp, SippOutcome, SippProcess};
use support::temp::TempDir;

/// Which side places the call.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// The PBX calls out through the trunk.
    Pbx,
    /// The provider's call comes in to the PBX.
    Trunk,
}

/// A call between two SIPp scenarios through one callvault.
struct Flow {
    dir: TempDir,
    config: TestConfig,
    callvault: Callvault,
}

impl Flow {
    fn start(name: &str) -> Self {
        Self::start_with(name, |_| {})
    }

    fn start_with(name: &str, adjust: impl FnOnce(&mut TestConfig)) -> Self {
        let dir = TempDir::new(name);
        let mut config = TestConfig::on_free_ports(&dir);
        adjust(&mut config);
        let callvault = Callvault::start(&config, &dir);
        Self {
            dir,
            config,
            callvault,
        }
    }

    /// The caller's and callee's SIP addresses and the address callvault takes the
    /// caller's INVITE on.
    fn addresses(&self, caller: Caller) -> (SocketAddr, SocketAddr, SocketAddr) {
        let c = &self.config;
        match caller {
            Caller::Pbx => (c.pbx_peer, c.trunk_peer, c.pbx_listen),
            Caller::Trunk => (c.trunk_peer, c.pbx_peer, c.trunk_listen),
        }
    }

    fn transports(&self, caller: Caller) -> (Protocol, Protocol) {
        let c = &self.config;
        match caller {
            Caller::Pbx => (c.pbx_transport, c.trunk_transport),
            Caller::Trunk => (c.trunk_transport, c.pbx_transport),
        }
    }

    /// Runs `uac` against `uas` and returns both outcomes once both have ended.
    fn call(&self, caller: Caller, uac: &str, uas: &str) -> (SippOutcome, SippOutcome) {
        self.call_for(Duration::from_secs(30), caller, uac, uas)
    }

    /// As `call`, for scenarios that take longer than SIPp's usual 30 seconds.
    fn call_for(
        &self,
        timeout: Duration,
        caller: Caller,
        uac: &str,
        uas: &str,
    ) -> (SippOutcome, SippOutcome) {
        let (from, to, entry) = self.addresses(caller);
        let (from_transport, to_transport) = self.transports(caller);
        let uas = Sipp::uas(&format!("flows/{uas}.xml"), to)
            .transport(to_transport)
            .timeout(timeout)
            .args(&["-set", "rtp", "40000", "-set", "sdpver", "1"])
            .spawn(&self.dir);
        let caller_args = ["-s", "07700900123", "-set", "caller", "205"];
        let uac = Sipp::uac(&format!("flows/{uac}.xml"), from, entry)
            .transport(from_transport)
            .timeout(timeout)
            .args(&caller_args)
            .args(&["-set", "rtp", "40002", "-set", "sdpver", "1", "-d", "500"])
            .run(&self.dir);
        (uac, uas.wait())
    }
}

/// Waits until `count` recordings are finished, and reads their metadata.
fn finished_recordings(flow: &Flow, count: usize) -> Vec<RecordingMetadata> {
    support::recordings::finished(&flow.config.data_dir, count)
}

/// Asserts that no recording was begun: no file at all, not even a `.part`.
fn assert_nothing_recorded(flow: &Flow) {
    let dir = flow.config.data_dir.join("recordings");
    let files: Vec<_> = std::fs::read_dir(dir)
        .expect("the recordings directory")
        .collect();
    assert!(files.is_empty(), "unexpected recordings: {files:?}");
}

/// The recording's length from its metadata, in seconds.
fn recorded_seconds(metadata: &RecordingMetadata) -> f64 {
    let end_ms = metadata.end_ms.expect("a finished recording has an end");
    (end_ms - metadata.start_ms) as f64 / 1000.0
}

fn assert_both_succeed(flow: &Flow, (uac, uas): &(SippOutcome, SippOutcome)) {
    assert!(
        uac.succeeded() && uas.succeeded(),
        "UAC:\n{}\nUAS:\n{}\ncallvault:\n{}",
        uac.report(),
        uas.report(),
        flow.callvault.output()
    );
}

#[test]
fn outbound_call_is_answered_and_hung_up_by_the_caller() {
    let flow = Flow::start("outbound-call");
    let outcomes = flow.call(Caller::Pbx, "uac_call", "uas_answer");
    assert_both_succeed(&flow, &outcomes);
    let (_, uas) = &outcomes;
    assert!(
        !uas.messages.contains(&flow.config.pbx_peer.to_string()),
        "the PBX's address leaked to the trunk"
    );
}

#[test]
fn inbound_call_is_answered_and_hung_up_by_the_caller() {
    let flow = Flow::start("inbound-call");
    let outcomes = flow.call(Caller::Trunk, "uac_call", "uas_answer");
    assert_both_succeed(&flow, &outcomes);
    let (_, pbx) = &outcomes;
    let trunk = flow.config.trunk_peer.to_string();
    assert!(
        !pbx.messages.contains(&trunk),
        "the provider's address leaked to the PBX"
    );
}

#[test]
fn bye_from_the_callee_reaches_the_caller() {
    let flow = Flow::start("callee-bye");
    for caller in [Caller::Pbx, Caller::Trunk] {
        let outcomes = flow.call(caller, "uac_wait_bye", "uas_send_bye");
        assert_both_succeed(&flow, &outcomes);
    }
}

#[test]
fn cancel_before_answer_reaches_the_callee() {
    let flow = Flow::start("cancel");
    for caller in [Caller::Pbx, Caller::Trunk] {
        let outcomes = flow.call(caller, "uac_cancel", "uas_ring_cancel");
        assert_both_succeed(&flow, &outcomes);
    }
    assert_nothing_recorded(&flow);
}

#[test]
fn early_media_is_recorded_when_configured_and_finished_on_cancel() {
    let flow = Flow::start_with("early-media-recorded", |config| config.early_media = true);
    let outcomes = flow.call(Caller::Pbx, "uac_cancel_early", "uas_early_cancel");
    assert_both_succeed(&flow, &outcomes);
    let recordings = finished_recordings(&flow, 1);
    let metadata = &recordings[0];
    assert_eq!(metadata.status, RecordingStatus::Complete);
    assert_eq!(
        metadata.end_reason.as_deref(),
        Some("cancelled before answer")
    );
    // The caller listened to the early media for 1.5 s before cancelling.
    let seconds = recorded_seconds(metadata);
    assert!((1.4..3.0).contains(&seconds), "recorded {seconds} s");
}

#[test]
fn early_media_recording_goes_on_through_the_answer_as_one_recording() {
    let flow = Flow::start_with("early-media-answered", |config| config.early_media = true);
    let outcomes = flow.call(Caller::Pbx, "uac_prack", "uas_prack");
    assert_both_succeed(&flow, &outcomes);
    let recordings = finished_recordings(&flow, 1);
    assert_eq!(recordings[0].status, RecordingStatus::Complete);
    assert_eq!(
        recordings[0].end_reason.as_deref(),
        Some("BYE from the practice")
    );
}

#[test]
fn early_media_is_not_recorded_by_default() {
    let flow = Flow::start("early-media-default");
    let outcomes = flow.call(Caller::Pbx, "uac_cancel_early", "uas_early_cancel");
    assert_both_succeed(&flow, &outcomes);
    assert_nothing_recorded(&flow);
}

#[test]
fn answer_crossing_a_cancel_is_acked_and_hung_up() {
    let flow = Flow::start("cancel-race");
    let outcomes = flow.call(Caller::Pbx, "uac_cancel", "uas_answer_despite_cancel");
    assert_both_succeed(&flow, &outcomes);
}

#[test]
fn busy_callee_is_reported_to_the_caller() {
    let flow = Flow::start("busy");
    for caller in [Caller::Pbx, Caller::Trunk] {
        let outcomes = flow.call(caller, "uac_rejected", "uas_busy");
        assert_both_succeed(&flow, &outcomes);
    }
    assert_nothing_recorded(&flow);
}

#[test]
fn hold_and_resume_by_reinvite_pass_through() {
    let flow = Flow::start("hold");
    let outcomes = flow.call(Caller::Pbx, "uac_hold", "uas_hold");
    assert_both_succeed(&flow, &outcomes);
    let recordings = finished_recordings(&flow, 1);
    let metadata = &recordings[0];
    let holds: Vec<_> = metadata
        .events
        .iter()
        .filter(|event| matches!(event.kind, EventKind::Hold { .. }))
        .collect();
    assert_eq!(holds.len(), 1, "{:?}", metadata.events);
    assert_eq!(
        holds[0].party,
        Party::Practice,
        "the PBX put the call on hold"
    );
    assert!(
        matches!(holds[0].kind, EventKind::Hold { duration_ms: Some(ms) } if ms > 0),
        "{holds:?}"
    );
    assert_eq!(
        metadata.end_reason.as_deref(),
        Some("BYE from the practice")
    );
}

#[test]
fn early_media_with_prack_passes_through() {
    let flow = Flow::start("prack");
    for caller in [Caller::Pbx, Caller::Trunk] {
        let outcomes = flow.call(caller, "uac_prack", "uas_prack");
        assert_both_succeed(&flow, &outcomes);
    }
}

#[test]
fn info_update_options_refer_notify_and_session_refresh_pass_through() {
    let flow = Flow::start("mid-call");
    for caller in [Caller::Pbx, Caller::Trunk] {
        let outcomes = flow.call(caller, "uac_midcall", "uas_midcall");
        assert_both_succeed(&flow, &outcomes);
    }
}

#[test]
fn calls_run_over_tcp() {
    let flow = Flow::start_with("tcp", |config| {
        config.pbx_transport = Protocol::Tcp;
        config.trunk_transport = Protocol::Tcp;
    });
    for caller in [Caller::Pbx, Caller::Trunk] {
        let outcomes = flow.call(caller, "uac_call", "uas_answer");
        assert_both_succeed(&flow, &outcomes);
        let (_, uas) = &outcomes;
        assert!(uas.messages.contains("SIP/2.0/TCP"), "{}", uas.report());
    }
}

#[test]
fn silent_media_ends_the_call_with_bye_on_both_sides() {
    let flow = Flow::start_with("rtp-timeout", |config| {
        config.rtp_timeout_seconds = Some(2);
    });
    let outcomes = flow.call(Caller::Pbx, "uac_wait_bye", "uas_answer");
    assert_both_succeed(&flow, &outcomes);
    assert!(
        flow.callvault.output().contains("media timeout"),
        "{}",
        flow.callvault.output()
    );
    let recordings = finished_recordings(&flow, 1);
    let metadata = &recordings[0];
    assert_eq!(
        metadata.end_reason.as_deref(),
        Some("the RTP stopped for the RTP timeout")
    );
    let seconds = recorded_seconds(metadata);
    assert!((1.9..4.0).contains(&seconds), "recorded {seconds} s");
}

/// `[sip] shutdown_grace_seconds` for a test of the drain.
fn grace(seconds: u64) -> impl FnOnce(&mut TestConfig) {
    move |config| config.extra = format!("[sip]\nshutdown_grace_seconds = {seconds}\n")
}

/// A call placed by the PBX, in progress when callvault is sent SIGTERM.
struct StoppedMidCall {
    uac: SippProcess,
    uas: SippProcess,
    stopped_at: std::time::Instant,
}

impl StoppedMidCall {
    fn run(flow: &mut Flow, uac: &str, uas: &str, uac_args: &[&str]) -> Self {
        let (from, to, entry) = flow.addresses(Caller::Pbx);
        let set = ["-set", "rtp", "40000", "-set", "sdpver", "1"];
        let uas = Sipp::uas(&format!("flows/{uas}.xml"), to)
            .args(&set)
            .spawn(&flow.dir);
        let uac = Sipp::uac(&format!("flows/{uac}.xml"), from, entry)
            .args(&["-s", "07700900123", "-set", "caller", "205"])
            .args(uac_args)
            .args(&set)
            .spawn(&flow.dir);
        flow.callvault
            .wait_for_log("recording started", Duration::from_secs(20));
        let stopped_at = std::time::Instant::now();
        flow.callvault.signal("TERM");
        Self {
            uac,
            uas,
            stopped_at,
        }
    }

    /// Waits for both parties; both must have run their scenario to the end.
    fn assert_both_completed(self) {
        let (uac, uas) = (self.uac.wait(), self.uas.wait());
        assert!(
            uac.succeeded() && uas.succeeded(),
            "{}\n{}",
            uac.report(),
            uas.report()
        );
    }
}

#[test]
fn shutdown_refuses_new_calls_and_hangs_up_the_rest_when_the_grace_period_ends() {
    let grace_seconds = 6;
    let mut flow = Flow::start_with("shutdown-drain", grace(grace_seconds));
    // The caller sends an INFO 3 s after the answer, during the drain.
    let call = StoppedMidCall::run(&mut flow, "uac_drain", "uas_drain", &[]);
    flow.callvault
        .wait_for_log("draining: new calls refused", support::STOP_TIMEOUT);

    // A new call from the PBX's address, on a port of its own.
    let entry = flow.config.pbx_listen;
    let refused = Sipp::uac("flows/uac_refused_draining.xml", free_udp_address(), entry)
        .label("refused")
        .args(&["-s", "07700900456", "-set", "caller", "206"])
        .args(&["-set", "rtp", "40004", "-set", "sdpver", "1"])
        .run(&flow.dir);
    assert!(refused.succeeded(), "{}", refused.report());

    let status = flow.callvault.wait_for_exit(Duration::from_secs(30));
    let drained_for = call.stopped_at.elapsed();
    assert!(status.success(), "{}", flow.callvault.output());
    // Both ran to their BYE: the INFO crossed the drain, and the call lasted.
    call.assert_both_completed();
    let grace = Duration::from_secs(grace_seconds);
    assert!(drained_for >= grace, "stopped after {drained_for:?}");

    let recordings = finished_recordings(&flow, 1);
    let metadata = &recordings[0];
    assert_eq!(metadata.status, RecordingStatus::Complete);
    assert_eq!(metadata.end_reason.as_deref(), Some("the daemon shut down"));
    assert!(recorded_seconds(metadata) >= grace_seconds as f64 - 1.0);
}

#[test]
fn shutdown_ends_as_soon_as_the_last_call_hangs_up() {
    let mut flow = Flow::start_with("shutdown-early", grace(120));
    // The caller hangs up 3 s after the answer, well inside the grace period.
    let call = StoppedMidCall::run(&mut flow, "uac_call", "uas_answer", &["-d", "3000"]);

    let status = flow.callvault.wait_for_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", flow.callvault.output());
    let drained_for = call.stopped_at.elapsed();
    assert!(
        drained_for < Duration::from_secs(30),
        "stopped after {drained_for:?}"
    );
    call.assert_both_completed();
    assert!(flow
        .callvault
        .output()
        .contains("drained: every call has ended"));

    let recordings = finished_recordings(&flow, 1);
    let metadata = &recordings[0];
    assert_eq!(metadata.status, RecordingStatus::Complete);
    assert_eq!(
        metadata.end_reason.as_deref(),
        Some("BYE from the practice")
    );
}

#[test]
fn rtp_payloads_cross_unchanged_both_ways() {
    for caller in [Caller::Pbx, Caller::Trunk] {
        let flow = Flow::start("rtp");
        check_rtp_both_ways(&flow, caller);
    }
}

fn check_rtp_both_ways(flow: &Flow, caller: Caller) {
    let (from, to, entry) = flow.addresses(caller);
    let call = RtpCall::run(&flow.dir, from, to, entry);
    call.assert_relayed_unchanged();
    assert_both_succeed(flow, &(call.uac, call.uas));
}

#[test]
fn registration_passes_its_challenge_and_routes_inbound_calls_after_a_restart() {
    let mut flow = Flow::start("register");
    let c = &flow.config;
    let registrar = Sipp::uas("flows/uas_registrar.xml", c.trunk_peer)
        .label("registrar")
        .spawn(&flow.dir);
    let register = Sipp::uac("flows/uac_register.xml", c.pbx_peer, c.pbx_listen)
        .label("register")
        .args(&["-set", "caller", "205"])
        .run(&flow.dir);
    let registrar = registrar.wait();
    assert!(
        register.succeeded() && registrar.succeeded(),
        "{}\n{}",
        register.report(),
        registrar.report()
    );

    // The binding must survive a restart of the daemon.
    flow.callvault.signal("TERM");
    flow.callvault.wait_for_exit(support::STOP_TIMEOUT);
    flow.callvault = Callvault::start(&flow.config, &flow.dir);
    let c = &flow.config;

    let bindings = std::fs::read_to_string(c.data_dir.join("state/registrations.json")).unwrap();
    let token = bindings
        .split('"')
        .find(|s| s.starts_with("cv-"))
        .expect("a binding")
        .to_owned();
    assert!(flow
        .callvault
        .output()
        .contains("registrations restored count=1"));
    let pbx = Sipp::uas("flows/uas_answer.xml", c.pbx_peer)
        .label("pbx")
        .args(&["-set", "rtp", "40000", "-set", "sdpver", "1"])
        .spawn(&flow.dir);
    let provider = Sipp::uac("flows/uac_call.xml", c.trunk_peer, c.trunk_listen)
        .label("provider")
        .args(&[
            "-s",
            &token,
            "-set",
            "caller",
            "07700900123",
            "-set",
            "rtp",
            "40002",
        ])
        .args(&["-set", "sdpver", "1", "-d", "300"])
        .run(&flow.dir);
    let pbx = pbx.wait();
    let routed = pbx.messages.contains("INVITE sip:205@");
    let report = pbx.report();
    assert_both_succeed(&flow, &(provider, pbx));
    assert!(routed, "not sent to the registered Contact\n{report}");
}

#[test]
fn options_is_answered_while_strangers_and_garbage_are_dropped_and_counted() {
    let mut flow = Flow::start("options");
    let c = &flow.config;
    let socket = std::net::UdpSocket::bind((c.pbx_peer.ip(), 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let options = |to: SocketAddr, from: SocketAddr| {
        format!(
            "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-t1\r\n\
             From: <sip:probe@{from}>;tag=1\r\nTo: <sip:{to}>\r\nCall-ID: probe-1\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let from = socket.local_addr().unwrap();
    socket
        .send_to(options(c.pbx_listen, from).as_bytes(), c.pbx_listen)
        .unwrap();
    let mut buffer = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buffer).expect("an answer to OPTIONS");
    assert!(
        buffer[..n].starts_with(b"SIP/2.0 200 OK"),
        "{}",
        String::from_utf8_lossy(&buffer[..n])
    );

    // 127.0.0.2 is on loopback but is neither the PBX nor the trunk.
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let from = stranger.local_addr().unwrap();
    stranger
        .send_to(options(c.pbx_listen, from).as_bytes(), c.pbx_listen)
        .unwrap();
    assert!(
        stranger.recv_from(&mut buffer).is_err(),
        "a stranger got an answer"
    );

    // Garbage and an oversized datagram from the PBX harm nothing.
    socket
        .send_to(b"\x00\xffnot sip at all\r\n\r\n", c.pbx_listen)
        .unwrap();
    socket
        .send_to(&vec![b'A'; 64 * 1024 - 100], c.pbx_listen)
        .unwrap();
    let from = socket.local_addr().unwrap();
    socket
        .send_to(options(c.pbx_listen, from).as_bytes(), c.pbx_listen)
        .unwrap();
    let (n, _) = socket.recv_from(&mut buffer).expect("still answering");
    assert!(buffer[..n].starts_with(b"SIP/2.0 200 OK"));

    flow.callvault.signal("TERM");
    flow.callvault.wait_for_exit(support::STOP_TIMEOUT);
    let log = flow.callvault.output();
    assert!(
        log.contains("sip_from_strangers=1 sip_malformed=2"),
        "{log}"
    );
}

/// Sends one request from the PBX's address and returns the status line answered.
fn answer_to(flow: &Flow, request: &str) -> String {
    let c = &flow.config;
    let socket = std::net::UdpSocket::bind((c.pbx_peer.ip(), 0)).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let request = request.replace("{to}", &c.pbx_listen.to_string());
    let from = socket.local_addr().expect("local address").to_string();
    let request = request.replace("{from}", &from);
    socket
        .send_to(request.as_bytes(), c.pbx_listen)
        .expect("send");
    let mut buffer = [0u8; 4096];
    loop {
        let (n, _) = socket.recv_from(&mut buffer).expect("an answer");
        let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100") {
            return text.lines().next().unwrap_or_default().to_owned();
        }
    }
}

const INVITE: &str = "INVITE sip:07700900123@{to} SIP/2.0\r\n\
    Via: SIP/2.0/UDP {from};branch=z9hG4bK-loop-1\r\n\
    {extra_via}From: <sip:205@{from}>;tag=1\r\nTo: <sip:07700900123@{to}>\r\n\
    Call-ID: hops-1\r\nCSeq: 1 INVITE\r\nContact: <sip:205@{from}>\r\n\
    Max-Forwards: {hops}\r\nContent-Length: 0\r\n\r\n";

#[test]
fn exhausted_max_forwards_and_loops_are_refused() {
    let flow = Flow::start("hops");
    let no_hops = INVITE.replace("{hops}", "0").replace("{extra_via}", "");
    assert_eq!(answer_to(&flow, &no_hops), "SIP/2.0 483 Too Many Hops");

    // A request that already passed callvault's trunk side has come back round.
    let trunk = flow.config.trunk_listen;
    let looped_via = format!("Via: SIP/2.0/UDP {trunk};branch=z9hG4bK-cv-abc;rport\r\n");
    let looped = INVITE
        .replace("{hops}", "60")
        .replace("{extra_via}", &looped_via);
    assert_eq!(answer_to(&flow, &looped), "SIP/2.0 482 Loop Detected");
}

#[test]
fn unanswered_invite_times_out_and_frees_the_call() {
    let flow = Flow::start_with("timeout", |config| {
        config.extra.push_str("[sip]\nt1_ms = 50\n");
    });
    let outcomes = flow.call(Caller::Pbx, "uac_timeout", "uas_silent");
    assert_both_succeed(&flow, &outcomes);
    let log = flow.callvault.output();
    assert!(
        log.contains("reason=TransactionTimeout active_calls=0"),
        "{log}"
    );
}

#[test]
fn reinvite_with_a_new_media_address_moves_the_audio() {
    let flow = Flow::start("move-media");
    let c = &flow.config;
    let (old_phone, new_phone, callee) = (RtpPeer::bind(), RtpPeer::bind(), RtpPeer::bind());
    let uas = Sipp::uas("flows/uas_reinvite.xml", c.trunk_peer)
        .args(&[
            "-set",
            "rtp",
            &callee.port().to_string(),
            "-set",
            "sdpver",
            "1",
        ])
        .spawn(&flow.dir);
    let (old_port, new_port) = (old_phone.port().to_string(), new_phone.port().to_string());
    let uac = Sipp::uac("flows/uac_move_media.xml", c.pbx_peer, c.pbx_listen)
        .args(&[
            "-s",
            "07700900123",
            "-set",
            "caller",
            "205",
            "-set",
            "sdpver",
            "1",
        ])
        .args(&["-set", "rtp", &old_port, "-set", "rtp2", &new_port])
        .spawn(&flow.dir);

    let wait = Duration::from_secs(15);
    let pbx_side = audio_port_in_log(uac.messages_log(), 1, wait).expect("answer SDP");
    let trunk_side = audio_port_in_log(uas.messages_log(), 0, wait).expect("offer SDP");
    let (pbx_side, trunk_side) = (
        (c.pbx_listen.ip(), pbx_side),
        (c.trunk_listen.ip(), trunk_side),
    );
    let frame = [0x55u8; 160];
    let frames = [&frame[..]; 10];
    let gap = Duration::from_millis(5);
    old_phone.send_stream(pbx_side.into(), &frames, 1, gap);
    callee.send_stream(trunk_side.into(), &frames, 2, gap);
    assert_eq!(
        old_phone.wait_for(10, wait).len(),
        10,
        "audio before the re-INVITE"
    );

    // The re-INVITE's answer is the fourth SDP in the caller's trace.
    let answer = audio_port_in_log(uac.messages_log(), 3, wait).expect("re-INVITE answer");
    assert_eq!(
        (c.pbx_listen.ip(), answer),
        pbx_side,
        "callvault's port changed"
    );
    new_phone.send_stream(pbx_side.into(), &frames, 1, gap);
    callee.send_stream(trunk_side.into(), &frames, 2, gap);
    assert_eq!(
        new_phone.wait_for(10, wait).len(),
        10,
        "audio after the re-INVITE"
    );
    assert_eq!(
        old_phone.received().len(),
        10,
        "audio still sent to the old address"
    );
    assert_eq!(
        callee.wait_for(20, wait).len(),
        20,
        "audio from both caller addresses"
    );
    assert_both_succeed(&flow, &(uac.wait(), uas.wait()));
}

#[test]
fn redirect_reaches_the_caller_with_its_target() {
    let flow = Flow::start("redirect");
    let outcomes = flow.call(Caller::Pbx, "uac_redirected", "uas_redirect");
    assert_both_succeed(&flow, &outcomes);
}

#[test]
fn late_offer_is_answered_in_the_ack() {
    let flow = Flow::start("late-offer");
    for caller in [Caller::Pbx, Caller::Trunk] {
        let outcomes = flow.call(caller, "uac_late_offer", "uas_late_offer");
        assert_both_succeed(&flow, &outcomes);
    }
}

#[test]
fn options_for_an_extension_is_relayed_to_the_other_side() {
    let flow = Flow::start("options-relay");
    let provider = Sipp::uas("flows/uas_options.xml", flow.config.trunk_peer).spawn(&flow.dir);
    let request = OPTIONS_FOR_NUMBER;
    assert_eq!(answer_to(&flow, request), "SIP/2.0 200 OK");
    let provider = provider.wait();
    assert!(provider.succeeded(), "{}", provider.report());
    assert!(
        provider.messages.contains("OPTIONS sip:07700900123@"),
        "{}",
        provider.report()
    );
}

const OPTIONS_FOR_NUMBER: &str = "OPTIONS sip:07700900123@{to} SIP/2.0\r\n\
    Via: SIP/2.0/UDP {from};branch=z9hG4bK-opt-1\r\n\
    From: <sip:205@{from}>;tag=1\r\nTo: <sip:07700900123@{to}>\r\n\
    Call-ID: options-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
    Content-Length: 0\r\n\r\n";

/// Takes about a minute: RFC 4028 allows no session interval shorter than 90 seconds.
#[test]
fn unrefreshed_session_timer_ends_the_call_with_bye_on_both_sides() {
    let flow = Flow::start_with("session-timer", |config| {
        config.rtp_timeout_seconds = Some(600);
    });
    let two_minutes = Duration::from_secs(120);
    let outcomes = flow.call_for(
        two_minutes,
        Caller::Pbx,
        "uac_session_timer",
        "uas_session_timer",
    );
    assert_both_succeed(&flow, &outcomes);
    assert!(flow.callvault.output().contains("reason=SessionExpired"));
}

#[test]
fn crossing_byes_are_both_answered() {
    let flow = Flow::start("bye-crossing");
    for caller in [Caller::Pbx, Caller::Trunk] {
        let outcomes = flow.call(caller, "uac_bye_crossing", "uas_bye_crossing");
        assert_both_succeed(&flow, &outcomes);
    }
}

#[test]
fn a_call_transferred_to_a_personal_extension_is_not_recorded_while_it_is_there() {
    let flow = Flow::start_with("transfer-personal", |config| {
        config.extra = "[policy]\npersonal_extensions = [\"205\"]\n".to_owned();
    });
    let c = &flow.config;
    let uas = Sipp::uas("flows/uas_transfer.xml", c.trunk_peer)
        .args(&["-set", "rtp", "40000", "-set", "sdpver", "1"])
        .spawn(&flow.dir);
    let uac = Sipp::uac("flows/uac_transfer.xml", c.pbx_peer, c.pbx_listen)
        .args(&[
            "-s",
            "07700900123",
            "-set",
            "caller",
            "201",
            "-set",
            "target",
            "205",
        ])
        .args(&["-set", "rtp", "40002", "-set", "sdpver", "1"])
        .run(&flow.dir);
    assert_both_succeed(&flow, &(uac, uas.wait()));

    // Business, then 1.5 s on the personal line, then business again: two
    // recordings with the personal part in neither.
    let mut recordings = finished_recordings(&flow, 2);
    recordings.sort_by_key(|metadata| metadata.start_ms);
    let (before, after) = (&recordings[0], &recordings[1]);
    assert_eq!(
        before.end_reason.as_deref(),
        Some("the call moved to a party the policy does not record")
    );
    assert_eq!(after.end_reason.as_deref(), Some("BYE from the practice"));
    for metadata in [before, after] {
        let seconds = recorded_seconds(metadata);
        assert!((1.3..2.5).contains(&seconds), "recorded {seconds} s");
        assert_eq!(metadata.extension.as_deref(), Some("201"));
    }
    let personal_ms = after.start_ms - before.end_ms.expect("an end");
    assert!(
        (1200..2500).contains(&personal_ms),
        "{personal_ms} ms unrecorded"
    );
    let log = flow.callvault.output();
    assert!(log.contains("rule=\"personal_extension\""), "{log}");
}

/// A recording announcement of a tone `seconds` long, played to inbound callers
/// as `announcement_inbound` says.
fn with_announcement(seconds: u32, mode: &'static str) -> impl FnOnce(&mut TestConfig) {
    move |config| {
        let path = config.data_dir.with_file_name("announcement.wav");
        let sox = std::process::Command::new("sox")
            .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
            .arg(&path)
            .args(["synth", &seconds.to_string(), "sine", "440"])
            .status()
            .expect("sox runs");
        assert!(sox.success());
        config.extra = format!(
            "[policy]\nannouncement = \"{}\"\nannouncement_inbound = \"{mode}\"\n",
            path.display()
        );
    }
}

/// The SDP bodies of the responses `outcome`'s SIPp received with `status`.
fn received_sdp(outcome: &SippOutcome, status: u16) -> Vec<String> {
    let start = format!("SIP/2.0 {status} ");
    outcome
        .messages
        .split("\n-----")
        .filter(|entry| entry.contains("message received"))
        .filter_map(|entry| {
            let message = &entry[entry.find(&start)?..];
            let body = message
                .split_once("\r\n\r\n")
                .or(message.split_once("\n\n"))?
                .1;
            body.contains("v=0").then(|| body.trim().to_owned())
        })
        .collect()
}

/// The `o=` line's username, session id and version.
fn origin(sdp: &str) -> (String, String, u64) {
    let line = sdp
        .lines()
        .find_map(|line| line.trim().strip_prefix("o="))
        .unwrap_or_else(|| panic!("no o= line in {sdp}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let version = fields[2].parse().expect("a numeric version");
    (fields[0].to_owned(), fields[1].to_owned(), version)
}

#[test]
fn an_inbound_caller_is_answered_early_for_the_announcement_in_one_sdp_session() {
    let flow = Flow::start_with("announcement-sdp", with_announcement(1, "with-ringing"));
    let outcomes = flow.call(Caller::Trunk, "uac_announced", "uas_ring_answer");
    assert_both_succeed(&flow, &outcomes);
    let (caller, _) = &outcomes;

    let early = received_sdp(caller, 183);
    let ringing = received_sdp(caller, 180);
    let answer = received_sdp(caller, 200);
    assert_eq!(early.len(), 1, "one 183 with callvault's answer");
    assert_eq!(
        ringing, early,
        "the PBX's 180 carries callvault's answer unchanged"
    );
    let (username, session, version) = origin(&early[0]);
    assert_eq!(username, "-", "no user name of the far side");
    let (answer_username, answer_session, answer_version) = origin(&answer[0]);
    assert_eq!((answer_username, answer_session), (username, session));
    // RFC 3264 §8: the version rises only if the description changed.
    let changed = answer[0] != early[0];
    assert_eq!(
        answer_version,
        version + u64::from(changed),
        "{early:?} {answer:?}"
    );
    let log = flow.callvault.output();
    assert!(log.contains("announcement playing as early media"), "{log}");
    assert!(log.contains("ringing until the practice answers"), "{log}");
}

#[test]
fn a_caller_who_hangs_up_during_a_before_offer_announcement_never_reaches_the_pbx() {
    let flow = Flow::start_with("announcement-cancel", with_announcement(3, "before-offer"));
    let pbx = std::net::UdpSocket::bind(flow.config.pbx_peer).expect("the PBX's address is free");
    pbx.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("a timeout");
    let (from, _, entry) = flow.addresses(Caller::Trunk);
    let caller = Sipp::uac("flows/uac_cancel_early.xml", from, entry)
        .args(&["-s", "01632960100", "-set", "caller", "07700900123"])
        .args(&["-set", "rtp", "40002", "-set", "sdpver", "1"])
        .run(&flow.dir);
    assert!(caller.succeeded(), "{}", caller.report());

    // Past the end of the announcement, when the PBX would have been offered it.
    let mut buffer = [0; 2048];
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        if let Ok((length, _)) = pbx.recv_from(&mut buffer) {
            panic!(
                "the PBX got a message:\n{}",
                String::from_utf8_lossy(&buffer[..length])
            );
        }
    }
    let log = flow.callvault.output();
    assert!(log.contains("reason=Cancelled"), "{log}");
    assert!(!log.contains("the PBX is offered the call"), "{log}");
}
