use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::fixtures::{self, group, user};
use crate::verify::residual::{cluster_role_binding, role_binding};

/// A request that removed ann from RoleBinding team/edit (uid `u`) and group `ops` from
/// RoleBinding team/view (uid `v`); its removal of failed@x.io from team/other failed; verified
/// with ClusterRoleBinding `team-admins` still naming ann; finished at `finished` (seconds).
fn request(finished: i64, regrants: serde_json::Value) -> DeprovisionRequest {
    let at = Timestamp::from_second(finished).unwrap().to_string();
    let action = |id: i32, name: &str, uid: &str, kind: &str, subject: &str| {
        json!({"id": id, "kind": "RemoveBindingSubject", "policy": "pol", "reason": "r",
               "binding": {"target": {"kind": "RoleBinding", "namespace": "team", "name": name, "uid": uid, "roleRef": "ClusterRole/edit"},
                           "subject": {"kind": kind, "name": subject}, "whenEmpty": "Delete"}})
    };
    let result = |id: i32, name: &str, outcome: &str| {
        json!({"id": id, "kind": "RemoveBindingSubject", "object": format!("RoleBinding team/{name}"), "subject": "s",
               "outcome": outcome, "message": "m", "at": at})
    };
    serde_json::from_value(json!({
        "apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "DeprovisionRequest",
        "metadata": {"name": "req"},
        "spec": {"application": {"appId": "demo"}, "targetUser": {"email": "ann@x.io"}},
        "status": {"phase": "Succeeded", "completedAt": at, "policies": ["pol", "other"],
            "plan": [action(0, "edit", "u", "User", "ann@x.io"), action(1, "view", "v", "Group", "ops"),
                     action(2, "other", "o", "User", "failed@x.io")],
            "results": [result(0, "edit", "Removed"), result(1, "view", "Deleted"), result(2, "other", "Failed")],
            "verification": {"checkedAt": at, "onResidualAccess": "Report",
                "residual": [{"kind": "ClusterRoleBinding", "name": "team-admins", "roleRef": "ClusterRole/admin",
                              "subject": "User ann@x.io", "why": "not covered by policy pol"}]},
            "regrants": regrants}
    }))
    .unwrap()
}

