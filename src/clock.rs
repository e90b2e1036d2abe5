//! Wall-clock times as they appear in the API's answers and in webhook events.

use std::time::SystemTime;

use time::macros::format_description;
use time::OffsetDateTime;

/// `t` as RFC 3339 in UTC with milliseconds, e.g. `2026-01-31T12:00:00.250Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    // Checked all the way: a clock past year 9999 gives the last time there is.
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    time::Duration::try_from(since)
        .ok()
        .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d))
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| "9999-12-31T23:59:59.999Z".to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64, ms: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_767_225_599, 999), "2025-12-31T23:59:59.999Z");
    }
}
