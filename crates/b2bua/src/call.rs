//! A call: two dialogs, one per side, and the media session between them.
//!
//! The caller's leg is the dialog in which callvault is the UAS; the callee's leg is the
//! one callvault creates as UAC. Requests and responses cross from one leg to the other
//! through `relay`, which rewrites what identifies a hop or a dialog and copies the rest.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use callvault_media::{MediaSession, Side};
use callvault_sip::dialog::Dialog;
use callvault_sip::sdp::SessionDescription;
use callvault_sip::{Method, Request, Response};
use tracing::{debug, info, Span};

use crate::core::{Core, TransactionRef};
use crate::early::EarlyAnswer;
use crate::hook::{CallDirection, CallInfo, EndReason};
use crate::origin::SentOrigin;

/// callvault's own number for a call.
pub(crate) type CallRef = u64;

/// One dialog of a call.
#[derive(Debug)]
pub(crate) struct Leg {
    pub side: Side,
    pub call_id: String,
    /// callvault's tag in this dialog.
    pub local_tag: String,
    /// `None` on the callee's leg until the callee answers with a tag.
    pub dialog: Option<Dialog>,
    /// The `o=` of the SDP callvault sends in this dialog.
    pub sent_origin: SentOrigin,
}

/// Where a call is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// The initial INVITE is out and not finally answered.
    Calling(Box<Calling>),
    /// Answered: in-dialog requests flow both ways.
    Answered,
}

#[derive(Debug)]
pub(crate) struct Calling {
    /// The caller's INVITE server transaction.
    pub server: TransactionRef,
    /// callvault's INVITE client transaction towards the callee.
    pub client: TransactionRef,
    pub cancelled: bool,
    /// A CANCEL may only be sent once the callee has sent a provisional (RFC 3261 §9.1).
    pub provisional_seen: bool,
}

/// A 2xx to an INVITE that callvault retransmits until the ACK comes (RFC 6026 §8.1).
#[derive(Debug)]
pub(crate) struct Unacked {
    pub side: Side,
    pub cseq: u32,
    pub response: Response,
    pub next: Instant,
    pub interval: Duration,
    pub give_up: Instant,
}

/// An INVITE relayed from one leg to the other, remembered to relay its ACK.
#[derive(Debug)]
pub(crate) struct InviteMap {
    pub from: Side,
    pub cseq: u32,
    pub to_cseq: u32,
}

#[derive(Debug)]
pub(crate) struct Call {
    pub info: CallInfo,
    pub span: Span,
    pub caller: Leg,
    pub callee: Leg,
    pub media: MediaSession,
    pub phase: Phase,
    pub unacked: Vec<Unacked>,
    pub invites: Vec<InviteMap>,
    /// ACKs sent to the callee's side, by CSeq, to answer 2xx retransmissions.
    pub acks_sent: Vec<(u32, Request)>,
    /// When the call was answered; media silence before that is not a timeout.
    pub answered: Option<Instant>,
    /// A side put the media on hold, so silence is expected.
    pub on_hold: bool,
    /// The recorder's tap is on the media (from early media or the answer).
    pub tapped: bool,
    /// When the negotiated session interval runs out unless refreshed (RFC 4028).
    pub session_expiry: Option<Instant>,
    /// callvault answered the caller's offer itself to play the announcement.
    pub early: Option<EarlyAnswer>,
}

impl Call {
    pub(crate) fn leg(&self, side: Side) -> &Leg {
        if self.caller.side == side {
            &self.caller
        } else {
            &self.callee
        }
    }

    pub(crate) fn leg_mut(&mut self, side: Side) -> &mut Leg {
        if self.caller.side == side {
            &mut self.caller
        } else {
            &mut self.callee
        }
    }

    pub(crate) fn next_retransmission(&self) -> Option<Instant> {
        self.unacked.iter().map(|u| u.next.min(u.give_up)).min()
    }
}

/// Direction of a call whose INVITE came from `side`.
pub(crate) fn direction_from(side: Side) -> CallDirection {
    match side {
        Side::Trunk => CallDirection::Inbound,
        Side::Pbx => CallDirection::Outbound,
    }
}

/// The user part of a SIP URI, or the number of a `tel:` URI; empty when there is none.
pub(crate) fn user_part(uri: &str) -> String {
    callvault_sip::user_or_number(uri).unwrap_or_default()
}

