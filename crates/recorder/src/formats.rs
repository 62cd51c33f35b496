//! What each RTP payload type of a call carries, from the sides' SDP.
//!
//! A sender numbers its packets with the payload types of the receiver's SDP
//! (RFC 3264 §5.1), and nearly every peer keeps the offer's numbers in its answer,
//! so a packet is looked up in the receiver's SDP first, then in the sender's, then
//! in the RFC 3551 static table.

use std::collections::HashMap;

use callvault_media::Side;
use callvault_sip::sdp::{MediaDescription, MediaDirection};

use crate::codec::static_payload_type;

/// What one payload type means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFormat {
    /// The `rtpmap` encoding name as the SDP spells it (`PCMU`, `opus`, ...).
    pub encoding: String,
    /// The RTP clock rate, in Hz.
    pub clock_rate: u32,
}

impl PayloadFormat {
    /// Whether this is an RFC 4733 telephone event.
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }

    /// Whether this is RFC 3389 comfort noise.
    pub fn is_comfort_noise(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("CN")
    }

    /// Whether this carries audio (neither an event nor comfort noise).
    pub fn is_audio(&self) -> bool {
        !self.is_telephone_event() && !self.is_comfort_noise()
    }

    /// Whether the codec carries more than telephone bandwidth (G.722, Opus).
    pub fn is_wideband(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("G722") || self.encoding.eq_ignore_ascii_case("opus")
    }
}

/// One side's audio stream as its latest SDP describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideMedia {
    /// The index of the first `m=audio` line: the stream that is recorded.
    pub stream: Option<usize>,
    /// Payload types in the order of the `m=` line (the first is preferred).
    pub order: Vec<u8>,
    pub formats: HashMap<u8, PayloadFormat>,
    /// Whether this side put the call on hold: its SDP says sendonly or inactive, or
    /// `c=0.0.0.0` (RFC 3264 §8.4). An answer of recvonly only agrees to a hold.
    pub on_hold: bool,
    /// Whether the stream is SRTP (`RTP/SAVP`, `RTP/SAVPF`): its payloads are
    /// ciphertext the recorder has no key for.
    pub encrypted: bool,
}

impl SideMedia {
    /// Reads the first audio stream of a side's SDP.
    pub fn from_sdp(streams: &[MediaDescription]) -> Self {
        let Some((index, audio)) = streams
            .iter()
            .enumerate()
            .find(|(_, stream)| stream.kind.eq_ignore_ascii_case("audio"))
        else {
            return Self::default();
        };
        let order = audio
            .formats
            .iter()
            .filter_map(|format| format.parse().ok())
            .collect();
        let formats = audio
            .rtpmap
            .iter()
            .filter_map(|(payload_type, map)| Some((*payload_type, parse_rtpmap(map)?)))
            .collect();
        Self {
            stream: Some(index),
            order,
            formats,
            on_hold: holds(audio),
            encrypted: audio.protocol.to_ascii_uppercase().contains("SAVP"),
        }
    }

    /// The format of `payload_type` in this SDP, or from the static table.
    fn format(&self, payload_type: u8) -> Option<PayloadFormat> {
        self.formats.get(&payload_type).cloned()
    }

    /// The codec this side prefers: the first audio format of its `m=` line.
    pub fn preferred(&self) -> Option<PayloadFormat> {
        self.preferred_payload_type().map(|(_, format)| format)
    }

    /// The payload type of the codec this side prefers, and the codec.
    pub fn preferred_payload_type(&self) -> Option<(u8, PayloadFormat)> {
        self.audio_payload_types().next()
    }

    /// The payload type of this side's telephone-event (RFC 4733) at
    /// `clock_rate`, the rate of the codec it goes with.
    pub fn telephone_event_at(&self, clock_rate: u32) -> Option<u8> {
        self.order.iter().copied().find(|payload_type| {
            self.format(*payload_type).is_some_and(|format| {
                format.is_telephone_event() && format.clock_rate == clock_rate
            })
        })
    }

