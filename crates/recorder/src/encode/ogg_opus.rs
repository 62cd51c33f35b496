//! Opus in Ogg (RFC 7845), written page by page as a stream.
//!
//! The stream is one logical Ogg bitstream: a page holding the identification
//! header (OpusHead), a page holding the comment header (OpusTags), then audio pages
//! of 20 ms packets. Granule positions count 48 kHz samples from the start of the
//! decoded stream, pre-skip included (RFC 7845 §4); the last page's granule is
//! lowered to trim the padding of the last frame, so the decoded stream is exactly
//! as long as the PCM given.

use std::fmt;

use ::opus::{Application, Bitrate, Channels};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::{check_whole_frames, EncodeError, Encoder};

/// How hard libopus works and how many bits it spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusSettings {
    /// libopus's effort, from 0 to 10.
    pub complexity: i32,
    /// The target bitrate of each channel.
    pub bits_per_second_per_channel: i32,
}

impl OpusSettings {
    /// What every recording uses.
    ///
    /// Chosen from two measurements on the two-core build machine (libopus 1.6.1,
    /// 8 kHz speech that went through G.711, 20 ms frames, VoIP mode):
    ///
    /// | kbit/s per channel | complexity | PESQ (P.862, narrowband) | CPU, 8 kHz stereo |
    /// | --- | --- | --- | --- |
    /// | 16 | 5 | 4.26 | 5.9 ms per second of audio |
    /// | 16 | 1 | 4.09 | 2.6 ms |
    /// | 20 | 1 | 4.31 | 2.6 ms |
    /// | 20 | 5 | 4.40 | 6.0 ms |
    ///
    /// SILK's cost hardly depends on the bitrate but rises steeply above
    /// complexity 1, so a quarter more bytes buys back more quality than more
    /// effort does, at less than half the CPU. That is what lets two cores record
    /// 500 calls at once. `benches/README.md` has the full tables and the commands
    /// that measure them again.
    pub const RECORDING: Self = Self {
        complexity: 1,
        bits_per_second_per_channel: 20_000,
    };
}

/// Packets on one Ogg page at most: 200 ms of audio.
///
/// Every byte appended is eventually on disk, but a page is only readable when
/// whole, so a crash loses the audio of the page being filled. Completing a page
/// every ten packets bounds that loss to 200 ms, for about 7 % of overhead in mono
/// (a page header is 27 bytes plus one per packet, against about 50 bytes per
/// packet at 20 kbit/s).
pub const MAX_PACKETS_PER_PAGE: usize = 10;

/// Duration of one Opus packet.
const FRAME_MS: u32 = 20;

/// The rate of granule positions and pre-skip, whatever the input's rate.
const GRANULE_RATE: u32 = 48_000;

/// Room for one encoded packet; a 20 ms frame at these bitrates is far smaller.
const MAX_PACKET_BYTES: usize = 1500;

/// Vendor string of the comment header, before libopus's version.
const VENDOR: &str = "callvault";

/// Encodes interleaved PCM to an Ogg Opus stream.
pub(super) struct OggOpusEncoder {
    opus: ::opus::Encoder,
    pages: PacketWriter<'static, Vec<u8>>,
    serial: u32,
    sample_rate: u32,
    channels: u16,
    /// libopus's delay in input samples; the decoder skips it (as pre-skip).
    lookahead: u64,
    /// Interleaved samples waiting for a whole frame.
    pending: Vec<i16>,
    /// Samples per channel given to `encode`.
    samples_in: u64,
    /// Packets encoded so far.
    packets: u64,
    /// Packets on the page being filled.
    packets_on_page: usize,
    /// Room for the packet being encoded.
    packet: Vec<u8>,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing written yet, not even the headers.
    Fresh,
    /// The headers are out; audio pages follow.
    Streaming,
    Finished,
}

