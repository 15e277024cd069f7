use super::*;
use crate::fixtures::{self, user};
use k8s_openapi::api::rbac::v1::Subject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn policy(name: &str, spec: serde_json::Value) -> DeprovisionPolicy {
    let mut all = serde_json::json!({
        "application": {"appId": "app"},
        "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
    });
    all.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    DeprovisionPolicy::new(name, serde_json::from_value(all).unwrap())
}

fn rb(ns: &str, subjects: Vec<Subject>, created: &str) -> k8s_openapi::api::rbac::v1::RoleBinding {
    let mut b = fixtures::role_binding(ns, "rb").role("view").subjects(subjects).uid("u1").build();
    b.metadata.creation_timestamp = Some(Time(at(created)));
    b
}

#[test]
fn max_access_reads_hours_minutes_seconds_in_order() {
    assert_eq!(parse_max_access("720h").unwrap(), SignedDuration::from_hours(720));
    assert_eq!(parse_max_access("36h30m").unwrap(), SignedDuration::from_secs(36 * 3600 + 1800));
    assert_eq!(parse_max_access("90s").unwrap(), SignedDuration::from_secs(90));
    for bad in ["", "0s", "7d", "30m1h", "1h1h", "h", "1.5h", "-1h", "1h ", "999999999999h"] {
        assert!(parse_max_access(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn the_annotation_gives_times_by_account_and_names_what_it_cannot_read() {
    let (ends, errors) = parse_annotation(
        r#"{"User:ann@x.com": "2025-07-01T00:00:00Z", "Group:ops": "tomorrow", "ann": "2025-07-01T00:00:00Z", "ServiceAccount:ci/bot": "2025-07-02T10:00:00+02:00"}"#,
    );
    assert_eq!(ends.len(), 2);
    assert_eq!(ends["User:ann@x.com"], at("2025-07-01T00:00:00Z"));
    assert_eq!(ends["ServiceAccount:ci/bot"], at("2025-07-02T08:00:00Z"));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("Group:ops") && e.contains("RFC 3339")));
    assert!(errors.iter().any(|e| e.contains("\"ann\"") && e.contains("not an account id")));
    let (ends, errors) = parse_annotation("2025-07-01");
    assert!(ends.is_empty() && errors.len() == 1);
}

#[test]
fn the_start_is_the_earliest_evidence() {
    let now = at("2025-06-01T12:00:00Z");
    let mut b = rb("a", vec![], "2025-01-01T00:00:00Z");
    // Seen appear by this leader: now.
    assert_eq!(start(true, true, &b.metadata, now).from, StartEvidence::Observed);
    // Never seen: since the binding was created.
    let c = start(false, false, &b.metadata, now);
    assert_eq!((c.since.0, c.from), (at("2025-01-01T00:00:00Z"), StartEvidence::Created));
    // Seen before without the subject, written since: the last write of subjects.
    b.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some("kubectl-edit".into()),
        time: Some(Time(at("2025-05-01T00:00:00Z"))),
        ..Default::default()
    }]);
    let c = start(true, false, &b.metadata, now);
    assert_eq!((c.since.0, c.from), (at("2025-05-01T00:00:00Z"), StartEvidence::SubjectsWritten));
    // …but not for a binding never seen: it may have held it since its creation.
    assert_eq!(start(false, false, &b.metadata, now).from, StartEvidence::Created);
}

fn scan_one(
    p: &[DeprovisionPolicy],
    b: &k8s_openapi::api::rbac::v1::RoleBinding,
    old: &BTreeMap<String, BindingClocks>,
    now: Timestamp,
) -> Scan {
    scan_seen(p, b, old, now, !old.is_empty())
}

/// `seen`: whether this leader's previous scan held the binding.
fn scan_seen(
    p: &[DeprovisionPolicy],
    b: &k8s_openapi::api::rbac::v1::RoleBinding,
    old: &BTreeMap<String, BindingClocks>,
    now: Timestamp,
    seen: bool,
) -> Scan {
    let usable = usable(p);
    let view = crate::verify::residual::role_binding(b);
    let terms = terms(&view, &usable, None);
    let scanned = Some(Scanned { view, terms });
    scan(scanned, &|uid| old.get(uid), &|_| seen, &Protected::default(), now)
}

