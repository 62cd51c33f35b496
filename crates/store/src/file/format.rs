//! The bytes of a recording file: header, segment frames and trailer.

use std::io::{self, Read, Seek, SeekFrom};

use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};

use super::FileError;
use crate::keys::{DataKey, KeyId, WrappedKey, WRAPPED_LEN};
use crate::{RecordingId, RecordingMetadata};

/// The first eight bytes of every recording file.
pub(crate) const MAGIC: [u8; 8] = *b"CVREC\r\n\x1a";

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes of the random prefix of every segment nonce.
pub(crate) const NONCE_PREFIX_LEN: usize = 7;

/// Bytes of the recording id in the header.
pub(crate) const FILE_ID_LEN: usize = 16;

/// Bytes of the header that every seal binds: magic to nonce prefix.
pub(crate) const BOUND_LEN: usize = 8 + 2 + 2 + FILE_ID_LEN + NONCE_PREFIX_LEN;

/// Bytes of the key slot: key id, wrap nonce and wrapped key.
pub(crate) const KEY_SLOT_LEN: usize = 4 + NONCE_LEN + WRAPPED_LEN;

/// Bytes of the whole header.
pub(crate) const HEADER_LEN: usize = BOUND_LEN + KEY_SLOT_LEN;

/// Bytes of the length that precedes each segment.
pub(crate) const LENGTH_LEN: usize = 4;

/// Bytes of the GCM tag at the end of each segment.
pub(crate) const TAG_LEN: usize = 16;

/// The largest sealed segment (kind byte, payload and tag) a reader accepts.
///
/// A hostile length field cannot make a reader allocate more than this.
pub const MAX_SEGMENT_LEN: usize = 1 << 20;

/// The smallest sealed segment: a kind byte and the tag.
pub(crate) const MIN_SEGMENT_LEN: usize = 1 + TAG_LEN;

/// The largest payload (audio or metadata) one segment holds.
pub(crate) const MAX_PAYLOAD_LEN: usize = MAX_SEGMENT_LEN - MIN_SEGMENT_LEN;

/// Bytes of the trailer after the final segment.
pub(crate) const TRAILER_LEN: usize = 12;

/// The last four bytes of a finished recording file.
const END_MAGIC: [u8; 4] = *b"CVRE";

/// What a segment holds, its first plaintext byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentKind {
    /// Segment 0: the metadata when recording began.
    StartMetadata = 1,
    Audio = 2,
    /// The last segment: the metadata when recording ended.
    FinalMetadata = 3,
}

impl SegmentKind {
    /// `None` for kinds version 1 does not define.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::StartMetadata),
            2 => Some(Self::Audio),
            3 => Some(Self::FinalMetadata),
            _ => None,
        }
    }
}

/// Whether a segment is the stream's last, as bound into its nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LastFlag {
    NotLast = 0,
    /// The final segment, sealed by the writer.
    Last = 1,
    /// The final segment, sealed by recovery. A crash may have left a torn final
    /// segment the writer sealed under the same number with flag 1; a flag of its
    /// own keeps recovery from ever reusing that nonce.
    RecoveredLast = 2,
}

/// Bytes of the wall-clock time at the start of each audio segment's plaintext.
pub(crate) const TIMESTAMP_LEN: usize = 8;

/// Bytes of a frame before its payload: the length field and the kind byte.
pub(crate) const FRAME_START_LEN: usize = LENGTH_LEN + 1;

/// A parsed recording header.
#[derive(Debug, Clone)]
pub struct FileHeader {
    bound: [u8; BOUND_LEN],
    wrapped: WrappedKey,
}

