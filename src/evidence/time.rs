//! The report's time range: `--since`/`--until` given as an instant (RFC 3339, or a date taken
//! as its midnight UTC) or as a duration back from now (`30d`, `12h`, `1week`).

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp, civil::Date, tz::TimeZone};

/// A point in time as given on the command line, resolved against "now" by [`When::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// An instant.
    At(Timestamp),
    /// This long before now.
    Ago(Duration),
}

/// Parses `--since`/`--until`: RFC 3339 (`2025-01-31T09:00:00Z`), a date (`2025-01-31`, midnight
/// UTC) or a duration back from now (`30d`, `12h`, `90min`).
pub fn parse_when(s: &str) -> Result<When, String> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(When::At(t));
    }
    if let Ok(d) = s.parse::<Date>() {
        let t = d.to_zoned(TimeZone::UTC).map_err(|e| format!("{s:?}: {e}"))?.timestamp();
        return Ok(When::At(t));
    }
    humantime::parse_duration(s).map(When::Ago).map_err(|_| {
        format!(
            "{s:?} is neither an RFC 3339 time (2025-01-31T09:00:00Z), a date (2025-01-31) nor a duration (30d, 12h)"
        )
    })
}

impl When {
    /// The instant this names, `now` being the time of the report.
    pub fn resolve(self, now: Timestamp) -> Result<Timestamp, String> {
        match self {
            When::At(t) => Ok(t),
            When::Ago(d) => SignedDuration::try_from(d)
                .ok()
                .and_then(|d| now.checked_sub(d).ok())
                .ok_or_else(|| format!("{} before now is out of range", humantime::format_duration(d))),
        }
    }
}

pub use deprovisioner_core::text::rfc3339;

/// An instant as the HTML report shows it: `2025-01-31 09:00:00 UTC`.
pub fn human(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}
