//! Finished requests are kept for `--retention`, then deleted. The controller watches only
//! unfinished requests (its memory does not grow with the history), so a sweep lists the
//! finished ones' metadata, a page at a time, reads only those created longer ago than the
//! retention (a request finishes after it is created), and deletes those past their retention.

use std::time::Duration;

use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::clock::since;
use crate::crd::{DeprovisionRequest, Phase};

/// Records read per page.
const PAGE: u32 = 500;

/// The terminal phases, each listed with its own field selector.
const FINISHED: [Phase; 3] = [Phase::Succeeded, Phase::Failed, Phase::DryRun];

/// The field selector of the requests the controller works on: every phase but the terminal ones.
pub fn unfinished_selector() -> String {
    FINISHED.iter().map(|p| format!("status.phase!={}", p.as_str())).collect::<Vec<_>>().join(",")
}

/// How often the sweep runs: often enough for short retentions (tests), at most every 10 minutes.
pub(super) fn sweep_interval(retention: Duration) -> Duration {
    (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Sweeps until `stop`: deletes finished requests older than `retention`. A stop interrupts a
/// sweep (each delete stands on its own), so it never holds up a handover.
pub(super) async fn run(client: Client, retention: Duration, stop: CancellationToken) {
    let every = sweep_interval(retention);
    loop {
        let swept = tokio::select! {
            swept = sweep(&client, retention) => swept,
            _ = stop.cancelled() => return,
        };
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention passed; deleted finished requests"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One sweep; returns how many records it deleted.
async fn sweep(client: &Client, retention: Duration) -> Result<usize, kube::Error> {
    let api: Api<DeprovisionRequest> = Api::all(client.clone());
    let mut deleted = 0;
    for phase in FINISHED {
        let mut lp = ListParams::default().fields(&format!("status.phase={}", phase.as_str())).limit(PAGE);
        loop {
            let page = api.list_metadata(&lp).await?;
            for m in &page.items {
                // Created within the retention: finished within it too.
                if m.metadata.creation_timestamp.as_ref().is_some_and(|t| since(t) < retention) {
                    continue;
                }
                let name = m.name_any();
                let Some(r) = api.get_opt(&name).await? else { continue };
                let done = r.status.as_ref().and_then(|s| s.completed_at.as_ref());
                if done.is_some_and(|t| since(t) >= retention) {
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => deleted += 1,
                        Err(kube::Error::Api(s)) if s.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests;