    /// Every audio codec of the `m=` line with its payload type, in its order.
    pub fn audio_payload_types(&self) -> impl Iterator<Item = (u8, PayloadFormat)> + '_ {
        self.order
            .iter()
            .filter_map(|&payload_type| {
                let format = self
                    .format(payload_type)
                    .or_else(|| static_format(payload_type))?;
                Some((payload_type, format))
            })
            .filter(|(_, format)| format.is_audio())
    }
}

/// Both sides' latest SDP.
#[derive(Debug, Clone, Default)]
pub struct CallMedia {
    pbx: SideMedia,
    trunk: SideMedia,
}

impl CallMedia {
    /// Replaces one side's description.
    pub fn update(&mut self, side: Side, media: SideMedia) {
        *self.side_mut(side) = media;
    }

    pub fn side(&self, side: Side) -> &SideMedia {
        match side {
            Side::Pbx => &self.pbx,
            Side::Trunk => &self.trunk,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut SideMedia {
        match side {
            Side::Pbx => &mut self.pbx,
            Side::Trunk => &mut self.trunk,
        }
    }

    /// The stream index of the recorded audio in packets sent by `from`.
    ///
    /// Both sides number streams alike (the answer mirrors the offer's `m=` lines,
    /// RFC 3264 §6), so either side's index will do; the receiver's is asked first.
    pub fn audio_stream(&self, from: Side) -> Option<usize> {
        self.side(from.other()).stream.or(self.side(from).stream)
    }

    /// What `payload_type` means in a packet sent by `from`.
    ///
    /// Audio of an SRTP stream resolves to the encoding `SRTP`, which no decoder
    /// takes: decoding ciphertext as G.711 would record noise.
    pub fn resolve(&self, from: Side, payload_type: u8) -> Option<PayloadFormat> {
        let format = self.resolve_plain(from, payload_type)?;
        let encrypted = self.side(from).encrypted || self.side(from.other()).encrypted;
        if encrypted && format.is_audio() {
            return Some(PayloadFormat {
                encoding: "SRTP".to_owned(),
                clock_rate: format.clock_rate,
            });
        }
        Some(format)
    }

    fn resolve_plain(&self, from: Side, payload_type: u8) -> Option<PayloadFormat> {
        self.side(from.other())
            .format(payload_type)
            .or_else(|| self.side(from).format(payload_type))
            .or_else(|| static_format(payload_type))
    }

    /// The telephone-event and comfort-noise payload types of packets sent by `from`.
    pub fn event_payload_types(&self, from: Side) -> (Option<u8>, Option<u8>) {
        let receiver = self.side(from.other());
        let sender = self.side(from);
        let find = |wanted: fn(&PayloadFormat) -> bool| {
            [receiver, sender].into_iter().find_map(|media| {
                media
                    .formats
                    .iter()
                    .find(|(_, format)| wanted(format))
                    .map(|(payload_type, _)| *payload_type)
            })
        };
        let comfort_noise = find(PayloadFormat::is_comfort_noise).or(Some(STATIC_COMFORT_NOISE));
        (find(PayloadFormat::is_telephone_event), comfort_noise)
    }

    /// Whether either side's preferred codec is wideband.
    pub fn any_wideband(&self) -> bool {
        [&self.pbx, &self.trunk]
            .into_iter()
            .filter_map(SideMedia::preferred)
            .any(|format| format.is_wideband())
    }
}

fn holds(audio: &MediaDescription) -> bool {
    let direction = matches!(
        audio.direction,
        MediaDirection::SendOnly | MediaDirection::Inactive
    );
    direction || audio.connection.is_some_and(|ip| ip.is_unspecified()) || audio.port == 0
}

/// RFC 3389 comfort noise has the static payload type 13 (RFC 3551 table 4).
const STATIC_COMFORT_NOISE: u8 = 13;

fn static_format(payload_type: u8) -> Option<PayloadFormat> {
    if payload_type == STATIC_COMFORT_NOISE {
        return Some(PayloadFormat {
            encoding: "CN".to_owned(),
            clock_rate: 8000,
        });
    }
    static_payload_type(payload_type).map(|(encoding, clock_rate)| PayloadFormat {
        encoding: encoding.to_owned(),
        clock_rate,
    })
}

/// Reads `encoding/clock[/channels]`; `None` when the clock rate is not a number.
fn parse_rtpmap(map: &str) -> Option<PayloadFormat> {
    let mut parts = map.split('/');
    let encoding = parts.next()?.trim();
    let clock_rate = parts.next()?.trim().parse().ok()?;
    Some(PayloadFormat {
        encoding: encoding.to_owned(),
        clock_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use callvault_sip::sdp::SessionDescription;

    fn media(sdp: &str) -> SideMedia {
        let sdp = SessionDescription::parse(sdp.replace('\n', "\r\n").as_bytes()).unwrap();
        SideMedia::from_sdp(&sdp.media())
    }

    const OFFER: &str = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=video 4000 RTP/AVP 96
a=rtpmap:96 VP8/90000
m=audio 5000 RTP/AVP 9 0 101
a=rtpmap:101 telephone-event/8000
";

    #[test]
    fn first_audio_stream_and_its_formats_are_read() {
        let media = media(OFFER);
        assert_eq!(media.stream, Some(1));
        assert_eq!(media.order, [9, 0, 101]);
        assert!(!media.on_hold);
        assert_eq!(media.preferred().unwrap().encoding, "G722");
    }

    #[test]
    fn receiver_sdp_names_payload_types_first() {
        let mut call = CallMedia::default();
        call.update(Side::Pbx, media(OFFER));
        let answer = OFFER.replace("9 0 101", "0 96").replace(
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:96 telephone-event/8000",
        );
        call.update(Side::Trunk, media(&answer));
        // The PBX sends with the trunk's numbers: 96 is a telephone event there.
        let format = call.resolve(Side::Pbx, 96).unwrap();
        assert!(format.is_telephone_event());
        assert_eq!(call.event_payload_types(Side::Pbx), (Some(96), Some(13)));
        assert_eq!(call.event_payload_types(Side::Trunk), (Some(101), Some(13)));
        assert_eq!(call.resolve(Side::Trunk, 8).unwrap().encoding, "PCMA");
    }

    #[test]
    fn sendonly_marks_hold() {
        let held = media(&OFFER.replace("a=rtpmap:101", "a=sendonly\na=rtpmap:101"));
        assert!(held.on_hold);
    }

    #[test]
    fn srtp_audio_resolves_to_no_decodable_codec() {
        let mut call = CallMedia::default();
        call.update(
            Side::Trunk,
            media(&OFFER.replace("RTP/AVP 9", "RTP/SAVP 9")),
        );
        assert_eq!(call.resolve(Side::Pbx, 0).unwrap().encoding, "SRTP");
        assert!(call.resolve(Side::Pbx, 101).unwrap().is_telephone_event());
    }

    #[test]
    fn recvonly_answer_is_not_a_hold() {
        let answer = media(&OFFER.replace("a=rtpmap:101", "a=recvonly\na=rtpmap:101"));
        assert!(!answer.on_hold);
        let inactive = media(&OFFER.replace("a=rtpmap:101", "a=inactive\na=rtpmap:101"));
        assert!(inactive.on_hold);
    }

    #[test]
    fn wideband_is_seen_in_either_side() {
        let mut call = CallMedia::default();
        call.update(Side::Trunk, media(&OFFER.replace("9 0 101", "0 101")));
        assert!(!call.any_wideband());
        call.update(Side::Pbx, media(OFFER));
        assert!(call.any_wideband());
    }
}
