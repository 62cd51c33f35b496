//! Content-Length framing of SIP over TCP (RFC 3261 §18.3) and CRLF keep-alives.
//!
//! A stream carries messages back to back and only `Content-Length` says where a body
//! ends, so on a stream it is mandatory. The framer holds at most one message, bounded
//! by a size limit, so a slow or hostile peer cannot make it grow without end. RFC 5626
//! §3.5.1 keep-alives travel between messages: a double CRLF ping, answered by a single
//! CRLF pong.

use bytes::{Buf, Bytes, BytesMut};

use crate::message::Message;
use crate::parse::{find_head_end, head_content_length, parse};
use crate::ParseError;

/// The default largest message accepted on a stream: head and body together.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// One thing read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEvent {
    Message(Message),
    /// Correctly framed but not a valid message; the stream stays in step.
    ///
    /// `crate::validate::receive(&frame)` gives the response to send back, if any.
    Malformed {
        frame: Bytes,
        error: ParseError,
    },
    /// A double CRLF ping: the transport answers with a single CRLF.
    Ping,
    /// A lone CRLF: the pong to a ping we sent, or a stray line end.
    Pong,
}

/// A stream that cannot be framed any more; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message head longer than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("message of {length} bytes exceeds the {limit} byte limit")]
    MessageTooLarge { length: usize, limit: usize },
    #[error("message on a stream without Content-Length")]
    MissingContentLength,
    #[error("unreadable Content-Length on a stream")]
    InvalidContentLength(#[source] ParseError),
}

/// Splits the bytes of one stream connection into messages and keep-alives.
#[derive(Debug)]
pub struct StreamFramer {
    buffer: BytesMut,
    max_message_bytes: usize,
    /// How far the current head has been searched for its empty line.
    searched: usize,
    /// The length of the current message, once its head has been read.
    frame_len: Option<usize>,
    /// A lone CRLF was just reported; another one completes a ping split across reads.
    after_lone_crlf: bool,
    failed: bool,
}

/// What the start of the buffer holds between messages.
enum Boundary {
    Event(StreamEvent),
    NeedMore,
    Message,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::with_max_message_bytes(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// A framer refusing messages longer than `limit` bytes, head and body together.
    pub fn with_max_message_bytes(limit: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_message_bytes: limit,
            searched: 0,
            frame_len: None,
            after_lone_crlf: false,
            failed: false,
        }
    }

    /// Appends bytes read from the stream; ignored once framing has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// Bytes received and not yet returned as an event.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    /// The next event, or `None` until more bytes arrive.
    ///
    /// After an error the stream cannot be brought back in step: every later call
    /// returns `None` and the caller closes the connection.
    pub fn pop(&mut self) -> Option<Result<StreamEvent, FramingError>> {
        if self.failed {
            return None;
        }
        match self.boundary() {
            Boundary::Event(event) => return Some(Ok(event)),
            Boundary::NeedMore => return None,
            Boundary::Message => {}
        }
        match self.frame_len() {
            Ok(Some(len)) if self.buffer.len() >= len => Some(Ok(self.take_frame(len))),
            Ok(_) => None,
            Err(error) => {
                self.failed = true;
                self.buffer = BytesMut::new();
                tracing::debug!(%error, "stream framing failed");
                Some(Err(error))
            }
        }
    }

    /// Reads keep-alives and stray line ends before a message starts.
    fn boundary(&mut self) -> Boundary {
        if self.frame_len.is_some() || self.searched > 0 {
            return Boundary::Message;
        }
        loop {
            match self.buffer[..] {
                [] | [b'\r'] => return Boundary::NeedMore,
                [b'\r', b'\n', b'\r', b'\n', ..] => {
                    self.buffer.advance(4);
                    self.after_lone_crlf = false;
                    return Boundary::Event(StreamEvent::Ping);
                }
                [b'\r', b'\n', ..] => {
                    self.buffer.advance(2);
                    let event = match self.after_lone_crlf {
                        true => StreamEvent::Ping,
                        false => StreamEvent::Pong,
                    };
                    self.after_lone_crlf = !self.after_lone_crlf;
                    return Boundary::Event(event);
                }
                // RFC 3261 §7.5: line ends before a start line are ignored.
                [b'\r' | b'\n', ..] => self.buffer.advance(1),
                _ => {
                    self.after_lone_crlf = false;
                    return Boundary::Message;
                }
            }
        }
    }

    /// The length of the message at the front, once its head is complete.
    fn frame_len(&mut self) -> Result<Option<usize>, FramingError> {
        if let Some(len) = self.frame_len {
            return Ok(Some(len));
        }
        let limit = self.max_message_bytes;
        // Resume a little before the end: the empty line may straddle two reads.
        let Some((head_len, body_start)) =
            find_head_end(&self.buffer, self.searched.saturating_sub(3))
        else {
            if self.buffer.len() > limit {
                return Err(FramingError::HeadTooLarge { limit });
            }
            self.searched = self.buffer.len();
            return Ok(None);
        };
        let body_len = head_content_length(&self.buffer[..head_len])
            .map_err(FramingError::InvalidContentLength)?
            .ok_or(FramingError::MissingContentLength)?;
        let length = body_start.saturating_add(body_len);
        if length > limit {
            return Err(FramingError::MessageTooLarge { length, limit });
        }
        self.frame_len = Some(length);
        Ok(Some(length))
    }

