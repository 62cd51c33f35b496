//! Normalising phone numbers to E.164, so any spelling finds a call.
//!
//! Numbers reach callvault in many spellings: `07700 900123` typed by staff,
//! `+44 (0)7700 900123` copied from a letterhead, `sip:07700900123@pbx` from the PBX,
//! `447700900123` from a trunk. The index keys calls by the one E.164 form of each
//! number (`+447700900123`), and a query normalises its number the same way.
//!
//! The dialling conventions are the United Kingdom's, which most of Europe shares: `00`
//! starts an international number and `0` a national one, whose country is the default
//! country passed in. North American dialling (`011`, a national `1`) is not recognised.
//! Short codes and extensions (`999`, `111`, `205`) are dialable but have no E.164 form:
//! they are reported as [`NumberError::ShortNumber`], and the index keeps extensions in
//! their own tree.

use std::fmt;

use serde::Serialize;

/// Most digits an E.164 number has, country code included.
const MAX_DIGITS: usize = 15;

/// Fewest digits of a full number, country code included (`+290` Saint Helena has 7).
const MIN_DIGITS: usize = 7;

/// Longest digit string without a prefix that is taken as a short code or extension.
const MAX_SHORT_DIGITS: usize = 8;

/// Fewest digits after the country code of a number a trunk sends without `+`.
const MIN_UNPREFIXED_NATIONAL_DIGITS: usize = 9;

/// A country calling code, such as 44 for the United Kingdom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountryCode(u16);

impl CountryCode {
    /// The United Kingdom, +44.
    pub const UK: CountryCode = CountryCode(44);

    /// A country code of one to three digits; `None` otherwise.
    pub fn new(code: u16) -> Option<Self> {
        (1..=999).contains(&code).then_some(Self(code))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// The country numbers without a prefix belong to, as the index assumes them.
///
/// Calls are indexed and queried with the same default, so a change of default needs a
/// `callvault reindex`.
pub const DEFAULT_COUNTRY: CountryCode = CountryCode::UK;

/// A phone number in E.164 form: `+` and up to 15 digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct E164(String);

impl E164 {
    /// The number as text, `+447700900123`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a string has no E.164 form.
///
/// The messages never repeat the input: it may be a phone number, which stays out of
/// logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Letters, symbols or nothing: not a phone number at all.
    #[error("not a number")]
    NotANumber,
    /// A short code, an extension or a local number without its area code.
    #[error("a short code or extension, not a full phone number")]
    ShortNumber,
    /// A number with a prefix but too few or too many digits.
    #[error("{digits} digits is not the length of a full phone number")]
    BadLength { digits: usize },
    /// A long run of digits with no `0`, `00` or `+`: its country is unknown.
    #[error("a number without a national or international prefix")]
    NoPrefix,
}

/// Normalises `input` to E.164, reading national numbers as `default_country`'s.
pub fn normalise(input: &str, default_country: CountryCode) -> Result<E164, NumberError> {
    let dialled = dialled_part(input);
    let (plus, digits) = strip_separators(dialled)?;
    if plus {
        return international(&digits);
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return international(rest);
    }
    if let Some(rest) = digits.strip_prefix('0') {
        return national(rest, default_country);
    }
    unprefixed(&digits, default_country)
}

/// The part of a URI or name-addr that holds the number.
fn dialled_part(input: &str) -> &str {
    let mut text = input.trim();
    if let (Some(open), Some(close)) = (text.find('<'), text.rfind('>')) {
        if open < close {
            text = &text[open + 1..close];
        }
    }
    let lower = text.get(..5).unwrap_or(text).to_ascii_lowercase();
    for scheme in ["tel:", "sips:", "sip:"] {
        if lower.starts_with(scheme) {
            text = &text[scheme.len()..];
            break;
        }
    }
    let end = text.find(['@', ';', '?']).unwrap_or(text.len());
    &text[..end]
}

/// Removes visual separators and `(0)`; returns whether a `+` led, and the digits.
fn strip_separators(text: &str) -> Result<(bool, String), NumberError> {
    let text = text.trim();
    let (plus, body) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    // `+44 (0)7700…` marks the trunk prefix dialled only from within the country.
    let body = body.replacen("(0)", "", 1);
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' | '\u{a0}' => {}
            _ => return Err(NumberError::NotANumber),
        }
    }
    if digits.is_empty() {
        return Err(NumberError::NotANumber);
    }
    Ok((plus, digits))
}

/// A number given with its country code, after `+` or `00`.
fn international(digits: &str) -> Result<E164, NumberError> {
    if digits.is_empty() || digits.starts_with('0') {
        return Err(NumberError::NotANumber);
    }
    // `+44 07700…` is a common slip: UK national numbers never begin with 0, so the
    // trunk prefix is dropped. Other countries (Italy) keep a leading 0, so only +44.
    let digits = match digits.strip_prefix("44") {
        Some(rest) if rest.starts_with("00") => return Err(NumberError::NotANumber),
        Some(rest) if rest.starts_with('0') => format!("44{}", &rest[1..]),
        _ => digits.to_owned(),
    };
    checked(digits)
}

/// A national number, after its trunk prefix `0`.
fn national(rest: &str, default_country: CountryCode) -> Result<E164, NumberError> {
    if rest.is_empty() {
        return Err(NumberError::ShortNumber);
    }
    checked(format!("{}{rest}", default_country.0))
}

