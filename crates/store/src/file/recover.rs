//! Finishing a `.part` file that a crash or an I/O error left behind.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::format::{
    self, FileHeader, FrameError, LastFlag, SegmentCipher, SegmentKind, Trailer, HEADER_LEN,
    LENGTH_LEN, MAX_PAYLOAD_LEN,
};
use super::{open_data_key, parent_dir, sync_dir, FileError, UnwrapKey};
use super::{FILE_EXTENSION, PART_EXTENSION};
use crate::{RecordingMetadata, RecordingStatus};

/// The `status_reason` recovery writes into a recording it finishes.
pub const RECOVERED_REASON: &str =
    "the recorder stopped before finishing the file; recovered up to its last whole segment";

/// What [`recover`] made of a `.part` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredFile {
    /// The finished file, `<id>.cvr`.
    pub path: PathBuf,
    /// Its final metadata: status [`Partial`](RecordingStatus::Partial), or as the
    /// writer sealed it when the file was finished but not yet renamed.
    pub metadata: RecordingMetadata,
    /// Whole audio segments kept.
    pub audio_segments: u32,
    /// Bytes of torn segment cut from the end.
    pub discarded_bytes: u64,
}

/// Finishes a `.part` file: keeps its whole segments, seals a final one, renames.
///
/// The torn tail is cut off, and a final segment is added whose metadata is the
/// first segment's with status `Partial`, [`RECOVERED_REASON`], and `end_ms` the
/// time the last whole audio segment was sealed. A file the writer had finished but
/// not renamed keeps its own final metadata. Recovery run again after a crash of its
/// own writes the same bytes. A `.part` without a whole first segment holds no audio
/// and no metadata: that is [`FileError::Truncated`].
pub fn recover<K>(part_path: &Path, keys: &K) -> Result<RecoveredFile, FileError>
where
    K: UnwrapKey + ?Sized,
{
    recover_as(part_path, keys, RecordingStatus::Partial, RECOVERED_REASON)
}

