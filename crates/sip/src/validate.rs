//! What a user agent checks after parsing, before a message reaches a transaction.
//!
//! RFC 3261 §8.2 has a UAS answer a request it cannot process with a specific status:
//! 400 for a malformed one, 416, 420, 501 and so on. [`receive`] turns received bytes
//! into one of three outcomes: a message to process, a response to send back, or
//! nothing at all (a broken response, an ACK, or a request without a Via to answer to).

use crate::header::{CSeq, NameAddr, Via};
use crate::message::{Header, Headers, Message, Method, Request, Response};
use crate::parse::{lenient_request_head, parse};
use crate::uri::Uri;
use crate::ParseError;

/// Option tags callvault supports in `Require` (RFC 3262, 4028, 3891, 4488).
pub const SUPPORTED_OPTION_TAGS: &[&str] = &["100rel", "timer", "replaces", "norefersub"];

/// The methods callvault relays, as listed in `Allow`.
pub const ALLOWED_METHODS: &str =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, PRACK, UPDATE, INFO, REFER, NOTIFY, \
     SUBSCRIBE, MESSAGE, PUBLISH";

/// Headers a request or response may carry at most once (RFC 3261 §7.3, §20).
const SINGLE_VALUED: &[&str] = &[
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Type",
    "Expires",
    "Date",
];

/// Methods whose body callvault must read as a session description.
const SDP_METHODS: &[Method] = &[Method::Invite, Method::Update, Method::Prack, Method::Ack];

/// Why a request is refused: the status line of the response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    /// A header the response must carry: `Unsupported` on 420, `Accept` on 415.
    pub header: Option<Header>,
}

impl Rejection {
    fn new(status: u16, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            header: None,
        }
    }

    fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.header = Some(Header {
            name: name.to_owned(),
            value: value.into(),
        });
        self
    }

    fn bad_request() -> Self {
        Self::new(400, "Bad Request")
    }

    /// The response to `request`; the caller adds a To tag (RFC 3261 §8.2.6.2).
    pub fn response(&self, request: &Request) -> Response {
        self.response_to(&request.headers)
    }

    fn response_to(&self, request_headers: &Headers) -> Response {
        let mut response = Response::answering(request_headers, self.status, self.reason);
        if let Some(header) = &self.header {
            response
                .headers
                .push(header.name.clone(), header.value.clone());
        }
        response
    }
}

/// What the transport does with one received message.
#[derive(Debug)]
pub enum Disposition {
    /// Well formed: hand it to the transaction layer.
    Accept(Message),
    /// A request refused: send this response back (adding a To tag) and stop there.
    Answer(Response),
    /// Drop it silently.
    Discard(Discard),
}

