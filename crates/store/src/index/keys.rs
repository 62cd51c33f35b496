//! Byte layouts of the index's keys, ordered so a range scan is a query.
//!
//! Times are 8 bytes big-endian with the sign bit flipped, so byte order is time
//! order across the whole `i64` range. A term (an E.164 number or an extension) is
//! preceded by its length in one byte, so no separator byte is needed and one term is
//! never a prefix of another's keys. The recording id comes last: it makes each key
//! unique and is read back from the key without touching the value.

use crate::RecordingId;

/// Bytes of an encoded time.
const TIME_LEN: usize = 8;

/// Longest term a key can hold; its length must fit the one-byte prefix.
pub(super) const MAX_TERM_LEN: usize = u8::MAX as usize;

/// Encodes a time so that byte order equals numeric order.
pub(super) fn time(ms: i64) -> [u8; TIME_LEN] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from(bytes: [u8; TIME_LEN]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The key of a call in the by-start tree: `start(8) || id`.
pub(super) fn by_start(start_ms: i64, id: &RecordingId) -> Vec<u8> {
    let mut key = Vec::with_capacity(TIME_LEN + id.0.len());
    key.extend_from_slice(&time(start_ms));
    key.extend_from_slice(id.0.as_bytes());
    key
}

/// The first key of `term` in a term tree: `len(1) || term`.
///
/// `None` when the term is empty or too long for the length byte.
pub(super) fn term_prefix(term: &str) -> Option<Vec<u8>> {
    if term.is_empty() || term.len() > MAX_TERM_LEN {
        return None;
    }
    let mut key = Vec::with_capacity(1 + term.len() + TIME_LEN + 32);
    key.push(term.len() as u8);
    key.extend_from_slice(term.as_bytes());
    Some(key)
}

/// The key of a call in a term tree: `len(1) || term || start(8) || id`.
pub(super) fn by_term(term: &str, start_ms: i64, id: &RecordingId) -> Option<Vec<u8>> {
    let mut key = term_prefix(term)?;
    key.extend_from_slice(&time(start_ms));
    key.extend_from_slice(id.0.as_bytes());
    Some(key)
}

/// The start and id at the end of a key, after `prefix_len` bytes.
///
/// `None` when the key is too short or the id is not UTF-8: a damaged index.
pub(super) fn start_and_id(key: &[u8], prefix_len: usize) -> Option<(i64, RecordingId)> {
    let rest = key.get(prefix_len..)?;
    let (start, id) = rest.split_at_checked(TIME_LEN)?;
    let start = time_from(start.try_into().ok()?);
    let id = std::str::from_utf8(id).ok()?;
    Some((start, RecordingId(id.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> RecordingId {
        RecordingId(text.to_owned())
    }

    #[test]
    fn byte_order_of_times_is_numeric_order() {
        let times = [i64::MIN, -86_400_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(time(pair[0]) < time(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn start_and_id_read_back_from_term_keys() {
        let key = by_term("+447700900123", -5, &id("ab12")).unwrap();
        assert_eq!(key[0] as usize, "+447700900123".len());
        let prefix_len = term_prefix("+447700900123").unwrap().len();
        assert_eq!(start_and_id(&key, prefix_len), Some((-5, id("ab12"))));
        assert_eq!(
            start_and_id(&by_start(7, &id("cd")), 0),
            Some((7, id("cd")))
        );
    }

    #[test]
    fn one_term_never_prefixes_another_terms_keys() {
        let short = term_prefix("20").unwrap();
        let long = by_term("205", 0, &id("x")).unwrap();
        assert!(!long.starts_with(&short));
    }

    #[test]
    fn empty_and_oversized_terms_have_no_key() {
        assert_eq!(term_prefix(""), None);
        assert_eq!(term_prefix(&"1".repeat(MAX_TERM_LEN + 1)), None);
        assert!(term_prefix(&"1".repeat(MAX_TERM_LEN)).is_some());
    }
}
