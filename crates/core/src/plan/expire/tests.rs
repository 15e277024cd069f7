use std::sync::Arc;

use crate::crd::{Action, BindingRef, BindingScope, DeprovisionPolicy, EndedBy, Expiry, StartEvidence, SubjectRef};
use crate::fixtures::{self, user};
use crate::plan::subject::Protected;
use crate::plan::{Observed, PlanError, compute};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn policy(spec: serde_json::Value) -> DeprovisionPolicy {
    let mut all = serde_json::json!({
        "application": {"appId": "app"},
        "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
        "rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "1h"}],
    });
    all.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    DeprovisionPolicy::new("p", serde_json::from_value(all).unwrap())
}

fn expiry(account: &str, uid: &str) -> crate::crd::DeprovisionRequestSpec {
    let t = Time("2025-06-01T00:00:00Z".parse().unwrap());
    let e = Expiry {
        binding: BindingRef {
            scope: BindingScope::Namespaced("a".into()),
            name: "rb".into(),
            uid: uid.into(),
            role_ref: "ClusterRole/view".into(),
        },
        subject: SubjectRef { kind: "User".into(), name: "ann@x.com".into(), namespace: None },
        account: account.into(),
        started_at: t.clone(),
        started_from: StartEvidence::Created,
        due_at: t,
        ended_by: EndedBy::MaxAccess,
        policy: "p".into(),
        reason: "DeprovisionPolicy p rules[0] maxAccess 1h".into(),
        binding_version: Some("10".into()),
    };
    crate::expiry::request_spec(&e, &policy(serde_json::json!({})).spec.application)
}

fn observed(subjects: Vec<k8s_openapi::api::rbac::v1::Subject>) -> Observed {
    let b = fixtures::role_binding("a", "rb").role("view").subjects(subjects).uid("u1").build();
    Observed { role_bindings: vec![Arc::new(b)], ..Observed::default() }
}

#[test]
fn only_the_expiring_account_of_that_binding_is_removed() {
    let spec = expiry("User:ann@x.com", "u1");
    let plan = compute(
        &spec,
        &[policy(serde_json::json!({}))],
        &observed(vec![user("ann@x.com"), user("bob@x.com")]),
        &Protected::default(),
    )
    .unwrap();
    assert_eq!(plan.policies, ["p"]);
    let [a] = plan.actions.as_slice() else { panic!("{:?}", plan.actions) };
    let Action::RemoveBindingSubject(b) = &a.action else { panic!("{a:?}") };
    assert_eq!((b.subject.name.as_str(), b.binding.uid.as_str()), ("ann@x.com", "u1"));
    assert!(a.reason.contains("maxAccess 1h"));
}

#[test]
fn another_binding_under_the_name_or_a_subject_gone_only_confirms_absence() {
    for (uid, subjects) in [("u0", vec![user("ann@x.com")]), ("u1", vec![user("bob@x.com")])] {
        let plan = compute(
            &expiry("User:ann@x.com", uid),
            &[policy(serde_json::json!({}))],
            &observed(subjects),
            &Protected::default(),
        )
        .unwrap();
        assert!(plan.checks_absence(), "{:?}", plan.actions);
        assert!(plan.actions.iter().all(|a| !a.action.changes_something()));
    }
}

#[test]
fn protected_exempt_and_managed_fail_changing_nothing() {
    let p = policy(serde_json::json!({}));
    let sys = expiry("Group:system:masters", "u1");
    let err = compute(&sys, std::slice::from_ref(&p), &observed(vec![]), &Protected::default()).unwrap_err();
    assert!(matches!(err, PlanError::Protected(_)), "{err}");
    let exempting = policy(serde_json::json!({"expiry": {"exempt": ["User:*@x.com"]}}));
    let err = compute(
        &expiry("User:ann@x.com", "u1"),
        &[exempting],
        &observed(vec![user("ann@x.com")]),
        &Protected::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("exempt"), "{err}");
    let failing = policy(serde_json::json!({"managedBindings": "Fail"}));
    let mut o = observed(vec![user("ann@x.com")]);
    let mut b = (*o.role_bindings[0]).clone();
    b.metadata.labels = Some([("app.kubernetes.io/instance".to_string(), "team".to_string())].into());
    o.role_bindings = vec![Arc::new(b)];
    let err = compute(&expiry("User:ann@x.com", "u1"), &[failing], &o, &Protected::default()).unwrap_err();
    assert!(matches!(err, PlanError::Managed(_)), "{err}");
}