/// Why a message was dropped without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("unparseable message and no request head to answer")]
    Unparseable(#[source] ParseError),
    #[error("malformed response")]
    InvalidResponse(#[source] ParseError),
    #[error("request refused with {status} but it has no Via or is an ACK")]
    Unanswerable { status: u16 },
}

/// Parses and checks one message from a datagram or a stream frame.
pub fn receive(bytes: &[u8]) -> Disposition {
    match parse(bytes) {
        Ok(message) => check(message),
        Err(error) => match answer_unparseable(bytes, &error) {
            Some(response) => Disposition::Answer(response),
            None => Disposition::Discard(Discard::Unparseable(error)),
        },
    }
}

/// Checks a parsed message, deciding between accepting, answering and dropping it.
pub fn check(message: Message) -> Disposition {
    match message {
        Message::Request(request) => match validate_request(&request) {
            Ok(()) => Disposition::Accept(Message::Request(request)),
            Err(rejection) => refuse(&request.method, &request.headers, &rejection),
        },
        Message::Response(response) => match validate_response(&response) {
            Ok(()) => Disposition::Accept(Message::Response(response)),
            Err(error) => {
                tracing::debug!(%error, status = response.status, "malformed response dropped");
                Disposition::Discard(Discard::InvalidResponse(error))
            }
        },
    }
}

/// A request that cannot be answered (no Via, or an ACK) is dropped instead.
fn refuse(method: &Method, headers: &Headers, rejection: &Rejection) -> Disposition {
    let status = rejection.status;
    let answerable = *method != Method::Ack && headers.get("Via").is_some_and(|v| !v.is_empty());
    tracing::debug!(status, %method, answerable, "request refused");
    match answerable {
        true => Disposition::Answer(rejection.response_to(headers)),
        false => Disposition::Discard(Discard::Unanswerable { status }),
    }
}

/// A 400, or 505 for an unknown SIP version, to a request that did not parse.
fn answer_unparseable(bytes: &[u8], error: &ParseError) -> Option<Response> {
    let (start_line, headers) = lenient_request_head(bytes)?;
    let method = Method::parse(start_line.split(' ').next()?).ok()?;
    let rejection = match error {
        ParseError::UnsupportedVersion => Rejection::new(505, "Version Not Supported"),
        _ => Rejection::bad_request(),
    };
    tracing::debug!(%error, "unparseable request");
    match refuse(&method, &headers, &rejection) {
        Disposition::Answer(response) => Some(response),
        _ => None,
    }
}

/// The checks of RFC 3261 §8.2, in the order a UAS makes them.
///
/// A B2BUA forwards what it accepts, so a Max-Forwards of 0 is refused with 483 (RFC
/// 3261 §16.3) except on OPTIONS, which callvault answers itself.
pub fn validate_request(request: &Request) -> Result<(), Rejection> {
    check_request_headers(request).map_err(|error| {
        tracing::debug!(%error, "malformed request header");
        Rejection::bad_request()
    })?;
    check_request_uri(request)?;
    check_method(request)?;
    check_cseq_method(request)?;
    check_max_forwards(request)?;
    check_require(request)?;
    check_body(request)
}

/// A response needs what a client transaction matches on (RFC 3261 §8.1.3).
pub fn validate_response(response: &Response) -> Result<(), ParseError> {
    let headers = &response.headers;
    check_single_valued(headers)?;
    for via in headers.get_all("Via") {
        Via::parse(via)?;
    }
    headers.top_via()?;
    headers.cseq()?;
    headers.call_id()?;
    headers.from()?;
    headers.to()?;
    Ok(())
}

fn check_request_headers(request: &Request) -> Result<(), ParseError> {
    let headers = &request.headers;
    check_single_valued(headers)?;
    check_vias(headers)?;
    check_address(headers.from()?)?;
    check_address(headers.to()?)?;
    headers.call_id()?;
    headers.cseq()?;
    headers.max_forwards()?;
    for name in ["Contact", "Route", "Record-Route"] {
        for value in headers.get_all(name) {
            let address = NameAddr::parse(value)?;
            if address.uri != "*" {
                check_address(address)?;
            }
        }
    }
    check_expires(headers)?;
    check_date(headers)
}

fn check_single_valued(headers: &Headers) -> Result<(), ParseError> {
    match SINGLE_VALUED.iter().find(|name| headers.count(name) > 1) {
        Some(name) => Err(ParseError::DuplicateHeader(name)),
        None => Ok(()),
    }
}

/// Every Via parses; a branch that is only the RFC 3261 magic cookie is no key at all.
fn check_vias(headers: &Headers) -> Result<(), ParseError> {
    for value in headers.get_all("Via") {
        Via::parse(value)?;
    }
    let top = headers.top_via()?;
    match top.branch() {
        Some(branch) if branch.eq_ignore_ascii_case("z9hG4bK") => {
            Err(ParseError::InvalidHeader("Via"))
        }
        _ => Ok(()),
    }
}

/// The URI of From, To, Contact and Route must parse; any scheme is allowed there.
fn check_address(address: NameAddr) -> Result<(), ParseError> {
    if address.uri == "*" {
        return Err(ParseError::InvalidNameAddr);
    }
    Uri::parse(&address.uri).map(|_| ())
}

fn check_expires(headers: &Headers) -> Result<(), ParseError> {
    match headers.get("Expires").map(str::trim) {
        Some(value) if value.parse::<u32>().is_err() || value.starts_with('+') => {
            Err(ParseError::InvalidHeader("Expires"))
        }
        _ => Ok(()),
    }
}

/// `Date` is an RFC 1123 date in GMT (RFC 3261 §20.17): `Sat, 13 Nov 2010 23:29:00 GMT`.
fn check_date(headers: &Headers) -> Result<(), ParseError> {
    let Some(date) = headers.get("Date") else {
        return Ok(());
    };
    match is_sip_date(date) {
        true => Ok(()),
        false => Err(ParseError::InvalidHeader("Date")),
    }
}

fn is_sip_date(date: &str) -> bool {
    const DAYS: &[&str] = &["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"];
    const MONTHS: &[&str] = &[
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = date.split_whitespace().collect();
    let [day, dd, month, yyyy, time, "GMT"] = parts[..] else {
        return false;
    };
    let clock: Vec<&str> = time.split(':').collect();
    DAYS.contains(&day)
        && digits(dd, 2)
        && MONTHS.contains(&month)
        && digits(yyyy, 4)
        && clock.len() == 3
        && clock.iter().all(|part| digits(part, 2))
}

/// sip, sips and tel are served; another scheme is 416, a broken SIP URI 400.
fn check_request_uri(request: &Request) -> Result<(), Rejection> {
    match request.request_uri() {
        Ok(Uri::Sip(uri)) if uri.headers().is_some() => Err(Rejection::bad_request()),
        Ok(Uri::Sip(_) | Uri::Tel(_)) => Ok(()),
        Ok(Uri::Other(_)) => Err(Rejection::new(416, "Unsupported URI Scheme")),
        Err(_) => Err(Rejection::bad_request()),
    }
}

/// An extension method cannot be relayed without knowing its semantics: 501.
fn check_method(request: &Request) -> Result<(), Rejection> {
    match request.method {
        Method::Extension(_) => {
            Err(Rejection::new(501, "Not Implemented").with_header("Allow", ALLOWED_METHODS))
        }
        _ => Ok(()),
    }
}

fn check_cseq_method(request: &Request) -> Result<(), Rejection> {
    match request.headers.cseq() {
        Ok(CSeq { method, .. }) if method == request.method => Ok(()),
        _ => Err(Rejection::bad_request()),
    }
}

fn check_max_forwards(request: &Request) -> Result<(), Rejection> {
    match request.headers.max_forwards() {
        Ok(Some(0)) if request.method != Method::Options => {
            Err(Rejection::new(483, "Too Many Hops"))
        }
        _ => Ok(()),
    }
}

/// Unknown option tags in `Require` are listed back in `Unsupported` (RFC 3261 §8.2.2.3).
fn check_require(request: &Request) -> Result<(), Rejection> {
    if matches!(request.method, Method::Ack | Method::Cancel) {
        return Ok(());
    }
    let unsupported: Vec<&str> = request
        .headers
        .get_all("Require")
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .filter(|tag| {
            !SUPPORTED_OPTION_TAGS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(tag))
        })
        .collect();
    match unsupported.is_empty() {
        true => Ok(()),
        false => {
            Err(Rejection::new(420, "Bad Extension")
                .with_header("Unsupported", unsupported.join(", ")))
        }
    }
}

/// A session body must be SDP (or multipart holding it); INVITE must accept SDP back.
fn check_body(request: &Request) -> Result<(), Rejection> {
    if !SDP_METHODS.contains(&request.method) {
        return Ok(());
    }
    let has_body = request.body.iter().any(|b| !b.is_ascii_whitespace());
    match request.headers.get("Content-Type").map(media_type) {
        None if has_body => return Err(Rejection::bad_request()),
        Some(media) if has_body && !is_session_body(&media) => {
            let rejection = Rejection::new(415, "Unsupported Media Type");
            return Err(rejection.with_header("Accept", "application/sdp"));
        }
        _ => {}
    }
    match request.method == Method::Invite && !accepts_sdp(&request.headers) {
        true => Err(Rejection::new(406, "Not Acceptable")),
        false => Ok(()),
    }
}

/// `type/subtype` in lower case, parameters dropped.
fn media_type(value: &str) -> String {
    let media = value.split(';').next().unwrap_or_default();
    media.trim().to_ascii_lowercase()
}

fn is_session_body(media: &str) -> bool {
    media == "application/sdp" || media.starts_with("multipart/")
}

/// No `Accept` means SDP is fine (RFC 3261 §20.1); else one range must cover it.
fn accepts_sdp(headers: &Headers) -> bool {
    let mut ranges = headers
        .get_all("Accept")
        .flat_map(|value| value.split(','))
        .map(media_type)
        .filter(|media| !media.is_empty())
        .peekable();
    if ranges.peek().is_none() {
        return true;
    }
    ranges.any(|media| matches!(media.as_str(), "application/sdp" | "application/*" | "*/*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:205@pbx SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
        From: <sip:a@trunk>;tag=1\r\n\
        To: <sip:205@pbx>\r\n\
        Call-ID: c1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    fn with_header(message: &str, line: &str) -> String {
        message.replacen("Content-Length", &format!("{line}\r\nContent-Length"), 1)
    }

    fn answer(bytes: &str) -> Response {
        match receive(bytes.as_bytes()) {
            Disposition::Answer(response) => response,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn well_formed_request_is_accepted() {
        assert!(matches!(
            receive(OPTIONS.as_bytes()),
            Disposition::Accept(Message::Request(_))
        ));
    }

    #[test]
    fn require_with_unknown_tags_is_420_listing_them() {
        let response = answer(&with_header(OPTIONS, "Require: timer, precondition,foo"));
        assert_eq!(response.status, 420);
        assert_eq!(
            response.headers.get("Unsupported"),
            Some("precondition, foo")
        );
        assert_eq!(response.headers.call_id().unwrap(), "c1");
    }

    #[test]
    fn max_forwards_zero_is_483_except_for_options() {
        let zero = OPTIONS.replace("Max-Forwards: 70", "Max-Forwards: 0");
        assert!(matches!(receive(zero.as_bytes()), Disposition::Accept(_)));
        let info = zero.replace("OPTIONS", "INFO");
        assert_eq!(answer(&info).status, 483);
    }

    #[test]
    fn invite_body_must_be_sdp_and_sdp_acceptable() {
        let invite = OPTIONS.replace("OPTIONS", "INVITE").replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        );
        let response = answer(&invite);
        assert_eq!(response.status, 415);
        assert_eq!(response.headers.get("Accept"), Some("application/sdp"));
        let sdp = invite.replace("text/plain", "application/sdp");
        assert!(matches!(receive(sdp.as_bytes()), Disposition::Accept(_)));
        let refuses_sdp = with_header(&sdp, "Accept: text/html");
        assert_eq!(answer(&refuses_sdp).status, 406);
        let wildcard = with_header(&sdp, "Accept: text/html, application/*;q=0.5");
        assert!(matches!(
            receive(wildcard.as_bytes()),
            Disposition::Accept(_)
        ));
    }

    #[test]
    fn broken_ack_is_dropped_not_answered() {
        let ack = OPTIONS
            .replace("OPTIONS", "ACK")
            .replace("CSeq: 1 ACK", "CSeq: 1 BYE");
        assert!(matches!(
            receive(ack.as_bytes()),
            Disposition::Discard(Discard::Unanswerable { status: 400 })
        ));
    }

    #[test]
    fn request_without_via_is_dropped() {
        let no_via = OPTIONS.replace("Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n", "");
        assert!(matches!(
            receive(no_via.as_bytes()),
            Disposition::Discard(Discard::Unanswerable { status: 400 })
        ));
    }

    #[test]
    fn unparseable_request_with_via_gets_400_or_505() {
        let bad_line = OPTIONS.replace(
            "OPTIONS sip:205@pbx SIP/2.0",
            "OPTIONS  sip:205@pbx SIP/2.0",
        );
        assert_eq!(answer(&bad_line).status, 400);
        let version = OPTIONS.replace("sip:205@pbx SIP/2.0", "sip:205@pbx SIP/3.0");
        let response = answer(&version);
        assert_eq!(
            (response.status, response.reason.as_str()),
            (505, "Version Not Supported")
        );
        assert_eq!(response.headers.get("CSeq"), Some("1 OPTIONS"));
    }

    #[test]
    fn date_must_be_gmt() {
        assert!(is_sip_date("Sat, 13 Nov 2010 23:29:00 GMT"));
        assert!(!is_sip_date("Fri, 01 Jan 2010 16:00:00 EST"));
        assert!(!is_sip_date("Fri, 1 Jan 2010 16:00:00 GMT"));
    }

    #[test]
    fn display_name_with_comma_is_400_once_the_head_is_complete() {
        let baddn = OPTIONS.replace("From: <sip:a@trunk>", "From: Bell, Alexander <sip:a@trunk>");
        assert_eq!(answer(&baddn).status, 400);
    }
}