/// Finishes a `.part` file as [`recover`] does, with another status and reason.
///
/// The recorder uses it when writing failed during the call (status
/// [`Failed`](RecordingStatus::Failed)): the audio written so far is kept and the
/// file says why it ends early. A file the writer had finished keeps its own
/// metadata here too.
pub fn recover_as<K>(
    part_path: &Path,
    keys: &K,
    status: RecordingStatus,
    reason: &str,
) -> Result<RecoveredFile, FileError>
where
    K: UnwrapKey + ?Sized,
{
    if part_path.extension() != Some(OsStr::new(PART_EXTENSION)) {
        return Err(FileError::InvalidInput("recovery takes a .part file"));
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(part_path)
        .map_err(FileError::io("opening the file to recover"))?;
    let header = FileHeader::read_from(&mut file)?;
    let cipher = SegmentCipher::new(&open_data_key(&header, keys)?, &header);
    let file_len = file
        .seek(SeekFrom::End(0))
        .map_err(FileError::io("finding the length of the file to recover"))?;

    let scan = Scan::run(&mut file, &cipher, &header)?;
    let discarded_bytes = file_len - scan.good_end;
    let audio_segments = scan.audio_segments;
    let metadata = rewrite_end(&mut file, &cipher, scan, (status, reason))?;

    let path = part_path.with_extension(FILE_EXTENSION);
    std::fs::rename(part_path, &path).map_err(FileError::io("renaming the recovered file"))?;
    sync_dir(parent_dir(&path))?;
    tracing::info!(
        recording_id = %metadata.id,
        audio_segments,
        discarded_bytes,
        "recovered unfinished recording"
    );
    Ok(RecoveredFile {
        path,
        metadata,
        audio_segments,
        discarded_bytes,
    })
}

/// Cuts the torn tail, adds a final segment if there is none, and the trailer.
fn rewrite_end(
    file: &mut File,
    cipher: &SegmentCipher,
    scan: Scan,
    (status, reason): (RecordingStatus, &str),
) -> Result<RecordingMetadata, FileError> {
    file.set_len(scan.good_end)
        .and_then(|()| file.seek(SeekFrom::Start(scan.good_end)).map(drop))
        .map_err(FileError::io("cutting the torn tail"))?;
    let (metadata, trailer) = match scan.finished {
        Some(finished) => finished,
        None => {
            let start = scan.start.ok_or(FileError::Truncated)?;
            let metadata = cut_short_metadata(start, scan.last_sealed_ms, status, reason);
            let trailer = append_final(file, cipher, scan.next_segment, &metadata)?;
            (metadata, trailer)
        }
    };
    file.write_all(&trailer.encode())
        .and_then(|()| file.sync_data())
        .map_err(FileError::io("writing the recovered file's end"))?;
    Ok(metadata)
}

/// The metadata of a recording cut short, from what it began with.
///
/// Everything here comes from the whole segments, so recovery interrupted and run
/// again seals the same plaintext under the same nonce.
fn cut_short_metadata(
    start: RecordingMetadata,
    last_sealed_ms: Option<i64>,
    status: RecordingStatus,
    reason: &str,
) -> RecordingMetadata {
    let end_ms = last_sealed_ms.unwrap_or(start.start_ms).max(start.start_ms);
    RecordingMetadata {
        end_ms: Some(end_ms),
        status,
        status_reason: Some(reason.to_owned()),
        ..start
    }
}

fn append_final(
    file: &mut File,
    cipher: &SegmentCipher,
    number: u32,
    metadata: &RecordingMetadata,
) -> Result<Trailer, FileError> {
    let mut frame = Vec::new();
    format::start_frame(&mut frame, SegmentKind::FinalMetadata);
    serde_json::to_writer(&mut frame, metadata)
        .expect("recording metadata serialises: it has no maps and no fallible fields");
    if frame.len() - format::FRAME_START_LEN > MAX_PAYLOAD_LEN {
        return Err(FileError::InvalidInput(
            "the metadata does not fit in a segment",
        ));
    }
    cipher.seal_frame(number, LastFlag::RecoveredLast, &mut frame);
    file.write_all(&frame)
        .map_err(FileError::io("writing the recovered final segment"))?;
    Ok(Trailer {
        final_segment: number,
        final_sealed_len: u32::try_from(frame.len() - LENGTH_LEN)
            .expect("a segment is at most MAX_SEGMENT_LEN bytes"),
    })
}

/// What the whole segments at the start of a `.part` file hold.
#[derive(Debug)]
struct Scan {
    start: Option<RecordingMetadata>,
    /// The final metadata and trailer, when the writer had sealed its final segment.
    finished: Option<(RecordingMetadata, Trailer)>,
    audio_segments: u32,
    last_sealed_ms: Option<i64>,
    next_segment: u32,
    /// Where the last whole segment ends.
    good_end: u64,
}

impl Scan {
    /// Opens segments from the start until one is torn, missing or final.
    fn run(
        file: &mut File,
        cipher: &SegmentCipher,
        header: &FileHeader,
    ) -> Result<Scan, FileError> {
        let mut scan = Scan {
            start: None,
            finished: None,
            audio_segments: 0,
            last_sealed_ms: None,
            next_segment: 0,
            good_end: HEADER_LEN as u64,
        };
        let mut sealed = Vec::new();
        while let Some(frame_len) = scan.read(file, &mut sealed)? {
            let opened = cipher.open(scan.next_segment, LastFlag::NotLast, &mut sealed);
            let kept = match opened {
                Some((kind, payload)) => scan.keep(kind, payload, header)?,
                None => {
                    scan.finished = scan.open_final(file, cipher, header, &mut sealed)?;
                    scan.finished.is_some()
                }
            };
            // The final segment needs a number of its own after the last one kept.
            let Some(next_segment) = scan.next_segment.checked_add(1).filter(|_| kept) else {
                break;
            };
            scan.good_end += frame_len;
            scan.next_segment = next_segment;
            if scan.finished.is_some() {
                break;
            }
        }
        Ok(scan)
    }

    /// Reads the next frame; `None` where the file ends or the frame is torn.
    fn read(&self, file: &mut File, sealed: &mut Vec<u8>) -> Result<Option<u64>, FileError> {
        match format::read_frame(file, self.good_end, u64::MAX, sealed) {
            Ok(frame_len) => Ok(Some(frame_len)),
            Err(FrameError::Short | FrameError::BadLength) => Ok(None),
            Err(FrameError::Io(source)) => {
                Err(FileError::io("reading the file to recover")(source))
            }
        }
    }

    /// Takes an opened segment in; `false` when it is not what belongs here.
    fn keep(&mut self, kind: u8, payload: &[u8], header: &FileHeader) -> Result<bool, FileError> {
        match (self.next_segment, SegmentKind::from_byte(kind)) {
            (0, Some(SegmentKind::StartMetadata)) => {
                self.start = Some(format::parse_metadata(0, payload, header)?);
                Ok(true)
            }
            (1.., Some(SegmentKind::Audio)) => {
                let Some((sealed_at, _)) = format::split_timestamp(payload) else {
                    return Ok(false);
                };
                self.last_sealed_ms = Some(sealed_at);
                self.audio_segments += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Reads the frame again and opens it as a final segment, if it is one.
    fn open_final(
        &self,
        file: &mut File,
        cipher: &SegmentCipher,
        header: &FileHeader,
        sealed: &mut Vec<u8>,
    ) -> Result<Option<(RecordingMetadata, Trailer)>, FileError> {
        if self.start.is_none() {
            return Ok(None);
        }
        for last in [LastFlag::Last, LastFlag::RecoveredLast] {
            let Some(frame_len) = self.read(file, sealed)? else {
                return Ok(None);
            };
            let final_sealed_len = u32::try_from(frame_len - LENGTH_LEN as u64)
                .expect("a segment is at most MAX_SEGMENT_LEN bytes");
            let Some((kind, payload)) = cipher.open(self.next_segment, last, sealed) else {
                continue;
            };
            if SegmentKind::from_byte(kind) != Some(SegmentKind::FinalMetadata) {
                return Ok(None);
            }
            let metadata = format::parse_metadata(self.next_segment, payload, header)?;
            let trailer = Trailer {
                final_segment: self.next_segment,
                final_sealed_len,
            };
            return Ok(Some((metadata, trailer)));
        }
        Ok(None)
    }
}
