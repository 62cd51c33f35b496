//! The recording announcement as RTP: every codec decodes back to the message.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use callvault_recorder::announcement::{Announcement, AnnouncementError, RtpStream, FRAME};
use callvault_recorder::codec::decoder_for;
use callvault_recorder::mix::Downsampler2x;

/// One second and a bit of a voice-like tone at 8 kHz: 51 frames, the last partial.
fn message() -> Vec<i16> {
    (0..8_100)
        .map(|n| {
            let t = f64::from(n) / 8000.0;
            let syllables = (t * 3.0 * std::f64::consts::PI).sin().abs();
            ((t * 330.0 * std::f64::consts::TAU).sin() * syllables * 12_000.0) as i16
        })
        .collect()
}

fn stream(encoding: &str, clock_rate: u32, payload_type: u8) -> RtpStream {
    RtpStream {
        encoding: encoding.to_owned(),
        clock_rate,
        payload_type,
        ssrc: 0x1234_5678,
        first_sequence: 65_530,
        first_timestamp: u32::MAX - 100,
    }
}

/// Decodes every packet's payload with the recorder's own decoder, at 8 kHz.
fn decoded(packets: &[Vec<u8>], encoding: &str, clock_rate: u32) -> Vec<i16> {
    let mut decoder = decoder_for(encoding, clock_rate).unwrap();
    let mut pcm = Vec::new();
    for packet in packets {
        decoder.decode(&packet[12..], &mut pcm).unwrap();
    }
    if decoder.sample_rate() == 16000 {
        let mut narrow = Vec::new();
        Downsampler2x::new().process(&pcm, &mut narrow);
        return narrow;
    }
    pcm
}

/// The best normalised cross-correlation of `got` with `sent` within 5 ms.
fn correlation(sent: &[i16], got: &[i16]) -> f64 {
    (0..40)
        .map(|lag| {
            let pairs = sent.iter().zip(got.iter().skip(lag)).take(sent.len() - 400);
            let (mut dot, mut a, mut b) = (0.0, 0.0, 0.0);
            for (&x, &y) in pairs {
                let (x, y) = (f64::from(x), f64::from(y));
                dot += x * y;
                a += x * x;
                b += y * y;
            }
            dot / (a * b).sqrt().max(1.0)
        })
        .fold(f64::MIN, f64::max)
}

#[test]
fn every_codec_carries_the_message_in_whole_frames() {
    let message = message();
    let announcement = Announcement::from_pcm(8000, &message).unwrap();
    assert_eq!(announcement.duration(), FRAME * 51);
    for (encoding, clock_rate, payload_type, least) in [
        ("PCMU", 8000, 0, 0.99),
        ("PCMA", 8000, 8, 0.99),
        ("G722", 8000, 9, 0.95),
        ("opus", 48000, 111, 0.80),
    ] {
        let packets = announcement
            .packets(&stream(encoding, clock_rate, payload_type))
            .unwrap();
        assert_eq!(packets.len(), 51, "{encoding}");
        let got = decoded(&packets, encoding, clock_rate);
        let found = correlation(&message, &got);
        assert!(
            found >= least,
            "{encoding}: correlation {found:.3} below {least}"
        );
    }
}

#[test]
fn headers_follow_rfc_3550_with_the_marker_on_the_first_packet() {
    let announcement = Announcement::from_pcm(8000, &message()).unwrap();
    for (encoding, clock_rate, ticks) in [
        ("PCMU", 8000, 160u32),
        ("G722", 8000, 160),
        ("OPUS", 48000, 960),
    ] {
        let packets = announcement
            .packets(&stream(encoding, clock_rate, 96))
            .unwrap();
        for (index, packet) in packets.iter().enumerate() {
            assert_eq!(packet[0], 0x80, "version 2, nothing else");
            assert_eq!(packet[1] & 0x7f, 96);
            assert_eq!(
                packet[1] & 0x80 != 0,
                index == 0,
                "marker on the first only"
            );
            let sequence = u16::from_be_bytes([packet[2], packet[3]]);
            assert_eq!(sequence, 65_530u16.wrapping_add(index as u16));
            let timestamp = u32::from_be_bytes(packet[4..8].try_into().unwrap());
            assert_eq!(
                timestamp,
                (u32::MAX - 100).wrapping_add(index as u32 * ticks)
            );
            assert_eq!(&packet[8..12], &0x1234_5678u32.to_be_bytes());
        }
    }
}

