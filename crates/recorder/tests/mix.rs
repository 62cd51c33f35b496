//! The mixer, the upsampler and the WAV headers, from the outside.

use callvault_recorder::mix::{
    Channels, MixError, MixStats, Mixer, Party, Upsampler2x, MAX_AHEAD_SECONDS,
};
use callvault_recorder::wav::{
    final_header, samples_to_le_bytes, streaming_header, WavError, HEADER_LEN,
};
use proptest::prelude::*;

const RATE: u32 = 8000;

fn stereo() -> Mixer {
    Mixer::new(RATE, Channels::Stereo)
}

fn left(stereo: &[i16]) -> Vec<i16> {
    stereo.iter().step_by(2).copied().collect()
}

fn right(stereo: &[i16]) -> Vec<i16> {
    stereo.iter().skip(1).step_by(2).copied().collect()
}

#[test]
fn two_parties_at_offsets_are_aligned_in_stereo() {
    let mut mixer = stereo();
    mixer.add(Party::External, 2, &[1, 2, 3]).unwrap();
    mixer.add(Party::Practice, 4, &[7, 8]).unwrap();

    let output = mixer.take_until(7);

    assert_eq!(left(&output), [0, 0, 1, 2, 3, 0, 0]);
    assert_eq!(right(&output), [0, 0, 0, 0, 7, 8, 0]);
}

#[test]
fn gaps_between_frames_are_silence() {
    let mut mixer = stereo();
    mixer.add(Party::External, 0, &[5, 5]).unwrap();
    mixer.add(Party::External, 5, &[6]).unwrap();

    let output = mixer.take_until(8);

    assert_eq!(left(&output), [5, 5, 0, 0, 0, 6, 0, 0]);
    assert_eq!(right(&output), [0; 8]);
}

#[test]
fn frames_added_out_of_order_land_in_place() {
    let mut mixer = stereo();
    mixer.take_until(10);
    mixer.add(Party::Practice, 16, &[3, 3]).unwrap();
    mixer.add(Party::Practice, 12, &[1, 1]).unwrap();
    mixer.add(Party::Practice, 14, &[2, 2]).unwrap();

    let output = mixer.take_until(18);

    assert_eq!(right(&output), [0, 0, 1, 1, 2, 2, 3, 3]);
}

#[test]
fn overlapping_audio_of_one_party_is_overwritten_by_the_later() {
    let mut mixer = stereo();
    mixer.add(Party::External, 0, &[1, 1, 1, 1]).unwrap();
    mixer.add(Party::External, 1, &[9, 9]).unwrap();

    assert_eq!(left(&mixer.take_until(4)), [1, 9, 9, 1]);
}

#[test]
fn audio_for_a_taken_stretch_is_dropped_and_counted() {
    let mut mixer = stereo();
    mixer.take_until(10);
    mixer.add(Party::External, 7, &[1, 2, 3, 4, 5]).unwrap();
    mixer.add(Party::Practice, 0, &[1, 2]).unwrap();

    let output = mixer.take_until(12);

    assert_eq!(left(&output), [4, 5]);
    assert_eq!(right(&output), [0, 0]);
    let expected = MixStats {
        external_late_samples: 3,
        practice_late_samples: 2,
        clipped_samples: 0,
    };
    assert_eq!(mixer.stats(), expected);
}

#[test]
fn audio_too_far_ahead_is_refused_and_not_placed() {
    let mut mixer = stereo();
    let limit = u64::from(RATE) * MAX_AHEAD_SECONDS;
    mixer.add(Party::External, limit - 2, &[1, 2]).unwrap();

    let refused = mixer.add(Party::External, limit - 1, &[3, 4]);

    assert_eq!(
        refused,
        Err(MixError::TooFarAhead {
            end: limit + 1,
            limit
        })
    );
    let output = mixer.take_until(limit);
    assert_eq!(left(&output)[(limit - 3) as usize..], [0, 1, 2]);
}

#[test]
fn a_wild_timestamp_is_refused_without_overflow() {
    let mut mixer = stereo();

    let refused = mixer.add(Party::Practice, u64::MAX - 1, &[1, 2, 3]);

    assert!(matches!(
        refused,
        Err(MixError::TooFarAhead { end: u64::MAX, .. })
    ));
}

