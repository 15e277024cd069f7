//! Pure: `deprovisioner inactive`'s rows. The accounts that hold bindings (users and
//! ServiceAccounts, not groups, never protected ones: the connector's grants), each with its
//! bindings, what the activity store says, and the judgement over the window.

use k8s_openapi::jiff::Timestamp;

use super::coverage::Coverage;
use super::known::{Inactivity, Known, judge_covered};
use crate::connector::model::{Grant, accounts};
use crate::plan::subject::Principal;

/// One account holding bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The account id (`User:ann@x.com`, `ServiceAccount:ci/deployer`).
    pub account: String,
    /// `User` or `ServiceAccount`.
    pub kind: &'static str,
    /// The bindings naming it (`RoleBinding team-a/devs`, `ClusterRoleBinding admins`), sorted.
    pub bindings: Vec<String>,
    /// What the activity store says.
    pub known: Known,
    /// Whether that proves it inactive over the window.
    pub judged: Inactivity,
    /// Why it is not proven inactive (`None` unless [`Inactivity::Unproven`]).
    pub reason: Option<String>,
}

/// The rows for every account the grants name, by account id, judged over the window from
/// `from` to `now` with the store's `coverage` ([`judge_covered`]); groups are left out
/// (requests are made by their members, never by a group).
pub fn rows(
    grants: &[Grant],
    known: impl Fn(&str) -> Known,
    from: Timestamp,
    coverage: Option<&Coverage>,
    now: Timestamp,
) -> Vec<Row> {
    accounts(grants)
        .into_iter()
        .filter_map(|(id, a)| {
            let kind = match a.id.0 {
                Principal::User(_) => "User",
                Principal::ServiceAccount(..) => "ServiceAccount",
                Principal::Group(_) => return None,
            };
            let k = known(&id);
            let judged = judge_covered(&k, from, coverage, now);
            Some(Row {
                account: id,
                kind,
                bindings: a.bindings.iter().map(ToString::to_string).collect(),
                known: k,
                judged: judged.inactivity,
                reason: judged.reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
