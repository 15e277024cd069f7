//! Per account, the last time it was seen acting, kept in [`SHARDS`] shards (one stored object
//! each, written by every replica that receives events). Merging takes per account the later
//! sighting (order does not matter beyond the resolution), so replicas need no leader: a writer
//! that lost a race reads the stored copy, absorbs it and writes again.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// How many shards the accounts are spread over (by [`shard_of`]). Fixed: changing it would move
/// accounts between stored objects.
pub const SHARDS: u16 = 64;

/// Longest stored text of a credential id or a description of what was done; longer is clipped.
const MAX_TEXT: usize = 160;

/// Longest account id kept; a longer one is not recorded (no RBAC subject is that long in
/// practice, and a shard must stay well under an object's 1 MiB).
pub const MAX_ACCOUNT: usize = 320;

/// The key of a stored shard's data (a ConfigMap's `data`), holding the [`Shard`] as JSON.
pub const DATA_KEY: &str = "ledger.json";

/// The label every stored shard carries (`app.kubernetes.io/component=<this>`), to list them.
pub const COMPONENT: &str = "activity";

/// The name of shard `n`'s stored object: `<prefix>-NN` (e.g. `deprovisioner-activity-07`).
pub fn object_name(prefix: &str, n: u16) -> String {
    format!("{prefix}-{n:02}")
}

/// Which shard an account id belongs to (FNV-1a: stable across builds and versions).
pub fn shard_of(account: &str) -> u16 {
    (crate::hash::fnv1a(account.as_bytes()) % u64::from(SHARDS)) as u16
}

/// The last sighting of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When (the audit event's stage time).
    pub at: Timestamp,
    /// The credential id the request authenticated with, when the event names one
    /// (`JTI=…`, `X509SHA256=…`); an id, never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Who impersonated this account, when the request was made as it by someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<String>,
    /// What was done, e.g. `list pods in default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
}

impl Entry {
    fn clipped(mut self) -> Entry {
        for t in [&mut self.credential, &mut self.impersonated_by, &mut self.what].into_iter().flatten() {
            *t = crate::text::clip_bytes(t, MAX_TEXT);
        }
        self
    }

    /// About how many bytes this entry takes stored under `account`.
    fn stored_size(&self, account: &str) -> usize {
        let text = |t: &Option<String>| t.as_ref().map_or(0, |t| t.len() + 24);
        account.len() + 48 + text(&self.credential) + text(&self.impersonated_by) + text(&self.what)
    }
}

/// One shard of the ledger: what one stored object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shard {
    /// When recording began for this shard: no account in it was seen before.
    pub since: Timestamp,
    /// Accounts forgotten to keep the shard bounded were all last seen before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgotten_before: Option<Timestamp>,
    /// By account id (`User:<name>`, `ServiceAccount:<ns>/<name>`).
    #[serde(default)]
    pub accounts: BTreeMap<String, Entry>,
}

/// What the ledger can say about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastSeen {
    /// Its last recorded sighting.
    Active(Entry),
    /// Never seen acting since this time (recording began, or accounts were last forgotten).
    NotSeenSince(Timestamp),
}

impl Shard {
    /// An empty shard recording from `since`.
    pub fn new(since: Timestamp) -> Shard {
        Shard { since, forgotten_before: None, accounts: BTreeMap::new() }
    }

    /// Records a sighting. An account's entry is replaced only by one at least `resolution`
    /// later, so a busy account changes its shard at most once per `resolution` and the stored
    /// time is never more than `resolution` older than its last activity. Returns whether the
    /// shard changed. An account id longer than [`MAX_ACCOUNT`] is not recorded.
    pub fn record(&mut self, account: &str, entry: Entry, resolution: Duration) -> bool {
        if account.len() > MAX_ACCOUNT {
            return false;
        }
        let newer = |old: &Entry| {
            let step = SignedDuration::try_from(resolution).unwrap_or(SignedDuration::MAX);
            old.at.checked_add(step).is_ok_and(|due| entry.at >= due)
        };
        match self.accounts.get_mut(account) {
            Some(old) if !newer(old) => false,
            Some(old) => {
                *old = entry.clipped();
                true
            }
            None => {
                if self.forgotten_before.is_some_and(|f| entry.at < f) {
                    // Older than what was already forgotten for being old: would be forgotten again.
                    return false;
                }
                self.accounts.insert(account.to_string(), entry.clipped());
                true
            }
        }
    }

    /// Absorbs another copy of this shard (the stored one, written by another replica, or this
    /// replica's pending sightings): per account the later entry as [`Shard::record`] takes it,
    /// the earlier `since`, the later `forgotten_before`. Returns whether this copy changed.
    pub fn absorb(&mut self, other: Shard, resolution: Duration) -> bool {
        let mut changed = false;
        if other.since < self.since {
            self.since = other.since;
            changed = true;
        }
        if other.forgotten_before > self.forgotten_before {
            self.forgotten_before = other.forgotten_before;
            changed = true;
        }
        for (account, entry) in other.accounts {
            changed |= self.record(&account, entry, resolution);
        }
        if let Some(f) = self.forgotten_before {
            let before = self.accounts.len();
            self.accounts.retain(|_, e| e.at >= f);
            changed |= self.accounts.len() != before;
        }
        changed
    }

    /// Keeps at most `max_accounts` accounts and about `max_bytes` stored, forgetting the least
    /// recently seen first; `forgotten_before` moves to just after the latest forgotten sighting,
    /// so what the shard says of a forgotten account stays true. Returns how many were forgotten.
    pub fn bound(&mut self, max_accounts: usize, max_bytes: usize) -> usize {
        let mut size: usize = self.accounts.iter().map(|(a, e)| e.stored_size(a)).sum();
        if self.accounts.len() <= max_accounts && size <= max_bytes {
            return 0;
        }
        let mut by_time: Vec<(Timestamp, String)> = self.accounts.iter().map(|(a, e)| (e.at, a.clone())).collect();
        by_time.sort();
        let before = self.accounts.len();
        let mut latest: Option<Timestamp> = None;
        for (at, account) in by_time {
            if self.accounts.len() <= max_accounts && size <= max_bytes {
                break;
            }
            if let Some(e) = self.accounts.remove(&account) {
                size = size.saturating_sub(e.stored_size(&account));
                latest = Some(at);
            }
        }
        if let Some(at) = latest {
            // Every account seen at that same instant goes too, so none is left that
            // `forgotten_before` would wrongly cover.
            let just_after = at.checked_add(SignedDuration::from_nanos(1)).unwrap_or(at);
            self.forgotten_before = self.forgotten_before.max(Some(just_after));
            self.accounts.retain(|_, e| e.at >= just_after);
        }
        before - self.accounts.len()
    }

    /// What the shard says about `account`.
    pub fn last_seen(&self, account: &str) -> LastSeen {
        match self.accounts.get(account) {
            Some(e) => LastSeen::Active(e.clone()),
            None => LastSeen::NotSeenSince(self.forgotten_before.map_or(self.since, |f| f.max(self.since))),
        }
    }
}

#[cfg(test)]
mod tests;
