//! A jitter buffer that places one direction's frames on the call's timeline.
//!
//! Positions are counted in samples at the stream's RTP clock rate since the
//! recording started. The first packet of a stream is placed where it arrived; every
//! later packet is placed by its RTP timestamp relative to that anchor, so network
//! jitter does not move audio. The buffer holds packets for `depth` so that late and
//! reordered packets still find their place, then releases the timeline in order:
//! frames, gaps between them, and telephone events and comfort noise as events.
//!
//! How each irregularity is handled:
//!
//! - Duplicates (a sequence number seen already) are dropped.
//! - A packet whose stretch of the timeline was already released is late and dropped.
//! - A new SSRC, or a timestamp that disagrees with the arrival time by more than
//!   [`TIMESTAMP_JUMP`], re-anchors the stream where the packet arrived; the gap
//!   before it is [`GapKind::Silence`].
//! - A gap between two frames is [`GapKind::Loss`] when sequence numbers are missing
//!   between them, and [`GapKind::Silence`] when none are (the sender stopped
//!   sending: hold, inactive, or silence suppression).
//! - Clock drift: the RTP clock and the wall clock may disagree by a fraction of a
//!   percent, which over an hour would move the audio seconds away from the call.
//!   Over each [`DRIFT_WINDOW`] of arrivals the buffer keeps the smallest offset
//!   between where a packet arrived and where its timestamp places it (the
//!   least-delayed packet, so jitter does not count). When that minimum has moved
//!   more than [`DRIFT_THRESHOLD`] from the first window's minimum, the timeline is
//!   corrected by the whole difference at the next frame released: later by a short
//!   [`GapKind::Loss`] gap (the decoder conceals it), or earlier by skipping whole
//!   frames. At 0.1 % drift this is a 20 ms step about every 20 s.
//!
//! - A packet more than [`MAX_MISORDER`] sequence numbers behind is stale and
//!   dropped, unless the next packet follows it: then the sender restarted its
//!   numbering (a new source behind the same SSRC) and the stream is re-anchored.
//!
//! Known limits: a packet sent before the stream's first packet but arriving after
//! it is placed before the anchor and is dropped as late if that falls before the
//! recording's start. Packets of the SSRC that was replaced are dropped as late. The
//! first packet of a restarted sequence is dropped. Telephone events are placed where
//! they began but released when they end, so a [`Playout::Dtmf`] may follow frames
//! later than its `at`. Nothing is released while no packets arrive: a hold's
//! silence comes out when the stream resumes or at [`JitterBuffer::finish`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::rtp::RtpPacket;

/// A timestamp further than this from the arrival time re-anchors the stream.
pub const TIMESTAMP_JUMP: Duration = Duration::from_secs(1);

/// How long a window of arrivals is when measuring clock drift.
pub const DRIFT_WINDOW: Duration = Duration::from_secs(2);

/// How far the drift may go before the timeline is corrected.
pub const DRIFT_THRESHOLD: Duration = Duration::from_millis(20);

/// The frame duration assumed when nothing tells the buffer otherwise.
const DEFAULT_FRAME: Duration = Duration::from_millis(20);

/// The longest RTP frame the buffer believes in (Opus's longest packet).
const MAX_FRAME: Duration = Duration::from_millis(120);

/// How far behind the highest sequence number a packet may be merely reordered.
pub const MAX_MISORDER: i64 = 100;

/// How many sequence numbers back duplicates are remembered.
const DUPLICATE_MEMORY: i64 = 1024;

/// The settings of one direction's jitter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// The RTP clock rate of the stream, in Hz.
    pub clock_rate: u32,
    /// How long to wait for late and reordered packets.
    pub depth: Duration,
}

impl JitterConfig {
    /// A configuration with the default depth of 60 ms.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            depth: Duration::from_millis(60),
        }
    }
}

/// Why a stretch of the timeline has no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// Packets went missing inside a talk spurt; the decoder conceals it.
    Loss,
    /// The sender sent nothing (hold, inactive, silence suppression): silence.
    Silence,
}