/// Digits with no prefix: a short code, or a trunk's number without `+`.
fn unprefixed(digits: &str, default_country: CountryCode) -> Result<E164, NumberError> {
    if digits.len() <= MAX_SHORT_DIGITS {
        return Err(NumberError::ShortNumber);
    }
    let country = default_country.0.to_string();
    match digits.strip_prefix(&country) {
        Some(rest) if rest.len() >= MIN_UNPREFIXED_NATIONAL_DIGITS && !rest.starts_with('0') => {
            checked(digits.to_owned())
        }
        _ => Err(NumberError::NoPrefix),
    }
}

/// Checks the length of a full number's digits and adds the `+`.
fn checked(digits: String) -> Result<E164, NumberError> {
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
        return Err(NumberError::BadLength {
            digits: digits.len(),
        });
    }
    Ok(E164(format!("+{digits}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uk(input: &str) -> Result<String, NumberError> {
        normalise(input, CountryCode::UK).map(|number| number.to_string())
    }

    #[test]
    fn every_uk_spelling_of_a_mobile_gives_one_e164() {
        let spellings = [
            "07700 900123",
            "07700900123",
            "+44 7700 900123",
            "+44 (0)7700 900123",
            "+44(0)7700-900-123",
            "0044 7700 900123",
            "tel:+447700900123",
            "tel:+44-7700-900123;phone-context=example.com",
            "sip:07700900123@pbx.example",
            "sips:+447700900123@trunk.example;user=phone",
            "SIP:447700900123@trunk.example",
            "\"Surgery\" <sip:07700900123@10.0.0.1:5060>",
            "+4407700900123",
            " 07700.900.123 ",
        ];
        for spelling in spellings {
            assert_eq!(uk(spelling).as_deref(), Ok("+447700900123"), "{spelling}");
        }
    }

    #[test]
    fn uk_landlines_and_freephone_normalise() {
        assert_eq!(uk("(01632) 960 000").as_deref(), Ok("+441632960000"));
        assert_eq!(uk("020 7946 0000").as_deref(), Ok("+442079460000"));
        assert_eq!(uk("0800 1111").as_deref(), Ok("+448001111"));
    }

    #[test]
    fn other_international_numbers_keep_their_country() {
        assert_eq!(uk("0033 1 23 45 67 89").as_deref(), Ok("+33123456789"));
        assert_eq!(uk("+1 (202) 555-0123").as_deref(), Ok("+12025550123"));
        assert_eq!(uk("00353 1 234 5678").as_deref(), Ok("+35312345678"));
        // Only the UK's trunk prefix is dropped after the country code.
        assert_eq!(uk("+39 06 1234 5678").as_deref(), Ok("+390612345678"));
    }

    #[test]
    fn national_numbers_take_the_default_country() {
        let ireland = CountryCode::new(353).unwrap();
        assert_eq!(
            normalise("01 234 5678", ireland).map(|n| n.to_string()),
            Ok("+35312345678".to_owned())
        );
    }

    #[test]
    fn short_codes_and_extensions_are_not_e164() {
        for short in [
            "205",
            "999",
            "111",
            "112",
            "116123",
            "sip:205@pbx.example",
            "960000",
        ] {
            assert_eq!(uk(short), Err(NumberError::ShortNumber), "{short}");
        }
    }

    #[test]
    fn garbage_is_not_a_number() {
        for garbage in [
            "",
            "   ",
            "+",
            "hello",
            "sip:anonymous@anonymous.invalid",
            "*67",
            "07700 9001#",
            "+0044 7700 900123",
            "tel:",
        ] {
            assert_eq!(uk(garbage), Err(NumberError::NotANumber), "{garbage:?}");
        }
    }

    #[test]
    fn wrong_lengths_are_reported() {
        assert_eq!(uk("+44 12"), Err(NumberError::BadLength { digits: 4 }));
        assert_eq!(
            uk("+44 7700 900123 4567"),
            Err(NumberError::BadLength { digits: 16 })
        );
        assert_eq!(uk("01"), Err(NumberError::BadLength { digits: 3 }));
    }

    #[test]
    fn long_digit_runs_without_prefix_are_ambiguous() {
        assert_eq!(uk("12025550123"), Err(NumberError::NoPrefix));
        assert_eq!(uk("440123456789"), Err(NumberError::NoPrefix));
    }

    #[test]
    fn errors_never_echo_the_number() {
        let message = uk("+44 7700 900123 4567").unwrap_err().to_string();
        assert!(!message.contains("7700"), "{message}");
    }

    #[test]
    fn country_codes_have_one_to_three_digits() {
        assert_eq!(CountryCode::new(0), None);
        assert_eq!(CountryCode::new(1000), None);
        assert_eq!(CountryCode::new(44), Some(CountryCode::UK));
    }

    proptest! {
        #[test]
        fn normalising_twice_changes_nothing(input in "[+0-9 ()<>@:;.a-z-]{0,24}") {
            if let Ok(number) = normalise(&input, CountryCode::UK) {
                prop_assert_eq!(normalise(number.as_str(), CountryCode::UK), Ok(number));
            }
        }

        #[test]
        fn uk_mobiles_normalise_from_each_spelling(subscriber in "7[0-9]{9}") {
            let expected = format!("+44{subscriber}");
            let (area, rest) = subscriber.split_at(4);
            for spelling in [
                format!("0{subscriber}"),
                format!("0{area} {rest}"),
                format!("+44 (0){area} {rest}"),
                format!("0044{subscriber}"),
                format!("sip:0{subscriber}@pbx"),
                format!("44{subscriber}"),
            ] {
                let got = normalise(&spelling, CountryCode::UK).map(|n| n.to_string());
                prop_assert_eq!(got, Ok(expected.clone()));
            }
        }
    }
}
