//! The recording files a daemon under test wrote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use callvault_store::file::{RecordingWriter, WriterOptions};
use callvault_store::keys::Keyring;
use callvault_store::{RecordingMetadata, RecordingStatus};

/// The files of `data_dir`'s recordings directory.
pub(crate) fn files(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir.join("recordings"))
        .map(|entries| {
            entries
                .map(|entry| entry.expect("a readable directory").path())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `count` recordings are finished, and reads their metadata.
///
/// The recorder finishes a file just after the call ends, on its own threads.
pub(crate) fn finished(data_dir: &Path, count: usize) -> Vec<RecordingMetadata> {
    let done = super::wait_until(Duration::from_secs(20), || {
        let files = files(data_dir);
        files.len() == count
            && files
                .iter()
                .all(|file| file.extension() == Some("cvr".as_ref()))
    });
    assert!(
        done,
        "expected {count} finished recordings, found {:?}",
        files(data_dir)
    );
    let keys = Keyring::load(&data_dir.join("master.key")).expect("the test's key");
    files(data_dir)
        .iter()
        .map(|file| {
            callvault_store::file::read_metadata(file, &keys).expect("a readable recording")
        })
        .collect()
}

/// How a recording a test writes ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    Finish,
    /// Left as the unfinished `.part` file a killed daemon leaves.
    Crash,
}

/// Writes a recording described by `meta` into `data_dir`, as the recorder
/// would, with the test's key from `data_dir/master.key`.
pub(crate) fn write(data_dir: &Path, meta: RecordingMetadata, end: End) {
    let keyring = Keyring::load(&data_dir.join("master.key")).expect("the test's key");
    let recordings = data_dir.join("recordings");
    std::fs::create_dir_all(&recordings).expect("the data directory is writable");
    let options = WriterOptions::default();
    let mut writer = RecordingWriter::create(&recordings, &meta, keyring.current(), options)
        .expect("a recording can be created");
    writer
        .write_audio(b"audio", Duration::from_millis(20))
        .expect("audio");
    if end == End::Crash {
        writer.seal_pending().expect("sealed");
        std::mem::forget(writer);
        return;
    }
    let done = RecordingMetadata {
        status: RecordingStatus::Complete,
        ..meta
    };
    writer.finish(&done).expect("finished");
}