impl FileHeader {
    /// The bound part of a new header: everything but the key slot.
    pub(crate) fn bound_bytes(
        file_id: &[u8; FILE_ID_LEN],
        nonce_prefix: &[u8; NONCE_PREFIX_LEN],
    ) -> [u8; BOUND_LEN] {
        let mut bound = [0u8; BOUND_LEN];
        bound[..8].copy_from_slice(&MAGIC);
        bound[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        // Bytes 10..12 are the flags, zero in version 1.
        bound[12..28].copy_from_slice(file_id);
        bound[28..].copy_from_slice(nonce_prefix);
        bound
    }

    pub(crate) fn new(bound: [u8; BOUND_LEN], wrapped: WrappedKey) -> Self {
        Self { bound, wrapped }
    }

    /// Checks magic, version and flags, then splits off the key slot.
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, FileError> {
        if bytes[..8] != MAGIC {
            return Err(FileError::BadMagic);
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(FileError::UnknownVersion(version));
        }
        let flags = u16::from_be_bytes([bytes[10], bytes[11]]);
        if flags != 0 {
            return Err(FileError::UnsupportedFlags(flags));
        }
        let mut bound = [0u8; BOUND_LEN];
        bound.copy_from_slice(&bytes[..BOUND_LEN]);
        let wrapped = parse_key_slot(&bytes[BOUND_LEN..]);
        Ok(Self { bound, wrapped })
    }

    /// Reads and parses the header at the start of `source`.
    ///
    /// A file too short for a header is [`FileError::Truncated`] if what it has
    /// matches the magic, [`FileError::BadMagic`] if not.
    pub(crate) fn read_from<R: Read>(source: &mut R) -> Result<Self, FileError> {
        let mut bytes = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            match source.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(FileError::io("reading the recording header")(error)),
            }
        }
        if filled < HEADER_LEN {
            let seen = filled.min(MAGIC.len());
            return Err(match bytes[..seen] == MAGIC[..seen] {
                true => FileError::Truncated,
                false => FileError::BadMagic,
            });
        }
        Self::parse(&bytes)
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..BOUND_LEN].copy_from_slice(&self.bound);
        bytes[BOUND_LEN..].copy_from_slice(&encode_key_slot(&self.wrapped));
        bytes
    }

    /// The recording id the file was written for.
    pub fn recording_id(&self) -> RecordingId {
        RecordingId(hex(&self.bound[12..28]))
    }

    /// The id of the master key the data key is wrapped with.
    pub fn key_id(&self) -> KeyId {
        self.wrapped.key_id
    }

    /// Whether the wrapped key was overwritten to destroy the recording.
    pub fn is_shredded(&self) -> bool {
        self.wrapped.is_shredded()
    }

    /// The bytes every seal in this file binds as associated data.
    pub(crate) fn context(&self) -> &[u8] {
        &self.bound
    }

    pub(crate) fn wrapped(&self) -> &WrappedKey {
        &self.wrapped
    }

    fn nonce_prefix(&self) -> [u8; NONCE_PREFIX_LEN] {
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&self.bound[BOUND_LEN - NONCE_PREFIX_LEN..]);
        prefix
    }
}

/// The key slot's bytes: key id, wrap nonce, wrapped key.
pub(crate) fn encode_key_slot(wrapped: &WrappedKey) -> [u8; KEY_SLOT_LEN] {
    let mut slot = [0u8; KEY_SLOT_LEN];
    slot[..4].copy_from_slice(&wrapped.key_id.0.to_be_bytes());
    slot[4..4 + NONCE_LEN].copy_from_slice(&wrapped.nonce);
    slot[4 + NONCE_LEN..].copy_from_slice(&wrapped.sealed);
    slot
}

fn parse_key_slot(slot: &[u8]) -> WrappedKey {
    let mut id = [0u8; 4];
    id.copy_from_slice(&slot[..4]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&slot[4..4 + NONCE_LEN]);
    let mut sealed = [0u8; WRAPPED_LEN];
    sealed.copy_from_slice(&slot[4 + NONCE_LEN..]);
    WrappedKey {
        key_id: KeyId(u32::from_be_bytes(id)),
        nonce,
        sealed,
    }
}

