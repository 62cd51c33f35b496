//! Every rule of the recording policy, on INVITEs as PBXs and trunks send them.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use callvault_policy::{Action, Call, DirectionRules, IdentitySource, Rule, Rules};
use callvault_sip::Headers;
use callvault_store::number::{normalise, CountryCode, E164};
use callvault_store::opt_out::OptOutList;
use callvault_store::CallDirection;

fn number(text: &str) -> E164 {
    normalise(text, CountryCode::UK).unwrap()
}

fn rules() -> Rules {
    Rules {
        personal_extensions: ["205".to_owned()].into(),
        personal_ddis: [number("01632 960999")].into(),
        ddi_extensions: [
            (number("01632960123"), "200".to_owned()),
            (number("01632960205"), "205".to_owned()),
        ]
        .into(),
        identity_header: Some("X-Practice-Extension".to_owned()),
        ..Rules::default()
    }
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in pairs {
        headers.push(*name, *value);
    }
    headers
}

fn outbound<'a>(caller: &'a str, callee: &'a str, headers: &'a Headers) -> Call<'a> {
    Call {
        direction: CallDirection::Outbound,
        caller,
        callee,
        headers,
    }
}

fn inbound<'a>(caller: &'a str, callee: &'a str, headers: &'a Headers) -> Call<'a> {
    Call {
        direction: CallDirection::Inbound,
        caller,
        callee,
        headers,
    }
}

fn no_opt_outs() -> OptOutList {
    OptOutList::default()
}

#[test]
fn a_call_from_a_personal_extension_is_excluded_whichever_source_names_it() {
    let rules = rules();
    let by_header = headers(&[("X-Practice-Extension", "205")]);
    let by_pai = headers(&[("P-Asserted-Identity", "<sip:205@pbx>")]);
    let none = headers(&[]);
    for (caller, headers) in [
        ("trunkuser", &by_header),
        ("trunkuser", &by_pai),
        ("205", &none),
    ] {
        let decision = rules.decide(&outbound(caller, "07700900123", headers), &no_opt_outs());
        assert_eq!(decision.action, Action::Exclude, "{headers:?}");
        assert_eq!(decision.rule, Rule::PersonalExtension);
        assert_eq!(decision.extension.as_deref(), Some("205"));
    }
}

#[test]
fn the_first_source_in_order_wins() {
    let mut rules = rules();
    let headers = headers(&[
        ("X-Practice-Extension", "201"),
        ("P-Asserted-Identity", "<sip:205@pbx>"),
    ]);
    let call = outbound("201", "07700900123", &headers);
    assert_eq!(rules.decide(&call, &no_opt_outs()).action, Action::Record);

    rules.identity_order = vec![IdentitySource::PAssertedIdentity, IdentitySource::Header];
    let decision = rules.decide(&call, &no_opt_outs());
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Exclude, Rule::PersonalExtension)
    );
}

#[test]
fn an_inbound_call_to_a_personal_extensions_ddi_is_excluded() {
    let none = headers(&[]);
    let decision = rules().decide(
        &inbound("07700900123", "+441632960205", &none),
        &no_opt_outs(),
    );
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Exclude, Rule::PersonalExtension)
    );
    assert_eq!(decision.extension.as_deref(), Some("205"));
}

#[test]
fn a_personal_ddi_is_excluded_inbound_and_when_the_pbx_presents_it_outbound() {
    let none = headers(&[]);
    let rules = rules();
    let decision = rules.decide(
        &inbound("07700900123", "01632960999", &none),
        &no_opt_outs(),
    );
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Exclude, Rule::PersonalDdi)
    );

    let presented = headers(&[("P-Asserted-Identity", "<tel:+441632960999>")]);
    let decision = rules.decide(&outbound("230", "07700900123", &presented), &no_opt_outs());
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Exclude, Rule::PersonalDdi)
    );
}

#[test]
fn the_trunk_cannot_switch_recording_off_with_headers_of_its_own() {
    let forged = headers(&[
        ("X-Practice-Extension", "205"),
        ("P-Asserted-Identity", "<sip:205@pbx>"),
    ]);
    let decision = rules().decide(&inbound("205", "01632960123", &forged), &no_opt_outs());
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Record, Rule::Default)
    );
    assert_eq!(
        decision.extension.as_deref(),
        Some("200"),
        "the DDI's extension"
    );
}

