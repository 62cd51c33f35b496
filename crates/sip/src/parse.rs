//! Parsing SIP messages from bytes (RFC 3261 §7).
//!
//! Header lines are unfolded, compact names expanded and comma-separated values of the
//! list headers split into one `Header` each, so that the rest of callvault never sees
//! those differences between peers. Values are otherwise kept as received.

use std::borrow::Cow;

use bytes::Bytes;

use crate::header::split_outside_quotes;
use crate::message::{is_token_byte, Headers, Message, Method, Request, Response};
use crate::uri;
use crate::ParseError;

/// Compact forms of RFC 3261 §7.3.3 and later RFCs.
const COMPACT: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
];

/// Headers that may carry several comma-separated values on one line and that callvault
/// rewrites, routes on or reads a number from; each value becomes its own `Header`.
const SPLIT_LISTS: &[&str] = &[
    "Via",
    "Contact",
    "Route",
    "Record-Route",
    "P-Asserted-Identity",
];

/// Well-known header names in their canonical spelling.
const CANONICAL: &[&str] = &[
    "Accept",
    "Allow",
    "Authorization",
    "Call-ID",
    "Contact",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Expires",
    "From",
    "Max-Forwards",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Record-Route",
    "Require",
    "Route",
    "RSeq",
    "Session-Expires",
    "Min-SE",
    "Supported",
    "To",
    "Via",
    "WWW-Authenticate",
    "Refer-To",
    "Referred-By",
    "Event",
    "P-Asserted-Identity",
];

/// Parses one whole message, as received in a UDP datagram or framed from a stream.
///
/// A `Content-Length` larger than the bytes that follow the head is an error; a shorter
/// one truncates the body and the rest is discarded (RFC 3261 §18.3). Without
/// `Content-Length` the body runs to the end of the datagram.
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let (head, body) = split_head(bytes).ok_or(ParseError::Incomplete)?;
    let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = unfold(head).into_iter();
    let start = StartLine::parse(&lines.next().ok_or(ParseError::InvalidStartLine)?)?;
    let headers = parse_headers(lines)?;
    let body = frame_body(&headers, body)?;
    Ok(start.into_message(headers, body))
}

/// Splits at the first empty line; CRLF and bare LF line ends are both accepted.
pub(crate) fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let bytes = trim_leading_crlf(bytes);
    let (head_len, body_start) = find_head_end(bytes, 0)?;
    Some((&bytes[..head_len], &bytes[body_start..]))
}

/// RFC 3261 §7.5: CRLFs before the start line are ignored.
fn trim_leading_crlf(mut bytes: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// Finds the empty line ending the head, searching from `from`.
///
/// Returns the head length (without its last line end) and where the body starts.
pub(crate) fn find_head_end(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(offset) = bytes.get(at..)?.iter().position(|&b| b == b'\n') {
        let newline = at + offset;
        let head_len = match newline.checked_sub(1).map(|i| bytes[i]) {
            Some(b'\r') => newline - 1,
            _ => newline,
        };
        match bytes.get(newline + 1..) {
            Some([b'\n', ..]) => return Some((head_len, newline + 2)),
            Some([b'\r', b'\n', ..]) => return Some((head_len, newline + 3)),
            _ => at = newline + 1,
        }
    }
    None
}

/// Joins continuation lines (leading SP or HT) to the line before them (RFC 3261 §7.3.1).
fn unfold(head: &str) -> Vec<Cow<'_, str>> {
    let mut lines: Vec<Cow<'_, str>> = Vec::new();
    for line in head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                let last = last.to_mut();
                last.truncate(last.trim_end().len());
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => lines.push(Cow::Borrowed(line)),
        }
    }
    lines
}

