//! Where each incoming request goes: an existing transaction, a call, the registrar, or
//! a local answer.

use std::net::SocketAddr;

use callvault_media::Side;
use callvault_sip::transaction::TransactionKey;
use callvault_sip::{Method, Request, Response};
use tracing::debug;

use crate::core::{ensure_to_tag, now, Core, TransactionRef};
use crate::rewrite::{next_max_forwards, HopError};

/// What callvault accepts, for Allow headers and 405 answers.
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE, REGISTER";

impl Core {
    pub(crate) async fn on_request(&mut self, side: Side, source: SocketAddr, request: Request) {
        let key = match TransactionKey::for_server(&request) {
            Ok(key) => (side, key),
            Err(error) => {
                debug!(%error, "request without a usable Via or CSeq dropped");
                return;
            }
        };
        if let Some(server) = self.servers.get_mut(&key) {
            let actions = server.transaction.on_request(request, now());
            self.apply_server_actions(key, actions).await;
            return;
        }
        if let Err(rejection) = self.admit(side, &request) {
            let (status, reason) = rejection;
            self.reject(side, source, request, status, reason).await;
            return;
        }
        match request.method {
            Method::Ack => self.on_ack(side, request).await,
            Method::Cancel => self.on_cancel(side, source, request, key).await,
            _ => self.on_new_request(side, source, request, key).await,
        }
    }

    /// The checks a request passes before callvault forwards it; the transport has
    /// already checked its syntax (`callvault_sip::validate`).
    fn admit(&self, side: Side, request: &Request) -> Result<(), (u16, &'static str)> {
        let looped = request
            .headers
            .get_all("Via")
            .filter_map(|v| callvault_sip::Via::parse(v).ok())
            .any(|via| {
                self.local[side].is_own_via(&via) || self.local[side.other()].is_own_via(&via)
            });
        if looped {
            return Err((482, "Loop Detected"));
        }
        match next_max_forwards(&request.headers) {
            Ok(_) => Ok(()),
            // An OPTIONS for callvault itself is answered whatever its Max-Forwards.
            Err(HopError::TooManyHops) if is_addressed_to_us(&request.uri) => Ok(()),
            Err(HopError::TooManyHops) => Err((483, "Too Many Hops")),
            Err(HopError::Invalid) => Err((400, "Bad Request")),
        }
    }

    /// Opens a server transaction for a request that starts or continues something.
    async fn on_new_request(
        &mut self,
        side: Side,
        source: SocketAddr,
        request: Request,
        key: TransactionRef,
    ) {
        self.open_server(key.clone(), request.clone(), source);

        let in_dialog = request.headers.to().is_ok_and(|to| to.tag().is_some());
        if in_dialog {
            self.on_in_dialog_request(side, request, key).await;
            return;
        }
        match request.method {
            Method::Invite if self.draining.is_some() => {
                self.refuse_while_draining(&key, &request).await;
            }
            Method::Invite => self.on_invite(side, request, key).await,
            Method::Register if side == Side::Pbx => self.relay_register(request, key).await,
            Method::Options if is_addressed_to_us(&request.uri) => {
                self.answer_options(&key, &request).await;
            }
            Method::Register | Method::Subscribe | Method::Publish => {
                // A SUBSCRIBE outside a call would make a dialog callvault does not
                // track; REGISTER is only relayed from the PBX to the provider.
                self.answer_not_allowed(&key, &request).await;
            }
            _ => self.relay_out_of_dialog(side, request, key).await,
        }
    }

    async fn answer_options(&mut self, key: &TransactionRef, request: &Request) {
        let mut response = Response::for_request(request, 200, "OK");
        ensure_to_tag(&mut response);
        response.headers.push("Allow", ALLOW);
        response.headers.push("Accept", "application/sdp");
        response
            .headers
            .push("Supported", "100rel, timer, replaces");
        self.respond(key, response).await;
    }

    async fn answer_not_allowed(&mut self, key: &TransactionRef, request: &Request) {
        let mut response = Response::for_request(request, 405, "Method Not Allowed");
        ensure_to_tag(&mut response);
        response.headers.push("Allow", ALLOW);
        self.respond(key, response).await;
    }

    /// A CANCEL is answered at once (RFC 3261 §9.2) and then acted on.
    async fn on_cancel(
        &mut self,
        side: Side,
        source: SocketAddr,
        cancel: Request,
        key: TransactionRef,
    ) {
        let invite = TransactionKey::of_cancelled_invite(&cancel)
            .ok()
            .map(|k| (side, k));
        let Some(invite) = invite.filter(|k| self.servers.contains_key(k)) else {
            self.reject(side, source, cancel, 481, "Call/Transaction Does Not Exist")
                .await;
            return;
        };
        self.open_server(key.clone(), cancel.clone(), source);
        let mut ok = Response::for_request(&cancel, 200, "OK");
        ensure_to_tag(&mut ok);
        self.respond(&key, ok).await;
        self.cancel_call(&invite).await;
    }

    /// A response that matches no transaction: a 2xx retransmission to re-ACK, or noise.
    pub(crate) async fn on_stray_response(&mut self, side: Side, response: Response) {
        let is_invite_2xx = (200..300).contains(&response.status)
            && response
                .headers
                .cseq()
                .is_ok_and(|c| c.method == Method::Invite);
        if is_invite_2xx {
            self.resend_ack(side, &response).await;
        } else {
            debug!(
                status = response.status,
                "response to no transaction dropped"
            );
        }
    }
}

/// An OPTIONS with no user part is a keep-alive addressed to callvault itself.
fn is_addressed_to_us(uri: &str) -> bool {
    let rest = uri.split_once(':').map_or(uri, |(_, rest)| rest);
    let before_params = rest.split([';', '?']).next().unwrap_or(rest);
    !before_params.contains('@')
}
