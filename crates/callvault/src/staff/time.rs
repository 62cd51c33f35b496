//! Dates as staff type them and times as staff read them, in UTC.
//!
//! Times are UTC throughout: the recordings' start times are UTC, and British
//! Summer Time would shift a call near midnight to the next day. A practice
//! manager searching by day should allow for the hour in summer.

use callvault_store::retention::{utc_day, utc_midnight};

const MS_PER_DAY: i64 = 86_400_000;

/// A date range from `--from` and `--to`: `from` inclusive, `to` the day after
/// `--to`, so that the last day counts whole.
pub(super) fn range(
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let from_ms = from.map(|day| midnight("--from", day)).transpose()?;
    let to_ms = to
        .map(|day| midnight("--to", day).map(|ms| ms + MS_PER_DAY))
        .transpose()?;
    if let (Some(from), Some(to)) = (from_ms, to_ms) {
        if from >= to {
            anyhow::bail!("--from must not be after --to");
        }
    }
    Ok((from_ms, to_ms))
}

/// Midnight UTC of a day written `YYYY-MM-DD`.
fn midnight(flag: &str, day: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("{flag} {day:?} is not a date: write it as YYYY-MM-DD");
    let mut parts = day.trim().splitn(3, '-');
    let mut next = || parts.next().and_then(|part| part.parse::<u32>().ok());
    let (Some(year), Some(month), Some(day_of_month)) = (next(), next(), next()) else {
        return Err(bad());
    };
    utc_midnight(i64::from(year), month, day_of_month).ok_or_else(bad)
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in milliseconds.
pub(super) fn date_time(ms: i64) -> String {
    let seconds = ms.rem_euclid(MS_PER_DAY) / 1000;
    let (hour, minute, second) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    format!("{} {hour:02}:{minute:02}:{second:02}", utc_day(ms))
}

/// RFC 3339 UTC time of a Unix time in milliseconds, for JSON.
pub(super) fn rfc3339(ms: i64) -> String {
    date_time(ms).replacen(' ', "T", 1) + "Z"
}

/// A duration as `M:SS`, or `H:MM:SS` from an hour.
pub(super) fn duration(seconds: u64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_to_day_is_included_whole() {
        let (from, to) = range(Some("2024-03-01"), Some("2024-03-01")).unwrap();
        assert_eq!(to.unwrap() - from.unwrap(), MS_PER_DAY);
        assert_eq!(date_time(from.unwrap()), "2024-03-01 00:00:00");
    }

    #[test]
    fn a_date_that_is_not_a_date_names_the_flag() {
        let error = range(Some("31/01/2024"), None).unwrap_err().to_string();
        assert_eq!(
            error,
            "--from \"31/01/2024\" is not a date: write it as YYYY-MM-DD"
        );
        assert!(range(None, Some("2023-02-29")).is_err());
        assert!(range(Some("2024-02-02"), Some("2024-02-01")).is_err());
    }

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(rfc3339(1_701_597_600_000), "2023-12-03T10:00:00Z");
        assert_eq!(duration(75), "1:15");
        assert_eq!(duration(3_725), "1:02:05");
    }
}
