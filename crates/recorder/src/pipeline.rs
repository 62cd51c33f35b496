//! One call's recording, without I/O: tap packets and the time in, encoded audio out.
//!
//! ```text
//! packet -> formats (payload type) -> jitter buffer of its direction
//! advance(now): jitter -> decoder -> resampler -> mixer -> encoder -> bytes
//! ```
//!
//! Sample 0 of the recording is the moment recording began (the answer, or the first
//! early media). The mixer takes audio [`PipelineConfig::lag`] behind the wall clock,
//! long enough for the jitter buffer to have released every frame that can still
//! arrive; audio later than that is dropped by the jitter buffer and counted. On
//! [`CallPipeline::finish`] the timeline is cut at the call's end, so the recording is
//! exactly as long as the recorded part of the call.
//!
//! The recording's sample rate is chosen when the first audio is mixed: 16 kHz if
//! either side's SDP prefers a wideband codec (G.722, Opus), else 8 kHz. A codec
//! that changes mid-call is decoded and resampled to that rate.

use std::collections::hash_map::{Entry, HashMap};
use std::time::{Duration, Instant};

use callvault_media::{Side, TapPacket};
use callvault_store::{CallEvent, EventKind};

use crate::codec::{self, Decoder};
use crate::encode::{encoder_for, EncodeError, Encoder, OutputFormat};
use crate::formats::{CallMedia, PayloadFormat, SideMedia};
use crate::jitter::{GapKind, JitterBuffer, JitterConfig, JitterStats, Playout};
use crate::mix::{Channels, Downsampler2x, Mixer, Party, Upsampler2x};
use crate::rtp;

/// The longest RTP frame (Opus, 120 ms): the mixer waits this much past the jitter
/// depth, so that a frame the buffer released is whole before it is mixed.
const LONGEST_FRAME: Duration = Duration::from_millis(120);

/// The sample rate of recordings of narrowband calls.
const NARROWBAND_RATE: u32 = 8000;

/// The sample rate of recordings in which a side prefers a wideband codec.
const WIDEBAND_RATE: u32 = 16000;

/// How a call is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    pub format: OutputFormat,
    pub channels: Channels,
    /// How long each jitter buffer waits for late and reordered packets.
    pub jitter_depth: Duration,
}

impl PipelineConfig {
    /// How far behind the wall clock audio is mixed and encoded.
    pub fn lag(&self) -> Duration {
        self.jitter_depth + LONGEST_FRAME
    }
}

/// Counts of what the pipeline could not record as given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// RTP packets of the recorded audio stream, events included.
    pub packets: u64,
    /// Packets that are not RTP (too short, wrong version).
    pub malformed_packets: u64,
    /// Packets of a payload type neither SDP nor RFC 3551 names.
    pub unknown_payload_packets: u64,
    /// Packets of a codec the recorder cannot decode (G.729, ...).
    pub undecodable_packets: u64,
    /// Packets that could not be decoded although their codec is supported.
    pub corrupt_packets: u64,
    /// Packets of another stream (video, a second audio line).
    pub other_stream_packets: u64,
    /// Both directions' jitter buffers, summed.
    pub jitter: JitterStats,
    /// Samples the mixer dropped because their time had been written already.
    pub late_samples: u64,
}

/// Why the pipeline could not go on.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the encoder failed")]
    Encode(#[from] EncodeError),
}

/// One call's recording pipeline.
#[derive(Debug)]
pub struct CallPipeline {
    config: PipelineConfig,
    start: Instant,
    media: CallMedia,
    external: Direction,
    practice: Direction,
    output: Option<Output>,
    events: Vec<CallEvent>,
    /// Where an open hold began, per party, in milliseconds.
    holds: [Option<u64>; 2],
    undecodable: Vec<String>,
    stats: PipelineStats,
}

/// The mixer and encoder, made when the sample rate is known.
#[derive(Debug)]
struct Output {
    rate: u32,
    mixer: Mixer,
    encoder: Box<dyn Encoder>,
}

impl CallPipeline {
    /// A pipeline whose sample 0 is `start`.
    pub fn new(config: PipelineConfig, start: Instant) -> Self {
        Self {
            config,
            start,
            media: CallMedia::default(),
            external: Direction::new(Party::External),
            practice: Direction::new(Party::Practice),
            output: None,
            events: Vec::new(),
            holds: [None, None],
            undecodable: Vec::new(),
            stats: PipelineStats::default(),
        }
    }

