//! Pure: what the stored shards say about one account, and whether that proves it inactive over
//! a window. A shard that was never written ([`Known::NotRecorded`]) says nothing, which is not
//! the same as "not seen since recording began" ([`Known::NotSeenSince`]).

use k8s_openapi::jiff::Timestamp;

use super::ledger::{Entry, LastSeen, Shard};

/// What the activity store says about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Its last recorded sighting.
    Seen(Entry),
    /// Recorded, never seen acting since this time (its shard began recording then, or
    /// forgot accounts last seen before it).
    NotSeenSince(Timestamp),
    /// Its shard was never written: recording never began for it (no audit events reached the
    /// operator, or activity is off).
    NotRecorded,
}

impl Known {
    /// What `shard` (`None`: its object does not exist) says about `account`.
    pub fn of(shard: Option<&Shard>, account: &str) -> Known {
        match shard.map(|s| s.last_seen(account)) {
            Some(LastSeen::Active(e)) => Known::Seen(e),
            Some(LastSeen::NotSeenSince(t)) => Known::NotSeenSince(t),
            None => Known::NotRecorded,
        }
    }

    /// One line for a person: `last active 2025-03-01T10:00:00Z (list pods in default)`, `not
    /// seen since …`, `no activity recorded`.
    pub fn describe(&self) -> String {
        match self {
            Known::Seen(e) => {
                let mut s = format!("last active {}", rfc3339(e.at));
                let mut how: Vec<String> = Vec::new();
                if let Some(w) = &e.what {
                    how.push(w.clone());
                }
                if let Some(i) = &e.impersonated_by {
                    how.push(format!("impersonated by {i}"));
                }
                if let Some(c) = &e.credential {
                    how.push(format!("credential {c}"));
                }
                if !how.is_empty() {
                    s.push_str(&format!(" ({})", how.join(", ")));
                }
                s
            }
            Known::NotSeenSince(t) => format!("not seen since {} (when recording began)", rfc3339(*t)),
            Known::NotRecorded => "no activity recorded (recording never began for it)".into(),
        }
    }
}

/// Whether an account acted within a window, as far as the store can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactivity {
    /// Seen acting within the window.
    Active,
    /// Proven not to have acted within the window: recording covered all of it and saw nothing.
    Inactive,
    /// Not seen, but recording did not cover the whole window (it began inside it, or never):
    /// not proven inactive.
    Unproven,
}

impl Inactivity {
    /// The word the reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Inactivity::Active => "active",
            Inactivity::Inactive => "inactive",
            Inactivity::Unproven => "unproven",
        }
    }
}

/// Judges `known` over the window starting at `from` (and ending now). A last sighting before
/// `from` proves inactivity: recording was on from that sighting on and saw nothing later. "Not
/// seen since t" proves it only when `t` is at or before `from`.
pub fn judge(known: &Known, from: Timestamp) -> Inactivity {
    match known {
        Known::Seen(e) if e.at >= from => Inactivity::Active,
        Known::Seen(_) => Inactivity::Inactive,
        Known::NotSeenSince(t) if *t <= from => Inactivity::Inactive,
        Known::NotSeenSince(_) | Known::NotRecorded => Inactivity::Unproven,
    }
}

/// A judgement with the reason an account is not proven inactive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The judgement.
    pub inactivity: Inactivity,
    /// Why it is [`Inactivity::Unproven`] (`None` otherwise).
    pub reason: Option<String>,
}

/// Judges `known` over the window from `from` to `now` as [`judge`] does, and also holds the
/// store to what it observed: inactive only when `coverage` spans the whole window and was still
/// live at `now`, and when the last sighting plus the resolution (by which a stored time may lag
/// the true last request) is still at or before `from`. Otherwise not proven, saying why.
pub fn judge_covered(known: &Known, from: Timestamp, coverage: Option<&Coverage>, now: Timestamp) -> Judged {
    let unproven = |reason: String| Judged { inactivity: Inactivity::Unproven, reason: Some(reason) };
    match judge(known, from) {
        Inactivity::Active => Judged { inactivity: Inactivity::Active, reason: None },
        Inactivity::Unproven => unproven(match known {
            Known::NotSeenSince(t) => {
                format!("not seen, but its shard began recording at {}, inside the window", rfc3339(*t))
            }
            _ => "its shard was never stored".into(),
        }),
        Inactivity::Inactive => {
            if let Err(reason) = covers(coverage, from, now) {
                return unproven(reason);
            }
            if let (Known::Seen(e), Some(c)) = (known, coverage)
                && e.at.checked_add(c.resolution()).is_ok_and(|lag| lag > from)
            {
                return unproven(format!(
                    "last seen {}, within the store's resolution ({} s) of the window's start",
                    rfc3339(e.at),
                    c.resolution_seconds
                ));
            }
            Judged { inactivity: Inactivity::Inactive, reason: None }
        }
    }
}

use super::coverage::{Coverage, covers};
pub use crate::text::rfc3339;

#[cfg(test)]
mod tests;
