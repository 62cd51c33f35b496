//! The jitter buffer fed with generated packet streams.

use std::time::{Duration, Instant};

use callvault_recorder::jitter::{GapKind, JitterBuffer, JitterConfig, Playout};
use callvault_recorder::rtp;
use proptest::prelude::*;

const RATE: u32 = 8000;
const FRAME: u64 = 160;
const PCMU: u8 = 0;
const DTMF: u8 = 101;
const CN: u8 = 13;

/// One generated packet: its bytes and when it arrives, in µs after the start.
#[derive(Debug, Clone)]
struct Sent {
    arrival_us: u64,
    bytes: Vec<u8>,
}

/// A sender of 20 ms PCMU frames, with knobs for what networks do to them.
struct Generator {
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    /// When the next packet is sent, in µs after the recording's start.
    send_us: u64,
    /// Wall-clock µs between packets (20 000 when the clocks agree).
    interval_us: u64,
    packets: Vec<Sent>,
}

impl Generator {
    fn new(sequence: u16, timestamp: u32, start_ms: u64) -> Self {
        Self {
            sequence,
            timestamp,
            ssrc: 0x1234_5678,
            send_us: start_ms * 1000,
            interval_us: 20_000,
            packets: Vec::new(),
        }
    }

    /// Sends one audio frame whose payload is its index, arriving after `delay_us`.
    fn frame(&mut self, delay_us: u64) {
        let payload = self.packets.len().to_be_bytes().to_vec();
        self.packet(PCMU, false, payload, delay_us);
        self.advance(FRAME as u32);
    }

    /// Skips a frame: sequence, timestamp and time move on, nothing is sent.
    fn lose(&mut self) {
        self.sequence = self.sequence.wrapping_add(1);
        self.advance(FRAME as u32);
    }

    /// Moves timestamp and time on by `ms` without sending (hold).
    fn pause(&mut self, ms: u64, timestamps_continue: bool) {
        self.send_us += ms * 1000;
        if timestamps_continue {
            self.timestamp = self.timestamp.wrapping_add(ms as u32 * RATE / 1000);
        }
    }

    fn packet(&mut self, payload_type: u8, marker: bool, payload: Vec<u8>, delay_us: u64) {
        let mut bytes = vec![0x80, payload_type | if marker { 0x80 } else { 0 }];
        bytes.extend_from_slice(&self.sequence.to_be_bytes());
        bytes.extend_from_slice(&self.timestamp.to_be_bytes());
        bytes.extend_from_slice(&self.ssrc.to_be_bytes());
        bytes.extend_from_slice(&payload);
        self.packets.push(Sent {
            arrival_us: self.send_us + delay_us,
            bytes,
        });
        self.sequence = self.sequence.wrapping_add(1);
    }

    fn advance(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.send_us += self.interval_us * u64::from(samples) / FRAME;
    }
}

fn buffer(depth_ms: u64, start: Instant) -> JitterBuffer {
    let config = JitterConfig {
        clock_rate: RATE,
        depth: Duration::from_millis(depth_ms),
    };
    let mut buffer = JitterBuffer::new(config, start);
    buffer.set_event_payload_types(Some(DTMF), Some(CN));
    buffer
}

/// Feeds packets in arrival order, polling every 10 ms and at each arrival.
fn run(buffer: &mut JitterBuffer, start: Instant, packets: &[Sent]) -> Vec<Playout> {
    let mut packets = packets.to_vec();
    packets.sort_by_key(|sent| sent.arrival_us);
    let mut out = Vec::new();
    let mut next_poll_us = 0;
    for sent in &packets {
        while next_poll_us < sent.arrival_us {
            out.extend(buffer.poll(start + Duration::from_micros(next_poll_us)));
            next_poll_us += 10_000;
        }
        let arrival = start + Duration::from_micros(sent.arrival_us);
        out.extend(buffer.poll(arrival));
        let packet = rtp::parse(&sent.bytes).expect("generated packets are valid rtp");
        buffer.push(&packet, arrival);
    }
    out.extend(buffer.finish());
    out
}

