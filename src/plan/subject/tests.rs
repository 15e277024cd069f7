use super::*;

use crate::fixtures::subject as subj;

#[test]
fn canonical_forms() {
    assert_eq!(Principal::of_subject(&subj("User", "a@x.io", None), None), Some(Principal::User("a@x.io".into())));
    assert_eq!(
        Principal::of_subject(&subj("User", "system:serviceaccount:team:bot", None), None),
        Some(Principal::ServiceAccount("team".into(), "bot".into()))
    );
    assert_eq!(
        Principal::of_subject(&subj("ServiceAccount", "bot", None), Some("team")),
        Some(Principal::ServiceAccount("team".into(), "bot".into()))
    );
    assert_eq!(
        Principal::of_subject(&subj("ServiceAccount", "bot", Some("")), Some("team")),
        Some(Principal::ServiceAccount("team".into(), "bot".into()))
    );
    assert_eq!(Principal::of_subject(&subj("ServiceAccount", "bot", None), None), None);
    assert_eq!(Principal::of_subject(&subj("Robot", "r", None), None), None);
    assert_eq!(Principal::user("system:serviceaccount:only"), Principal::User("system:serviceaccount:only".into()));
}

#[test]
fn matching_respects_case_rule_and_kind() {
    let exact = Wanted::new(SubjectKind::User, "Peter@x.io".into(), None, false).unwrap();
    let ci = Wanted { case_insensitive: true, ..exact.clone() };
    let p = Principal::User("peter@X.io".into());
    assert!(!exact.matches(&p));
    assert!(ci.matches(&p));
    assert!(!ci.matches(&Principal::Group("peter@x.io".into())));
    let sa = Wanted::new(SubjectKind::ServiceAccount, "bot".into(), Some("team".into()), true).unwrap();
    assert!(sa.matches(&Principal::ServiceAccount("team".into(), "bot".into())));
    assert!(!sa.matches(&Principal::ServiceAccount("other".into(), "bot".into())));
    let sa_user = Wanted::new(SubjectKind::User, "system:serviceaccount:team:bot".into(), None, false).unwrap();
    assert!(sa_user.matches(&Principal::ServiceAccount("team".into(), "bot".into())));
}

#[test]
fn protection() {
    let prot = Protected { operator: Some(("deprov".into(), "deprovisioner".into())) };
    assert!(prot.why(&Principal::User("system:admin".into())).is_some());
    assert!(prot.why(&Principal::Group("SYSTEM:masters".into())).is_some());
    assert!(prot.why(&Principal::ServiceAccount("deprov".into(), "deprovisioner".into())).is_some());
    assert!(prot.why(&Principal::ServiceAccount("kube-system".into(), "x".into())).is_some());
    assert!(prot.why(&Principal::user("system:serviceaccount:deprov:deprovisioner")).is_some());
    assert!(prot.why(&Principal::user("system:serviceaccount:team:bot")).is_none());
    assert!(prot.why(&Principal::User("alice".into())).is_none());
}

#[test]
fn own_identity_from_a_token() {
    use base64::Engine as _;
    let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let token =
        format!("{}.{}.sig", enc(r#"{"alg":"RS256"}"#), enc(r#"{"sub":"system:serviceaccount:ops:deprovisioner"}"#));
    assert_eq!(service_account_of_token(&token), Some(("ops".into(), "deprovisioner".into())));
    let user = format!("h.{}.s", enc(r#"{"sub":"alice"}"#));
    assert_eq!(service_account_of_token(&user), None);
    assert_eq!(service_account_of_token("not-a-jwt"), None);
}

#[test]
fn exact_identity_treats_missing_and_empty_namespace_alike() {
    let r = SubjectRef { kind: "ServiceAccount".into(), name: "bot".into(), namespace: None };
    assert!(is_exactly(&subj("ServiceAccount", "bot", Some("")), &r));
    assert!(!is_exactly(&subj("ServiceAccount", "bot", Some("team")), &r));
    assert!(!is_exactly(&subj("User", "bot", None), &r));
}
