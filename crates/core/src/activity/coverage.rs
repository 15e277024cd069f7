//! Pure: which stretch of time the activity store has actually observed. The shards say who was
//! seen; only a stream of audit batches that kept arriving proves that someone *not* seen did
//! nothing. The store's status object holds the current unbroken stream ([`Coverage`]): when it
//! began (`coveredFrom`) and when a batch was last stored (`heardAt`, written at most once per
//! resolution). A silence longer than the gap (no batch at all: a live API server audits its own
//! Lease renewals every few seconds) ends the stream; the next batch starts a new one.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::text::rfc3339;

/// The key of the status object's data (a ConfigMap's `data`), holding the [`Coverage`] as JSON.
pub const STATUS_KEY: &str = "status.json";

/// The status object's name: `<prefix>-status`.
pub fn status_name(prefix: &str) -> String {
    format!("{prefix}-status")
}

/// The current unbroken stream of stored audit batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// When the stream began: the first stored batch after a silence longer than the gap.
    pub covered_from: Timestamp,
    /// When a batch was last stored (up to `resolutionSeconds` behind the latest).
    pub heard_at: Timestamp,
    /// The writers' resolution: a stored sighting and `heardAt` may each lag the truth by this.
    pub resolution_seconds: u64,
    /// A silence longer than this (plus the resolution) ends the stream.
    pub gap_seconds: u64,
}

/// What to store after a batch was stored at some time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing: the stored status is recent enough (within the resolution).
    Same,
    /// The stream goes on: `heardAt` moves.
    Extend(Coverage),
    /// A new stream begins (first batch ever, or after a silence longer than the gap).
    Begin(Coverage),
}

fn secs(d: u64) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(d).unwrap_or(i64::MAX))
}

impl Coverage {
    /// The status to store once a batch was stored `at`, given the stored one, the writer's
    /// `resolution` and `gap`.
    pub fn next(stored: Option<&Coverage>, at: Timestamp, resolution: Duration, gap: Duration) -> Next {
        let begin = || Coverage {
            covered_from: at,
            heard_at: at,
            resolution_seconds: resolution.as_secs(),
            gap_seconds: gap.as_secs(),
        };
        let Some(c) = stored else { return Next::Begin(begin()) };
        if at <= c.heard_at {
            return Next::Same;
        }
        let silence = at.duration_since(c.heard_at);
        if silence > secs(gap.as_secs()) + secs(c.resolution_seconds.max(resolution.as_secs())) {
            return Next::Begin(begin());
        }
        if silence < secs(resolution.as_secs()) {
            return Next::Same;
        }
        Next::Extend(Coverage {
            heard_at: at,
            resolution_seconds: resolution.as_secs(),
            gap_seconds: gap.as_secs(),
            ..c.clone()
        })
    }

    /// The resolution as a duration.
    pub fn resolution(&self) -> SignedDuration {
        secs(self.resolution_seconds)
    }

    /// Whether batches were still arriving at `now`: the last stored one is no older than the gap
    /// plus the resolution (by which `heardAt` may lag).
    pub fn live_at(&self, now: Timestamp) -> bool {
        now.duration_since(self.heard_at) <= secs(self.gap_seconds) + self.resolution()
    }

    /// One line for a person: `audit events received without a break since …, last at …`.
    pub fn describe(&self) -> String {
        format!(
            "audit events received without a break since {}, last at {} (to within {} s)",
            rfc3339(self.covered_from),
            rfc3339(self.heard_at),
            self.resolution_seconds
        )
    }
}

/// Whether `coverage` observed the whole window from `from` to `now`; otherwise why not.
pub fn covers(coverage: Option<&Coverage>, from: Timestamp, now: Timestamp) -> Result<(), String> {
    let Some(c) = coverage else {
        return Err("no audit batch was ever stored (is the audit webhook on?)".into());
    };
    if !c.live_at(now) {
        return Err(format!("no audit events received since {}", rfc3339(c.heard_at)));
    }
    if c.covered_from > from {
        return Err(format!(
            "audit events received without a break only since {}, inside the window",
            rfc3339(c.covered_from)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
