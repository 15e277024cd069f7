use super::*;

const CERT_USER: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1",
 "stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list",
 "user":{"username":"alice","groups":["dev","system:authenticated"],
   "extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=ab12"]}},
 "sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.37.2",
 "objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},
 "responseStatus":{"metadata":{},"code":200},
 "requestObject":{"kind":"Secret","data":{"password":"c2VjcmV0"}},
 "requestReceivedTimestamp":"2026-12-07T08:00:00.100000Z","stageTimestamp":"2026-12-07T08:00:00.123456Z"}"#;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_single_event_gives_its_user_credential_time_and_what() {
    let events = parse_batch(CERT_USER.as_bytes(), false).unwrap();
    let s = events[0].sightings();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].account.to_string(), "User:alice");
    assert_eq!(s[0].entry.at, ts("2026-12-07T08:00:00.123456Z"));
    assert_eq!(s[0].entry.credential.as_deref(), Some("X509SHA256=ab12"));
    assert_eq!(s[0].entry.impersonated_by, None);
    assert_eq!(s[0].entry.what.as_deref(), Some("list pods in default"));
}

#[test]
fn bodies_are_never_kept() {
    let events = parse_batch(CERT_USER.as_bytes(), false).unwrap();
    let kept = format!("{:?}", events[0]);
    assert!(!kept.contains("c2VjcmV0") && !kept.contains("password"), "{kept}");
}

#[test]
fn an_event_list_an_array_and_ndjson_give_the_same_events() {
    let list = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{CERT_USER},{CERT_USER}]}}"#
    );
    let array = format!("[{CERT_USER},{CERT_USER}]");
    let one_line = CERT_USER.replace('\n', "");
    let ndjson = format!("{one_line}\n\n{one_line}\n");
    let a = parse_batch(list.as_bytes(), false).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(parse_batch(array.as_bytes(), false).unwrap(), a);
    assert_eq!(parse_batch(ndjson.as_bytes(), true).unwrap(), a);
}

#[test]
fn a_service_account_token_is_its_service_account() {
    let e = r#"{"verb":"get","user":{"username":"system:serviceaccount:team-a:builder",
      "extra":{"authentication.kubernetes.io/credential-id":["JTI=7f3c"]}},
      "objectRef":{"resource":"configmaps","namespace":"team-a"},"stageTimestamp":"2026-12-07T08:00:01Z"}"#;
    let s = parse_batch(e.as_bytes(), false).unwrap()[0].sightings();
    assert_eq!(s[0].account.to_string(), "ServiceAccount:team-a/builder");
    assert_eq!(s[0].entry.credential.as_deref(), Some("JTI=7f3c"));
}

#[test]
fn an_impersonated_request_counts_for_both_and_names_the_impersonator() {
    let e = r#"{"verb":"delete","user":{"username":"admin"},"impersonatedUser":{"username":"bob","groups":["x"]},
      "objectRef":{"resource":"pods","subresource":"exec","namespace":"ns"},"stageTimestamp":"2026-12-07T08:00:02Z"}"#;
    let s = parse_batch(e.as_bytes(), false).unwrap()[0].sightings();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].account.to_string(), "User:admin");
    assert_eq!(s[1].account.to_string(), "User:bob");
    assert_eq!(s[1].entry.impersonated_by.as_deref(), Some("admin"));
    assert_eq!(s[1].entry.credential, None, "the credential was the impersonator's");
    assert_eq!(s[1].entry.what.as_deref(), Some("delete pods/exec in ns"));
}

#[test]
fn events_naming_no_one_or_no_time_give_nothing() {
    for e in [
        r#"{"verb":"get","user":{},"stageTimestamp":"2026-12-07T08:00:02Z"}"#,
        r#"{"verb":"get","user":{"username":""},"stageTimestamp":"2026-12-07T08:00:02Z"}"#,
        r#"{"verb":"get","user":{"username":"alice"}}"#,
    ] {
        assert!(parse_batch(e.as_bytes(), false).unwrap()[0].sightings().is_empty(), "{e}");
    }
    // The request's arrival time stands in for a missing stage time.
    let e = r#"{"user":{"username":"alice"},"requestReceivedTimestamp":"2026-12-07T08:00:03Z"}"#;
    let s = parse_batch(e.as_bytes(), false).unwrap()[0].sightings();
    assert_eq!(s[0].entry.at, ts("2026-12-07T08:00:03Z"));
    assert_eq!(s[0].entry.what, None);
}

#[test]
fn wrong_shapes_are_refused_saying_what_was_wrong() {
    let cases: [(&str, bool, &str); 6] = [
        ("", false, "expected a JSON object or array"),
        ("{\"kind\":\"Pod\",\"apiVersion\":\"v1\"}", false, "kind \"Pod\" is not an audit Event or EventList"),
        (
            "{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1beta1\",\"items\":[]}",
            false,
            "apiVersion \"audit.k8s.io/v1beta1\"",
        ),
        ("{\"user\": 3}", false, "not an audit.k8s.io/v1 Event"),
        ("[{\"kind\":\"Pod\"}]", false, "kind \"Pod\""),
        ("{\"verb\":\"get\"}\nnot json\n", true, "line 2 is not an audit.k8s.io/v1 Event"),
    ];
    for (body, ndjson, says) in cases {
        let e = parse_batch(body.as_bytes(), ndjson).unwrap_err().to_string();
        assert!(e.contains(says), "{body:?}: {e}");
    }
}
