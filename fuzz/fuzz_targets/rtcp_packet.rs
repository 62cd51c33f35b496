//! RTCP packets, on their own socket and multiplexed on the RTP port.
//!
//! callvault relays RTCP without reading it, and its recorder must not take it
//! for audio. On the RTCP socket a datagram is ignored: no counter moves and no
//! audio is recorded. Multiplexed on the RTP port (RFC 5761), a datagram whose
//! second byte is an RTCP packet type (200 to 204, which RTP reads as marker bit
//! and payload type 72 to 76) is counted as malformed or of an unknown payload
//! type, and never played, whatever follows.
#![no_main]

use std::time::{Duration, Instant};

use callvault_fuzz::{packets_seen, pipeline, tap_packet};
use callvault_media::Side;
use libfuzzer_sys::fuzz_target;

/// RTCP packet types of RFC 3550 §12.1 (SR, RR, SDES, BYE, APP).
const RTCP_TYPES: std::ops::RangeInclusive<u8> = 200..=204;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let arrival = start + Duration::from_millis(20);
    let mut pipeline = pipeline(start);

    let before = pipeline.stats();
    pipeline
        .push(&tap_packet(Side::Trunk, true, arrival, data))
        .expect("pushing a packet does not fail");
    assert_eq!(
        pipeline.stats(),
        before,
        "a packet from the RTCP socket was counted"
    );

    pipeline
        .push(&tap_packet(Side::Pbx, false, arrival, data))
        .expect("pushing a packet does not fail");
    let stats = pipeline.stats();
    assert_eq!(
        packets_seen(&stats),
        1,
        "a multiplexed packet got no single verdict"
    );
    let rtcp_shaped = data.len() >= 12 && data[0] >> 6 == 2 && RTCP_TYPES.contains(&data[1]);
    if rtcp_shaped {
        assert_eq!(stats.packets, 0, "multiplexed RTCP was taken for audio");
    }

    let mut out = Vec::new();
    let end = arrival + Duration::from_secs(1);
    pipeline
        .advance(end, &mut out)
        .expect("a WAV encoder does not fail");
    pipeline
        .finish(end, &mut out)
        .expect("finishing does not fail");
    if rtcp_shaped {
        assert_eq!(
            pipeline.stats().jitter,
            Default::default(),
            "RTCP reached a jitter buffer"
        );
    }
});