#[test]
fn the_earlier_of_max_access_and_the_annotation_ends_it_and_exempt_or_protected_never() {
    let p = policy(
        "p",
        serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "24h"}],
                            "expiry": {"exempt": ["User:*@sre.x"]}}),
    );
    let system = Subject { kind: "Group".into(), name: "system:masters".into(), ..Default::default() };
    let mut b = rb("a", vec![user("ann@x.com"), user("bob@x.com"), user("root@sre.x"), system], "2025-06-01T00:00:00Z");
    b.metadata.annotations = Some(
        [(
            ANNOTATION.to_string(),
            r#"{"User:bob@x.com": "2025-06-01T06:00:00Z", "User:ann@x.com": "2025-06-09T00:00:00Z"}"#.to_string(),
        )]
        .into(),
    );
    let now = at("2025-06-01T01:00:00Z");
    let s = scan_one(&[p], &b, &BTreeMap::new(), now);
    let due: Vec<_> = s.scheduled.iter().map(|e| (e.account.as_str(), e.due_at.0, e.ended_by)).collect();
    assert_eq!(
        due,
        [
            ("User:bob@x.com", at("2025-06-01T06:00:00Z"), EndedBy::Annotation),
            ("User:ann@x.com", at("2025-06-02T00:00:00Z"), EndedBy::MaxAccess),
        ]
    );
    assert_eq!(s.scheduled[1].reason, "DeprovisionPolicy p rules[0] maxAccess 24h");
    assert_eq!(s.clocks["u1"].subjects.len(), 2, "no clock for the exempt or the protected");
}

#[test]
fn a_clock_is_kept_while_the_subject_stays_and_dropped_when_it_goes() {
    let p = policy("p", serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "1h"}]}));
    let b = rb("a", vec![user("ann@x.com")], "2025-06-01T00:00:00Z");
    let first = scan_one(std::slice::from_ref(&p), &b, &BTreeMap::new(), at("2025-06-01T00:10:00Z"));
    // Ten minutes later, the clock is the one kept (not "now").
    let again = scan_one(std::slice::from_ref(&p), &b, &first.clocks, at("2025-06-01T00:20:00Z"));
    assert_eq!(again.scheduled[0].started_at, first.scheduled[0].started_at);
    // Gone: no clock; back: a new one, so a new identity (a new request name).
    let gone = rb("a", vec![], "2025-06-01T00:00:00Z");
    let none = scan_one(std::slice::from_ref(&p), &gone, &again.clocks, at("2025-06-01T00:30:00Z"));
    assert!(none.clocks["u1"].subjects.is_empty());
    let back = scan_one(std::slice::from_ref(&p), &b, &none.clocks, at("2025-06-01T00:40:00Z"));
    assert_eq!(back.scheduled[0].started_at.0, at("2025-06-01T00:40:00Z"));
    assert_eq!(back.scheduled[0].started_from, StartEvidence::Observed);
    assert_ne!(identity(&back.scheduled[0]), identity(&first.scheduled[0]));
}

