//! Retention: deleting recordings older than the retention period, unless held.
//!
//! A recording expires when `retention_months` calendar months have passed since it
//! started, counted in UTC: one started 2023-12-03 10:00 expires at 2026-12-03 10:00
//! with 36 months. When the day does not exist in the month reached, the last day of
//! that month is used at the same time of day: 31 January plus one month is
//! 28 February (29th in a leap year).
//!
//! Deleting a recording's file (shredding its key, then unlinking it) belongs to the
//! file module, so [`purge`] takes it as a callback. Audit entries are the caller's.

use std::io;

use crate::index::{Deletion, Index, IndexError, IndexedCall};
use crate::RecordingId;

const MS_PER_DAY: i64 = 86_400_000;

/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
const DAYS_TO_UNIX_EPOCH: i64 = 719_468;

/// Days in 400 Gregorian years, after which the calendar repeats.
const DAYS_PER_400_YEARS: i64 = 146_097;

/// Whether [`purge`] deletes, or only lists what it would delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeMode {
    DryRun,
    Delete,
}

/// What a purge did, or with [`PurgeMode::DryRun`] would do.
#[derive(Debug, Default)]
pub struct PurgeReport {
    /// Expired recordings a dry run would delete.
    pub would_delete: Vec<RecordingId>,
    /// Expired recordings deleted: file, key and index entry.
    pub deleted: Vec<RecordingId>,
    /// Expired recordings kept because they are on legal hold.
    pub held_skipped: Vec<RecordingId>,
    /// Expired recordings whose file could not be deleted; still indexed.
    pub failed: Vec<PurgeFailure>,
}

/// An expired recording whose deletion failed.
#[derive(Debug)]
pub struct PurgeFailure {
    pub id: RecordingId,
    pub error: io::Error,
}

/// Recordings past retention at `now_ms` and not held, oldest first.
pub fn expired(
    index: &Index,
    now_ms: i64,
    retention_months: u32,
) -> Result<Vec<IndexedCall>, IndexError> {
    let mut calls = past_retention(index, now_ms, retention_months)?;
    calls.retain(|call| call.hold.is_none());
    Ok(calls)
}

/// Deletes the recordings past retention, except held ones.
///
/// `delete_file` destroys one recording's file; a file already gone counts as
/// deleted. Each index entry is removed only after its file is, and a hold placed
/// while the purge runs is honoured.
pub fn purge(
    index: &Index,
    now_ms: i64,
    retention_months: u32,
    mode: PurgeMode,
    mut delete_file: impl FnMut(&IndexedCall) -> io::Result<()>,
) -> Result<PurgeReport, IndexError> {
    let mut report = PurgeReport::default();
    for call in past_retention(index, now_ms, retention_months)? {
        let id = call.meta.id.clone();
        if call.hold.is_some() {
            report.held_skipped.push(id);
            continue;
        }
        if mode == PurgeMode::DryRun {
            report.would_delete.push(id);
            continue;
        }
        let delete = |call: &IndexedCall| match delete_file(call) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        match index.delete_unless_held(&call, delete)? {
            Deletion::Deleted => report.deleted.push(id),
            Deletion::Held => report.held_skipped.push(id),
            Deletion::Failed(error) => report.failed.push(PurgeFailure { id, error }),
        }
    }
    log_report(&report, mode);
    Ok(report)
}

fn log_report(report: &PurgeReport, mode: PurgeMode) {
    tracing::info!(
        dry_run = mode == PurgeMode::DryRun,
        would_delete = report.would_delete.len(),
        deleted = report.deleted.len(),
        held_skipped = report.held_skipped.len(),
        failed = report.failed.len(),
        "retention purge"
    );
    if !report.failed.is_empty() {
        tracing::warn!(
            failed = report.failed.len(),
            "expired recordings could not be deleted and are still kept"
        );
    }
}

/// Recordings past retention, held or not, oldest first.
fn past_retention(
    index: &Index,
    now_ms: i64,
    retention_months: u32,
) -> Result<Vec<IndexedCall>, IndexError> {
    // A recording that started in the month `retention_months - 1` before this one, or
    // later, expires after this month ends: only earlier starts need checking.
    let Some(scan_end) = first_of_month_after(now_ms, retention_months) else {
        return Ok(Vec::new());
    };
    let mut calls = Vec::new();
    for (start_ms, id) in index.ids_started_before(scan_end)? {
        let expired = retention_ends(start_ms, retention_months).is_some_and(|end| end <= now_ms);
        if !expired {
            continue;
        }
        // Gone since the scan (deleted concurrently): nothing to purge.
        if let Some(call) = index.get(&id)? {
            calls.push(call);
        }
    }
    Ok(calls)
}

