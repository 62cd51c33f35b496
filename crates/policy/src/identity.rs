//! Who the practice-side party of a call is, from the sources the PBX controls.

use callvault_sip::{user_or_number, Headers, NameAddr};
use serde::Deserialize;

/// Where the practice-side party's identity may be read, tried in the configured
/// order until one gives an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentitySource {
    /// The header named in the config, which the PBX sets on outbound calls
    /// (FreePBX and Asterisk can add one per extension).
    Header,
    /// P-Asserted-Identity (RFC 3325), set by the PBX on outbound calls.
    PAssertedIdentity,
    /// The From header's user part, on outbound calls.
    From,
    /// The dialled number (the Request-URI's user part) of an inbound call,
    /// mapped to an extension by the config.
    Ddi,
}

impl IdentitySource {
    /// The order used when the config does not give one.
    pub const DEFAULT_ORDER: [Self; 4] =
        [Self::Header, Self::PAssertedIdentity, Self::From, Self::Ddi];
}

/// What an outbound INVITE's PBX-set source says, if it says anything.
///
/// These sources are read only from INVITEs the PBX sent: on an inbound call the
/// same headers come from the trunk, which must never decide what is recorded.
pub(crate) fn outbound_identity(
    source: IdentitySource,
    headers: &Headers,
    header_name: Option<&str>,
    caller: &str,
) -> Option<String> {
    let found = match source {
        IdentitySource::Header => header_name
            .and_then(|name| headers.get(name))
            .and_then(identity_in),
        IdentitySource::PAssertedIdentity => headers
            .get("P-Asserted-Identity")
            .and_then(|value| identity_in(first_of_list(value))),
        IdentitySource::From => Some(caller.to_owned()),
        IdentitySource::Ddi => None,
    };
    found.filter(|identity| !identity.is_empty())
}

/// Who an in-dialog request from the PBX says the practice-side party now is:
/// the target of a REFER (a transfer), then the configured header and
/// P-Asserted-Identity in the configured order. Empty when it names nobody.
pub(crate) fn in_dialog_identities(
    headers: &Headers,
    header_name: Option<&str>,
    order: &[IdentitySource],
) -> Vec<String> {
    let refer_to = headers.get("Refer-To").and_then(identity_in);
    let named = order.iter().filter_map(|&source| match source {
        IdentitySource::Header | IdentitySource::PAssertedIdentity => {
            outbound_identity(source, headers, header_name, "")
        }
        // From and the Request-URI of an in-dialog request name the dialog, not
        // a new party.
        IdentitySource::From | IdentitySource::Ddi => None,
    });
    refer_to.into_iter().chain(named).collect()
}

/// The user part or number of a header value that is a name-addr, a bare URI or
/// a bare extension (`205`).
fn identity_in(value: &str) -> Option<String> {
    let value = value.trim();
    if let Ok(name_addr) = NameAddr::parse(value) {
        return name_addr.user_or_number();
    }
    user_or_number(value).or_else(|| {
        let bare = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-_.".contains(&b));
        (bare && !value.is_empty()).then(|| value.to_owned())
    })
}

/// P-Asserted-Identity may carry a SIP and a tel URI, comma-separated; the
/// first is the one PBXs put the extension in.
fn first_of_list(value: &str) -> &str {
    let mut in_quotes = false;
    for (at, byte) in value.bytes().enumerate() {
        match byte {
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => return &value[..at],
            _ => {}
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.push(*name, *value);
        }
        headers
    }

    #[test]
    fn the_configured_header_may_hold_a_uri_or_a_bare_extension() {
        for value in [
            "205",
            "<sip:205@pbx.example>",
            "\"Dr Smith\" <sip:205@10.0.0.1>;x=1",
        ] {
            let headers = headers(&[("X-Practice-Extension", value)]);
            let found = outbound_identity(
                IdentitySource::Header,
                &headers,
                Some("x-practice-extension"),
                "",
            );
            assert_eq!(found.as_deref(), Some("205"), "{value}");
        }
    }

    #[test]
    fn p_asserted_identity_gives_its_first_uri() {
        let headers = headers(&[(
            "P-Asserted-Identity",
            "\"Reception, Desk\" <sip:201@pbx>, <tel:+441632960001>",
        )]);
        let found = outbound_identity(IdentitySource::PAssertedIdentity, &headers, None, "");
        assert_eq!(found.as_deref(), Some("201"));
    }

    #[test]
    fn a_missing_source_gives_nothing_and_from_gives_the_caller() {
        let empty = headers(&[]);
        let header = outbound_identity(IdentitySource::Header, &empty, Some("X-Ext"), "205");
        let unnamed = outbound_identity(IdentitySource::Header, &empty, None, "205");
        let ddi = outbound_identity(IdentitySource::Ddi, &empty, None, "205");
        assert_eq!((header, unnamed, ddi), (None, None, None));
        let from = outbound_identity(IdentitySource::From, &empty, None, "205");
        assert_eq!(from.as_deref(), Some("205"));
    }
}