    fn take_frame(&mut self, len: usize) -> StreamEvent {
        let frame = self.buffer.split_to(len).freeze();
        self.frame_len = None;
        self.searched = 0;
        match parse(&frame) {
            Ok(message) => StreamEvent::Message(message),
            Err(error) => StreamEvent::Malformed { frame, error },
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const FIRST: &str = "INVITE sip:205@pbx SIP/2.0\r\n\
        Via: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK1\r\n\
        Call-ID: c1\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 10\r\n\r\n\
        v=0\r\no=-\r\n";
    const SECOND: &str = "BYE sip:205@pbx SIP/2.0\r\nCall-ID: c1\r\nl: 0\r\n\r\n";

    /// Every event the framer gives after each push of `chunks`, in order.
    fn events(framer: &mut StreamFramer, chunks: &[&[u8]]) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            while let Some(event) = framer.pop() {
                events.push(event.unwrap());
            }
        }
        events
    }

    fn message(event: &StreamEvent) -> &Message {
        match event {
            StreamEvent::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn message_split_at_every_byte_is_framed_once() {
        let bytes = FIRST.as_bytes();
        let expected = parse(bytes).unwrap();
        for at in 0..=bytes.len() {
            let mut framer = StreamFramer::new();
            let got = events(&mut framer, &[&bytes[..at], &bytes[at..]]);
            assert_eq!(got.len(), 1, "split at {at}");
            assert_eq!(message(&got[0]), &expected, "split at {at}");
            assert_eq!(framer.buffered_len(), 0);
        }
    }

    #[test]
    fn message_fed_byte_by_byte_is_framed() {
        let mut framer = StreamFramer::new();
        let chunks: Vec<&[u8]> = FIRST.as_bytes().chunks(1).collect();
        let got = events(&mut framer, &chunks);
        assert_eq!(got.len(), 1);
        assert_eq!(message(&got[0]).body().len(), 10);
    }

    #[test]
    fn two_messages_in_one_read_come_out_in_order() {
        let mut framer = StreamFramer::new();
        let both = format!("{FIRST}{SECOND}");
        let got = events(&mut framer, &[both.as_bytes()]);
        assert_eq!(got.len(), 2);
        assert_eq!(message(&got[0]), &parse(FIRST.as_bytes()).unwrap());
        assert_eq!(message(&got[1]), &parse(SECOND.as_bytes()).unwrap());
    }

    #[test]
    fn double_crlf_is_a_ping_and_single_crlf_a_pong() {
        let mut framer = StreamFramer::new();
        let got = events(&mut framer, &[b"\r\n\r\n", b"\r\n", b"\r\n", b"\r\n"]);
        assert!(matches!(
            got[..],
            [
                StreamEvent::Ping,
                StreamEvent::Pong,
                StreamEvent::Ping,
                StreamEvent::Pong
            ]
        ));
        let mut framer = StreamFramer::new();
        let got = events(&mut framer, &[b"\r", b"\n\r", b"\n", SECOND.as_bytes()]);
        assert!(matches!(
            got[..],
            [
                StreamEvent::Pong,
                StreamEvent::Ping,
                StreamEvent::Message(_)
            ]
        ));
    }

    #[test]
    fn head_without_end_beyond_the_limit_is_an_error() {
        let mut framer = StreamFramer::with_max_message_bytes(1024);
        framer.push(b"INVITE sip:x SIP/2.0\r\n");
        for _ in 0..100 {
            framer.push(b"X-Filler: aaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(
            framer.pop(),
            Some(Err(FramingError::HeadTooLarge { limit: 1024 }))
        );
        assert_eq!(framer.buffered_len(), 0);
        framer.push(SECOND.as_bytes());
        assert!(framer.pop().is_none());
    }

    #[test]
    fn declared_body_beyond_the_limit_is_refused_before_it_arrives() {
        let mut framer = StreamFramer::new();
        framer.push(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 1000000\r\n\r\n");
        assert!(matches!(
            framer.pop(),
            Some(Err(FramingError::MessageTooLarge { limit: 65536, .. }))
        ));
    }

    #[test]
    fn content_length_is_mandatory_and_must_be_a_number() {
        let mut framer = StreamFramer::new();
        framer.push(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n");
        assert_eq!(framer.pop(), Some(Err(FramingError::MissingContentLength)));
        let mut framer = StreamFramer::new();
        framer.push(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -999\r\n\r\n");
        assert!(matches!(
            framer.pop(),
            Some(Err(FramingError::InvalidContentLength(_)))
        ));
    }

    #[test]
    fn malformed_message_keeps_the_stream_in_step() {
        let mut framer = StreamFramer::new();
        let bad = "OPTIONS  sip:x SIP/2.0\r\nl: 2\r\n\r\nab";
        let got = events(&mut framer, &[bad.as_bytes(), SECOND.as_bytes()]);
        assert!(matches!(
            &got[0],
            StreamEvent::Malformed { error: ParseError::InvalidStartLine, frame }
                if &frame[..] == bad.as_bytes()
        ));
        assert_eq!(message(&got[1]), &parse(SECOND.as_bytes()).unwrap());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(cuts in prop::collection::vec(0usize..200, 0..8)) {
            let stream = format!("\r\n\r\n{FIRST}{SECOND}\r\n\r\n{FIRST}");
            let bytes = stream.as_bytes();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points {
                chunks.push(&bytes[start..point]);
                start = point;
            }
            chunks.push(&bytes[start..]);
            // A ping cut in two reads as a pong then a ping, so compare messages only.
            let is_message = |event: &StreamEvent| matches!(event, StreamEvent::Message(_));
            let mut whole = events(&mut StreamFramer::new(), &[bytes]);
            let mut chunked = events(&mut StreamFramer::new(), &chunks);
            whole.retain(is_message);
            chunked.retain(is_message);
            prop_assert_eq!(whole.len(), 3);
            prop_assert_eq!(chunked, whole);
        }
    }
}
