//! SIP messages as a datagram or a TCP stream brings them.
//!
//! Beyond not panicking: a message that parses serialises to bytes that parse to
//! the same message; a stream cut anywhere frames into the same messages as the
//! whole stream; every response callvault sends back to hostile input parses.
#![no_main]

use callvault_sip::validate::Disposition;
use callvault_sip::{parse, receive, Message, StreamEvent, StreamFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = parse(data) {
        check_round_trip(&message);
        read_every_header(&message);
    }
    check_disposition(data);
    check_framing(data);
});

/// Serialising and parsing again gives the message back.
///
/// `Content-Length` is left out of the comparison: serialising sets it to the
/// body's real length, which is the point of it.
fn check_round_trip(message: &Message) {
    let bytes = message.to_bytes();
    let again = parse(&bytes).unwrap_or_else(|error| {
        panic!(
            "a serialised message does not parse again ({error}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(
        without_content_length(message.clone()),
        without_content_length(again),
        "a message changed on its way through to_bytes and parse"
    );
}

fn without_content_length(mut message: Message) -> Message {
    message.headers_mut().remove("Content-Length");
    message
}

/// The typed readers of the headers callvault routes on.
fn read_every_header(message: &Message) {
    let headers = message.headers();
    let _ = headers.call_id();
    let _ = headers.cseq();
    let _ = headers.top_via();
    let _ = headers.from();
    let _ = headers.to();
    let _ = headers.max_forwards();
    if let Message::Request(request) = message {
        let _ = request.request_uri();
    }
}

/// What callvault answers parses as a response.
fn check_disposition(data: &[u8]) {
    if let Disposition::Answer(response) = receive(data) {
        let bytes = response.to_bytes();
        match parse(&bytes) {
            Ok(Message::Response(_)) => {}
            other => panic!(
                "callvault's own response does not parse as one ({other:?}): {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

/// The framed messages do not depend on how the stream was cut into reads.
///
/// Keep-alives are left out: a double CRLF cut in two is by design a pong then a
/// ping rather than one ping.
fn check_framing(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let whole = frame(stream, stream.len().max(1));
    let cut = frame(stream, usize::from(chunk).max(1));
    assert_eq!(whole, cut, "framing depends on where the reads were cut");
}

/// Every message and error a framer gives for `stream` read `chunk` bytes at a time.
fn frame(stream: &[u8], chunk: usize) -> Vec<String> {
    let mut framer = StreamFramer::with_max_message_bytes(4096);
    let mut events = Vec::new();
    for read in stream.chunks(chunk) {
        framer.push(read);
        while let Some(event) = framer.pop() {
            match event {
                Ok(StreamEvent::Ping | StreamEvent::Pong) => {}
                other => events.push(format!("{other:?}")),
            }
        }
    }
    events
}
