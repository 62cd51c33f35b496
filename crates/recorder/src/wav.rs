//! A streaming WAV writer: RIFF/WAVE, 16-bit PCM, little-endian.
//!
//! A recording is written to an append-only encrypted stream, so its header goes
//! out before the length is known. [`streaming_header`] writes the RIFF and data
//! sizes as `0xFFFFFFFF`, the usual marker of a WAV of unknown length, which readers
//! that tolerate it read to the end of the file. SoX 14.4.2 reads every sample of
//! such a file, with a "premature EOF" warning and a wrong duration from `sox --i`;
//! FFmpeg's wav demuxer has an `ignore_length` option for it. Readers that trust the
//! sizes (most desktop players, clinical systems) need [`final_header`] patched over
//! the first [`HEADER_LEN`] bytes, which an export does once the length is known.

use thiserror::Error;

/// Length of the header written by this module.
pub const HEADER_LEN: usize = 44;

/// Size of the header after the RIFF chunk's size field: "WAVE", fmt and data heads.
const RIFF_OVERHEAD: u32 = 36;

/// Most sample bytes an exact header can state: the RIFF size must stay below
/// [`UNKNOWN_SIZE`], which would mean "unknown" instead.
const MAX_DATA_BYTES: u64 = (UNKNOWN_SIZE - 1 - RIFF_OVERHEAD) as u64;

/// The RIFF and data size that stands for "unknown, read to the end".
const UNKNOWN_SIZE: u32 = u32::MAX;

/// WAVE format tag of integer PCM.
const FORMAT_PCM: u16 = 1;

const BITS_PER_SAMPLE: u16 = 16;

/// Why an exact header cannot be written.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WavError {
    /// The RIFF size field is 32 bits, so a WAV holds at most about 4 GiB.
    #[error("{data_bytes} bytes of audio do not fit in a wav file")]
    TooLong {
        /// Bytes of sample data asked for.
        data_bytes: u64,
    },
    /// The data does not end on a whole sample frame.
    #[error("{data_bytes} bytes of audio are not whole frames of {block_align} bytes")]
    PartialFrame {
        /// Bytes of sample data asked for.
        data_bytes: u64,
        /// Bytes in one sample frame (all channels).
        block_align: u16,
    },
}

/// The header of a WAV whose length is not known yet.
pub fn streaming_header(sample_rate: u32, channels: u16) -> [u8; HEADER_LEN] {
    header(sample_rate, channels, UNKNOWN_SIZE, UNKNOWN_SIZE)
}

/// The exact header of a WAV holding `data_bytes` of samples.
pub fn final_header(
    sample_rate: u32,
    channels: u16,
    data_bytes: u64,
) -> Result<[u8; HEADER_LEN], WavError> {
    let block_align = block_align(channels);
    if block_align == 0 || !data_bytes.is_multiple_of(u64::from(block_align)) {
        return Err(WavError::PartialFrame {
            data_bytes,
            block_align,
        });
    }

    if data_bytes > MAX_DATA_BYTES {
        return Err(WavError::TooLong { data_bytes });
    }
    let data_size = u32::try_from(data_bytes).expect("data_bytes is at most MAX_DATA_BYTES");
    let riff_size = data_size + RIFF_OVERHEAD;
    Ok(header(sample_rate, channels, riff_size, data_size))
}

/// The sample rate and channel count a header of this module's states, or `None`
/// for any other header (another layout, format or sample size).
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Option<(u32, u16)> {
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let tags = [(0, b"RIFF"), (8, b"WAVE"), (12, b"fmt "), (36, b"data")];
    let tagged = tags.iter().all(|(at, tag)| &header[*at..*at + 4] == *tag);
    let pcm = u32_at(16) == 16 && u16_at(20) == FORMAT_PCM && u16_at(34) == BITS_PER_SAMPLE;
    (tagged && pcm).then(|| (u32_at(24), u16_at(22)))
}

/// Appends `samples` to `out` as little-endian bytes.
pub fn samples_to_le_bytes(samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
}

/// Bytes in one sample frame; saturates for absurd channel counts.
fn block_align(channels: u16) -> u16 {
    channels.saturating_mul(BITS_PER_SAMPLE / 8)
}

/// Lays out the RIFF head, the fmt chunk and the data chunk's head.
fn header(sample_rate: u32, channels: u16, riff_size: u32, data_size: u32) -> [u8; HEADER_LEN] {
    let block_align = block_align(channels);
    let byte_rate = sample_rate.saturating_mul(u32::from(block_align));

    let mut header = [0u8; HEADER_LEN];
    let fields: [&[u8]; 13] = [
        b"RIFF",
        &riff_size.to_le_bytes(),
        b"WAVE",
        b"fmt ",
        &16u32.to_le_bytes(),
        &FORMAT_PCM.to_le_bytes(),
        &channels.to_le_bytes(),
        &sample_rate.to_le_bytes(),
        &byte_rate.to_le_bytes(),
        &block_align.to_le_bytes(),
        &BITS_PER_SAMPLE.to_le_bytes(),
        b"data",
        &data_size.to_le_bytes(),
    ];

    let mut at = 0;
    for field in fields {
        header[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    debug_assert_eq!(at, HEADER_LEN);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_header_reads_back_what_the_headers_state() {
        assert_eq!(parse_header(&streaming_header(8000, 2)), Some((8000, 2)));
        let exact = final_header(16000, 1, 640).unwrap();
        assert_eq!(parse_header(&exact), Some((16000, 1)));
    }

    #[test]
    fn parse_header_refuses_other_headers() {
        let mut float = streaming_header(8000, 1);
        float[20] = 3;
        assert_eq!(parse_header(&float), None);
        let mut not_riff = streaming_header(8000, 1);
        not_riff[0] = b'X';
        assert_eq!(parse_header(&not_riff), None);
        assert_eq!(parse_header(&[0; HEADER_LEN]), None);
    }
}
