//! Parsing SIP messages from bytes (RFC 3261 §7).
//!
//! Header lines are unfolded, compact names expanded and comma-separated values of the
//! list headers split into one `Header` each, so that the rest of callvault never sees
//! those differences between peers.

use bytes::Bytes;

use crate::header::split_outside_quotes;
use crate::message::{Headers, Message, Method, Request, Response};
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
/// rewrites or routes on; they are split so each value is its own `Header`.
const SPLIT_LISTS: &[&str] = &["Via", "Contact", "Route", "Record-Route"];

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

/// Parses one whole message, as received in a UDP datagram.
///
/// A `Content-Length` larger than the bytes that follow the head is an error; a shorter
/// one truncates the body (RFC 3261 §18.3).
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let (head, body) = split_head(bytes).ok_or(ParseError::Incomplete)?;
    let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = unfold(head).into_iter();
    let start = lines.next().ok_or(ParseError::InvalidStartLine)?;
    let headers = parse_headers(lines)?;
    let body = frame_body(&headers, body)?;
    parse_start_line(&start, headers, body)
}

/// Splits at the first empty line; tolerates bare LF line ends.
pub(crate) fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let bytes = trim_leading_crlf(bytes);
    if let Some(at) = find(bytes, b"\r\n\r\n") {
        return Some((&bytes[..at], &bytes[at + 4..]));
    }
    find(bytes, b"\n\n").map(|at| (&bytes[..at], &bytes[at + 2..]))
}

/// RFC 3261 §7.5: CRLFs before the start line are ignored.
fn trim_leading_crlf(mut bytes: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Joins continuation lines (leading SP or HT) to the line before them (RFC 3261 §7.3.1).
fn unfold(head: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => lines.push(line.to_owned()),
        }
    }
    lines
}

fn parse_headers(lines: impl Iterator<Item = String>) -> Result<Headers, ParseError> {
    let mut headers = Headers::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(ParseError::InvalidHeaderLine)?;
        let name = name.trim_end();
        if name.is_empty() || !name.bytes().all(crate::message::is_token_byte) {
            return Err(ParseError::InvalidHeaderLine);
        }
        let name = canonical_name(name);
        let value = value.trim();
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

fn frame_body(headers: &Headers, body: &[u8]) -> Result<Bytes, ParseError> {
    let Some(length) = headers.get("Content-Length") else {
        // Over UDP the datagram bounds the message (RFC 3261 §18.3).
        return Ok(Bytes::copy_from_slice(body));
    };
    let length: usize = length
        .trim()
        .parse()
        .map_err(|_| ParseError::InvalidHeader("Content-Length"))?;
    if length > body.len() {
        return Err(ParseError::BodyTooShort {
            declared: length,
            received: body.len(),
        });
    }
    Ok(Bytes::copy_from_slice(&body[..length]))
}

fn parse_start_line(line: &str, headers: Headers, body: Bytes) -> Result<Message, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().ok_or(ParseError::InvalidStartLine)?;
        if version != "2.0" {
            return Err(ParseError::UnsupportedVersion);
        }
        let status = parts.next().ok_or(ParseError::InvalidStartLine)?;
        if status.len() != 3 {
            return Err(ParseError::InvalidStatus);
        }
        let status: u16 = status.parse().map_err(|_| ParseError::InvalidStatus)?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::InvalidStatus);
        }
        let reason = parts.next().unwrap_or("").to_owned();
        return Ok(Response {
            status,
            reason,
            headers,
            body,
        }
        .into());
    }

    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::InvalidStartLine);
    };
    if !version.starts_with("SIP/") {
        return Err(ParseError::InvalidStartLine);
    }
    if version != "SIP/2.0" {
        return Err(ParseError::UnsupportedVersion);
    }
    if uri.is_empty() {
        return Err(ParseError::InvalidStartLine);
    }
    let method = Method::parse(method)?;
    Ok(Request {
        method,
        uri: uri.to_owned(),
        headers,
        body,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/TCP p.example;branch=z9hG4bK2\r\n\
        f: <sip:alice@example.com>;tag=1\r\n\
        t: <sip:bob@example.com>\r\n\
        i: abc@10.0.0.1\r\n\
        CSeq: 1\r\n INVITE\r\n\
        m: <sip:alice@10.0.0.1>\r\n\
        l: 4\r\n\r\nv=0\r\n";

    #[test]
    fn compact_forms_folding_and_lists_are_normalised() {
        let Message::Request(req) = parse(INVITE.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(req.method, Method::Invite);
        assert_eq!(req.headers.get_all("Via").count(), 2);
        assert_eq!(req.headers.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(req.headers.call_id().unwrap(), "abc@10.0.0.1");
        assert_eq!(req.headers.cseq().unwrap().seq, 1);
        assert_eq!(&req.body[..], b"v=0\r");
    }

    #[test]
    fn unknown_method_is_an_extension() {
        let msg = "FOO sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n";
        let Message::Request(req) = parse(msg.as_bytes()).unwrap() else {
            panic!()
        };
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
}