impl OggOpusEncoder {
    /// Creates an encoder for a stream with this Ogg serial number.
    ///
    /// `sample_rate` is 8000 or 16000 and `channels` 1 or 2 (checked by the caller).
    pub(super) fn new(sample_rate: u32, channels: u16, serial: u32) -> Result<Self, EncodeError> {
        let mut opus = speech_encoder(sample_rate, channels, OpusSettings::RECORDING)
            .map_err(EncodeError::Opus)?;
        let lookahead = opus.get_lookahead().map_err(EncodeError::Opus)?;
        let lookahead = u64::try_from(lookahead).expect("libopus's lookahead is not negative");

        Ok(Self {
            opus,
            pages: PacketWriter::new(Vec::new()),
            serial,
            sample_rate,
            channels,
            lookahead,
            pending: Vec::new(),
            samples_in: 0,
            packets: 0,
            packets_on_page: 0,
            packet: vec![0; MAX_PACKET_BYTES],
            stage: Stage::Fresh,
        })
    }

    /// Samples per channel in one frame.
    fn frame_len(&self) -> u64 {
        u64::from(self.sample_rate / 1000 * FRAME_MS)
    }

    /// Input samples to granule units (48 kHz).
    fn to_granule(&self, samples: u64) -> u64 {
        samples * u64::from(GRANULE_RATE / self.sample_rate)
    }

    /// The pre-skip: libopus's delay at 48 kHz.
    fn pre_skip(&self) -> u16 {
        u16::try_from(self.to_granule(self.lookahead)).expect("libopus's delay is a few ms")
    }

    /// Writes the headers unless they are out already.
    fn start(&mut self) -> Result<(), EncodeError> {
        match self.stage {
            Stage::Fresh => {
                // Each header ends its page (RFC 7845 §3); both have granule 0.
                let head = identification_header(self.channels, self.pre_skip(), self.sample_rate);
                self.write_packet(head, PacketWriteEndInfo::EndPage, 0);
                self.write_packet(comment_header(), PacketWriteEndInfo::EndPage, 0);
                self.stage = Stage::Streaming;
                Ok(())
            }
            Stage::Streaming => Ok(()),
            Stage::Finished => Err(EncodeError::Finished),
        }
    }

    /// Encodes every whole frame in `pending`, keeping the remainder.
    fn encode_pending(&mut self) -> Result<(), EncodeError> {
        let mut pending = std::mem::take(&mut self.pending);
        let frame = self.interleaved_frame_len();

        let mut result = Ok(());
        let mut consumed = 0;
        for chunk in pending.chunks_exact(frame) {
            result = self.encode_streaming_frame(chunk);
            if result.is_err() {
                break;
            }
            consumed += frame;
        }

        pending.drain(..consumed);
        self.pending = pending;
        result
    }

