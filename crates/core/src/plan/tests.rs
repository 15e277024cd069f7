//! Table-driven tests of plan computation.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

use crate::crd::*;
use crate::fixtures;
use crate::plan::subject::{Principal, Protected, Wanted};
use crate::plan::*;

fn spec(perms: &[&str]) -> DeprovisionRequestSpec {
    fixtures::request_spec("demo_app", "Peter@Lumos.com")
        .instance("i1")
        .permissions(perms.iter().copied())
        .given_name("Peter")
        .family_name("Parker")
        .custom_field("username", "pparker")
        .source(RequestSource::LumosWebhook)
        .build()
}

fn policy(name: &str, spec: serde_json::Value) -> DeprovisionPolicy {
    let mut p = fixtures::policy(name, spec);
    p.metadata.uid = Some(format!("uid-{name}"));
    p
}

fn s(kind: &str, name: &str, ns: Option<&str>) -> Subject {
    fixtures::subject(kind, name, ns)
}

fn rb(ns: &str, name: &str, role: &str, subjects: Vec<Subject>) -> Arc<RoleBinding> {
    fixtures::role_binding(ns, name).role(role).subjects(subjects).uid(&format!("uid-{ns}-{name}")).build().into()
}

fn crb(name: &str, role: &str, labels: &[(&str, &str)], subjects: Vec<Subject>) -> Arc<ClusterRoleBinding> {
    fixtures::cluster_role_binding(name)
        .role(role)
        .labels(labels)
        .subjects(subjects)
        .uid(&format!("uid-{name}"))
        .build()
        .into()
}

fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
    fixtures::namespace(name, labels)
}

fn observed() -> Observed {
    Observed {
        clocks: None,
        namespaces: vec![ns("team-a", &[("team", "a")]), ns("team-b", &[("team", "b")]), ns("other", &[])],
        role_bindings: vec![
            rb("team-a", "edit", "edit", vec![s("User", "Peter@Lumos.com", None), s("User", "mj@lumos.com", None)]),
            rb("team-a", "view", "view", vec![s("User", "peter@lumos.com", None)]),
            rb(
                "team-a",
                "bots",
                "edit",
                vec![s("ServiceAccount", "pparker", None), s("ServiceAccount", "pparker", Some("team-b"))],
            ),
            rb("team-a", "sa-user", "edit", vec![s("User", "system:serviceaccount:team-a:pparker", None)]),
            rb("team-b", "edit", "edit", vec![s("User", "oidc:peter@lumos.com", None), s("Group", "pparker", None)]),
            rb("other", "edit", "edit", vec![s("User", "Peter@Lumos.com", None)]),
        ],
        cluster_role_bindings: vec![
            crb("peter-admin", "cluster-admin", &[("lumos", "demo")], vec![s("User", "Peter@Lumos.com", None)]),
            crb(
                "peter-view",
                "view",
                &[],
                vec![s("User", "Peter@Lumos.com", None), s("Group", "system:masters", None)],
            ),
            crb("sa-no-ns", "view", &[], vec![s("ServiceAccount", "pparker", None)]),
        ],
    }
}

/// Actions rendered as `binding | subject` for compact comparison.
fn rows(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match &a.action {
            Action::RemoveBindingSubject(b) => Some(format!("{} | {}", b.binding, b.subject)),
            _ => None,
        })
        .collect()
}

fn user(name_tmpl: &str) -> serde_json::Value {
    json!({"kind": "User", "name": name_tmpl})
}

