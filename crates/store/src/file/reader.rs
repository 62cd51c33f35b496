//! Verifying and decrypting a finished recording, segment by segment.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

use super::format::{
    self, FileHeader, FrameError, LastFlag, SegmentCipher, SegmentKind, Trailer, HEADER_LEN,
    LENGTH_LEN, TAG_LEN, TRAILER_LEN,
};
use super::{open_data_key, FileError, UnwrapKey};
use crate::RecordingMetadata;

/// How many segment numbers either side a misplaced segment is looked for.
const REORDER_SEARCH: u32 = 32;

/// A whole recording, decrypted and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The metadata of the final segment.
    pub metadata: RecordingMetadata,
    /// The encoded audio (Ogg Opus or WAV, as `metadata.media_type` says).
    pub audio: Vec<u8>,
}

/// Reads the final metadata of a finished file: its first and last segments only.
///
/// The audio segments between them are not read, so a tampered audio segment goes
/// unnoticed here; [`verify`] reads everything.
pub fn read_metadata<K>(path: &Path, keys: &K) -> Result<RecordingMetadata, FileError>
where
    K: UnwrapKey + ?Sized,
{
    Ok(RecordingReader::open(path, keys)?.end)
}

/// Decrypts and verifies a whole recording into memory.
pub fn read_recording<K>(path: &Path, keys: &K) -> Result<Recording, FileError>
where
    K: UnwrapKey + ?Sized,
{
    let mut reader = RecordingReader::open(path, keys)?;
    let mut audio = Vec::new();
    reader.copy_audio(&mut audio)?;
    Ok(Recording {
        metadata: reader.end,
        audio,
    })
}

/// Verifies every segment of a recording, keeping none of its audio.
pub fn verify<K>(path: &Path, keys: &K) -> Result<RecordingMetadata, FileError>
where
    K: UnwrapKey + ?Sized,
{
    let mut reader = RecordingReader::open(path, keys)?;
    while reader.next_audio()?.is_some() {}
    Ok(reader.end)
}

/// Decrypts a recording one segment at a time.
///
/// Opening reads the header, the first and the final segment, so a truncated file
/// or a wrong key fails before any audio is returned. Audio segments are verified
/// as they are read: a caller streaming them out must discard what it wrote when a
/// later segment fails.
#[derive(Debug)]
pub struct RecordingReader<R> {
    segments: Segments<R>,
    header: FileHeader,
    start: RecordingMetadata,
    end: RecordingMetadata,
    next_segment: u32,
    position: u64,
}

impl RecordingReader<File> {
    /// Opens the recording at `path`.
    pub fn open<K>(path: &Path, keys: &K) -> Result<Self, FileError>
    where
        K: UnwrapKey + ?Sized,
    {
        let file = File::open(path).map_err(FileError::io("opening the recording file"))?;
        Self::new(file, keys)
    }
}