#[test]
fn bindings_outside_every_rule_or_without_an_end_have_no_clock() {
    let p = policy("p", serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}}]}));
    let b = rb("a", vec![user("ann@x.com")], "2025-06-01T00:00:00Z");
    assert!(scan_one(std::slice::from_ref(&p), &b, &BTreeMap::new(), at("2025-06-02T00:00:00Z")).clocks.is_empty());
    let elsewhere = rb("b", vec![user("ann@x.com")], "2025-06-01T00:00:00Z");
    let view = crate::verify::residual::role_binding(&elsewhere);
    assert!(terms(&view, &usable(&[p]), None).is_none());
    // Annotations ignored by the policy: nothing.
    let ignoring = policy(
        "q",
        serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}}], "expiry": {"annotations": "Ignore"}}),
    );
    let mut annotated = b.clone();
    annotated.metadata.annotations =
        Some([(ANNOTATION.to_string(), r#"{"User:ann@x.com": "2025-06-01T06:00:00Z"}"#.to_string())].into());
    assert!(scan_one(&[ignoring], &annotated, &BTreeMap::new(), at("2025-06-02T00:00:00Z")).scheduled.is_empty());
}

#[test]
fn the_request_names_the_account_the_policy_and_its_application() {
    let p = policy("p", serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "1h"}]}));
    let b = rb("a", vec![user("ann@x.com")], "2025-06-01T00:00:00Z");
    let s = scan_one(std::slice::from_ref(&p), &b, &BTreeMap::new(), at("2025-06-01T02:00:00Z"));
    let spec = request_spec(&s.scheduled[0], &p.spec.application);
    assert_eq!(spec.source, RequestSource::Expiry);
    assert_eq!(spec.target_user.email, "User:ann@x.com");
    assert_eq!(spec.application.app_id.as_deref(), Some("app"));
    assert!(spec.permissions.is_empty());
}

#[test]
fn an_expiry_holds_while_its_binding_is_unchanged_or_the_clocks_say_the_same_grant() {
    let p = policy("p", serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "1h"}]}));
    let p = std::slice::from_ref(&p);
    let versioned = |subjects, v: &str| {
        let mut b = rb("a", subjects, "2025-06-01T00:00:00Z");
        b.metadata.resource_version = Some(v.into());
        b
    };
    // Scheduled from version 10: the request names it, the clocks are exact for it.
    let b10 = versioned(vec![user("ann@x.com"), user("bob@x.com")], "10");
    let due = scan_one(p, &b10, &BTreeMap::new(), at("2025-06-01T01:00:01Z"));
    let e = due.scheduled.iter().find(|e| e.account == "User:ann@x.com").unwrap().clone();
    assert_eq!(e.binding_version.as_deref(), Some("10"));
    assert_eq!(due.clocks["u1"].version.as_deref(), Some("10"));
    // Unchanged at planning: the same grant, whatever the clocks.
    assert_eq!(holding(&e, Some("10"), None), Holding::Holds);

    // Version 11: someone else left; ann's clock is the same one.
    let b11 = versioned(vec![user("ann@x.com")], "11");
    let later = scan_one(p, &b11, &due.clocks, at("2025-06-01T01:00:02Z"));
    assert_eq!(holding(&e, Some("11"), Some(&later.clocks["u1"])), Holding::Holds);
    // ... but until the clocks are exact for version 11, nobody knows.
    assert!(
        matches!(holding(&e, Some("11"), Some(&due.clocks["u1"])), Holding::Unknown(w) if w.contains("resourceVersion 10, now 11"))
    );
    assert!(matches!(holding(&e, Some("11"), None), Holding::Unknown(_)));
    let mut unvouched = later.clocks["u1"].clone();
    unvouched.version = None;
    assert!(matches!(holding(&e, Some("11"), Some(&unvouched)), Holding::Unknown(_)));

    // Versions 12 and 13: ann removed and given it again (the leader saw both): a new clock, so
    // the grant this expiry was for ended.
    let b12 = versioned(vec![user("bob@x.com")], "12");
    let gone = scan_one(p, &b12, &due.clocks, at("2025-06-01T01:00:03Z"));
    let b13 = versioned(vec![user("ann@x.com"), user("bob@x.com")], "13");
    let back = scan_seen(p, &b13, &gone.clocks, at("2025-06-01T01:00:04Z"), true);
    assert_eq!(back.clocks["u1"].subjects["User:ann@x.com"].since.0, at("2025-06-01T01:00:04Z"));
    let ended = holding(&e, Some("13"), Some(&back.clocks["u1"]));
    assert!(
        matches!(&ended, Holding::Ended(w) if w.contains("given it again") && w.contains("2025-06-01T01:00:04Z")),
        "{ended:?}"
    );
    // No clock for her at an exact version (no longer time-bound): not the grant either.
    let mut none = back.clocks["u1"].clone();
    none.subjects.clear();
    assert!(matches!(holding(&e, Some("13"), Some(&none)), Holding::Ended(_)));
    // A clock that started earlier than the expiry's (never the case by construction) still holds.
    let mut earlier = back.clocks["u1"].clone();
    earlier.subjects.get_mut("User:ann@x.com").unwrap().since = e.started_at.clone();
    assert_eq!(holding(&e, Some("13"), Some(&earlier)), Holding::Holds);

    // A request recorded before versions were kept holds, as it did.
    let old = Expiry { binding_version: None, ..e };
    assert_eq!(holding(&old, Some("13"), None), Holding::Holds);
}

