//! The whole pipeline of one call, fed generated RTP with simulated arrival times.
//!
//! Each side sends a tone of its own (the external party 400 Hz, the practice
//! 1000 Hz), so a channel can be told apart by the frequency it holds, and the
//! time a tone begins and ends in the recording shows where the audio was placed.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use callvault_media::{Side, TapPacket};
use callvault_recorder::codec::g711::linear_to_ulaw;
use callvault_recorder::encode::OutputFormat;
use callvault_recorder::formats::SideMedia;
use callvault_recorder::mix::Channels;
use callvault_recorder::pipeline::{CallPipeline, PipelineConfig};
use callvault_sip::sdp::SessionDescription;
use callvault_store::{EventKind, Party};
use ezk_g722::libg722::{encoder::Encoder as G722Encoder, Bitrate};

const RATE: usize = 8000;
const FRAME: Duration = Duration::from_millis(20);
const EXTERNAL_HZ: f64 = 400.0;
const PRACTICE_HZ: f64 = 1000.0;

fn config(format: OutputFormat, channels: Channels, depth_ms: u64) -> PipelineConfig {
    PipelineConfig {
        format,
        channels,
        jitter_depth: Duration::from_millis(depth_ms),
    }
}

fn media(formats: &str, rtpmaps: &[&str], direction: &str) -> SideMedia {
    let mut sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP {formats}\r\na={direction}\r\n"
    );
    for map in rtpmaps {
        sdp.push_str(&format!("a=rtpmap:{map}\r\n"));
    }
    let sdp = SessionDescription::parse(sdp.as_bytes()).unwrap();
    SideMedia::from_sdp(&sdp.media())
}

fn pcmu_media() -> SideMedia {
    media("0 101", &["101 telephone-event/8000"], "sendrecv")
}

/// One side's sender: a tone, numbered packets, RTP timestamps.
struct Sender {
    side: Side,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    hz: f64,
    phase: usize,
    g722: Option<G722Encoder>,
}

impl Sender {
    fn new(side: Side) -> Self {
        let (ssrc, hz) = match side {
            Side::Trunk => (0x1111, EXTERNAL_HZ),
            Side::Pbx => (0x2222, PRACTICE_HZ),
        };
        Self {
            side,
            ssrc,
            sequence: 1000,
            timestamp: 50_000,
            hz,
            phase: 0,
            g722: None,
        }
    }

    fn tone(&mut self, samples: usize, rate: usize) -> Vec<i16> {
        let start = self.phase;
        self.phase += samples;
        (start..start + samples)
            .map(|n| {
                (8000.0 * (2.0 * std::f64::consts::PI * self.hz * n as f64 / rate as f64).sin())
                    as i16
            })
            .collect()
    }

    /// The next 20 ms of PCMU (or G.722 once switched).
    fn frame(&mut self, arrival: Instant) -> TapPacket {
        let (payload_type, payload) = match self.g722.is_some() {
            false => (
                0,
                self.tone(160, RATE)
                    .into_iter()
                    .map(linear_to_ulaw)
                    .collect(),
            ),
            true => {
                let pcm = self.tone(320, 16000);
                (9, self.g722.as_mut().unwrap().encode(&pcm))
            }
        };
        self.packet(payload_type, false, &payload, 160, arrival)
    }

    fn packet(
        &mut self,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
        advance: u32,
        arrival: Instant,
    ) -> TapPacket {
        let mut data = vec![0x80, payload_type | if marker { 0x80 } else { 0 }];
        data.extend_from_slice(&self.sequence.to_be_bytes());
        data.extend_from_slice(&self.timestamp.to_be_bytes());
        data.extend_from_slice(&self.ssrc.to_be_bytes());
        data.extend_from_slice(payload);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(advance);
        TapPacket {
            from: self.side,
            stream: 0,
            arrival,
            rtcp: false,
            data: Bytes::from(data),
        }
    }