fn parse_headers<'a>(lines: impl Iterator<Item = Cow<'a, str>>) -> Result<Headers, ParseError> {
    let mut headers = Headers::new();
    for line in lines {
        let (name, value) = split_header_line(&line)?;
        let name = canonical_name(name);
        if SPLIT_LISTS.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            for part in split_outside_quotes(value, b',') {
                headers.push(name.clone(), part.trim());
            }
        } else {
            headers.push(name, value);
        }
    }
    Ok(headers)
}

/// Splits `name : value`, checking the name is a token.
fn split_header_line(line: &str) -> Result<(&str, &str), ParseError> {
    let (name, value) = line.split_once(':').ok_or(ParseError::InvalidHeaderLine)?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(ParseError::InvalidHeaderLine);
    }
    Ok((name, value.trim()))
}

/// Expands a compact form and gives known names their canonical spelling.
pub(crate) fn canonical_name(name: &str) -> String {
    if let Some((_, full)) = COMPACT.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)) {
        return (*full).to_owned();
    }
    match CANONICAL.iter().find(|n| n.eq_ignore_ascii_case(name)) {
        Some(known) => (*known).to_owned(),
        None => name.to_owned(),
    }
}

/// The `Content-Length` value: absent, or one run of digits (RFC 3261 §20.14).
pub(crate) fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut values = headers.get_all("Content-Length");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ParseError::DuplicateHeader("Content-Length"));
    }
    let value = value.trim();
    let invalid = ParseError::InvalidHeader("Content-Length");
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid);
    }
    value.parse().map(Some).map_err(|_| invalid)
}

fn frame_body(headers: &Headers, body: &[u8]) -> Result<Bytes, ParseError> {
    let Some(length) = content_length(headers)? else {
        // Over UDP the datagram bounds the message (RFC 3261 §18.3).
        return Ok(Bytes::copy_from_slice(body));
    };
    if length > body.len() {
        return Err(ParseError::BodyTooShort {
            declared: length,
            received: body.len(),
        });
    }
    Ok(Bytes::copy_from_slice(&body[..length]))
}

/// The `Content-Length` of a head, read leniently for stream framing.
///
/// Only the header lines are looked at, so a bad start line or a malformed header does
/// not stop the framer from finding where the message ends.
pub(crate) fn head_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let head = String::from_utf8_lossy(head);
    let mut headers = Headers::new();
    for line in unfold(&head).iter().skip(1) {
        if let Ok((name, value)) = split_header_line(line) {
            if canonical_name(name) == "Content-Length" {
                headers.push("Content-Length", value);
            }
        }
    }
    content_length(&headers)
}

/// The start line and headers of a request that failed to parse, read leniently.
///
/// Used only to answer a broken request with an error response: bad header lines are
/// skipped and a head without its empty line is taken whole.
pub(crate) fn lenient_request_head(bytes: &[u8]) -> Option<(String, Headers)> {
    let bytes = trim_leading_crlf(bytes);
    let head = split_head(bytes).map_or(bytes, |(head, _)| head);
    let head = String::from_utf8_lossy(head);
    let mut lines = unfold(&head).into_iter();
    let start = lines.next()?.into_owned();
    if start.starts_with("SIP/") {
        return None;
    }
    let mut headers = Headers::new();
    for line in lines {
        if let Ok((name, value)) = split_header_line(&line) {
            headers.push(canonical_name(name), value);
        }
    }
    Some((start, headers))
}

/// A parsed start line, waiting for its headers and body.
enum StartLine {
    Request { method: Method, uri: String },
    Response { status: u16, reason: String },
}

impl StartLine {
    fn parse(line: &str) -> Result<Self, ParseError> {
        match line.get(..4) {
            Some(prefix) if prefix.eq_ignore_ascii_case("SIP/") => Self::parse_status_line(line),
            _ => Self::parse_request_line(line),
        }
    }

