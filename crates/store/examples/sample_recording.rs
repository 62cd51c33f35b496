//! Temporary: writes a sample recording for testing the Python decoder.
use callvault_store::file::{RecordingWriter, WriterOptions};
use callvault_store::keys::{KeyId, MasterKey};
use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus};
use std::path::Path;
use std::time::Duration;
fn main() {
    let dir = std::env::args().nth(1).expect("dir");
    let master = MasterKey::new(KeyId(3), [0x5a; 32]);
    let meta = RecordingMetadata {
        id: RecordingId("00112233445566778899aabbccddeeff".into()),
        start_ms: 1_700_000_000_000,
        end_ms: None,
        direction: CallDirection::Outbound,
        caller: "205".into(),
        callee: "+441632960001".into(),
        extension: Some("205".into()),
        media_type: "audio/wav".into(),
        status: RecordingStatus::Recording,
        status_reason: None,
        lost_packets: 0,
    };
    let mut w =
        RecordingWriter::create(Path::new(&dir), &meta, &master, WriterOptions::default()).unwrap();
    for i in 0..130u32 {
        w.write_audio(
            format!("chunk{i:04};").as_bytes(),
            Duration::from_millis(20),
        )
        .unwrap();
    }
    let fin = RecordingMetadata {
        end_ms: Some(1_700_000_002_600),
        status: RecordingStatus::Complete,
        ..meta.clone()
    };
    let p = w.finish(&fin).unwrap();
    std::fs::write(
        Path::new(&dir).join("expected.bin"),
        (0..130u32)
            .map(|i| format!("chunk{i:04};"))
            .collect::<String>(),
    )
    .unwrap();
    let _ = p;
    let meta2 = RecordingMetadata {
        id: RecordingId("ffeeddccbbaa99887766554433221100".into()),
        ..meta.clone()
    };
    let mut w = RecordingWriter::create(Path::new(&dir), &meta2, &master, WriterOptions::default())
        .unwrap();
    for i in 0..130u32 {
        w.write_audio(
            format!("chunk{i:04};").as_bytes(),
            Duration::from_millis(20),
        )
        .unwrap();
    }
    drop(w);
    let r = callvault_store::file::recover(
        &Path::new(&dir).join("ffeeddccbbaa99887766554433221100.part"),
        &master,
    )
    .unwrap();
    println!("{r:?}");
}