#[test]
fn a_wideband_message_plays_in_narrowband_codecs_too() {
    let narrow = message();
    let mut wide = Vec::new();
    callvault_recorder::mix::Upsampler2x::new().process(&narrow, &mut wide);
    let announcement = Announcement::from_pcm(16000, &wide).unwrap();
    let packets = announcement.packets(&stream("PCMA", 8000, 8)).unwrap();
    let found = correlation(&narrow, &decoded(&packets, "PCMA", 8000));
    assert!(found > 0.95, "{found}");
}

#[test]
fn codecs_it_cannot_speak_and_odd_lengths_are_refused() {
    let announcement = Announcement::from_pcm(8000, &message()).unwrap();
    let error = announcement.packets(&stream("G729", 8000, 18)).unwrap_err();
    assert!(
        matches!(error, AnnouncementError::UnsupportedCodec { .. }),
        "{error}"
    );
    assert!(matches!(
        Announcement::from_pcm(8000, &[0; 10]),
        Err(AnnouncementError::Length)
    ));
    assert!(matches!(
        Announcement::from_pcm(44100, &[0; 44100]),
        Err(AnnouncementError::UnsupportedRate { rate: 44100 })
    ));
}

/// A WAV file with the chunks an editor adds.
fn wav_file(channels: u16, rate: u32, bits: u16, samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut file = b"RIFF\0\0\0\0WAVE".to_vec();
    file.extend_from_slice(b"LIST\x05\0\0\0INFOx\0");
    file.extend_from_slice(b"fmt \x10\0\0\0\x01\0");
    file.extend_from_slice(&channels.to_le_bytes());
    file.extend_from_slice(&rate.to_le_bytes());
    let block = channels * bits / 8;
    file.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    file.extend_from_slice(&block.to_le_bytes());
    file.extend_from_slice(&bits.to_le_bytes());
    file.extend_from_slice(b"data");
    file.extend_from_slice(&(data.len() as u32).to_le_bytes());
    file.extend_from_slice(&data);
    file
}

#[test]
fn a_wav_file_loads_past_other_chunks_and_a_wrong_one_says_how_to_convert_it() {
    let dir = std::env::temp_dir().join(format!("callvault-announcement-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.wav");
    std::fs::write(&good, wav_file(1, 8000, 16, &message())).unwrap();
    let announcement = Announcement::load(&good).unwrap();
    assert_eq!(announcement.duration(), FRAME * 51);

    for (name, file, reason) in [
        (
            "stereo.wav",
            wav_file(2, 8000, 16, &message()),
            "more than one channel",
        ),
        (
            "cd.wav",
            wav_file(1, 44100, 16, &message()),
            "other than 8000 or 16000",
        ),
        ("text.wav", b"hello".to_vec(), "no RIFF/WAVE header"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, file).unwrap();
        let error = Announcement::load(&path).unwrap_err().to_string();
        assert!(
            error.contains(reason) && error.contains("sox"),
            "{name}: {error}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_ringing_tone_is_one_uk_cadence_of_two_bursts() {
    let tone = Announcement::uk_ringing_tone();
    assert_eq!(tone.duration(), std::time::Duration::from_secs(3));
    let packets = tone.packets(&stream("PCMU", 8000, 0)).unwrap();
    let pcm = decoded(&packets, "PCMU", 8000);
    let loud = |from_ms: usize, to_ms: usize| {
        let part = &pcm[from_ms * 8..to_ms * 8];
        let energy: f64 = part.iter().map(|&s| f64::from(s).powi(2)).sum();
        (energy / part.len() as f64).sqrt() > 1000.0
    };
    assert!(loud(20, 380) && loud(620, 980), "the two bursts sound");
    assert!(!loud(420, 580) && !loud(1020, 2980), "the gaps are silent");

    // 400 Hz and 450 Hz beat at 50 Hz: the first burst's envelope falls to
    // nothing every 20 ms.
    let envelope = |at_ms: usize| {
        let part = &pcm[at_ms * 8..at_ms * 8 + 16];
        part.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0)
    };
    assert!(
        envelope(100) > 4000 && envelope(110) < 1500,
        "{} {}",
        envelope(100),
        envelope(110)
    );
}