    /// `SIP-Version SP Status-Code SP Reason-Phrase` (RFC 3261 §7.2).
    fn parse_status_line(line: &str) -> Result<Self, ParseError> {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().ok_or(ParseError::InvalidStartLine)?;
        check_version(version)?;
        let status = parts.next().ok_or(ParseError::InvalidStartLine)?;
        if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::InvalidStatus);
        }
        let status: u16 = status.parse().map_err(|_| ParseError::InvalidStatus)?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::InvalidStatus);
        }
        let reason = parts.next().unwrap_or("").to_owned();
        Ok(Self::Response { status, reason })
    }

    /// `Method SP Request-URI SP SIP-Version`, single spaces only (RFC 3261 §7.1).
    fn parse_request_line(line: &str) -> Result<Self, ParseError> {
        let mut parts = line.split(' ');
        let (Some(method), Some(uri), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::InvalidStartLine);
        };
        let method = Method::parse(method)?;
        check_version(version)?;
        if !uri::is_absolute(uri) {
            return Err(ParseError::InvalidRequestUri);
        }
        Ok(Self::Request {
            method,
            uri: uri.to_owned(),
        })
    }

    fn into_message(self, headers: Headers, body: Bytes) -> Message {
        match self {
            Self::Request { method, uri } => Message::Request(Request {
                method,
                uri,
                headers,
                body,
            }),
            Self::Response { status, reason } => Message::Response(Response {
                status,
                reason,
                headers,
                body,
            }),
        }
    }
}

