//! What changes when a message crosses from one side to the other.
//!
//! callvault is the user agent of both dialogs, so it owns the headers that identify a
//! hop or a dialog (Via, Contact, Route, Record-Route, Call-ID, tags, CSeq) and copies
//! every other header end to end, unchanged, so that features it does not know about
//! (session timers, 100rel, digest authentication, vendor headers) keep working.

use std::net::SocketAddr;

use callvault_sip::{Headers, Method};
use rand::Rng;

use crate::config::Transport;

/// RFC 3261 §8.1.1.7 magic cookie, then a marker that lets loop detection recognise
/// branches callvault made.
pub(crate) const BRANCH_PREFIX: &str = "z9hG4bK-cv-";

/// Headers callvault writes itself on each leg; never copied across.
const HOP_BY_HOP: &[&str] = &[
    "Via",
    "Route",
    "Record-Route",
    "Contact",
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
];

/// Where callvault is on one side, as that side should see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalAddress {
    pub address: SocketAddr,
    pub transport: Transport,
}

impl LocalAddress {
    /// A new top Via for a request callvault sends from this side, and its branch.
    pub(crate) fn via(&self) -> (String, String) {
        let branch = format!("{BRANCH_PREFIX}{}", random_token(12));
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport_name(self.transport),
            self.address
        );
        (via, branch)
    }

    /// callvault's Contact on this side, with `user` when a binding needs one.
    pub(crate) fn contact(&self, user: Option<&str>) -> String {
        let transport = match self.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        match user {
            Some(user) => format!("<sip:{user}@{}{transport}>", self.address),
            None => format!("<sip:{}{transport}>", self.address),
        }
    }

    /// Whether a Via was written by callvault on this side (a request has looped back).
    pub(crate) fn is_own_via(&self, via: &callvault_sip::Via) -> bool {
        via.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
            && via.sent_by == self.address.to_string()
    }
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    }
}

/// `uri` re-addressed to `to` when it points at `at`: the same IP, and the same port or
/// none. Anything else, including a host name or a `tel:` URI, is left alone.
pub(crate) fn readdress(uri: &str, at: SocketAddr, to: SocketAddr) -> Option<String> {
    let sip = callvault_sip::SipUri::parse(uri).ok()?;
    let same_port = sip.port().is_none_or(|port| port == at.port());
    (sip.ip() == Some(at.ip()) && same_port).then(|| sip.with_socket_addr(to).as_str().to_owned())
}

/// A From or To value with its URI re-addressed as `readdress` does.
pub(crate) fn readdress_header(value: &str, at: SocketAddr, to: SocketAddr) -> String {
    let Ok(mut name_addr) = callvault_sip::NameAddr::parse(value) else {
        return value.to_owned();
    };
    match readdress(&name_addr.uri, at, to) {
        Some(uri) => {
            name_addr.uri = uri;
            name_addr.to_string()
        }
        None => value.to_owned(),
    }
}

/// Copies every end-to-end header of `from` to the end of `to`.
pub(crate) fn copy_end_to_end(from: &Headers, to: &mut Headers) {
    for header in from.iter() {
        if !HOP_BY_HOP
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&header.name))
        {
            to.push(header.name.clone(), header.value.clone());
        }
    }
}

/// Why a request may not be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HopError {
    /// Max-Forwards reached zero (RFC 3261 §16.3 step 3): answer 483.
    TooManyHops,
    /// Max-Forwards is not a number: answer 400.
    Invalid,
}

/// The Max-Forwards value for the next hop: one less than received, 70 if absent.
pub(crate) fn next_max_forwards(headers: &Headers) -> Result<u32, HopError> {
    match headers.max_forwards() {
        Ok(None) => Ok(70),
        Ok(Some(0)) => Err(HopError::TooManyHops),
        Ok(Some(n)) => Ok(n.min(70) - 1),
        Err(_) => Err(HopError::Invalid),
    }
}

/// Whether a request carries an SDP body.
pub(crate) fn has_sdp(headers: &Headers, body: &[u8]) -> bool {
    !body.is_empty()
        && headers
            .get("Content-Type")
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"))
}

/// Methods whose requests and 2xx responses carry a Contact (RFC 3261 §8.1.1.8, RFC 3311,
/// RFC 3515, RFC 6665): target refresh and dialog-forming requests.
pub(crate) fn carries_contact(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

pub(crate) fn new_tag() -> String {
    random_token(10)
}

pub(crate) fn new_call_id(local: SocketAddr) -> String {
    format!("{}@{}", random_token(20), local.ip())
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_are_not_copied() {
        let mut from = Headers::new();
        from.push("Via", "SIP/2.0/UDP pbx;branch=z9hG4bK1");
        from.push("Session-Expires", "1800;refresher=uac");
        from.push("X-Practice-Line", "205");
        from.push("Record-Route", "<sip:p;lr>");
        let mut to = Headers::new();
        copy_end_to_end(&from, &mut to);
        let names: Vec<_> = to.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Session-Expires", "X-Practice-Line"]);
    }

    #[test]
    fn max_forwards_is_decremented_and_zero_refused() {
        let mut headers = Headers::new();
        assert_eq!(next_max_forwards(&headers), Ok(70));
        headers.push("Max-Forwards", "1");
        assert_eq!(next_max_forwards(&headers), Ok(0));
        headers.set("Max-Forwards", "0");
        assert_eq!(next_max_forwards(&headers), Err(HopError::TooManyHops));
        headers.set("Max-Forwards", "many");
        assert_eq!(next_max_forwards(&headers), Err(HopError::Invalid));
    }

    #[test]
    fn only_uris_pointing_at_the_address_are_readdressed() {
        let (at, to) = (
            "192.0.2.10:5060".parse().unwrap(),
            "198.51.100.1:5062".parse().unwrap(),
        );
        let moved = readdress("sip:205@192.0.2.10:5060;user=phone", at, to);
        assert_eq!(
            moved.as_deref(),
            Some("sip:205@198.51.100.1:5062;user=phone")
        );
        assert_eq!(
            readdress("sip:205@192.0.2.10", at, to).as_deref(),
            Some("sip:205@198.51.100.1:5062")
        );
        assert_eq!(readdress("sip:205@192.0.2.10:5070", at, to), None);
        assert_eq!(readdress("sip:205@provider.example", at, to), None);
        assert_eq!(readdress("tel:+447700900123", at, to), None);
    }

    #[test]
    fn own_via_is_recognised() {
        let local = LocalAddress {
            address: "127.0.0.1:5062".parse().unwrap(),
            transport: Transport::Udp,
        };
        let (via, _) = local.via();
        assert!(local.is_own_via(&callvault_sip::Via::parse(&via).unwrap()));
        let other =
            callvault_sip::Via::parse("SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1").unwrap();
        assert!(!local.is_own_via(&other));
    }
}