#[test]
fn the_limit_moves_forward_with_taking() {
    let mut mixer = stereo();
    let limit = u64::from(RATE) * MAX_AHEAD_SECONDS;
    mixer.take_until(100);

    assert!(mixer.add(Party::External, limit + 98, &[1, 2]).is_ok());
}

#[test]
fn mono_sums_both_parties() {
    let mut mixer = Mixer::new(RATE, Channels::Mono);
    mixer.add(Party::External, 0, &[100, -200, 300]).unwrap();
    mixer.add(Party::Practice, 1, &[50, 50]).unwrap();

    assert_eq!(mixer.take_until(3), [100, -150, 350]);
    assert_eq!(mixer.stats().clipped_samples, 0);
}

#[test]
fn mono_sum_saturates_and_counts_clipping() {
    let mut mixer = Mixer::new(RATE, Channels::Mono);
    mixer
        .add(Party::External, 0, &[30_000, -30_000, 1])
        .unwrap();
    mixer
        .add(Party::Practice, 0, &[10_000, -10_000, 1])
        .unwrap();

    assert_eq!(mixer.take_until(3), [i16::MAX, i16::MIN, 2]);
    assert_eq!(mixer.stats().clipped_samples, 2);
}

#[test]
fn taking_yields_each_stretch_once() {
    let mut mixer = stereo();
    mixer.add(Party::External, 0, &[1, 2, 3, 4]).unwrap();

    assert_eq!(left(&mixer.take_until(2)), [1, 2]);
    assert!(mixer.take_until(2).is_empty());
    assert!(mixer.take_until(1).is_empty());
    assert_eq!(left(&mixer.take_until(4)), [3, 4]);
    assert_eq!(mixer.position(), 4);
}

#[test]
fn a_call_of_one_minute_records_one_minute() {
    let mut mixer = stereo();
    let call_samples = u64::from(RATE) * 60;
    let mut frames = 0u64;
    let mut taken = 0usize;
    while frames * 160 < call_samples {
        // Only one party speaks, and stops early: the recording still runs to the end.
        if frames < 100 {
            mixer.add(Party::External, frames * 160, &[1; 160]).unwrap();
        }
        frames += 1;
        taken += mixer.take_until(frames * 160 - 80).len();
    }

    taken += mixer.take_until(call_samples).len();

    assert_eq!(taken as u64, call_samples * 2);
    assert_eq!(mixer.position(), call_samples);
}

#[test]
fn upsampler_doubles_the_length_exactly() {
    let mut upsampler = Upsampler2x::new();
    let mut out = Vec::new();

    upsampler.process(&[1, 2, 3], &mut out);
    upsampler.process(&[], &mut out);
    upsampler.process(&[4; 157], &mut out);

    assert_eq!(out.len(), 320);
}

#[test]
fn upsampler_keeps_input_samples_and_interpolates_between() {
    let mut upsampler = Upsampler2x::new();
    let mut out = Vec::new();

    upsampler.process(&[100, 200], &mut out);
    upsampler.process(&[-200], &mut out);

    assert_eq!(out, [50, 100, 150, 200, 0, -200]);
}

/// One second of a 1 kHz sine at 8 kHz, offset in phase so no sample is zero.
fn sine_1khz_8khz() -> Vec<i16> {
    (0..8000)
        .map(|n| {
            let phase = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0;
            (10_000.0 * (phase + 0.3).sin()).round() as i16
        })
        .collect()
}

fn sign_changes(samples: &[i16]) -> usize {
    samples
        .windows(2)
        .filter(|pair| (pair[0] < 0) != (pair[1] < 0))
        .count()
}

fn largest_step(samples: &[i16]) -> i32 {
    let step = |pair: &[i16]| (i32::from(pair[1]) - i32::from(pair[0])).abs();
    samples.windows(2).map(step).max().unwrap_or(0)
}

