//! Calendar dates (`YYYY-MM-DD`), for dates of birth: validated once at the boundary.

use std::fmt;

/// A valid Gregorian date between 1900-01-01 and 2199-12-31.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("date is not a valid YYYY-MM-DD between 1900 and 2199")]
pub struct DateError;

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    pub fn new(year: u16, month: u8, day: u8) -> Result<Date, DateError> {
        let valid =
            (1900..=2199).contains(&year) && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
        if valid {
            Ok(Date { year, month, day })
        } else {
            Err(DateError)
        }
    }

    pub fn parse(text: &str) -> Result<Date, DateError> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(DateError);
        }
        let number = |range: std::ops::Range<usize>| -> Result<u16, DateError> {
            let part = &text[range];
            if !part.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(DateError);
            }
            part.parse().map_err(|_| DateError)
        };
        Date::new(number(0..4)?, number(5..7)? as u8, number(8..10)? as u8)
    }

    /// The UTC date of a Unix timestamp in milliseconds (Howard Hinnant's `civil_from_days`).
    pub fn from_unix_millis(millis: u64) -> Date {
        let days = millis / 86_400_000;
        let z = days + 719_468;
        let era = z / 146_097;
        let day_of_era = z - era * 146_097;
        let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u8;
        let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u8;
        let year = (year_of_era + era * 400 + u64::from(month <= 2)).min(2199) as u16;
        Date { year, month, day }
    }

    pub fn year(self) -> u16 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    pub fn day(self) -> u8 {
        self.day
    }

    /// Whole years from `self` to `today` (a birthday on 29 February counts from 1 March in
    /// other years).
    pub fn years_until(self, today: Date) -> u32 {
        let mut years = u32::from(today.year.saturating_sub(self.year));
        if (today.month, today.day) < (self.month, self.day) {
            years = years.saturating_sub(1);
        }
        if today.year < self.year {
            0
        } else {
            years
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_validates_and_counts_years() {
        assert_eq!(Date::parse("2008-11-25").unwrap().to_string(), "2008-11-25");
        for bad in ["2008-02-30", "2007-02-29", "1899-12-31", "2008-13-01", "2008-1-01", "20081125", "2008-11-2x", ""] {
            assert_eq!(Date::parse(bad), Err(DateError), "{bad}");
        }
        assert!(Date::parse("2008-02-29").is_ok());
        // 2026-11-25T12:00:00Z.
        let today = Date::from_unix_millis(1_795_608_000_000);
        assert_eq!(today.to_string(), "2026-11-25");
        assert_eq!(Date::from_unix_millis(0).to_string(), "1970-01-01");
        assert_eq!(Date::from_unix_millis(951_782_400_000).to_string(), "2000-02-29");
        assert_eq!(Date::parse("2008-11-25").unwrap().years_until(today), 18);
        assert_eq!(Date::parse("2008-11-26").unwrap().years_until(today), 17);
        assert_eq!(Date::parse("2030-01-01").unwrap().years_until(today), 0);
    }
}
