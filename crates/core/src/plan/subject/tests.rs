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
    let prot = Protected { operator: Some(("deprov".into(), "deprovisioner".into())), also: vec![] };
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

/// A wanted identity's key is the key of every subject it matches, whatever the spelling.
#[test]
fn keys_agree_with_matching() {
    let subjects = [
        subj("User", "Peter@X.io", None),
        subj("User", "peter@x.io", None),
        subj("User", "system:serviceaccount:team:bot", None),
        subj("ServiceAccount", "bot", Some("team")),
        subj("ServiceAccount", "bot", None),
        subj("Group", "Peter@x.io", None),
        subj("Group", "devs", None),
    ];
    let wanted = [
        Wanted::new(SubjectKind::User, "peter@x.io".into(), None, true).unwrap(),
        Wanted::new(SubjectKind::User, "Peter@X.io".into(), None, false).unwrap(),
        Wanted::new(SubjectKind::ServiceAccount, "bot".into(), Some("team".into()), false).unwrap(),
        Wanted::new(SubjectKind::User, "system:serviceaccount:team:bot".into(), None, false).unwrap(),
        Wanted::new(SubjectKind::Group, "PETER@x.io".into(), None, true).unwrap(),
        Wanted::new(SubjectKind::LumosAccount, "Group:devs".into(), None, false).unwrap(),
    ];
    let mut matched = 0;
    for w in &wanted {
        for s in &subjects {
            for ns in [None, Some("team")] {
                let Some(p) = PrincipalRef::of_subject(s, ns) else { continue };
                if w.matches_ref(p) {
                    matched += 1;
                    assert_eq!(w.key(), p.key(), "{w:?} matches {s:?} (in {ns:?}) under another key");
                }
            }
        }
    }
    assert!(matched >= 10, "the table matches something: {matched}");
    // Different kinds, namespaces and names are filed apart.
    let key = |p: PrincipalRef<'_>| p.key();
    assert_ne!(key(PrincipalRef::User("devs")), key(PrincipalRef::Group("devs")));
    assert_ne!(key(PrincipalRef::ServiceAccount("a", "b")), key(PrincipalRef::ServiceAccount("A", "b")));
    assert_ne!(key(PrincipalRef::User("ab")), key(PrincipalRef::User("a")));
    let keys: Vec<SubjectKey> = keys_of(&subjects[..4], Some("x")).collect();
    assert_eq!(keys.len(), 4);
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[2], keys[3]); // the ServiceAccount in disguise, and written as one
    assert_eq!(keys[2], key(PrincipalRef::ServiceAccount("team", "bot")));
}