#[test]
fn upsampled_1khz_sine_keeps_its_frequency_without_clicks() {
    let input = sine_1khz_8khz();
    let mut upsampler = Upsampler2x::new();
    let mut out = Vec::new();
    for frame in input.chunks(160) {
        upsampler.process(frame, &mut out);
    }

    // 1,000 periods cross zero twice each: 1,999 sign changes between the first and
    // last sample, in 8,000 samples before and 16,000 after.
    assert_eq!(out.len(), 16_000);
    assert_eq!(sign_changes(&input), 1999);
    assert_eq!(sign_changes(&out), 1999);
    // Interpolation halves each step; a join between frames would show as a full one.
    let input_step = largest_step(&input);
    assert_eq!(input_step, 7621);
    assert!(largest_step(&out) <= input_step / 2 + 1);
}

fn stereo_with_random_frames(frames: &[(bool, u16, u8)]) -> Mixer {
    let mut mixer = stereo();
    for &(external, at, value) in frames {
        let party = if external {
            Party::External
        } else {
            Party::Practice
        };
        let samples = vec![i16::from(value) - 100; 160];
        mixer
            .add(party, u64::from(at), &samples)
            .expect("frames start below 4,000 and end within the bound");
    }
    mixer
}

proptest! {
    #[test]
    fn taking_in_steps_equals_one_take(
        frames in prop::collection::vec((any::<bool>(), 0u16..4000, any::<u8>()), 0..40),
        steps in prop::collection::vec(0u64..700, 0..20),
        until in 0u64..5000,
    ) {
        let mut whole = stereo_with_random_frames(&frames);
        let mut stepped = stereo_with_random_frames(&frames);

        let expected = whole.take_until(until);
        let mut collected = Vec::new();
        let mut at = 0;
        for step in steps {
            at += step;
            collected.extend(stepped.take_until(at.min(until)));
        }
        collected.extend(stepped.take_until(until));

        prop_assert_eq!(expected.len() as u64, until * 2);
        prop_assert_eq!(collected, expected);
        prop_assert_eq!(stepped.position(), until);
    }

    #[test]
    fn upsampler_output_does_not_depend_on_frame_boundaries(
        input in prop::collection::vec(any::<i16>(), 0..400),
        split in 0usize..400,
    ) {
        let split = split.min(input.len());
        let mut whole = Vec::new();
        Upsampler2x::new().process(&input, &mut whole);

        let mut upsampler = Upsampler2x::new();
        let mut parts = Vec::new();
        upsampler.process(&input[..split], &mut parts);
        upsampler.process(&input[split..], &mut parts);

        prop_assert_eq!(whole.len(), input.len() * 2);
        prop_assert_eq!(parts, whole);
    }
}

