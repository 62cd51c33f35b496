//! Typed views of the header fields a B2BUA reads: Via, From/To/Contact, CSeq.
//!
//! Each view is parsed from the received text on demand and prints back to text, so a
//! message is only re-written where callvault means to change it. The views are strict:
//! a value that RFC 3261 §25 does not allow is an error, and the validation of
//! `crate::validate` turns that error into a 400 response.

use std::fmt;

use crate::message::{is_token_byte, Method};
use crate::uri;
use crate::ParseError;

/// A generic parameter: `;name` or `;name=value` (RFC 3261 §25.1 `generic-param`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// The value as written; a quoted string keeps its quotes.
    pub value: Option<String>,
}

impl Param {
    /// Parses one `name[=value]`, with optional whitespace around `=`.
    fn parse(text: &str) -> Result<Self, ParseError> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (text.trim(), None),
        };
        if !is_token(name) || value.is_some_and(|v| !is_param_value(v)) {
            return Err(ParseError::InvalidParam);
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        })
    }
}

/// A token, or a quoted string, or (in URIs) any run without whitespace or quotes.
fn is_param_value(value: &str) -> bool {
    if value.starts_with('"') {
        return quoted_string_len(value) == Some(value.len());
    }
    !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '"')
}

/// An ordered list of parameters with case-insensitive lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// Parses `;a=b;c`: blank, or parameters each introduced by `;`.
    ///
    /// An empty parameter (`;;`) or text before the first `;` is an error.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::default());
        }
        let mut parts = split_outside_quotes(text, b';').into_iter();
        if parts.next().is_none_or(|lead| !lead.trim().is_empty()) {
            return Err(ParseError::InvalidParam);
        }
        parts.map(Param::parse).collect::<Result<_, _>>().map(Self)
    }

    /// The value of `name`: `Some(None)` for a flag parameter, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// Sets `name` to `value`, replacing an existing one in place.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.0.push(Param {
                name: name.to_owned(),
                value,
            }),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            match &p.value {
                Some(v) => write!(f, ";{}={v}", p.name)?,
                None => write!(f, ";{}", p.name)?,
            }
        }
        Ok(())
    }
}

/// One `Via` value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, ... as received.
    pub transport: String,
    /// `host` or `host:port`; IPv6 references keep their brackets.
    pub sent_by: String,
    pub params: Params,
}

impl Via {
    /// Parses one value; whitespace around the slashes is allowed (RFC 3261 `SLASH`).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let invalid = ParseError::InvalidHeader("Via");
        let (name, rest) = text.split_once('/').ok_or(invalid.clone())?;
        let (version, rest) = rest.split_once('/').ok_or(invalid.clone())?;
        if !name.trim().eq_ignore_ascii_case("SIP") || !is_token(version.trim()) {
            return Err(invalid);
        }
        let rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).ok_or(invalid.clone())?;
        let (transport, rest) = rest.split_at(end);
        let (sent_by, params) = match rest.find(';') {
            Some(at) => (rest[..at].trim(), Params::parse(&rest[at..])?),
            None => (rest.trim(), Params::default()),
        };
        if !is_token(transport) || uri::split_host_port(sent_by).is_err() {
            return Err(invalid);
        }
        Ok(Self {
            transport: transport.to_owned(),
            sent_by: sent_by.to_owned(),
            params,
        })
    }

    /// The `branch` parameter, the transaction key of RFC 3261 §17.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// The host of `sent-by` as written (IPv6 in brackets).
    pub fn host(&self) -> &str {
        uri::split_host_port(&self.sent_by).map_or(&self.sent_by, |(host, _)| host)
    }

    /// The port of `sent-by`, if one is written.
    pub fn port(&self) -> Option<u16> {
        uri::split_host_port(&self.sent_by).ok()?.1
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIP/2.0/{} {}{}",
            self.transport, self.sent_by, self.params
        )
    }
}

