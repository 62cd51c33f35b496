//! The recorder's hook and tap, with the B2BUA run in-process and real SIPp peers.
//!
//! The recorder itself is a later piece of work; these tests stand in for it with a
//! hook that keeps the tap's receiving end, and check the two promises the relay makes
//! to it: every packet of an answered call is offered to the tap, and a tap nobody
//! reads never slows or stops the call's audio.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use callvault_b2bua::{
    serve, tap, B2buaConfig, CallHook, CallInfo, EndReason, Side, SideConfig, Tap, TapReceiver,
    Transport,
};
use support::ports::{free_udp_address, free_udp_port_block, is_bound, Protocol};
use support::rtp::RtpCall;
use support::temp::TempDir;

/// A stand-in recorder: one tap per answered call, read or not as the test says.
struct TestHook {
    capacity: usize,
    receivers: Mutex<Vec<TapReceiver>>,
    ended: Mutex<Vec<EndReason>>,
}

impl CallHook for TestHook {
    fn on_answer(&self, _call: &CallInfo) -> Option<Tap> {
        let (tap, receiver) = tap(self.capacity);
        self.receivers.lock().expect("not poisoned").push(receiver);
        Some(tap)
    }

    fn on_end(&self, _call: &CallInfo, reason: EndReason) {
        self.ended.lock().expect("not poisoned").push(reason);
    }
}

/// callvault's B2BUA on its own runtime thread, stopped on drop.
struct InProcess {
    config: B2buaConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn start(dir: &TempDir, hook: Arc<TestHook>) -> Self {
        let side = |listen, peer| SideConfig {
            listen,
            peer,
            advertise: None,
            transport: Transport::Udp,
        };
        let media_port_min = free_udp_port_block(16);
        let config = B2buaConfig {
            pbx: side(free_udp_address(), free_udp_address()),
            trunk: side(free_udp_address(), free_udp_address()),
            media_port_min,
            media_port_max: media_port_min + 15,
            rtp_timeout: Duration::from_secs(60),
            state_dir: dir.path().join("state"),
            t1: Duration::from_millis(500),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = config.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            let shutdown = async {
                let _ = stopped.await;
            };
            runtime
                .block_on(serve(serving, hook, Default::default(), shutdown))
                .expect("serve");
        });
        for address in [config.pbx.listen, config.trunk.listen] {
            assert!(support::wait_until(Duration::from_secs(10), || is_bound(
                Protocol::Udp,
                address
            )));
        }
        Self {
            config,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads every copy a tap received until the call's session let go of it.
fn drain(mut receiver: TapReceiver) -> Vec<callvault_b2bua::TapPacket> {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let mut packets = Vec::new();
        let wait = Duration::from_secs(5);
        while let Ok(Some(packet)) = tokio::time::timeout(wait, receiver.recv()).await {
            packets.push(packet);
        }
        packets
    })
}

/// Places one call with RTP both ways through an in-process B2BUA whose hook gives
/// each call a tap of `capacity`, from the side `caller`; returns the call, the tap's
/// receiving end and the hook.
fn call_with_tap(
    name: &str,
    capacity: usize,
    caller: Side,
) -> (RtpCall, TapReceiver, Arc<TestHook>) {
    let dir = TempDir::new(name);
    let hook = Arc::new(TestHook {
        capacity,
        receivers: Mutex::default(),
        ended: Mutex::default(),
    });
    let b2bua = InProcess::start(&dir, hook.clone());
    let (pbx, trunk) = (&b2bua.config.pbx, &b2bua.config.trunk);
    let call = match caller {
        Side::Pbx => RtpCall::run(&dir, pbx.peer, trunk.peer, pbx.listen),
        Side::Trunk => RtpCall::run(&dir, trunk.peer, pbx.peer, trunk.listen),
    };
    call.assert_relayed_unchanged();
    let (uac, uas) = (&call.uac, &call.uas);
    assert!(
        uac.succeeded() && uas.succeeded(),
        "{}\n{}",
        uac.report(),
        uas.report()
    );
    let receiver = hook.receivers.lock().expect("not poisoned").pop();
    (
        call,
        receiver.expect("the answered call asked for a tap"),
        hook,
    )
}

#[test]
fn tap_receives_every_packet_of_an_answered_call_with_its_direction() {
    let (call, receiver, hook) = call_with_tap("tap-reads", 4096, Side::Pbx);
    let packets = drain(receiver);
    let rtp_from = |side| packets.iter().filter(move |p| p.from == side && !p.rtcp);
    assert_eq!(rtp_from(Side::Pbx).count(), call.frames.len());
    assert_eq!(rtp_from(Side::Trunk).count(), call.frames.len());
    for (copy, frame) in rtp_from(Side::Pbx).zip(&call.frames) {
        assert_eq!(&copy.data[12..], frame.as_slice(), "the tap's copy differs");
    }
    assert_eq!(*hook.ended.lock().unwrap(), [EndReason::Bye(Side::Pbx)]);
}

#[test]
fn unread_tap_drops_copies_and_never_touches_the_call_audio() {
    // The relay itself is checked inside `call_with_tap`: every frame arrived.
    let (call, receiver, _) = call_with_tap("tap-unread", 4, Side::Trunk);
    let sent = 2 * call.frames.len() as u64;
    assert!(
        receiver.dropped() >= sent - 4,
        "dropped {} of {sent}",
        receiver.dropped()
    );
    assert_eq!(
        drain(receiver).len(),
        4,
        "the queue holds exactly its capacity"
    );
}