mod wav {
    use super::*;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("a slice of four bytes"))
    }

    #[test]
    fn final_header_fields_follow_the_riff_wave_layout() {
        let header = final_header(8000, 2, 32_000).unwrap();

        assert_eq!(&header[0..4], b"RIFF");
        assert_eq!(u32_at(&header, 4), 36 + 32_000);
        assert_eq!(&header[8..12], b"WAVE");
        assert_eq!(&header[12..16], b"fmt ");
        assert_eq!(u32_at(&header, 16), 16, "fmt chunk size");
        assert_eq!(u16_at(&header, 20), 1, "format tag: PCM");
        assert_eq!(u16_at(&header, 22), 2, "channels");
        assert_eq!(u32_at(&header, 24), 8000, "sample rate");
        assert_eq!(u32_at(&header, 28), 32_000, "byte rate");
        assert_eq!(u16_at(&header, 32), 4, "block align");
        assert_eq!(u16_at(&header, 34), 16, "bits per sample");
        assert_eq!(&header[36..40], b"data");
        assert_eq!(u32_at(&header, 40), 32_000, "data size");
    }

    #[test]
    fn streaming_header_marks_both_sizes_unknown() {
        let streaming = streaming_header(16_000, 1);
        let exact = final_header(16_000, 1, 0).unwrap();

        assert_eq!(u32_at(&streaming, 4), u32::MAX);
        assert_eq!(u32_at(&streaming, 40), u32::MAX);
        assert_eq!(u32_at(&streaming, 28), 32_000, "byte rate");
        assert_eq!(u16_at(&streaming, 32), 2, "block align");
        assert_eq!(streaming[8..40], exact[8..40]);
    }

    #[test]
    fn final_header_refuses_more_than_4_gib() {
        let too_long = 1u64 << 32;

        assert_eq!(
            final_header(8000, 2, too_long),
            Err(WavError::TooLong {
                data_bytes: too_long
            })
        );
        assert!(final_header(8000, 2, 4_294_967_256).is_ok());
        assert!(final_header(8000, 2, 4_294_967_260).is_err());
    }

    #[test]
    fn final_header_refuses_a_partial_frame() {
        assert_eq!(
            final_header(8000, 2, 6),
            Err(WavError::PartialFrame {
                data_bytes: 6,
                block_align: 4
            })
        );
    }

    #[test]
    fn samples_are_written_little_endian() {
        let mut out = vec![0xAA];

        samples_to_le_bytes(&[1, -2, 0x1234], &mut out);

        assert_eq!(out, [0xAA, 0x01, 0x00, 0xFE, 0xFF, 0x34, 0x12]);
    }

    /// Reads a 16-bit PCM WAV the simple way: rate, channels and samples.
    fn parse(file: &[u8]) -> (u32, u16, Vec<i16>) {
        assert_eq!(&file[0..4], b"RIFF");
        assert_eq!(u32_at(file, 4) as usize, file.len() - 8);
        assert_eq!(&file[8..16], b"WAVEfmt ");
        assert_eq!(u16_at(file, 20), 1);
        assert_eq!(u16_at(file, 34), 16);
        assert_eq!(&file[36..40], b"data");
        let data = &file[HEADER_LEN..HEADER_LEN + u32_at(file, 40) as usize];
        let samples = data
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]));
        (u32_at(file, 24), u16_at(file, 22), samples.collect())
    }

    fn wav_file(header: [u8; HEADER_LEN], samples: &[i16]) -> Vec<u8> {
        let mut file = header.to_vec();
        samples_to_le_bytes(samples, &mut file);
        file
    }

    fn mixed_stereo_second() -> Vec<i16> {
        let mut mixer = stereo();
        mixer
            .add(Party::External, 0, &sine_1khz_8khz())
            .expect("one second is within the bound");
        mixer
            .add(Party::Practice, 4000, &[-1234; 4000])
            .expect("one second is within the bound");
        mixer.take_until(8000)
    }

    #[test]
    fn final_header_and_data_read_back_by_hand() {
        let samples = mixed_stereo_second();
        let header = final_header(8000, 2, samples.len() as u64 * 2).unwrap();

        let (rate, channels, read) = parse(&wav_file(header, &samples));

        assert_eq!((rate, channels), (8000, 2));
        assert_eq!(read, samples);
    }

    fn sox(args: &[&str]) -> String {
        let output = std::process::Command::new("sox")
            .args(args)
            .output()
            .expect("sox must be installed for these tests (scripts/test installs it)");
        assert!(output.status.success(), "sox {args:?} failed: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn temporary_wav(name: &str, file: &[u8]) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("callvault-mix-{}-{name}", std::process::id()));
        std::fs::write(&path, file).expect("the temporary directory is writable");
        path
    }

    #[test]
    fn sox_reads_a_final_header_file_exactly() {
        let samples = mixed_stereo_second();
        let header = final_header(8000, 2, samples.len() as u64 * 2).unwrap();
        let path = temporary_wav("final.wav", &wav_file(header, &samples));
        let path_text = path.to_str().unwrap();

        let rate = sox(&["--i", "-r", path_text]);
        let channels = sox(&["--i", "-c", path_text]);
        let frames = sox(&["--i", "-s", path_text]);
        std::fs::remove_file(&path).unwrap();

        assert_eq!(
            (rate.as_str(), channels.as_str(), frames.as_str()),
            ("8000", "2", "8000")
        );
    }

    #[test]
    fn sox_reads_every_sample_of_a_streaming_file() {
        let samples = mixed_stereo_second();
        let path = temporary_wav(
            "streaming.wav",
            &wav_file(streaming_header(8000, 2), &samples),
        );
        let raw = path.with_extension("raw");
        let (path_text, raw_text) = (path.to_str().unwrap(), raw.to_str().unwrap());

        sox(&[
            path_text, "-t", "raw", "-e", "signed", "-b", "16", "-L", raw_text,
        ]);
        let bytes = std::fs::read(&raw).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&raw).unwrap();

        let mut expected = Vec::new();
        samples_to_le_bytes(&samples, &mut expected);
        assert_eq!(bytes, expected);
    }
}