    /// Encodes one frame mid-stream, completing the page every ten packets.
    fn encode_streaming_frame(&mut self, frame: &[i16]) -> Result<(), EncodeError> {
        let end = if self.packets_on_page + 1 >= MAX_PACKETS_PER_PAGE {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        let granule = self.to_granule((self.packets + 1) * self.frame_len());
        self.encode_frame(frame, end, granule)
    }

    /// Encodes the rest, padded to cover libopus's delay, on the last page.
    fn encode_final_frames(&mut self) -> Result<(), EncodeError> {
        let frame_len = self.frame_len();
        // At least one packet, so that even an empty stream has an end page.
        let needed = (self.samples_in + self.lookahead).div_ceil(frame_len);
        let remaining = needed.max(self.packets + 1) - self.packets;
        let padded_len = usize::try_from(remaining).expect("a few frames fit a usize")
            * self.interleaved_frame_len();

        let mut tail = std::mem::take(&mut self.pending);
        tail.resize(padded_len, 0);

        // One page to the end: an intermediate page's granule could pass the trimmed
        // end, and granules must not go backwards.
        let final_granule = u64::from(self.pre_skip()) + self.to_granule(self.samples_in);
        let frames = tail.chunks_exact(self.interleaved_frame_len());
        let count = frames.len();
        for (index, chunk) in frames.enumerate() {
            let granule = self.to_granule((self.packets + 1) * frame_len);
            if index + 1 == count {
                self.encode_frame(chunk, PacketWriteEndInfo::EndStream, final_granule)?;
            } else {
                self.encode_frame(chunk, PacketWriteEndInfo::NormalPacket, granule)?;
            }
        }
        Ok(())
    }

    /// Encodes one frame into a packet and adds it to the page.
    fn encode_frame(
        &mut self,
        frame: &[i16],
        end: PacketWriteEndInfo,
        granule: u64,
    ) -> Result<(), EncodeError> {
        let length = self
            .opus
            .encode(frame, &mut self.packet)
            .map_err(EncodeError::Opus)?;
        self.packets += 1;

        let packet = self.packet[..length].to_vec();
        self.write_packet(packet, end, granule);
        self.packets_on_page = match end {
            PacketWriteEndInfo::NormalPacket => self.packets_on_page + 1,
            PacketWriteEndInfo::EndPage | PacketWriteEndInfo::EndStream => 0,
        };
        Ok(())
    }

    fn write_packet(&mut self, packet: Vec<u8>, end: PacketWriteEndInfo, granule: u64) {
        self.pages
            .write_packet(packet, self.serial, end, granule)
            .expect("writing pages to a Vec cannot fail");
    }

    /// Moves the completed pages to `out`.
    fn drain(&mut self, out: &mut Vec<u8>) {
        out.append(self.pages.inner_mut());
    }

    fn interleaved_frame_len(&self) -> usize {
        let frame_len = usize::try_from(self.frame_len()).expect("20 ms of samples fits a usize");
        frame_len * usize::from(self.channels)
    }
}

impl fmt::Debug for OggOpusEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pending PCM and pages are audio, which stays out of logs.
        f.debug_struct("OggOpusEncoder")
            .field("serial", &self.serial)
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("samples_in", &self.samples_in)
            .field("packets", &self.packets)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl Encoder for OggOpusEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_whole_frames(pcm, self.channels)?;
        self.start()?;

        self.pending.extend_from_slice(pcm);
        self.samples_in += (pcm.len() / usize::from(self.channels)) as u64;
        let result = self.encode_pending();
        self.drain(out);
        result
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.start()?;
        self.stage = Stage::Finished;
        let result = self.encode_final_frames();
        self.drain(out);
        result
    }
}

/// libopus set up as for a recording of speech, with the given effort and bitrate.
///
/// Public so that the benchmarks measure the very encoder recordings use.
pub fn speech_encoder(
    sample_rate: u32,
    channels: u16,
    settings: OpusSettings,
) -> Result<::opus::Encoder, ::opus::Error> {
    let layout = if channels == 2 {
        Channels::Stereo
    } else {
        Channels::Mono
    };
    let mut encoder = ::opus::Encoder::new(sample_rate, layout, Application::Voip)?;
    let bitrate = settings.bits_per_second_per_channel * i32::from(channels);
    encoder.set_bitrate(Bitrate::Bits(bitrate))?;
    encoder.set_complexity(settings.complexity)?;
    Ok(encoder)
}

/// The OpusHead packet (RFC 7845 §5.1), channel mapping family 0.
fn identification_header(channels: u16, pre_skip: u16, sample_rate: u32) -> Vec<u8> {
    let channels = u8::try_from(channels).expect("one or two channels");
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(channels);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&sample_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family: mono or left, right
    head
}

