//! The INVITE that makes a call: setup, answer, CANCEL and its races with the answer,
//! the ACK, and the 2xx that callvault retransmits until the ACK comes.

use std::sync::Arc;
use std::time::Instant;

use callvault_media::Side;
use callvault_sip::dialog::Dialog;
use callvault_sip::{Method, Request, Response};
use tracing::{debug, info, Instrument as _};

use crate::call::{CallRef, InviteMap, Phase, Unacked};
use crate::core::{Core, Purpose, TransactionRef};
use crate::hook::{CallDirection, EndReason};
use crate::playout::Playout;
use crate::rewrite::{copy_end_to_end, has_sdp, new_call_id, new_tag};

impl Core {
    /// A new INVITE: a new call, relayed to the other side.
    pub(crate) async fn on_invite(&mut self, side: Side, request: Request, server: TransactionRef) {
        let trying = Response::for_request(&request, 100, "Trying");
        self.respond(&server, trying).await;

        let out_side = side.other();
        let call_id = new_call_id(self.local[out_side].address);
        let tag = new_tag();
        let mut out = self.initial_request(side, &request, &call_id, &tag);
        let client = match callvault_sip::transaction::TransactionKey::of_request_sent(&out) {
            Ok(key) => (out_side, key),
            Err(_) => return,
        };
        let id = match self
            .new_call(side, &request, server.clone(), client.clone(), call_id, tag)
            .await
        {
            Ok(id) => id,
            Err(error) => {
                info!(%error, "call refused: no media resources");
                self.respond_with_status(&server, 503, "Service Unavailable")
                    .await;
                return;
            }
        };
        if let Some(caller) = self.calls.get_mut(&id) {
            let local_tag = caller.caller.local_tag.clone();
            caller.caller.dialog = Dialog::uas(&request, &local_tag).ok();
        }
        let mut early = None;
        if has_sdp(&request.headers, &request.body) {
            let Some(mut offer) = self.anchored_description(id, side, &request.body).await else {
                self.respond_with_status(&server, 488, "Not Acceptable Here")
                    .await;
                self.end_call(id, EndReason::Failed(488));
                return;
            };
            early = self.early_announcement(id, side);
            if let Some(early) = &early {
                // The PBX answers in the codec the caller is already hearing.
                offer.keep_formats(offer.first_audio_stream().unwrap_or(0), &early.formats);
            }
            out.body = self.stamp_sdp(id, out_side, offer);
        }
        match early {
            Some(early) => {
                self.answer_early(id, &server, &request, early, out).await;
            }
            None => {
                let purpose = Purpose::Relay {
                    call: Some(id),
                    server,
                };
                self.start_client(out_side, out, purpose).await;
            }
        }
    }