    /// A side's SDP was accepted at `now`: payload types, the stream, holds.
    pub fn set_media(&mut self, side: Side, media: SideMedia, now: Instant) {
        let party = party_of(side);
        let at_ms = self.millis(now);
        let was_held = self.holds[party_index(party)].is_some();
        if media.on_hold && !was_held {
            self.holds[party_index(party)] = Some(at_ms);
        } else if !media.on_hold && was_held {
            self.close_hold(party, at_ms);
        }
        self.media.update(side, media);
    }

    /// Takes one copy from the tap.
    pub fn push(&mut self, packet: &TapPacket) -> Result<(), PipelineError> {
        if packet.rtcp {
            return Ok(());
        }
        let stream = self.media.audio_stream(packet.from).unwrap_or(0);
        if packet.stream != stream {
            self.stats.other_stream_packets += 1;
            return Ok(());
        }
        let Ok(rtp) = rtp::parse(&packet.data) else {
            self.stats.malformed_packets += 1;
            return Ok(());
        };
        let Some(format) = self.media.resolve(packet.from, rtp.header.payload_type) else {
            self.stats.unknown_payload_packets += 1;
            return Ok(());
        };
        self.stats.packets += 1;
        let party = party_of(packet.from);
        let direction = self.direction_mut(party);
        if let Some(flushed) = direction.switch_clock(&format) {
            self.play(party, flushed)?;
        }
        let (dtmf, comfort_noise) = self.media.event_payload_types(packet.from);
        let (start, depth) = (self.start, self.config.jitter_depth);
        let buffer = self.direction_mut(party).buffer(&format, start, depth);
        buffer.set_event_payload_types(dtmf, comfort_noise);
        buffer.push(&rtp, packet.arrival);
        Ok(())
    }

