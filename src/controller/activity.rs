//! The last activity a removal is based on: when the operator records it
//! (`--record-last-activity`), the target's accounts (the users and ServiceAccounts the matching
//! policies resolve it to) are read from the activity store while the plan waits for the
//! bindings' barrier, and kept in the request's status (`lastActivity`). A read that fails, or is
//! not done soon after the plan, is recorded as such; it never holds up or fails the removal.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::activity::read::Store;
use crate::crd::{AccountActivity, DeprovisionPolicy, DeprovisionRequestSpec, MAX_ACCOUNTS, RecordedActivity};
use crate::plan::subject::{Principal, Wanted};

/// How long a finished plan waits for a read still under way.
pub const GRACE: Duration = Duration::from_millis(500);

/// Longest error text recorded.
const MAX_ERROR: usize = 300;

/// A read of the target's last activity, started before the plan's barrier wait.
#[derive(Default)]
pub struct Pending(Option<tokio::task::JoinHandle<RecordedActivity>>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The account ids whose activity a request's record keeps: users and ServiceAccounts (a group
/// never makes a request), each once, at most [`MAX_ACCOUNTS`].
pub fn accounts(wanted: &[Wanted]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        if matches!(w.principal, Principal::Group(_)) {
            continue;
        }
        let id = crate::connector::model::AccountId(w.principal.clone()).to_string();
        if !out.contains(&id) && out.len() < MAX_ACCOUNTS {
            out.push(id);
        }
    }
    out
}

/// What a failed read records.
pub fn failed(reason: impl std::fmt::Display) -> RecordedActivity {
    let e = crate::text::clip_to(&reason.to_string(), MAX_ERROR);
    RecordedActivity {
        read_at: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        error: Some(e),
        ..RecordedActivity::default()
    }
}

impl Pending {
    /// Starts reading the activity of the accounts `spec` resolves to under `matched`, when
    /// `store` is given (else records nothing).
    pub fn start(store: Option<Store>, spec: &DeprovisionRequestSpec, matched: &[&DeprovisionPolicy]) -> Pending {
        let Some(store) = store else { return Pending(None) };
        let ids = accounts(&crate::plan::principals(spec, matched).unwrap_or_default());
        Pending(Some(tokio::spawn(async move {
            let read = store.for_accounts_covered(ids.iter().map(String::as_str)).await;
            let read_at = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            match read {
                Ok(shards) => RecordedActivity {
                    read_at,
                    accounts: ids.iter().map(|a| AccountActivity::of(a, &shards.known(a))).collect(),
                    error: None,
                    covered_from: shards.coverage.as_ref().map(|c| Time(c.covered_from)),
                    heard_at: shards.coverage.as_ref().map(|c| Time(c.heard_at)),
                },
                Err(e) => failed(e),
            }
        })))
    }

    /// The read's record, waiting at most [`GRACE`] more; `None` when none was started.
    pub async fn finish(mut self) -> Option<RecordedActivity> {
        let mut task = self.0.take()?;
        Some(match tokio::time::timeout(GRACE, &mut task).await {
            Ok(Ok(recorded)) => recorded,
            Ok(Err(e)) => failed(format!("the read stopped: {e}")),
            Err(_) => {
                task.abort();
                failed(format!("not read within {} ms of the plan", GRACE.as_millis()))
            }
        })
    }
}

#[cfg(test)]
mod tests;
