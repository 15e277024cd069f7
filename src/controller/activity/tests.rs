use super::*;
use crate::crd::SubjectKind;

fn wanted(kind: SubjectKind, name: &str, ns: Option<&str>) -> Wanted {
    Wanted::new(kind, name.into(), ns.map(Into::into), false).unwrap()
}

#[test]
fn users_and_service_accounts_once_each_never_groups_at_most_eight() {
    let w = [
        wanted(SubjectKind::User, "ann@x.com", None),
        wanted(SubjectKind::Group, "devs", None),
        wanted(SubjectKind::ServiceAccount, "ci", Some("team")),
        wanted(SubjectKind::User, "system:serviceaccount:team:ci", None),
        wanted(SubjectKind::LumosAccount, "User:ann@x.com", None),
    ];
    assert_eq!(accounts(&w), ["User:ann@x.com", "ServiceAccount:team/ci"]);
    let many: Vec<Wanted> = (0..20).map(|i| wanted(SubjectKind::User, &format!("u{i}"), None)).collect();
    assert_eq!(accounts(&many).len(), MAX_ACCOUNTS);
}

#[test]
fn a_failure_is_recorded_clipped() {
    let f = failed("x".repeat(1000));
    assert!(f.accounts.is_empty());
    assert!(f.error.as_ref().unwrap().chars().count() <= MAX_ERROR + 1);
    assert!(f.describe().starts_with("not read: xxx"));
}

#[tokio::test]
async fn a_read_not_done_soon_after_the_plan_is_recorded_as_such() {
    tokio::time::pause();
    let slow = Pending(Some(tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        RecordedActivity::default()
    })));
    let recorded = slow.finish().await.unwrap();
    assert!(recorded.error.as_deref().unwrap().starts_with("not read within 500 ms"), "{recorded:?}");
    assert!(Pending::default().finish().await.is_none(), "nothing started, nothing recorded");
}
