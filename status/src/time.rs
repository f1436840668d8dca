//! Time as the status shows it: wall-clock instants as seconds since the Unix epoch
//! (`f64`), and their human spellings (`2024-12-31 23:59:59Z`, `5m12s`).

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as seconds since the Unix epoch; `None` before it.
pub fn unix_seconds(t: SystemTime) -> Option<f64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

/// The current time as seconds since the Unix epoch (0 on a clock set before it).
pub fn unix_now() -> f64 {
    unix_seconds(SystemTime::now()).unwrap_or(0.0)
}

/// `YYYY-MM-DD HH:MM:SSZ` for seconds since the epoch (UTC).
pub fn utc_text(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A duration in seconds as `3d4h`, `5m12s`, `42s` (negative counts as 0).
pub fn age_text(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_text_is_the_civil_date() {
        assert_eq!(utc_text(0.0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_text(951_782_400.0), "2000-02-29 00:00:00Z");
        assert_eq!(utc_text(1_735_689_599.0), "2024-12-31 23:59:59Z");
    }

    #[test]
    fn age_text_uses_the_two_largest_units() {
        assert_eq!(age_text(-3.0), "0s");
        assert_eq!(age_text(42.9), "42s");
        assert_eq!(age_text(312.0), "5m12s");
        assert_eq!(age_text(3.0 * 3600.0 + 125.0), "3h2m");
        assert_eq!(age_text(3.0 * 86_400.0 + 4.0 * 3600.0 + 59.0), "3d4h");
    }

    #[test]
    fn unix_seconds_is_none_before_the_epoch() {
        assert_eq!(
            unix_seconds(UNIX_EPOCH + Duration::from_millis(1500)),
            Some(1.5)
        );
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(1)), None);
    }
}