impl Core {
    /// Creates the call's record when its INVITE arrives.
    pub(crate) async fn new_call(
        &mut self,
        side: Side,
        request: &Request,
        server: TransactionRef,
        client: TransactionRef,
        callee_call_id: String,
        callee_tag: String,
    ) -> Result<CallRef, callvault_media::MediaError> {
        let media = self
            .media
            .open_session(self.media_ips.pbx, self.media_ips.trunk)
            .await?;
        let id = self.next_call;
        self.next_call += 1;
        let caller_call_id = request.headers.call_id().unwrap_or_default().to_owned();
        let info = CallInfo {
            id,
            direction: direction_from(side),
            caller: request
                .headers
                .from()
                .map(|f| user_part(&f.uri))
                .unwrap_or_default(),
            callee: user_part(&request.uri),
            invite_headers: request.headers.clone(),
            started: SystemTime::now(),
        };
        let span = tracing::info_span!(parent: None, "call", id, direction = ?info.direction);
        span.in_scope(|| {
            info!("call offered");
            self.hook.on_invite(&info);
        });
        let caller = Leg {
            side,
            call_id: caller_call_id.clone(),
            local_tag: crate::rewrite::new_tag(),
            dialog: None,
            sent_origin: SentOrigin::new(),
        };
        let callee = Leg {
            side: side.other(),
            call_id: callee_call_id.clone(),
            local_tag: callee_tag,
            dialog: None,
            sent_origin: SentOrigin::new(),
        };
        let phase = Phase::Calling(Box::new(Calling {
            server,
            client,
            cancelled: false,
            provisional_seen: false,
        }));
        let call = Call {
            info,
            span,
            caller,
            callee,
            media,
            phase,
            unacked: Vec::new(),
            invites: Vec::new(),
            acks_sent: Vec::new(),
            answered: None,
            on_hold: false,
            tapped: false,
            session_expiry: None,
            early: None,
        };
        self.calls.insert(id, call);
        self.stats.set_active_calls(self.calls.len());
        self.call_index.insert((side, caller_call_id), id);
        self.call_index.insert((side.other(), callee_call_id), id);
        Ok(id)
    }

    /// Forgets a call, tells the hook, and frees its media.
    pub(crate) fn end_call(&mut self, id: CallRef, reason: EndReason) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        let active_calls = self.calls.len();
        self.stats.set_active_calls(active_calls);
        self.stats.count_call_ended();
        call.span.in_scope(|| {
            let stats = call.media.stats();
            info!(?reason, active_calls, ?stats, "call ended");
        });
        self.hook.on_end(&call.info, reason);
        self.call_index
            .remove(&(call.caller.side, call.caller.call_id.clone()));
        self.call_index
            .remove(&(call.callee.side, call.callee.call_id.clone()));
    }

    /// Sends a BYE on one leg of an answered call, as callvault's own request.
    pub(crate) async fn send_bye(&mut self, id: CallRef, side: Side) {
        let Some(request) = self.in_dialog_request(id, side, Method::Bye, None) else {
            return;
        };
        self.start_client(side, request, crate::core::Purpose::Local)
            .await;
    }

    /// Builds a request in a leg's dialog, with callvault's Via and, where it belongs,
    /// Contact.
    pub(crate) fn in_dialog_request(
        &mut self,
        id: CallRef,
        side: Side,
        method: Method,
        max_forwards: Option<u32>,
    ) -> Option<Request> {
        let local = self.local[side];
        let dialog = self.calls.get_mut(&id)?.leg_mut(side).dialog.as_mut()?;
        let mut request = dialog.next_request(method);
        let (via, _) = local.via();
        request.headers.push_front("Via", via);
        request
            .headers
            .set("Max-Forwards", max_forwards.unwrap_or(70).to_string());
        if crate::rewrite::carries_contact(&request.method) {
            request.headers.set("Contact", local.contact(None));
        }
        Some(request)
    }

    /// Ends every call at shutdown with a BYE on both legs.
    pub(crate) async fn end_all_calls(&mut self) {
        let ids: Vec<CallRef> = self.calls.keys().copied().collect();
        for id in ids {
            self.hang_up(id, EndReason::Shutdown).await;
        }
    }

    /// Ends a call from callvault's side: BYE on each leg that has a dialog.
    pub(crate) async fn hang_up(&mut self, id: CallRef, reason: EndReason) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let sides = [call.caller.side, call.callee.side];
        let answered = matches!(call.phase, Phase::Answered);
        if answered {
            for side in sides {
                self.send_bye(id, side).await;
            }
        }
        self.end_call(id, reason);
    }

    /// Ends calls whose session was not refreshed in time, then calls whose media has
    /// been silent for too long (see `is_silent`).
    pub(crate) async fn sweep_media(&mut self) {
        let now = Instant::now();
        let expired: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, call)| call.session_expiry.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(call) = self.calls.get(&id) {
                call.span
                    .in_scope(|| info!("session expired without a refresh"));
            }
            self.hang_up(id, EndReason::SessionExpired).await;
        }
        let timeout = self.rtp_timeout;
        let silent: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, call)| is_silent(call, timeout))
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            if let Some(call) = self.calls.get(&id) {
                call.span
                    .in_scope(|| info!(timeout_s = timeout.as_secs(), "media timeout"));
            }
            self.hang_up(id, EndReason::MediaTimeout).await;
        }
    }

    /// Anchors an SDP body that came from `from`, for the other side: records where
    /// `from` wants media and puts callvault's addresses and ports in its place.
    pub(crate) async fn anchor_sdp(
        &mut self,
        id: CallRef,
        from: Side,
        body: &[u8],
    ) -> Option<Bytes> {
        let sdp = self.anchored_description(id, from, body).await?;
        Some(self.stamp_sdp(id, from.other(), sdp))
    }

    /// A description about to be sent to `to`, with the origin of the call's
    /// dialog on that side (see `origin.rs`).
    pub(crate) fn stamp_sdp(
        &mut self,
        id: CallRef,
        to: Side,
        mut sdp: SessionDescription,
    ) -> Bytes {
        if let Some(call) = self.calls.get_mut(&id) {
            call.leg_mut(to).sent_origin.stamp(&mut sdp);
        }
        Bytes::from(sdp.to_bytes())
    }

    /// [`anchor_sdp`](Self::anchor_sdp) before the origin is set.
    pub(crate) async fn anchored_description(
        &mut self,
        id: CallRef,
        from: Side,
        body: &[u8],
    ) -> Option<SessionDescription> {
        let to_address = self.local[from.other()].address.ip();
        let call = self.calls.get_mut(&id)?;
        let mut sdp = match SessionDescription::parse(body) {
            Ok(sdp) => sdp,
            Err(error) => {
                call.span
                    .in_scope(|| debug!(%error, side = from.as_str(), "unusable SDP"));
                return None;
            }
        };
        let streams = sdp.media();
        if let Err(error) = call.media.ensure_streams(streams.len()).await {
            call.span
                .in_scope(|| info!(%error, "no media ports for the call"));
            return None;
        }
        let mut ports = Vec::with_capacity(streams.len());
        for (index, stream) in streams.iter().enumerate() {
            call.media.set_remote(from, index, stream.rtp_address());
            call.media
                .set_remote_rtcp(from, index, stream.rtcp_address());
            if stream.protocol.eq_ignore_ascii_case("udptl") {
                // T.38 fax is not RTP-shaped; relay it as plain datagrams.
                call.media
                    .set_protocol(index, callvault_media::StreamProtocol::Udptl);
            }
            let local = call.media.local_rtp_port(from.other(), index);
            ports.push(if stream.port == 0 { None } else { local });
        }
        call.on_hold = streams
            .iter()
            .all(|s| s.is_hold() || s.rtp_address().is_none());
        let update = crate::hook::MediaUpdate {
            side: from,
            streams,
        };
        self.hook.on_media(&call.info, &update);
        sdp.anchor(to_address, &ports);
        Some(sdp)
    }
}