/// Checks that audio and gaps tile the timeline from 0; returns where it ends.
fn timeline_end(out: &[Playout]) -> u64 {
    let mut end = 0;
    for item in out {
        let (at, samples) = match item {
            Playout::Frame { at, .. } => (*at, FRAME),
            Playout::Gap { at, samples, .. } | Playout::ComfortNoise { at, samples } => {
                (*at, *samples)
            }
            Playout::Dtmf { .. } => continue,
        };
        assert_eq!(at, end, "timeline not contiguous at {item:?}");
        end = at + samples;
    }
    end
}

fn frames(out: &[Playout]) -> Vec<(u64, Vec<u8>)> {
    out.iter()
        .filter_map(|item| match item {
            Playout::Frame { at, payload, .. } => Some((*at, payload.clone())),
            _ => None,
        })
        .collect()
}

fn gaps(out: &[Playout]) -> Vec<(u64, u64, GapKind)> {
    out.iter()
        .filter_map(|item| match item {
            Playout::Gap { at, samples, kind } => Some((*at, *samples, *kind)),
            _ => None,
        })
        .collect()
}

/// A tiny deterministic generator of delays.
fn delays(seed: u64, count: usize, max_us: u64) -> Vec<u64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % max_us
        })
        .collect()
}

fn in_order(count: usize) -> Vec<Sent> {
    let mut generator = Generator::new(1000, 5000, 500);
    (0..count).for_each(|_| generator.frame(0));
    generator.packets
}

#[test]
fn in_order_stream_is_contiguous_frames() {
    let start = Instant::now();
    let out = run(&mut buffer(60, start), start, &in_order(100));

    assert_eq!(
        out[0],
        Playout::Gap {
            at: 0,
            samples: 4000,
            kind: GapKind::Silence
        }
    );
    let frames = frames(&out);
    assert_eq!(frames.len(), 100);
    for (index, (at, payload)) in frames.iter().enumerate() {
        assert_eq!(*at, 4000 + index as u64 * FRAME);
        assert_eq!(*payload, index.to_be_bytes());
    }
    assert_eq!(timeline_end(&out), 4000 + 100 * FRAME);
}

#[test]
fn duplicates_are_dropped() {
    let start = Instant::now();
    let mut packets = in_order(50);
    packets.extend(in_order(50).into_iter().map(|sent| Sent {
        arrival_us: sent.arrival_us + 5000,
        ..sent
    }));
    let mut buffer = buffer(60, start);
    let out = run(&mut buffer, start, &packets);

    assert_eq!(out, run(&mut self::buffer(60, start), start, &in_order(50)));
    assert_eq!(buffer.stats().duplicates, 50);
    assert_eq!(buffer.stats().received, 100);
}

#[test]
fn loss_is_a_loss_gap_of_exact_length() {
    let start = Instant::now();
    let mut generator = Generator::new(7, 0, 500);
    (0..10).for_each(|_| generator.frame(0));
    (0..3).for_each(|_| generator.lose());
    (0..10).for_each(|_| generator.frame(0));
    let mut buffer = buffer(60, start);
    let out = run(&mut buffer, start, &generator.packets);

    let loss = (4000 + 10 * FRAME, 3 * FRAME, GapKind::Loss);
    assert_eq!(gaps(&out), vec![(0, 4000, GapKind::Silence), loss]);
    assert_eq!(buffer.stats().lost_samples, 3 * FRAME);
    assert_eq!(timeline_end(&out), 4000 + 23 * FRAME);
}

#[test]
fn sequence_and_timestamp_wrap_keep_the_timeline() {
    let start = Instant::now();
    let mut generator = Generator::new(65_530, u32::MAX - 800, 500);
    (0..20).for_each(|_| generator.frame(0));
    let out = run(&mut buffer(60, start), start, &generator.packets);

    assert_eq!(frames(&out).len(), 20);
    assert_eq!(gaps(&out).len(), 1);
    assert_eq!(timeline_end(&out), 4000 + 20 * FRAME);
}