/// The 16 bytes a recording id's 32 lowercase hex digits spell.
pub(crate) fn parse_recording_id(id: &RecordingId) -> Result<[u8; FILE_ID_LEN], FileError> {
    let invalid = FileError::InvalidInput("a recording id is 32 lowercase hex digits");
    let digits = id.0.as_bytes();
    if digits.len() != 2 * FILE_ID_LEN {
        return Err(invalid);
    }
    let mut bytes = [0u8; FILE_ID_LEN];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let (Some(high), Some(low)) = (hex_value(pair[0]), hex_value(pair[1])) else {
            return Err(invalid);
        };
        *byte = high << 4 | low;
    }
    Ok(bytes)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

/// The data key and the bytes that bind segments to their file and place.
pub(crate) struct SegmentCipher {
    key: LessSafeKey,
    bound: [u8; BOUND_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl std::fmt::Debug for SegmentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentCipher(..)")
    }
}

impl SegmentCipher {
    pub(crate) fn new(data_key: &DataKey, header: &FileHeader) -> Self {
        Self {
            key: data_key.aead_key(),
            bound: header.bound,
            nonce_prefix: header.nonce_prefix(),
        }
    }

    /// STREAM nonce: prefix, segment number (u32 BE), last flag.
    fn nonce(&self, number: u32, last: LastFlag) -> Nonce {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..NONCE_LEN - 1].copy_from_slice(&number.to_be_bytes());
        nonce[NONCE_LEN - 1] = last as u8;
        Nonce::assume_unique_for_key(nonce)
    }

    /// Seals a frame in place: `frame` is a length field, a kind byte, a payload.
    ///
    /// Afterwards it holds the frame as written to disk: the length of the
    /// ciphertext and tag, then both.
    pub(crate) fn seal_frame(&self, number: u32, last: LastFlag, frame: &mut Vec<u8>) {
        let nonce = self.nonce(number, last);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&self.bound), &mut frame[LENGTH_LEN..])
            .expect("a segment within MAX_SEGMENT_LEN is far below GCM's length limit");
        frame.extend_from_slice(tag.as_ref());
        let sealed_len = u32::try_from(frame.len() - LENGTH_LEN)
            .expect("a segment is at most MAX_SEGMENT_LEN bytes");
        frame[..LENGTH_LEN].copy_from_slice(&sealed_len.to_be_bytes());
    }

    /// Opens a sealed segment in place, giving its kind byte and payload.
    ///
    /// `None` when it does not authenticate as segment `number` with `last`;
    /// ring has then overwritten `sealed` with zeros.
    pub(crate) fn open<'a>(
        &self,
        number: u32,
        last: LastFlag,
        sealed: &'a mut [u8],
    ) -> Option<(u8, &'a [u8])> {
        let nonce = self.nonce(number, last);
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(&self.bound), sealed)
            .ok()?;
        let (kind, payload) = plain.split_first()?;
        Some((*kind, payload))
    }
}

/// A new, empty frame of `kind`: room for the length, then the kind byte, and for
/// audio room for its timestamp.
pub(crate) fn start_frame(frame: &mut Vec<u8>, kind: SegmentKind) {
    frame.clear();
    frame.extend_from_slice(&[0; LENGTH_LEN]);
    frame.push(kind as u8);
    if kind == SegmentKind::Audio {
        frame.extend_from_slice(&[0; TIMESTAMP_LEN]);
    }
}

/// Sets an audio frame's timestamp: Unix time in milliseconds when sealed.
pub(crate) fn set_timestamp(frame: &mut [u8], unix_ms: i64) {
    frame[FRAME_START_LEN..FRAME_START_LEN + TIMESTAMP_LEN].copy_from_slice(&unix_ms.to_be_bytes());
}

/// Splits an audio payload into its timestamp and its audio.
pub(crate) fn split_timestamp(payload: &[u8]) -> Option<(i64, &[u8])> {
    let (time, audio) = payload.split_first_chunk::<TIMESTAMP_LEN>()?;
    Some((i64::from_be_bytes(*time), audio))
}