/// Every planning rule as a case: (policy, permissions) -> rows or a refusal reason. Long on
/// purpose: it is a table of data, a few lines per case, read one case at a time.
#[test]
fn table() {
    struct Case {
        name: &'static str,
        perms: &'static [&'static str],
        policy: serde_json::Value,
        want: Result<Vec<&'static str>, &'static str>,
    }
    let app = json!({"appId": "demo_app"});
    let cases = vec![
        Case {
            name: "exact-case user in named namespace",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Ok(vec!["RoleBinding team-a/edit | User Peter@Lumos.com"]),
        },
        Case {
            name: "case-insensitive user matches both spellings",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "User", "name": "{{target_user.email}}", "caseInsensitive": true}],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Ok(vec![
                "RoleBinding team-a/edit | User Peter@Lumos.com",
                "RoleBinding team-a/view | User peter@lumos.com",
            ]),
        },
        Case {
            name: "roleRef filter",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "User", "name": "{{target_user.email}}", "caseInsensitive": true}],
                "rules": [{"roleBindings": {"namespaces": ["team-a"], "roleRef": {"kind": "ClusterRole", "name": "view"}}}]}),
            want: Ok(vec!["RoleBinding team-a/view | User peter@lumos.com"]),
        },
        Case {
            name: "oidc prefix",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "User", "name": "{{target_user.email}}", "prefix": "oidc:", "caseInsensitive": true}],
                "rules": [{"roleBindings": {"namespaceSelector": {"matchLabels": {"team": "b"}}}}]}),
            want: Ok(vec!["RoleBinding team-b/edit | User oidc:peter@lumos.com"]),
        },
        Case {
            name: "group by username, label-selected namespaces",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "Group", "name": "{{custom_fields.username}}"}],
                "rules": [{"roleBindings": {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}}]}),
            want: Ok(vec!["RoleBinding team-b/edit | Group pparker"]),
        },
        Case {
            name: "service account: empty namespace means the binding's; the system:serviceaccount user form too",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "ServiceAccount", "namespace": "team-a", "name": "{{custom_fields.username}}"}],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}, {"clusterRoleBindings": {"roleRef": {"name": "view"}}}]}),
            want: Ok(vec![
                "RoleBinding team-a/bots | ServiceAccount pparker",
                "RoleBinding team-a/sa-user | User system:serviceaccount:team-a:pparker",
            ]),
        },
        Case {
            name: "cluster role bindings by label, other subjects untouched",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"clusterRoleBindings": {"selector": {"matchLabels": {"lumos": "demo"}}}}]}),
            want: Ok(vec!["ClusterRoleBinding peter-admin | User Peter@Lumos.com"]),
        },
        Case {
            name: "cluster role bindings by name keep system:masters group",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"clusterRoleBindings": {"names": ["peter-view"]}}]}),
            want: Ok(vec!["ClusterRoleBinding peter-view | User Peter@Lumos.com"]),
        },
        Case {
            name: "namespace access from permission value",
            perms: &["other"],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"permissions": ["*"], "namespaceAccess": {"fromPermissionValue": true}}]}),
            want: Ok(vec!["RoleBinding other/edit | User Peter@Lumos.com"]),
        },
        Case {
            name: "permission selects only its rule",
            perms: &["Admin"],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"permissions": ["Edit*"], "roleBindings": {"namespaces": ["team-a"]}},
                          {"permissions": ["Admin"], "clusterRoleBindings": {"names": ["peter-admin"]}}]}),
            want: Ok(vec!["ClusterRoleBinding peter-admin | User Peter@Lumos.com"]),
        },
        Case {
            name: "whole-application request applies every rule",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"permissions": ["Edit*"], "roleBindings": {"namespaces": ["team-a"]}},
                          {"permissions": ["Admin"], "clusterRoleBindings": {"names": ["peter-admin"]}}]}),
            want: Ok(vec![
                "RoleBinding team-a/edit | User Peter@Lumos.com",
                "ClusterRoleBinding peter-admin | User Peter@Lumos.com",
            ]),
        },
        Case {
            name: "nothing bound: empty plan",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("nobody@x.io")],
                "rules": [{"roleBindings": {"namespaces": ["team-a", "missing"]}}]}),
            want: Ok(vec![]),
        },
        Case {
            name: "unmapped permission fails",
            perms: &["Permission Three"],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"permissions": ["Permission One"], "roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("UnmappedPermission"),
        },
        Case {
            name: "other application: no policy",
            perms: &[],
            policy: json!({"application": {"appId": "another"}, "subjects": [user("{{target_user.email}}")],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("NoPolicy"),
        },
        Case {
            name: "instance id must match too",
            perms: &[],
            policy: json!({"application": {"appId": "demo_app", "instanceId": "other"}, "subjects": [user("{{target_user.email}}")],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("NoPolicy"),
        },
        Case {
            name: "missing template field fails",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("{{custom_fields.github}}")],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("TemplateUnresolved"),
        },
        Case {
            name: "unknown template field: invalid policy",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("{{target_user.ssn}}")],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("InvalidPolicy"),
        },
        Case {
            name: "system: subject refused",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "Group", "name": "system:masters"}],
                "rules": [{"clusterRoleBindings": {"names": ["peter-view"]}}]}),
            want: Err("ProtectedSubject"),
        },
        Case {
            name: "prefix turning a name into system: is refused",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "User", "name": "{{custom_fields.username}}", "prefix": "system:"}],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("ProtectedSubject"),
        },
        Case {
            name: "operator's own service account refused",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "ServiceAccount", "namespace": "deprovisioner", "name": "deprovisioner"}],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("ProtectedSubject"),
        },
        Case {
            name: "bad namespace from permission value",
            perms: &["Not A Namespace"],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"namespaceAccess": {"fromPermissionValue": true}}]}),
            want: Err("BadNamespace"),
        },
        Case {
            name: "whole-application request with a namespace taken from the permission value is refused",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"permissions": ["ns-*"], "namespaceAccess": {"fromPermissionValue": true}}]}),
            want: Err("NeedsPermission"),
        },
        Case {
            name: "a User template rendering to the system:serviceaccount: form is refused",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "User", "name": "system:serviceaccount:team-a:{{custom_fields.username}}"}],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("ProtectedSubject"),
        },
        Case {
            name: "a name outside allowedNames is refused",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "Group", "name": "{{custom_fields.username}}", "allowedNames": ["team-*"]}],
                "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
            want: Err("SubjectNotAllowed"),
        },
        Case {
            name: "a name inside allowedNames is used",
            perms: &[],
            policy: json!({"application": app, "subjects": [{"kind": "Group", "name": "{{custom_fields.username}}", "allowedNames": ["pp*"]}],
                "rules": [{"roleBindings": {"namespaces": ["team-b"]}}]}),
            want: Ok(vec!["RoleBinding team-b/edit | Group pparker"]),
        },
        Case {
            name: "an empty selector is invalid, never everything",
            perms: &[],
            policy: json!({"application": app, "subjects": [user("{{target_user.email}}")],
                "rules": [{"clusterRoleBindings": {"selector": {}}}]}),
            want: Err("InvalidPolicy"),
        },
    ];
    let protected = Protected { operator: Some(("deprovisioner".into(), "deprovisioner".into())), also: vec![] };
    for c in cases {
        let got = compute(&spec(c.perms), &[policy("p", c.policy)], &observed(), &protected);
        match (got, c.want) {
            (Ok(plan), Ok(want)) => assert_eq!(rows(&plan), want, "case: {}", c.name),
            (Err(e), Err(reason)) => assert_eq!(e.reason().as_str(), reason, "case: {} ({e})", c.name),
            (got, want) => panic!("case {}: got {got:?}, want {want:?}", c.name),
        }
    }
}

