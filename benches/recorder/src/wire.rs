//! A call as it comes off the wire: real speech, encoded, in RTP packets.
//!
//! Both directions play the same 3 s of speech in a loop, the PBX's half a loop
//! behind the trunk's, so the two channels differ at every moment. In calls where
//! the parties take turns, each side's line carries only a faint hiss while the
//! other talks. Every packet is built before any timing starts.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use callvault_media::{Side, TapPacket};
use callvault_recorder::codec::g711::{linear_to_alaw, linear_to_ulaw, ulaw_to_linear};
use callvault_recorder::formats::SideMedia;
use callvault_recorder::mix::Upsampler2x;
use callvault_sip::sdp::SessionDescription;
use ezk_g722::libg722::{encoder::Encoder as G722Encoder, Bitrate};
use serde::Serialize;

use crate::Failure;

/// The packet interval of every codec here.
pub(crate) const FRAME: Duration = Duration::from_millis(20);

/// Samples in one frame of 8 kHz speech.
const NARROWBAND_FRAME: usize = 160;

/// The bitrate of Opus on the wire: a common choice of softphones for wideband speech.
const OPUS_BITRATE: i32 = 24_000;

/// The payload type of RFC 4733 events offered beside every codec.
const TELEPHONE_EVENT: u8 = 101;

/// How long one party talks before the other does, in 8 kHz samples: a loop of the
/// fixture.
pub(crate) const TURN_SAMPLES: usize = 3 * 8000;

/// Whether both parties talk all the time, or take turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Talk {
    /// The worst case for the encoder: speech on both channels throughout.
    Both,
    /// Closer to a real call: 3 s each, the trunk's party first.
    Turns,
}

impl Talk {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Both => "both talking",
            Self::Turns => "taking turns",
        }
    }
}

/// A faint hiss of about -70 dBFS, as a quiet line carries: a few LSBs of noise.
#[derive(Debug)]
pub(crate) struct Hiss(u32);

impl Hiss {
    pub(crate) fn new() -> Self {
        Self(0x2545_f491)
    }

    pub(crate) fn next_sample(&mut self) -> i16 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        i16::try_from(self.0 >> 28).expect("four bits fit an i16") - 8
    }
}

/// The codec both sides of a call send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum WireCodec {
    #[serde(rename = "PCMU")]
    Pcmu,
    #[serde(rename = "PCMA")]
    Pcma,
    #[serde(rename = "G.722")]
    G722,
    #[serde(rename = "Opus")]
    Opus,
}

impl WireCodec {
    pub(crate) const ALL: [Self; 4] = [Self::Pcmu, Self::Pcma, Self::G722, Self::Opus];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::G722 => "G.722",
            Self::Opus => "Opus",
        }
    }

    fn payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
            Self::G722 => 9,
            Self::Opus => 111,
        }
    }

    fn rtpmap(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU/8000",
            Self::Pcma => "PCMA/8000",
            Self::G722 => "G722/8000",
            Self::Opus => "opus/48000/2",
        }
    }

    /// RTP timestamp units per frame: G.722's RTP clock is 8000 (RFC 3551 §4.5.2)
    /// and Opus's 48000 (RFC 7587 §4.1).
    fn timestamp_step(self) -> u32 {
        match self {
            Self::Opus => 960,
            Self::Pcmu | Self::Pcma | Self::G722 => 160,
        }
    }

    /// An SDP offering only this codec and telephone events.
    fn sdp(self, port: u16) -> String {
        let payload_type = self.payload_type();
        let rtpmap = self.rtpmap();
        [
            "v=0".to_owned(),
            "o=- 1 1 IN IP4 127.0.0.1".to_owned(),
            "s=-".to_owned(),
            "c=IN IP4 127.0.0.1".to_owned(),
            "t=0 0".to_owned(),
            format!("m=audio {port} RTP/AVP {payload_type} {TELEPHONE_EVENT}"),
            format!("a=rtpmap:{payload_type} {rtpmap}"),
            format!("a=rtpmap:{TELEPHONE_EVENT} telephone-event/8000"),
            "a=ptime:20".to_owned(),
            String::new(),
        ]
        .join("\r\n")
    }
}

/// Everything the recorder receives of one call, ready to replay.
#[derive(Debug)]
pub(crate) struct CallInput {
    pub(crate) codec: WireCodec,
    pub(crate) talk: Talk,
    /// The answer: sample 0 of the recording, and the base of every arrival time.
    pub(crate) start: Instant,
    /// The trunk's and the PBX's SDP.
    pub(crate) media: [(Side, SideMedia); 2],
    /// Per 20 ms frame, the trunk's packet and the PBX's.
    pub(crate) frames: Vec<[TapPacket; 2]>,
}

impl CallInput {
    /// Encodes `seconds` of looped speech per direction, arriving from `start` on.
    pub(crate) fn new(
        (codec, talk): (WireCodec, Talk),
        speech: &[u8],
        seconds: u64,
        start: Instant,
    ) -> Result<Self, Failure> {
        let frames = usize::try_from(seconds)? * 50;
        let trunk = Sender::new(Side::Trunk, 0x5eed_0001, 0);
        let pbx = Sender::new(Side::Pbx, 0x5eed_0002, speech.len() / 2);
        let trunk = trunk.packets((codec, talk), speech, frames, start)?;
        let pbx = pbx.packets((codec, talk), speech, frames, start)?;
        Ok(Self {
            codec,
            talk,
            start,
            media: [
                (Side::Trunk, side_media(codec, 40_000)?),
                (Side::Pbx, side_media(codec, 50_000)?),
            ],
            frames: trunk.into_iter().zip(pbx).map(|(t, p)| [t, p]).collect(),
        })
    }

