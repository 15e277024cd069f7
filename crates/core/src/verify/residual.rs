//! Residual bindings (pure): which bindings still name one of the target's subjects after the
//! removals, and why this request did not remove them.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use kube_core::ResourceExt;

use crate::crd::{
    Action, ActionResult, BindingKind, DeprovisionPolicy, DeprovisionRequestSpec, Outcome, PlannedAction,
    ResidualBinding,
};
use crate::plan::subject::{PrincipalRef, Wanted};
use crate::plan::{BindingView, rule_covers};
use crate::text;

/// The most residual bindings one record lists (the rest are counted in a note).
pub const MAX_RESIDUAL: usize = 32;

/// What the reasons are judged against: the request, its plan and results, and the policies.
pub struct Judge<'a> {
    /// The request.
    pub spec: &'a DeprovisionRequestSpec,
    /// The policies that matched the request.
    pub matched: &'a [&'a DeprovisionPolicy],
    /// Every policy in the cluster.
    pub all: &'a [DeprovisionPolicy],
    /// The request's plan.
    pub plan: &'a [PlannedAction],
    /// Its results.
    pub results: &'a [ActionResult],
}

/// A view of a RoleBinding.
pub fn role_binding(b: &RoleBinding) -> BindingView<'_> {
    BindingView {
        namespace: b.metadata.namespace.as_deref(),
        meta: &b.metadata,
        role_ref: &b.role_ref,
        subjects: b.subjects.as_deref().unwrap_or_default(),
    }
}

/// A view of a ClusterRoleBinding.
pub fn cluster_role_binding(b: &ClusterRoleBinding) -> BindingView<'_> {
    BindingView {
        namespace: None,
        meta: &b.metadata,
        role_ref: &b.role_ref,
        subjects: b.subjects.as_deref().unwrap_or_default(),
    }
}

/// The binding's subjects that are the target (same matching rules as removal), as
/// `Kind name`.
fn named<'b>(subjects: &'b [Subject], namespace: Option<&'b str>, wanted: &[Wanted]) -> Vec<&'b Subject> {
    subjects
        .iter()
        .filter(|s| PrincipalRef::of_subject(s, namespace).is_some_and(|p| wanted.iter().any(|w| w.matches_ref(p))))
        .collect()
}

/// The residual entry for a binding that still names the target, or `None`.
pub fn residual(view: &BindingView<'_>, wanted: &[Wanted], judge: &Judge<'_>) -> Option<ResidualBinding> {
    if view.meta.deletion_timestamp.is_some() {
        return None;
    }
    // Most bindings name none of them: decide that without allocating.
    let names_one = |s: &Subject| {
        PrincipalRef::of_subject(s, view.namespace).is_some_and(|p| wanted.iter().any(|w| w.matches_ref(p)))
    };
    if !view.subjects.iter().any(names_one) {
        return None;
    }
    let hits = named(view.subjects, view.namespace, wanted);
    if hits.is_empty() {
        return None;
    }
    let subject = text::first_and_more(hits.iter().map(|s| crate::plan::subject::subject_ref(s)));
    Some(ResidualBinding {
        kind: if view.namespace.is_some() { BindingKind::RoleBinding } else { BindingKind::ClusterRoleBinding },
        namespace: view.namespace.map(str::to_string),
        name: view.meta.name.clone().unwrap_or_default(),
        role_ref: format!("{}/{}", view.role_ref.kind, view.role_ref.name),
        subject,
        why: why(view, judge),
    })
}

/// Why the request left this binding alone.
fn why(view: &BindingView<'_>, judge: &Judge<'_>) -> String {
    let name = view.meta.name.as_deref().unwrap_or_default();
    let acted = judge.plan.iter().find(|a| match &a.action {
        Action::RemoveBindingSubject(b) => b.binding.namespace() == view.namespace && b.binding.name == name,
        _ => false,
    });
    if let Some(a) = acted {
        let failed = judge.results.iter().find(|r| r.id == a.id && r.outcome == Outcome::Failed);
        return match failed {
            Some(r) => text::clip_to(&format!("its removal failed: {}", r.message), 200),
            None => "names them again after this request removed them".into(),
        };
    }
    let covers = |p: &DeprovisionPolicy, only_this: bool| {
        p.spec.rules.iter().any(|r| rule_covers(r, view, only_this.then_some(judge.spec)))
    };
    if let Some(p) = judge.matched.iter().find(|p| covers(p, true)) {
        return format!(
            "selected by DeprovisionPolicy {}, but created or changed after the plan was made",
            p.name_any()
        );
    }
    if let Some(p) = judge.matched.iter().find(|p| covers(p, false)) {
        return format!("covered by DeprovisionPolicy {} only for permissions this request did not name", p.name_any());
    }
    let matched = |p: &DeprovisionPolicy| judge.matched.iter().any(|m| m.name_any() == p.name_any());
    if let Some(p) = judge.all.iter().find(|p| !matched(p) && covers(p, false)) {
        return format!("covered by DeprovisionPolicy {} (another application), not by this request's", p.name_any());
    }
    let names: Vec<String> = judge.matched.iter().map(|p| p.name_any()).collect();
    match names.len() {
        0 => "not covered by any policy".into(),
        1 => format!("not covered by policy {}", names[0]),
        _ => format!("not covered by policies {}", names.join(", ")),
    }
}
