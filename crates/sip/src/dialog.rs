//! Dialogs (RFC 3261 §12): the state two user agents share across requests.
//!
//! A `Dialog` builds the in-dialog requests callvault sends and checks the ones it
//! receives. Requests follow the route set by loose routing; when the first route is
//! an RFC 2543 strict router (no `;lr`), its URI becomes the Request-URI and the remote
//! target goes last in Route, as §12.2.1.1 asks. Target refresh covers re-INVITE and
//! UPDATE; the subscription methods of RFC 6665, which also refresh the target, are not
//! used by callvault.

use bytes::Bytes;

use crate::header::NameAddr;
use crate::message::{Headers, Method, Request, Response};
use crate::ParseError;

/// Where a dialog's own CSeq starts when the peer created the dialog.
///
/// Any value below 2^31 is allowed (§8.1.1.5); the peer only compares later numbers
/// with it.
const INITIAL_LOCAL_SEQ: u32 = 1;

/// Identifies a dialog from one side: Call-ID and both tags (§12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    /// Empty when an RFC 2543 peer sent no From tag (§12.1.1).
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog a received request belongs to: our tag is in To.
    pub fn of_request_received(request: &Request) -> Result<Self, DialogError> {
        let local_tag = request.headers.to()?.tag().map(str::to_owned);
        Ok(Self {
            call_id: request.headers.call_id()?.to_owned(),
            local_tag: local_tag.ok_or(DialogError::MissingTag("To"))?,
            remote_tag: request.headers.from()?.tag().unwrap_or_default().to_owned(),
        })
    }

    /// The dialog a received response belongs to: our tag is in From.
    pub fn of_response_received(response: &Response) -> Result<Self, DialogError> {
        let local_tag = response.headers.from()?.tag().map(str::to_owned);
        let remote_tag = response.headers.to()?.tag().map(str::to_owned);
        Ok(Self {
            call_id: response.headers.call_id()?.to_owned(),
            local_tag: local_tag.ok_or(DialogError::MissingTag("From"))?,
            remote_tag: remote_tag.ok_or(DialogError::MissingTag("To"))?,
        })
    }
}

/// The two dialog states of §12: before and after a 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// Why a message cannot create or continue a dialog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("malformed dialog header")]
    Malformed(#[from] ParseError),
    #[error("status {0} does not create a dialog")]
    NotDialogCreating(u16),
    #[error("missing {0} tag")]
    MissingTag(&'static str),
    #[error("missing Contact header")]
    MissingContact,
    /// The TU answers 500 (§12.2.2).
    #[error("CSeq {received} is lower than the last one received, {last}")]
    CSeqOutOfOrder { received: u32, last: u32 },
}

/// One dialog as seen from our side (§12.1).
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    state: DialogState,
    /// Empty until we send a request in a dialog the peer created.
    local_seq: Option<u32>,
    /// Empty until the peer sends a request in a dialog we created.
    remote_seq: Option<u32>,
    /// Our From, with our tag.
    local: NameAddr,
    /// The peer's address for To, with its tag when it sent one.
    remote: NameAddr,
    /// Request-URI of our in-dialog requests: the peer's Contact URI.
    remote_target: String,
    /// Route values as received, in the order our requests carry them.
    route_set: Vec<String>,
}

impl Dialog {
    /// Creates our side of a dialog from our INVITE and a 101-299 response to it.
    pub fn uac(request: &Request, response: &Response) -> Result<Self, DialogError> {
        if !(101..=299).contains(&response.status) {
            return Err(DialogError::NotDialogCreating(response.status));
        }
        let id = DialogId::of_response_received(response)?;
        let mut route_set = record_route(&response.headers)?;
        route_set.reverse();
        let state = match response.status {
            200..=299 => DialogState::Confirmed,
            _ => DialogState::Early,
        };
        Ok(Self {
            id,
            state,
            local_seq: Some(request.headers.cseq()?.seq),
            remote_seq: None,
            local: request.headers.from()?,
            remote: response.headers.to()?,
            remote_target: contact_uri(&response.headers)?,
            route_set,
        })
    }