/// When a session whose 2xx carried `Session-Expires` should be ended if nobody
/// refreshes it: a margin before the interval runs out, as RFC 4028 §10 asks of the
/// side that is not the refresher. `None` when session timers are not in use.
pub(crate) fn session_expiry(headers: &callvault_sip::Headers, now: Instant) -> Option<Instant> {
    let value = headers.get("Session-Expires")?;
    let seconds: u64 = value.split(';').next()?.trim().parse().ok()?;
    // RFC 4028 §4: nothing below 90 seconds is a valid interval.
    let interval = Duration::from_secs(seconds.max(90));
    let margin = (interval / 3).min(Duration::from_secs(32));
    Some(now + interval - margin)
}

/// Whether the call's media has been silent for `timeout`: both ways, or from a
/// side that sent RTP and then stopped.
///
/// The second is a peer that vanished (a lost network, a crashed phone): the
/// survivor usually goes on sending, and waiting for silence both ways would
/// keep the call, and its recording, open for ever. A side that never sent is
/// left alone, since some endpoints only listen. Hold stops the clock.
fn is_silent(call: &Call, timeout: Duration) -> bool {
    let Some(answered) = call.answered else {
        return false;
    };
    if call.on_hold {
        return false;
    }
    let stats = call.media.stats();
    let quiet = |last: Option<Instant>| last.unwrap_or(answered).max(answered).elapsed() > timeout;
    let stopped = |last: Option<Instant>| last.is_some() && quiet(last);
    quiet(stats.last_rtp)
        || stopped(stats.pbx_to_trunk.last_rtp)
        || stopped(stats.trunk_to_pbx.last_rtp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_expiry_leaves_a_margin_before_the_interval() {
        let now = Instant::now();
        let mut headers = callvault_sip::Headers::new();
        assert_eq!(session_expiry(&headers, now), None);
        headers.push("Session-Expires", "1800;refresher=uac");
        assert_eq!(
            session_expiry(&headers, now),
            Some(now + Duration::from_secs(1768))
        );
        headers.set("Session-Expires", "90");
        assert_eq!(
            session_expiry(&headers, now),
            Some(now + Duration::from_secs(60))
        );
        headers.set("Session-Expires", "30");
        assert_eq!(
            session_expiry(&headers, now),
            Some(now + Duration::from_secs(60))
        );
    }

    #[test]
    fn user_part_of_sip_and_tel_uris() {
        assert_eq!(
            user_part("sip:+447700900123@trunk.example;user=phone"),
            "+447700900123"
        );
        assert_eq!(
            user_part("tel:+447700900123;phone-context=+44"),
            "+447700900123"
        );
        assert_eq!(user_part("sip:pbx.example"), "");
    }
}