/// One item of the timeline released by the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// A frame of audio to decode.
    Frame {
        /// Sample position from the recording's start.
        at: u64,
        /// The RTP payload type, naming the codec.
        payload_type: u8,
        /// The RTP payload.
        payload: Vec<u8>,
    },
    /// A stretch with no audio.
    Gap {
        /// Sample position from the recording's start.
        at: u64,
        /// How long the gap is, in samples.
        samples: u64,
        /// Why there is no audio.
        kind: GapKind,
    },
    /// An RFC 4733 telephone event, released once it has ended.
    Dtmf {
        /// Sample position where the event began.
        at: u64,
        /// The event code (0-9, 10 for *, 11 for #, ...).
        event: u8,
        /// How long the event lasted, in samples.
        duration: u32,
    },
    /// RFC 3389 comfort noise: silence in the recording, kept as an event.
    ComfortNoise {
        /// Sample position from the recording's start.
        at: u64,
        /// How long it lasts, in samples.
        samples: u64,
    },
}

/// Counters of what the buffer saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed, including those then dropped.
    pub received: u64,
    /// Packets dropped because their sequence number was seen already.
    pub duplicates: u64,
    /// Packets dropped because their stretch was already released.
    pub late: u64,
    /// Samples released as [`GapKind::Loss`].
    pub lost_samples: u64,
    /// Packets that arrived after a packet with a higher sequence number.
    pub reordered: u64,
    /// Times the SSRC changed.
    pub ssrc_changes: u64,
    /// Times a timestamp jump re-anchored the stream.
    pub timestamp_jumps: u64,
    /// Times the timeline was corrected for clock drift.
    pub drift_corrections: u64,
}

/// What a buffered packet becomes when released.
#[derive(Debug)]
enum Content {
    Audio { payload_type: u8, payload: Vec<u8> },
    ComfortNoise,
    Dtmf { event: u8, end: bool, duration: u32 },
}

/// A packet waiting in the buffer.
#[derive(Debug)]
struct Entry {
    /// Timeline position before drift correction.
    position: i64,
    sequence: i64,
    marker: bool,
    /// Set when the gap before this entry is known to be silence (a new anchor).
    silence_before: bool,
    content: Content,
}

impl Entry {
    fn occupies_time(&self) -> bool {
        !matches!(self.content, Content::Dtmf { .. })
    }
}

/// Where a pushed packet goes.
#[derive(Debug)]
struct Placement {
    sequence: i64,
    position: i64,
    /// The packet began a new anchor, so silence precedes it.
    silence_before: bool,
    reordered: bool,
}

impl Placement {
    fn new(sequence: i64, position: i64, silence_before: bool) -> Self {
        Self {
            sequence,
            position,
            silence_before,
            reordered: false,
        }
    }
}

/// The state of the current RTP stream (one SSRC).
#[derive(Debug)]
struct Stream {
    ssrc: u32,
    /// Added to this stream's extended sequence numbers to keep them increasing
    /// across streams.
    sequence_offset: i64,
    highest_sequence: i64,
    highest_timestamp: i64,
    anchor_position: i64,
    anchor_timestamp: i64,
}

impl Stream {
    fn extend_sequence(&self, sequence: u16) -> i64 {
        let delta = sequence.wrapping_sub(self.highest_sequence as u16) as i16;
        self.highest_sequence + i64::from(delta)
    }

    fn extend_timestamp(&self, timestamp: u32) -> i64 {
        let delta = timestamp.wrapping_sub(self.highest_timestamp as u32) as i32;
        self.highest_timestamp + i64::from(delta)
    }
}

/// The smallest arrival offset per window, and the first window's as reference.
#[derive(Debug, Default)]
struct DriftTracker {
    reference: Option<i64>,
    window_minimum: Option<i64>,
    window_end: i64,
}