/// `SIP/2.0`; another `SIP/x.y` is a version we do not support (505).
fn check_version(version: &str) -> Result<(), ParseError> {
    let number = version
        .get(..4)
        .filter(|prefix| prefix.eq_ignore_ascii_case("SIP/"))
        .map(|_| &version[4..])
        .ok_or(ParseError::InvalidStartLine)?;
    let (major, minor) = number.split_once('.').ok_or(ParseError::InvalidStartLine)?;
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (is_number(major) && is_number(minor), number == "2.0") {
        (true, true) => Ok(()),
        (true, false) => Err(ParseError::UnsupportedVersion),
        (false, _) => Err(ParseError::InvalidStartLine),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()).unwrap() {
            Message::Request(request) => request,
            Message::Response(_) => panic!("parsed a response"),
        }
    }

    #[test]
    fn unknown_method_is_an_extension() {
        let req = request("FOO sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n");
        assert_eq!(req.method, Method::Extension("FOO".into()));
    }

    #[test]
    fn declared_body_longer_than_datagram_is_rejected() {
        let msg = "OPTIONS sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(
            parse(msg.as_bytes()),
            Err(ParseError::BodyTooShort { .. })
        ));
    }

    #[test]
    fn shorter_content_length_truncates_the_body() {
        let req = request("OPTIONS sip:x SIP/2.0\r\nl: 2\r\n\r\nabc");
        assert_eq!(&req.body[..], b"ab");
    }

    #[test]
    fn content_length_must_be_one_run_of_digits() {
        for bad in ["-999", "+1", "1 2", "", "99999999999999999999999"] {
            let msg = format!("OPTIONS sip:x SIP/2.0\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                parse(msg.as_bytes()),
                Err(ParseError::InvalidHeader("Content-Length")),
                "{bad:?}"
            );
        }
        let twice = "OPTIONS sip:x SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse(twice.as_bytes()),
            Err(ParseError::DuplicateHeader("Content-Length"))
        );
    }

    #[test]
    fn request_line_needs_single_spaces_and_an_absolute_uri() {
        let cases = [
            ("INVITE  sip:x SIP/2.0", ParseError::InvalidStartLine),
            ("INVITE sip:x SIP/2.0  ", ParseError::InvalidStartLine),
            ("INVITE sip:x; lr SIP/2.0", ParseError::InvalidStartLine),
            ("INVITE <sip:x> SIP/2.0", ParseError::InvalidRequestUri),
            ("INVITE sip:x SIP/7.0", ParseError::UnsupportedVersion),
            ("INVITE sip:x HTTP/1.1", ParseError::InvalidStartLine),
            ("INV@TE sip:x SIP/2.0", ParseError::InvalidMethod),
        ];
        for (line, error) in cases {
            let msg = format!("{line}\r\nl: 0\r\n\r\n");
            assert_eq!(parse(msg.as_bytes()), Err(error), "{line}");
        }
    }

    #[test]
    fn status_line_needs_a_three_digit_code() {
        for line in [
            "SIP/2.0 4294967301 big",
            "SIP/2.0 99 low",
            "SIP/2.0 700 high",
        ] {
            let msg = format!("{line}\r\nl: 0\r\n\r\n");
            assert_eq!(parse(msg.as_bytes()), Err(ParseError::InvalidStatus));
        }
        let Message::Response(empty) = parse(b"SIP/2.0 100 \r\nl: 0\r\n\r\n").unwrap() else {
            panic!("not a response")
        };
        assert_eq!((empty.status, empty.reason.as_str()), (100, ""));
    }

    #[test]
    fn bare_lf_line_ends_and_leading_crlf_are_accepted() {
        let req = request("\r\n\r\nOPTIONS sip:x SIP/2.0\nCall-ID: a\nl: 1\n\nxyz");
        assert_eq!(req.headers.call_id().unwrap(), "a");
        assert_eq!(&req.body[..], b"x");
    }

    #[test]
    fn head_content_length_ignores_broken_lines() {
        let head = b"GARBAGE\r\nno colon here\r\nl: 12";
        assert_eq!(head_content_length(head), Ok(Some(12)));
        assert_eq!(head_content_length(b"OPTIONS sip:x SIP/2.0"), Ok(None));
    }

    #[test]
    fn parse_never_panics_on_short_inputs() {
        for input in [
            &b""[..],
            b"\r\n",
            b"\n\n",
            b"SIP/",
            b"A\r\n\r\n",
            b":\r\n\r\n",
        ] {
            let _ = parse(input);
        }
    }

    #[test]
    fn large_heads_parse_in_one_pass() {
        // 64 KiB of headers, and one Via line of thousands of values: linear work only.
        let mut many = String::from("OPTIONS sip:x SIP/2.0\r\n");
        while many.len() < 64 * 1024 {
            many.push_str("X-Filler: some value here\r\n");
        }
        many.push_str("\r\n");
        assert!(parse(many.as_bytes()).is_ok());
        let vias = vec!["SIP/2.0/UDP h;branch=z9hG4bK1"; 2000].join(",");
        let wide = format!("OPTIONS sip:x SIP/2.0\r\nVia: {vias}\r\n\r\n");
        let req = request(&wide);
        assert_eq!(req.headers.count("Via"), 2000);
        let _ = crate::validate::check(Message::Request(req));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let _ = parse(&bytes);
            let _ = crate::validate::receive(&bytes);
            let _ = head_content_length(&bytes);
        }

        #[test]
        fn parse_never_panics_on_sip_like_text(text in "[A-Za-z0-9 :;,<>\"@=/.\\\r\n-]{0,300}") {
            let with_start = format!("INVITE sip:a@b SIP/2.0\r\n{text}\r\n\r\n");
            let _ = crate::validate::receive(with_start.as_bytes());
            let _ = crate::validate::receive(text.as_bytes());
        }
    }

    /// One test per gap of rsip 0.4 named in DESIGN.md, each against this crate's code.
    mod rsip_gaps {
        use super::*;
        use crate::framing::{StreamEvent, StreamFramer};
        use crate::header::Via;
        use crate::uri::{user_or_number, SipUri};

        #[test]
        fn compact_header_names_are_expanded() {
            let req = request(
                "OPTIONS sip:x SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\ni: c1\r\n\
                 f: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\nm: <sip:a@h>\r\nl: 0\r\n\r\n",
            );
            let names: Vec<_> = req.headers.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(
                names,
                ["Via", "Call-ID", "From", "To", "Contact", "Content-Length"]
            );
        }

        #[test]
        fn folded_header_lines_are_joined() {
            let req = request(
                "OPTIONS sip:x SIP/2.0\r\nCSeq: 1\r\n OPTIONS\r\nSubject: a\r\n\tb \r\n  c\r\n\r\n",
            );
            assert_eq!(req.headers.cseq().unwrap().seq, 1);
            assert_eq!(req.headers.get("Subject"), Some("a b c"));
        }

        #[test]
        fn ipv6_in_via_and_contact_is_read() {
            let req = request(
                "OPTIONS sip:[2001:db8::1] SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9]:5060\
                 ;branch=z9hG4bK1\r\nContact: <sip:205@[2001:db8::9]:5060;transport=udp>\r\n\r\n",
            );
            assert_eq!(req.headers.top_via().unwrap().host(), "[2001:db8::9]");
            let contact = crate::NameAddr::parse(req.headers.get("Contact").unwrap()).unwrap();
            let uri = SipUri::parse(&contact.uri).unwrap();
            assert_eq!(uri.ip(), Some("2001:db8::9".parse().unwrap()));
            assert_eq!(uri.port(), Some(5060));
        }

        #[test]
        fn tel_uris_give_their_number() {
            assert_eq!(
                user_or_number("<tel:+44-7700-900123>").as_deref(),
                Some("+447700900123")
            );
        }

        #[test]
        fn several_contacts_or_vias_on_one_line_are_split() {
            let req = request(
                "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b\r\n\
                 Contact: \"Smith, J\" <sip:j@a>, <sip:k@b;x=\"1,2\">\r\n\r\n",
            );
            let vias: Vec<_> = req.headers.get_all("Via").collect();
            assert_eq!(vias, ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/TCP b"]);
            assert_eq!(Via::parse(vias[1]).unwrap().transport, "TCP");
            let contacts: Vec<_> = req.headers.get_all("Contact").collect();
            assert_eq!(contacts, ["\"Smith, J\" <sip:j@a>", "<sip:k@b;x=\"1,2\">"]);
        }

        #[test]
        fn methods_outside_the_known_list_are_kept() {
            let req = request("NEWMETHOD sip:x SIP/2.0\r\nCSeq: 1 NEWMETHOD\r\n\r\n");
            assert_eq!(req.method, Method::Extension("NEWMETHOD".into()));
            assert_eq!(req.method.to_rsip(), None);
            assert_eq!(req.headers.cseq().unwrap().method, req.method);
        }

        #[test]
        fn content_length_frames_messages_on_tcp() {
            let mut framer = StreamFramer::new();
            framer.push(b"OPTIONS sip:x SIP/2.0\r\nl: 3\r\n\r\nabcOPTIONS sip:y SIP/2.0\r\n");
            let Some(Ok(StreamEvent::Message(Message::Request(first)))) = framer.pop() else {
                panic!("first message not framed")
            };
            assert_eq!(&first.body[..], b"abc");
            assert!(framer.pop().is_none());
        }

        #[test]
        fn multipart_bodies_are_left_raw() {
            let body = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b--\r\n";
            let msg = format!(
                "INVITE sip:x SIP/2.0\r\nContent-Type: multipart/mixed;boundary=b\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let req = request(&msg);
            assert_eq!(&req.body[..], body.as_bytes());
            assert_eq!(
                req.headers.get("Content-Type"),
                Some("multipart/mixed;boundary=b")
            );
        }

        #[test]
        fn untouched_headers_serialise_byte_for_byte() {
            let text = "INVITE sip:205@pbx;transport=udp SIP/2.0\r\n\
                        Contact: <sip:a@10.0.0.1;transport=udp;Custom=MiXeD>\
                        ;+sip.instance=\"<urn:x>\"\r\n\
                        X-Vendor: value ; with=odd ,spacing\r\n\
                        Content-Length: 0\r\n\r\n";
            let bytes = parse(text.as_bytes()).unwrap().to_bytes();
            assert_eq!(String::from_utf8(bytes).unwrap(), text);
        }
    }
}