fn since(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn rb(name: &str, uid: &str, created: i64, subjects: Vec<k8s_openapi::api::rbac::v1::Subject>) -> RoleBinding {
    let mut b = fixtures::role_binding("team", name).role("edit").subjects(subjects).uid(uid).build();
    b.metadata.creation_timestamp = Some(since(created));
    b
}

fn crb(name: &str, uid: &str, created: i64) -> ClusterRoleBinding {
    let mut b = fixtures::cluster_role_binding(name).role("admin").subjects([user("ann@x.io")]).uid(uid).build();
    b.metadata.creation_timestamp = Some(since(created));
    b
}

fn list_with(regrants: serde_json::Value) -> Watchlist {
    let mut list = Watchlist::default();
    list.insert(&request(100, regrants), &since(50));
    list
}

#[test]
fn a_finished_request_is_watched_for_the_bindings_it_removed_someone_from() {
    let w = watched(&request(100, json!([])), &since(50)).unwrap();
    let removed: Vec<String> = w
        .removed_from
        .iter()
        .map(|(k, r)| {
            format!(
                "{} {} {:?} {:?}",
                describe(k),
                r.uid,
                r.principals.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                r.policies
            )
        })
        .collect();
    // Not team/other (its removal failed), nor what the verification found left.
    assert_eq!(
        removed,
        [r#"RoleBinding team/edit u ["User ann@x.io"] {"pol"}"#, r#"RoleBinding team/view v ["Group ops"] {"pol"}"#]
    );
    assert_eq!(w.app, "demo");
    assert!(watched(&request(100, json!([])), &since(150)).is_none(), "finished before the window");
}

#[test]
fn a_binding_it_removed_her_from_naming_her_again_is_a_regrant_once() {
    let mut list = list_with(json!([]));
    let back = rb("edit", "u", 10, vec![user("ann@x.io"), user("bob@x.io")]);
    let hits = list.check(&role_binding(&back));
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(
        (h.request.as_str(), describe(&h.binding), h.origin),
        ("req", "RoleBinding team/edit".to_string(), RegrantOrigin::RemovedBinding)
    );
    assert_eq!(h.subjects.iter().map(ToString::to_string).collect::<Vec<_>>(), ["User ann@x.io"]);
    assert_eq!(h.uid, "u");
    assert!(list.check(&role_binding(&back)).is_empty(), "reported once while it stays");
    // Removed again, then back again: reported again.
    let gone = rb("edit", "u", 10, vec![user("bob@x.io")]);
    assert!(list.check(&role_binding(&gone)).is_empty());
    assert_eq!(list.check(&role_binding(&back)).len(), 1);
    list.removed_again("req", &key_of(&role_binding(&back)));
    assert_eq!(list.get("req").unwrap().removed_again.values().sum::<usize>(), 1);
}

#[test]
fn the_same_name_created_again_is_the_requests_regrant_and_reported_again_even_if_its_deletion_was_missed() {
    let mut list = list_with(json!([]));
    // Deleted by the removal (it emptied it) and created again later: a new UID, same name.
    let again = rb("view", "v2", 200, vec![group("ops")]);
    let hits = list.check(&role_binding(&again));
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].origin, hits[0].uid.as_str()), (RegrantOrigin::RemovedBinding, "v2"));
    // Deleted and created again once more while the watch was not looking (no delete seen, as
    // after a watch restart without the index): a new binding, reported again.
    let third = rb("view", "v3", 300, vec![group("ops")]);
    assert_eq!(list.check(&role_binding(&third)).len(), 1);
    assert!(list.check(&role_binding(&third)).is_empty());
}

#[test]
fn access_the_request_never_removed_is_never_a_regrant() {
    let mut list = list_with(json!([]));
    // What the verification found left, and any other binding that existed when the request
    // finished (the residual list is clipped, and empty when the verification failed).
    assert!(list.check(&cluster_role_binding(&crb("team-admins", "t", 90))).is_empty());
    assert!(
        list.check(&cluster_role_binding(&crb("unlisted", "x", 100))).is_empty(),
        "created in the finishing second"
    );
    // A binding the request removed someone else from that still names ann: she was never removed there.
    let view = rb("view", "v", 10, vec![user("ann@x.io")]);
    assert!(list.check(&role_binding(&view)).is_empty());
    // Someone else's binding, or a subject whose removal failed.
    assert!(list.check(&role_binding(&rb("other", "o", 10, vec![user("failed@x.io")]))).is_empty());
    assert!(list.check(&role_binding(&rb("x", "x", 500, vec![user("failed@x.io")]))).is_empty());
    // Rescans (a new leader reads the records and every binding again) find nothing either.
    let mut rebuilt = list_with(json!([]));
    assert!(rebuilt.check(&cluster_role_binding(&crb("team-admins", "t", 90))).is_empty());
    assert!(rebuilt.check(&role_binding(&view)).is_empty());
}

#[test]
fn a_binding_created_after_the_request_finished_is_new_access_reported_once() {
    let mut list = list_with(json!([]));
    let new = crb("ann-admin", "n", 101);
    let hits = list.check(&cluster_role_binding(&new));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].origin, RegrantOrigin::NewBinding);
    assert!(list.check(&cluster_role_binding(&new)).is_empty());
    // Deleted (seen), created again: reported again.
    list.deleted(&key_of(&cluster_role_binding(&new)));
    assert_eq!(list.check(&cluster_role_binding(&new)).len(), 1);
}

