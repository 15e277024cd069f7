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
