use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::crd::{BindingScope, ManagerKind, Reason};
use crate::fixtures::{self, user};

fn policy(managed: &str) -> DeprovisionPolicy {
    fixtures::policy(
        "pol",
        json!({"application": {"appId": "demo"}, "onRegrant": "Remove", "managedBindings": managed,
               "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
               "rules": [{"roleBindings": {"namespaces": ["team"], "roleRef": {"name": "view"}},
                          "http": {"system": "hr", "method": "POST", "url": "https://hr.example/off"}}]}),
    )
}

fn spec() -> DeprovisionRequestSpec {
    fixtures::request_spec("demo", "ann@x.io").build()
}

fn observed(ns: &str, name: &str, role: &str, argo: bool) -> Observed {
    let mut b = fixtures::role_binding(ns, name)
        .role(role)
        .subjects([user("ann@x.io"), user("bob@x.io")])
        .uid("new-uid")
        .build();
    if argo {
        let tracking = (crate::plan::manager::ARGOCD_TRACKING.to_string(), "web:x".to_string());
        b.metadata.annotations = Some([tracking].into());
    }
    Observed { role_bindings: vec![Arc::new(b)], ..Default::default() }
}

fn binding_actions(actions: &[PlannedAction]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match &a.action {
            Action::RemoveBindingSubject(b) => {
                format!("{} {} uid={} by {}", b.binding, b.subject, b.binding.uid, a.policy)
            }
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn inside_the_policys_scope_the_removal_is_planned_as_a_first_one_without_external_calls() {
    let actions =
        again(&spec(), &[policy("Remove")], &observed("team", "edit", "view", false), &Protected::default()).unwrap();
    // Only the binding removal: the policy's HTTP call is not sent again, and the binding's UID
    // is the one it has now.
    assert_eq!(binding_actions(&actions), ["RoleBinding team/edit User ann@x.io uid=new-uid by pol"]);
    assert!(actions[0].reason.contains("rules[0]"), "{}", actions[0].reason);
    let Action::RemoveBindingSubject(b) = &actions[0].action else { unreachable!() };
    assert_eq!(b.binding.scope, BindingScope::Namespaced("team".into()));
}

#[test]
fn outside_the_policys_scope_nothing_is_planned() {
    let p = [policy("Remove")];
    // Another namespace, or the same name now granting a role the rule does not select.
    assert!(again(&spec(), &p, &observed("other", "edit", "view", false), &Protected::default()).unwrap().is_empty());
    assert!(again(&spec(), &p, &observed("team", "edit", "admin", false), &Protected::default()).unwrap().is_empty());
    // A policy for another application selects nothing for this request.
    let other = fixtures::request_spec("other-app", "ann@x.io").build();
    let err = again(&other, &p, &observed("team", "edit", "view", false), &Protected::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::NoPolicy);
}

#[test]
fn a_managed_binding_is_handled_per_managed_bindings() {
    let argo = observed("team", "edit", "view", true);
    let actions = again(&spec(), &[policy("Remove")], &argo, &Protected::default()).unwrap();
    let Action::RemoveBindingSubject(b) = &actions[0].action else { unreachable!() };
    assert_eq!(
        b.managed_by.as_ref().map(|m| m.kind),
        Some(ManagerKind::ArgoCd),
        "recorded as a first removal records it"
    );
    let err = again(&spec(), &[policy("Fail")], &argo, &Protected::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::ManagedBinding);
}
