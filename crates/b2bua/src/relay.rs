//! Relaying requests and responses between a call's two legs.

use std::time::Instant;

use callvault_media::Side;
use callvault_sip::{Method, Request, Response};

use crate::call::{CallRef, Phase};
use crate::core::{ensure_to_tag, set_to_tag, Core, Purpose, TransactionRef};
use crate::hook::{EndReason, TapChange};
use crate::rewrite::{
    copy_end_to_end, has_sdp, new_call_id, new_tag, next_max_forwards, readdress, readdress_header,
};

impl Core {
    /// A request that starts something on the other side: the INVITE of a new call or
    /// an out-of-dialog request such as OPTIONS or MESSAGE.
    pub(crate) fn initial_request(
        &self,
        from: Side,
        request: &Request,
        call_id: &str,
        tag: &str,
    ) -> Request {
        let to_side = from.other();
        let local = self.local[to_side];
        let mut out = Request {
            method: request.method.clone(),
            uri: self.route_request_uri(from, &request.uri),
            headers: callvault_sip::Headers::new(),
            body: request.body.clone(),
        };
        let (via, _) = local.via();
        out.headers.push("Via", via);
        out.headers.push(
            "Max-Forwards",
            next_max_forwards(&request.headers)
                .unwrap_or(70)
                .to_string(),
        );
        // A From or To that names the peer or callvault on the sending side would show
        // that side's addresses to the other; they are re-addressed to callvault's and
        // the other peer's.
        if let Ok(mut from_header) = request.headers.from() {
            from_header.params.set("tag", Some(tag));
            let from_header = from_header.to_string();
            out.headers.push(
                "From",
                readdress_header(&from_header, self.peer[from], local.address),
            );
        }
        if let Some(to) = request.headers.get("To") {
            let ours = self.local[from].address;
            out.headers
                .push("To", readdress_header(to, ours, self.peer[to_side]));
        }
        out.headers.push("Call-ID", call_id);
        if let Ok(cseq) = request.headers.cseq() {
            out.headers.push("CSeq", cseq.to_string());
        }
        if crate::rewrite::carries_contact(&request.method) {
            out.headers.push("Contact", local.contact(None));
        }
        copy_end_to_end(&request.headers, &mut out.headers);
        out
    }

    /// The Request-URI on the other side. A URI addressed to callvault is re-addressed
    /// to the other side's peer, or to the PBX binding it stands for; any other URI (a
    /// PBX that uses callvault as its outbound proxy) is left as it is, so that digest
    /// credentials computed over it stay valid.
    pub(crate) fn route_request_uri(&self, from: Side, uri: &str) -> String {
        if let Some(contact) = self.registrar.contact_for(uri) {
            return contact;
        }
        readdress(uri, self.local[from].address, self.peer[from.other()])
            .unwrap_or_else(|| uri.to_owned())
    }

    /// A request inside a call's dialog, relayed to the other leg.
    pub(crate) async fn on_in_dialog_request(
        &mut self,
        side: Side,
        request: Request,
        server: TransactionRef,
    ) {
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        let Some(id) = self.call_index.get(&(side, call_id)).copied() else {
            self.respond_with_status(&server, 481, "Call/Transaction Does Not Exist")
                .await;
            return;
        };
        if let Err(status) = self.check_dialog(id, side, &request) {
            self.respond_with_status(&server, status, "Server Internal Error")
                .await;
            return;
        }
        if side == Side::Pbx {
            self.party_may_have_changed(id, &request);
        }
        let out_side = side.other();
        let max_forwards = next_max_forwards(&request.headers).ok();
        let Some(mut out) =
            self.in_dialog_request(id, out_side, request.method.clone(), max_forwards)
        else {
            self.respond_with_status(&server, 481, "Call/Transaction Does Not Exist")
                .await;
            return;
        };
        copy_end_to_end(&request.headers, &mut out.headers);
        out.body = request.body.clone();
        if has_sdp(&request.headers, &request.body) {
            out.body = self
                .anchor_sdp(id, side, &request.body)
                .await
                .unwrap_or_default();
        }
        if request.method == Method::Invite {
            self.remember_invite(id, side, &request, &out);
        }
        self.start_client(
            out_side,
            out,
            Purpose::Relay {
                call: Some(id),
                server,
            },
        )
        .await;
    }

    /// Lets the hook decide again when the PBX may be telling of a new
    /// practice-side party: a transfer (REFER), or a re-INVITE or UPDATE that
    /// carries a new identity.
    fn party_may_have_changed(&mut self, id: CallRef, request: &Request) {
        if !matches!(
            request.method,
            Method::Refer | Method::Invite | Method::Update
        ) {
            return;
        }
        // Before the answer nothing is recorded yet; the decision on the INVITE
        // stands until then.
        let Some(call) = self
            .calls
            .get_mut(&id)
            .filter(|c| matches!(c.phase, Phase::Answered))
        else {
            return;
        };
        let change = call
            .span
            .in_scope(|| self.hook.on_party_change(&call.info, &request.headers));
        match change {
            TapChange::Keep => {}
            TapChange::Start(tap) => {
                call.tapped = true;
                call.media.set_tap(Some(tap));
            }
            TapChange::Stop => {
                call.tapped = false;
                call.media.set_tap(None);
            }
        }
    }