    /// Creates our side of a dialog from a received INVITE; `local_tag` goes in To.
    pub fn uas(request: &Request, local_tag: &str) -> Result<Self, DialogError> {
        let remote = request.headers.from()?;
        let mut local = request.headers.to()?;
        local.params.set("tag", Some(local_tag));
        let id = DialogId {
            call_id: request.headers.call_id()?.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: remote.tag().unwrap_or_default().to_owned(),
        };
        Ok(Self {
            id,
            state: DialogState::Early,
            local_seq: None,
            remote_seq: Some(request.headers.cseq()?.seq),
            local,
            remote,
            remote_target: contact_uri(&request.headers)?,
            route_set: record_route(&request.headers)?,
        })
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }

    pub fn state(&self) -> DialogState {
        self.state
    }

    /// Marks the dialog confirmed: a 2xx was sent or received.
    pub fn confirm(&mut self) {
        self.state = DialogState::Confirmed;
    }

    pub fn local_seq(&self) -> Option<u32> {
        self.local_seq
    }

    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// Our address with our tag, as our requests put it in From.
    pub fn local_uri(&self) -> &NameAddr {
        &self.local
    }

    /// The peer's address with its tag, as our requests put it in To.
    pub fn remote_uri(&self) -> &NameAddr {
        &self.remote
    }

    /// The peer's Contact URI: the Request-URI of our in-dialog requests.
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The Route values our requests carry, first hop first.
    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// Builds an in-dialog request (§12.2.1.1); the caller adds Via, Contact and body.
    ///
    /// The CSeq number goes up by one, except for ACK and CANCEL, which reuse the
    /// current one (an ACK for a 2xx is better built with `ack_for`).
    pub fn next_request(&mut self, method: Method) -> Request {
        let seq = match method {
            Method::Ack | Method::Cancel => self.local_seq.unwrap_or(INITIAL_LOCAL_SEQ),
            _ => {
                let next = self
                    .local_seq
                    .map_or(INITIAL_LOCAL_SEQ, |seq| seq.wrapping_add(1));
                self.local_seq = Some(next);
                next
            }
        };
        self.request(method, seq)
    }

    /// Builds the ACK for a 2xx to the INVITE with CSeq `invite_cseq` (§13.2.2.4).
    pub fn ack_for(&self, invite_cseq: u32) -> Request {
        self.request(Method::Ack, invite_cseq)
    }

    /// Checks a request received in this dialog and takes in what it changes (§12.2.2).
    ///
    /// A CSeq lower than the last one is out of order: the TU answers 500. An ACK
    /// carries its INVITE's number and is neither checked nor recorded. A re-INVITE or
    /// UPDATE with a Contact moves the remote target.
    pub fn on_request(&mut self, request: &Request) -> Result<(), DialogError> {
        let seq = request.headers.cseq()?.seq;
        let refreshed_target = if is_target_refresh(&request.method) {
            optional_contact_uri(&request.headers)?
        } else {
            None
        };
        if request.method != Method::Ack {
            if let Some(last) = self.remote_seq.filter(|last| seq < *last) {
                return Err(DialogError::CSeqOutOfOrder {
                    received: seq,
                    last,
                });
            }
            self.remote_seq = Some(seq);
        }
        if let Some(target) = refreshed_target {
            self.remote_target = target;
        }
        Ok(())
    }

    /// Takes in what a response to our in-dialog request changes.
    ///
    /// A 2xx to the INVITE of an early dialog confirms it and recomputes the route set
    /// (§13.2.2.4); a 2xx to a re-INVITE or UPDATE with a Contact moves the remote target.
    pub fn on_response(&mut self, response: &Response) {
        if !(200..=299).contains(&response.status) {
            return;
        }
        let Ok(cseq) = response.headers.cseq() else {
            tracing::debug!("2xx without a valid CSeq ignored by the dialog");
            return;
        };
        if cseq.method == Method::Invite && self.state == DialogState::Early {
            self.confirm_from(response);
        }
        if is_target_refresh(&cseq.method) {
            match optional_contact_uri(&response.headers) {
                Ok(Some(target)) => self.remote_target = target,
                Ok(None) => {}
                Err(_) => tracing::debug!("2xx with a malformed Contact kept the old target"),
            }
        }
    }

