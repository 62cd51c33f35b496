//! What several fuzz targets share: a recording pipeline as a call sets it up.

use std::time::{Duration, Instant};

use bytes::Bytes;
use callvault_media::{Side, TapPacket};
use callvault_recorder::encode::OutputFormat;
use callvault_recorder::formats::SideMedia;
use callvault_recorder::mix::Channels;
use callvault_recorder::pipeline::{CallPipeline, PipelineConfig, PipelineStats};
use callvault_sip::sdp::SessionDescription;

/// Both sides offer what trunks and PBXs offer: G.711, G.722, Opus, events and
/// comfort noise, with RTCP multiplexed on the RTP port (RFC 5761).
const OFFER: &[u8] = b"v=0\r\n\
o=- 1 1 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 0 8 9 96 101 13\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtcp-mux\r\n";

/// A WAV pipeline for a call that began at `start`, both sides' SDP applied.
pub fn pipeline(start: Instant) -> CallPipeline {
    let config = PipelineConfig {
        format: OutputFormat::Wav,
        channels: Channels::Stereo,
        jitter_depth: Duration::from_millis(60),
    };
    let mut pipeline = CallPipeline::new(config, start);
    let offer = SessionDescription::parse(OFFER).expect("the fixed offer parses");
    for side in [Side::Pbx, Side::Trunk] {
        pipeline.set_media(side, SideMedia::from_sdp(&offer.media()), start);
    }
    pipeline
}

/// A copy of a datagram as the relay hands it to the recorder.
pub fn tap_packet(from: Side, rtcp: bool, arrival: Instant, data: &[u8]) -> TapPacket {
    TapPacket {
        from,
        stream: 0,
        arrival,
        rtcp,
        data: Bytes::copy_from_slice(data),
    }
}

/// How many packets the pipeline has counted in any of its verdicts.
pub fn packets_seen(stats: &PipelineStats) -> u64 {
    stats.packets
        + stats.malformed_packets
        + stats.unknown_payload_packets
        + stats.other_stream_packets
}