    /// The length of the call.
    pub(crate) fn duration(&self) -> Duration {
        FRAME * u32::try_from(self.frames.len()).unwrap_or(u32::MAX)
    }
}

fn side_media(codec: WireCodec, port: u16) -> Result<SideMedia, Failure> {
    let sdp = SessionDescription::parse(codec.sdp(port).as_bytes())?;
    Ok(SideMedia::from_sdp(&sdp.media()))
}

/// One direction's RTP stream.
struct Sender {
    side: Side,
    ssrc: u32,
    /// Where in the speech this direction begins, in samples.
    offset: usize,
}

impl Sender {
    fn new(side: Side, ssrc: u32, offset: usize) -> Self {
        Self { side, ssrc, offset }
    }

    fn packets(
        &self,
        (codec, talk): (WireCodec, Talk),
        speech: &[u8],
        frames: usize,
        start: Instant,
    ) -> Result<Vec<TapPacket>, Failure> {
        let mut ulaw = looped(speech, self.offset, frames * NARROWBAND_FRAME);
        if talk == Talk::Turns {
            self.quiet_while_listening(&mut ulaw);
        }
        let payloads = encode(codec, &ulaw)?;
        // Sequence numbers and timestamps start where they wrap soon, as a real
        // sender's random start may.
        let mut sequence = 65_000_u16.wrapping_add(u16::from(self.side == Side::Pbx));
        let mut timestamp = u32::MAX - 100 * codec.timestamp_step();
        let mut packets = Vec::with_capacity(frames);
        for (n, payload) in payloads.iter().enumerate() {
            let header = Header {
                payload_type: codec.payload_type(),
                marker: n == 0,
                sequence,
                timestamp,
                ssrc: self.ssrc,
            };
            packets.push(TapPacket {
                from: self.side,
                stream: 0,
                arrival: start + FRAME * u32::try_from(n)?,
                rtcp: false,
                data: header.packet(payload),
            });
            sequence = sequence.wrapping_add(1);
            timestamp = timestamp.wrapping_add(codec.timestamp_step());
        }
        Ok(packets)
    }
}

impl Sender {
    /// Replaces the speech with hiss in the turns of the other party.
    fn quiet_while_listening(&self, ulaw: &mut [u8]) {
        let listening = usize::from(self.side == Side::Trunk);
        let mut hiss = Hiss::new();
        for (turn, samples) in ulaw.chunks_mut(TURN_SAMPLES).enumerate() {
            if turn % 2 == listening {
                samples.fill_with(|| linear_to_ulaw(hiss.next_sample()));
            }
        }
    }
}

/// An RTP fixed header (RFC 3550 §5.1) without CSRCs or extension.
struct Header {
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
}

impl Header {
    fn packet(&self, payload: &[u8]) -> Bytes {
        let mut packet = BytesMut::with_capacity(12 + payload.len());
        packet.put_u8(0x80);
        packet.put_u8(self.payload_type | if self.marker { 0x80 } else { 0 });
        packet.put_u16(self.sequence);
        packet.put_u32(self.timestamp);
        packet.put_u32(self.ssrc);
        packet.put_slice(payload);
        packet.freeze()
    }
}

/// `samples` of µ-law speech from `offset` on, wrapping round to the start.
fn looped(speech: &[u8], offset: usize, samples: usize) -> Vec<u8> {
    speech
        .iter()
        .cycle()
        .skip(offset)
        .take(samples)
        .copied()
        .collect()
}

/// One payload per 20 ms frame of `ulaw`.
fn encode(codec: WireCodec, ulaw: &[u8]) -> Result<Vec<Vec<u8>>, Failure> {
    let frames = ulaw.chunks(NARROWBAND_FRAME);
    Ok(match codec {
        WireCodec::Pcmu => frames.map(<[u8]>::to_vec).collect(),
        WireCodec::Pcma => frames
            .map(|frame| {
                frame
                    .iter()
                    .map(|&code| linear_to_alaw(ulaw_to_linear(code)))
                    .collect()
            })
            .collect(),
        WireCodec::G722 => {
            let mut encoder = G722Encoder::new(Bitrate::Mode1_64000, false, false);
            let pcm = wideband(ulaw);
            pcm.chunks(2 * NARROWBAND_FRAME)
                .map(|frame| encoder.encode(frame))
                .collect()
        }
        WireCodec::Opus => encode_opus(&wideband(ulaw))?,
    })
}

/// 16 kHz PCM of 8 kHz µ-law speech: what a wideband phone would have picked up,
/// less the band above 4 kHz the fixture never had.
fn wideband(ulaw: &[u8]) -> Vec<i16> {
    let linear: Vec<i16> = ulaw.iter().map(|&code| ulaw_to_linear(code)).collect();
    let mut pcm = Vec::with_capacity(linear.len() * 2);
    Upsampler2x::new().process(&linear, &mut pcm);
    pcm
}

fn encode_opus(pcm: &[i16]) -> Result<Vec<Vec<u8>>, Failure> {
    let mut encoder = opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip)?;
    encoder.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))?;
    let mut packet = [0_u8; 1500];
    let mut payloads = Vec::new();
    for frame in pcm.chunks(2 * NARROWBAND_FRAME) {
        let length = encoder.encode(frame, &mut packet)?;
        payloads.push(packet[..length].to_vec());
    }
    Ok(payloads)
}
