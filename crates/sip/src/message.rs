//! SIP messages (RFC 3261 §7): a start line, ordered headers and a body.
//!
//! Header values are kept as the text the peer sent, so that a header callvault does
//! not change leaves exactly as it arrived. Typed views (`Via`, `NameAddr`, `CSeq`)
//! are parsed on demand from that text.

use std::fmt;

use bytes::Bytes;

use crate::header::{CSeq, NameAddr, Via};
use crate::uri::Uri;
use crate::ParseError;

/// A SIP request method (RFC 3261 §7.1), including extension methods.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Refer,
    Notify,
    Subscribe,
    Message,
    Publish,
    /// Any other token; methods are case-sensitive (RFC 3261 §7.1).
    Extension(String),
}

impl Method {
    /// Parses a method token; anything that is a valid token but not known is an extension.
    pub fn parse(token: &str) -> Result<Self, ParseError> {
        if token.is_empty() || !token.bytes().all(is_token_byte) {
            return Err(ParseError::InvalidMethod);
        }
        Ok(match token {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            "REGISTER" => Self::Register,
            "PRACK" => Self::Prack,
            "UPDATE" => Self::Update,
            "INFO" => Self::Info,
            "REFER" => Self::Refer,
            "NOTIFY" => Self::Notify,
            "SUBSCRIBE" => Self::Subscribe,
            "MESSAGE" => Self::Message,
            "PUBLISH" => Self::Publish,
            other => Self::Extension(other.to_owned()),
        })
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Prack => "PRACK",
            Self::Update => "UPDATE",
            Self::Info => "INFO",
            Self::Refer => "REFER",
            Self::Notify => "NOTIFY",
            Self::Subscribe => "SUBSCRIBE",
            Self::Message => "MESSAGE",
            Self::Publish => "PUBLISH",
            Self::Extension(token) => token,
        }
    }

    /// rsip's method, for code that works with rsip types; `None` for extensions.
    pub fn to_rsip(&self) -> Option<rsip::Method> {
        match self {
            Self::Extension(_) => None,
            // rsip compares case-insensitively; our token is already one of its names.
            known => known.as_str().parse().ok(),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `token` characters of RFC 3261 §25.1.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// One header field: its canonical name and its value as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Full-form name; compact forms (`v`, `i`, `m`, ...) are expanded on parse.
    pub name: String,
    pub value: String,
}

/// The header fields of a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + use<'a> {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Appends a header after all others.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Inserts a header before every other header of the same name (or at the top).
    pub fn push_front(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let at = self
            .0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(&name))
            .unwrap_or(0);
        self.0.insert(
            at,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replaces every value of `name` with one value, keeping the first one's position.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(name))
        {
            Some(at) => {
                self.0[at].value = value;
                let mut index = 0;
                self.0.retain(|h| {
                    index += 1;
                    index - 1 == at || !h.name.eq_ignore_ascii_case(name)
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every value of `name`; returns whether any was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(name));
        before != self.0.len()
    }

    /// Removes and returns the first value of `name`.
    pub fn remove_first(&mut self, name: &str) -> Option<String> {
        let at = self
            .0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(name))?;
        Some(self.0.remove(at).value)
    }

    /// How many values of `name` there are.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Header> {
        self.0.iter_mut()
    }

    /// `Call-ID`: one word, non-empty (RFC 3261 §25.1 `callid`).
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let call_id = self
            .get("Call-ID")
            .map(str::trim)
            .ok_or(ParseError::MissingHeader("Call-ID"))?;
        match call_id.is_empty() || call_id.contains(char::is_whitespace) {
            true => Err(ParseError::InvalidHeader("Call-ID")),
            false => Ok(call_id),
        }
    }

    /// `CSeq`.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.get("CSeq").ok_or(ParseError::MissingHeader("CSeq"))?)
    }

    /// The topmost `Via`.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        Via::parse(self.get("Via").ok_or(ParseError::MissingHeader("Via"))?)
    }

    /// `From`.
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.get("From").ok_or(ParseError::MissingHeader("From"))?)
    }

    /// `To`.
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.get("To").ok_or(ParseError::MissingHeader("To"))?)
    }

    /// `Max-Forwards`, if present; values above 255 are invalid (RFC 3261 §20.22).
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        let Some(value) = self.get("Max-Forwards").map(str::trim) else {
            return Ok(None);
        };
        let invalid = ParseError::InvalidHeader("Max-Forwards");
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid);
        }
        match value.parse::<u32>() {
            Ok(hops) if hops <= 255 => Ok(Some(hops)),
            _ => Err(invalid),
        }
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI as received.
    pub uri: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Self::Request(r) => &r.headers,
            Self::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Self::Request(r) => &mut r.headers,
            Self::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &Bytes {
        match self {
            Self::Request(r) => &r.body,
            Self::Response(r) => &r.body,
        }
    }

    /// Serialises the message; `Content-Length` is set to the body's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Request(r) => r.to_bytes(),
            Self::Response(r) => r.to_bytes(),
        }
    }
}