    /// Checks the To tag and CSeq of an in-dialog request against its leg's dialog.
    fn check_dialog(&mut self, id: CallRef, side: Side, request: &Request) -> Result<(), u16> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(481);
        };
        let leg = call.leg_mut(side);
        let to_tag = request
            .headers
            .to()
            .ok()
            .and_then(|to| to.tag().map(str::to_owned));
        if to_tag.as_deref() != Some(leg.local_tag.as_str()) {
            return Err(481);
        }
        match leg.dialog.as_mut() {
            Some(dialog) => dialog.on_request(request).map_err(|_| 500),
            None => Err(481),
        }
    }

    /// A response from the other leg, relayed back through the server transaction.
    pub(crate) async fn relay_response(
        &mut self,
        call: Option<CallRef>,
        client: &TransactionRef,
        server: &TransactionRef,
        response: Response,
    ) {
        if response.status == 100 {
            return;
        }
        let Some(id) = call else {
            self.relay_plain_response(server, response).await;
            return;
        };
        if self.is_answer_retransmission(server, &response) {
            self.resend_ack(client.0, &response).await;
            return;
        }
        let is_initial = self.calls.get(&id).is_some_and(
            |c| matches!(&c.phase, Phase::Calling(calling) if &calling.client == client),
        );
        if is_initial {
            self.on_initial_invite_response(id, client, server, response)
                .await;
        } else {
            self.relay_in_dialog_response(id, client.0, server, response)
                .await;
        }
    }

    /// Responses to out-of-dialog requests such as OPTIONS: no call, no dialog.
    async fn relay_plain_response(&mut self, server: &TransactionRef, response: Response) {
        let Some(request) = self.server_request(server) else {
            return;
        };
        let mut out = Response::for_request(&request, response.status, &response.reason);
        ensure_to_tag(&mut out);
        copy_end_to_end(&response.headers, &mut out.headers);
        out.body = response.body;
        self.respond(server, out).await;
    }

    /// Relays a response from `from` to the server transaction on the other leg.
    pub(crate) async fn relay_in_dialog_response(
        &mut self,
        id: CallRef,
        from: Side,
        server: &TransactionRef,
        response: Response,
    ) {
        let Some(request) = self.server_request(server) else {
            return;
        };
        let Some(call) = self.calls.get(&id) else {
            // The call ended while this request crossed it (two BYEs, say). The request
            // still gets its answer, without anything that named the far side.
            self.respond_with_status(server, response.status, &response.reason)
                .await;
            return;
        };
        let to_side = server.0;
        let local_tag = call.leg(to_side).local_tag.clone();
        let mut out = Response::for_request(&request, response.status, &response.reason);
        set_to_tag(&mut out, &local_tag);
        let method = request.method.clone();
        if crate::rewrite::carries_contact(&method) && (101..300).contains(&response.status) {
            out.headers
                .push("Contact", self.local[to_side].contact(None));
        }
        if (300..400).contains(&response.status) {
            // A redirect's Contacts are where to call next, not a hop: the caller sends
            // its next INVITE for them through callvault again.
            for contact in response.headers.get_all("Contact") {
                out.headers.push("Contact", contact);
            }
        }
        copy_end_to_end(&response.headers, &mut out.headers);
        if has_sdp(&response.headers, &response.body) {
            out.body = self
                .anchor_sdp(id, from, &response.body)
                .await
                .unwrap_or_default();
        } else if method == Method::Invite {
            self.keep_early_answer(id, &mut out);
        }
        if let Some(call) = self.calls.get_mut(&id) {
            if let Some(dialog) = call.leg_mut(from).dialog.as_mut() {
                dialog.on_response(&response);
            }
        }
        let is_invite_2xx = method == Method::Invite && (200..300).contains(&out.status);
        if is_invite_2xx {
            self.await_ack(id, to_side, &out);
        }
        let refreshes = matches!(method, Method::Invite | Method::Update);
        if refreshes && (200..300).contains(&out.status) {
            if let Some(call) = self.calls.get_mut(&id) {
                call.session_expiry = crate::call::session_expiry(&out.headers, Instant::now());
            }
        }
        let ends_call = method == Method::Bye && out.status >= 200;
        self.respond(server, out).await;
        if ends_call {
            self.end_call(id, EndReason::Bye(to_side));
        }
    }

    /// A relayed request got no answer in time.
    pub(crate) async fn relay_timeout(
        &mut self,
        call: Option<CallRef>,
        client: &TransactionRef,
        server: &TransactionRef,
    ) {
        let method = self
            .clients
            .get(client)
            .map(|c| c.transaction.request().method.clone());
        if method == Some(Method::Bye) {
            // The far side is gone; the near side still hangs up cleanly.
            self.respond_with_status(server, 200, "OK").await;
            if let Some(id) = call {
                self.end_call(id, EndReason::TransactionTimeout);
            }
            return;
        }
        self.respond_with_status(server, 408, "Request Timeout")
            .await;
        let Some(id) = call else { return };
        let initial = self
            .calls
            .get(&id)
            .is_some_and(|c| matches!(c.phase, Phase::Calling(_)));
        if initial {
            self.end_call(id, EndReason::TransactionTimeout);
        }
    }

    /// Relays a request that belongs to no dialog, such as OPTIONS to an extension.
    pub(crate) async fn relay_out_of_dialog(
        &mut self,
        side: Side,
        request: Request,
        server: TransactionRef,
    ) {
        let out_side = side.other();
        let call_id = new_call_id(self.local[out_side].address);
        let out = self.initial_request(side, &request, &call_id, &new_tag());
        self.start_client(out_side, out, Purpose::Relay { call: None, server })
            .await;
    }
}
