//! Phone numbers as logs show them.

/// How many trailing digits a masked number keeps: enough for an operator to
/// tell two calls apart, too few to identify anyone.
const KEPT_DIGITS: usize = 3;

/// `text` with every digit but the last three replaced by `*`.
///
/// Anything else is kept as it is, so `+44 7700 900123` reads `+** **** ***123`.
pub fn mask_number(text: &str) -> String {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    text.chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen + KEPT_DIGITS > digits {
                c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_but_the_last_three_digits_are_hidden() {
        assert_eq!(mask_number("+447700900123"), "+*********123");
        assert_eq!(mask_number("+44 7700 900123"), "+** **** ***123");
        assert_eq!(mask_number("205"), "205");
        assert_eq!(mask_number("anonymous"), "anonymous");
    }
}