#[test]
fn clocks_outlive_terms_that_go_away_for_a_while() {
    let good =
        policy("p", serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "720h"}]}));
    // The same policy failing validation (a `maxAccess` the operator refuses) for one scan.
    let bad = policy("p", serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "0s"}]}));
    // Binding created a year ago; ann seen added yesterday by this leader.
    let empty = rb("a", vec![], "2024-06-01T00:00:00Z");
    let b = rb("a", vec![user("ann@x.com")], "2024-06-01T00:00:00Z");
    let s0 = scan_seen(std::slice::from_ref(&good), &empty, &BTreeMap::new(), at("2025-05-31T00:00:00Z"), false);
    let s1 = scan_seen(std::slice::from_ref(&good), &b, &s0.clocks, at("2025-05-31T00:00:01Z"), true);
    assert_eq!(s1.scheduled[0].started_from, StartEvidence::Observed);
    let due = s1.scheduled[0].due_at.0;
    // One scan with the invalid policy, one with none at all (deleted, created again by GitOps):
    // nothing is due meanwhile, and ann's clock is kept.
    let s2 = scan_seen(std::slice::from_ref(&bad), &b, &s1.clocks, at("2025-06-01T00:00:00Z"), true);
    assert!(s2.scheduled.is_empty());
    assert_eq!(s2.clocks["u1"].subjects["User:ann@x.com"], s1.clocks["u1"].subjects["User:ann@x.com"]);
    let s3 = scan_seen(&[], &b, &s2.clocks, at("2025-06-01T00:00:01Z"), true);
    assert_eq!(s3.clocks, s2.clocks);
    // The policy back: the same clock, the same end (not restarted from the binding's creation).
    let s4 = scan_seen(std::slice::from_ref(&good), &b, &s3.clocks, at("2025-06-01T00:00:02Z"), true);
    assert_eq!(s4.scheduled[0].due_at.0, due);
    assert_eq!(s4.scheduled[0].started_from, StartEvidence::Observed);
    // A subject removed while there are no terms is dropped all the same.
    let s5 = scan_seen(&[], &empty, &s4.clocks, at("2025-06-01T00:00:03Z"), true);
    assert!(s5.clocks["u1"].subjects.is_empty());
}

#[test]
fn a_subject_exempt_for_a_while_keeps_its_clock() {
    let plain = policy("p", serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "1h"}]}));
    let exempting = policy(
        "p",
        serde_json::json!({"rules": [{"roleBindings": {"namespaces": ["a"]}, "maxAccess": "1h"}],
                            "expiry": {"exempt": ["User:ann@x.com"]}}),
    );
    let b = rb("a", vec![user("ann@x.com")], "2025-06-01T00:00:00Z");
    let s1 = scan_seen(std::slice::from_ref(&plain), &b, &BTreeMap::new(), at("2025-06-01T00:10:00Z"), false);
    let s2 = scan_seen(std::slice::from_ref(&exempting), &b, &s1.clocks, at("2025-06-01T00:20:00Z"), true);
    assert!(s2.scheduled.is_empty());
    assert_eq!(s2.clocks, s1.clocks);
    let s3 = scan_seen(std::slice::from_ref(&plain), &b, &s2.clocks, at("2025-06-01T00:30:00Z"), true);
    assert_eq!(s3.scheduled[0].started_at, s1.scheduled[0].started_at);
}
