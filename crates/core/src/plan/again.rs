//! Removing a re-grant (pure): what a first removal of the same request by the same policies
//! would plan from the binding as it is now. The same selection (a binding outside the policies'
//! rules yields nothing), subject matching, protection and `managedBindings` handling (`Fail`
//! refuses); external calls and absence checks are not repeated.

use crate::crd::{Action, DeprovisionPolicy, DeprovisionRequestSpec, PlannedAction};

use super::subject::Protected;
use super::{Observed, PlanError, compute};

/// The binding removals `policies` (those that made the original removal) plan for the request
/// from `observed` (the re-granting binding, and its namespace when a rule selects namespaces by
/// label). Empty when their rules do not select the binding for this request, or it names none
/// of the subjects they resolve the person to.
pub fn again(
    spec: &DeprovisionRequestSpec,
    policies: &[DeprovisionPolicy],
    observed: &Observed,
    protected: &Protected,
) -> Result<Vec<PlannedAction>, PlanError> {
    let plan = compute(spec, policies, observed, protected)?;
    Ok(plan.actions.into_iter().filter(|a| matches!(a.action, Action::RemoveBindingSubject(_))).collect())
}

#[cfg(test)]
mod tests;