    fn confirm_from(&mut self, response: &Response) {
        self.state = DialogState::Confirmed;
        match record_route(&response.headers) {
            Ok(mut route_set) => {
                route_set.reverse();
                self.route_set = route_set;
            }
            Err(_) => tracing::debug!("2xx with a malformed Record-Route kept the old routes"),
        }
    }

    fn request(&self, method: Method, seq: u32) -> Request {
        let (uri, routes) = self.request_target();
        let mut headers = Headers::new();
        for route in routes {
            headers.push("Route", route);
        }
        headers.push("Max-Forwards", "70");
        headers.push("From", self.local.to_string());
        headers.push("To", self.remote.to_string());
        headers.push("Call-ID", self.id.call_id.clone());
        headers.push("CSeq", format!("{seq} {method}"));
        Request {
            method,
            uri,
            headers,
            body: Bytes::new(),
        }
    }

    /// The Request-URI and Route values of §12.2.1.1.
    fn request_target(&self) -> (String, Vec<String>) {
        let strict_first_hop = self
            .route_set
            .first()
            .and_then(|first| NameAddr::parse(first).ok())
            .filter(|first| !is_loose_router(&first.uri));
        match strict_first_hop {
            // An RFC 2543 strict router takes the request at its own URI and finds the
            // remote target at the end of the Route list.
            Some(first) => {
                let mut routes = self.route_set[1..].to_vec();
                routes.push(format!("<{}>", self.remote_target));
                (request_uri_of(&first.uri), routes)
            }
            None => (self.remote_target.clone(), self.route_set.clone()),
        }
    }
}

/// Record-Route values in message order; each must parse as a name-addr.
fn record_route(headers: &Headers) -> Result<Vec<String>, ParseError> {
    headers
        .get_all("Record-Route")
        .map(|value| NameAddr::parse(value).map(|_| value.trim().to_owned()))
        .collect()
}

fn contact_uri(headers: &Headers) -> Result<String, DialogError> {
    optional_contact_uri(headers)?.ok_or(DialogError::MissingContact)
}

fn optional_contact_uri(headers: &Headers) -> Result<Option<String>, DialogError> {
    let Some(contact) = headers.get("Contact") else {
        return Ok(None);
    };
    let contact = NameAddr::parse(contact)?;
    if contact.uri == "*" {
        return Err(DialogError::MissingContact);
    }
    Ok(Some(contact.uri))
}

fn is_target_refresh(method: &Method) -> bool {
    matches!(method, Method::Invite | Method::Update)
}

/// Whether a route URI carries the `lr` parameter (RFC 3261 §19.1.1).
fn is_loose_router(uri: &str) -> bool {
    uri_params(uri).any(|param| param.eq_ignore_ascii_case("lr"))
}

/// The parameter names of a SIP URI, without values.
fn uri_params(uri: &str) -> impl Iterator<Item = &str> {
    let without_headers = uri.split('?').next().unwrap_or_default();
    without_headers
        .split(';')
        .skip(1)
        .map(|param| param.split('=').next().unwrap_or_default().trim())
}

