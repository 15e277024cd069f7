//! Keeps each DeprovisionPolicy's `Valid` condition up to date.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::{Context, Error};
use crate::crd::{ConditionType, DeprovisionPolicy, DeprovisionPolicyStatus, Reason, set_condition};
use crate::plan;

/// Validates the policy and records the verdict when it changed.
pub(super) async fn reconcile(p: Arc<DeprovisionPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let generation = p.metadata.generation;
    let mut st = p.status.clone().unwrap_or_default();
    let (ok, reason, msg) = match plan::validate_policy(&p.spec) {
        Ok(()) => (true, Reason::Valid, "policy is usable".to_string()),
        Err(e) => (false, Reason::Invalid, e),
    };
    let before = st.clone();
    set_condition(&mut st.conditions, ConditionType::Valid, ok, reason, &msg, generation);
    st.observed_generation = generation;
    if without_times(&before) == without_times(&st) {
        return Ok(Action::await_change());
    }
    let mut next = (*p).clone();
    next.status = Some(st);
    let name = p.name_any();
    Api::<DeprovisionPolicy>::all(ctx.client.clone())
        .replace_status(&name, &PostParams::default(), &next)
        .await
        .map_err(|source| Error::Status { name, source })?;
    Ok(Action::await_change())
}

fn without_times(s: &DeprovisionPolicyStatus) -> DeprovisionPolicyStatus {
    let mut s = s.clone();
    for c in &mut s.conditions {
        c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
    }
    s
}

pub(super) fn error_policy(p: Arc<DeprovisionPolicy>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(policy = %p.name_any(), error = %err, "policy status update failed; retrying");
    Action::requeue(Duration::from_secs(10))
}
