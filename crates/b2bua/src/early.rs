//! The recording announcement to the caller of an inbound call, as early media.
//!
//! callvault answers the trunk's offer itself in a 183 (RFC 3960's gateway
//! model) that accepts one codec the announcement can be played in, and plays the
//! announcement in it while the parties are held apart. The PBX is offered the
//! same codec only, either at once (the practice's phones ring during the
//! announcement) or once the announcement is over. When the announcement ends
//! before the practice answers, callvault plays ringing tone in the same stream;
//! the parties are joined once the announcement is over and the practice has
//! answered or sent early media of its own (see `playout.rs`).
//!
//! Every provisional response the PBX sends without SDP is passed on with
//! callvault's answer in it. A caller that received early media and then a 180
//! without SDP may stop playing the early media and ring locally instead: baresip
//! does, and the caller would hear neither the announcement nor the ringing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use callvault_media::Side;
use callvault_sip::sdp::SessionDescription;
use callvault_sip::{Request, Response};
use tracing::{info, Instrument as _};

use crate::call::CallRef;
use crate::core::{Core, Purpose, TransactionRef};
use crate::hook::{EarlyAnnouncement, EndReason};
use crate::playout::Playout;

/// An inbound call that callvault answered itself to play the announcement.
#[derive(Debug)]
pub(crate) struct EarlyAnswer {
    /// The SDP of callvault's 183, repeated in the PBX's provisional responses
    /// that carry none.
    pub answer: Bytes,
    /// Set when the practice answered or sent early media: the ringing stops.
    pub practice_heard: Arc<AtomicBool>,
    /// The INVITE to the PBX, when it waits for the announcement to end.
    pub deferred_offer: Option<DeferredOffer>,
}

/// The INVITE to the PBX, held back until the announcement has played.
#[derive(Debug)]
pub(crate) struct DeferredOffer {
    pub at: Instant,
    pub request: Request,
    /// The caller's INVITE server transaction.
    pub server: TransactionRef,
}

impl Core {
    /// The announcement for an inbound call's caller, if the hook has one for it:
    /// asked once the trunk's offer has been passed to the hook.
    pub(crate) fn early_announcement(&self, id: CallRef, side: Side) -> Option<EarlyAnnouncement> {
        if side != Side::Trunk {
            return None;
        }
        let call = self.calls.get(&id)?;
        if requires_reliable_provisionals(&call.info.invite_headers) {
            // callvault's own 183 is not sent reliably (RFC 3262), so a caller
            // that requires it gets the call without the announcement.
            call.span
                .in_scope(|| info!("no announcement: the caller requires 100rel"));
            return None;
        }
        call.span
            .in_scope(|| self.hook.early_announcement(&call.info))
    }

    /// Answers the caller's offer in a 183 of callvault's own, starts the
    /// recording and the announcement, and sends `offer` to the PBX now or when
    /// the announcement is over.
    pub(crate) async fn answer_early(
        &mut self,
        id: CallRef,
        server: &TransactionRef,
        invite: &Request,
        early: EarlyAnnouncement,
        offer: Request,
    ) {
        let answer = self.early_answer_sdp(id, invite, &early.formats);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // From now, so that the recording holds the announcement.
        call.tapped = early.tap.is_some();
        call.media.set_tap(early.tap);
        let Some(answer) = answer else {
            // The hook found its codec in this very offer, so this is not seen.
            self.start_client(Side::Pbx, offer, relay_purpose(id, server))
                .await;
            return;
        };
        let playout = Playout {
            media: call.media.own_media(),
            announcement: early.announcement,
            ringback: early.ringback,
            practice_heard: Arc::new(AtomicBool::new(false)),
        };
        let length = playout.announcement_length();
        call.span.in_scope(|| {
            info!(
                seconds = length.as_secs_f32(),
                offered_after = early.before_offer,
                "announcement playing as early media"
            );
        });
        call.early = Some(EarlyAnswer {
            answer: answer.clone(),
            practice_heard: Arc::clone(&playout.practice_heard),
            deferred_offer: None,
        });
        playout.media.set_joined(false);
        tokio::spawn(playout.run().instrument(call.span.clone()));

        let local_tag = call.caller.local_tag.clone();
        let contact = self.local[Side::Trunk].contact(None);
        let mut progress = session_progress(invite, &local_tag, contact);
        attach_sdp(&mut progress, answer);
        self.respond(server, progress).await;
        if early.before_offer {
            self.defer_offer(id, Instant::now() + length, offer, server);
        } else {
            self.start_client(Side::Pbx, offer, relay_purpose(id, server))
                .await;
        }
    }

    fn defer_offer(&mut self, id: CallRef, at: Instant, request: Request, server: &TransactionRef) {
        let early = self.calls.get_mut(&id).and_then(|call| call.early.as_mut());
        if let Some(early) = early {
            early.deferred_offer = Some(DeferredOffer {
                at,
                request,
                server: server.clone(),
            });
        }
    }

