//! Finished requests are kept for `--retention`, then deleted.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::Error;
use super::record::{Record, since};
use crate::crd::DeprovisionRequestStatus;

/// Longest requeue: a long retention is checked again at least daily.
const MAX_REQUEUE: Duration = Duration::from_secs(86_400);

/// Deletes a finished request once its retention has passed; otherwise checks again then.
pub(super) async fn keep_or_delete(rec: &Record, st: &DeprovisionRequestStatus) -> Result<Action, Error> {
    let Some(done) = &st.completed_at else {
        return Ok(Action::await_change());
    };
    let age = since(done);
    let keep = rec.ctx.settings.retention;
    if age < keep {
        return Ok(Action::requeue((keep - age).min(MAX_REQUEUE)));
    }
    tracing::info!(request = %rec.obj.name_any(), "retention passed; deleting the record");
    rec.delete().await?;
    Ok(Action::await_change())
}
