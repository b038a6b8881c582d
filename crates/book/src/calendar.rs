//! Calendar periods of responsible-gambling limits on the book's clock (UTC): the day, the
//! ISO week starting Monday, and the calendar month a timestamp falls in.

use crate::ids::{Timestamp, MILLIS_PER_DAY};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    pub fn slot(self) -> usize {
        self as usize
    }

    /// A number that identifies the period containing `now`; consecutive periods differ.
    pub fn index(self, now: Timestamp) -> u64 {
        let days = now / MILLIS_PER_DAY;
        match self {
            Period::Day => days,
            // 1970-01-01 was a Thursday; shifting by 3 days makes weeks start on Monday.
            Period::Week => (days + 3) / 7,
            Period::Month => {
                let (year, month) = year_month(days);
                year * 12 + month
            }
        }
    }
}

/// Year and zero-based month of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn year_month(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let month = if month_from_march < 10 { month_from_march + 2 } else { month_from_march - 10 };
    let year = year_of_era + era * 400 + u64::from(month < 2);
    (year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_roll_over_at_calendar_boundaries() {
        // 2026-01-31T23:59:59Z and 2026-02-01T00:00:00Z.
        let end_of_january = 1_769_903_999_000;
        let start_of_february = end_of_january + 1_000;
        assert_eq!(year_month(end_of_january / MILLIS_PER_DAY), (2026, 0));
        assert_eq!(year_month(start_of_february / MILLIS_PER_DAY), (2026, 1));
        assert_ne!(Period::Month.index(end_of_january), Period::Month.index(start_of_february));
        assert_ne!(Period::Day.index(end_of_january), Period::Day.index(start_of_february));
        // 2026-02-01 is a Sunday, 2026-02-02 a Monday.
        assert_eq!(Period::Week.index(end_of_january), Period::Week.index(start_of_february));
        assert_ne!(Period::Week.index(start_of_february), Period::Week.index(start_of_february + MILLIS_PER_DAY));
        assert_eq!(year_month(0), (1970, 0));
        assert_eq!(year_month(59), (1970, 2)); // 1970-03-01
    }
}
