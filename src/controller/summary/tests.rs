use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::crd::ActionKind;

fn r(id: i32, outcome: Outcome, object: &str) -> ActionResult {
    ActionResult {
        id,
        kind: ActionKind::RemoveBindingSubject,
        object: object.into(),
        subject: "User p@x.io".into(),
        outcome,
        message: format!("{} detail", outcome.as_str()),
        at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        external: None,
        subjects_before: None,
        subjects_after: None,
    }
}

#[test]
fn summaries() {
    let (p, m) = summarize(
        "p@x.io",
        &[r(0, Outcome::Removed, "RoleBinding a/edit"), r(1, Outcome::Deleted, "ClusterRoleBinding x")],
    );
    assert_eq!(p, Phase::Succeeded);
    assert_eq!(m, "Removed p@x.io from RoleBinding a/edit; ClusterRoleBinding x");
    let (p, m) = summarize("p@x.io", &[r(0, Outcome::AlreadyAbsent, "RoleBinding a/edit")]);
    assert_eq!(p, Phase::Succeeded);
    assert!(m.starts_with("Nothing to remove: p@x.io holds none"), "{m}");
    let (p, m) = summarize("p@x.io", &[]);
    assert_eq!(p, Phase::Succeeded);
    assert!(m.contains("nothing to remove"));
    let (p, m) = summarize(
        "p@x.io",
        &[r(0, Outcome::Removed, "RoleBinding a/edit"), r(1, Outcome::Failed, "RoleBinding b/edit")],
    );
    assert_eq!(p, Phase::Failed);
    assert!(
        m.starts_with("Failed 1 of 2 action(s)")
            && m.contains("RoleBinding b/edit: Failed detail")
            && m.contains("Done: removed"),
        "{m}"
    );
    let many: Vec<_> = (0..10).map(|i| r(i, Outcome::Removed, &format!("RoleBinding n{i}/edit"))).collect();
    assert!(summarize("p@x.io", &many).1.ends_with("and 7 more"));
}

#[test]
fn the_verification_is_said_in_the_message_and_can_fail_the_request() {
    use crate::crd::{BindingKind, ResidualAccessRule, ResidualBinding, Review, UnverifiedRule, Verification};
    let reviewed = |allowed: bool, rule: ResidualAccessRule| Verification {
        checked_at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        on_residual_access: rule,
        on_unverified: UnverifiedRule::Fail,
        identities: vec![],
        reviews: vec![Review {
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
            reason: Some(
                r#"RBAC: allowed by ClusterRoleBinding "team-admins" of ClusterRole "admin" to User "p@x.io""#.into(),
            ),
        }],
        residual: vec![ResidualBinding {
            kind: BindingKind::ClusterRoleBinding,
            namespace: None,
            name: "team-admins".into(),
            role_ref: "ClusterRole/admin".into(),
            subject: "User p@x.io".into(),
            why: "not covered by policy demo-app".into(),
        }],
        notes: vec![],
        error: None,
    };
    let (p, m) = summarize("p@x.io", &[r(0, Outcome::Removed, "RoleBinding team-a/edit")]);
    let (phase, msg) = with_verification(p, m.clone(), None);
    assert_eq!((phase, msg.as_str()), (Phase::Succeeded, m.as_str()));
    let (phase, msg) = with_verification(p, m.clone(), Some(&reviewed(true, ResidualAccessRule::Fail)));
    assert_eq!(phase, Phase::Failed);
    assert_eq!(
        msg,
        "Removed p@x.io from RoleBinding team-a/edit; still allowed to update deployments.apps in team-a via ClusterRoleBinding team-admins (not covered by policy demo-app)"
    );
    let (phase, _) = with_verification(p, m.clone(), Some(&reviewed(true, ResidualAccessRule::Report)));
    assert_eq!(phase, Phase::Succeeded);
    // A verification that could not be made fails the answer unless the policies opt out.
    let mut unverified = reviewed(false, ResidualAccessRule::Report);
    unverified.reviews.clear();
    unverified.error = Some("asking the authorizer: forbidden".into());
    let (phase, msg) = with_verification(p, m.clone(), Some(&unverified));
    assert_eq!(phase, Phase::Failed);
    assert_eq!(
        msg,
        "Removed p@x.io from RoleBinding team-a/edit; removed, but not verified: asking the authorizer: forbidden"
    );
    unverified.on_unverified = UnverifiedRule::Report;
    assert_eq!(with_verification(p, m.clone(), Some(&unverified)).0, Phase::Succeeded);
    // The sentence survives a message clipped for length.
    let many: Vec<_> = (0..30)
        .map(|i| r(i, Outcome::Removed, &format!("RoleBinding namespace-{i}/a-long-binding-name-{i}")))
        .collect();
    let (p, m) = summarize("p@x.io", &many);
    let (_, msg) = with_verification(p, m, Some(&reviewed(false, ResidualAccessRule::Fail)));
    assert!(msg.chars().count() <= crate::text::MAX_MESSAGE, "{msg}");
    assert!(msg.contains("; verified: no remaining access to what was removed"), "{msg}");
}