impl<R: Read + Seek> RecordingReader<R> {
    /// Reads a recording from `source`, which holds the file and nothing else.
    pub fn new<K>(mut source: R, keys: &K) -> Result<Self, FileError>
    where
        K: UnwrapKey + ?Sized,
    {
        let header = FileHeader::read_from(&mut source)?;
        let data_key = open_data_key(&header, keys)?;
        let file_len = source
            .seek(SeekFrom::End(0))
            .map_err(FileError::io("finding the recording's length"))?;
        let (trailer, final_offset) = locate_final_segment(&mut source, file_len)?;
        let mut segments = Segments {
            source,
            cipher: SegmentCipher::new(&data_key, &header),
            sealed: Vec::new(),
            final_segment: trailer.final_segment,
            final_offset,
        };

        let first = segments.open(HEADER_LEN as u64, 0, LastFlag::NotLast, final_offset)?;
        let start = segments.metadata(&first, SegmentKind::StartMetadata, &header)?;
        let body_end = file_len - TRAILER_LEN as u64;
        let last = segments.open(
            final_offset,
            trailer.final_segment,
            LastFlag::Last,
            body_end,
        )?;
        if final_offset + last.frame_len != body_end {
            return Err(FileError::Tampered {
                segment: trailer.final_segment,
            });
        }
        let end = segments.metadata(&last, SegmentKind::FinalMetadata, &header)?;

        Ok(Self {
            segments,
            header,
            start,
            end,
            next_segment: 1,
            position: HEADER_LEN as u64 + first.frame_len,
        })
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The metadata as it was when recording began (segment 0).
    pub fn start_metadata(&self) -> &RecordingMetadata {
        &self.start
    }

    /// The metadata as it was when recording ended (the final segment).
    pub fn metadata(&self) -> &RecordingMetadata {
        &self.end
    }

    /// The next audio segment's plaintext, or `None` after the last one.
    pub fn next_audio(&mut self) -> Result<Option<&[u8]>, FileError> {
        let final_segment = self.segments.final_segment;
        let final_offset = self.final_offset();
        if self.position == final_offset {
            return match self.next_segment == final_segment {
                true => Ok(None),
                false => Err(FileError::Reordered {
                    expected: self.next_segment,
                    found: final_segment,
                }),
            };
        }
        let number = self.next_segment;
        let opened = self
            .segments
            .open(self.position, number, LastFlag::NotLast, final_offset)?;
        if opened.kind != SegmentKind::Audio {
            return Err(FileError::InvalidSegment {
                segment: number,
                reason: "a middle segment holds something other than audio",
            });
        }
        let payload = &self.segments.sealed[opened.payload];
        let Some((_sealed_at, audio)) = format::split_timestamp(payload) else {
            return Err(FileError::InvalidSegment {
                segment: number,
                reason: "an audio segment is too short for its timestamp",
            });
        };
        self.position += opened.frame_len;
        self.next_segment += 1;
        Ok(Some(audio))
    }

    /// Writes every remaining audio segment to `out`; returns the bytes written.
    pub fn copy_audio<W: Write>(&mut self, out: &mut W) -> Result<u64, FileError> {
        let mut written = 0;
        while let Some(audio) = self.next_audio()? {
            out.write_all(audio)
                .map_err(FileError::io("writing decrypted audio"))?;
            written += audio.len() as u64;
        }
        Ok(written)
    }

    fn final_offset(&self) -> u64 {
        self.segments.final_offset
    }
}

/// Reads the trailer and works out where the final segment's frame starts.
fn locate_final_segment<R: Read + Seek>(
    source: &mut R,
    file_len: u64,
) -> Result<(Trailer, u64), FileError> {
    if file_len < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(FileError::Truncated);
    }
    let mut bytes = [0u8; TRAILER_LEN];
    source
        .seek(SeekFrom::Start(file_len - TRAILER_LEN as u64))
        .and_then(|_| source.read_exact(&mut bytes))
        .map_err(FileError::io("reading the recording trailer"))?;
    let trailer = Trailer::parse(&bytes).ok_or(FileError::Truncated)?;

    let frame_len = LENGTH_LEN as u64 + u64::from(trailer.final_sealed_len);
    let final_offset = (file_len - TRAILER_LEN as u64)
        .checked_sub(frame_len)
        .filter(|offset| *offset > HEADER_LEN as u64 && trailer.final_segment > 0);
    match final_offset {
        Some(offset) => Ok((trailer, offset)),
        None => Err(FileError::Tampered {
            segment: trailer.final_segment,
        }),
    }
}

/// The file's frames and the key to open them.
#[derive(Debug)]
struct Segments<R> {
    source: R,
    cipher: SegmentCipher,
    /// One buffer for every segment: sealed when read, plaintext once opened.
    sealed: Vec<u8>,
    final_segment: u32,
    final_offset: u64,
}

/// A segment opened in [`Segments::sealed`].
#[derive(Debug)]
struct Opened {
    frame_len: u64,
    kind: SegmentKind,
    payload: Range<usize>,
}

