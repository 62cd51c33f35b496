//! The rules, and the decision they give for one call.

use std::collections::{BTreeMap, BTreeSet};

use callvault_sip::Headers;
use callvault_store::number::{normalise, DEFAULT_COUNTRY, E164};
use callvault_store::opt_out::OptOutList;
use callvault_store::CallDirection;
use serde::Deserialize;

use crate::identity::{in_dialog_identities, outbound_identity, IdentitySource};

/// Whether a call is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Record,
    Exclude,
}

/// The rule that decided, as logs and the excluded-calls metric name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    PersonalExtension,
    PersonalDdi,
    OptOut,
    Direction,
    Default,
}

impl Rule {
    pub const ALL: [Self; 5] = [
        Self::PersonalExtension,
        Self::PersonalDdi,
        Self::OptOut,
        Self::Direction,
        Self::Default,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PersonalExtension => "personal_extension",
            Self::PersonalDdi => "personal_ddi",
            Self::OptOut => "opt_out",
            Self::Direction => "direction",
            Self::Default => "default",
        }
    }
}

/// What to do with calls of each direction; `None` leaves it to the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionRules {
    pub inbound: Option<Action>,
    pub outbound: Option<Action>,
    pub internal: Option<Action>,
}

impl DirectionRules {
    fn for_direction(&self, direction: CallDirection) -> Option<Action> {
        match direction {
            CallDirection::Inbound => self.inbound,
            CallDirection::Outbound => self.outbound,
            CallDirection::Internal => self.internal,
        }
    }
}

/// The recording policy, as the config states it, numbers already normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Extensions whose calls are personal: never recorded.
    pub personal_extensions: BTreeSet<String>,
    /// Numbers of personal lines: an inbound call to one, or an outbound call that
    /// the PBX presents as from one, is never recorded.
    pub personal_ddis: BTreeSet<E164>,
    /// The extension each of the practice's numbers rings, for inbound calls.
    pub ddi_extensions: BTreeMap<E164, String>,
    /// The header the PBX puts the calling extension in, if it sets one.
    pub identity_header: Option<String>,
    pub identity_order: Vec<IdentitySource>,
    pub directions: DirectionRules,
    pub default: Action,
}

impl Default for Rules {
    /// Record every call: what the practice's policy asks when nothing is flagged.
    fn default() -> Self {
        Self {
            personal_extensions: BTreeSet::new(),
            personal_ddis: BTreeSet::new(),
            ddi_extensions: BTreeMap::new(),
            identity_header: None,
            identity_order: IdentitySource::DEFAULT_ORDER.to_vec(),
            directions: DirectionRules::default(),
            default: Action::Record,
        }
    }
}

/// What the policy is told of a call: its initial INVITE, as the B2BUA got it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub direction: CallDirection,
    /// The From user part or number, as the calling side sent it.
    pub caller: &'a str,
    /// The Request-URI's user part or number: the dialled number or extension.
    pub callee: &'a str,
    /// The initial INVITE's headers, as the calling side sent them.
    pub headers: &'a Headers,
}

/// The decision for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub rule: Rule,
    /// The practice-side extension, when a trusted source named one.
    pub extension: Option<String>,
    /// The external party's number in E.164, when it has one.
    pub external: Option<E164>,
}

impl Rules {
    /// Decides whether `call` is recorded, and by which rule.
    pub fn decide(&self, call: &Call<'_>, opt_outs: &OptOutList) -> Decision {
        self.apply(self.practice_party(call), call, opt_outs)
    }

    /// Decides again when an in-dialog request from the PBX (`request`: a REFER,
    /// or a re-INVITE or UPDATE) names a new practice-side party for `call`, as a
    /// transfer does. `None` when it names nobody: the decision in force stands.
    ///
    /// Only requests the PBX sent may be given here; the trunk is never trusted
    /// to say who the practice-side party is.
    pub fn decide_again(
        &self,
        call: &Call<'_>,
        request: &Headers,
        opt_outs: &OptOutList,
    ) -> Option<Decision> {
        let header = self.identity_header.as_deref();
        let identities = in_dialog_identities(request, header, &self.identity_order);
        if identities.is_empty() {
            return None;
        }
        Some(self.apply(Practice::from_identities(identities), call, opt_outs))
    }

    /// The rules, in order, for a call whose practice side is known.
    fn apply(&self, practice: Practice, call: &Call<'_>, opt_outs: &OptOutList) -> Decision {
        let external = normalise(external_party(call), DEFAULT_COUNTRY).ok();
        let decide = |action, rule| Decision {
            action,
            rule,
            extension: practice.extension.clone(),
            external: external.clone(),
        };
        let personal_extension = practice
            .extension
            .as_ref()
            .is_some_and(|extension| self.personal_extensions.contains(extension));
        if personal_extension {
            return decide(Action::Exclude, Rule::PersonalExtension);
        }
        if practice
            .numbers
            .iter()
            .any(|number| self.personal_ddis.contains(number))
        {
            return decide(Action::Exclude, Rule::PersonalDdi);
        }
        if external
            .as_ref()
            .is_some_and(|number| opt_outs.contains(number))
        {
            return decide(Action::Exclude, Rule::OptOut);
        }
        match self.directions.for_direction(call.direction) {
            Some(action) => decide(action, Rule::Direction),
            None => decide(self.default, Rule::Default),
        }
    }

    /// The practice-side extension and numbers, from trusted sources only.
    fn practice_party(&self, call: &Call<'_>) -> Practice {
        match call.direction {
            CallDirection::Inbound => self.inbound_practice_party(call),
            CallDirection::Outbound | CallDirection::Internal => self.outbound_practice_party(call),
        }
    }

    /// An inbound call's practice party is the number dialled: the trunk sends
    /// it, but only as the address the PBX routes on, never as a claim to trust.
    fn inbound_practice_party(&self, call: &Call<'_>) -> Practice {
        let uses_ddi = self.identity_order.contains(&IdentitySource::Ddi);
        let ddi = normalise(call.callee, DEFAULT_COUNTRY)
            .ok()
            .filter(|_| uses_ddi);
        Practice {
            extension: ddi
                .as_ref()
                .and_then(|ddi| self.ddi_extensions.get(ddi).cloned()),
            numbers: ddi.into_iter().collect(),
        }
    }

    /// An outbound call comes from the PBX: the first source in the configured
    /// order that names the calling extension wins. Every source that is a full
    /// number is also checked against the personal DDIs.
    fn outbound_practice_party(&self, call: &Call<'_>) -> Practice {
        let header = self.identity_header.as_deref();
        let identities: Vec<String> = self
            .identity_order
            .iter()
            .filter_map(|&source| outbound_identity(source, call.headers, header, call.caller))
            .collect();
        Practice::from_identities(identities)
    }
}

/// The practice side of a call, as far as trusted sources tell.
struct Practice {
    extension: Option<String>,
    numbers: Vec<E164>,
}

impl Practice {
    /// The first identity is the extension; every full number among them counts
    /// against the personal DDIs.
    fn from_identities(identities: Vec<String>) -> Self {
        let numbers = identities
            .iter()
            .filter_map(|identity| normalise(identity, DEFAULT_COUNTRY).ok())
            .collect();
        Self {
            extension: identities.into_iter().next(),
            numbers,
        }
    }
}

/// The external party: the caller of an inbound call, the callee otherwise.
fn external_party<'a>(call: &Call<'a>) -> &'a str {
    match call.direction {
        CallDirection::Inbound => call.caller,
        CallDirection::Outbound | CallDirection::Internal => call.callee,
    }
}