/// A route URI made fit for a Request-URI: no headers, no `method` (§19.1.1 Table 1).
fn request_uri_of(uri: &str) -> String {
    let without_headers = uri.split('?').next().unwrap_or_default();
    let mut parts = without_headers.split(';');
    let mut out = parts.next().unwrap_or_default().to_owned();
    for param in parts {
        let name = param.split('=').next().unwrap_or_default().trim();
        if !name.eq_ignore_ascii_case("method") {
            out.push(';');
            out.push_str(param);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, Message};

    const INVITE: &str = "INVITE sip:bob@trunk.example SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
        Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
        Max-Forwards: 70\r\n\
        From: \"Reception\" <sip:205@pbx.example>;tag=a1\r\n\
        To: <sip:bob@trunk.example>\r\n\
        Call-ID: call1@192.0.2.1\r\n\
        CSeq: 7 INVITE\r\n\
        Contact: <sip:205@192.0.2.1:5060>\r\n\
        Content-Length: 0\r\n\r\n";

    fn invite() -> Request {
        match parse(INVITE.as_bytes()).unwrap() {
            Message::Request(request) => request,
            Message::Response(_) => panic!("expected a request"),
        }
    }

    /// The peer's answer: Record-Route copied, To tag and Contact added.
    fn answer(request: &Request, status: u16) -> Response {
        let mut response = Response::for_request(request, status, "Reason");
        for route in request.headers.get_all("Record-Route") {
            response.headers.push("Record-Route", route);
        }
        response.headers.set("To", "<sip:bob@trunk.example>;tag=b2");
        response
            .headers
            .push("Contact", "<sip:bob@203.0.113.9:5060>");
        response
    }

    fn uac() -> Dialog {
        Dialog::uac(&invite(), &answer(&invite(), 200)).unwrap()
    }

    fn routes(request: &Request) -> Vec<&str> {
        request.headers.get_all("Route").collect()
    }

    #[test]
    fn uac_dialog_from_180_is_early_with_reversed_record_route() {
        let dialog = Dialog::uac(&invite(), &answer(&invite(), 180)).unwrap();
        assert_eq!(dialog.state(), DialogState::Early);
        let id = dialog.id();
        assert_eq!(
            (
                id.call_id.as_str(),
                id.local_tag.as_str(),
                id.remote_tag.as_str()
            ),
            ("call1@192.0.2.1", "a1", "b2")
        );
        assert_eq!(
            dialog.route_set(),
            ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
        );
        assert_eq!(dialog.remote_target(), "sip:bob@203.0.113.9:5060");
        assert_eq!(dialog.local_seq(), Some(7));
        assert_eq!(dialog.remote_seq(), None);
    }

    #[test]
    fn uac_dialog_from_200_is_confirmed() {
        assert_eq!(uac().state(), DialogState::Confirmed);
    }

    #[test]
    fn uac_needs_a_dialog_creating_response_with_to_tag() {
        let trying = answer(&invite(), 100);
        assert!(matches!(
            Dialog::uac(&invite(), &trying),
            Err(DialogError::NotDialogCreating(100))
        ));
        let mut untagged = answer(&invite(), 180);
        untagged.headers.set("To", "<sip:bob@trunk.example>");
        assert!(matches!(
            Dialog::uac(&invite(), &untagged),
            Err(DialogError::MissingTag("To"))
        ));
        let mut no_contact = answer(&invite(), 200);
        no_contact.headers.remove("Contact");
        assert!(matches!(
            Dialog::uac(&invite(), &no_contact),
            Err(DialogError::MissingContact)
        ));
    }

    #[test]
    fn uas_dialog_keeps_record_route_order_and_takes_our_tag() {
        let dialog = Dialog::uas(&invite(), "c3").unwrap();
        assert_eq!(dialog.state(), DialogState::Early);
        assert_eq!(dialog.id().local_tag, "c3");
        assert_eq!(dialog.id().remote_tag, "a1");
        assert_eq!(
            dialog.route_set(),
            ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
        assert_eq!(dialog.remote_target(), "sip:205@192.0.2.1:5060");
        assert_eq!(dialog.local_uri().tag(), Some("c3"));
        assert_eq!(dialog.remote_seq(), Some(7));
        assert_eq!(dialog.local_seq(), None);
    }

    #[test]
    fn dialog_ids_of_received_messages_match_the_dialog() {
        let uas = Dialog::uas(&invite(), "c3").unwrap();
        let mut bye = Dialog::uac(&invite(), &answer(&invite(), 200))
            .unwrap()
            .next_request(Method::Bye);
        bye.headers.set("To", uas.local_uri().to_string());
        assert_eq!(&DialogId::of_request_received(&bye).unwrap(), uas.id());

        let ok = answer(&invite(), 200);
        assert_eq!(&DialogId::of_response_received(&ok).unwrap(), uac().id());
        assert!(matches!(
            DialogId::of_request_received(&invite()),
            Err(DialogError::MissingTag("To"))
        ));
    }

    #[test]
    fn next_request_follows_the_route_set_with_both_tags() {
        let mut dialog = uac();
        let bye = dialog.next_request(Method::Bye);
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.uri, "sip:bob@203.0.113.9:5060");
        assert_eq!(routes(&bye), ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]);
        assert_eq!(bye.headers.from().unwrap().tag(), Some("a1"));
        assert_eq!(
            bye.headers.get("From"),
            Some("\"Reception\" <sip:205@pbx.example>;tag=a1")
        );
        assert_eq!(bye.headers.to().unwrap().tag(), Some("b2"));
        assert_eq!(bye.headers.get("Call-ID"), Some("call1@192.0.2.1"));
        assert_eq!(bye.headers.get("CSeq"), Some("8 BYE"));
        assert_eq!(bye.headers.get("Max-Forwards"), Some("70"));
        assert!(bye.headers.get("Via").is_none(), "the caller adds Via");
    }

    #[test]
    fn local_cseq_increments_and_ack_and_cancel_reuse_it() {
        let mut dialog = uac();
        assert_eq!(
            dialog.next_request(Method::Invite).headers.get("CSeq"),
            Some("8 INVITE")
        );
        assert_eq!(
            dialog.next_request(Method::Cancel).headers.get("CSeq"),
            Some("8 CANCEL")
        );
        assert_eq!(
            dialog.next_request(Method::Update).headers.get("CSeq"),
            Some("9 UPDATE")
        );
        assert_eq!(dialog.local_seq(), Some(9));
    }

    #[test]
    fn ack_for_2xx_carries_the_invite_cseq() {
        let dialog = uac();
        let ack = dialog.ack_for(7);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, "sip:bob@203.0.113.9:5060");
        assert_eq!(ack.headers.get("CSeq"), Some("7 ACK"));
        assert_eq!(routes(&ack).len(), 2);
        assert_eq!(
            dialog.local_seq(),
            Some(7),
            "an ACK does not use up a number"
        );
    }

    #[test]
    fn uas_dialog_starts_its_own_cseq() {
        let mut dialog = Dialog::uas(&invite(), "c3").unwrap();
        let bye = dialog.next_request(Method::Bye);
        assert_eq!(bye.headers.get("CSeq"), Some("1 BYE"));
        assert_eq!(bye.headers.to().unwrap().tag(), Some("a1"));
        assert_eq!(bye.headers.from().unwrap().tag(), Some("c3"));
        assert_eq!(bye.uri, "sip:205@192.0.2.1:5060");
    }

    #[test]
    fn lower_remote_cseq_is_rejected_and_equal_or_higher_accepted() {
        let mut dialog = Dialog::uas(&invite(), "c3").unwrap();
        let mut info = invite();
        info.method = Method::Info;
        info.headers.set("CSeq", "6 INFO");
        assert!(matches!(
            dialog.on_request(&info),
            Err(DialogError::CSeqOutOfOrder {
                received: 6,
                last: 7
            })
        ));
        info.headers.set("CSeq", "9 INFO");
        dialog.on_request(&info).unwrap();
        assert_eq!(dialog.remote_seq(), Some(9));

        let mut ack = invite();
        ack.method = Method::Ack;
        ack.headers.set("CSeq", "7 ACK");
        dialog.on_request(&ack).unwrap();
        assert_eq!(dialog.remote_seq(), Some(9), "an ACK is not a new request");
    }

    #[test]
    fn first_remote_request_sets_the_remote_cseq() {
        let mut dialog = uac();
        let mut bye = invite();
        bye.method = Method::Bye;
        bye.headers.set("CSeq", "1 BYE");
        dialog.on_request(&bye).unwrap();
        assert_eq!(dialog.remote_seq(), Some(1));
    }

    #[test]
    fn reinvite_and_update_refresh_the_remote_target_but_bye_does_not() {
        let mut dialog = Dialog::uas(&invite(), "c3").unwrap();
        let mut reinvite = invite();
        reinvite.headers.set("CSeq", "8 INVITE");
        reinvite.headers.set("Contact", "<sip:205@192.0.2.50:5070>");
        dialog.on_request(&reinvite).unwrap();
        assert_eq!(dialog.remote_target(), "sip:205@192.0.2.50:5070");

        let mut bye = reinvite.clone();
        bye.method = Method::Bye;
        bye.headers.set("CSeq", "9 BYE");
        bye.headers.set("Contact", "<sip:elsewhere@192.0.2.99>");
        dialog.on_request(&bye).unwrap();
        assert_eq!(dialog.remote_target(), "sip:205@192.0.2.50:5070");
    }

    #[test]
    fn out_of_order_request_changes_nothing() {
        let mut dialog = Dialog::uas(&invite(), "c3").unwrap();
        let mut stale = invite();
        stale.headers.set("CSeq", "3 INVITE");
        stale.headers.set("Contact", "<sip:205@192.0.2.50:5070>");
        assert!(dialog.on_request(&stale).is_err());
        assert_eq!(dialog.remote_target(), "sip:205@192.0.2.1:5060");
    }

    #[test]
    fn reinvite_2xx_refreshes_the_remote_target() {
        let mut dialog = uac();
        let reinvite = dialog.next_request(Method::Invite);
        let mut ok = answer(&reinvite, 200);
        ok.headers.set("Contact", "<sip:bob@203.0.113.10:5060>");
        ok.headers.remove("Record-Route");
        dialog.on_response(&ok);
        assert_eq!(dialog.remote_target(), "sip:bob@203.0.113.10:5060");
        assert_eq!(
            dialog.route_set().len(),
            2,
            "a re-INVITE does not change routes"
        );

        let mut failed = answer(&reinvite, 488);
        failed.headers.set("Contact", "<sip:bob@203.0.113.11:5060>");
        dialog.on_response(&failed);
        assert_eq!(dialog.remote_target(), "sip:bob@203.0.113.10:5060");
    }

    #[test]
    fn invite_2xx_confirms_an_early_dialog_and_recomputes_routes() {
        let mut dialog = Dialog::uac(&invite(), &answer(&invite(), 183)).unwrap();
        let mut ok = answer(&invite(), 200);
        ok.headers.remove("Record-Route");
        ok.headers.push("Record-Route", "<sip:p3.example;lr>");
        dialog.on_response(&ok);
        assert_eq!(dialog.state(), DialogState::Confirmed);
        assert_eq!(dialog.route_set(), ["<sip:p3.example;lr>"]);
    }

    #[test]
    fn strict_router_first_hop_becomes_the_request_uri() {
        let mut request = invite();
        request
            .headers
            .set("Record-Route", "<sip:strict.example;maddr=10.0.0.1>");
        let mut dialog = Dialog::uas(&request, "c3").unwrap();
        let bye = dialog.next_request(Method::Bye);
        assert_eq!(bye.uri, "sip:strict.example;maddr=10.0.0.1");
        assert_eq!(routes(&bye), ["<sip:205@192.0.2.1:5060>"]);
    }

    #[test]
    fn malformed_record_route_is_an_error() {
        let mut request = invite();
        request
            .headers
            .set("Record-Route", "<sip:unclosed.example;lr");
        assert!(matches!(
            Dialog::uas(&request, "c3"),
            Err(DialogError::Malformed(_))
        ));
    }

    #[test]
    fn request_uri_of_strips_headers_and_method() {
        assert_eq!(
            request_uri_of("sip:p.example;method=INVITE;transport=tcp?Subject=x"),
            "sip:p.example;transport=tcp"
        );
    }
}