    /// The caller's offer, anchored on the trunk side and narrowed to `formats`,
    /// as the answer of the caller's leg.
    fn early_answer_sdp(&mut self, id: CallRef, invite: &Request, formats: &[u8]) -> Option<Bytes> {
        let address = self.local[Side::Trunk].address.ip();
        let call = self.calls.get_mut(&id)?;
        let mut sdp = SessionDescription::parse(&invite.body).ok()?;
        let streams = sdp.media();
        let ports: Vec<Option<u16>> = (0..streams.len())
            .map(|index| call.media.local_rtp_port(Side::Trunk, index))
            .collect();
        sdp.anchor(address, &ports);
        sdp.keep_formats(sdp.first_audio_stream()?, formats);
        call.caller.sent_origin.stamp(&mut sdp);
        Some(Bytes::from(sdp.to_bytes()))
    }

    /// Sends the INVITEs to the PBX whose announcements are over.
    pub(crate) async fn send_deferred_offers(&mut self, now: Instant) {
        let due: Vec<_> = self
            .calls
            .iter_mut()
            .filter_map(|(id, call)| {
                let early = call.early.as_mut()?;
                let due = early.deferred_offer.as_ref()?.at <= now;
                due.then(|| early.deferred_offer.take().map(|offer| (*id, offer)))
                    .flatten()
            })
            .collect();
        for (id, offer) in due {
            if let Some(call) = self.calls.get(&id) {
                call.span
                    .in_scope(|| info!("announcement played; the PBX is offered the call"));
            }
            let purpose = relay_purpose(id, &offer.server);
            self.start_client(Side::Pbx, offer.request, purpose).await;
        }
    }

    /// When the next held-back INVITE is due.
    pub(crate) fn next_deferred_offer(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|call| Some(call.early.as_ref()?.deferred_offer.as_ref()?.at))
            .min()
    }

    /// The caller cancelled before the PBX was offered the call: nothing to
    /// cancel on the PBX side, so the call ends here. `false` if the PBX was
    /// offered it already.
    pub(crate) async fn cancel_before_offer(&mut self, id: CallRef) -> bool {
        let deferred = self
            .calls
            .get_mut(&id)
            .and_then(|call| call.early.as_mut()?.deferred_offer.take());
        let Some(offer) = deferred else {
            return false;
        };
        self.respond_with_status(&offer.server, 487, "Request Terminated")
            .await;
        self.end_call(id, EndReason::Cancelled);
        true
    }

    /// The practice sent early media: the ringing tone stops.
    pub(crate) fn practice_heard(&self, id: CallRef) {
        let early = self.calls.get(&id).and_then(|call| call.early.as_ref());
        if let Some(early) = early {
            early.practice_heard.store(true, Ordering::Relaxed);
        }
    }

    /// The practice answered: the ringing tone stops, and the caller's dialog
    /// is no longer early.
    pub(crate) fn practice_answered(&mut self, id: CallRef) {
        self.practice_heard(id);
        if let Some(call) = self.calls.get_mut(&id) {
            call.early = None;
        }
    }

    /// A provisional response from the PBX without SDP, about to go to the
    /// caller of a call callvault answered early, gets callvault's answer.
    pub(crate) fn keep_early_answer(&self, id: CallRef, response: &mut Response) {
        let early = self.calls.get(&id).and_then(|call| call.early.as_ref());
        let provisional = (101..200).contains(&response.status);
        if let Some(early) = early.filter(|_| provisional && response.body.is_empty()) {
            attach_sdp(response, early.answer.clone());
        }
    }
}

/// Whether an INVITE's `Require` names `100rel`.
fn requires_reliable_provisionals(headers: &callvault_sip::Headers) -> bool {
    headers
        .get_all("Require")
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim().eq_ignore_ascii_case("100rel"))
}

fn relay_purpose(id: CallRef, server: &TransactionRef) -> Purpose {
    Purpose::Relay {
        call: Some(id),
        server: server.clone(),
    }
}

fn session_progress(invite: &Request, local_tag: &str, contact: String) -> Response {
    let mut progress = Response::for_request(invite, 183, "Session Progress");
    crate::core::set_to_tag(&mut progress, local_tag);
    progress.headers.push("Contact", contact);
    progress
}

fn attach_sdp(response: &mut Response, sdp: Bytes) {
    response.headers.push("Content-Type", "application/sdp");
    response.body = sdp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_required_100rel_rules_the_announcement_out() {
        let mut headers = callvault_sip::Headers::new();
        headers.push("Supported", "100rel, timer");
        assert!(!requires_reliable_provisionals(&headers));
        headers.push("Require", "timer, 100REL");
        assert!(requires_reliable_provisionals(&headers));
    }
}