    /// An RFC 4733 event packet for `digit`, `duration` samples in, at the event's
    /// timestamp (which does not advance within an event).
    fn dtmf(&mut self, digit: u8, duration: u16, end: bool, arrival: Instant) -> TapPacket {
        let flags = if end { 0x80 } else { 0 } | 10;
        let payload = [digit, flags, (duration >> 8) as u8, duration as u8];
        self.packet(101, duration == 160, &payload, 0, arrival)
    }
}

/// Both sides send `frames` frames from `offset` after the start, arriving on time.
fn steady_call(
    pipeline: &mut CallPipeline,
    start: Instant,
    offset: Duration,
    frames: u32,
) -> Vec<u8> {
    let mut senders = [Sender::new(Side::Trunk), Sender::new(Side::Pbx)];
    let mut out = Vec::new();
    for n in 0..frames {
        let at = start + offset + FRAME * n;
        for sender in &mut senders {
            pipeline.push(&sender.frame(at)).unwrap();
        }
        pipeline.advance(at + FRAME, &mut out).unwrap();
    }
    out
}

/// The samples of a streaming WAV file, split into channels.
fn channels(wav: &[u8], count: usize) -> Vec<Vec<i16>> {
    assert_eq!(&wav[..4], b"RIFF");
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    (0..count)
        .map(|channel| {
            samples
                .iter()
                .skip(channel)
                .step_by(count)
                .copied()
                .collect()
        })
        .collect()
}