/// When a recording that started at `start_ms` expires, after `months` calendar months.
///
/// `None` when that is beyond the times an `i64` of milliseconds can hold.
pub fn retention_ends(start_ms: i64, months: u32) -> Option<i64> {
    let (date, time_of_day) = CivilDate::of(start_ms);
    let moved = date.plus_months(months)?;
    let day = moved.day.min(days_in_month(moved.year, moved.month));
    CivilDate { day, ..moved }
        .to_unix_days()
        .checked_mul(MS_PER_DAY)?
        .checked_add(time_of_day)
}

/// The first instant of the month `months - 1` months before `now_ms`'s month.
fn first_of_month_after(now_ms: i64, months: u32) -> Option<i64> {
    let (now, _) = CivilDate::of(now_ms);
    let total = now.year * 12 + i64::from(now.month - 1) + 1 - i64::from(months);
    let first = CivilDate {
        year: total.div_euclid(12),
        month: (total.rem_euclid(12) + 1) as u32,
        day: 1,
    };
    first.to_unix_days().checked_mul(MS_PER_DAY)
}

/// The UTC day of a Unix time in milliseconds, as `YYYY-MM-DD`.
pub fn utc_day(ms: i64) -> String {
    let (date, _) = CivilDate::of(ms);
    format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
}

/// Midnight UTC at the start of a calendar day, in Unix milliseconds.
///
/// `None` for a day that does not exist (30 February, month 13).
pub fn utc_midnight(year: i64, month: u32, day: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    CivilDate { year, month, day }
        .to_unix_days()
        .checked_mul(MS_PER_DAY)
}

/// A date in the proleptic Gregorian calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CivilDate {
    year: i64,
    /// 1 to 12.
    month: u32,
    /// 1 to 31.
    day: u32,
}

impl CivilDate {
    /// The UTC date of `ms`, and the milliseconds since that day's midnight.
    fn of(ms: i64) -> (CivilDate, i64) {
        let days = ms.div_euclid(MS_PER_DAY);
        (Self::from_unix_days(days), ms.rem_euclid(MS_PER_DAY))
    }

    /// The same day number `months` later; the day may not exist in that month.
    fn plus_months(self, months: u32) -> Option<CivilDate> {
        let total = (self.year * 12 + i64::from(self.month - 1)).checked_add(i64::from(months))?;
        Some(CivilDate {
            year: total.div_euclid(12),
            month: (total.rem_euclid(12) + 1) as u32,
            day: self.day,
        })
    }

    // Both conversions count years from 1 March, so that the leap day is the last day
    // of a year and the months March to January have a fixed pattern of lengths.

    fn to_unix_days(self) -> i64 {
        let march_year = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let month_from_march = i64::from((self.month + 9) % 12);
        let era = march_year.div_euclid(400);
        let year_in_era = march_year.rem_euclid(400);
        let day_in_year = (153 * month_from_march + 2) / 5 + i64::from(self.day) - 1;
        let day_in_era = year_in_era * 365 + year_in_era / 4 - year_in_era / 100 + day_in_year;
        era * DAYS_PER_400_YEARS + day_in_era - DAYS_TO_UNIX_EPOCH
    }

    fn from_unix_days(days: i64) -> CivilDate {
        let days = days + DAYS_TO_UNIX_EPOCH;
        let era = days.div_euclid(DAYS_PER_400_YEARS);
        let day_in_era = days.rem_euclid(DAYS_PER_400_YEARS);
        let year_in_era =
            (day_in_era - day_in_era / 1460 + day_in_era / 36_524 - day_in_era / 146_096) / 365;
        let day_in_year = day_in_era - (365 * year_in_era + year_in_era / 4 - year_in_era / 100);
        let month_from_march = (5 * day_in_year + 2) / 153;
        let day = (day_in_year - (153 * month_from_march + 2) / 5 + 1) as u32;
        let month = ((month_from_march + 2) % 12 + 1) as u32;
        let year = era * 400 + year_in_era + i64::from(month <= 2);
        CivilDate { year, month, day }
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Milliseconds of a UTC date and time.
    fn utc(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> i64 {
        CivilDate { year, month, day }.to_unix_days() * MS_PER_DAY + (hour * 60 + minute) * 60_000
    }

    #[test]
    fn utc_day_is_the_calendar_date() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(1_796_342_400_000 + 86_399_999), "2026-12-04");
    }

    #[test]
    fn utc_midnight_refuses_days_that_do_not_exist() {
        assert_eq!(utc_midnight(2000, 2, 29), Some(951_782_400_000));
        assert_eq!(utc_midnight(2001, 2, 29), None);
        assert_eq!(utc_midnight(2024, 13, 1), None);
        assert_eq!(utc_midnight(2024, 1, 0), None);
    }

