//! Unix seconds as UTC calendar text (proleptic Gregorian, no leap
//! seconds, as Unix time counts).

use crate::DAY;

const fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Year, month (1 to 12) and day of month (1 to 31) of day `days` since
/// 1970-01-01.
fn civil(mut days: u64) -> (u64, u64, u64) {
    let mut year = 1970_u64;
    // Whole 400-year cycles (146 097 days each) first, so a far date takes
    // no more than 400 steps.
    let cycles = days / 146_097;
    days %= 146_097;
    year = year.saturating_add(cycles.saturating_mul(400));
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days = days.saturating_sub(len);
        year = year.saturating_add(1);
    }
    let feb = if is_leap(year) { 29 } else { 28 };
    let mut month = 1_u64;
    for len in [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] {
        if days < len {
            break;
        }
        days = days.saturating_sub(len);
        month = month.saturating_add(1);
    }
    (year, month, days.saturating_add(1))
}

/// The UTC date of `secs`, `YYYY-MM-DD`.
#[must_use]
pub(crate) fn date(secs: u64) -> String {
    let (y, m, d) = civil(secs / DAY);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC date and time of `secs`, `YYYY-MM-DD HH:MM:SS`.
#[must_use]
pub fn utc(secs: u64) -> String {
    let rest = secs % DAY;
    format!(
        "{} {:02}:{:02}:{:02}",
        date(secs),
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::{date, utc};

    #[test]
    fn known_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(date(1_709_164_800), "2024-02-29");
        assert_eq!(date(1_735_689_599), "2024-12-31");
        assert_eq!(date(1_735_689_600), "2025-01-01");
        assert_eq!(date(4_107_542_400), "2100-03-01");
        // Past the 400-year cycle and at the end of the range.
        assert_eq!(date(13_569_465_600), "2400-01-01");
        assert_eq!(utc(u64::MAX), "584554051223-11-09 07:00:15");
    }
}
