use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::residual::{Judge, cluster_role_binding, residual, role_binding};
use super::reviews::{Grant, Identity, MAX_REVIEWS, identities, questions};
use super::verdict::{Verdict, binding_in_reason, condition_message, fails, sentence};
use crate::crd::*;
use crate::fixtures::{self, group, service_account_in, user};
use crate::plan::BindingView;
use crate::plan::subject::Wanted;

fn wanted(kind: SubjectKind, name: &str) -> Wanted {
    Wanted::new(kind, name.into(), None, false).unwrap()
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn binding(ns: Option<&str>, name: &str, role: &str) -> BindingRef {
    BindingRef {
        scope: ns.map_or(BindingScope::Cluster, |n| BindingScope::Namespaced(n.into())),
        name: name.into(),
        uid: format!("uid-{name}"),
        role_ref: role.into(),
    }
}

#[test]
fn identities_carry_the_groups_the_policy_knows() {
    let w = [wanted(SubjectKind::User, "ann@x.io"), wanted(SubjectKind::Group, "team-a")];
    assert_eq!(identities(&w), vec![Identity { user: "ann@x.io".into(), groups: vec!["team-a".into()] }]);
    // Groups alone are asked about alone.
    let w = [wanted(SubjectKind::Group, "team-a"), wanted(SubjectKind::Group, "team-b")];
    assert_eq!(identities(&w), vec![Identity { user: String::new(), groups: vec!["team-a".into(), "team-b".into()] }]);
    // A ServiceAccount is asked about with the groups Kubernetes gives it.
    let w = [Wanted::new(SubjectKind::ServiceAccount, "bot".into(), Some("ci".into()), false).unwrap()];
    let ids = identities(&w);
    assert_eq!(ids[0].user, "system:serviceaccount:ci:bot");
    assert_eq!(ids[0].groups, vec!["system:serviceaccounts", "system:serviceaccounts:ci"]);
    assert_eq!(
        ids[0].to_string(),
        "User system:serviceaccount:ci:bot (groups: system:serviceaccounts, system:serviceaccounts:ci)"
    );
}

#[test]
fn questions_expand_rules_where_the_binding_applies() {
    let ids = [Identity { user: "ann".into(), groups: vec![] }];
    let rb = binding(Some("team-a"), "edit", "ClusterRole/edit");
    let rules = [rule(&["get", "update"], &["apps"], &["deployments", "deployments/scale"])];
    let (qs, skipped) = questions(&ids, &[Grant { binding: &rb, rules: &rules }], MAX_REVIEWS);
    assert_eq!(skipped, 0);
    let said: Vec<String> = qs.iter().map(Review::describe).collect();
    assert_eq!(
        said,
        [
            "get deployments.apps in team-a",
            "update deployments.apps in team-a",
            "get deployments.apps/scale in team-a",
            "update deployments.apps/scale in team-a"
        ]
    );
    assert!(qs.iter().all(|q| q.granted_by == "RoleBinding team-a/edit" && !q.allowed));
    // A ClusterRoleBinding's rules apply cluster-wide, non-resource URLs included.
    let crb = binding(None, "metrics", "ClusterRole/m");
    let urls = [PolicyRule {
        verbs: vec!["get".into()],
        non_resource_urls: Some(vec!["/metrics".into()]),
        ..Default::default()
    }];
    let (qs, _) = questions(&ids, &[Grant { binding: &crb, rules: &urls }], MAX_REVIEWS);
    assert_eq!(qs.iter().map(Review::describe).collect::<Vec<_>>(), ["get /metrics"]);
    // ...but RBAC ignores them in a RoleBinding.
    let (qs, _) = questions(&ids, &[Grant { binding: &rb, rules: &urls }], MAX_REVIEWS);
    assert!(qs.is_empty());
}

#[test]
fn wildcards_are_expanded_to_samples() {
    let ids = [Identity { user: "ann".into(), groups: vec![] }];
    let crb = binding(None, "admin", "ClusterRole/cluster-admin");
    let rules = [rule(&["*"], &["*"], &["*"])];
    let (qs, _) = questions(&ids, &[Grant { binding: &crb, rules: &rules }], MAX_REVIEWS);
    let said: Vec<String> = qs.iter().map(Review::describe).collect();
    assert!(said.contains(&"delete secrets cluster-wide".to_string()), "{said:?}");
    assert!(said.contains(&"update deployments.apps cluster-wide".to_string()), "{said:?}");
    assert!(!said.iter().any(|s| s.contains('*')), "{said:?}");
    // A group with no sample is asked as `*`: only a wildcard rule allows it.
    let rules = [rule(&["get"], &["example.com"], &["*"])];
    let (qs, _) = questions(&ids, &[Grant { binding: &crb, rules: &rules }], MAX_REVIEWS);
    assert_eq!(qs.iter().map(Review::describe).collect::<Vec<_>>(), ["get *.example.com cluster-wide"]);
}

#[test]
fn questions_are_deduplicated_bounded_and_shared_between_bindings() {
    let ids = [
        Identity { user: "ann".into(), groups: vec![] },
        Identity { user: "system:serviceaccount:a:b".into(), groups: vec![] },
    ];
    let a = binding(Some("ns"), "a", "ClusterRole/big");
    let b = binding(Some("ns"), "b", "ClusterRole/small");
    let big: Vec<PolicyRule> = (0..40).map(|i| rule(&["get"], &[""], &[&format!("r{i}")])).collect();
    let small = [rule(&["get"], &[""], &["r0"]), rule(&["delete"], &[""], &["pods"])];
    let (qs, skipped) =
        questions(&ids, &[Grant { binding: &a, rules: &big }, Grant { binding: &b, rules: &small }], MAX_REVIEWS);
    assert_eq!(qs.len(), MAX_REVIEWS);
    assert_eq!(qs.len() + skipped, (40 + 1) * 2, "r0 of both roles is asked once per identity");
    // The short role's own question is asked although the long role alone would fill the bound.
    assert!(qs.iter().any(|q| q.describe() == "delete pods in ns" && q.granted_by == "RoleBinding ns/b"));
    let unique: std::collections::BTreeSet<_> = qs.iter().map(|q| (q.identity, q.describe())).collect();
    assert_eq!(unique.len(), qs.len());
}

fn policy(name: &str, spec: serde_json::Value) -> DeprovisionPolicy {
    fixtures::policy(name, spec)
}

fn demo_policy() -> DeprovisionPolicy {
    policy(
        "demo-app",
        json!({"application": {"appId": "demo"}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
               "rules": [{"permissions": ["dev"], "roleBindings": {"namespaces": ["team-a"]}},
                         {"permissions": ["ops"], "clusterRoleBindings": {"names": ["ops"]}}]}),
    )
}

#[test]
fn residual_bindings_say_why_they_were_left() {
    let spec = fixtures::request_spec("demo", "ann@x.io").permissions(["dev"]).build();
    let demo = demo_policy();
    let other = policy(
        "billing",
        json!({"application": {"appId": "billing"}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
               "rules": [{"clusterRoleBindings": {"names": ["billing-admins"]}}]}),
    );
    let all = [demo.clone(), other];
    let matched = [&all[0]];
    let removed = binding(Some("team-a"), "edit", "ClusterRole/edit");
    let plan = vec![
        PlannedAction {
            id: 0,
            policy: "demo-app".into(),
            reason: "r".into(),
            action: Action::RemoveBindingSubject(BindingAction {
                binding: removed.clone(),
                subject: SubjectRef { kind: "User".into(), name: "ann@x.io".into(), namespace: None },
                when_empty: EmptyBindingRule::Delete,
                managed_by: None,
            }),
        },
        PlannedAction {
            id: 1,
            policy: "demo-app".into(),
            reason: "r".into(),
            action: Action::RemoveBindingSubject(BindingAction {
                binding: binding(Some("team-a"), "view", "ClusterRole/view"),
                subject: SubjectRef { kind: "User".into(), name: "ann@x.io".into(), namespace: None },
                when_empty: EmptyBindingRule::Delete,
                managed_by: None,
            }),
        },
    ];
    let result = |id, outcome: Outcome, message: &str| ActionResult {
        id,
        kind: ActionKind::RemoveBindingSubject,
        object: String::new(),
        subject: String::new(),
        outcome,
        message: message.into(),
        at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        external: None,
        subjects_before: None,
        subjects_after: None,
    };
    let results = vec![result(0, Outcome::Removed, ""), result(1, Outcome::Failed, "forbidden: needs bind")];
    let judge = Judge { spec: &spec, matched: &matched, all: &all, plan: &plan, results: &results };
    let w = [wanted(SubjectKind::User, "ann@x.io"), wanted(SubjectKind::Group, "team-a-devs")];
    let why = |view: BindingView<'_>| residual(&view, &w, &judge).map(|r| r.why);

    let rb = |ns: &str, name: &str, subjects| fixtures::role_binding(ns, name).role("edit").subjects(subjects).build();
    let crb = |name: &str, subjects| fixtures::cluster_role_binding(name).role("admin").subjects(subjects).build();
    // Names someone else only: not residual.
    assert_eq!(why(role_binding(&rb("team-a", "x", vec![user("bob@x.io")]))), None);
    // Its removal failed.
    let failed = rb("team-a", "view", vec![user("ann@x.io")]);
    assert_eq!(why(role_binding(&failed)).unwrap(), "its removal failed: forbidden: needs bind");
    // Removed, and named again since.
    let back = rb("team-a", "edit", vec![user("ann@x.io")]);
    assert_eq!(why(role_binding(&back)).unwrap(), "names them again after this request removed them");
    // In the request's scope but not in the plan: it appeared after the plan.
    let late = rb("team-a", "late", vec![group("team-a-devs")]);
    assert!(why(role_binding(&late)).unwrap().contains("after the plan was made"));
    // The same policy covers it for another permission.
    let ops = crb("ops", vec![user("ann@x.io")]);
    assert_eq!(
        why(cluster_role_binding(&ops)).unwrap(),
        "covered by DeprovisionPolicy demo-app only for permissions this request did not name"
    );
    // Another application's policy covers it.
    let billing = crb("billing-admins", vec![user("ann@x.io")]);
    assert!(why(cluster_role_binding(&billing)).unwrap().contains("DeprovisionPolicy billing (another application)"));
    // Nobody covers it.
    let admins = crb("team-admins", vec![user("ann@x.io"), user("bob@x.io")]);
    let found = residual(&cluster_role_binding(&admins), &w, &judge).unwrap();
    assert_eq!(found.why, "not covered by policy demo-app");
    assert_eq!(
        (found.kind, found.subject.as_str(), found.role_ref.as_str()),
        (BindingKind::ClusterRoleBinding, "User ann@x.io", "ClusterRole/admin")
    );
    // Matching follows removal's rules: a ServiceAccount spelled as a User is that account.
    let sa = [Wanted::new(SubjectKind::ServiceAccount, "bot".into(), Some("ci".into()), false).unwrap()];
    let spelled = rb("ci", "as-user", vec![user("system:serviceaccount:ci:bot"), service_account_in("ci", "other")]);
    assert!(residual(&role_binding(&spelled), &sa, &judge).is_some());
}

fn verification(reviews: Vec<Review>, residual: Vec<ResidualBinding>) -> Verification {
    Verification {
        checked_at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        on_residual_access: ResidualAccessRule::Fail,
        on_unverified: UnverifiedRule::Fail,
        identities: vec!["User ann@x.io".into()],
        reviews,
        residual,
        notes: vec![],
        error: None,
    }
}

fn review(allowed: bool, reason: Option<&str>) -> Review {
    Review {
        identity: 0,
        verb: "update".into(),
        group: Some("apps".into()),
        resource: Some("deployments".into()),
        subresource: None,
        namespace: Some("team-a".into()),
        name: None,
        path: None,
        granted_by: "RoleBinding team-a/edit".into(),
        allowed,
        reason: reason.map(str::to_string),
    }
}

#[test]
fn authorizer_reasons_name_their_binding() {
    let crb = r#"RBAC: allowed by ClusterRoleBinding "team-admins" of ClusterRole "admin" to User "ann""#;
    assert_eq!(binding_in_reason(crb), Some((BindingKind::ClusterRoleBinding, None, "team-admins")));
    let rb = r#"RBAC: allowed by RoleBinding "edit/team-a" of ClusterRole "edit" to Group "devs""#;
    assert_eq!(binding_in_reason(rb), Some((BindingKind::RoleBinding, Some("team-a"), "edit")));
    assert_eq!(binding_in_reason("no RBAC policy matched"), None);
    assert_eq!(binding_in_reason(""), None);
}

#[test]
fn verdicts_and_sentences() {
    let v = verification(vec![review(false, None)], vec![]);
    assert_eq!(Verdict::of(&v), Verdict::NoRemainingAccess);
    assert_eq!(sentence(&v), "verified: no remaining access");
    assert!(!fails(&v));
    assert!(condition_message(&v).contains("1 access review(s) asked, 0 allowed"));

    let residual = ResidualBinding {
        kind: BindingKind::ClusterRoleBinding,
        namespace: None,
        name: "team-admins".into(),
        role_ref: "ClusterRole/admin".into(),
        subject: "User ann@x.io".into(),
        why: "not covered by policy demo-app".into(),
    };
    let reason = r#"RBAC: allowed by ClusterRoleBinding "team-admins" of ClusterRole "admin" to User "ann@x.io""#;
    let mut v = verification(vec![review(true, Some(reason)), review(false, None)], vec![residual.clone()]);
    assert_eq!(Verdict::of(&v), Verdict::AccessRemains);
    assert_eq!(
        sentence(&v),
        "still allowed to update deployments.apps in team-a via ClusterRoleBinding team-admins (not covered by policy demo-app)"
    );
    assert!(fails(&v));
    v.on_residual_access = ResidualAccessRule::Report;
    assert!(!fails(&v));

    // Residual bindings that grant none of what was removed are named, not failed.
    let v = verification(vec![review(false, None)], vec![residual]);
    assert!(!fails(&v));
    assert_eq!(
        sentence(&v),
        "verified: no remaining access to what was removed; still named in ClusterRoleBinding team-admins (not covered by policy demo-app)"
    );

    let mut v = verification(vec![], vec![]);
    v.error = Some("asking the authorizer: forbidden".into());
    assert_eq!(Verdict::of(&v), Verdict::NotVerified);
    assert_eq!(v.error.as_deref().map(|_| Verdict::of(&v).status()), Some("Unknown"));
    assert!(fails(&v), "what could not be checked fails the answer by default: it was not proven");
    assert_eq!(sentence(&v), "removed, but not verified: asking the authorizer: forbidden");
    v.on_unverified = UnverifiedRule::Report;
    assert!(!fails(&v), "a policy may opt out: onUnverified: Report");
    v.on_residual_access = ResidualAccessRule::Report;
    v.on_unverified = UnverifiedRule::Fail;
    assert!(fails(&v), "onResidualAccess: Report does not excuse a verification that could not be made");

    // Access the authorizer confirmed, then a later step failed: still access that remains, and
    // opting out of unverified answers does not excuse it.
    let reason = r#"RBAC: allowed by ClusterRoleBinding "team-admins" of ClusterRole "admin" to User "ann@x.io""#;
    let mut v = verification(vec![review(true, Some(reason))], vec![]);
    v.error = Some("listing bindings: timed out".into());
    v.on_unverified = UnverifiedRule::Report;
    assert_eq!(Verdict::of(&v), Verdict::AccessRemains);
    assert!(fails(&v));
    assert!(sentence(&v).starts_with("still allowed to update deployments.apps"), "{}", sentence(&v));
}

#[test]
fn a_small_bound_asks_about_every_rule_before_a_second_grant_of_any() {
    let ids = [Identity { user: "ann".into(), groups: vec![] }];
    let rb = binding(Some("ns"), "edit", "ClusterRole/edit");
    // Three rules, the first granting many verbs: with room for 3 questions, one per rule.
    let rules = [
        rule(&["get", "list", "watch", "create", "update", "delete"], &[""], &["pods"]),
        rule(&["get"], &["apps"], &["deployments"]),
        rule(&["delete"], &[""], &["secrets"]),
    ];
    let (qs, skipped) = questions(&ids, &[Grant { binding: &rb, rules: &rules }], 3);
    let said: Vec<String> = qs.iter().map(Review::describe).collect();
    assert_eq!(said, ["get pods in ns", "get deployments.apps in ns", "delete secrets in ns"]);
    assert_eq!(skipped, 5, "the other five verbs of the first rule");
    // With room for all, every grant is asked once.
    let (qs, skipped) = questions(&ids, &[Grant { binding: &rb, rules: &rules }], MAX_REVIEWS);
    assert_eq!((qs.len(), skipped), (8, 0));
}