#[test]
fn ssrc_change_reanchors_where_the_new_stream_arrives() {
    let start = Instant::now();
    let mut generator = Generator::new(1, 1, 500);
    (0..50).for_each(|_| generator.frame(0));
    generator.pause(1000, false);
    generator.ssrc = 99;
    generator.sequence = 40_000;
    generator.timestamp = 123_456_789;
    (0..50).for_each(|_| generator.frame(0));
    let mut buffer = buffer(60, start);
    let out = run(&mut buffer, start, &generator.packets);

    let resumed = 4000 + 50 * FRAME + 8000;
    assert_eq!(gaps(&out)[1], (4000 + 50 * FRAME, 8000, GapKind::Silence));
    assert_eq!(frames(&out)[50].0, resumed);
    assert_eq!(buffer.stats().ssrc_changes, 1);
    assert_eq!(timeline_end(&out), resumed + 50 * FRAME);
}

#[test]
fn source_restarting_sequence_and_timestamps_is_reanchored() {
    let start = Instant::now();
    let mut generator = Generator::new(30_000, 900_000, 500);
    (0..50).for_each(|_| generator.frame(0));
    generator.sequence = 100;
    generator.timestamp = 5;
    (0..50).for_each(|_| generator.frame(0));
    let mut buffer = buffer(60, start);
    let out = run(&mut buffer, start, &generator.packets);

    // The first packet of the new source waits for a second to confirm it.
    assert_eq!(buffer.stats().late, 1);
    assert_eq!(buffer.stats().timestamp_jumps, 1);
    assert_eq!(frames(&out).len(), 99);
    assert_eq!(gaps(&out)[1], (4000 + 50 * FRAME, FRAME, GapKind::Silence));
    assert_eq!(timeline_end(&out), 4000 + 100 * FRAME);
}

fn hold(timestamps_continue: bool) -> (Vec<Playout>, JitterBuffer) {
    let start = Instant::now();
    let mut generator = Generator::new(1, 1, 500);
    (0..50).for_each(|_| generator.frame(0));
    generator.pause(10_000, timestamps_continue);
    (0..50).for_each(|_| generator.frame(0));
    let mut buffer = buffer(60, start);
    let out = run(&mut buffer, start, &generator.packets);
    (out, buffer)
}

#[test]
fn hold_with_continuing_timestamps_is_ten_seconds_of_silence() {
    let (out, buffer) = hold(true);

    assert_eq!(gaps(&out)[1], (4000 + 50 * FRAME, 80_000, GapKind::Silence));
    assert_eq!(timeline_end(&out), 4000 + 100 * FRAME + 80_000);
    assert_eq!(buffer.stats().timestamp_jumps, 0);
}

#[test]
fn hold_with_frozen_timestamps_reanchors_to_ten_seconds_of_silence() {
    let (out, buffer) = hold(false);

    assert_eq!(gaps(&out)[1], (4000 + 50 * FRAME, 80_000, GapKind::Silence));
    assert_eq!(timeline_end(&out), 4000 + 100 * FRAME + 80_000);
    assert_eq!(buffer.stats().timestamp_jumps, 1);
}

#[test]
fn jitter_of_200_ms_with_depth_200_ms_drops_nothing() {
    let start = Instant::now();
    let mut generator = Generator::new(1, 1, 1000);
    for delay in delays(7, 1000, 200_000) {
        generator.frame(delay);
    }
    let mut buffer = buffer(200, start);
    let out = run(&mut buffer, start, &generator.packets);

    assert_eq!(buffer.stats().late, 0);
    assert_eq!(frames(&out).len(), 1000);
    assert!(buffer.stats().reordered > 0);
    timeline_end(&out);
}

fn drift(interval_us: u64) -> (u64, u64) {
    let start = Instant::now();
    let mut generator = Generator::new(1, 1, 100);
    generator.interval_us = interval_us;
    for delay in delays(11, 180_000, 30_000) {
        generator.frame(delay);
    }
    let mut buffer = buffer(60, start);
    let out = run(&mut buffer, start, &generator.packets);
    let wall_clock_end = generator.send_us * u64::from(RATE) / 1_000_000;
    let stats = buffer.stats();
    // 3.6 s of drift is corrected in steps of a little over 20 ms.
    assert!((100..200).contains(&stats.drift_corrections), "{stats:?}");
    assert_eq!(stats.timestamp_jumps, 0);
    (timeline_end(&out), wall_clock_end)
}

