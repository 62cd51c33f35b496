//! Matching messages to transactions (RFC 3261 §17.1.3 and §17.2.3).

use crate::message::{Method, Request, Response};
use crate::ParseError;

/// The branch prefix of RFC 3261 peers (§8.1.1.7).
const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identifies one transaction; equal keys mean the same transaction.
///
/// Client and server keys never compare equal, so one map may hold both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey(Kind);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    /// §17.1.3: the branch we chose and the CSeq method.
    Client { branch: String, method: Method },
    /// §17.2.3: branch, sent-by and method, with ACK counted as INVITE.
    Server {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// §17.2.3 for RFC 2543 peers, whose branch is not unique: the fields that
    /// identified a request before RFC 3261 stand in for it.
    Rfc2543 {
        request_uri: String,
        call_id: String,
        from_tag: Option<String>,
        /// Left out for INVITE and ACK: the ACK carries the To tag of our response,
        /// which the INVITE did not have. The response's tag is not compared, so
        /// merged requests (§8.2.2.2) are not told apart.
        to_tag: Option<String>,
        seq: u32,
        top_via: String,
        method: Method,
    },
}

impl TransactionKey {
    /// The key of the client transaction a received response belongs to.
    pub fn for_client(response: &Response) -> Result<Self, ParseError> {
        let via = response.headers.top_via()?;
        let branch = via.branch().ok_or(ParseError::InvalidHeader("Via"))?;
        Ok(Self(Kind::Client {
            branch: branch.to_owned(),
            method: response.headers.cseq()?.method,
        }))
    }

    /// The key of the client transaction that sends `request`.
    ///
    /// Taken from the CSeq method, as responses carry it, so it equals `for_client`
    /// of every response to the request.
    pub fn of_request_sent(request: &Request) -> Result<Self, ParseError> {
        let via = request.headers.top_via()?;
        let branch = via.branch().ok_or(ParseError::InvalidHeader("Via"))?;
        Ok(Self(Kind::Client {
            branch: branch.to_owned(),
            method: request.headers.cseq()?.method,
        }))
    }

    /// The key of the server transaction a received request belongs to.
    ///
    /// An ACK gets the key of its INVITE, so the ACK of a non-2xx final finds the
    /// INVITE server transaction; the ACK of a 2xx carries a new branch and finds none,
    /// as it belongs to the dialog. A CANCEL is a transaction of its own.
    pub fn for_server(request: &Request) -> Result<Self, ParseError> {
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref other => other.clone(),
        };
        Self::server(request, method)
    }

    /// The key of the INVITE server transaction that `cancel` cancels (§9.2).
    pub fn of_cancelled_invite(cancel: &Request) -> Result<Self, ParseError> {
        Self::server(cancel, Method::Invite)
    }

    /// The branch, for log fields; `None` for an RFC 2543 key.
    pub fn branch(&self) -> Option<&str> {
        match &self.0 {
            Kind::Client { branch, .. } | Kind::Server { branch, .. } => Some(branch),
            Kind::Rfc2543 { .. } => None,
        }
    }

    /// The method of the request that created the transaction.
    pub fn method(&self) -> &Method {
        match &self.0 {
            Kind::Client { method, .. }
            | Kind::Server { method, .. }
            | Kind::Rfc2543 { method, .. } => method,
        }
    }

    fn server(request: &Request, method: Method) -> Result<Self, ParseError> {
        let via = request.headers.top_via()?;
        match via.branch() {
            Some(branch) if branch.starts_with(MAGIC_COOKIE) => Ok(Self(Kind::Server {
                branch: branch.to_owned(),
                // Host names compare without case (RFC 3261 §19.1.4).
                sent_by: via.sent_by.to_ascii_lowercase(),
                method,
            })),
            _ => Self::rfc2543(request, via.to_string(), method),
        }
    }

    fn rfc2543(request: &Request, top_via: String, method: Method) -> Result<Self, ParseError> {
        let to_tag = if method == Method::Invite {
            None
        } else {
            request.headers.to()?.tag().map(str::to_owned)
        };
        Ok(Self(Kind::Rfc2543 {
            request_uri: request.uri.clone(),
            call_id: request.headers.call_id()?.to_owned(),
            from_tag: request.headers.from()?.tag().map(str::to_owned),
            to_tag,
            seq: request.headers.cseq()?.seq,
            top_via,
            method,
        }))
    }
}
