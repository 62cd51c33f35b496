//! SDP bodies, as offers and answers from the PBX and the trunk bring them.
//!
//! A description that parses must survive what callvault does to it: written
//! out it parses to itself; anchored, it still parses, keeps every line callvault
//! does not rewrite byte for byte and in order, keeps its streams and points
//! them at callvault; narrowed to some formats, it still parses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use callvault_sip::sdp::SessionDescription;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose callvault's side of the rewrite; the rest is the body.
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let Ok(description) = SessionDescription::parse(body) else {
        return;
    };
    let _ = description.origin();
    let _ = description.first_audio_stream();
    check_round_trip(&description);
    check_anchor(&description, choice);
    check_keep_formats(&description, choice);
});

fn check_round_trip(description: &SessionDescription) {
    let again = reparse(description, "to_bytes");
    assert_eq!(
        &again, description,
        "to_bytes and parse changed the description"
    );
}

fn reparse(description: &SessionDescription, after: &str) -> SessionDescription {
    let bytes = description.to_bytes();
    SessionDescription::parse(&bytes).unwrap_or_else(|error| {
        panic!(
            "after {after} the description does not parse ({error}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

fn check_anchor(description: &SessionDescription, choice: u8) {
    let address = match choice & 1 {
        0 => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        _ => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let streams = description.media();
    // Every other stream gets no port, as when the port pool ran dry.
    let ports: Vec<Option<u16>> = (0..streams.len())
        .map(|index| (index % 2 == usize::from(choice >> 7)).then_some(20000 + 2 * index as u16))
        .collect();
    let mut anchored = description.clone();
    anchored.anchor(address, &ports);
    let anchored = reparse(&anchored, "anchor");

    assert_eq!(
        untouched_lines(description),
        untouched_lines(&anchored),
        "anchoring changed, dropped or reordered a line it does not rewrite"
    );
    let after = anchored.media();
    assert_eq!(
        after.len(),
        streams.len(),
        "anchoring changed the stream count"
    );
    for (index, (before, after)) in streams.iter().zip(&after).enumerate() {
        let expected = match before.port {
            0 => 0,
            _ => ports[index].unwrap_or(0),
        };
        assert_eq!(after.port, expected, "stream {index} has the wrong port");
        assert_eq!(
            after.connection,
            Some(address),
            "stream {index} is not anchored"
        );
        assert_eq!(after.formats, before.formats, "stream {index} lost formats");
        if let Some((rtcp_port, _)) = after.rtcp {
            assert_eq!(u32::from(rtcp_port), u32::from(after.port) + 1);
        }
    }
    assert_eq!(anchored.session_connection(), Some(address));
}

/// The lines anchoring must leave as they were: all but `o=`, `c=`, `m=`, ICE
/// attributes and media-level `a=rtcp`.
fn untouched_lines(description: &SessionDescription) -> Vec<Vec<u8>> {
    let bytes = description.to_bytes();
    let mut in_media = false;
    let mut kept = Vec::new();
    for line in bytes.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        in_media |= line.starts_with(b"m=");
        let rewritten = matches!(line.first(), Some(b'o' | b'c' | b'm'))
            || is_ice(line)
            || (in_media && (line == b"a=rtcp" || line.starts_with(b"a=rtcp:")));
        if !rewritten {
            kept.push(line.to_vec());
        }
    }
    kept
}

fn is_ice(line: &[u8]) -> bool {
    let Some(attribute) = line.strip_prefix(b"a=") else {
        return false;
    };
    let name = attribute.split(|&b| b == b':').next().unwrap_or_default();
    name.starts_with(b"ice-")
        || matches!(
            name,
            b"candidate" | b"remote-candidates" | b"end-of-candidates"
        )
}

fn check_keep_formats(description: &SessionDescription, choice: u8) {
    let Some(stream) = description.first_audio_stream() else {
        return;
    };
    // callvault keeps formats the offer has, at least one; `choice` picks which.
    let offered: Vec<u8> = description.media()[stream]
        .formats
        .iter()
        .filter_map(|format| format.parse().ok())
        .collect();
    let keep: Vec<u8> = offered
        .iter()
        .enumerate()
        .filter(|&(index, _)| index == 0 || choice & (1 << (index % 8)) != 0)
        .map(|(_, &pt)| pt)
        .collect();
    if keep.is_empty() {
        return;
    }
    let mut narrowed = description.clone();
    narrowed.keep_formats(stream, &keep);
    let narrowed = reparse(&narrowed, "keep_formats");
    let streams = narrowed.media();
    assert_eq!(streams.len(), description.media().len());
    assert!(
        !streams[stream].formats.is_empty(),
        "keep_formats left no format"
    );
    for format in &streams[stream].formats {
        let kept = format.parse::<u8>().is_ok_and(|pt| keep.contains(&pt));
        assert!(kept, "keep_formats left format {format:?} in the stream");
    }
}