#[test]
fn fast_rtp_clock_stays_within_100_ms_over_an_hour() {
    let (end, wall_clock) = drift(19_980);
    assert!(
        end.abs_diff(wall_clock) < 800,
        "timeline {end} vs wall clock {wall_clock}"
    );
}

#[test]
fn slow_rtp_clock_stays_within_100_ms_over_an_hour() {
    let (end, wall_clock) = drift(20_020);
    assert!(
        end.abs_diff(wall_clock) < 800,
        "timeline {end} vs wall clock {wall_clock}"
    );
}

#[test]
fn dtmf_is_reported_once_with_its_duration() {
    let start = Instant::now();
    let mut generator = Generator::new(1, 1, 500);
    (0..10).for_each(|_| generator.frame(0));
    for (duration, end) in [(400u16, false), (800, false), (1200, false), (1600, true)] {
        generator.send_us += 50_000;
        let repeats = if end { 3 } else { 1 };
        for _ in 0..repeats {
            let flags = if end { 0x80 } else { 0 } | 10;
            let [high, low] = duration.to_be_bytes();
            generator.packet(DTMF, duration == 400, vec![5, flags, high, low], 0);
        }
    }
    generator.timestamp = generator.timestamp.wrapping_add(1600);
    (0..10).for_each(|_| generator.frame(0));
    let out = run(&mut buffer(60, start), start, &generator.packets);

    let events: Vec<_> = out
        .iter()
        .filter(|item| matches!(item, Playout::Dtmf { .. }))
        .collect();
    assert_eq!(
        events,
        vec![&Playout::Dtmf {
            at: 4000 + 10 * FRAME,
            event: 5,
            duration: 1600
        }]
    );
    assert_eq!(gaps(&out)[1], (4000 + 10 * FRAME, 1600, GapKind::Silence));
    assert_eq!(frames(&out).len(), 20);
    timeline_end(&out);
}

#[test]
fn comfort_noise_is_kept_as_an_event_until_speech_resumes() {
    let start = Instant::now();
    let mut generator = Generator::new(1, 1, 500);
    (0..10).for_each(|_| generator.frame(0));
    generator.packet(CN, false, vec![60], 0);
    generator.pause(1000, true);
    generator.packet(PCMU, true, vec![1], 0);
    generator.advance(FRAME as u32);
    (0..10).for_each(|_| generator.frame(0));
    let out = run(&mut buffer(60, start), start, &generator.packets);

    let noise = Playout::ComfortNoise {
        at: 4000 + 10 * FRAME,
        samples: 8000,
    };
    assert!(out.contains(&noise), "{out:?}");
    assert_eq!(gaps(&out).len(), 1);
    assert_eq!(timeline_end(&out), 4000 + 10 * FRAME + 8000 + 11 * FRAME);
}

proptest! {
    #[test]
    fn reordering_within_depth_gives_the_in_order_output(
        delays in proptest::collection::vec(0u64..50_000, 49)
    ) {
        let start = Instant::now();
        let mut generator = Generator::new(65_500, u32::MAX - 3000, 500);
        generator.frame(0);
        for delay in delays {
            generator.frame(delay);
        }
        let mut buffer = buffer(60, start);
        let out = run(&mut buffer, start, &generator.packets);

        prop_assert_eq!(out, run(&mut self::buffer(60, start), start, &in_order_like(&generator)));
        prop_assert_eq!(buffer.stats().late, 0);
    }
}

/// The same packets as `generator` sent, each arriving when it was sent.
fn in_order_like(generator: &Generator) -> Vec<Sent> {
    let mut packets = generator.packets.clone();
    for (index, sent) in packets.iter_mut().enumerate() {
        sent.arrival_us = 500_000 + index as u64 * 20_000;
    }
    packets
}
