//! One SDP session per leg, whoever's description callvault is passing on.
//!
//! RFC 3264 §8 asks a party to keep the `o=` username and session id of its first
//! description for the whole session, and to raise the version by one each time
//! the description changes; some user agents ignore a description whose version
//! did not change. Each side sees callvault as that party, but what callvault
//! sends a side is made from what several others sent: the far side's phone,
//! another phone after a transfer, or callvault's own early answer for the
//! recording announcement. So callvault gives each leg an origin of its own and
//! numbers the versions itself. It also keeps the far side's user names out of
//! what the other side sees.

use callvault_sip::sdp::{Origin, SessionDescription};

/// The origin of the descriptions callvault has sent one side of a call.
#[derive(Debug)]
pub(crate) struct SentOrigin {
    origin: Origin,
    /// The last description sent, as sent; `None` before the first.
    last: Option<Vec<u8>>,
}

impl SentOrigin {
    /// A new session: a random id (RFC 8866 §5.2 leaves its choice to the
    /// sender) and no user name.
    pub(crate) fn new() -> Self {
        Self {
            origin: Origin {
                username: "-".to_owned(),
                session_id: rand::random::<u32>().to_string(),
                version: 1,
            },
            last: None,
        }
    }

    /// Gives `sdp`, about to be sent, this leg's origin: the version of the last
    /// description if nothing else changed, the next one if something did.
    pub(crate) fn stamp(&mut self, sdp: &mut SessionDescription) {
        sdp.set_origin(&self.origin);
        let body = sdp.to_bytes();
        match &self.last {
            Some(last) if *last == body => {}
            Some(_) => {
                self.origin.version = self.origin.version.wrapping_add(1);
                sdp.set_origin(&self.origin);
                self.last = Some(sdp.to_bytes());
            }
            None => self.last = Some(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(origin: &str, port: u16) -> SessionDescription {
        let text = format!(
            "v=0\r\no={origin} IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\n"
        );
        SessionDescription::parse(text.as_bytes()).unwrap()
    }

    fn stamped(sent: &mut SentOrigin, mut sdp: SessionDescription) -> Origin {
        sent.stamp(&mut sdp);
        sdp.origin().unwrap()
    }

    #[test]
    fn one_origin_per_leg_whose_version_rises_only_when_the_description_changes() {
        let mut sent = SentOrigin::new();
        let first = stamped(&mut sent, description("early 10 1", 4000));
        assert_eq!(first.username, "-");
        assert_eq!(first.version, 1);

        // The same session from another party, as the answer repeated in a 200.
        let same = stamped(&mut sent, description("pbx 77 5", 4000));
        assert_eq!(same, first);

        let moved = stamped(&mut sent, description("pbx 77 6", 4002));
        assert_eq!(moved.session_id, first.session_id);
        assert_eq!(moved.version, 2);

        let transferred = stamped(&mut sent, description("phone2 3 1", 4002));
        assert_eq!(transferred, moved);
    }

    #[test]
    fn legs_have_sessions_of_their_own() {
        let ids: std::collections::HashSet<_> = (0..8)
            .map(|_| stamped(&mut SentOrigin::new(), description("a 1 1", 4000)).session_id)
            .collect();
        assert!(ids.len() > 1, "{ids:?}");
    }
}
