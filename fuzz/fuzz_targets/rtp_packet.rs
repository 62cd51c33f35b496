//! RTP packets as the tap hands them to the recorder, then through its pipeline.
//!
//! The input is a sequence of packets, each a length byte, a timing byte (its
//! top bit the sending side, the rest the milliseconds since the previous
//! packet) and the packet. Beyond not panicking: a packet that parses has the
//! header fields its bytes say and a payload inside it; the pipeline gives every
//! packet exactly one verdict, and records no more audio than the call lasted.
#![no_main]

use std::time::{Duration, Instant};

use callvault_fuzz::{packets_seen, pipeline, tap_packet};
use callvault_media::Side;
use callvault_recorder::rtp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut pipeline = pipeline(start);
    let mut now = start;
    let mut out = Vec::new();
    let mut encoded = Duration::ZERO;
    let mut pushed = 0;
    let mut rest = data;
    while let [len, timing, tail @ ..] = rest {
        let (packet, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = tail;
        check_header(packet);
        now += Duration::from_millis(u64::from(timing & 0x7f));
        let from = if timing & 0x80 == 0 {
            Side::Trunk
        } else {
            Side::Pbx
        };
        pipeline
            .push(&tap_packet(from, false, now, packet))
            .expect("pushing a packet does not fail");
        pushed += 1;
        encoded += pipeline
            .advance(now, &mut out)
            .expect("a WAV encoder does not fail");
    }
    assert_eq!(
        packets_seen(&pipeline.stats()),
        pushed,
        "a packet got no verdict"
    );
    let end = now + Duration::from_millis(20);
    encoded += pipeline
        .finish(end, &mut out)
        .expect("finishing does not fail");
    assert!(
        encoded <= end - start,
        "{encoded:?} of audio recorded from a call of {:?}",
        end - start
    );
});

/// A parsed header says what the bytes say, and the payload lies within them.
fn check_header(packet: &[u8]) {
    let Ok(parsed) = rtp::parse(packet) else {
        return;
    };
    let header = parsed.header;
    assert_eq!(header.marker, packet[1] & 0x80 != 0);
    assert_eq!(header.payload_type, packet[1] & 0x7f);
    assert_eq!(header.sequence, u16::from_be_bytes([packet[2], packet[3]]));
    assert_eq!(
        header.ssrc,
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]])
    );
    let offset = parsed.payload.as_ptr() as usize - packet.as_ptr() as usize;
    assert!(offset >= 12, "the payload starts inside the fixed header");
    assert!(offset + parsed.payload.len() <= packet.len());
}