impl<R: Read + Seek> Segments<R> {
    /// Reads the frame at `offset` (ending by `limit`) and opens it as `number`.
    fn open(
        &mut self,
        offset: u64,
        number: u32,
        last: LastFlag,
        limit: u64,
    ) -> Result<Opened, FileError> {
        let frame_len = self.read(offset, number, limit)?;
        let mut opened = self.cipher.open(number, last, &mut self.sealed);
        if opened.is_none() && last == LastFlag::Last {
            self.read(offset, number, limit)?;
            opened = self
                .cipher
                .open(number, LastFlag::RecoveredLast, &mut self.sealed);
        }
        let Some((kind, _)) = opened else {
            return Err(self.diagnose(offset, number, last));
        };
        let kind = SegmentKind::from_byte(kind).ok_or(FileError::InvalidSegment {
            segment: number,
            reason: "unknown segment kind",
        })?;
        Ok(Opened {
            frame_len,
            kind,
            payload: 1..self.sealed.len() - TAG_LEN,
        })
    }

    /// Reads the frame at `offset` into the buffer, sealed.
    fn read(&mut self, offset: u64, number: u32, limit: u64) -> Result<u64, FileError> {
        match format::read_frame(&mut self.source, offset, limit, &mut self.sealed) {
            Ok(frame_len) => Ok(frame_len),
            Err(FrameError::Io(source)) => {
                Err(FileError::io("reading a recording segment")(source))
            }
            // The trailer says the file is whole, so a frame that overruns is damaged.
            Err(FrameError::Short | FrameError::BadLength) => {
                Err(FileError::Tampered { segment: number })
            }
        }
    }

    /// Tells a moved segment or a cut-short stream from a damaged segment.
    ///
    /// Runs only after a failure, so trying nearby segment numbers costs nothing
    /// on a good file.
    fn diagnose(&mut self, offset: u64, expected: u32, last: LastFlag) -> FileError {
        let mut original = Vec::new();
        if format::read_frame(&mut self.source, offset, u64::MAX, &mut original).is_err() {
            return FileError::Tampered { segment: expected };
        }
        if last == LastFlag::Last && self.opens_as(&original, expected, LastFlag::NotLast) {
            return FileError::Truncated;
        }
        if last == LastFlag::NotLast {
            if let Some(found) = self.find_elsewhere(&original, expected) {
                return FileError::Reordered { expected, found };
            }
        }
        FileError::Tampered { segment: expected }
    }

    /// The nearest other segment number `sealed` opens as, if any.
    fn find_elsewhere(&mut self, sealed: &[u8], expected: u32) -> Option<u32> {
        let nearby = (1..=REORDER_SEARCH).flat_map(|distance| {
            [
                expected.checked_sub(distance),
                expected.checked_add(distance),
            ]
        });
        let final_segment = self.final_segment;
        nearby.flatten().filter(|n| *n <= final_segment).find(|n| {
            let last = match *n == final_segment {
                true => LastFlag::Last,
                false => LastFlag::NotLast,
            };
            self.opens_as(sealed, *n, last)
        })
    }

    fn opens_as(&mut self, sealed: &[u8], number: u32, last: LastFlag) -> bool {
        self.sealed.clear();
        self.sealed.extend_from_slice(sealed);
        self.cipher.open(number, last, &mut self.sealed).is_some()
    }

    /// Parses an opened metadata segment of `kind` and checks it names this file.
    fn metadata(
        &self,
        opened: &Opened,
        kind: SegmentKind,
        header: &FileHeader,
    ) -> Result<RecordingMetadata, FileError> {
        let segment = match kind {
            SegmentKind::StartMetadata => 0,
            _ => self.final_segment,
        };
        if opened.kind != kind {
            return Err(FileError::InvalidSegment {
                segment,
                reason: "the first or final segment does not hold metadata",
            });
        }
        format::parse_metadata(segment, &self.sealed[opened.payload.clone()], header)
    }
}