    /// Mixes and encodes up to [`PipelineConfig::lag`] before `now`, appending to `out`.
    ///
    /// Returns how much audio was encoded.
    pub fn advance(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<Duration, PipelineError> {
        for party in [Party::External, Party::Practice] {
            let released = self.direction_mut(party).poll(now);
            self.play(party, released)?;
        }
        let until = now.checked_sub(self.config.lag()).unwrap_or(self.start);
        self.encode_until(until, out)
    }

    /// Ends the recording at `end`: everything buffered is mixed, the timeline is cut
    /// at `end`, and the encoder's last bytes are appended to `out`.
    pub fn finish(&mut self, end: Instant, out: &mut Vec<u8>) -> Result<Duration, PipelineError> {
        for party in [Party::External, Party::Practice] {
            let released = self.direction_mut(party).finish();
            self.play(party, released)?;
        }
        let encoded = self.encode_until(end, out)?;
        self.output()?.encoder.finish(out)?;
        for party in [Party::External, Party::Practice] {
            if let Some(began) = self.holds[party_index(party)].take() {
                // Still on hold when the call ended.
                self.push_event(party, began, EventKind::Hold { duration_ms: None });
            }
        }
        Ok(encoded)
    }

    /// The events so far, in the order they were released.
    pub fn events(&self) -> &[CallEvent] {
        &self.events
    }

    /// Codecs seen that the recorder cannot decode, by encoding name.
    pub fn undecodable_codecs(&self) -> &[String] {
        &self.undecodable
    }

    pub fn stats(&self) -> PipelineStats {
        let mut stats = self.stats;
        stats.jitter = add_jitter(self.external.jitter_stats(), self.practice.jitter_stats());
        if let Some(output) = &self.output {
            let mix = output.mixer.stats();
            stats.late_samples = mix.external_late_samples + mix.practice_late_samples;
        }
        stats
    }

    /// The sample rate of the recording, once chosen.
    pub fn sample_rate(&self) -> Option<u32> {
        self.output.as_ref().map(|output| output.rate)
    }

    fn encode_until(
        &mut self,
        until: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Duration, PipelineError> {
        let elapsed = until.saturating_duration_since(self.start);
        let channels = usize::from(self.config.channels.count());
        let output = self.output()?;
        let target = samples_in(elapsed, output.rate);
        let pcm = output.mixer.take_until(target);
        let frames = pcm.len() / channels;
        output.encoder.encode(&pcm, out)?;
        let rate = u64::from(output.rate);
        Ok(Duration::from_micros(frames as u64 * 1_000_000 / rate))
    }

    /// The mixer and encoder, made on first use at the rate the SDP calls for.
    fn output(&mut self) -> Result<&mut Output, PipelineError> {
        if self.output.is_none() {
            let wideband = self.media.any_wideband()
                || self.external.saw_wideband
                || self.practice.saw_wideband;
            let rate = if wideband {
                WIDEBAND_RATE
            } else {
                NARROWBAND_RATE
            };
            let channels = self.config.channels;
            let encoder = encoder_for(self.config.format, rate, channels.count())?;
            self.output = Some(Output {
                rate,
                mixer: Mixer::new(rate, channels),
                encoder,
            });
        }
        Ok(self
            .output
            .as_mut()
            .expect("the output was made just above"))
    }

    /// Places what one direction's jitter buffer released.
    fn play(&mut self, party: Party, released: Released) -> Result<(), PipelineError> {
        let Released { clock_rate, items } = released;
        for item in items {
            match item {
                Playout::Frame {
                    at,
                    payload_type,
                    payload,
                } => self.play_frame(party, clock_rate, at, payload_type, &payload)?,
                Playout::Gap {
                    at,
                    samples,
                    kind: GapKind::Loss,
                } => self.conceal(party, clock_rate, at, samples)?,
                Playout::Gap {
                    kind: GapKind::Silence,
                    ..
                } => {}
                Playout::Dtmf {
                    at,
                    event,
                    duration,
                } => {
                    let kind = EventKind::Dtmf {
                        digit: dtmf_digit(event),
                        duration_ms: u64::from(duration) * 1000 / u64::from(clock_rate),
                    };
                    self.push_event(party, at * 1000 / u64::from(clock_rate), kind);
                }
                Playout::ComfortNoise { at, samples } => {
                    let (at_ms, length_ms) = (to_ms(at, clock_rate), to_ms(samples, clock_rate));
                    self.comfort_noise(party, at_ms, length_ms);
                }
            }
        }
        Ok(())
    }

    fn play_frame(
        &mut self,
        party: Party,
        clock_rate: u32,
        at: u64,
        payload_type: u8,
        payload: &[u8],
    ) -> Result<(), PipelineError> {
        let side = side_of(party);
        let Some(format) = self.media.resolve(side, payload_type) else {
            self.stats.unknown_payload_packets += 1;
            return Ok(());
        };
        let rate = self.output()?.rate;
        let direction = self.direction_mut(party);
        let Some(slot) = direction.decoder(payload_type, &format, rate) else {
            self.note_undecodable(&format);
            return Ok(());
        };
        let mut samples = Vec::new();
        if slot.decode(payload, &mut samples).is_err() {
            self.stats.corrupt_packets += 1;
            return Ok(());
        }
        self.direction_mut(party).last_audio = Some(payload_type);
        self.mix(party, rescale(at, clock_rate, rate), &samples)
    }

    /// Fills a loss inside a talk spurt with the last decoder's concealment.
    fn conceal(
        &mut self,
        party: Party,
        clock_rate: u32,
        at: u64,
        samples: u64,
    ) -> Result<(), PipelineError> {
        let rate = self.output()?.rate;
        let length = usize::try_from(rescale(samples, clock_rate, rate)).unwrap_or(0);
        let Some(slot) = self.direction_mut(party).last_decoder() else {
            return Ok(());
        };
        let mut concealed = Vec::new();
        slot.conceal(length, &mut concealed);
        self.mix(party, rescale(at, clock_rate, rate), &concealed)
    }

    fn mix(&mut self, party: Party, at: u64, samples: &[i16]) -> Result<(), PipelineError> {
        let output = self.output()?;
        if let Err(error) = output.mixer.add(party, at, samples) {
            // Only a timestamp the jitter buffer let through far ahead gets here.
            tracing::debug!(%error, "audio too far ahead of the recording dropped");
            self.stats.late_samples += samples.len() as u64;
        }
        Ok(())
    }

    fn note_undecodable(&mut self, format: &PayloadFormat) {
        self.stats.undecodable_packets += 1;
        if !self.undecodable.contains(&format.encoding) {
            tracing::info!(codec = %format.encoding, "the recorder cannot decode this codec");
            self.undecodable.push(format.encoding.clone());
        }
    }

    /// Records comfort noise, joining it to the party's previous stretch if adjacent.
    fn comfort_noise(&mut self, party: Party, at_ms: u64, length_ms: u64) {
        let previous = self
            .events
            .iter_mut()
            .rev()
            .find(|event| event.party == store_party(party));
        if let Some(CallEvent {
            at_ms: began,
            kind: EventKind::ComfortNoise { duration_ms },
            ..
        }) = previous
        {
            // Within a frame of the last one's end counts as the same stretch.
            if at_ms <= *began + *duration_ms + 20 {
                *duration_ms = (at_ms + length_ms).saturating_sub(*began);
                return;
            }
        }
        let kind = EventKind::ComfortNoise {
            duration_ms: length_ms,
        };
        self.push_event(party, at_ms, kind);
    }

    fn close_hold(&mut self, party: Party, at_ms: u64) {
        if let Some(began) = self.holds[party_index(party)].take() {
            let duration_ms = Some(at_ms.saturating_sub(began));
            self.push_event(party, began, EventKind::Hold { duration_ms });
        }
    }

    fn push_event(&mut self, party: Party, at_ms: u64, kind: EventKind) {
        self.events.push(CallEvent {
            at_ms,
            party: store_party(party),
            kind,
        });
    }

    fn millis(&self, instant: Instant) -> u64 {
        let elapsed = instant.saturating_duration_since(self.start);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    fn direction_mut(&mut self, party: Party) -> &mut Direction {
        match party {
            Party::External => &mut self.external,
            Party::Practice => &mut self.practice,
        }
    }
}

/// What a jitter buffer released, with the clock its positions count in.
#[derive(Debug, Default)]
struct Released {
    clock_rate: u32,
    items: Vec<Playout>,
}

/// One direction: its jitter buffer and decoders.
#[derive(Debug)]
struct Direction {
    party: Party,
    jitter: Option<JitterBuffer>,
    clock_rate: u32,
    decoders: HashMap<u8, DecoderSlot>,
    last_audio: Option<u8>,
    saw_wideband: bool,
    /// Counters of jitter buffers replaced after a clock-rate change.
    replaced_stats: JitterStats,
}

impl Direction {
    fn new(party: Party) -> Self {
        Self {
            party,
            jitter: None,
            clock_rate: NARROWBAND_RATE,
            decoders: HashMap::new(),
            last_audio: None,
            saw_wideband: false,
            replaced_stats: JitterStats::default(),
        }
    }

    /// When an audio packet comes at another RTP clock rate than the buffer's (a
    /// change between G.711 and Opus), the old buffer is emptied and dropped.
    fn switch_clock(&mut self, format: &PayloadFormat) -> Option<Released> {
        self.saw_wideband |= format.is_wideband();
        if !format.is_audio() || format.clock_rate == self.clock_rate || self.jitter.is_none() {
            return None;
        }
        let mut old = self.jitter.take()?;
        self.replaced_stats = add_jitter(self.replaced_stats, old.stats());
        Some(Released {
            clock_rate: self.clock_rate,
            items: old.finish(),
        })
    }

    /// The jitter buffer, made at the packet's clock rate if there is none.
    fn buffer(
        &mut self,
        format: &PayloadFormat,
        start: Instant,
        depth: Duration,
    ) -> &mut JitterBuffer {
        if self.jitter.is_none() {
            self.clock_rate = format.clock_rate.max(1);
            let config = JitterConfig {
                clock_rate: self.clock_rate,
                depth,
            };
            tracing::trace!(party = ?self.party, clock_rate = self.clock_rate, "jitter buffer made");
            self.jitter = Some(JitterBuffer::new(config, start));
        }
        self.jitter
            .as_mut()
            .expect("the buffer was made just above")
    }

    fn poll(&mut self, now: Instant) -> Released {
        let items = self
            .jitter
            .as_mut()
            .map(|jitter| jitter.poll(now))
            .unwrap_or_default();
        Released {
            clock_rate: self.clock_rate,
            items,
        }
    }

    fn finish(&mut self) -> Released {
        let items = self
            .jitter
            .as_mut()
            .map(JitterBuffer::finish)
            .unwrap_or_default();
        Released {
            clock_rate: self.clock_rate,
            items,
        }
    }

    /// The decoder for a payload type, made on first use; `None` if unsupported.
    fn decoder(
        &mut self,
        payload_type: u8,
        format: &PayloadFormat,
        rate: u32,
    ) -> Option<&mut DecoderSlot> {
        match self.decoders.entry(payload_type) {
            Entry::Occupied(slot) => Some(slot.into_mut()),
            Entry::Vacant(vacant) => Some(vacant.insert(DecoderSlot::new(format, rate)?)),
        }
    }

    fn last_decoder(&mut self) -> Option<&mut DecoderSlot> {
        let payload_type = self.last_audio?;
        self.decoders.get_mut(&payload_type)
    }

    fn jitter_stats(&self) -> JitterStats {
        let current = self
            .jitter
            .as_ref()
            .map(JitterBuffer::stats)
            .unwrap_or_default();
        add_jitter(self.replaced_stats, current)
    }
}

/// A decoder and the resampler from its rate to the recording's.
#[derive(Debug)]
struct DecoderSlot {
    decoder: Box<dyn Decoder>,
    resampler: Resampler,
}

impl DecoderSlot {
    fn new(format: &PayloadFormat, rate: u32) -> Option<Self> {
        let decoder: Box<dyn Decoder> = if format.encoding.eq_ignore_ascii_case("opus") {
            // libopus decodes at any rate it is asked for: ask for the recording's.
            Box::new(codec::opus::OpusDecoder::new(rate).ok()?)
        } else {
            codec::decoder_for(&format.encoding, format.clock_rate)?
        };
        let resampler = Resampler::between(decoder.sample_rate(), rate)?;
        Some(Self { decoder, resampler })
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), codec::CodecError> {
        let mut decoded = Vec::new();
        self.decoder.decode(payload, &mut decoded)?;
        self.resampler.process(&decoded, out);
        Ok(())
    }

    /// Conceals `samples` at the recording's rate.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let mut concealed = Vec::new();
        self.decoder
            .conceal(self.resampler.input_length(samples), &mut concealed);
        self.resampler.process(&concealed, out);
    }
}

/// From a decoder's rate to the recording's.
#[derive(Debug)]
enum Resampler {
    Same,
    Up(Upsampler2x),
    Down(Downsampler2x),
}

impl Resampler {
    fn between(from: u32, to: u32) -> Option<Self> {
        match (from, to) {
            _ if from == to => Some(Self::Same),
            _ if from * 2 == to => Some(Self::Up(Upsampler2x::new())),
            _ if from == to * 2 => Some(Self::Down(Downsampler2x::new())),
            _ => None,
        }
    }

    /// How many input samples make `output` samples.
    fn input_length(&self, output: usize) -> usize {
        match self {
            Self::Same => output,
            Self::Up(_) => output / 2,
            Self::Down(_) => output * 2,
        }
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        match self {
            Self::Same => out.extend_from_slice(input),
            Self::Up(up) => up.process(input, out),
            Self::Down(down) => down.process(input, out),
        }
    }
}

fn party_of(side: Side) -> Party {
    match side {
        Side::Trunk => Party::External,
        Side::Pbx => Party::Practice,
    }
}

fn side_of(party: Party) -> Side {
    match party {
        Party::External => Side::Trunk,
        Party::Practice => Side::Pbx,
    }
}

fn party_index(party: Party) -> usize {
    match party {
        Party::External => 0,
        Party::Practice => 1,
    }
}

fn store_party(party: Party) -> callvault_store::Party {
    match party {
        Party::External => callvault_store::Party::External,
        Party::Practice => callvault_store::Party::Practice,
    }
}

/// The RFC 4733 §3.2 name of a telephone event.
fn dtmf_digit(event: u8) -> String {
    match event {
        0..=9 => char::from(b'0' + event).to_string(),
        10 => "*".to_owned(),
        11 => "#".to_owned(),
        12..=15 => char::from(b'A' + event - 12).to_string(),
        other => format!("E{other}"),
    }
}

fn rescale(samples: u64, from_rate: u32, to_rate: u32) -> u64 {
    let scaled = u128::from(samples) * u128::from(to_rate) / u128::from(from_rate.max(1));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

fn to_ms(samples: u64, clock_rate: u32) -> u64 {
    rescale(samples, clock_rate, 1000)
}

fn samples_in(elapsed: Duration, rate: u32) -> u64 {
    let samples = elapsed.as_nanos() * u128::from(rate) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX)
}

fn add_jitter(a: JitterStats, b: JitterStats) -> JitterStats {
    JitterStats {
        received: a.received + b.received,
        duplicates: a.duplicates + b.duplicates,
        late: a.late + b.late,
        lost_samples: a.lost_samples + b.lost_samples,
        reordered: a.reordered + b.reordered,
        ssrc_changes: a.ssrc_changes + b.ssrc_changes,
        timestamp_jumps: a.timestamp_jumps + b.timestamp_jumps,
        drift_corrections: a.drift_corrections + b.drift_corrections,
    }
}