/// The OpusTags packet (RFC 7845 §5.2): a vendor string and no comments.
///
/// Comments would be the place for a title or a caller; a recording keeps its
/// metadata encrypted beside the audio instead, so none are written.
fn comment_header() -> Vec<u8> {
    let vendor = format!("{VENDOR} ({})", ::opus::version());
    let vendor_len = u32::try_from(vendor.len()).expect("the vendor string is short");

    let mut tags = Vec::with_capacity(16 + vendor.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&vendor_len.to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes()); // comment count
    tags
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// One Ogg page as the tests need it (RFC 3533 §6).
    #[derive(Debug)]
    struct Page {
        flags: u8,
        granule: u64,
        serial: u32,
        sequence: u32,
        packets: usize,
        body: Vec<u8>,
    }

    const BEGINNING_OF_STREAM: u8 = 0x02;
    const END_OF_STREAM: u8 = 0x04;

    /// Splits a byte stream into pages, failing on a partial one.
    fn pages(mut bytes: &[u8]) -> Vec<Page> {
        let mut pages = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(&bytes[..4], b"OggS", "page capture pattern");
            let segments = usize::from(bytes[26]);
            let lacing = &bytes[27..27 + segments];
            let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
            let start = 27 + segments;
            pages.push(Page {
                flags: bytes[5],
                granule: u64::from_le_bytes(bytes[6..14].try_into().unwrap()),
                serial: u32::from_le_bytes(bytes[14..18].try_into().unwrap()),
                sequence: u32::from_le_bytes(bytes[18..22].try_into().unwrap()),
                packets: lacing.iter().filter(|&&l| l < 255).count(),
                body: bytes[start..start + body_len].to_vec(),
            });
            bytes = &bytes[start + body_len..];
        }
        pages
    }

    fn encoder(sample_rate: u32, channels: u16) -> OggOpusEncoder {
        OggOpusEncoder::new(sample_rate, channels, 0x5EED).unwrap()
    }

    /// A tone loud enough that every packet carries audio.
    fn tone(samples: usize, channels: usize) -> Vec<i16> {
        (0..samples * channels)
            .map(|n| ((n / channels) as f64 * 0.3).sin())
            .map(|x| (x * 8000.0) as i16)
            .collect()
    }

    #[test]
    fn an_empty_stream_has_both_headers_and_an_end_page() {
        let mut encoder = encoder(8000, 1);
        let mut out = Vec::new();
        encoder.finish(&mut out).unwrap();
        let pages = pages(&out);

        assert_eq!(pages.len(), 3);
        assert_eq!(pages[0].flags, BEGINNING_OF_STREAM);
        assert!(pages[0].body.starts_with(b"OpusHead"));
        assert!(pages[1].body.starts_with(b"OpusTags"));
        assert_eq!((pages[0].granule, pages[1].granule), (0, 0));

        assert_eq!(pages[2].flags, END_OF_STREAM);
        assert_eq!(pages[2].packets, 1);
        assert_eq!(pages[2].granule, u64::from(encoder.pre_skip()));
        for (sequence, page) in pages.iter().enumerate() {
            assert_eq!(page.serial, 0x5EED);
            assert_eq!(page.sequence as usize, sequence);
        }
    }

    #[test]
    fn the_identification_header_states_the_stream() {
        let mut encoder = encoder(16000, 2);
        let mut out = Vec::new();
        encoder.encode(&[], &mut out).unwrap();
        let head = &pages(&out)[0].body;

        assert_eq!(head.len(), 19);
        assert_eq!(head[8], 1, "version");
        assert_eq!(head[9], 2, "channels");
        let pre_skip = u16::from_le_bytes([head[10], head[11]]);
        assert_eq!(pre_skip, encoder.pre_skip());
        // libopus's VoIP delay is 6.5 ms at any rate: 312 samples at 48 kHz.
        assert_eq!(pre_skip, 312);
        assert_eq!(&head[12..16], &16000u32.to_le_bytes());
        assert_eq!(&head[16..19], &[0, 0, 0], "gain and mapping family");
    }

    #[test]
    fn the_comment_header_names_callvault_and_libopus() {
        let tags = comment_header();
        let vendor_len = u32::from_le_bytes(tags[8..12].try_into().unwrap()) as usize;
        let vendor = std::str::from_utf8(&tags[12..12 + vendor_len]).unwrap();
        assert!(vendor.starts_with("callvault (libopus "), "{vendor}");
        assert_eq!(&tags[12 + vendor_len..], &[0, 0, 0, 0], "no comments");
    }

    #[test]
    fn a_page_is_completed_every_ten_packets() {
        let mut encoder = encoder(8000, 1);
        let mut out = Vec::new();
        let pcm = tone(8000, 1);
        for chunk in pcm.chunks(160) {
            encoder.encode(chunk, &mut out).unwrap();
            // Whatever has been appended is whole pages.
            pages(&out);
        }
        let audio: Vec<Page> = pages(&out).into_iter().skip(2).collect();

        assert_eq!(audio.len(), 5, "one second is five pages of 200 ms");
        for (index, page) in audio.iter().enumerate() {
            assert_eq!(page.packets, MAX_PACKETS_PER_PAGE);
            assert_eq!(page.granule, 9600 * (index as u64 + 1));
            assert_eq!(page.flags, 0);
        }
    }

    #[test]
    fn partial_frames_wait_for_the_next_call() {
        let mut encoder = encoder(16000, 2);
        let mut out = Vec::new();
        let pcm = tone(3210, 2);
        for chunk in pcm.chunks(2 * 107) {
            encoder.encode(chunk, &mut out).unwrap();
        }
        // 3210 samples are ten whole frames of 320 and 10 over.
        assert_eq!(encoder.packets, 10);
        assert_eq!(encoder.pending.len(), 2 * 10);
        assert_eq!(pages(&out).len(), 3);
    }

    #[test]
    fn the_last_granule_trims_the_padding() {
        for (rate, channels, samples) in [(8000, 1, 1234), (16000, 2, 3210), (8000, 2, 1600)] {
            let mut encoder = encoder(rate, channels);
            let mut out = Vec::new();
            encoder
                .encode(&tone(samples, usize::from(channels)), &mut out)
                .unwrap();
            encoder.finish(&mut out).unwrap();
            let pages = pages(&out);
            let last = pages.last().unwrap();

            let ratio = u64::from(48000 / rate);
            assert_eq!(last.flags, END_OF_STREAM);
            assert_eq!(last.granule, 312 + samples as u64 * ratio);
            // The packets cover the input and the delay, and no more than a frame over.
            let decoded = encoder.packets * 960;
            assert!(decoded >= last.granule && decoded - last.granule < 960);
            let before = pages[pages.len() - 2].granule;
            assert!(last.granule > before, "granules never go backwards");
        }
    }

    /// Prints libopus's cost per 20 ms frame; run with `--release --ignored`.
    #[test]
    #[ignore = "a measurement, not a check: run it in a release build"]
    fn cost_per_frame_by_complexity() {
        let frames = 1000;
        for (rate, channels) in [(8000u32, 1u16), (8000, 2), (16000, 2)] {
            let frame_len = (rate / 50) as usize * usize::from(channels);
            let pcm = speech_like(frame_len * frames, rate, channels);
            for complexity in [0, 3, 5] {
                // The fastest of five rounds: other work on the machine only adds.
                let per_frame = (0..5)
                    .map(|_| encode_seconds(&pcm, frame_len, rate, channels, complexity))
                    .fold(f64::INFINITY, f64::min)
                    * 1e6
                    / frames as f64;
                println!("{rate} Hz x{channels} complexity {complexity}: {per_frame:.1} µs");
            }
        }
    }

    /// Seconds a fresh encoder takes over `pcm`, frame by frame.
    fn encode_seconds(
        pcm: &[i16],
        frame_len: usize,
        rate: u32,
        channels: u16,
        complexity: i32,
    ) -> f64 {
        let settings = OpusSettings {
            complexity,
            ..OpusSettings::RECORDING
        };
        let mut opus = speech_encoder(rate, channels, settings).unwrap();
        let mut packet = [0u8; MAX_PACKET_BYTES];
        let started = Instant::now();
        for frame in pcm.chunks_exact(frame_len) {
            opus.encode(frame, &mut packet).unwrap();
        }
        started.elapsed().as_secs_f64()
    }

    /// Two gliding, syllable-modulated tones and a little noise, one per channel.
    fn speech_like(samples: usize, rate: u32, channels: u16) -> Vec<i16> {
        let mut noise = 0x1234_5678u32;
        let channels = usize::from(channels);
        (0..samples)
            .map(|n| {
                let t = (n / channels) as f64 / f64::from(rate);
                let pitch = 140.0 + 60.0 * (t * 0.7).sin() + 90.0 * (n % channels) as f64;
                let syllables = (t * 4.0 * std::f64::consts::PI).sin().abs();
                noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let hiss = f64::from(noise >> 16) / 65536.0 - 0.5;
                let voice = (t * pitch * std::f64::consts::TAU).sin();
                ((voice * syllables * 9000.0) + hiss * 600.0) as i16
            })
            .collect()
    }
}
