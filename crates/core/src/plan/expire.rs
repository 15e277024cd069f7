//! Planning a request with source `Expiry` (pure): only the expiring account in only that
//! binding (the same UID), with the policy's `emptyBindings` and `managedBindings`, protection
//! checked again, and the policy's exemptions too (it may have changed since).

use k8s_openapi::api::rbac::v1::Subject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::ResourceExt;

use crate::crd::{AbsentCheck, Action, BindingAction, DeprovisionPolicy, Expiry, PlannedAction};
use crate::plan::subject::{Principal, Protected, subject_ref};

use super::{Observed, Plan, PlanError, refuse_managed, validate_policy};

/// The plan of an expiry: remove each spelling of the account from the binding, or confirm it is
/// gone (the binding no longer names it, was deleted, or was created again: another UID).
pub(super) fn compute(
    e: &Expiry,
    policies: &[DeprovisionPolicy],
    observed: &Observed,
    protected: &Protected,
) -> Result<Plan, PlanError> {
    let policy = policies
        .iter()
        .find(|p| p.name_any() == e.policy)
        .ok_or_else(|| PlanError::NoPolicy(format!("{:?} (the expiry's policy)", e.policy)))?;
    validate_policy(&policy.spec).map_err(|reason| PlanError::InvalidPolicy { policy: e.policy.clone(), reason })?;
    let principal = Principal::from_account_id(&e.account).ok_or_else(|| PlanError::BadAccountId {
        policy: e.policy.clone(),
        index: 0,
        name: e.account.clone(),
    })?;
    if let Some(why) = protected.why(&principal) {
        return Err(PlanError::Protected(format!("{} in {} matches: {why}", e.account, e.binding)));
    }
    if let Some(p) = exempting(policy, &e.account) {
        return Err(PlanError::Protected(format!(
            "{} is exempt from expiry by DeprovisionPolicy {} expiry.exempt {p:?}",
            e.account, e.policy
        )));
    }
    let found = binding_of(e, observed);
    let same =
        found.filter(|(meta, _)| meta.uid.as_deref() == Some(&e.binding.uid) && meta.deletion_timestamp.is_none());
    // Removed and given again since the expiry was scheduled: that is another grant, on its own
    // clock; the one this expiry was for is gone.
    if let Some(crate::expiry::grant::Holding::Ended(why)) = binding_naming(e, observed)
        .map(|(meta, _)| crate::expiry::grant::holding(e, meta.resource_version.as_deref(), observed.clocks.as_ref()))
    {
        let check = AbsentCheck { subject: principal.to_string(), bindings_checked: 0 };
        let reason = format!("not removed: {why} (expired: {})", e.reason);
        let action = Action::ConfirmAbsent(check);
        return Ok(Plan {
            policies: vec![e.policy.clone()],
            actions: vec![PlannedAction { id: 0, policy: e.policy.clone(), reason, action }],
        });
    }
    let mut actions = vec![];
    if let Some((meta, subjects)) = same {
        let managed_by = super::manager::of(meta, super::manager::OWN_FIELD_MANAGER);
        for s in subjects.iter().filter(|s| crate::expiry::grant::is_account(s, e.binding.namespace(), &e.account)) {
            let subject = subject_ref(s);
            if actions
                .iter()
                .any(|a: &PlannedAction| matches!(&a.action, Action::RemoveBindingSubject(b) if b.subject == subject))
            {
                continue;
            }
            actions.push(PlannedAction {
                id: actions.len() as i32,
                policy: e.policy.clone(),
                reason: format!("expired: {}", e.reason),
                action: Action::RemoveBindingSubject(BindingAction {
                    binding: e.binding.clone(),
                    subject,
                    when_empty: policy.spec.empty_bindings,
                    managed_by: managed_by.clone(),
                }),
            });
        }
    }
    if actions.is_empty() {
        let check = AbsentCheck { subject: principal.to_string(), bindings_checked: i32::from(same.is_some()) };
        actions.push(PlannedAction {
            id: 0,
            policy: e.policy.clone(),
            reason: format!("{} no longer holds {} (expired: {})", e.binding, principal, e.reason),
            action: Action::ConfirmAbsent(check),
        });
    }
    refuse_managed(&[policy], &actions)?;
    Ok(Plan { policies: vec![e.policy.clone()], actions })
}

type Found<'a> = (&'a ObjectMeta, &'a [Subject]);

/// The expiry's binding by namespace and name, as observed (any UID).
fn binding_of<'a>(e: &Expiry, observed: &'a Observed) -> Option<Found<'a>> {
    match e.binding.namespace() {
        Some(ns) => (observed.role_bindings.iter())
            .find(|b| {
                b.metadata.namespace.as_deref() == Some(ns) && b.metadata.name.as_deref() == Some(&e.binding.name)
            })
            .map(|b| (&b.metadata, b.subjects.as_deref().unwrap_or_default())),
        None => (observed.cluster_role_bindings.iter())
            .find(|b| b.metadata.name.as_deref() == Some(&e.binding.name))
            .map(|b| (&b.metadata, b.subjects.as_deref().unwrap_or_default())),
    }
}

/// The expiry's binding (that UID, not being deleted) when it still names the account.
pub(super) fn binding_naming<'a>(e: &Expiry, observed: &'a Observed) -> Option<Found<'a>> {
    binding_of(e, observed).filter(|(meta, subjects)| {
        meta.uid.as_deref() == Some(&e.binding.uid)
            && meta.deletion_timestamp.is_none()
            && subjects.iter().any(|s| crate::expiry::grant::is_account(s, e.binding.namespace(), &e.account))
    })
}

/// The policy's exemption pattern the account matches, if any.
pub(super) fn exempting<'p>(policy: &'p DeprovisionPolicy, account: &str) -> Option<&'p str> {
    let exempt = policy.spec.expiry.as_ref().map(|x| x.exempt.as_slice()).unwrap_or_default();
    exempt.iter().find(|p| super::glob_match(p, account)).map(String::as_str)
}

#[cfg(test)]
mod tests;