/// The frequency of a stretch, from its zero crossings.
fn frequency(samples: &[i16], rate: usize) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|pair| (pair[0] < 0) != (pair[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / rate as f64)
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// The first sample from which 10 ms windows carry sound.
fn first_sound(samples: &[i16]) -> usize {
    samples
        .chunks(80)
        .position(|window| rms(window) > 1000.0)
        .map_or(samples.len(), |window| window * 80)
}

#[test]
fn recording_is_as_long_as_the_call_with_each_side_on_its_channel() {
    let start = Instant::now();
    let mut pipeline = CallPipeline::new(config(OutputFormat::Wav, Channels::Stereo, 60), start);
    pipeline.set_media(Side::Pbx, pcmu_media(), start);
    pipeline.set_media(Side::Trunk, pcmu_media(), start);

    // Media begins 100 ms after the answer; the call lasts 3 s.
    let mut wav = steady_call(&mut pipeline, start, Duration::from_millis(100), 140);
    let end = start + Duration::from_secs(3);
    pipeline.finish(end, &mut wav).unwrap();

    let [left, right]: [Vec<i16>; 2] = channels(&wav, 2).try_into().unwrap();
    assert_eq!(left.len(), 3 * RATE, "exactly the call's length");
    let speech = 1000..2800;
    let left_hz = frequency(&left[speech.clone()], RATE);
    let right_hz = frequency(&right[speech], RATE);
    assert!(
        (left_hz - EXTERNAL_HZ).abs() < 10.0,
        "left is the external party: {left_hz} Hz"
    );
    assert!(
        (right_hz - PRACTICE_HZ).abs() < 10.0,
        "right is the practice: {right_hz} Hz"
    );
    // Placed where it arrived: 100 ms in, to within one 10 ms window.
    assert!(
        (first_sound(&left) as i64 - 800).abs() <= 80,
        "left starts at {}",
        first_sound(&left)
    );
    assert!((first_sound(&right) as i64 - 800).abs() <= 80);
    // 140 frames from 100 ms end at 2.9 s: the last 100 ms is silence.
    assert!(rms(&left[23_300..24_000]) < 1.0 && rms(&right[23_300..24_000]) < 1.0);
    assert_eq!(pipeline.stats().jitter.lost_samples, 0);
}

#[test]
fn jitter_of_200_ms_and_reordering_record_the_same_audio_as_a_clean_network() {
    let start = Instant::now();
    let make = || {
        let mut pipeline =
            CallPipeline::new(config(OutputFormat::Wav, Channels::Stereo, 250), start);
        pipeline.set_media(Side::Pbx, pcmu_media(), start);
        pipeline.set_media(Side::Trunk, pcmu_media(), start);
        pipeline
    };
    let mut clean = make();
    let mut clean_wav = steady_call(&mut clean, start, Duration::ZERO, 150);
    clean
        .finish(start + Duration::from_secs(3), &mut clean_wav)
        .unwrap();

    // The same packets, each delayed by up to 200 ms (the first on time), so that
    // many arrive after later ones.
    let mut jittery = make();
    let mut senders = [Sender::new(Side::Trunk), Sender::new(Side::Pbx)];
    let mut packets = Vec::new();
    let mut seed = 7u64;
    for n in 0..150u32 {
        for sender in &mut senders {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let delay = if n == 0 { 0 } else { (seed >> 33) % 200_000 };
            let sent = start + FRAME * n;
            let packet = sender.frame(sent + Duration::from_micros(delay));
            packets.push(packet);
        }
    }
    packets.sort_by_key(|packet| packet.arrival);
    let mut jittery_wav = Vec::new();
    let mut next = 0;
    for tick in 1..=165u32 {
        let now = start + FRAME * tick;
        while next < packets.len() && packets[next].arrival <= now {
            jittery.push(&packets[next]).unwrap();
            next += 1;
        }
        jittery.advance(now, &mut jittery_wav).unwrap();
    }
    jittery
        .finish(start + Duration::from_secs(3), &mut jittery_wav)
        .unwrap();

    let stats = jittery.stats();
    assert!(
        stats.jitter.reordered > 20,
        "the network reordered: {stats:?}"
    );
    assert_eq!(stats.jitter.late, 0);
    assert_eq!(stats.late_samples, 0);
    assert!(
        jittery_wav == clean_wav,
        "the recording differs from the clean network's"
    );
}

#[test]
fn codec_change_to_g722_mid_call_is_followed_at_the_recording_rate() {
    let start = Instant::now();
    let mut pipeline = CallPipeline::new(config(OutputFormat::Wav, Channels::Stereo, 60), start);
    pipeline.set_media(Side::Pbx, pcmu_media(), start);
    pipeline.set_media(Side::Trunk, pcmu_media(), start);

    let mut practice = Sender::new(Side::Pbx);
    let mut wav = Vec::new();
    for n in 0..150u32 {
        let at = start + FRAME * n;
        if n == 75 {
            // A re-INVITE moved the practice side to G.722.
            let g722 = media("9 101", &["101 telephone-event/8000"], "sendrecv");
            pipeline.set_media(Side::Trunk, g722.clone(), at);
            pipeline.set_media(Side::Pbx, g722, at);
            practice.g722 = Some(G722Encoder::new(Bitrate::Mode1_64000, false, false));
        }
        pipeline.push(&practice.frame(at)).unwrap();
        pipeline.advance(at + FRAME, &mut wav).unwrap();
    }
    pipeline
        .finish(start + Duration::from_secs(3), &mut wav)
        .unwrap();

    assert_eq!(
        pipeline.sample_rate(),
        Some(8000),
        "chosen at the start, from PCMU"
    );
    let [_, right]: [Vec<i16>; 2] = channels(&wav, 2).try_into().unwrap();
    assert_eq!(right.len(), 3 * RATE);
    let before = frequency(&right[2000..11000], RATE);
    let after = frequency(&right[13000..23000], RATE);
    assert!(
        (before - PRACTICE_HZ).abs() < 10.0,
        "PCMU part: {before} Hz"
    );
    assert!((after - PRACTICE_HZ).abs() < 15.0, "G.722 part: {after} Hz");
    assert!(
        rms(&right[13000..23000]) > 3000.0,
        "G.722 part is loud: {}",
        rms(&right[13000..23000])
    );
    assert_eq!(pipeline.stats().undecodable_packets, 0);
}

#[test]
fn dtmf_and_hold_are_events_and_dtmf_is_not_audio() {
    let start = Instant::now();
    let mut pipeline = CallPipeline::new(config(OutputFormat::Wav, Channels::Stereo, 60), start);
    pipeline.set_media(Side::Pbx, pcmu_media(), start);
    pipeline.set_media(Side::Trunk, pcmu_media(), start);

    let mut external = Sender::new(Side::Trunk);
    let mut wav = Vec::new();
    for n in 0..100u32 {
        let at = start + FRAME * n;
        match n {
            // Digit 5 for 100 ms from 1 s: five event packets, the last marked end.
            50..=54 => {
                let duration = (n - 49) as u16 * 160;
                let packet = external.dtmf(5, duration, n == 54, at);
                pipeline.push(&packet).unwrap();
                if n == 54 {
                    external.timestamp = external.timestamp.wrapping_add(800);
                }
            }
            _ => pipeline.push(&external.frame(at)).unwrap(),
        }
        if n == 60 {
            pipeline.set_media(
                Side::Pbx,
                media("0 101", &["101 telephone-event/8000"], "sendonly"),
                at,
            );
        }
        if n == 80 {
            pipeline.set_media(Side::Pbx, pcmu_media(), at);
        }
        pipeline.advance(at + FRAME, &mut wav).unwrap();
    }
    pipeline
        .finish(start + Duration::from_secs(2), &mut wav)
        .unwrap();

    let events = pipeline.events();
    let dtmf: Vec<_> = events
        .iter()
        .filter(|event| matches!(event.kind, EventKind::Dtmf { .. }))
        .collect();
    assert_eq!(dtmf.len(), 1, "{events:?}");
    assert_eq!(dtmf[0].party, Party::External);
    assert_eq!(dtmf[0].at_ms, 1000);
    assert_eq!(
        dtmf[0].kind,
        EventKind::Dtmf {
            digit: "5".to_owned(),
            duration_ms: 100
        }
    );
    let hold = events
        .iter()
        .find(|event| matches!(event.kind, EventKind::Hold { .. }))
        .expect("a hold event");
    assert_eq!((hold.party, hold.at_ms), (Party::Practice, 1200));
    assert_eq!(
        hold.kind,
        EventKind::Hold {
            duration_ms: Some(400)
        }
    );
    // The digit's 100 ms is silence in the recording, not a tone.
    let [left, _]: [Vec<i16>; 2] = channels(&wav, 2).try_into().unwrap();
    assert!(
        rms(&left[8000 + 80..8800 - 80]) < 1.0,
        "{}",
        rms(&left[8000..8800])
    );
}

#[test]
fn unknown_and_undecodable_payload_types_are_counted_and_skipped() {
    let start = Instant::now();
    let mut pipeline = CallPipeline::new(config(OutputFormat::Wav, Channels::Stereo, 60), start);
    pipeline.set_media(Side::Pbx, pcmu_media(), start);
    pipeline.set_media(Side::Trunk, pcmu_media(), start);
    let mut external = Sender::new(Side::Trunk);
    let mut wav = Vec::new();
    for n in 0..20u32 {
        let at = start + FRAME * n;
        let payload_type = if n % 2 == 0 { 18 } else { 77 };
        pipeline
            .push(&external.packet(payload_type, false, &[0x55; 20], 160, at))
            .unwrap();
        pipeline.advance(at + FRAME, &mut wav).unwrap();
    }
    pipeline
        .push(&TapPacket {
            from: Side::Trunk,
            stream: 0,
            arrival: start,
            rtcp: false,
            data: Bytes::from_static(&[0x12, 0x34]),
        })
        .unwrap();
    pipeline
        .finish(start + Duration::from_millis(500), &mut wav)
        .unwrap();

    let stats = pipeline.stats();
    assert_eq!(
        stats.undecodable_packets, 10,
        "G.729 is known but not decodable"
    );
    assert_eq!(stats.unknown_payload_packets, 10, "77 is named nowhere");
    assert_eq!(stats.malformed_packets, 1);
    assert_eq!(pipeline.undecodable_codecs(), ["G729"]);
    let [left, _]: [Vec<i16>; 2] = channels(&wav, 2).try_into().unwrap();
    assert_eq!(left.len(), 4000);
    assert!(rms(&left) < 1.0);
}

#[test]
fn mono_recording_holds_both_parties_in_one_channel() {
    let start = Instant::now();
    let mut pipeline = CallPipeline::new(config(OutputFormat::Wav, Channels::Mono, 60), start);
    pipeline.set_media(Side::Pbx, pcmu_media(), start);
    pipeline.set_media(Side::Trunk, pcmu_media(), start);
    let mut wav = steady_call(&mut pipeline, start, Duration::ZERO, 50);
    pipeline
        .finish(start + Duration::from_secs(1), &mut wav)
        .unwrap();
    let [mono]: [Vec<i16>; 1] = channels(&wav, 1).try_into().unwrap();
    assert_eq!(mono.len(), RATE);
    // The sum of a 400 Hz and a 1000 Hz tone correlates with each.
    let reference = |hz: f64| -> Vec<f64> {
        (0..mono.len())
            .map(|n| (2.0 * std::f64::consts::PI * hz * n as f64 / RATE as f64).sin())
            .collect()
    };
    for hz in [EXTERNAL_HZ, PRACTICE_HZ] {
        let reference = reference(hz);
        let window = 1000..7000;
        let dot: f64 = window
            .clone()
            .map(|n| f64::from(mono[n]) * reference[n])
            .sum();
        let amplitude = 2.0 * dot / window.len() as f64;
        assert!(
            amplitude.abs() > 5000.0,
            "{hz} Hz present at amplitude {amplitude}"
        );
    }
}

#[test]
fn ogg_opus_output_is_an_ogg_stream_from_the_first_byte() {
    let start = Instant::now();
    let mut pipeline =
        CallPipeline::new(config(OutputFormat::OggOpus, Channels::Stereo, 60), start);
    pipeline.set_media(Side::Pbx, pcmu_media(), start);
    pipeline.set_media(Side::Trunk, pcmu_media(), start);
    let mut ogg = steady_call(&mut pipeline, start, Duration::ZERO, 50);
    let encoded = pipeline
        .finish(start + Duration::from_secs(1), &mut ogg)
        .unwrap();
    assert!(encoded <= Duration::from_secs(1));
    assert_eq!(&ogg[..4], b"OggS");
    assert!(ogg.windows(8).any(|w| w == b"OpusHead"));
}

#[test]
fn transfer_to_another_phone_keeps_the_timeline_and_both_phones_audio() {
    let start = Instant::now();
    let mut pipeline = CallPipeline::new(config(OutputFormat::Wav, Channels::Stereo, 60), start);
    pipeline.set_media(Side::Pbx, pcmu_media(), start);
    pipeline.set_media(Side::Trunk, pcmu_media(), start);

    // The practice's first phone talks for 1 s; after 500 ms of silence (the PBX
    // re-INVITEs the trunk to the new phone) the second phone, with its own SSRC,
    // sequence numbers and timestamps, talks for 1 s.
    let mut first = Sender::new(Side::Pbx);
    let mut second = Sender::new(Side::Pbx);
    second.ssrc = 0x3333;
    second.sequence = 40_000;
    second.timestamp = 7;
    second.hz = 600.0;
    let mut wav = Vec::new();
    for n in 0..125u32 {
        let at = start + FRAME * n;
        match n {
            0..50 => pipeline.push(&first.frame(at)).unwrap(),
            75..125 => pipeline.push(&second.frame(at)).unwrap(),
            _ => {}
        }
        pipeline.advance(at + FRAME, &mut wav).unwrap();
    }
    pipeline
        .finish(start + Duration::from_millis(2500), &mut wav)
        .unwrap();

    let [_, right]: [Vec<i16>; 2] = channels(&wav, 2).try_into().unwrap();
    assert_eq!(right.len(), 20_000);
    let (before, gap, after) = (&right[400..7600], &right[8400..11600], &right[12400..19600]);
    assert!((frequency(before, RATE) - PRACTICE_HZ).abs() < 10.0);
    assert!(rms(gap) < 1.0, "silence while the call moved");
    assert!(
        (frequency(after, RATE) - 600.0).abs() < 10.0,
        "{}",
        frequency(after, RATE)
    );
    // The second phone is placed where it arrived, 1.5 s in.
    assert!((first_sound(&right[8000..]) as i64 + 8000 - 12_000).abs() <= 80);
    assert_eq!(pipeline.stats().jitter.ssrc_changes, 1);
}
