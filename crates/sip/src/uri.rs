//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), read from the received text.
//!
//! rsip 0.4 supplies the value types (`Host`, `HostWithPort`, `Transport`, `Uri`), but its
//! URI tokenizer is not used: it splits `sip:j.user@host` at the dot, cannot read a
//! bracketed IPv6 host, knows no `tel:` and prints `transport=udp` back as `UDP`. A URI
//! here keeps the text it was parsed from, so rebuilding one with another host and port
//! leaves the user part and the parameters byte for byte as they arrived.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use crate::header::{NameAddr, Params};
use crate::ParseError;

/// A URI as received, classified by scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// Any other scheme (`http:`, `urn:`, ...): kept as text, never interpreted.
    Other(String),
}

impl Uri {
    /// Parses an absolute URI; `sip`, `sips` and `tel` are checked in detail.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let (scheme, _) = split_scheme(text).ok_or(ParseError::InvalidUri)?;
        if !is_uri_text(text) {
            return Err(ParseError::InvalidUri);
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse(text).map(Self::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse(text).map(Self::Tel)
        } else {
            Ok(Self::Other(text.to_owned()))
        }
    }

    /// The scheme as written (`sip`, `SIP`, `tel`, ...).
    pub fn scheme(&self) -> &str {
        split_scheme(self.as_str()).map_or("", |(scheme, _)| scheme)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Sip(uri) => uri.as_str(),
            Self::Tel(uri) => uri.as_str(),
            Self::Other(text) => text,
        }
    }

    /// The SIP user or the telephone number; `None` for other schemes.
    ///
    /// Escapes are decoded. A user that is a telephone number (`+44 7700 900123`
    /// written with visual separators, with or without `;phone-context`) comes back
    /// as its digits, as a `tel:` number does.
    pub fn user_or_number(&self) -> Option<String> {
        match self {
            Self::Sip(uri) => uri.user().map(user_as_number),
            Self::Tel(uri) => Some(uri.digits()),
            Self::Other(_) => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user or telephone number of a URI, or of a header value in name-addr form.
///
/// This is what the B2BUA reads from From, To, P-Asserted-Identity and the Request-URI.
pub fn user_or_number(text: &str) -> Option<String> {
    let text = text.trim();
    match Uri::parse(text) {
        Ok(uri) => uri.user_or_number(),
        Err(_) => Uri::parse(&NameAddr::parse(text).ok()?.uri)
            .ok()?
            .user_or_number(),
    }
}

/// A `sip:` or `sips:` URI with the positions of its parts in the received text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    text: String,
    user: Option<Range<usize>>,
    password: Option<Range<usize>>,
    host: Range<usize>,
    port: Option<u16>,
    /// From the first `;` after the host up to `?` or the end.
    params_text: Range<usize>,
    params: Params,
    headers: Option<Range<usize>>,
}

impl SipUri {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let invalid = ParseError::InvalidUri;
        let (scheme, rest) = split_scheme(text).ok_or(invalid.clone())?;
        let is_sip = scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips");
        if !is_sip || !is_uri_text(text) {
            return Err(invalid);
        }
        let rest_start = scheme.len() + 1;
        // `@` cannot appear unescaped in the user, password, parameters or headers.
        let (user, password, host_start) = match rest.find('@') {
            Some(at) => {
                let (user, password) = split_user_info(rest_start, &rest[..at])?;
                (Some(user), password, rest_start + at + 1)
            }
            None => (None, None, rest_start),
        };
        let after_host = &text[host_start..];
        let host_port_len = after_host.find([';', '?']).unwrap_or(after_host.len());
        let (host, port) = split_host_port(&after_host[..host_port_len])?;
        let params_start = host_start + host_port_len;
        let params_end = text[params_start..]
            .find('?')
            .map_or(text.len(), |at| params_start + at);
        let headers = (params_end < text.len()).then_some(params_end + 1..text.len());
        if headers.as_ref().is_some_and(Range::is_empty) {
            return Err(invalid);
        }
        Ok(Self {
            text: text.to_owned(),
            user,
            password,
            host: host_start..host_start + host.len(),
            port,
            params_text: params_start..params_end,
            params: Params::parse(&text[params_start..params_end])
                .map_err(|_| ParseError::InvalidUri)?,
            headers,
        })
    }

    /// The whole URI as received.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `sip` or `sips` as written.
    pub fn scheme(&self) -> &str {
        &self.text[..self.text.find(':').unwrap_or(0)]
    }

    pub fn is_sips(&self) -> bool {
        self.scheme().eq_ignore_ascii_case("sips")
    }

    /// The user part as written: escapes kept, `;` user parameters included.
    pub fn user(&self) -> Option<&str> {
        self.user.clone().map(|range| &self.text[range])
    }

    pub fn password(&self) -> Option<&str> {
        self.password.clone().map(|range| &self.text[range])
    }

    /// The host as written; an IPv6 reference keeps its brackets.
    pub fn host(&self) -> &str {
        &self.text[self.host.clone()]
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        parse_ip(self.host())
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The URI parameters (`;transport=tcp;lr`), in order.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The `?` headers component without the `?`, escapes kept.
    pub fn headers(&self) -> Option<&str> {
        self.headers.clone().map(|range| &self.text[range])
    }

    /// The `transport` parameter, when it names a transport rsip knows.
    pub fn transport(&self) -> Option<rsip::Transport> {
        self.params.get("transport").flatten()?.parse().ok()
    }

    /// Host and port as rsip's type; an IPv6 host loses its brackets there.
    pub fn host_with_port(&self) -> rsip::HostWithPort {
        let host = match self.ip() {
            Some(ip) => rsip::Host::IpAddr(ip),
            None => rsip::Host::Domain(self.host().to_owned().into()),
        };
        rsip::HostWithPort {
            host,
            port: self.port.map(Into::into),
        }
    }

    /// The same URI with another host and port; everything else stays as received.
    ///
    /// `host` may be a name, an IPv4 address or an IPv6 address with or without
    /// brackets. `port: None` leaves no port in the URI.
    pub fn with_host_port(&self, host: &str, port: Option<u16>) -> Result<Self, ParseError> {
        let mut text = String::with_capacity(self.text.len() + host.len() + 8);
        text.push_str(&self.text[..self.host.start]);
        match host.parse::<Ipv6Addr>() {
            Ok(_) => text.extend(["[", host, "]"]),
            Err(_) => text.push_str(host),
        }
        if let Some(port) = port {
            text.push(':');
            text.push_str(&port.to_string());
        }
        text.push_str(&self.text[self.params_text.start..]);
        Self::parse(&text)
    }

    /// The same URI pointing at `address`.
    pub fn with_socket_addr(&self, address: SocketAddr) -> Self {
        self.with_host_port(&address.ip().to_string(), Some(address.port()))
            .expect("an IP address and port replacing a parsed host make a valid URI")
    }

    /// rsip's typed view of this URI, for code that works with rsip types.
    ///
    /// It is for reading only: rsip prints some values differently from how they were
    /// received, and rsip 0.4 has no URI headers, so they are left out.
    pub fn to_rsip(&self) -> rsip::Uri {
        let scheme = match self.is_sips() {
            true => rsip::Scheme::Sips,
            false => rsip::Scheme::Sip,
        };
        rsip::Uri {
            scheme: Some(scheme),
            auth: self.user().map(|user| rsip::Auth {
                user: user.to_owned(),
                password: self.password().map(str::to_owned),
            }),
            host_with_port: self.host_with_port(),
            params: self.params.0.iter().map(to_rsip_param).collect(),
            headers: Vec::new(),
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// rsip's parameter, or `Other` where rsip rejects the value (`transport=sctp-x`).
fn to_rsip_param(param: &crate::header::Param) -> rsip::Param {
    let value = param.value.as_deref();
    rsip::Param::try_from((param.name.as_str(), value))
        .unwrap_or_else(|_| rsip::Param::Other(param.name.as_str().into(), value.map(Into::into)))
}

/// Splits `userinfo` (starting at `offset` in the URI) into user and password ranges.
fn split_user_info(
    offset: usize,
    info: &str,
) -> Result<(Range<usize>, Option<Range<usize>>), ParseError> {
    let (user_len, password) = match info.find(':') {
        Some(at) => (at, Some(offset + at + 1..offset + info.len())),
        None => (info.len(), None),
    };
    if user_len == 0 {
        return Err(ParseError::InvalidUri);
    }
    Ok((offset..offset + user_len, password))
}

/// A `tel:` URI (RFC 3966): a global (`+44...`) or local number and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    text: String,
    number: Range<usize>,
    params: Params,
}

impl TelUri {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let (scheme, rest) = split_scheme(text).ok_or(ParseError::InvalidUri)?;
        if !scheme.eq_ignore_ascii_case("tel") || !is_uri_text(text) {
            return Err(ParseError::InvalidUri);
        }
        let number_len = rest.find(';').unwrap_or(rest.len());
        let number = &rest[..number_len];
        if !is_telephone_number(number) {
            return Err(ParseError::InvalidUri);
        }
        let start = scheme.len() + 1;
        Ok(Self {
            text: text.to_owned(),
            number: start..start + number_len,
            params: Params::parse(&rest[number_len..]).map_err(|_| ParseError::InvalidUri)?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The number as written, visual separators included.
    pub fn number(&self) -> &str {
        &self.text[self.number.clone()]
    }

    /// The number without visual separators; a global number keeps its `+`.
    pub fn digits(&self) -> String {
        strip_visual_separators(self.number())
    }

    /// Whether the number is in international form (`+` and a country code).
    pub fn is_global(&self) -> bool {
        self.number().starts_with('+')
    }

    /// The `phone-context` a local number is relative to.
    pub fn phone_context(&self) -> Option<&str> {
        self.params.get("phone-context").flatten()
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// RFC 3966 visual separators, which carry no meaning in a number.
const VISUAL_SEPARATORS: &[char] = &['-', '.', '(', ')'];

/// `global-number-digits` or `local-number-digits` of RFC 3966.
fn is_telephone_number(text: &str) -> bool {
    let (digits, allowed): (&str, fn(char) -> bool) = match text.strip_prefix('+') {
        Some(rest) => (rest, |c| c.is_ascii_digit()),
        None => (text, |c| c.is_ascii_hexdigit() || c == '*' || c == '#'),
    };
    digits.chars().any(allowed)
        && digits
            .chars()
            .all(|c| allowed(c) || VISUAL_SEPARATORS.contains(&c))
}

fn strip_visual_separators(number: &str) -> String {
    number
        .chars()
        .filter(|c| !VISUAL_SEPARATORS.contains(c))
        .collect()
}

/// A SIP user that is a telephone number becomes its digits; any other is unescaped.
fn user_as_number(user: &str) -> String {
    let user = percent_decode(user);
    let subscriber = user.split(';').next().unwrap_or_default();
    let is_number = subscriber
        .strip_prefix('+')
        .unwrap_or(subscriber)
        .chars()
        .all(|c| c.is_ascii_digit() || c == '*' || c == '#' || VISUAL_SEPARATORS.contains(&c));
    match is_number && subscriber.contains(|c: char| c.is_ascii_digit()) {
        true => strip_visual_separators(subscriber),
        false => user,
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `scheme:rest`; the scheme is `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
pub(crate) fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (valid && !rest.is_empty()).then_some((scheme, rest))
}

/// Whether `text` looks like an absolute URI: a scheme, a colon and URI characters.
pub(crate) fn is_absolute(text: &str) -> bool {
    split_scheme(text).is_some() && is_uri_text(text)
}

/// URIs carry no whitespace, controls, quotes or angle brackets unescaped.
fn is_uri_text(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
}

/// Splits `host[:port]`, checking both; an IPv6 host must be in brackets.
pub(crate) fn split_host_port(text: &str) -> Result<(&str, Option<u16>), ParseError> {
    let (host, port) = match text.starts_with('[') {
        true => {
            let close = text.find(']').ok_or(ParseError::InvalidUri)?;
            let (host, rest) = text.split_at(close + 1);
            match rest {
                "" => (host, None),
                _ => (
                    host,
                    Some(rest.strip_prefix(':').ok_or(ParseError::InvalidUri)?),
                ),
            }
        }
        false => match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    if !is_host(host) {
        return Err(ParseError::InvalidUri);
    }
    let port = port.map(parse_port).transpose()?;
    Ok((host, port))
}

fn parse_port(text: &str) -> Result<u16, ParseError> {
    match !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse().map_err(|_| ParseError::InvalidUri),
        false => Err(ParseError::InvalidUri),
    }
}

/// A bracketed IPv6 reference, or a name or IPv4 address of `alphanum - . _`.
fn is_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.parse::<Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        }
    }
}

/// The IP address of a host as written in a URI or Via.
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(text: &str) -> SipUri {
        SipUri::parse(text).unwrap()
    }

    #[test]
    fn sip_uri_parts_are_read() {
        let uri = sip("sip:alice:secret@pbx.example.com:5070;transport=tcp;lr?Subject=hi");
        assert_eq!(uri.scheme(), "sip");
        assert_eq!(uri.user(), Some("alice"));
        assert_eq!(uri.password(), Some("secret"));
        assert_eq!(uri.host(), "pbx.example.com");
        assert_eq!(uri.port(), Some(5070));
        assert_eq!(uri.params().get("lr"), Some(None));
        assert_eq!(uri.transport(), Some(rsip::Transport::Tcp));
        assert_eq!(uri.headers(), Some("Subject=hi"));
    }

    #[test]
    fn user_with_dots_is_not_split_at_the_dot() {
        let uri = sip("sip:j.user@example.com");
        assert_eq!(uri.user(), Some("j.user"));
        assert_eq!(uri.host(), "example.com");
    }

    #[test]
    fn ipv6_host_keeps_brackets_and_gives_an_address() {
        let uri = sip("sips:[2001:db8::10]:5061;transport=tls");
        assert_eq!(uri.host(), "[2001:db8::10]");
        assert_eq!(uri.port(), Some(5061));
        assert_eq!(uri.ip(), Some("2001:db8::10".parse().unwrap()));
        assert!(uri.is_sips());
        let typed = uri.host_with_port();
        assert_eq!(
            typed.host,
            rsip::Host::IpAddr("2001:db8::10".parse().unwrap())
        );
        assert!(SipUri::parse("sip:2001:db8::10").is_err());
        assert!(SipUri::parse("sip:[2001:db8::10").is_err());
    }

    #[test]
    fn rebuilding_with_a_new_host_keeps_user_and_params_verbatim() {
        let uri = sip("sip:%2B447700900123;npdi@10.0.0.5:5060;transport=udp;X-Odd=Case?h=v");
        let moved = uri.with_socket_addr("[2001:db8::1]:5080".parse().unwrap());
        assert_eq!(
            moved.as_str(),
            "sip:%2B447700900123;npdi@[2001:db8::1]:5080;transport=udp;X-Odd=Case?h=v"
        );
        let named = uri.with_host_port("callvault.example", None).unwrap();
        assert_eq!(
            named.as_str(),
            "sip:%2B447700900123;npdi@callvault.example;transport=udp;X-Odd=Case?h=v"
        );
        let no_user = sip("sip:pbx;lr")
            .with_host_port("2001:db8::2", Some(5060))
            .unwrap();
        assert_eq!(no_user.as_str(), "sip:[2001:db8::2]:5060;lr");
        assert!(uri.with_host_port("bad host", None).is_err());
    }

    #[test]
    fn rsip_view_has_typed_values_but_we_print_the_received_text() {
        let uri = sip("sip:205@[::1]:5060;transport=udp");
        let typed = uri.to_rsip();
        assert_eq!(typed.user(), Some("205"));
        assert_eq!(typed.transport(), Some(&rsip::Transport::Udp));
        assert_eq!(uri.to_string(), "sip:205@[::1]:5060;transport=udp");
    }

    #[test]
    fn tel_uri_number_is_read() {
        let Uri::Tel(tel) = Uri::parse("tel:+44-7700-900123;phone-context=example.com").unwrap()
        else {
            panic!("not a tel URI")
        };
        assert_eq!(tel.number(), "+44-7700-900123");
        assert_eq!(tel.digits(), "+447700900123");
        assert!(tel.is_global());
        assert_eq!(tel.phone_context(), Some("example.com"));
        let local = TelUri::parse("tel:7042;phone-context=+44207").unwrap();
        assert!(!local.is_global());
        assert!(TelUri::parse("tel:+").is_err());
        assert!(TelUri::parse("tel:alice").is_err());
    }

    #[test]
    fn user_or_number_reads_every_kind_of_uri() {
        assert_eq!(user_or_number("sip:205@pbx").as_deref(), Some("205"));
        assert_eq!(
            user_or_number("sip:+44(0)7700-900.123;npdi@trunk;user=phone").as_deref(),
            Some("+4407700900123")
        );
        assert_eq!(
            user_or_number("tel:+447700900123").as_deref(),
            Some("+447700900123")
        );
        assert_eq!(
            user_or_number(r#""Reception" <sip:%72eception@pbx>;tag=1"#).as_deref(),
            Some("reception")
        );
        assert_eq!(
            user_or_number("<tel:+447700900123;phone-context=x>").as_deref(),
            Some("+447700900123")
        );
        assert_eq!(user_or_number("sip:pbx.example.com"), None);
        assert_eq!(user_or_number("http://www.example.com"), None);
        assert_eq!(user_or_number("not a uri"), None);
    }

    #[test]
    fn escapes_are_decoded_only_when_valid() {
        assert_eq!(percent_decode("cal%6Cer"), "caller");
        assert_eq!(percent_decode("%Z%45"), "%ZE");
        assert_eq!(percent_decode("null-%00-null"), "null-\0-null");
        assert_eq!(percent_decode("50%"), "50%");
    }

    #[test]
    fn other_schemes_are_kept_and_malformed_ones_rejected() {
        let uri = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(uri.scheme(), "soap.beep");
        assert!(matches!(uri, Uri::Other(_)));
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("sip:").is_err());
        assert!(Uri::parse("sip:user@").is_err());
        assert!(Uri::parse("sip:@host").is_err());
        assert!(Uri::parse("sip:host;;lr").is_err());
    }
}
