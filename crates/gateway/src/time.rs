//! RFC 3339 timestamps (UTC, milliseconds) for the API, without a date-time dependency.

use domain::Date;

/// `2026-11-25T12:00:00.000Z` for milliseconds since the Unix epoch.
pub fn format_rfc3339(millis: u64) -> String {
    let date = Date::from_unix_millis(millis);
    let of_day = millis % 86_400_000;
    let (hours, minutes, seconds, ms) = (of_day / 3_600_000, of_day / 60_000 % 60, of_day / 1_000 % 60, of_day % 1_000);
    format!("{date}T{hours:02}:{minutes:02}:{seconds:02}.{ms:03}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or with `+00:00`) into milliseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T').or_else(|| text.split_once('t'))?;
    let date = Date::parse(date).ok()?;
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = clock.split(':');
    let mut field = |max: u64| -> Option<u64> {
        let part = parts.next()?;
        (part.len() == 2 && part.bytes().all(|byte| byte.is_ascii_digit())).then_some(())?;
        part.parse::<u64>().ok().filter(|value| *value <= max)
    };
    let (hours, minutes, seconds) = (field(23)?, field(59)?, field(59)?);
    if parts.next().is_some() || fraction.len() > 9 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u64, |acc, byte| acc * 10 + u64::from(byte - b'0'));
    let days = days_from_civil(date)?;
    Some(days * 86_400_000 + hours * 3_600_000 + minutes * 60_000 + seconds * 1_000 + millis)
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`); `None` before 1970.
fn days_from_civil(date: Date) -> Option<u64> {
    let (year, month, day) = (i64::from(date.year()), i64::from(date.month()), i64::from(date.day()));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    u64::try_from(era * 146_097 + day_of_era - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for millis in [0, 1_795_608_000_000, 951_782_400_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(millis)), Some(millis), "{}", format_rfc3339(millis));
        }
        assert_eq!(format_rfc3339(1_795_608_000_000), "2026-11-25T12:00:00.000Z");
        assert_eq!(parse_rfc3339("2026-11-25T12:00:00Z"), Some(1_795_608_000_000));
        assert_eq!(parse_rfc3339("2026-11-25T12:00:00+00:00"), Some(1_795_608_000_000));
        for bad in
            ["2026-11-25", "2026-11-25T25:00:00Z", "2026-11-25T12:00Z", "2026-11-25T12:00:00", "1969-12-31T00:00:00Z"]
        {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
