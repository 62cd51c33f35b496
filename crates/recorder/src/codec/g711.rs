//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) companding.
//!
//! Linear samples are 16-bit. µ-law codes 14 bits of them and A-law 13, so the
//! encoders drop the low bits; the decoders return the middle of each quantisation
//! interval, as G.711's tables do. Negative inputs are folded by one's complement
//! (`!x`, that is `-x - 1`) as in the ITU-T G.191 reference, which keeps `i16::MIN`
//! in range and makes every A-law code, and every µ-law code but negative zero
//! (0x7F), survive decode then encode unchanged.

use super::{CodecError, Concealment, Decoder};

/// µ-law code words to linear samples, built at compile time.
const ULAW_TABLE: [i16; 256] = ulaw_table();

/// A-law code words to linear samples, built at compile time.
const ALAW_TABLE: [i16; 256] = alaw_table();

/// Expands a µ-law code word to a 16-bit linear sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// Expands an A-law code word to a 16-bit linear sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

/// Compresses a 16-bit linear sample to a µ-law code word.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let (negative, magnitude) = fold(sample);

    // The bias of 33 (in 14-bit units) makes every segment start at a power of two.
    let biased = ((magnitude >> 2) + 33).min(0x1FFF);
    let segment = 15 - biased.leading_zeros() - 5;
    let mantissa = (biased >> (segment + 1)) & 0x0F;

    let code = segment_code(segment, mantissa);
    let sign = if negative { 0x00 } else { 0x80 };
    (code ^ 0x7F) | sign
}

/// Compresses a 16-bit linear sample to an A-law code word.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let (negative, magnitude) = fold(sample);

    let level = magnitude >> 4;
    let (segment, mantissa) = if level < 16 {
        (0, level)
    } else {
        let segment = 15 - level.leading_zeros() - 3;
        (segment, (level >> (segment - 1)) & 0x0F)
    };

    let code = segment_code(segment, mantissa);
    let sign = if negative { 0x00 } else { 0x80 };
    (code | sign) ^ 0x55
}

/// Splits a sample into its sign and one's-complement magnitude.
fn fold(sample: i16) -> (bool, u16) {
    let folded = if sample < 0 { !sample } else { sample };
    let magnitude = u16::try_from(folded).expect("a folded i16 is never negative");
    (sample < 0, magnitude)
}

/// Packs a segment (0-7) and mantissa (0-15) into the low seven bits.
fn segment_code(segment: u32, mantissa: u16) -> u8 {
    let bits = (segment << 4) | u32::from(mantissa);
    u8::try_from(bits).expect("segment and mantissa fill seven bits")
}

const fn ulaw_table() -> [i16; 256] {
    let mut table = [0; 256];
    let mut code = 0;
    while code < 256 {
        // µ-law sends every bit inverted.
        let bits = (!code & 0xFF) as i32;
        let segment = (bits >> 4) & 0x07;
        let mantissa = bits & 0x0F;
        let magnitude = (((mantissa << 3) + 0x84) << segment) - 0x84;
        let sample = if bits & 0x80 != 0 {
            -magnitude
        } else {
            magnitude
        };
        table[code] = sample as i16;
        code += 1;
    }
    table
}

const fn alaw_table() -> [i16; 256] {
    let mut table = [0; 256];
    let mut code = 0;
    while code < 256 {
        // A-law inverts every other bit.
        let bits = (code ^ 0x55) as i32;
        let segment = (bits >> 4) & 0x07;
        let mantissa = bits & 0x0F;
        let magnitude = match segment {
            0 => (mantissa << 4) + 8,
            _ => ((mantissa << 4) + 0x108) << (segment - 1),
        };
        let sample = if bits & 0x80 != 0 {
            magnitude
        } else {
            -magnitude
        };
        table[code] = sample as i16;
        code += 1;
    }
    table
}

/// Decodes PCMU payloads: one byte per sample at 8 kHz.
#[derive(Debug)]
pub(crate) struct UlawDecoder {
    concealment: Concealment,
}

impl UlawDecoder {
    pub(crate) fn new() -> Self {
        Self {
            concealment: Concealment::new(8000),
        }
    }
}

impl Decoder for UlawDecoder {
    fn sample_rate(&self) -> u32 {
        8000
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let start = out.len();
        out.extend(payload.iter().map(|&code| ulaw_to_linear(code)));
        self.concealment.remember(&out[start..]);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.concealment.fill(samples, out);
    }
}

/// Decodes PCMA payloads: one byte per sample at 8 kHz.
#[derive(Debug)]
pub(crate) struct AlawDecoder {
    concealment: Concealment,
}

impl AlawDecoder {
    pub(crate) fn new() -> Self {
        Self {
            concealment: Concealment::new(8000),
        }
    }
}

impl Decoder for AlawDecoder {
    fn sample_rate(&self) -> u32 {
        8000
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let start = out.len();
        out.extend(payload.iter().map(|&code| alaw_to_linear(code)));
        self.concealment.remember(&out[start..]);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.concealment.fill(samples, out);
    }
}