impl Request {
    /// The Request-URI, typed.
    pub fn request_uri(&self) -> Result<Uri, ParseError> {
        Uri::parse(&self.uri).map_err(|_| ParseError::InvalidRequestUri)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        serialise(start, &self.headers, &self.body)
    }
}

impl Response {
    /// Builds a response to `request` as RFC 3261 §8.2.6 asks: Via, From, To, Call-ID and
    /// CSeq copied; the caller adds a To tag where one is needed.
    pub fn for_request(request: &Request, status: u16, reason: &str) -> Self {
        Self::answering(&request.headers, status, reason)
    }

    /// A response carrying the request headers that identify its transaction.
    pub(crate) fn answering(request_headers: &Headers, status: u16, reason: &str) -> Self {
        let mut headers = Headers::new();
        for h in request_headers.iter() {
            if ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .any(|n| h.name.eq_ignore_ascii_case(n))
            {
                headers.push(h.name.clone(), h.value.clone());
            }
        }
        Self {
            status,
            reason: reason.to_owned(),
            headers,
            body: Bytes::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("SIP/2.0 {} {}\r\n", self.status, self.reason);
        serialise(start, &self.headers, &self.body)
    }
}

/// Writes the message; `Content-Length` keeps its place with the body's real length.
fn serialise(start: String, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let head_len: usize = headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(start.len() + head_len + body.len() + 24);
    out.extend_from_slice(start.as_bytes());
    let length = body.len().to_string();
    let mut length_written = false;
    for h in headers.iter() {
        let value = match h.name.eq_ignore_ascii_case("Content-Length") {
            true if length_written => continue,
            true => length.as_str(),
            false => h.value.as_str(),
        };
        length_written |= h.name.eq_ignore_ascii_case("Content-Length");
        write_header(&mut out, &h.name, value);
    }
    if !length_written {
        write_header(&mut out, "Content-Length", &length);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Self::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Self::Response(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], body: &'static [u8]) -> Request {
        let mut request = Request {
            method: Method::Invite,
            uri: "sip:205@pbx".into(),
            headers: Headers::new(),
            body: Bytes::from_static(body),
        };
        for (name, value) in headers {
            request.headers.push(*name, *value);
        }
        request
    }

    #[test]
    fn content_length_keeps_its_place_with_the_real_length() {
        let req = request(
            &[("Via", "v"), ("Content-Length", "99"), ("To", "t")],
            b"abc",
        );
        let text = String::from_utf8(req.to_bytes()).unwrap();
        assert_eq!(
            text,
            "INVITE sip:205@pbx SIP/2.0\r\nVia: v\r\nContent-Length: 3\r\nTo: t\r\n\r\nabc"
        );
    }

    #[test]
    fn content_length_is_added_once_when_missing_or_repeated() {
        let missing = String::from_utf8(request(&[("To", "t")], b"").to_bytes()).unwrap();
        assert!(missing.ends_with("To: t\r\nContent-Length: 0\r\n\r\n"));
        let twice = request(&[("Content-Length", "1"), ("Content-Length", "2")], b"");
        let text = String::from_utf8(twice.to_bytes()).unwrap();
        assert_eq!(text.matches("Content-Length").count(), 1);
    }

    #[test]
    fn response_for_request_copies_the_transaction_headers() {
        let req = request(
            &[
                ("Via", "a"),
                ("Via", "b"),
                ("From", "f"),
                ("To", "t"),
                ("Call-ID", "c"),
                ("CSeq", "1 INVITE"),
                ("Contact", "<sip:x@y>"),
            ],
            b"",
        );
        let response = Response::for_request(&req, 486, "Busy Here");
        let names: Vec<_> = response.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Via", "Via", "From", "To", "Call-ID", "CSeq"]);
    }

    #[test]
    fn call_id_and_max_forwards_are_checked() {
        let bad = request(&[("Call-ID", "a b"), ("Max-Forwards", "256")], b"");
        assert!(bad.headers.call_id().is_err());
        assert!(bad.headers.max_forwards().is_err());
        let good = request(&[("Call-ID", "a@b"), ("Max-Forwards", "0070")], b"");
        assert_eq!(good.headers.call_id(), Ok("a@b"));
        assert_eq!(good.headers.max_forwards(), Ok(Some(70)));
    }

    #[test]
    fn known_methods_map_to_rsip() {
        assert_eq!(Method::Prack.to_rsip(), Some(rsip::Method::PRack));
        assert_eq!(Method::parse("invite").unwrap().to_rsip(), None);
    }
}