#[test]
fn an_opted_out_number_is_excluded_in_any_spelling_and_either_direction() {
    let mut opt_outs = OptOutList::default();
    opt_outs.add(number("+44 7700 900123"), 0);
    let none = headers(&[]);
    let rules = rules();
    for caller in [
        "07700900123",
        "07700 900123",
        "+447700900123",
        "00447700900123",
    ] {
        let decision = rules.decide(&inbound(caller, "01632960123", &none), &opt_outs);
        assert_eq!(
            (decision.action, decision.rule),
            (Action::Exclude, Rule::OptOut),
            "{caller}"
        );
    }
    let decision = rules.decide(&outbound("201", "07700 900123", &none), &opt_outs);
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Exclude, Rule::OptOut)
    );
    let other = rules.decide(&inbound("07700900124", "01632960123", &none), &opt_outs);
    assert_eq!(other.action, Action::Record);
}

#[test]
fn a_personal_line_is_excluded_before_any_opt_out_is_looked_at() {
    let mut opt_outs = OptOutList::default();
    opt_outs.add(number("07700900123"), 0);
    let none = headers(&[]);
    let decision = rules().decide(&outbound("205", "07700900123", &none), &opt_outs);
    assert_eq!(decision.rule, Rule::PersonalExtension);
}

#[test]
fn direction_rules_apply_and_the_default_covers_the_rest() {
    let none = headers(&[]);
    let mut rules = rules();
    rules.directions = DirectionRules {
        outbound: Some(Action::Exclude),
        ..DirectionRules::default()
    };
    let decision = rules.decide(&outbound("201", "07700900123", &none), &no_opt_outs());
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Exclude, Rule::Direction)
    );
    let decision = rules.decide(
        &inbound("07700900123", "01632960123", &none),
        &no_opt_outs(),
    );
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Record, Rule::Default)
    );

    rules.default = Action::Exclude;
    rules.directions.inbound = Some(Action::Record);
    let decision = rules.decide(
        &inbound("07700900123", "01632960123", &none),
        &no_opt_outs(),
    );
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Record, Rule::Direction)
    );
}

#[test]
fn an_anonymous_caller_is_recorded_and_has_no_number() {
    let none = headers(&[]);
    let decision = rules().decide(&inbound("anonymous", "01632960123", &none), &no_opt_outs());
    assert_eq!(decision.action, Action::Record);
    assert_eq!(decision.external, None);
}

#[test]
fn a_transfer_to_a_personal_extension_is_decided_again_and_excluded() {
    let rules = rules();
    let none = headers(&[]);
    let call = inbound("07700900123", "01632960123", &none);
    let refer = headers(&[("Refer-To", "<sip:205@pbx.example>")]);
    let decision = rules.decide_again(&call, &refer, &no_opt_outs()).unwrap();
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Exclude, Rule::PersonalExtension)
    );

    let connected_line = headers(&[("P-Asserted-Identity", "\"Reception\" <sip:201@pbx>")]);
    let decision = rules
        .decide_again(&call, &connected_line, &no_opt_outs())
        .unwrap();
    assert_eq!(decision.action, Action::Record);
    assert_eq!(decision.extension.as_deref(), Some("201"));
}

#[test]
fn a_request_naming_nobody_leaves_the_decision_in_force() {
    let none = headers(&[]);
    let call = outbound("201", "07700900123", &none);
    let plain_reinvite = headers(&[
        ("From", "<sip:201@pbx>;tag=1"),
        ("Contact", "<sip:201@pbx>"),
    ]);
    assert_eq!(
        rules().decide_again(&call, &plain_reinvite, &no_opt_outs()),
        None
    );
}

#[test]
fn an_opt_out_still_holds_after_a_transfer_to_a_business_line() {
    let mut opt_outs = OptOutList::default();
    opt_outs.add(number("07700900123"), 0);
    let none = headers(&[]);
    let call = inbound("07700900123", "01632960123", &none);
    let refer = headers(&[("Refer-To", "<sip:201@pbx>")]);
    let decision = rules().decide_again(&call, &refer, &opt_outs).unwrap();
    assert_eq!(
        (decision.action, decision.rule),
        (Action::Exclude, Rule::OptOut)
    );
}
