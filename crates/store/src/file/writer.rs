//! Streaming a call's audio into an encrypted `.part` file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::format::{
    self, FileHeader, LastFlag, SegmentCipher, SegmentKind, Trailer, FRAME_START_LEN, LENGTH_LEN,
    MAX_PAYLOAD_LEN, NONCE_PREFIX_LEN, TIMESTAMP_LEN,
};
use super::{sync_dir, FileError, FILE_EXTENSION, PART_EXTENSION};
use crate::keys::{random_bytes, DataKey, MasterKey};
use crate::{RecordingId, RecordingMetadata};

/// How often the writer seals a segment, and whether it syncs each one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Pending audio is sealed and written once it spans this much audio (as the
    /// caller reports it) or has waited this long on the wall clock. A crash loses
    /// at most this much, plus what the caller had not yet handed over.
    pub segment_interval: Duration,
    /// Whether each segment is `fdatasync`ed once written (the default). Without it,
    /// a power cut may lose whatever the kernel had not yet written back; a killed
    /// process still loses at most one interval.
    pub sync_each_segment: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            segment_interval: Duration::from_secs(1),
            sync_each_segment: true,
        }
    }
}

/// Writes one call's recording file as audio arrives.
///
/// Dropping the writer without [`finish`](Self::finish) leaves the `.part` file,
/// readable up to its last whole segment, for [`recover`](super::recover). After an
/// I/O error every call returns [`FileError::WriterFailed`]; the caller may then drop
/// the writer and recover the `.part` file at once.
#[derive(Debug)]
pub struct RecordingWriter {
    file: File,
    part_path: PathBuf,
    final_path: PathBuf,
    recording_id: RecordingId,
    cipher: SegmentCipher,
    next_segment: u32,
    /// The frame being filled: length field, kind byte, then plaintext audio.
    frame: Vec<u8>,
    pending_audio: Duration,
    pending_since: Option<Instant>,
    options: WriterOptions,
    failed: bool,
}

impl RecordingWriter {
    /// Creates `<id>.part` in `dir` (mode 0600) with its header and first segment.
    ///
    /// `metadata` is sealed as segment 0; its id names the file. The new data key is
    /// wrapped by `master`. The file and its directory entry are synced before this
    /// returns, whatever [`WriterOptions::sync_each_segment`] says.
    pub fn create(
        dir: &Path,
        metadata: &RecordingMetadata,
        master: &MasterKey,
        options: WriterOptions,
    ) -> Result<Self, FileError> {
        if options.segment_interval.is_zero() {
            return Err(FileError::InvalidInput(
                "the segment interval must not be zero",
            ));
        }
        let (header, data_key) = new_header(&metadata.id, master)?;
        let part_path = dir.join(format!("{}.{PART_EXTENSION}", metadata.id));
        let final_path = dir.join(format!("{}.{FILE_EXTENSION}", metadata.id));
        if final_path.exists() {
            return Err(FileError::InvalidInput(
                "a recording with this id already exists",
            ));
        }
        let file = create_part_file(&part_path)?;
        let mut writer = Self {
            file,
            part_path,
            final_path,
            recording_id: metadata.id.clone(),
            cipher: SegmentCipher::new(&data_key, &header),
            next_segment: 0,
            frame: Vec::with_capacity(FRAME_START_LEN + 64 * 1024),
            pending_audio: Duration::ZERO,
            pending_since: None,
            options,
            failed: false,
        };
        if let Err(error) = writer.begin(&header, metadata, dir) {
            // The file holds no audio yet; the error that stopped it matters more
            // than a failure to remove it.
            std::fs::remove_file(&writer.part_path).ok();
            return Err(error);
        }
        Ok(writer)
    }

    /// Writes and syncs the header and segment 0, and the directory entry.
    fn begin(
        &mut self,
        header: &FileHeader,
        metadata: &RecordingMetadata,
        dir: &Path,
    ) -> Result<(), FileError> {
        self.write(&header.encode(), "writing the recording header")?;
        self.write_metadata(SegmentKind::StartMetadata, metadata, LastFlag::NotLast)?;
        self.sync()?;
        sync_dir(dir)?;
        format::start_frame(&mut self.frame, SegmentKind::Audio);
        Ok(())
    }

    /// Where the file is while being written.
    pub fn part_path(&self) -> &Path {
        &self.part_path
    }

    /// Appends encoded audio that plays for `duration` (zero when unknown).
    ///
    /// Seals a segment when the pending audio reaches the segment interval in
    /// duration or in wall time since it began, or fills a segment.
    pub fn write_audio(&mut self, mut audio: &[u8], duration: Duration) -> Result<(), FileError> {
        self.check_usable()?;
        while !audio.is_empty() {
            let room = MAX_PAYLOAD_LEN - self.payload_len();
            let (taken, rest) = audio.split_at(room.min(audio.len()));
            self.pending_since.get_or_insert_with(Instant::now);
            self.frame.extend_from_slice(taken);
            audio = rest;
            if self.payload_len() == MAX_PAYLOAD_LEN {
                self.seal_pending()?;
            }
        }
        self.pending_audio += duration;
        if self.is_due() {
            self.seal_pending()?;
        }
        Ok(())
    }

