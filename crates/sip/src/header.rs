//! Typed views of the header fields a B2BUA reads: Via, From/To/Contact, CSeq.
//!
//! Each view is parsed from the received text on demand and prints back to text, so a
//! message is only re-written where callvault means to change it.

use std::fmt;

use crate::message::{is_token_byte, Method};
use crate::ParseError;

/// A generic parameter: `;name` or `;name=value` (RFC 3261 §25.1 `generic-param`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// An ordered list of parameters with case-insensitive lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// Parses `;a=b;c` (the leading `;` optional).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut params = Vec::new();
        for part in split_outside_quotes(text, b';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().to_owned())),
                None => (part, None),
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParseError::InvalidParam);
            }
            params.push(Param {
                name: name.to_owned(),
                value,
            });
        }
        Ok(Self(params))
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
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let text = text.trim();
        let (protocol, rest) = text
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or(ParseError::InvalidHeader("Via"))?;
        let mut parts = protocol.split('/').map(str::trim);
        let (Some(name), Some(_version), Some(transport), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::InvalidHeader("Via"));
        };
        if !name.eq_ignore_ascii_case("SIP") || transport.is_empty() {
            return Err(ParseError::InvalidHeader("Via"));
        }
        let rest = rest.trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(at) => (&rest[..at], Params::parse(&rest[at..])?),
            None => (rest, Params::default()),
        };
        let sent_by = sent_by.trim();
        if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
            return Err(ParseError::InvalidHeader("Via"));
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
            Some(open) => {
                let close = text[open..].find('>').ok_or(ParseError::InvalidNameAddr)? + open;
                let display = text[..open].trim();
                let display_name = (!display.is_empty()).then(|| display.to_owned());
                let uri = text[open + 1..close].trim().to_owned();
                let params = Params::parse(&text[close + 1..])?;
                Ok(Self {
                    display_name,
                    uri,
                    params,
                })
            }
            None => {
                // addr-spec form: parameters after the URI belong to the header (§20.10).
                let (uri, params) = match text.find(';') {
                    Some(at) => (&text[..at], Params::parse(&text[at..])?),
                    None => (text, Params::default()),
                };
                if uri.is_empty() || uri.contains(char::is_whitespace) {
                    return Err(ParseError::InvalidNameAddr);
                }
                Ok(Self {
                    display_name: None,
                    uri: uri.to_owned(),
                    params,
                })
            }
        }
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
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
        let seq = seq.parse().map_err(|_| ParseError::InvalidHeader("CSeq"))?;
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
        assert_eq!(via.branch(), Some("z9hG4bKas"));
        assert_eq!(via.params.get("rport"), Some(None));
    }

    #[test]
    fn name_addr_keeps_display_name_and_tag() {
        let na = NameAddr::parse(r#""Reception; desk" <sip:205@pbx;user=phone>;tag=a1"#).unwrap();
        assert_eq!(na.display_name.as_deref(), Some(r#""Reception; desk""#));
        assert_eq!(na.uri, "sip:205@pbx;user=phone");
        assert_eq!(na.tag(), Some("a1"));
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let na = NameAddr::parse("sip:alice@example.com;tag=xyz").unwrap();
        assert_eq!(na.uri, "sip:alice@example.com");
        assert_eq!(na.tag(), Some("xyz"));
    }

    #[test]
    fn cseq_rejects_overflow() {
        assert!(CSeq::parse("4294967296 INVITE").is_err());
        assert_eq!(CSeq::parse("4294967295 INVITE").unwrap().seq, u32::MAX);
    }
}
