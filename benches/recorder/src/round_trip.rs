//! `round-trip`: speech through the recorder's Opus encoder and back, for scoring.
//!
//! Reads 8 kHz mono 16-bit little-endian PCM on standard input, encodes it 20 ms
//! at a time with the recorder's own encoder at the complexity and bitrate asked
//! for, decodes it with libopus, and writes the decoded PCM, aligned with the
//! input (the encoder's look-ahead removed), on standard output.
//! `benches/recorder/quality.py` scores the result with PESQ.

use std::io::{Read, Write};

use callvault_recorder::encode::{speech_encoder, OpusSettings};

use crate::Failure;

const RATE: u32 = 8000;
const FRAME: usize = 160;

pub(crate) fn run(mut args: impl Iterator<Item = String>) -> Result<(), Failure> {
    let mut settings = OpusSettings::RECORDING;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--complexity" => settings.complexity = value.parse()?,
            "--kbps" => settings.bits_per_second_per_channel = value.parse::<i32>()? * 1000,
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let pcm: Vec<i16> = input
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let decoded = encode_and_decode(&pcm, settings)?;
    let bytes: Vec<u8> = decoded
        .iter()
        .flat_map(|sample| sample.to_le_bytes())
        .collect();
    std::io::stdout().write_all(&bytes)?;
    Ok(())
}

fn encode_and_decode(pcm: &[i16], settings: OpusSettings) -> Result<Vec<i16>, Failure> {
    let mut encoder = speech_encoder(RATE, 1, settings)?;
    let mut decoder = opus::Decoder::new(RATE, opus::Channels::Mono)?;
    let mut packet = [0_u8; 1500];
    let mut frame = [0_i16; FRAME];
    let mut decoded = Vec::with_capacity(pcm.len());
    for chunk in pcm.chunks_exact(FRAME) {
        let length = encoder.encode(chunk, &mut packet)?;
        let samples = decoder.decode(&packet[..length], &mut frame, false)?;
        decoded.extend_from_slice(&frame[..samples]);
    }
    let look_ahead = usize::try_from(encoder.get_lookahead()?)?;
    Ok(decoded.split_off(look_ahead.min(decoded.len())))
}