/// A `name-addr` or `addr-spec` with header parameters: From, To, Contact, Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name as written, quotes included.
    pub display_name: Option<String>,
    /// The URI text, without angle brackets.
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    /// Parses `"Name" <uri>;params`, `Name <uri>`, `uri;params` or `*`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let text = text.trim();
        if text == "*" {
            return Ok(Self {
                display_name: None,
                uri: "*".into(),
                params: Params::default(),
            });
        }
        match find_outside_quotes(text, b'<') {
            Some(open) => Self::parse_name_addr(text, open),
            None => Self::parse_addr_spec(text),
        }
    }

    fn parse_name_addr(text: &str, open: usize) -> Result<Self, ParseError> {
        let display = text[..open].trim();
        if !is_display_name(display) {
            return Err(ParseError::InvalidNameAddr);
        }
        let close = text[open..].find('>').ok_or(ParseError::InvalidNameAddr)? + open;
        // RFC 3261 allows whitespace outside the angle brackets, never inside them.
        let uri = &text[open + 1..close];
        if uri.trim() != uri || !uri::is_absolute(uri) {
            return Err(ParseError::InvalidNameAddr);
        }
        Ok(Self {
            display_name: (!display.is_empty()).then(|| display.to_owned()),
            uri: uri.to_owned(),
            params: Params::parse(&text[close + 1..])?,
        })
    }

    /// The addr-spec form: parameters after the URI belong to the header (§20.10).
    fn parse_addr_spec(text: &str) -> Result<Self, ParseError> {
        let (uri, params) = match text.find(';') {
            Some(at) => (text[..at].trim_end(), Params::parse(&text[at..])?),
            None => (text, Params::default()),
        };
        // A URI holding `,` `?` or `;` must be in angle brackets (RFC 3261 §20).
        if text.contains('"') || uri.contains([',', '?']) || !uri::is_absolute(uri) {
            return Err(ParseError::InvalidNameAddr);
        }
        Ok(Self {
            display_name: None,
            uri: uri.to_owned(),
            params,
        })
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }

    /// The user part or telephone number of the URI; see [`uri::user_or_number`].
    pub fn user_or_number(&self) -> Option<String> {
        uri::user_or_number(&self.uri)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.uri == "*" {
            return f.write_str("*");
        }
        if let Some(name) = &self.display_name {
            write!(f, "{name} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// `CSeq` (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut parts = text.split_ascii_whitespace();
        let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::InvalidHeader("CSeq"));
        };
        // RFC 3261 §8.1.1.5: the sequence number is a 32-bit unsigned integer.
        let seq = match seq.bytes().all(|b| b.is_ascii_digit()) {
            true => seq.parse().map_err(|_| ParseError::InvalidHeader("CSeq"))?,
            false => return Err(ParseError::InvalidHeader("CSeq")),
        };
        Ok(Self {
            seq,
            method: Method::parse(method)?,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_token_byte)
}

/// A display name is empty, one quoted string, or tokens separated by whitespace.
fn is_display_name(text: &str) -> bool {
    if text.starts_with('"') {
        return quoted_string_len(text) == Some(text.len());
    }
    text.split_whitespace().all(is_token)
}

/// The length of the quoted string that opens `text`, or `None` if it is not closed.
pub(crate) fn quoted_string_len(text: &str) -> Option<usize> {
    let mut bytes = text.bytes().enumerate().skip(1);
    while let Some((i, b)) = bytes.next() {
        match b {
            b'\\' => {
                bytes.next();
            }
            b'"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Splits `text` at `sep` wherever it is outside a quoted string and outside `<...>`.
pub(crate) fn split_outside_quotes(text: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut angle, mut escaped) = (0, false, false, false);
    for (i, b) in text.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            _ if b == sep && !quoted && !angle => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn find_outside_quotes(text: &str, needle: u8) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in text.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_ipv6_and_branch() {
        let via = Via::parse("SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bKas;rport").unwrap();
        assert_eq!(via.sent_by, "[2001:db8::9:1]:5060");
        assert_eq!(via.host(), "[2001:db8::9:1]");
        assert_eq!(via.port(), Some(5060));
        assert_eq!(via.branch(), Some("z9hG4bKas"));
        assert_eq!(via.params.get("rport"), Some(None));
    }

    #[test]
    fn via_allows_whitespace_around_slashes_and_equals() {
        let via = Via::parse("SIP  /   2.0 /UDP 192.0.2.2 ; branch  =   z9hG4bK9ikj8  ").unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.sent_by, "192.0.2.2");
        assert_eq!(via.branch(), Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn via_rejects_empty_params_and_bad_ports() {
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("SIP/2.0/UDP host:99999;branch=z9hG4bK1").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("").is_err());
    }

    #[test]
    fn name_addr_keeps_display_name_and_tag() {
        let na = NameAddr::parse(r#""Reception; desk" <sip:205@pbx;user=phone>;tag=a1"#).unwrap();
        assert_eq!(na.display_name.as_deref(), Some(r#""Reception; desk""#));
        assert_eq!(na.uri, "sip:205@pbx;user=phone");
        assert_eq!(na.tag(), Some("a1"));
        assert_eq!(na.user_or_number().as_deref(), Some("205"));
    }

    #[test]
    fn name_addr_reads_escaped_quotes_in_display_name() {
        let na = NameAddr::parse(r#""J Rosenberg \\\""  <sip:j@example.com> ; tag = 98asjd8"#);
        let na = na.unwrap();
        assert_eq!(na.display_name.as_deref(), Some(r#""J Rosenberg \\\"""#));
        assert_eq!(na.tag(), Some("98asjd8"));
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let na = NameAddr::parse("sip:alice@example.com ;tag=xyz").unwrap();
        assert_eq!(na.uri, "sip:alice@example.com");
        assert_eq!(na.tag(), Some("xyz"));
    }

    #[test]
    fn name_addr_rejects_what_rfc_4475_calls_invalid() {
        // quotbal, badaspec, baddn, regbadct and badinv01 in turn.
        assert!(NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse(r#""Watson, Thomas" < sip:t.watson@example.org >"#).is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#).is_err());
        assert!(NameAddr::parse("<>").is_err());
        assert!(NameAddr::parse("Alice").is_err());
    }

    #[test]
    fn name_addr_accepts_unusual_but_valid_forms() {
        assert!(NameAddr::parse("caller<sip:caller@example.com>;tag=323").is_ok());
        assert!(NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:m@example.com>").is_ok());
        assert!(NameAddr::parse("isbn:2983792873").is_ok());
        assert!(NameAddr::parse("<name:John_Smith>").is_ok());
        let quoted_param = r#"<sip:m@example.com>;fromParam''~+*_!.-%="x;y";tag=1"#;
        assert_eq!(NameAddr::parse(quoted_param).unwrap().tag(), Some("1"));
    }

    #[test]
    fn cseq_rejects_overflow_and_signs() {
        assert!(CSeq::parse("4294967296 INVITE").is_err());
        assert!(CSeq::parse("+1 INVITE").is_err());
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert_eq!(CSeq::parse("4294967295 INVITE").unwrap().seq, u32::MAX);
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
    }
}