    #[test]
    fn known_dates_convert_both_ways() {
        assert_eq!(utc(1970, 1, 1, 0, 0), 0);
        assert_eq!(utc(2000, 3, 1, 0, 0), 951_868_800_000);
        assert_eq!(utc(2023, 12, 3, 10, 0), 1_701_597_600_000);
        assert_eq!(utc(1969, 12, 31, 0, 0), -MS_PER_DAY);
        let (date, time) = CivilDate::of(1_701_597_600_000);
        assert_eq!(
            date,
            CivilDate {
                year: 2023,
                month: 12,
                day: 3
            }
        );
        assert_eq!(time, 10 * 3_600_000);
    }

    #[test]
    fn thirty_six_months_end_on_the_same_day_and_time() {
        let start = utc(2023, 12, 3, 10, 0);
        assert_eq!(retention_ends(start, 36), Some(utc(2026, 12, 3, 10, 0)));
    }

    #[test]
    fn month_ends_clamp_to_the_last_day() {
        assert_eq!(
            retention_ends(utc(2025, 1, 31, 9, 30), 1),
            Some(utc(2025, 2, 28, 9, 30))
        );
        assert_eq!(
            retention_ends(utc(2024, 1, 31, 9, 30), 1),
            Some(utc(2024, 2, 29, 9, 30))
        );
        assert_eq!(
            retention_ends(utc(2024, 2, 29, 0, 0), 12),
            Some(utc(2025, 2, 28, 0, 0))
        );
        assert_eq!(
            retention_ends(utc(2024, 2, 29, 0, 0), 48),
            Some(utc(2028, 2, 29, 0, 0))
        );
        assert_eq!(
            retention_ends(utc(2025, 3, 31, 23, 59), 1),
            Some(utc(2025, 4, 30, 23, 59))
        );
        assert_eq!(
            retention_ends(utc(2025, 5, 31, 12, 0), 9),
            Some(utc(2026, 2, 28, 12, 0))
        );
    }

    #[test]
    fn months_carry_into_years() {
        assert_eq!(
            retention_ends(utc(2025, 11, 15, 0, 0), 2),
            Some(utc(2026, 1, 15, 0, 0))
        );
        assert_eq!(
            retention_ends(utc(2025, 12, 15, 0, 0), 12),
            Some(utc(2026, 12, 15, 0, 0))
        );
        assert_eq!(
            retention_ends(utc(1999, 12, 31, 0, 0), 2),
            Some(utc(2000, 2, 29, 0, 0))
        );
        assert_eq!(
            retention_ends(utc(2099, 12, 31, 0, 0), 2),
            Some(utc(2100, 2, 28, 0, 0))
        );
    }

    #[test]
    fn zero_months_expire_at_the_start() {
        assert_eq!(retention_ends(12_345, 0), Some(12_345));
    }

    #[test]
    fn times_before_1970_work() {
        assert_eq!(
            retention_ends(utc(1969, 1, 31, 6, 0), 1),
            Some(utc(1969, 2, 28, 6, 0))
        );
    }

    #[test]
    fn unrepresentable_ends_are_none() {
        assert_eq!(retention_ends(i64::MAX - 1, 1), None);
        assert_eq!(retention_ends(0, u32::MAX), None);
    }

    #[test]
    fn scan_end_is_the_first_month_that_cannot_have_expired() {
        let now = utc(2026, 12, 3, 10, 0);
        assert_eq!(first_of_month_after(now, 36), Some(utc(2024, 1, 1, 0, 0)));
        assert_eq!(first_of_month_after(now, 0), Some(utc(2027, 1, 1, 0, 0)));
        assert_eq!(first_of_month_after(now, 12), Some(utc(2026, 1, 1, 0, 0)));
    }

    proptest! {
        #[test]
        fn days_round_trip(days in -1_000_000i64..1_000_000) {
            let date = CivilDate::from_unix_days(days);
            prop_assert!((1..=12).contains(&date.month));
            prop_assert!(date.day >= 1 && date.day <= days_in_month(date.year, date.month));
            prop_assert_eq!(date.to_unix_days(), days);
        }

        #[test]
        fn the_next_day_follows_the_calendar(days in -1_000_000i64..1_000_000) {
            let today = CivilDate::from_unix_days(days);
            let tomorrow = CivilDate::from_unix_days(days + 1);
            if today.day == days_in_month(today.year, today.month) {
                prop_assert_eq!(tomorrow.day, 1);
            } else {
                prop_assert_eq!(tomorrow, CivilDate { day: today.day + 1, ..today });
            }
        }

        #[test]
        fn expiry_is_never_before_the_start(start in -4_000_000_000_000i64..8_000_000_000_000,
                                            months in 0u32..600) {
            let end = retention_ends(start, months).unwrap();
            prop_assert!(end >= start);
            prop_assert!(end - start >= i64::from(months) * 28 * MS_PER_DAY);
            prop_assert!(end - start <= i64::from(months) * 31 * MS_PER_DAY);
        }
    }
}