    pub(crate) fn remember_invite(
        &mut self,
        id: CallRef,
        side: Side,
        request: &Request,
        out: &Request,
    ) {
        let (Ok(cseq), Ok(to_cseq)) = (request.headers.cseq(), out.headers.cseq()) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.invites.push(InviteMap {
                from: side,
                cseq: cseq.seq,
                to_cseq: to_cseq.seq,
            });
        }
    }

    /// An ACK for a 2xx: relayed end to end, with the answer SDP of a late offer.
    pub(crate) async fn on_ack(&mut self, side: Side, ack: Request) {
        let call_id = ack.headers.call_id().unwrap_or_default().to_owned();
        let Some(id) = self.call_index.get(&(side, call_id)).copied() else {
            debug!("ACK for no call dropped");
            return;
        };
        let Ok(cseq) = ack.headers.cseq() else { return };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.unacked
            .retain(|u| !(u.side == side && u.cseq == cseq.seq));
        let Some(at) = call
            .invites
            .iter()
            .position(|m| m.from == side && m.cseq == cseq.seq)
        else {
            return;
        };
        let map = call.invites.remove(at);
        let out_side = side.other();
        let local = self.local[out_side];
        let Some(dialog) = call.leg(out_side).dialog.as_ref() else {
            return;
        };
        let mut out = dialog.ack_for(map.to_cseq);
        out.headers.push_front("Via", local.via().0);
        copy_end_to_end(&ack.headers, &mut out.headers);
        if has_sdp(&ack.headers, &ack.body) {
            out.body = self
                .anchor_sdp(id, side, &ack.body)
                .await
                .unwrap_or_default();
        }
        let message = out.clone().into();
        if let Some(call) = self.calls.get_mut(&id) {
            call.acks_sent.retain(|(seq, _)| *seq != map.to_cseq);
            call.acks_sent.push((map.to_cseq, out));
        }
        self.send(out_side, self.peer[out_side], &message);
    }

    /// A 2xx to an INVITE arrived again: the ACK was lost, so send it again.
    pub(crate) async fn resend_ack(&mut self, side: Side, response: &Response) {
        let call_id = response.headers.call_id().unwrap_or_default().to_owned();
        let Some(id) = self.call_index.get(&(side, call_id)).copied() else {
            return;
        };
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        let ack = self.calls.get(&id).and_then(|call| {
            call.acks_sent
                .iter()
                .find(|(seq, _)| *seq == cseq.seq)
                .map(|(_, ack)| ack.clone())
        });
        if let Some(ack) = ack {
            self.send(side, self.peer[side], &ack.into());
        }
    }

    /// A 2xx to an INVITE whose 2xx callvault already relayed (RFC 6026 Accepted).
    pub(crate) fn is_answer_retransmission(
        &self,
        server: &TransactionRef,
        response: &Response,
    ) -> bool {
        let is_invite_2xx = (200..300).contains(&response.status)
            && response
                .headers
                .cseq()
                .is_ok_and(|c| c.method == Method::Invite);
        is_invite_2xx
            && self
                .servers
                .get(server)
                .and_then(|s| s.transaction.last_response())
                .is_some_and(|last| (200..300).contains(&last.status))
    }

    pub(crate) async fn on_initial_invite_response(
        &mut self,
        id: CallRef,
        client: &TransactionRef,
        server: &TransactionRef,
        response: Response,
    ) {
        let status = response.status;
        self.learn_callee_dialog(id, client, &response);
        let cancelled = self
            .calls
            .get(&id)
            .is_some_and(|c| matches!(&c.phase, Phase::Calling(x) if x.cancelled));
        match status {
            101..=199 => {
                self.mark_provisional(id).await;
                if !response.body.is_empty() && !cancelled {
                    self.on_early_media(id);
                }
                if !cancelled {
                    self.relay_to_caller(id, server, response).await;
                }
            }
            200..=299 if cancelled => self.answered_after_cancel(id, server, &response).await,
            200..=299 => self.on_answer(id, server, response).await,
            _ => {
                let reason = if cancelled {
                    EndReason::Cancelled
                } else {
                    EndReason::Failed(status)
                };
                self.relay_to_caller(id, server, response).await;
                self.end_call(id, reason);
            }
        }
    }

    /// The callee's tag makes the callee's dialog (early on 1xx, confirmed on 2xx).
    fn learn_callee_dialog(&mut self, id: CallRef, client: &TransactionRef, response: &Response) {
        let Some(invite) = self.client_request(client) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let has_tag = response.headers.to().is_ok_and(|to| to.tag().is_some());
        if call.callee.dialog.is_none() && has_tag {
            call.callee.dialog = Dialog::uac(&invite, response).ok();
        }
        if (200..300).contains(&response.status) {
            if let Some(dialog) = call.callee.dialog.as_mut() {
                dialog.confirm();
            }
            if let Some(dialog) = call.caller.dialog.as_mut() {
                dialog.confirm();
            }
        }
    }

    async fn mark_provisional(&mut self, id: CallRef) {
        let mut send_cancel = false;
        if let Some(call) = self.calls.get_mut(&id) {
            if let Phase::Calling(calling) = &mut call.phase {
                send_cancel = calling.cancelled && !calling.provisional_seen;
                calling.provisional_seen = true;
            }
        }
        if send_cancel {
            self.send_cancel(id).await;
        }
    }

    async fn on_answer(&mut self, id: CallRef, server: &TransactionRef, response: Response) {
        self.practice_answered(id);
        let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or_default();
        if let Some(call) = self.calls.get_mut(&id) {
            call.phase = Phase::Answered;
            call.answered = Some(Instant::now());
            call.invites.push(InviteMap {
                from: call.caller.side,
                cseq,
                to_cseq: cseq,
            });
            call.span.in_scope(|| info!("call answered"));
            if !call.tapped {
                let tap = self.hook.on_answer(&call.info);
                call.tapped = tap.is_some();
                call.media.set_tap(tap);
            }
        }
        self.relay_to_caller(id, server, response).await;
        // After the relay: the trunk's answer SDP, and so its codec, is known now.
        self.announce(id);
    }

    /// Plays the recording announcement to the external party of a recorded
    /// outbound call, holding the parties apart until it ends.
    fn announce(&mut self, id: CallRef) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.info.direction != CallDirection::Outbound || !call.tapped {
            return;
        }
        let Some(packets) = self.hook.announcement(&call.info) else {
            return;
        };
        let media = call.media.own_media();
        media.set_joined(false);
        call.span
            .in_scope(|| info!(packets = packets.len(), "announcement playing"));
        let playout = Playout {
            media,
            announcement: packets,
            ringback: Vec::new(),
            practice_heard: Arc::default(),
        };
        tokio::spawn(playout.run().instrument(call.span.clone()));
    }

    /// A provisional response carries SDP: early media (RFC 3960) may flow, and the
    /// hook may start recording it.
    fn on_early_media(&mut self, id: CallRef) {
        self.practice_heard(id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.tapped {
            let tap = self.hook.on_early_media(&call.info);
            call.tapped = tap.is_some();
            call.media.set_tap(tap);
        }
    }

    /// The callee answered as the caller's CANCEL crossed: ACK and BYE the callee, tell
    /// the caller its INVITE was terminated (RFC 3261 §9.1, §15).
    async fn answered_after_cancel(
        &mut self,
        id: CallRef,
        server: &TransactionRef,
        response: &Response,
    ) {
        let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let callee = self.calls.get(&id).map(|c| c.callee.side);
        if let (Some(side), Some(call)) = (callee, self.calls.get_mut(&id)) {
            if let Some(dialog) = call.callee.dialog.as_ref() {
                let mut ack = dialog.ack_for(cseq);
                ack.headers.push_front("Via", self.local[side].via().0);
                call.acks_sent.push((cseq, ack.clone()));
                call.phase = Phase::Answered;
                self.send(side, self.peer[side], &ack.into());
                self.send_bye(id, side).await;
            }
        }
        self.respond_with_status(server, 487, "Request Terminated")
            .await;
        self.end_call(id, EndReason::Cancelled);
    }

    /// Sends the callee a CANCEL for callvault's INVITE.
    async fn send_cancel(&mut self, id: CallRef) {
        let Some(Phase::Calling(calling)) = self.calls.get(&id).map(|c| &c.phase) else {
            return;
        };
        let client = calling.client.clone();
        let Some(invite) = self.client_request(&client) else {
            return;
        };
        let cancel = cancel_for(&invite);
        self.start_client(client.0, cancel, Purpose::Local).await;
    }

    /// The caller cancelled its INVITE; the 200 to the CANCEL is already sent.
    pub(crate) async fn cancel_call(&mut self, invite_server: &TransactionRef) {
        let id = self.calls.iter().find_map(|(id, call)| match &call.phase {
            Phase::Calling(calling) if &calling.server == invite_server => Some(*id),
            _ => None,
        });
        let Some(id) = id else { return };
        if self.cancel_before_offer(id).await {
            return;
        }
        let mut send_now = false;
        if let Some(call) = self.calls.get_mut(&id) {
            if let Phase::Calling(calling) = &mut call.phase {
                calling.cancelled = true;
                send_now = calling.provisional_seen;
            }
            call.span.in_scope(|| info!("caller cancelled"));
        }
        if send_now {
            self.send_cancel(id).await;
        }
    }

    /// Relays a response from the callee's leg to the caller's INVITE.
    async fn relay_to_caller(&mut self, id: CallRef, server: &TransactionRef, response: Response) {
        self.relay_in_dialog_response(id, server.0.other(), server, response)
            .await;
    }

    /// Over UDP the UAS retransmits its 2xx until the ACK arrives (RFC 3261 §13.3.1.4).
    pub(crate) fn await_ack(&mut self, id: CallRef, side: Side, response: &Response) {
        let t1 = self.timers.t1;
        let reliable = self.reliable(side);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let at = Instant::now();
        call.unacked.retain(|u| !(u.side == side && u.cseq == cseq));
        call.unacked.push(Unacked {
            side,
            cseq,
            response: response.clone(),
            next: if reliable { at + 64 * t1 } else { at + t1 },
            interval: t1,
            give_up: at + 64 * t1,
        });
    }

    /// Sends due 2xx retransmissions; a call whose ACK never came is hung up.
    pub(crate) async fn retransmit_answers(&mut self, id: CallRef, now: Instant) {
        let t2 = self.timers.t2;
        let mut resend = Vec::new();
        let mut gave_up = false;
        if let Some(call) = self.calls.get_mut(&id) {
            for unacked in call.unacked.iter_mut().filter(|u| u.next <= now) {
                if unacked.give_up <= now {
                    gave_up = true;
                    continue;
                }
                resend.push((unacked.side, unacked.response.clone()));
                unacked.interval = (unacked.interval * 2).min(t2);
                unacked.next = now + unacked.interval;
            }
        }
        for (side, response) in resend {
            let to = self.servers_source(side);
            self.send(side, to, &response.into());
        }
        if gave_up {
            debug!(call = id, "no ACK for a 2xx; hanging up");
            self.hang_up(id, EndReason::TransactionTimeout).await;
        }
    }

    /// Where to send responses on a side: its peer. callvault answers only its peers.
    fn servers_source(&self, side: Side) -> std::net::SocketAddr {
        self.peer[side]
    }
}

/// A CANCEL for `invite` (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq
/// number and top Via, so the callee matches it to the INVITE's transaction.
fn cancel_for(invite: &Request) -> Request {
    let mut headers = callvault_sip::Headers::new();
    if let Some(via) = invite.headers.get("Via") {
        headers.push("Via", via);
    }
    for name in ["Route", "From", "To", "Call-ID"] {
        for value in invite.headers.get_all(name) {
            headers.push(name, value);
        }
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or_default();
    headers.push("CSeq", format!("{seq} CANCEL"));
    headers.push("Max-Forwards", "70");
    Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        headers,
        body: bytes::Bytes::new(),
    }
}