#[test]
fn empty_binding_rule_and_ids_are_recorded() {
    let p = policy(
        "keep",
        json!({"application": {"appId": "demo_app"}, "emptyBindings": "Keep",
        "subjects": [user("{{target_user.email}}")], "rules": [{"roleBindings": {"namespaces": ["team-a", "other"]}}]}),
    );
    let plan = compute(&spec(&[]), &[p], &observed(), &Protected::default()).unwrap();
    assert_eq!(plan.policies, vec!["keep"]);
    assert_eq!(plan.actions.iter().map(|a| a.id).collect::<Vec<_>>(), vec![0, 1]);
    for a in &plan.actions {
        let Action::RemoveBindingSubject(b) = &a.action else { panic!("{a:?}") };
        assert_eq!(b.when_empty, EmptyBindingRule::Keep);
        assert_eq!(b.binding.uid, format!("uid-{}-{}", b.binding.namespace().unwrap(), b.binding.name));
        assert_eq!(b.binding.role_ref, "ClusterRole/edit");
        assert_eq!(a.policy, "keep");
    }
}

#[test]
fn two_policies_for_one_app_do_not_duplicate_actions() {
    let body = json!({"application": {"appId": "demo_app"}, "subjects": [user("{{target_user.email}}")],
        "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]});
    let plan = compute(&spec(&[]), &[policy("b", body.clone()), policy("a", body)], &observed(), &Protected::default())
        .unwrap();
    assert_eq!(rows(&plan), vec!["RoleBinding team-a/edit | User Peter@Lumos.com"]);
    assert_eq!(plan.policies, vec!["a", "b"]);
    assert_eq!(plan.actions[0].policy, "a");
}

#[test]
fn two_policies_that_disagree_about_an_emptied_binding_fail_naming_both() {
    let with = |rule: &str| {
        json!({"application": {"appId": "demo_app"}, "subjects": [user("{{target_user.email}}")],
            "emptyBindings": rule, "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]})
    };
    let policies = [policy("keeps", with("Keep")), policy("deletes", with("Delete"))];
    let err = compute(&spec(&[]), &policies, &observed(), &Protected::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::ConflictingPolicies);
    let msg = err.to_string();
    assert!(msg.contains("deletes") && msg.contains("keeps") && msg.contains("RoleBinding team-a/edit"), "{msg}");
    // Agreeing policies still plan once.
    let agreeing = [policy("one", with("Keep")), policy("two", with("Keep"))];
    assert!(compute(&spec(&[]), &agreeing, &observed(), &Protected::default()).is_ok());
}

#[test]
fn a_service_account_namespace_the_requester_types_needs_allowed_namespaces() {
    let with = |extra: serde_json::Value| {
        let mut sa = json!({"kind": "ServiceAccount", "name": "pparker", "namespace": "{{custom_fields.ns}}"});
        sa.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        policy(
            "sa",
            json!({"application": {"appId": "demo_app"}, "subjects": [sa],
            "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
        )
    };
    let mut req = spec(&[]);
    req.custom_fields.insert("ns".into(), "kube-system".into());
    let err = compute(&req, &[with(json!({}))], &observed(), &Protected::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::InvalidPolicy);
    assert!(err.to_string().contains("allowedNamespaces"), "{err}");

    let fenced = with(json!({"allowedNamespaces": ["team-*"]}));
    let err = compute(&req, std::slice::from_ref(&fenced), &observed(), &Protected::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::SubjectNotAllowed);
    assert!(err.to_string().contains("\"kube-system\" is not allowed by subjects[0].allowedNamespaces"), "{err}");

    req.custom_fields.insert("ns".into(), "team-b".into());
    let plan = compute(&req, &[fenced], &observed(), &Protected::default()).unwrap();
    assert_eq!(rows(&plan), vec!["RoleBinding team-a/bots | ServiceAccount team-b/pparker"]);
}

#[test]
fn scope_names_only_what_the_policy_names() {
    let p = policy(
        "p",
        json!({"application": {"appId": "demo_app"}, "subjects": [user("x")],
        "rules": [{"roleBindings": {"namespaceSelector": {"matchLabels": {"team": "a"}}}},
                  {"permissions": ["*"], "namespaceAccess": {"fromPermissionValue": true, "namespaces": ["fixed"]}}]}),
    );
    let ps = [p];
    let matched = matching_policies(&spec(&["other"]), &ps);
    let sc = scope(&spec(&["other"]), &matched, &observed().namespaces).unwrap();
    assert_eq!(sc.namespaces.into_iter().collect::<Vec<_>>(), vec!["fixed", "other", "team-a"]);
    assert!(!sc.cluster_role_bindings);
}

#[test]
fn globs() {
    for (p, v, want) in [
        ("*", "x", true),
        ("a*", "abc", true),
        ("a*", "ba", false),
        ("*c", "abc", true),
        ("a*c", "ac", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "acb", false),
        ("abc", "abc", true),
        ("abc", "abcd", false),
        ("a*a", "a", false),
    ] {
        assert_eq!(glob_match(p, v), want, "{p} ~ {v}");
    }
}

#[test]
fn policy_validation_catches_what_cel_cannot() {
    let bad_selector = DeprovisionPolicySpec {
        rules: vec![AccessRule {
            role_bindings: Some(RoleBindingSelector {
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                            key: "team".into(),
                            operator: "Sometimes".into(),
                            values: None,
                        },
                    ]),
                    match_labels: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..serde_json::from_value(json!({"application": {"appId": "a"}, "subjects": [user("x")], "rules": []})).unwrap()
    };
    assert!(validate_policy(&bad_selector).unwrap_err().contains("namespaceSelector"));
    let bad_ns: DeprovisionPolicySpec =
        serde_json::from_value(json!({"application": {"appId": "a"}, "subjects": [user("x")],
        "rules": [{"namespaceAccess": {"namespaces": ["Team_A"]}}]}))
        .unwrap();
    assert!(validate_policy(&bad_ns).unwrap_err().contains("Team_A"));
}

#[test]
fn subjects_bound_nowhere_are_confirmed_absent() {
    let p = policy(
        "p",
        json!({"application": {"appId": "demo_app"},
        "subjects": [user("{{target_user.email}}"), {"kind": "Group", "name": "{{custom_fields.username}}"}],
        "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]}),
    );
    let plan = compute(&spec(&[]), &[p], &observed(), &Protected::default()).unwrap();
    let absent: Vec<&AbsentCheck> = plan
        .actions
        .iter()
        .filter_map(|a| match &a.action {
            Action::ConfirmAbsent(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(absent.len(), 1);
    let a = absent[0];
    assert_eq!(a.subject, "Group pparker");
    assert_eq!(a.bindings_checked, 4);
    // Removals come first, the confirmation last, ids in order.
    assert_eq!(plan.actions.last().unwrap().kind(), ActionKind::ConfirmAbsent);
    assert!(plan.actions.iter().enumerate().all(|(i, a)| a.id == i as i32));
}

#[test]
fn external_targets_are_validated() {
    let with_http = |http: serde_json::Value| -> DeprovisionPolicySpec {
        serde_json::from_value(
            json!({"application": {"appId": "a"}, "subjects": [user("x")], "rules": [{"http": http}]}),
        )
        .unwrap()
    };
    let ok = with_http(json!({"system": "s", "url": "https://h.example/x/{{target_user.email}}",
        "body": r#"{"email": "{{target_user.email}}", "n": 1}"#}));
    assert_eq!(validate_policy(&ok), Ok(()));
    for (http, words) in [
        (json!({"system": "s", "url": "http://h.example/x"}), "only allowed to loopback"),
        (json!({"system": "s", "url": "https://{{target_user.email}}/x"}), "host literally"),
        (json!({"system": "s", "url": "ftp://h/x"}), "must start with https://"),
        (
            json!({"system": "s", "url": "https://h.example/x", "body": r#"{"admin": {{custom_fields.x}}}"#}),
            "inside a string",
        ),
        (json!({"system": "s", "url": "https://h.example/x", "method": "TRACE"}), "is not GET"),
        (
            json!({"system": "s", "url": "https://h.example/x", "headers": [{"name": "X-Auth-Token", "value": "v"}]}),
            "looks like a credential",
        ),
    ] {
        let e = validate_policy(&with_http(http.clone())).unwrap_err();
        assert!(e.contains(words), "{http}: {e}");
    }
    assert_eq!(validate_policy(&with_http(json!({"system": "s", "url": "http://127.0.0.1:8080/x"}))), Ok(()));
    assert_eq!(validate_policy(&with_http(json!({"system": "s", "url": "http://[::1]:8080/x"}))), Ok(()));
}

#[test]
fn a_plan_whose_record_would_not_fit_one_object_is_refused() {
    let action = |i: usize, name_len: usize| PlannedAction {
        id: i as i32,
        policy: "p".into(),
        reason: "r".into(),
        action: Action::RemoveBindingSubject(BindingAction {
            binding: BindingRef {
                scope: BindingScope::Namespaced("team".into()),
                name: format!("b{i}"),
                uid: format!("u{i}"),
                role_ref: "ClusterRole/edit".into(),
            },
            subject: SubjectRef { kind: "User".into(), name: "x".repeat(name_len), namespace: None },
            when_empty: EmptyBindingRule::Delete,
            managed_by: None,
        }),
    };
    let small: Vec<PlannedAction> = (0..200).map(|i| action(i, 20)).collect();
    assert_eq!(check_record_size(&spec(&[]), &small), Ok(()));
    let large: Vec<PlannedAction> = (0..1500).map(|i| action(i, 200)).collect();
    let err = check_record_size(&spec(&[]), &large).unwrap_err();
    assert_eq!(err.reason(), Reason::PlanTooLarge);
    assert!(err.to_string().contains("narrow the policy; nothing was changed"), "{err}");
}

#[test]
fn managed_bindings_are_recorded_and_refused_when_the_policy_says_fail() {
    let mut argo = (*rb("team-a", "edit", "edit", vec![s("User", "pp@lumos.com", None)])).clone();
    argo.metadata.annotations = Some(
        [(
            "argocd.argoproj.io/tracking-id".to_string(),
            "web:rbac.authorization.k8s.io/RoleBinding:team-a/edit".to_string(),
        )]
        .into(),
    );
    let plain = rb("team-a", "view", "view", vec![s("User", "pp@lumos.com", None)]);
    let observed = Observed { role_bindings: vec![Arc::new(argo), plain], ..Default::default() };
    let spec_of = |rule: &str| {
        json!({"application": {"appId": "demo_app"}, "managedBindings": rule,
               "subjects": [user("{{target_user.email}}")], "rules": [{"roleBindings": {"namespaces": ["team-a"]}}]})
    };
    let req = fixtures::request_spec("demo_app", "pp@lumos.com").build();
    let plan = compute(&req, &[policy("p", spec_of("Remove"))], &observed, &Protected::default()).unwrap();
    let managed: Vec<String> = plan
        .actions
        .iter()
        .map(|a| match &a.action {
            Action::RemoveBindingSubject(b) => {
                format!("{}: {:?}", b.binding.name, b.managed_by.as_ref().map(|m| m.to_string()))
            }
            _ => String::new(),
        })
        .collect();
    assert_eq!(managed, ["edit: Some(\"Argo CD application web\")", "view: None"]);
    let err = compute(&req, &[policy("p", spec_of("Fail"))], &observed, &Protected::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::ManagedBinding);
    assert_eq!(
        err.to_string(),
        "refused: a tool keeps these bindings in sync and would put the subject back: RoleBinding team-a/edit (Argo CD application web) (the policy says managedBindings: Fail); remove the subject at the source instead; nothing was changed"
    );
}

/// A request from the Lumos connector: the account and the entitlement it names.
fn connector_spec(account: &str, entitlement: &str) -> DeprovisionRequestSpec {
    fixtures::request_spec("kubernetes", account)
        .permissions([entitlement])
        .custom_field("accountId", account)
        .source(RequestSource::LumosConnector)
        .build()
}

/// A member's record of a request the hub's connector recorded (source `Fleet`, `hubSource:
/// LumosConnector`) is planned like the connector's own; one whose hub record came from anywhere
/// else is refused, naming both sources.
#[test]
fn a_lumos_account_applies_to_a_fleet_request_only_when_the_hubs_connector_recorded_it() {
    let observed = Observed {
        clocks: None,
        namespaces: vec![ns("team-a", &[])],
        role_bindings: vec![rb("team-a", "editors", "edit", vec![s("User", "ann@x.io", None)])],
        cluster_role_bindings: vec![],
    };
    let p = connector_policy(json!({"namespaces": ["team-a"]}));
    let handed = |hub: Option<RequestSource>| {
        let mut spec = connector_spec("User:ann@x.io", "namespace_role/team-a/ClusterRole:edit");
        spec.hub_source = hub;
        spec.source = RequestSource::Fleet;
        compute(&spec, std::slice::from_ref(&p), &observed, &Protected::default())
    };
    let got = handed(Some(RequestSource::LumosConnector)).unwrap();
    assert_eq!(rows(&got), ["RoleBinding team-a/editors | User ann@x.io"]);
    let err = handed(Some(RequestSource::LumosWebhook)).unwrap_err();
    assert!(
        err.to_string().contains("source is Fleet, handed over by a fleet hub whose record's source is LumosWebhook"),
        "{err}"
    );
    assert!(matches!(handed(None).unwrap_err(), PlanError::ConnectorOnly { hub: None, .. }));
}

fn connector_policy(entitlements: serde_json::Value) -> DeprovisionPolicy {
    policy(
        "lumos-connector",
        json!({"application": {"appId": "kubernetes"},
               "subjects": [{"kind": "LumosAccount", "name": "{{custom_fields.accountId}}"}],
               "rules": [{"entitlements": entitlements}]}),
    )
}

#[test]
fn an_entitlements_rule_removes_exactly_the_account_from_the_bindings_granting_that_role_there() {
    let observed = Observed {
        clocks: None,
        namespaces: vec![ns("team-a", &[("team", "a")]), ns("team-b", &[])],
        role_bindings: vec![
            rb("team-a", "editors", "edit", vec![s("User", "ann@x.io", None), s("User", "bob@x.io", None)]),
            rb("team-a", "editors-2", "edit", vec![s("User", "ann@x.io", None)]),
            rb("team-a", "viewers", "view", vec![s("User", "ann@x.io", None)]),
            rb("team-a", "bots", "edit", vec![s("ServiceAccount", "ci", None), s("User", "ANN@x.io", None)]),
            rb("team-b", "editors", "edit", vec![s("User", "ann@x.io", None)]),
        ],
        cluster_role_bindings: vec![crb("ann-edit", "edit", &[], vec![s("User", "ann@x.io", None)])],
    };
    let p = connector_policy(json!({"namespaceSelector": {"matchLabels": {"team": "a"}}, "clusterWide": true}));
    let plan = |account: &str, ent: &str| {
        compute(&connector_spec(account, ent), std::slice::from_ref(&p), &observed, &Protected::default())
    };
    // The role is a ClusterRole bound in the namespace: only that roleRef, only there, only Ann.
    let got = plan("User:ann@x.io", "namespace_role/team-a/ClusterRole:edit").unwrap();
    assert_eq!(
        rows(&got),
        ["RoleBinding team-a/editors | User ann@x.io", "RoleBinding team-a/editors-2 | User ann@x.io"]
    );
    // A ServiceAccount account id reaches the binding's short spelling.
    let got = plan("ServiceAccount:team-a/ci", "namespace_role/team-a/ClusterRole:edit").unwrap();
    assert_eq!(rows(&got), ["RoleBinding team-a/bots | ServiceAccount ci"]);
    // Cluster-wide, when the rule allows it.
    let got = plan("User:ann@x.io", "cluster_role//ClusterRole:edit").unwrap();
    assert_eq!(rows(&got), ["ClusterRoleBinding ann-edit | User ann@x.io"]);
    // A Role of that name is another entitlement: nothing is bound, so the plan only confirms.
    let got = plan("User:ann@x.io", "namespace_role/team-a/Role:edit").unwrap();
    assert!(rows(&got).is_empty());
    // Outside the bounds: refused, naming why.
    let err = plan("User:ann@x.io", "namespace_role/team-b/ClusterRole:edit").unwrap_err();
    assert_eq!(err.reason(), Reason::EntitlementNotAllowed);
    assert!(err.to_string().contains("namespace \"team-b\" is not in namespaces or namespaceSelector"), "{err}");
    let narrow = connector_policy(json!({"namespaces": ["team-a"], "roles": ["view"]}));
    let err = compute(
        &connector_spec("User:ann@x.io", "namespace_role/team-a/ClusterRole:edit"),
        std::slice::from_ref(&narrow),
        &observed,
        &Protected::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("role \"edit\" is not in roles (view)"), "{err}");
    let err = compute(
        &connector_spec("User:ann@x.io", "cluster_role//ClusterRole:view"),
        &[narrow],
        &observed,
        &Protected::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("clusterWide is false"), "{err}");
    // Another policy (another team's admin) may allow what this one does not.
    let mut team_b = connector_policy(json!({"namespaces": ["team-b"]}));
    team_b.metadata.name = Some("team-b".into());
    let got = compute(
        &connector_spec("User:ann@x.io", "namespace_role/team-b/ClusterRole:edit"),
        &[p.clone(), team_b],
        &observed,
        &Protected::default(),
    )
    .unwrap();
    assert_eq!(rows(&got), ["RoleBinding team-b/editors | User ann@x.io"]);
    let err = plan("User:ann@x.io", "namespace_role/team-a").unwrap_err();
    assert_eq!(err.reason(), Reason::EntitlementNotAllowed);
    // Protected accounts are refused, however the account id spells them.
    let err = plan("User:system:admin", "namespace_role/team-a/ClusterRole:edit").unwrap_err();
    assert_eq!(err.reason(), Reason::ProtectedSubject);
    let err = plan("ServiceAccount:kube-system/x", "namespace_role/team-a/ClusterRole:edit").unwrap_err();
    assert_eq!(err.reason(), Reason::ProtectedSubject);
    // Not an account id.
    let err = plan("ann@x.io", "namespace_role/team-a/ClusterRole:edit").unwrap_err();
    assert!(matches!(err, PlanError::BadAccountId { .. }), "{err}");
}

#[test]
fn only_requests_from_the_connector_may_use_a_lumos_account_subject() {
    let p = connector_policy(json!({"namespaces": ["team-a"]}));
    let mut req = connector_spec("User:ann@x.io", "namespace_role/team-a/ClusterRole:edit");
    req.source = RequestSource::Manual;
    let err = compute(&req, &[p], &Observed::default(), &Protected::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::SubjectNotAllowed);
    assert!(err.to_string().contains("only requests from the Lumos connector"), "{err}");
}

#[test]
fn entitlements_rules_are_validated() {
    let bad = |subjects: serde_json::Value, rule: serde_json::Value| {
        let spec: DeprovisionPolicySpec = serde_json::from_value(json!({
            "application": {"appId": "kubernetes"}, "subjects": subjects, "rules": [{"entitlements": rule}]
        }))
        .unwrap();
        validate_policy(&spec).unwrap_err()
    };
    let account = json!([{"kind": "LumosAccount", "name": "{{custom_fields.accountId}}"}]);
    assert!(bad(account.clone(), json!({})).contains("allows nothing"));
    assert!(bad(account.clone(), json!({"namespaces": ["Bad_NS"]})).contains("entitlements.namespaces"));
    assert!(bad(account.clone(), json!({"clusterWide": true, "roles": [""]})).contains("empty pattern"));
    let prefixed = json!([{"kind": "LumosAccount", "name": "{{custom_fields.accountId}}", "prefix": "oidc:"}]);
    assert!(bad(prefixed, json!({"clusterWide": true})).contains("takes no namespace or prefix"));
    let folded = json!([{"kind": "LumosAccount", "name": "{{custom_fields.accountId}}", "caseInsensitive": true}]);
    assert!(bad(folded, json!({"clusterWide": true})).contains("cannot be caseInsensitive"));
}

/// The connector lists `User:alice@x.io` and `User:Alice@X.io` as two accounts: unassigning one
/// never removes the other. A policy stored as `caseInsensitive` before the API server refused
/// it is refused by the plan (changing nothing), and a `LumosAccount` is never matched ignoring
/// case anyway.
#[test]
fn a_lumos_account_is_matched_exactly_whatever_the_policy_says() {
    let observed = Observed {
        clocks: None,
        namespaces: vec![ns("team-a", &[])],
        role_bindings: vec![rb(
            "team-a",
            "editors",
            "edit",
            vec![s("User", "alice@x.io", None), s("User", "Alice@X.io", None)],
        )],
        cluster_role_bindings: vec![],
    };
    let mut p = connector_policy(json!({"namespaces": ["team-a"]}));
    let spec = connector_spec("User:alice@x.io", "namespace_role/team-a/ClusterRole:edit");
    let got = compute(&spec, std::slice::from_ref(&p), &observed, &Protected::default()).unwrap();
    assert_eq!(rows(&got), ["RoleBinding team-a/editors | User alice@x.io"]);
    p.spec.subjects[0].case_insensitive = true;
    let refused = compute(&spec, std::slice::from_ref(&p), &observed, &Protected::default()).unwrap_err();
    assert!(refused.to_string().contains("cannot be caseInsensitive"), "{refused}");
    let w = Wanted::new(SubjectKind::LumosAccount, "User:alice@x.io".into(), None, true).unwrap();
    assert!(!w.case_insensitive && !w.matches(&Principal::user("Alice@X.io")));
}
