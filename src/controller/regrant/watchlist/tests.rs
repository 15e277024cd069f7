use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::fixtures::{self, user};
use crate::verify::residual::{cluster_role_binding, role_binding};

/// A request that removed ann from RoleBinding team/edit, verified with ClusterRoleBinding
/// `team-admins` still naming her, finished at `finished` (seconds).
fn request(finished: i64, regrants: serde_json::Value) -> DeprovisionRequest {
    let at = Timestamp::from_second(finished).unwrap().to_string();
    serde_json::from_value(json!({
        "apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "DeprovisionRequest",
        "metadata": {"name": "req"},
        "spec": {"application": {"appId": "demo"}, "targetUser": {"email": "ann@x.io"}},
        "status": {"phase": "Succeeded", "completedAt": at, "policies": ["pol"],
            "plan": [{"id": 0, "kind": "RemoveBindingSubject", "policy": "pol", "reason": "r",
                "binding": {"target": {"kind": "RoleBinding", "namespace": "team", "name": "edit", "uid": "u", "roleRef": "ClusterRole/edit"},
                            "subject": {"kind": "User", "name": "ann@x.io"}, "whenEmpty": "Delete"}},
                {"id": 1, "kind": "RemoveBindingSubject", "policy": "pol", "reason": "r",
                "binding": {"target": {"kind": "RoleBinding", "namespace": "team", "name": "view", "uid": "v", "roleRef": "ClusterRole/view"},
                            "subject": {"kind": "User", "name": "failed@x.io"}, "whenEmpty": "Delete"}}],
            "results": [{"id": 0, "kind": "RemoveBindingSubject", "object": "RoleBinding team/edit", "subject": "User ann@x.io",
                         "outcome": "Removed", "message": "m", "at": at},
                        {"id": 1, "kind": "RemoveBindingSubject", "object": "RoleBinding team/view", "subject": "User failed@x.io",
                         "outcome": "Failed", "message": "m", "at": at}],
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

#[test]
fn a_finished_request_is_watched_for_what_it_removed() {
    let w = watched(&request(100, json!([])), &since(50)).unwrap();
    assert_eq!(
        w.principals.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        ["User ann@x.io"],
        "only what was removed"
    );
    assert!(w.excluded.contains(&(BindingKind::ClusterRoleBinding, None, "team-admins".into())));
    assert_eq!(w.app, "demo");
    assert!(watched(&request(100, json!([])), &since(150)).is_none(), "finished before the window");
}

#[test]
fn a_binding_naming_a_removed_subject_again_is_a_hit_once() {
    let mut list = Watchlist::default();
    list.insert(&request(100, json!([])), &since(50));
    let back =
        fixtures::role_binding("team", "edit").role("edit").subjects([user("ann@x.io"), user("bob@x.io")]).build();
    let hits = list.check(&role_binding(&back));
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].request.as_str(), describe(&hits[0].binding)), ("req", "RoleBinding team/edit".to_string()));
    assert_eq!(hits[0].subject.to_string(), "User ann@x.io");
    assert!(list.check(&role_binding(&back)).is_empty(), "reported once while it stays");
    // A new binding for her counts too.
    let new = fixtures::cluster_role_binding("ann-admin").role("admin").subjects([user("ann@x.io")]).build();
    assert_eq!(list.check(&cluster_role_binding(&new)).len(), 1);
    // Still named where the verification found it: not a re-grant.
    let residual = fixtures::cluster_role_binding("team-admins").role("admin").subjects([user("ann@x.io")]).build();
    assert!(list.check(&cluster_role_binding(&residual)).is_empty());
    // Someone else's binding, or a subject whose removal failed: not a re-grant.
    let other = fixtures::role_binding("team", "x").role("edit").subjects([user("failed@x.io")]).build();
    assert!(list.check(&role_binding(&other)).is_empty());
    // Removed again, then back again: reported again.
    let gone = fixtures::role_binding("team", "edit").role("edit").subjects([user("bob@x.io")]).build();
    assert!(list.check(&role_binding(&gone)).is_empty());
    assert_eq!(list.check(&role_binding(&back)).len(), 1);
    list.removed_again("req", &key_of(&role_binding(&back)));
    assert_eq!(list.get("req").unwrap().removed_again.values().sum::<usize>(), 1);
}

#[test]
fn the_record_says_what_was_already_reported() {
    // Reported and still there: not reported again after a restart; removed again: counted.
    let regrants = json!([
        {"object": "RoleBinding team/edit", "subject": "User ann@x.io", "at": "2026-01-01T00:00:00Z", "message": "m"},
        {"object": "ClusterRoleBinding ann-admin", "subject": "User ann@x.io", "at": "2026-01-01T00:00:00Z", "message": "m", "removedAgain": true}
    ]);
    let mut list = Watchlist::default();
    list.insert(&request(100, regrants), &since(50));
    let back = fixtures::role_binding("team", "edit").role("edit").subjects([user("ann@x.io")]).build();
    assert!(list.check(&role_binding(&back)).is_empty());
    let w = list.get("req").unwrap();
    assert_eq!(w.removed_again.get(&(BindingKind::ClusterRoleBinding, None, "ann-admin".into())), Some(&1));
    list.expire(&since(150));
    assert!(list.get("req").is_none());
}

#[test]
fn a_reported_binding_deleted_unseen_is_reported_again_when_it_comes_back() {
    // Reported before a restart (or before a watch gap in which it was deleted).
    let regrants = json!([
        {"object": "RoleBinding team/edit", "subject": "User ann@x.io", "at": "2026-01-01T00:00:00Z", "message": "m"}
    ]);
    let mut list = Watchlist::default();
    list.insert(&request(100, regrants), &since(50));
    let back = fixtures::role_binding("team", "edit").role("edit").subjects([user("ann@x.io")]).build();
    let key = key_of(&role_binding(&back));
    // Still there: kept, and not reported twice.
    assert_eq!(list.forget_absent(|k| *k == key), 0);
    assert!(list.check(&role_binding(&back)).is_empty());
    // Gone from the cluster (no delete was seen), then created again: a re-grant once more.
    assert_eq!(list.forget_absent(|_| false), 1);
    assert_eq!(list.check(&role_binding(&back)).len(), 1);
}
