//! The wire shape stays what records have always held; invalid unions never reach Rust code.

use serde_json::json;

use super::*;

/// A plan entry exactly as the first release recorded it.
fn recorded_binding_action() -> serde_json::Value {
    json!({
        "id": 0, "kind": "RemoveBindingSubject", "policy": "demo-app", "reason": "rules[0] for permission \"x\": roleBindings",
        "binding": {
            "target": {"kind": "RoleBinding", "namespace": "team-a", "name": "developers", "uid": "u1", "roleRef": "ClusterRole/edit"},
            "subject": {"kind": "User", "name": "peterparker@lumos.com"},
            "whenEmpty": "Delete"
        }
    })
}

#[test]
fn records_written_before_the_enum_still_read_and_write_back_identically() {
    let wire = recorded_binding_action();
    let a: PlannedAction = serde_json::from_value(wire.clone()).unwrap();
    let Action::RemoveBindingSubject(b) = &a.action else { panic!("{a:?}") };
    assert_eq!(b.binding.scope, BindingScope::Namespaced("team-a".into()));
    assert_eq!(b.binding.to_string(), "RoleBinding team-a/developers");
    assert_eq!(serde_json::to_value(&a).unwrap(), wire);

    let absent = json!({"id": 3, "kind": "ConfirmAbsent", "policy": "p", "reason": "r",
        "absent": {"subject": "User a@b.c", "bindingsChecked": 2}});
    let a: PlannedAction = serde_json::from_value(absent.clone()).unwrap();
    assert_eq!(a.kind(), ActionKind::ConfirmAbsent);
    assert_eq!(serde_json::to_value(&a).unwrap(), absent);
}

#[test]
fn a_union_with_the_wrong_member_is_refused_when_read() {
    let mut two = recorded_binding_action();
    two["absent"] = json!({"subject": "User a@b.c", "bindingsChecked": 2});
    let err = serde_json::from_value::<PlannedAction>(two).unwrap_err().to_string();
    assert!(err.contains("must carry exactly its own member"), "{err}");

    let mut none = recorded_binding_action();
    none.as_object_mut().unwrap().remove("binding");
    assert!(serde_json::from_value::<PlannedAction>(none).is_err());

    let mut mislabelled = recorded_binding_action();
    mislabelled["kind"] = json!("HttpCall");
    assert!(serde_json::from_value::<PlannedAction>(mislabelled).is_err());
}

#[test]
fn a_binding_reference_whose_namespace_does_not_fit_its_kind_is_refused() {
    let mut crb_with_ns = recorded_binding_action();
    crb_with_ns["binding"]["target"]["kind"] = json!("ClusterRoleBinding");
    assert!(serde_json::from_value::<PlannedAction>(crb_with_ns).is_err());

    let mut rb_without_ns = recorded_binding_action();
    rb_without_ns["binding"]["target"].as_object_mut().unwrap().remove("namespace");
    assert!(serde_json::from_value::<PlannedAction>(rb_without_ns).is_err());
}

#[test]
fn the_schema_keeps_the_union_and_its_cel_rule() {
    use kube_core::CustomResourceExt;
    let crd = serde_json::to_value(crate::crd::DeprovisionRequest::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let item = &schema["properties"]["status"]["properties"]["plan"]["items"];
    for member in ["kind", "binding", "absent", "scim", "http"] {
        assert!(item["properties"].get(member).is_some(), "plan items lost {member}: {item}");
    }
    let rules = item["x-kubernetes-validations"].to_string();
    assert!(rules.contains("has(self.binding)") && rules.contains("has(self.http)"), "{rules}");
}

#[test]
fn subject_names_are_kind_and_name_and_long_lists_say_how_many_were_left_out() {
    let names = subject_names([
        ("User", "ann@x.com", None),
        ("Group", "team-a", None),
        ("ServiceAccount", "ci", Some("build")),
        ("ServiceAccount", "bot", Some("")),
    ]);
    assert_eq!(names, ["User:ann@x.com", "Group:team-a", "ServiceAccount:build/ci", "ServiceAccount:bot"]);

    let many: Vec<String> = (0..500).map(|i| format!("user-{i:03}@example.com")).collect();
    let names = subject_names(many.iter().map(|n| ("User", n.as_str(), None)));
    let last = names.last().unwrap();
    assert!(last.starts_with("… and ") && last.ends_with(" more"), "{last}");
    let left_out: usize = last.trim_start_matches("… and ").trim_end_matches(" more").parse().unwrap();
    assert_eq!(names.len() - 1 + left_out, 500);
    assert!(serde_json::to_string(&names).unwrap().len() <= MAX_SUBJECT_NAMES_BYTES + 2);

    let r: ActionResult = serde_json::from_value(json!({"id": 0, "kind": "RemoveBindingSubject",
        "object": "RoleBinding a/b", "subject": "User x", "outcome": "Deleted", "message": "m",
        "at": "2025-01-01T00:00:00Z"}))
    .unwrap();
    assert_eq!((r.subjects_before.as_ref(), r.subjects_after.as_ref()), (None, None), "older records read");
    let r = r.with_subjects(Some(vec!["User:x".into()]), Some(vec![]));
    let wire = serde_json::to_value(&r).unwrap();
    assert_eq!(wire["subjectsBefore"], json!(["User:x"]));
    assert_eq!(wire["subjectsAfter"], json!([]), "a deleted binding records an empty list, not nothing");
}
