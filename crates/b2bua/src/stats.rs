//! Counters of the B2BUA's work, for the daemon's metrics.
//!
//! The caller makes a [`B2buaStats`], hands it to [`crate::serve`] and reads a
//! [`B2buaSnapshot`] whenever it likes; every counter is an atomic the event loop
//! and the receive loops bump, so reading never waits on them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use callvault_media::{EngineStats, MediaEngine, Side};
use callvault_sip::{Message, Method};

use crate::transport::TransportStats;

/// The request methods counted by name; any other counts as `other`.
const COUNTED_METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "UPDATE",
    "INFO",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "MESSAGE",
    "PUBLISH",
    "other",
];

/// Response classes as metric labels (RFC 3261 §7.2).
const RESPONSE_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

const SIDES: [Side; 2] = [Side::Pbx, Side::Trunk];

/// What the B2BUA has done since it started; shared with the caller.
#[derive(Debug, Default)]
pub struct B2buaStats {
    pub(crate) transport: TransportStats,
    requests: [[AtomicU64; COUNTED_METHODS.len()]; 2],
    responses: [[AtomicU64; RESPONSE_CLASSES.len()]; 2],
    active_calls: AtomicU64,
    calls_ended: AtomicU64,
    /// The relay's engine, once [`crate::serve`] has made it.
    media: OnceLock<MediaEngine>,
}

/// A copy of every counter at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct B2buaSnapshot {
    /// SIP requests received, by side and method.
    pub requests: Vec<(Side, &'static str, u64)>,
    /// SIP responses received, by side and class.
    pub responses: Vec<(Side, &'static str, u64)>,
    pub active_calls: u64,
    pub calls_ended: u64,
    /// SIP messages from neither the PBX nor the trunk.
    pub sip_strangers: u64,
    pub sip_malformed: u64,
    /// The relay's counters; all zero before the B2BUA started.
    pub media: EngineStats,
}

impl B2buaStats {
    /// Counts a message received from `side`'s peer.
    pub(crate) fn count_message(&self, side: Side, message: &Message) {
        let counter = match message {
            Message::Request(request) => {
                &self.requests[side_index(side)][method_index(&request.method)]
            }
            Message::Response(response) => {
                let Some(class) = class_index(response.status) else {
                    return;
                };
                &self.responses[side_index(side)][class]
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_active_calls(&self, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        self.active_calls.store(count, Ordering::Relaxed);
    }

    pub(crate) fn count_call_ended(&self) {
        self.calls_ended.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_media(&self, media: &MediaEngine) {
        // One stats value is meant for one B2BUA: a second engine is not kept.
        let _ = self.media.set(media.clone());
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> B2buaSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut snapshot = B2buaSnapshot {
            active_calls: load(&self.active_calls),
            calls_ended: load(&self.calls_ended),
            sip_strangers: load(&self.transport.strangers),
            sip_malformed: load(&self.transport.malformed),
            media: self.media.get().map(MediaEngine::stats).unwrap_or_default(),
            ..B2buaSnapshot::default()
        };
        for side in SIDES {
            let requests = COUNTED_METHODS.iter().zip(&self.requests[side_index(side)]);
            snapshot
                .requests
                .extend(requests.map(|(method, count)| (side, *method, load(count))));
            let responses = RESPONSE_CLASSES
                .iter()
                .zip(&self.responses[side_index(side)]);
            snapshot
                .responses
                .extend(responses.map(|(class, count)| (side, *class, load(count))));
        }
        snapshot
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Pbx => 0,
        Side::Trunk => 1,
    }
}

/// Where `method` is counted: its name in [`COUNTED_METHODS`], else `other`.
fn method_index(method: &Method) -> usize {
    let name = match method {
        Method::Extension(_) => "other",
        known => known.as_str(),
    };
    COUNTED_METHODS
        .iter()
        .position(|counted| *counted == name)
        .unwrap_or(COUNTED_METHODS.len() - 1)
}

fn class_index(status: u16) -> Option<usize> {
    let class = usize::from(status / 100);
    (1..=RESPONSE_CLASSES.len())
        .contains(&class)
        .then(|| class - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_method_has_its_own_label() {
        let known = [
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Options,
            Method::Register,
            Method::Prack,
            Method::Update,
            Method::Info,
            Method::Refer,
            Method::Notify,
            Method::Subscribe,
            Method::Message,
            Method::Publish,
        ];
        for method in &known {
            assert_eq!(COUNTED_METHODS[method_index(method)], method.as_str());
        }
        let extension = Method::Extension("FOO".to_owned());
        assert_eq!(COUNTED_METHODS[method_index(&extension)], "other");
    }

    #[test]
    fn statuses_fall_into_their_class() {
        assert_eq!(class_index(100), Some(0));
        assert_eq!(class_index(183), Some(0));
        assert_eq!(class_index(200), Some(1));
        assert_eq!(class_index(699), Some(5));
        assert_eq!(class_index(99), None);
        assert_eq!(class_index(700), None);
    }
}
