//! The last activity a removal was based on (issue 26): kept in the request's status, read from
//! the activity store when the request was planned. Small and bounded: a few accounts, clipped
//! texts.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::activity::{Entry, Known};

/// Accounts recorded per request at most (the identities the policies resolve the target to).
pub const MAX_ACCOUNTS: usize = 8;

/// What the activity store said about the target's accounts when the request was planned.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RecordedActivity {
    /// When it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Time>,
    /// Per account (users and ServiceAccounts, not groups), at most eight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub accounts: Vec<AccountActivity>,
    /// Why it could not be read; the removal went on without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Since when audit batches had kept arriving without a break, when it was read (absent: no
    /// batch was ever stored, or the store predates this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_from: Option<Time>,
    /// When the last audit batch had been stored (to within the store's resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard_at: Option<Time>,
}

/// One account's last activity as the store knew it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountActivity {
    /// The account id, e.g. `User:ann@x.com`, `ServiceAccount:ci/deployer`.
    pub account: String,
    /// What the store knew.
    pub state: ActivityState,
    /// `Seen`: when it last acted; `NotSeen`: since when it has not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    /// What it last did, e.g. `list pods in default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// The credential id it last used (never a secret), e.g. `X509SHA256=…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Who made that request as it, when it was impersonated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<String>,
}

/// What the activity store knew of one account.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivityState {
    /// Seen acting (`at`: the last time).
    Seen,
    /// Recorded, never seen acting since `at`.
    NotSeen,
    /// Recording never began for it.
    NotRecorded,
}

impl AccountActivity {
    /// The record of what the store knew of `account`.
    pub fn of(account: &str, known: &Known) -> AccountActivity {
        let base = AccountActivity {
            account: account.to_string(),
            state: ActivityState::NotRecorded,
            at: None,
            what: None,
            credential: None,
            impersonated_by: None,
        };
        match known {
            Known::Seen(e) => AccountActivity {
                state: ActivityState::Seen,
                at: Some(Time(e.at)),
                what: e.what.clone(),
                credential: e.credential.clone(),
                impersonated_by: e.impersonated_by.clone(),
                ..base
            },
            Known::NotSeenSince(t) => AccountActivity { state: ActivityState::NotSeen, at: Some(Time(*t)), ..base },
            Known::NotRecorded => base,
        }
    }

    /// What the store knew, back as [`Known`].
    pub fn known(&self) -> Known {
        match (self.state, &self.at) {
            (ActivityState::Seen, Some(at)) => Known::Seen(Entry {
                at: at.0,
                credential: self.credential.clone(),
                impersonated_by: self.impersonated_by.clone(),
                what: self.what.clone(),
            }),
            (ActivityState::NotSeen, Some(at)) => Known::NotSeenSince(at.0),
            _ => Known::NotRecorded,
        }
    }
}

impl RecordedActivity {
    /// One line for a report: each account and what the store said, or why it was not read.
    pub fn describe(&self) -> String {
        if let Some(e) = &self.error {
            return format!("not read: {e}");
        }
        if self.accounts.is_empty() {
            return "no user or ServiceAccount to look up".into();
        }
        let accounts =
            self.accounts.iter().map(|a| format!("{}: {}", a.account, a.known().describe())).collect::<Vec<_>>();
        match (&self.covered_from, &self.heard_at) {
            (Some(from), Some(heard)) => format!(
                "{} (audit events received without a break from {} to {})",
                accounts.join("; "),
                crate::text::rfc3339(from.0),
                crate::text::rfc3339(heard.0)
            ),
            _ => accounts.join("; "),
        }
    }
}