impl DriftTracker {
    /// Records one offset; at a window's end returns how far the timeline should move.
    fn observe(&mut self, offset: i64, arrival: i64, window: i64, threshold: i64) -> i64 {
        if self.window_minimum.is_none() {
            self.window_end = arrival + window;
        }
        let minimum = self
            .window_minimum
            .map_or(offset, |minimum| minimum.min(offset));
        self.window_minimum = Some(minimum);
        if arrival < self.window_end {
            return 0;
        }

        self.window_minimum = None;
        let Some(reference) = self.reference else {
            self.reference = Some(minimum);
            return 0;
        };
        let drift = minimum - reference;
        if drift.abs() > threshold {
            drift
        } else {
            0
        }
    }
}

/// One direction's jitter buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    clock_rate: u32,
    depth: i64,
    start: Instant,
    dtmf: Option<u8>,
    comfort_noise: Option<u8>,
    stream: Option<Stream>,
    replaced_ssrc: Option<u32>,
    /// The last packet far behind the stream's sequence numbers.
    restart_candidate: Option<u16>,
    /// Waiting packets by release position, then sequence number.
    entries: BTreeMap<(i64, i64), Entry>,
    seen: BTreeSet<i64>,
    /// The end of the furthest audio accepted, before drift correction.
    furthest_end: i64,
    drift: DriftTracker,
    /// Drift correction applied to positions released from now on.
    shift: i64,
    /// Drift correction measured but not yet applied.
    pending_shift: i64,
    /// Everything before this position has been released.
    released: i64,
    last_released_sequence: Option<i64>,
    previous_duration: i64,
    reported_events: BTreeSet<i64>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer for a recording that began at `start`.
    pub fn new(config: JitterConfig, start: Instant) -> Self {
        let clock_rate = config.clock_rate.max(1);
        let samples = |duration: Duration| to_samples(duration, clock_rate);
        Self {
            clock_rate,
            depth: samples(config.depth),
            start,
            dtmf: None,
            comfort_noise: None,
            stream: None,
            replaced_ssrc: None,
            restart_candidate: None,
            entries: BTreeMap::new(),
            seen: BTreeSet::new(),
            furthest_end: 0,
            drift: DriftTracker::default(),
            shift: 0,
            pending_shift: 0,
            released: 0,
            last_released_sequence: None,
            previous_duration: samples(DEFAULT_FRAME),
            reported_events: BTreeSet::new(),
            stats: JitterStats::default(),
        }
    }

    /// Names the payload types of telephone events and comfort noise.
    pub fn set_event_payload_types(&mut self, dtmf: Option<u8>, comfort_noise: Option<u8>) {
        self.dtmf = dtmf;
        self.comfort_noise = comfort_noise;
    }

    /// Takes one packet that arrived at `arrival`.
    pub fn push(&mut self, packet: &RtpPacket<'_>, arrival: Instant) {
        self.stats.received += 1;
        let arrival = self.position(arrival);
        let header = &packet.header;
        if self.replaced_ssrc == Some(header.ssrc) {
            tracing::trace!(ssrc = header.ssrc, "packet of a replaced ssrc dropped");
            self.stats.late += 1;
            return;
        }
        let Some(content) = self.content(packet) else {
            return;
        };

        let span = match content {
            Content::Dtmf { duration, .. } => i64::from(duration),
            _ => 0,
        };
        let Placement {
            sequence,
            position,
            silence_before,
            reordered,
        } = self.place(packet, arrival, span);
        if !self.seen.insert(sequence) {
            self.stats.duplicates += 1;
            return;
        }
        self.forget_old_sequences(sequence);
        if reordered {
            self.stats.reordered += 1;
        }

        let entry = Entry {
            position,
            sequence,
            marker: header.marker,
            silence_before,
            content,
        };
        if entry.position + self.shift < self.released && entry.occupies_time() {
            tracing::trace!(sequence, "late packet dropped");
            self.stats.late += 1;
            return;
        }
        if entry.occupies_time() {
            self.observe_drift(entry.position, arrival);
            self.furthest_end = self
                .furthest_end
                .max(entry.position + self.previous_duration);
        }
        let order = self.release_order(&entry);
        self.entries.insert((order, sequence), entry);
    }

    /// Releases, in timeline order, everything older than the depth.
    pub fn poll(&mut self, now: Instant) -> Vec<Playout> {
        let horizon = self.position(now) - self.depth;
        self.release(horizon)
    }

    /// Releases everything left, at the end of the call.
    pub fn finish(&mut self) -> Vec<Playout> {
        self.release(i64::MAX)
    }

    /// What the buffer has seen so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Samples since the recording's start at `instant`.
    fn position(&self, instant: Instant) -> i64 {
        to_samples(
            instant.saturating_duration_since(self.start),
            self.clock_rate,
        )
    }

    /// Reads what a packet carries; `None` for a malformed telephone event.
    fn content(&self, packet: &RtpPacket<'_>) -> Option<Content> {
        let payload_type = packet.header.payload_type;
        if Some(payload_type) == self.comfort_noise {
            return Some(Content::ComfortNoise);
        }
        if Some(payload_type) != self.dtmf {
            let payload = packet.payload.to_vec();
            return Some(Content::Audio {
                payload_type,
                payload,
            });
        }

        // RFC 4733 §2.3: event, E|R|volume, then a 16-bit duration.
        let Some(&[event, flags, high, low]) = packet.payload.get(..4) else {
            tracing::debug!(len = packet.payload.len(), "telephone event too short");
            return None;
        };
        let duration = u32::from(u16::from_be_bytes([high, low]));
        Some(Content::Dtmf {
            event,
            end: flags & 0x80 != 0,
            duration,
        })
    }

    /// Extends the packet's sequence number and places it on the timeline.
    ///
    /// `span` is how long after its timestamp the packet may rightly arrive: a
    /// telephone event's packets carry the event's start and its duration so far.
    fn place(&mut self, packet: &RtpPacket<'_>, arrival: i64, span: i64) -> Placement {
        let header = &packet.header;
        let Some(stream) = self
            .stream
            .as_ref()
            .filter(|stream| stream.ssrc == header.ssrc)
        else {
            if let Some(old) = self.stream.as_ref() {
                tracing::debug!(old = old.ssrc, new = header.ssrc, "ssrc changed");
                self.replaced_ssrc = Some(old.ssrc);
                self.stats.ssrc_changes += 1;
            }
            return self.anchor_new_stream(packet, arrival);
        };

        let sequence = stream.extend_sequence(header.sequence);
        let timestamp = stream.extend_timestamp(header.timestamp);
        let position = stream.anchor_position + (timestamp - stream.anchor_timestamp);
        let global_sequence = stream.sequence_offset + sequence;
        let advances = sequence > stream.highest_sequence;
        let far_behind = stream.highest_sequence - sequence > MAX_MISORDER;
        let predicted = position + span + self.shift + self.pending_shift;
        let jumped = (arrival - predicted).abs() > to_samples(TIMESTAMP_JUMP, self.clock_rate);

        if jumped && advances {
            tracing::debug!(
                sequence = global_sequence,
                "timestamp jump re-anchors the stream"
            );
            self.stats.timestamp_jumps += 1;
            return self.anchor_new_stream(packet, arrival);
        }
        if far_behind && self.confirms_restart(header.sequence) {
            tracing::debug!(
                sequence = global_sequence,
                "sequence restart re-anchors the stream"
            );
            self.stats.timestamp_jumps += u64::from(jumped);
            return self.anchor_new_stream(packet, arrival);
        }

        let stream = self.stream.as_mut().expect("the stream matched above");
        if advances {
            stream.highest_sequence = sequence;
            stream.highest_timestamp = stream.highest_timestamp.max(timestamp);
        }
        // A stale packet, or one from before a jump, has no place: it is late.
        let position = if jumped || far_behind {
            i64::MIN / 2
        } else {
            position
        };
        Placement {
            reordered: !advances,
            ..Placement::new(global_sequence, position, false)
        }
    }

    /// Whether a packet far behind follows the previous one far behind.
    ///
    /// A sender that restarts its sequence numbers (a new source behind the same
    /// SSRC) sends them in order; a stale duplicate stands alone (RFC 3550 A.1's
    /// probation, with one packet).
    fn confirms_restart(&mut self, sequence: u16) -> bool {
        let confirmed = self.restart_candidate == Some(sequence.wrapping_sub(1));
        self.restart_candidate = Some(sequence);
        confirmed
    }

    /// Starts a stream (first packet or new SSRC) where the packet arrived.
    fn anchor_new_stream(&mut self, packet: &RtpPacket<'_>, arrival: i64) -> Placement {
        let header = &packet.header;
        let sequence = i64::from(header.sequence);
        let next_global = self.stream.as_ref().map_or(1 << 16, |old| {
            old.sequence_offset + old.highest_sequence + DUPLICATE_MEMORY + 1
        });
        let position = self.anchor_position_at(arrival);
        let timestamp = i64::from(header.timestamp);
        self.stream = Some(Stream {
            ssrc: header.ssrc,
            sequence_offset: next_global - sequence,
            highest_sequence: sequence,
            highest_timestamp: timestamp,
            anchor_position: position,
            anchor_timestamp: timestamp,
        });
        self.drift = DriftTracker::default();
        Placement::new(next_global, position, true)
    }

    /// An anchor at the arrival, but never behind audio already accepted.
    fn anchor_position_at(&self, arrival: i64) -> i64 {
        let at_arrival = arrival - self.shift - self.pending_shift;
        at_arrival
            .max(self.furthest_end)
            .max(self.released - self.shift)
    }

    fn forget_old_sequences(&mut self, newest: i64) {
        let keep_from = newest - DUPLICATE_MEMORY;
        while self.seen.first().is_some_and(|&oldest| oldest < keep_from) {
            self.seen.pop_first();
        }
    }

    fn observe_drift(&mut self, position: i64, arrival: i64) {
        let offset = arrival - (position + self.shift + self.pending_shift);
        let window = to_samples(DRIFT_WINDOW, self.clock_rate);
        let threshold = to_samples(DRIFT_THRESHOLD, self.clock_rate);
        let correction = self.drift.observe(offset, arrival, window, threshold);
        if correction != 0 {
            tracing::trace!(correction, "clock drift corrected");
            self.stats.drift_corrections += 1;
            self.pending_shift += correction;
        }
    }

    /// Where an entry sorts: a telephone event sorts at its end, when it is complete.
    fn release_order(&self, entry: &Entry) -> i64 {
        match entry.content {
            Content::Dtmf { duration, .. } => {
                let end = entry.position + i64::from(duration);
                // An event is never late: it sorts no earlier than what is released.
                end.max(self.released - self.shift)
            }
            _ => entry.position,
        }
    }

    fn release(&mut self, horizon: i64) -> Vec<Playout> {
        let mut out = Vec::new();
        while let Some(entry) = self.next_due(horizon) {
            match entry.content {
                Content::Dtmf { .. } => self.release_event(entry, &mut out),
                _ => self.release_audio(entry, &mut out),
            }
        }
        out
    }

    fn next_due(&mut self, horizon: i64) -> Option<Entry> {
        let (&(order, _), first) = self.entries.first_key_value()?;
        if order.saturating_add(self.shift) > horizon {
            return None;
        }
        // Comfort noise lasts until the next packet: wait for it, or for the end.
        let alone = self.entries.len() == 1;
        if matches!(first.content, Content::ComfortNoise) && alone && horizon != i64::MAX {
            return None;
        }
        self.entries.pop_first().map(|(_, entry)| entry)
    }

    fn release_event(&mut self, entry: Entry, out: &mut Vec<Playout>) {
        self.note_released_sequence(entry.sequence);
        let Content::Dtmf {
            event,
            end: true,
            duration,
        } = entry.content
        else {
            return;
        };
        // The end packet is sent three times (RFC 4733 §2.5.1.4): report it once.
        if self.reported_events.insert(entry.position) {
            let at = to_position(entry.position + self.shift);
            out.push(Playout::Dtmf {
                at,
                event,
                duration,
            });
        }
    }

    fn release_audio(&mut self, entry: Entry, out: &mut Vec<Playout>) {
        let duration = self.duration_of(&entry);
        let drift_step = self.apply_pending_shift(duration);
        if drift_step < 0 {
            self.note_released_sequence(entry.sequence);
            return;
        }

        let mut at = entry.position + self.shift;
        if at + duration <= self.released {
            self.stats.late += 1;
            return;
        }
        if at < self.released {
            // Overlaps what was released (a re-anchor close behind): move it later.
            self.shift += self.released - at;
            at = self.released;
        }
        if at > self.released {
            let kind = self.gap_kind(&entry, drift_step > 0);
            self.release_gap(at, kind, out);
        }

        out.push(match entry.content {
            Content::Audio {
                payload_type,
                payload,
            } => Playout::Frame {
                at: to_position(at),
                payload_type,
                payload,
            },
            _ => Playout::ComfortNoise {
                at: to_position(at),
                samples: to_position(duration),
            },
        });
        self.released = at + duration;
        self.previous_duration = duration;
        self.note_released_sequence(entry.sequence);
    }

    /// Applies measured drift at this frame: returns the step taken.
    ///
    /// A late clock is corrected by a gap before this frame; an early one by
    /// skipping this frame, once at least half a frame is owed.
    fn apply_pending_shift(&mut self, duration: i64) -> i64 {
        if self.pending_shift > 0 {
            let step = self.pending_shift;
            self.shift += step;
            self.pending_shift = 0;
            return step;
        }
        if self.pending_shift < 0 && -self.pending_shift * 2 >= duration {
            self.shift -= duration;
            self.pending_shift += duration;
            return -duration;
        }
        0
    }

    fn gap_kind(&self, entry: &Entry, drift_step: bool) -> GapKind {
        if drift_step {
            return GapKind::Loss;
        }
        let follows = self
            .last_released_sequence
            .is_some_and(|last| entry.sequence == last + 1);
        if entry.silence_before || follows || entry.marker {
            GapKind::Silence
        } else {
            GapKind::Loss
        }
    }

    fn release_gap(&mut self, until: i64, kind: GapKind, out: &mut Vec<Playout>) {
        let samples = to_position(until - self.released);
        if kind == GapKind::Loss {
            self.stats.lost_samples += samples;
        }
        out.push(Playout::Gap {
            at: to_position(self.released),
            samples,
            kind,
        });
        self.released = until;
    }

    /// The timestamp difference to the next frame, or the previous duration.
    ///
    /// Comfort noise lasts until the next frame. A frame's difference is trusted
    /// only from its direct successor: across missing sequence numbers (lost audio,
    /// telephone events) or a new talk spurt it says nothing of the frame's length.
    fn duration_of(&self, entry: &Entry) -> i64 {
        let next = self.entries.values().find(|next| next.occupies_time());
        let Some(next) = next else {
            return self.previous_duration;
        };
        let difference = next.position - entry.position;
        if difference <= 0 || next.silence_before {
            return self.previous_duration;
        }
        if matches!(entry.content, Content::ComfortNoise) {
            return difference;
        }
        let successor = next.sequence == entry.sequence + 1 && !next.marker;
        if !successor || difference > to_samples(MAX_FRAME, self.clock_rate) {
            return self.previous_duration;
        }
        difference
    }

    fn note_released_sequence(&mut self, sequence: i64) {
        let last = self
            .last_released_sequence
            .map_or(sequence, |last| last.max(sequence));
        self.last_released_sequence = Some(last);
    }
}

fn to_samples(duration: Duration, clock_rate: u32) -> i64 {
    let samples = duration.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    i64::try_from(samples).unwrap_or(i64::MAX / 2)
}

fn to_position(samples: i64) -> u64 {
    u64::try_from(samples).unwrap_or(0)
}