#[test]
fn the_record_says_what_was_already_reported() {
    // Reported and still there: not reported again after a restart; removed again: counted.
    let regrants = json!([
        {"object": "RoleBinding team/edit", "subject": "User ann@x.io", "at": "2026-01-01T00:00:00Z", "message": "m", "uid": "u"},
        {"object": "ClusterRoleBinding ann-admin", "subject": "User ann@x.io", "at": "2026-01-01T00:00:00Z", "message": "m", "removedAgain": true}
    ]);
    let mut list = list_with(regrants);
    let back = rb("edit", "u", 10, vec![user("ann@x.io")]);
    assert!(list.check(&role_binding(&back)).is_empty());
    // Another binding under the name since (new UID): reported.
    assert_eq!(list.check(&role_binding(&rb("edit", "u2", 300, vec![user("ann@x.io")]))).len(), 1);
    let w = list.get("req").unwrap();
    assert_eq!(w.removed_again.get(&(BindingKind::ClusterRoleBinding, None, "ann-admin".into())), Some(&1));
    list.expire(&since(150));
    assert!(list.get("req").is_none());
}

#[test]
fn an_entry_from_an_older_record_without_a_uid_stands_for_any_binding_of_its_name() {
    let regrants = json!([
        {"object": "RoleBinding team/edit", "subject": "User ann@x.io", "at": "2026-01-01T00:00:00Z", "message": "m"}
    ]);
    let mut list = list_with(regrants);
    // Not reported again, whatever its UID: no false report from an old record.
    assert!(list.check(&role_binding(&rb("edit", "u", 10, vec![user("ann@x.io")]))).is_empty());
    assert!(list.check(&role_binding(&rb("edit", "u2", 300, vec![user("ann@x.io")]))).is_empty());
    // Once it is seen without her, a later re-grant is reported (with its UID from then on).
    assert!(list.check(&role_binding(&rb("edit", "u2", 300, vec![]))).is_empty());
    assert_eq!(list.check(&role_binding(&rb("edit", "u2", 300, vec![user("ann@x.io")]))).len(), 1);
}

#[test]
fn a_reported_binding_deleted_unseen_is_reported_again_when_it_comes_back() {
    // Reported before a restart (or before a watch gap in which it was deleted).
    let regrants = json!([
        {"object": "RoleBinding team/edit", "subject": "User ann@x.io", "at": "2026-01-01T00:00:00Z", "message": "m"}
    ]);
    let mut list = list_with(regrants);
    let back = rb("edit", "u", 10, vec![user("ann@x.io")]);
    let key = key_of(&role_binding(&back));
    // Still there: kept, and not reported twice.
    assert_eq!(list.forget_absent(|k| *k == key), 0);
    assert!(list.check(&role_binding(&back)).is_empty());
    // Gone from the cluster (no delete was seen), then created again: a re-grant once more.
    assert_eq!(list.forget_absent(|_| false), 1);
    assert_eq!(list.check(&role_binding(&back)).len(), 1);
}

#[test]
fn only_when_every_policy_that_removed_it_says_remove_is_a_regrant_removed_again() {
    let policy = |name: &str, rule: &str| {
        fixtures::policy(
            name,
            json!({"application": {"appId": "demo"}, "onRegrant": rule,
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}], "rules": [{"roleBindings": {"namespaces": ["team"]}}]}),
        )
    };
    let by = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let all = [policy("a", "Remove"), policy("b", "Report"), policy("c", "Remove")];
    let names = |p: Option<Vec<DeprovisionPolicy>>| p.map(|v| v.iter().map(|p| p.name_any()).collect::<Vec<_>>());
    assert_eq!(
        names(removing_again(&by(&["a", "c"]), &all)),
        Some(vec!["a".to_string(), "c".to_string()]),
        "only those"
    );
    assert_eq!(names(removing_again(&by(&["a", "b"]), &all)), None, "one says Report");
    assert_eq!(names(removing_again(&by(&["a", "gone"]), &all)), None, "one no longer exists");
    assert_eq!(names(removing_again(&by(&[]), &all)), None);
}