/// The current Unix time in milliseconds (0 for a clock before 1970).
pub fn unix_ms_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Parses a metadata segment's payload and checks it names this file.
pub(crate) fn parse_metadata(
    segment: u32,
    payload: &[u8],
    header: &FileHeader,
) -> Result<RecordingMetadata, FileError> {
    let metadata: RecordingMetadata = serde_json::from_slice(payload)
        .map_err(|source| FileError::MetadataDecode { segment, source })?;
    if metadata.id != header.recording_id() {
        return Err(FileError::InvalidSegment {
            segment,
            reason: "the metadata names another recording",
        });
    }
    Ok(metadata)
}

/// The trailer: where the final segment is, and that the file is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub(crate) final_segment: u32,
    pub(crate) final_sealed_len: u32,
}

impl Trailer {
    pub(crate) fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut bytes = [0u8; TRAILER_LEN];
        bytes[..4].copy_from_slice(&self.final_segment.to_be_bytes());
        bytes[4..8].copy_from_slice(&self.final_sealed_len.to_be_bytes());
        bytes[8..].copy_from_slice(&END_MAGIC);
        bytes
    }

    /// `None` when the end magic is missing: the file was never finished.
    pub(crate) fn parse(bytes: &[u8; TRAILER_LEN]) -> Option<Self> {
        if bytes[8..] != END_MAGIC {
            return None;
        }
        Some(Self {
            final_segment: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            final_sealed_len: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        })
    }
}

/// Why a frame could not be read whole.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The file ends inside the frame.
    Short,
    /// The length field is outside what any segment may have.
    BadLength,
    Io(io::Error),
}

/// Reads the frame at `offset` into `sealed`; returns the frame's total bytes.
///
/// A frame whose length field says it would end past `limit` is [`FrameError::BadLength`].
pub(crate) fn read_frame<R: Read + Seek>(
    source: &mut R,
    offset: u64,
    limit: u64,
    sealed: &mut Vec<u8>,
) -> Result<u64, FrameError> {
    source
        .seek(SeekFrom::Start(offset))
        .map_err(FrameError::Io)?;
    let mut length = [0u8; LENGTH_LEN];
    read_exact(source, &mut length)?;
    let length = u32::from_be_bytes(length) as usize;
    let frame_len = (LENGTH_LEN + length) as u64;
    let fits = offset
        .checked_add(frame_len)
        .is_some_and(|end| end <= limit);
    if !(MIN_SEGMENT_LEN..=MAX_SEGMENT_LEN).contains(&length) || !fits {
        return Err(FrameError::BadLength);
    }
    sealed.resize(length, 0);
    read_exact(source, sealed)?;
    Ok(frame_len)
}

fn read_exact<R: Read>(source: &mut R, buffer: &mut [u8]) -> Result<(), FrameError> {
    source
        .read_exact(buffer)
        .map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => FrameError::Short,
            _ => FrameError::Io(error),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_specification() {
        assert_eq!(BOUND_LEN, 35);
        assert_eq!(KEY_SLOT_LEN, 64);
        assert_eq!(HEADER_LEN, 99);
    }

    #[test]
    fn recording_id_round_trips_through_header_bytes() {
        let id = RecordingId("00ff10a0b1c2d3e4f5061728394a5b6c".into());
        let bytes = parse_recording_id(&id).unwrap();
        assert_eq!(bytes[1], 0xff);
        assert_eq!(hex(&bytes), id.0);
    }

    #[test]
    fn recording_id_with_path_characters_is_rejected() {
        for bad in ["../../etc/passwd", "00FF10A0B1C2D3E4F5061728394A5B6C", ""] {
            let id = RecordingId(bad.into());
            assert!(matches!(
                parse_recording_id(&id),
                Err(FileError::InvalidInput(_))
            ));
        }
    }

    #[test]
    fn trailer_without_end_magic_is_not_a_trailer() {
        let trailer = Trailer {
            final_segment: 9,
            final_sealed_len: 300,
        };
        let mut bytes = trailer.encode();
        assert_eq!(Trailer::parse(&bytes), Some(trailer));
        bytes[11] ^= 1;
        assert_eq!(Trailer::parse(&bytes), None);
    }
}