    /// Seals and writes the pending audio now, if there is any.
    ///
    /// A caller that may stop writing for a while (the writer has no timer of its
    /// own) calls this to keep the wall-time bound on what a crash loses.
    pub fn seal_pending(&mut self) -> Result<(), FileError> {
        self.check_usable()?;
        if self.pending_len() == 0 {
            return Ok(());
        }
        format::set_timestamp(&mut self.frame, format::unix_ms_now());
        self.seal_and_write(LastFlag::NotLast)?;
        if self.options.sync_each_segment {
            self.sync()?;
        }
        format::start_frame(&mut self.frame, SegmentKind::Audio);
        self.pending_audio = Duration::ZERO;
        self.pending_since = None;
        Ok(())
    }

    /// Seals the pending audio and `metadata` as the final segment, then renames.
    ///
    /// Returns the finished file's path, `<id>.cvr`.
    pub fn finish(mut self, metadata: &RecordingMetadata) -> Result<PathBuf, FileError> {
        if metadata.id != self.recording_id {
            return Err(FileError::InvalidInput(
                "the final metadata names another recording",
            ));
        }
        self.seal_pending()?;
        let final_segment = self.next_segment;
        self.write_metadata(SegmentKind::FinalMetadata, metadata, LastFlag::Last)?;
        let trailer = Trailer {
            final_segment,
            final_sealed_len: self.sealed_len(),
        };
        self.write(&trailer.encode(), "writing the recording trailer")?;
        self.sync()?;

        std::fs::rename(&self.part_path, &self.final_path)
            .map_err(FileError::io("renaming the finished recording"))?;
        sync_dir(super::parent_dir(&self.final_path))?;
        Ok(self.final_path)
    }

    fn write_metadata(
        &mut self,
        kind: SegmentKind,
        metadata: &RecordingMetadata,
        last: LastFlag,
    ) -> Result<(), FileError> {
        format::start_frame(&mut self.frame, kind);
        serde_json::to_writer(&mut self.frame, metadata)
            .expect("recording metadata serialises: it has no maps and no fallible fields");
        if self.payload_len() > MAX_PAYLOAD_LEN {
            return Err(FileError::InvalidInput(
                "the metadata does not fit in a segment",
            ));
        }
        self.seal_and_write(last)
    }

    /// Seals the frame under the next segment number and appends it to the file.
    fn seal_and_write(&mut self, last: LastFlag) -> Result<(), FileError> {
        let number = self.next_segment;
        self.next_segment = number.checked_add(1).ok_or(FileError::TooManySegments)?;
        self.cipher.seal_frame(number, last, &mut self.frame);
        let frame = std::mem::take(&mut self.frame);
        let written = self.write(&frame, "writing a recording segment");
        self.frame = frame;
        written
    }

    fn write(&mut self, bytes: &[u8], action: &'static str) -> Result<(), FileError> {
        let written = self.file.write_all(bytes).map_err(FileError::io(action));
        self.failed |= written.is_err();
        written
    }

    fn sync(&mut self) -> Result<(), FileError> {
        let synced = self
            .file
            .sync_data()
            .map_err(FileError::io("syncing the recording file"));
        self.failed |= synced.is_err();
        synced
    }

    fn check_usable(&self) -> Result<(), FileError> {
        match self.failed {
            true => Err(FileError::WriterFailed),
            false => Ok(()),
        }
    }

    /// Bytes of the frame after its kind byte.
    fn payload_len(&self) -> usize {
        self.frame.len() - FRAME_START_LEN
    }

    /// Bytes of audio waiting to be sealed.
    fn pending_len(&self) -> usize {
        self.payload_len() - TIMESTAMP_LEN
    }

    /// The sealed length of the frame just written.
    fn sealed_len(&self) -> u32 {
        u32::try_from(self.frame.len() - LENGTH_LEN).expect("a segment is at most 1 MiB")
    }

    fn is_due(&self) -> bool {
        let interval = self.options.segment_interval;
        let waited = self
            .pending_since
            .is_some_and(|since| since.elapsed() >= interval);
        self.pending_len() > 0 && (self.pending_audio >= interval || waited)
    }
}

/// A header for recording `id` with a fresh nonce prefix and data key.
fn new_header(id: &RecordingId, master: &MasterKey) -> Result<(FileHeader, DataKey), FileError> {
    let file_id = format::parse_recording_id(id)?;
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    random_bytes(&mut nonce_prefix)?;
    let bound = FileHeader::bound_bytes(&file_id, &nonce_prefix);
    let data_key = DataKey::generate()?;
    let wrapped = master.wrap(&data_key, &bound)?;
    Ok((FileHeader::new(bound, wrapped), data_key))
}

/// Creates a new `.part` file readable by its owner only; never reuses one.
fn create_part_file(path: &Path) -> Result<File, FileError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(FileError::io("creating the recording file"))
}
