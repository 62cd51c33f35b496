//! SDP (RFC 8866) for a B2BUA that anchors media.
//!
//! A description is kept as the lines that came in. Reading it parses the few lines
//! callvault needs (`o=`, `c=`, `m=`, `a=rtcp`, `a=rtpmap`, the direction attributes);
//! [`SessionDescription::anchor`] rewrites only addresses and ports and removes ICE, so
//! every other line (`a=crypto`, T.38 parameters, vendor attributes) leaves byte for
//! byte as it arrived. Lines may end in CRLF or LF; output always uses CRLF.

use std::net::{IpAddr, SocketAddr};

/// Why an SDP body was rejected; `line` counts from 1, blank lines excluded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("sdp body has no lines")]
    Empty,
    #[error("line {line} is not of the form <type>=<value>")]
    MalformedLine { line: usize },
    #[error("first line is not v=0")]
    UnsupportedVersion,
    #[error("session description has no {0}= line")]
    MissingLine(char),
    #[error("line {line}: invalid {kind}= line")]
    InvalidLine { line: usize, kind: char },
}

/// Which way media flows (RFC 8866 §6.7), from the describing side's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaDirection {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl MediaDirection {
    fn from_attribute(name: &[u8]) -> Option<Self> {
        match name {
            b"sendrecv" => Some(Self::SendRecv),
            b"sendonly" => Some(Self::SendOnly),
            b"recvonly" => Some(Self::RecvOnly),
            b"inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// What one `m=` section says, with session-level defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `image` (T.38) and so on.
    pub kind: String,
    /// The RTP port; 0 for a rejected or disabled stream.
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl` and so on.
    pub protocol: String,
    pub formats: Vec<String>,
    /// The media-level `c=` address, else the session-level one; `None` for a host name.
    pub connection: Option<IpAddr>,
    /// The media-level direction attribute, else the session-level one, else sendrecv.
    pub direction: MediaDirection,
    /// From `a=rtcp` (RFC 3605): the port and, when given, the address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// Whether `a=rtcp-mux` (RFC 5761) offers RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// `a=rtpmap` entries: payload type and `encoding/clock[/channels]`.
    pub rtpmap: Vec<(u8, String)>,
}

impl MediaDescription {
    /// Where to send RTP; `None` for port 0, no address, or `0.0.0.0`.
    pub fn rtp_address(&self) -> Option<SocketAddr> {
        let ip = self.connection.filter(|ip| !ip.is_unspecified())?;
        (self.port != 0).then(|| SocketAddr::new(ip, self.port))
    }

    /// Where `a=rtcp` sends RTCP; `None` without one (then it is the RTP port plus one).
    pub fn rtcp_address(&self) -> Option<SocketAddr> {
        let (port, ip) = self.rtcp?;
        let ip = ip.or(self.connection).filter(|ip| !ip.is_unspecified())?;
        (port != 0 && self.port != 0).then(|| SocketAddr::new(ip, port))
    }

    /// Whether the stream is on hold: not sendrecv, or `c=0.0.0.0` (RFC 2543 style).
    pub fn is_hold(&self) -> bool {
        self.direction != MediaDirection::SendRecv
            || self.connection.is_some_and(|ip| ip.is_unspecified())
    }

    fn from_line(media: &MediaLine<'_>, session: &MediaDefaults) -> Self {
        Self {
            kind: media.kind.to_owned(),
            port: media.port,
            protocol: media.protocol.to_owned(),
            formats: media
                .formats
                .iter()
                .map(|format| (*format).to_owned())
                .collect(),
            connection: session.connection,
            direction: session.direction.unwrap_or(MediaDirection::SendRecv),
            rtcp: None,
            rtcp_mux: false,
            rtpmap: Vec::new(),
        }
    }

    /// Applies one media-level line; later lines override earlier ones.
    fn apply(&mut self, line: &Line) {
        if line.kind() == b'c' {
            if let Some(connection) = line.text().and_then(parse_connection) {
                self.connection = connection.address;
            }
            return;
        }
        let Some((name, value)) = line.attribute() else {
            return;
        };
        if let Some(direction) = MediaDirection::from_attribute(name) {
            self.direction = direction;
        }
        let value = value.and_then(|value| std::str::from_utf8(value).ok());
        match (name, value) {
            (b"rtcp", Some(value)) => self.rtcp = parse_rtcp(value).or(self.rtcp),
            (b"rtcp-mux", _) => self.rtcp_mux = true,
            (b"rtpmap", Some(value)) => self.rtpmap.extend(parse_rtpmap(value)),
            _ => {}
        }
    }
}

/// What session-level lines say about every media section.
#[derive(Debug, Default)]
struct MediaDefaults {
    connection: Option<IpAddr>,
    direction: Option<MediaDirection>,
}

/// Who made a session description and which version of it this is: the
/// fields of `o=` that RFC 3264 §8 asks an offerer or answerer to keep the
/// same for a whole session, with the version one higher at each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub version: u64,
}

/// An SDP body, kept line by line as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    lines: Vec<Line>,
}

impl SessionDescription {
    /// Parses a body, checking the syntax of its `v=`, `o=`, `s=`, `c=` and `m=` lines.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let lines = split_lines(body)?;
        validate(&lines)?;
        Ok(Self { lines })
    }

    /// One description per `m=` line, in order.
    pub fn media(&self) -> Vec<MediaDescription> {
        let defaults = self.media_defaults();
        let mut media: Vec<MediaDescription> = Vec::new();
        let media_lines = self.sections().filter(|(section, _)| section.is_some());
        for (_, line) in media_lines {
            if line.kind() == b'm' {
                // Validated at parse time, so every m= line parses.
                if let Some(media_line) = line.text().and_then(parse_media) {
                    media.push(MediaDescription::from_line(&media_line, &defaults));
                }
            } else if let Some(last) = media.last_mut() {
                last.apply(line);
            }
        }
        media
    }

    /// The session-level `c=` address, if there is one and it is not a host name.
    pub fn session_connection(&self) -> Option<IpAddr> {
        self.media_defaults().connection
    }

    /// Points every address and port at callvault, which terminates the media.
    ///
    /// - `o=` and every `c=` take `address` (a session-level `c=` is added if missing);
    /// - stream `i`'s `m=` port becomes `rtp_ports[i]`; a stream with port 0, or with no
    ///   port given, is disabled (port 0) and loses its `a=rtcp`;
    /// - `a=rtcp` takes the RTP port plus one, and `address` if it named one (one that
    ///   does not parse is removed rather than passed on with a stale address);
    /// - ICE attributes go, since callvault's own address is the only candidate.
    ///
    /// A port count in `m=` (`49170/2`) is dropped: callvault relays one pair per stream.
    pub fn anchor(&mut self, address: IpAddr, rtp_ports: &[Option<u16>]) {
        let mut anchored = Vec::with_capacity(self.lines.len() + 1);
        let mut connection_at = None;
        let mut session_connection = false;
        let mut port = 0;
        for (section, line) in self.sections() {
            if let Some(index) = section.filter(|_| line.kind() == b'm') {
                port = anchored_port(line, rtp_ports.get(index).copied().flatten());
            }
            if section.is_none() {
                session_connection |= line.kind() == b'c';
                if b"vosiuep".contains(&line.kind()) {
                    connection_at = Some(anchored.len() + 1);
                }
            }
            anchored.extend(anchor_line(line, section, address, port));
        }
        if !session_connection {
            let at = connection_at.unwrap_or(anchored.len());
            anchored.insert(at, connection_line(address));
        }
        self.lines = anchored;
    }

    /// Narrows stream `stream` to the payload types in `keep`: its `m=` line lists
    /// only those (in their order there), and the `a=rtpmap`, `a=fmtp` and
    /// `a=rtcp-fb` lines of the others go. How an answer that accepts one codec of
    /// an offer is made (RFC 3264 §6.1).
    pub fn keep_formats(&mut self, stream: usize, keep: &[u8]) {
        let kept = |format: &[u8]| {
            std::str::from_utf8(format)
                .ok()
                .and_then(|format| format.parse::<u8>().ok())
                .is_some_and(|pt| keep.contains(&pt))
        };
        let mut narrowed = Vec::with_capacity(self.lines.len());
        for (section, line) in self.sections() {
            if section != Some(stream) {
                narrowed.push(line.clone());
            } else if line.kind() == b'm' {
                narrowed.push(media_line_with_formats(line, &kept));
            } else if format_attribute_of(line).is_none_or(&kept) {
                narrowed.push(line.clone());
            }
        }
        self.lines = narrowed;
    }

    /// The index of the first `m=audio` stream.
    pub fn first_audio_stream(&self) -> Option<usize> {
        self.media()
            .iter()
            .position(|stream| stream.kind.eq_ignore_ascii_case("audio"))
    }

    /// The `o=` line's username, session id and version (RFC 8866 §5.2).
    pub fn origin(&self) -> Option<Origin> {
        let line = self.lines.iter().find(|line| line.kind() == b'o')?;
        let [username, session_id, version, ..] = line.text().and_then(parse_origin)?;
        Some(Origin {
            username: username.to_owned(),
            session_id: session_id.to_owned(),
            version: version.parse().ok()?,
        })
    }

    /// Gives the `o=` line `origin`'s username, session id and version; its
    /// network type and address stay as they are.
    pub fn set_origin(&mut self, origin: &Origin) {
        for line in self.lines.iter_mut().filter(|line| line.kind() == b'o') {
            let Some([_, _, _, network, family, address]) = line.text().and_then(parse_origin)
            else {
                continue;
            };
            let Origin {
                username,
                session_id,
                version,
            } = origin;
            *line = Line(
                format!("o={username} {session_id} {version} {network} {family} {address}").into(),
            );
        }
    }

    /// The description as a body, every line ending in CRLF.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = self.lines.iter().map(|line| line.0.len() + 2).sum();
        let mut body = Vec::with_capacity(len);
        for line in &self.lines {
            body.extend_from_slice(&line.0);
            body.extend_from_slice(b"\r\n");
        }
        body
    }

    /// Each line with the index of its media section (`None`: session level).
    fn sections(&self) -> impl Iterator<Item = (Option<usize>, &Line)> {
        let mut section: Option<usize> = None;
        self.lines.iter().map(move |line| {
            if line.kind() == b'm' {
                section = Some(section.map_or(0, |index| index + 1));
            }
            (section, line)
        })
    }

    fn media_defaults(&self) -> MediaDefaults {
        let mut defaults = MediaDefaults::default();
        let session = self.sections().take_while(|(section, _)| section.is_none());
        for (_, line) in session {
            if let Some(connection) = line.text().filter(|_| line.kind() == b'c') {
                defaults.connection = parse_connection(connection).and_then(|c| c.address);
            }
            if let Some((name, _)) = line.attribute() {
                defaults.direction = MediaDirection::from_attribute(name).or(defaults.direction);
            }
        }
        defaults
    }
}

/// One SDP line without its line end; at least `<type>=`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line(Vec<u8>);

impl Line {
    fn kind(&self) -> u8 {
        self.0.first().copied().unwrap_or_default()
    }

    /// The value after `<type>=`, if it is UTF-8.
    fn text(&self) -> Option<&str> {
        std::str::from_utf8(self.0.get(2..)?).ok()
    }

    /// An `a=` line's name and value (the part after the first colon).
    fn attribute(&self) -> Option<(&[u8], Option<&[u8]>)> {
        let value = self.0.get(2..).filter(|_| self.kind() == b'a')?;
        Some(match value.iter().position(|&byte| byte == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        })
    }
}

fn split_lines(body: &[u8]) -> Result<Vec<Line>, SdpError> {
    let mut lines = Vec::new();
    for text in body.split(|&byte| byte == b'\n') {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        if !is_well_formed(text) {
            return Err(SdpError::MalformedLine {
                line: lines.len() + 1,
            });
        }
        lines.push(Line(text.to_vec()));
    }
    if lines.is_empty() {
        return Err(SdpError::Empty);
    }
    Ok(lines)
}

/// `<lowercase letter>=<text>` where text holds no NUL or CR (RFC 8866 §9).
fn is_well_formed(text: &[u8]) -> bool {
    match text {
        [kind, b'=', value @ ..] => {
            kind.is_ascii_lowercase() && !value.iter().any(|&byte| byte == 0 || byte == b'\r')
        }
        _ => false,
    }
}

fn validate(lines: &[Line]) -> Result<(), SdpError> {
    if lines.first().map(|line| line.0.as_slice()) != Some(b"v=0") {
        return Err(SdpError::UnsupportedVersion);
    }
    let session_end = lines
        .iter()
        .position(|line| line.kind() == b'm')
        .unwrap_or(lines.len());
    for kind in [b'o', b's'] {
        if !lines[..session_end].iter().any(|line| line.kind() == kind) {
            return Err(SdpError::MissingLine(char::from(kind)));
        }
    }
    for (index, line) in lines.iter().enumerate() {
        if !is_valid(line) {
            return Err(SdpError::InvalidLine {
                line: index + 1,
                kind: char::from(line.kind()),
            });
        }
    }
    Ok(())
}

/// Whether a line of a kind callvault reads or rewrites has the right syntax.
fn is_valid(line: &Line) -> bool {
    let text = line.text();
    match line.kind() {
        b'o' => text.and_then(parse_origin).is_some(),
        b'c' => text.and_then(parse_connection).is_some(),
        b'm' => text.and_then(parse_media).is_some(),
        _ => true,
    }
}

/// The six fields of `o=` (RFC 8866 §5.2).
fn parse_origin(text: &str) -> Option<[&str; 6]> {
    let mut fields = text.split_ascii_whitespace();
    let origin = std::array::from_fn(|_| fields.next().unwrap_or_default());
    let complete = origin.iter().all(|field| !field.is_empty()) && fields.next().is_none();
    complete.then_some(origin)
}

/// A `c=` line's address: `None` for a host name, which callvault does not resolve.
#[derive(Debug, Clone, Copy)]
struct Connection {
    address: Option<IpAddr>,
}

/// `IN IP4|IP6 <address>[/<ttl>][/<count>]` (RFC 8866 §5.7).
fn parse_connection(text: &str) -> Option<Connection> {
    let (family, address) = parse_address_fields(text)?;
    // Multicast addresses carry a TTL and a count; callvault only relays unicast.
    let host = address.split('/').next().unwrap_or_default();
    let address = match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_ipv4() == (family == "IP4") => Some(ip),
        Ok(_) => return None,
        Err(_) if is_host_name(host) => None,
        Err(_) => return None,
    };
    Some(Connection { address })
}

/// `IN IP4|IP6 <address>`: the address type and the address text.
fn parse_address_fields(text: &str) -> Option<(&str, &str)> {
    let mut fields = text.split_ascii_whitespace();
    let (network, family, address) = (fields.next()?, fields.next()?, fields.next()?);
    let known = network == "IN" && matches!(family, "IP4" | "IP6");
    (known && fields.next().is_none()).then_some((family, address))
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-')
}

/// The fields of an `m=` line (RFC 8866 §5.14).
#[derive(Debug)]
struct MediaLine<'a> {
    kind: &'a str,
    port: u16,
    protocol: &'a str,
    formats: Vec<&'a str>,
}

/// `<media> <port>[/<count>] <proto> <fmt> ...`; a disabled stream may list no format.
fn parse_media(text: &str) -> Option<MediaLine<'_>> {
    let mut fields = text.split_ascii_whitespace();
    let (kind, port, protocol) = (fields.next()?, fields.next()?, fields.next()?);
    let (port, count) = match port.split_once('/') {
        Some((port, count)) => (port, Some(count)),
        None => (port, None),
    };
    let port = port.parse::<u16>().ok()?;
    if count.is_some_and(|count| count.parse::<u16>().is_err()) {
        return None;
    }
    let formats: Vec<&str> = fields.collect();
    (formats.len() + usize::from(port == 0) > 0).then_some(MediaLine {
        kind,
        port,
        protocol,
        formats,
    })
}

/// `a=rtcp:<port> [IN IP4|IP6 <address>]` (RFC 3605).
fn parse_rtcp(value: &str) -> Option<(u16, Option<IpAddr>)> {
    let (port, address) = match value.split_once(' ') {
        Some((port, address)) => (port, Some(address)),
        None => (value, None),
    };
    let port = port.trim().parse().ok()?;
    let Some(address) = address else {
        return Some((port, None));
    };
    let (_, host) = parse_address_fields(address)?;
    Some((port, host.parse().ok()))
}

/// `a=rtpmap:<payload type> <encoding>/<clock>[/<channels>]`.
fn parse_rtpmap(value: &str) -> Option<(u8, String)> {
    let (payload_type, encoding) = value.split_once(' ')?;
    let payload_type = payload_type.parse::<u8>().ok().filter(|&pt| pt < 128)?;
    Some((payload_type, encoding.trim().to_owned()))
}

/// The port stream's `m=` gets: 0 stays 0, and a stream without a port is disabled.
fn anchored_port(media: &Line, port: Option<u16>) -> u16 {
    let offered = media
        .text()
        .and_then(parse_media)
        .map_or(0, |media| media.port);
    if offered == 0 {
        return 0;
    }
    port.unwrap_or(0)
}

/// The line that replaces `line` in an anchored description, if any.
/// `m=<media> <port> <proto>` followed by only the formats `kept` accepts.
///
/// Fields are split as [`parse_media`] splits them, on any run of whitespace, so
/// a format that parses there is found here too.
fn media_line_with_formats(line: &Line, kept: &impl Fn(&[u8]) -> bool) -> Line {
    let Some(text) = line.text() else {
        return line.clone();
    };
    let mut fields = text.split_ascii_whitespace();
    let head: Vec<&str> = fields.by_ref().take(3).collect();
    let mut narrowed = format!("m={}", head.join(" "));
    for format in fields.filter(|format| kept(format.as_bytes())) {
        narrowed.push(' ');
        narrowed.push_str(format);
    }
    Line(narrowed.into())
}

/// The payload type an `a=rtpmap`, `a=fmtp` or `a=rtcp-fb` line is about.
fn format_attribute_of(line: &Line) -> Option<&[u8]> {
    let (name, value) = line.attribute()?;
    if !matches!(name, b"rtpmap" | b"fmtp" | b"rtcp-fb") {
        return None;
    }
    value?.split(|&b| b == b' ').next()
}

fn anchor_line(line: &Line, section: Option<usize>, address: IpAddr, port: u16) -> Option<Line> {
    match line.kind() {
        b'o' => Some(
            line.text()
                .and_then(parse_origin)
                .map_or_else(|| line.clone(), |origin| origin_line(origin, address)),
        ),
        b'c' => Some(connection_line(address)),
        b'm' => Some(media_line(line, port)),
        b'a' => anchor_attribute(line, section, address, port),
        _ => Some(line.clone()),
    }
}

fn anchor_attribute(
    line: &Line,
    section: Option<usize>,
    address: IpAddr,
    port: u16,
) -> Option<Line> {
    let (name, value) = line.attribute()?;
    if is_ice_attribute(name) {
        return None;
    }
    if name != b"rtcp" || section.is_none() {
        return Some(line.clone());
    }
    let (_, rtcp_address) = value
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(parse_rtcp)?;
    let rtcp_port = port.checked_add(1).filter(|_| port != 0)?;
    Some(match rtcp_address {
        Some(_) => Line(format!("a=rtcp:{rtcp_port} IN {} {address}", family(address)).into()),
        None => Line(format!("a=rtcp:{rtcp_port}").into()),
    })
}

/// ICE (RFC 8839) attributes: meaningless once callvault terminates the media.
fn is_ice_attribute(name: &[u8]) -> bool {
    name.starts_with(b"ice-")
        || matches!(
            name,
            b"candidate" | b"remote-candidates" | b"end-of-candidates"
        )
}

fn origin_line(origin: [&str; 6], address: IpAddr) -> Line {
    let [username, session_id, version, network, _, _] = origin;
    let family = family(address);
    Line(format!("o={username} {session_id} {version} {network} {family} {address}").into())
}

fn connection_line(address: IpAddr) -> Line {
    Line(format!("c=IN {} {address}", family(address)).into())
}

/// The `m=` line with its port replaced; other fields as they were.
fn media_line(line: &Line, port: u16) -> Line {
    let Some(media) = line.text().and_then(parse_media) else {
        return line.clone();
    };
    let mut text = format!("m={} {port} {}", media.kind, media.protocol);
    for format in media.formats {
        text.push(' ');
        text.push_str(format);
    }
    Line(text.into())
}

fn family(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::parse(text.as_bytes()).unwrap()
    }

    fn anchored(text: &str, address: &str, ports: &[Option<u16>]) -> String {
        let mut description = parse(text);
        description.anchor(address.parse().unwrap(), ports);
        String::from_utf8(description.to_bytes()).unwrap()
    }

    const ASTERISK_OFFER: &str = "v=0
o=- 1680000000 1680000000 IN IP4 192.168.1.10
s=Asterisk
c=IN IP4 192.168.1.10
t=0 0
m=audio 10000 RTP/AVP 0 8 9 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
";

    #[test]
    fn origin_is_read_and_replaced_keeping_network_and_address() {
        let text = "v=0\r\no=bob 2890844527 2890844528 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
        let mut description = SessionDescription::parse(text.as_bytes()).unwrap();
        let origin = description.origin().unwrap();
        assert_eq!(origin.username, "bob");
        assert_eq!(origin.session_id, "2890844527");
        assert_eq!(origin.version, 2_890_844_528);
        description.set_origin(&Origin {
            username: "-".to_owned(),
            session_id: "7".to_owned(),
            version: 9,
        });
        let output = String::from_utf8(description.to_bytes()).unwrap();
        assert_eq!(output, text.replace("bob 2890844527 2890844528", "- 7 9"));
    }

    #[test]
    fn keep_formats_narrows_one_stream_to_the_chosen_codec_and_event() {
        let mut description = parse(ASTERISK_OFFER);
        description.keep_formats(0, &[8, 101]);
        let text = String::from_utf8(description.to_bytes()).unwrap();
        assert!(text.contains("m=audio 10000 RTP/AVP 8 101\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:8 PCMA/8000") && text.contains("a=fmtp:101 0-16"));
        assert!(!text.contains("PCMU") && !text.contains("G722"), "{text}");
        assert!(
            text.contains("a=ptime:20") && text.contains("a=sendrecv"),
            "{text}"
        );
        let media = description.media();
        assert_eq!(media[0].formats, ["8", "101"]);
    }

    /// Found by the `sdp` fuzz target: a tab after the last format hid it from
    /// `keep_formats`, which left an `m=` line without formats that did not parse.
    #[test]
    fn keep_formats_finds_formats_separated_by_tabs_and_keeps_a_valid_media_line() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
                    m=audio  25000 RTP/AVP\t0 120\t\r\na=rtpmap:120 telephone-event/8000\r\n";
        let mut description = parse(text);
        description.keep_formats(0, &[120]);
        let output = description.to_bytes();
        let again = SessionDescription::parse(&output).expect("the narrowed body parses");
        assert_eq!(again.media()[0].formats, ["120"]);
        assert!(String::from_utf8(output)
            .unwrap()
            .contains("m=audio 25000 RTP/AVP 120\r\n"));
    }

    const HOLD_ANSWER: &str = "v=0
o=CiscoSystemsSIP-GW-UserAgent 4425 1263 IN IP4 198.51.100.7
s=SIP Call
c=IN IP4 198.51.100.7
t=0 0
m=audio 18456 RTP/AVP 8 101
c=IN IP4 198.51.100.8
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendonly
a=ptime:20
";

    const IPV6_ICE: &str = "v=0
o=bob 2890844527 2890844528 IN IP6 2001:db8::10
s=-
c=IN IP6 2001:db8::10
t=0 0
a=ice-options:trickle
a=ice-ufrag:8hhY
a=ice-pwd:asd88fgpdd777uzjYhagZg
m=audio 49170 RTP/AVP 0 101
a=rtcp:49171 IN IP6 2001:db8::10
a=candidate:1 1 UDP 2130706431 2001:db8::10 49170 typ host
a=candidate:1 2 UDP 2130706430 2001:db8::10 49171 typ host
a=end-of-candidates
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=x-vendor-thing:keep me  exactly
";

    const SRTP_OFFER: &str = "v=0
o=- 3918204543 3918204543 IN IP4 192.168.1.20
s=3CX Phone System
c=IN IP4 192.168.1.20
t=0 0
m=audio 7078 RTP/SAVP 9 0 101
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32
a=sendrecv
";

    const T38_REINVITE: &str = "v=0
o=FreeSWITCH 1700000000 1700000001 IN IP4 198.51.100.20
s=FreeSWITCH
c=IN IP4 198.51.100.20
t=0 0
m=audio 0 RTP/AVP 8
a=rtpmap:8 PCMA/8000
m=image 17002 udptl t38
a=T38FaxVersion:0
a=T38MaxBitRate:14400
a=T38FaxRateManagement:transferredTCF
a=T38FaxMaxBuffer:2000
a=T38FaxMaxDatagram:400
a=T38FaxUdpEC:t38UDPRedundancy
";

    const TWO_STREAMS_MEDIA_CONNECTIONS: &str = "v=0
o=user 1 1 IN IP4 10.0.0.5
s=call
t=0 0
m=audio 4000 RTP/AVP 0
c=IN IP4 10.0.0.5
a=rtcp:4001
m=video 4002/2 RTP/AVP 96
c=IN IP4 10.0.0.6
a=rtpmap:96 H264/90000
a=rtcp-mux
";

    const ALL: [&str; 6] = [
        ASTERISK_OFFER,
        HOLD_ANSWER,
        IPV6_ICE,
        SRTP_OFFER,
        T38_REINVITE,
        TWO_STREAMS_MEDIA_CONNECTIONS,
    ];

    #[test]
    fn written_examples_round_trip_with_crlf() {
        for text in ALL {
            let description = SessionDescription::parse(&crlf(text)).unwrap();
            assert_eq!(description.to_bytes(), crlf(text), "{text}");
        }
    }

    #[test]
    fn lf_line_ends_come_out_as_crlf() {
        for text in ALL {
            assert_eq!(parse(text).to_bytes(), crlf(text));
        }
    }

    #[test]
    fn asterisk_offer_reads_codecs_and_address() {
        let description = parse(ASTERISK_OFFER);
        let media = description.media();
        assert_eq!(media.len(), 1);
        let audio = &media[0];
        assert_eq!(audio.kind, "audio");
        assert_eq!(audio.protocol, "RTP/AVP");
        assert_eq!(audio.formats, ["0", "8", "9", "101"]);
        assert_eq!(audio.direction, MediaDirection::SendRecv);
        assert_eq!(
            audio.rtp_address(),
            Some("192.168.1.10:10000".parse().unwrap())
        );
        assert_eq!(audio.rtcp_address(), None);
        assert!(!audio.is_hold());
        let rtpmap: Vec<(u8, &str)> = audio
            .rtpmap
            .iter()
            .map(|(pt, e)| (*pt, e.as_str()))
            .collect();
        assert_eq!(
            rtpmap,
            [
                (0, "PCMU/8000"),
                (8, "PCMA/8000"),
                (9, "G722/8000"),
                (101, "telephone-event/8000")
            ]
        );
        assert_eq!(
            description.session_connection(),
            Some("192.168.1.10".parse().unwrap())
        );
    }

    #[test]
    fn asterisk_offer_anchors_to_exact_bytes() {
        let expected = ASTERISK_OFFER
            .replace("IN IP4 192.168.1.10", "IN IP4 203.0.113.5")
            .replace("m=audio 10000", "m=audio 30000");
        let output = anchored(ASTERISK_OFFER, "203.0.113.5", &[Some(30000)]);
        assert_eq!(output, expected.replace('\n', "\r\n"));
    }

    #[test]
    fn sendonly_answer_is_hold_with_media_level_address() {
        let media = parse(HOLD_ANSWER).media();
        assert_eq!(media[0].direction, MediaDirection::SendOnly);
        assert!(media[0].is_hold());
        assert_eq!(
            media[0].rtp_address(),
            Some("198.51.100.8:18456".parse().unwrap())
        );
    }

    #[test]
    fn session_level_direction_applies_unless_overridden() {
        let text = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\na=inactive\n\
                    m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\na=recvonly\n";
        let media = parse(text).media();
        assert_eq!(media[0].direction, MediaDirection::Inactive);
        assert_eq!(media[1].direction, MediaDirection::RecvOnly);
    }

    #[test]
    fn unspecified_connection_is_rfc_2543_hold() {
        let text = "v=0\no=- 1 2 IN IP4 192.0.2.1\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n\
                    m=audio 4000 RTP/AVP 0\n";
        let media = parse(text).media();
        assert!(media[0].is_hold());
        assert_eq!(media[0].direction, MediaDirection::SendRecv);
        assert_eq!(media[0].rtp_address(), None);
    }

    #[test]
    fn ipv6_offer_anchors_and_loses_ice() {
        let media = parse(IPV6_ICE).media();
        assert_eq!(
            media[0].rtcp,
            Some((49171, Some("2001:db8::10".parse().unwrap())))
        );
        assert_eq!(
            media[0].rtcp_address(),
            Some("[2001:db8::10]:49171".parse().unwrap())
        );

        let expected = "v=0
o=bob 2890844527 2890844528 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 30002 RTP/AVP 0 101
a=rtcp:30003 IN IP6 2001:db8::1
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=x-vendor-thing:keep me  exactly
";
        let output = anchored(IPV6_ICE, "2001:db8::1", &[Some(30002)]);
        assert_eq!(output, expected.replace('\n', "\r\n"));
    }

    #[test]
    fn ipv6_offer_anchored_to_ipv4_changes_address_types() {
        let output = anchored(IPV6_ICE, "203.0.113.5", &[Some(30002)]);
        assert!(output.contains("o=bob 2890844527 2890844528 IN IP4 203.0.113.5\r\n"));
        assert!(output.contains("c=IN IP4 203.0.113.5\r\n"));
        assert!(output.contains("a=rtcp:30003 IN IP4 203.0.113.5\r\n"));
        assert!(!output.contains("2001:db8"));
    }

    #[test]
    fn crypto_line_survives_anchoring() {
        let output = anchored(SRTP_OFFER, "203.0.113.5", &[Some(30004)]);
        let crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 \
                      inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n";
        assert!(output.contains(crypto));
        assert!(output.contains("m=audio 30004 RTP/SAVP 9 0 101\r\n"));
    }

    #[test]
    fn t38_stream_is_read_and_disabled_audio_stays_disabled() {
        let media = parse(T38_REINVITE).media();
        assert_eq!(media.len(), 2);
        assert_eq!((media[0].port, media[0].rtp_address()), (0, None));
        assert_eq!(media[1].kind, "image");
        assert_eq!(media[1].protocol, "udptl");
        assert_eq!(media[1].formats, ["t38"]);

        let expected = T38_REINVITE
            .replace("IN IP4 198.51.100.20", "IN IP4 203.0.113.5")
            .replace("m=image 17002", "m=image 30010");
        let output = anchored(T38_REINVITE, "203.0.113.5", &[Some(30008), Some(30010)]);
        assert_eq!(output, expected.replace('\n', "\r\n"));
    }

    #[test]
    fn two_streams_anchor_with_added_session_connection() {
        let media = parse(TWO_STREAMS_MEDIA_CONNECTIONS).media();
        assert_eq!(
            media[0].rtp_address(),
            Some("10.0.0.5:4000".parse().unwrap())
        );
        assert_eq!(
            media[0].rtcp_address(),
            Some("10.0.0.5:4001".parse().unwrap())
        );
        assert_eq!(
            media[1].rtp_address(),
            Some("10.0.0.6:4002".parse().unwrap())
        );
        assert!(media[1].rtcp_mux);

        let expected = "v=0
o=user 1 1 IN IP4 203.0.113.5
s=call
c=IN IP4 203.0.113.5
t=0 0
m=audio 30000 RTP/AVP 0
c=IN IP4 203.0.113.5
a=rtcp:30001
m=video 0 RTP/AVP 96
c=IN IP4 203.0.113.5
a=rtpmap:96 H264/90000
a=rtcp-mux
";
        let output = anchored(TWO_STREAMS_MEDIA_CONNECTIONS, "203.0.113.5", &[Some(30000)]);
        assert_eq!(output, expected.replace('\n', "\r\n"));
    }

    #[test]
    fn anchoring_twice_gives_the_same_bytes() {
        for text in ALL {
            let once = anchored(text, "203.0.113.5", &[Some(30000), Some(30002)]);
            let twice = anchored(&once, "203.0.113.5", &[Some(30000), Some(30002)]);
            assert_eq!(once, twice);
        }
    }

    #[test]
    fn garbage_is_rejected() {
        let cases: [(&[u8], SdpError); 12] = [
            (b"", SdpError::Empty),
            (b"\r\n\r\n", SdpError::Empty),
            (b"hello world", SdpError::MalformedLine { line: 1 }),
            (b"V=0\r\n", SdpError::MalformedLine { line: 1 }),
            (
                b"v=0\r\no=- 1 1 IN IP4 a\0b\r\n",
                SdpError::MalformedLine { line: 2 },
            ),
            (
                b"v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n",
                SdpError::UnsupportedVersion,
            ),
            (b"s=-\r\nv=0\r\n", SdpError::UnsupportedVersion),
            (b"v=0\r\ns=-\r\n", SdpError::MissingLine('o')),
            (
                b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\ns=-\r\n",
                SdpError::MissingLine('s'),
            ),
            (
                b"v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n",
                SdpError::InvalidLine { line: 2, kind: 'o' },
            ),
            (
                b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 2001:db8::1\r\n",
                SdpError::InvalidLine { line: 4, kind: 'c' },
            ),
            (
                b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n",
                SdpError::InvalidLine { line: 4, kind: 'm' },
            ),
        ];
        for (body, error) in cases {
            assert_eq!(SessionDescription::parse(body), Err(error), "{body:?}");
        }
    }

    #[test]
    fn media_lines_need_a_format_unless_disabled() {
        let head = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n";
        assert!(
            SessionDescription::parse(format!("{head}m=audio 4000 RTP/AVP\n").as_bytes()).is_err()
        );
        assert!(SessionDescription::parse(format!("{head}m=audio 0 RTP/AVP\n").as_bytes()).is_ok());
    }

    #[test]
    fn host_name_connection_is_accepted_but_not_an_address() {
        let text = "v=0\no=- 1 1 IN IP4 pbx.example.net\ns=-\nc=IN IP4 pbx.example.net\n\
                    t=0 0\nm=audio 4000 RTP/AVP 0\n";
        let description = parse(text);
        assert_eq!(description.session_connection(), None);
        assert_eq!(description.media()[0].rtp_address(), None);
    }

    #[test]
    fn non_utf8_attribute_is_kept_byte_for_byte() {
        let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                     m=audio 4000 RTP/AVP 0\r\na=x-label:caf\xe9\r\n";
        let mut description = SessionDescription::parse(body).unwrap();
        assert_eq!(description.to_bytes(), body);
        description.anchor("203.0.113.5".parse().unwrap(), &[Some(30000)]);
        assert!(description.to_bytes().ends_with(b"a=x-label:caf\xe9\r\n"));
    }

    /// The SDP bodies of the SIP messages in the pcapng captures under fixtures/pcap.
    fn captured_bodies() -> Vec<Vec<u8>> {
        let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/pcap");
        let mut bodies = Vec::new();
        for entry in std::fs::read_dir(directory).unwrap() {
            let capture = std::fs::read(entry.unwrap().path()).unwrap();
            for packet in pcapng_packets(&capture) {
                let start = packet.windows(5).position(|window| window == b"v=0\r\n");
                if let Some(start) = start {
                    bodies.push(packet[start..].to_vec());
                }
            }
        }
        bodies
    }

    /// The packet data of each Enhanced Packet Block of a little-endian pcapng file.
    fn pcapng_packets(capture: &[u8]) -> Vec<&[u8]> {
        let word = |at: usize| u32::from_le_bytes(capture[at..at + 4].try_into().unwrap());
        assert_eq!(word(8), 0x1a2b_3c4d, "little-endian pcapng");
        let mut packets = Vec::new();
        let mut at = 0;
        while at + 8 <= capture.len() {
            let (kind, len) = (word(at), word(at + 4) as usize);
            if kind == 6 {
                let captured = word(at + 20) as usize;
                packets.push(&capture[at + 28..at + 28 + captured]);
            }
            at += len;
        }
        packets
    }

    #[test]
    fn captured_bodies_round_trip() {
        let bodies = captured_bodies();
        assert!(bodies.len() >= 10, "found {} bodies", bodies.len());
        for body in bodies {
            let description = SessionDescription::parse(&body).unwrap();
            assert_eq!(description.to_bytes(), body);
            assert!(description.media()[0].rtp_address().is_some());
        }
    }

    #[test]
    fn captured_pjsua_body_anchors_rtcp_attribute() {
        let body = captured_bodies()
            .into_iter()
            .find(|body| body.windows(7).any(|window| window == b"a=rtcp:"))
            .unwrap();
        let mut description = SessionDescription::parse(&body).unwrap();
        description.anchor("203.0.113.5".parse().unwrap(), &[Some(30000)]);
        let output = String::from_utf8(description.to_bytes()).unwrap();
        assert!(output.contains("a=rtcp:30001 IN IP4 203.0.113.5\r\n"));
        assert!(!output.contains("127.0.0.1"));
    }

    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// Lines of the kinds SDP bodies hold, valid or nearly so.
        fn line() -> impl Strategy<Value = String> {
            let address = prop_oneof![
                Just("192.0.2.1".to_owned()),
                Just("0.0.0.0".to_owned()),
                Just("2001:db8::1".to_owned()),
                "[a-z.]{1,12}",
            ];
            prop_oneof![
                address.clone().prop_map(|a| format!("c=IN IP4 {a}")),
                address.clone().prop_map(|a| format!("c=IN IP6 {a}")),
                address.prop_map(|a| format!("o=- 1 2 IN IP4 {a}")),
                (any::<u16>(), "[0-9 ]{0,8}").prop_map(|(p, f)| format!("m=audio {p} RTP/AVP{f}")),
                any::<u16>().prop_map(|p| format!("a=rtcp:{p}")),
                any::<u16>().prop_map(|p| format!("a=rtcp:{p} IN IP4 192.0.2.9")),
                "a=(sendonly|recvonly|inactive|sendrecv|rtcp-mux|candidate:1 1 UDP 1 h 1 typ host)",
                "a=rtpmap:[0-9]{1,3} [A-Za-z0-9/]{0,12}",
                "[a-z]=[ -~]{0,20}",
                "s=[ -~]{0,10}",
            ]
        }

        fn body() -> impl Strategy<Value = String> {
            (proptest::collection::vec(line(), 0..12), any::<bool>()).prop_map(|(lines, lf)| {
                let end = if lf { "\n" } else { "\r\n" };
                let mut body = format!("v=0{end}o=- 1 1 IN IP4 192.0.2.1{end}s=-{end}");
                for line in lines {
                    body.push_str(&line);
                    body.push_str(end);
                }
                body
            })
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
                if let Ok(mut description) = SessionDescription::parse(&bytes) {
                    description.media();
                    description.anchor("203.0.113.5".parse().unwrap(), &[Some(30000)]);
                }
            }

            #[test]
            fn parsed_bodies_round_trip_and_anchor_to_valid_sdp(body in body()) {
                let Ok(mut description) = SessionDescription::parse(body.as_bytes()) else {
                    return Ok(());
                };
                let crlf_body = body.replace("\r\n", "\n").replace('\n', "\r\n");
                prop_assert_eq!(description.to_bytes(), crlf_body.into_bytes());
                let streams = description.media().len();
                description.anchor("203.0.113.5".parse().unwrap(), &vec![Some(30000); streams]);
                let anchored = SessionDescription::parse(&description.to_bytes()).unwrap();
                for media in anchored.media() {
                    prop_assert!(media.port == 0 || media.port == 30000);
                    let ip = "203.0.113.5".parse().ok();
                    prop_assert!(media.connection == ip);
                }
            }
        }
    }
}
