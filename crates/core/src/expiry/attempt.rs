//! Attempts at one expiry. A request that failed for a reason other than a planning refusal (the
//! API server down longer than `--give-up-after`, an action that failed) leaves the access in
//! place, so the leader records another, `<name>-2`, `<name>-3`, … up to [`MAX_ATTEMPTS`]. A
//! refusal (no policy applies, a protected subject, a binding GitOps keeps under
//! `managedBindings: Fail`) is the policy's answer: asking again changes nothing.

use crate::crd::{ConditionType, DeprovisionRequestStatus, Phase};

/// Requests recorded for one expiry at most (the first and four more).
pub const MAX_ATTEMPTS: u32 = 5;

/// The name of attempt `n` (from 1) at the expiry whose first request is `base`.
pub fn name(base: &str, n: u32) -> String {
    match n {
        0 | 1 => base.to_string(),
        n => format!("{base}-{n}"),
    }
}

/// What a recorded attempt says of the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Not finished yet (or not picked up): wait for it.
    Wait,
    /// Finished for good: it succeeded, or the policy refused it (asking again changes nothing).
    Settled,
    /// Failed for another reason: record the next attempt (if any is left).
    Again,
}

/// What the attempt whose status is `status` says of the next.
pub fn next(status: Option<&DeprovisionRequestStatus>) -> Next {
    let Some(st) = status else { return Next::Wait };
    match st.phase {
        Phase::Pending | Phase::InProgress => Next::Wait,
        Phase::Succeeded | Phase::DryRun => Next::Settled,
        Phase::Failed if refused(st) => Next::Settled,
        Phase::Failed => Next::Again,
    }
}

/// Whether planning refused the request (its `Planned` condition is `False`).
pub fn refused(st: &DeprovisionRequestStatus) -> bool {
    st.conditions.iter().any(|c| c.type_ == ConditionType::Planned.as_str() && c.status == "False")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Reason, set_condition};

    fn status(phase: Phase, planned: Option<bool>) -> DeprovisionRequestStatus {
        let mut st = DeprovisionRequestStatus { phase, ..Default::default() };
        if let Some(p) = planned {
            set_condition(&mut st.conditions, ConditionType::Planned, p, Reason::Planned, "", None);
        }
        st
    }

    #[test]
    fn only_a_failure_that_is_not_a_refusal_is_tried_again() {
        assert_eq!(next(None), Next::Wait);
        assert_eq!(next(Some(&status(Phase::Pending, None))), Next::Wait);
        assert_eq!(next(Some(&status(Phase::InProgress, Some(true)))), Next::Wait);
        assert_eq!(next(Some(&status(Phase::Succeeded, Some(true)))), Next::Settled);
        // Refused when planned (managedBindings: Fail, protected, no policy).
        assert_eq!(next(Some(&status(Phase::Failed, Some(false)))), Next::Settled);
        // Gave up before a plan (the API server down), or an action failed.
        assert_eq!(next(Some(&status(Phase::Failed, None))), Next::Again);
        assert_eq!(next(Some(&status(Phase::Failed, Some(true)))), Next::Again);
    }

    #[test]
    fn attempts_are_named_from_the_first() {
        assert_eq!(name("expiry-abc", 1), "expiry-abc");
        assert_eq!(name("expiry-abc", 2), "expiry-abc-2");
        assert_eq!(name("expiry-abc", MAX_ATTEMPTS), "expiry-abc-5");
    }
}