#[test]
fn an_expiry_is_planned_for_its_policy_only_and_its_principal_is_the_account() {
    let spec = expiry("User:ann@x.com", "u1");
    let w = crate::plan::principals(&spec, &[]).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].principal, crate::plan::subject::Principal::User("ann@x.com".into()));
    let err = compute(&spec, &[], &observed(vec![]), &Protected::default()).unwrap_err();
    assert!(matches!(err, PlanError::NoPolicy(_)), "{err}");
}

#[test]
fn a_subject_given_the_binding_again_since_the_expiry_was_scheduled_keeps_the_new_grant() {
    use crate::crd::{BindingClocks, Clock};
    use crate::expiry::Holding;
    use crate::plan::expiry_holding;
    let spec = expiry("User:ann@x.com", "u1");
    let policies = [policy(serde_json::json!({}))];
    let at = |v: &str, subjects| {
        let mut o = observed(subjects);
        let b = Arc::make_mut(&mut o.role_bindings[0]);
        b.metadata.resource_version = Some(v.into());
        o
    };
    let clocks = |v: &str, since: &str| BindingClocks {
        binding: "RoleBinding a/rb".into(),
        subjects: [(
            "User:ann@x.com".to_string(),
            Clock { since: Time(since.parse().unwrap()), from: StartEvidence::Observed },
        )]
        .into(),
        version: Some(v.into()),
    };
    let removes = |o: &Observed| {
        let plan = compute(&spec, &policies, o, &Protected::default()).unwrap();
        plan.actions.iter().any(|a| matches!(a.action, Action::RemoveBindingSubject(_)))
    };
    // Unchanged since scheduled: removed.
    let same = at("10", vec![user("ann@x.com")]);
    assert_eq!(expiry_holding(&spec, &same), Some(Holding::Holds));
    assert!(removes(&same));
    // Changed, the clocks not there yet: the planner waits (and is told so).
    let mut changed = at("12", vec![user("ann@x.com"), user("bob@x.com")]);
    changed.clocks = Some(clocks("11", "2025-06-01T00:00:00Z"));
    assert!(matches!(expiry_holding(&spec, &changed), Some(Holding::Unknown(_))));
    // Changed, the clocks exact for it, ann's clock the expiry's: removed.
    changed.clocks = Some(clocks("12", "2025-06-01T00:00:00Z"));
    assert_eq!(expiry_holding(&spec, &changed), Some(Holding::Holds));
    assert!(removes(&changed));
    // Changed, the clocks exact for it, ann's clock newer (removed and given again): kept, and the
    // record says why.
    changed.clocks = Some(clocks("12", "2025-06-01T00:00:05Z"));
    assert!(matches!(expiry_holding(&spec, &changed), Some(Holding::Ended(_))));
    let plan = compute(&spec, &policies, &changed, &Protected::default()).unwrap();
    let [a] = plan.actions.as_slice() else { panic!("{:?}", plan.actions) };
    assert!(matches!(a.action, Action::ConfirmAbsent(_)), "{a:?}");
    assert!(
        a.reason.starts_with("not removed: User:ann@x.com was removed from RoleBinding a/rb and given it again"),
        "{}",
        a.reason
    );
    // The binding no longer names her (or is another binding): nothing to hold, confirmed gone.
    assert_eq!(expiry_holding(&spec, &at("12", vec![user("bob@x.com")])), None);
    assert_eq!(expiry_holding(&fixtures::request_spec("app", "ann@x.com").build(), &same), None);
}
