//! Which calls callvault records, decided per call before any media flows.
//!
//! The practice's policy forbids recording staff's personal calls, even with
//! consent, and lets patients opt out. A call excluded here is relayed with no
//! copy of its audio ever taken, so the decision has to be made on the initial
//! INVITE, from what the PBX side says and the configured lists alone:
//!
//! 1. a personal line: the practice-side extension is flagged personal, or the
//!    call is to or from a personal DDI;
//! 2. a patient who opted out: the external party's number, normalised to E.164,
//!    is on the opt-out list;
//! 3. a rule for the call's direction;
//! 4. the default.
//!
//! Only the PBX side is trusted to say who the practice-side party is: on an
//! inbound call the INVITE comes from the trunk, so its headers are never read
//! for that; only the dialled number (DDI) and the config's map from DDIs to
//! extensions are. See `docs/policy.md`.
//!
//! Nothing here does I/O: the daemon loads the rules and the opt-out list and
//! asks [`Rules::decide`] about each call.

mod identity;
mod mask;
mod rules;

pub use identity::IdentitySource;
pub use mask::mask_number;
pub use rules::{Action, Call, Decision, DirectionRules, Rule, Rules};
