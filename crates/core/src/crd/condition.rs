//! The status vocabulary: condition types and reasons, one spelling each. Conditions, Events and
//! metric labels all take their words from here, never from `{:?}`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Declares a fieldless enum whose variants are spelled exactly as their names.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The word as written in the status, Events and metric labels.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// Condition types.
    ConditionType {
        /// A request's plan is recorded (False: it could not be planned).
        Planned,
        /// A request is terminal (False while it runs).
        Complete,
        /// A policy is usable.
        Valid,
        /// A removed subject was named by a binding again after the request finished.
        Regranted,
        /// After the removals, the authorizer allows the target none of what was removed
        /// (False: something remains; Unknown: it could not be checked).
        Verified,
    }
}

vocabulary! {
    /// Reasons of conditions and Events.
    Reason {
        /// The plan is recorded.
        Planned,
        /// The plan is being executed.
        InProgress,
        /// Every action succeeded.
        Succeeded,
        /// At least one action failed.
        ActionsFailed,
        /// Planned only, nothing changed.
        DryRun,
        /// API errors lasted past `--give-up-after`.
        GaveUp,
        /// One subject was removed (Event).
        Removed,
        /// The access was already gone (Event).
        AlreadyAbsent,
        /// An external account was deactivated (Event).
        Deactivated,
        /// One action failed (Event).
        ActionFailed,
        /// A policy is usable.
        Valid,
        /// A policy is not usable.
        Invalid,
        /// No policy covers the application.
        NoPolicy,
        /// A matching policy is unusable.
        InvalidPolicy,
        /// A requested permission no rule maps.
        UnmappedPermission,
        /// A template could not be rendered for the request.
        TemplateUnresolved,
        /// A permission value taken as a namespace is not a namespace name.
        BadNamespace,
        /// The plan would touch a protected subject.
        ProtectedSubject,
        /// A rule needs a permission but the request names none.
        NeedsPermission,
        /// A rendered subject name is not in `allowedNames`.
        SubjectNotAllowed,
        /// Two policies disagree about one binding.
        ConflictingPolicies,
        /// The plan is too large to record.
        PlanTooLarge,
        /// An `entitlements` rule does not allow the entitlement the request names.
        EntitlementNotAllowed,
        /// A binding to edit is kept in sync by another tool (`managedBindings: Fail`).
        ManagedBinding,
        /// The authorizer allows the target none of what was removed.
        NoRemainingAccess,
        /// The authorizer still allows the target some of what was removed.
        AccessRemains,
        /// The verification could not be made.
        NotVerified,
        /// A binding names a removed subject again.
        AccessRegranted,
        /// The subject was removed again after it came back.
        RemovedAgain,
        /// On a fleet hub: the request was handed to the member clusters a `ClusterSet` selects.
        HandedToMembers,
        /// On a fleet hub: a member's record did not succeed.
        MembersFailed,
        /// On a fleet hub: the `ClusterSet`s for the application select no member cluster.
        NoMember,
    }
}

/// Sets a condition (its message clipped), moving `lastTransitionTime` only when its status
/// changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: bool,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" };
    set_condition_status(conditions, type_, status, reason, message, generation);
}

/// Sets a condition to `True`, `False` or `Unknown` (see [`set_condition`]).
pub fn set_condition_status(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: &str,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
) {
    let status = status.to_string();
    let message = &crate::text::clip(message);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == type_.as_str()) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.as_str().into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.as_str().into(),
            status,
            reason: reason.as_str().into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

#[cfg(test)]
mod tests;
