use super::*;

#[test]
fn retry_after_takes_seconds_or_a_date() {
    assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
    let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(5));
    let d = retry_after(&soon).unwrap();
    assert!(d > Duration::from_secs(3) && d <= Duration::from_secs(5), "{d:?}");
    assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a past date means now");
    assert_eq!(retry_after("soon"), None);
}

#[tokio::test]
async fn failures_redact_every_secret_read() {
    let (svc, _handle) =
        tower_test::mock::pair::<::http::Request<kube::client::Body>, ::http::Response<kube::client::Body>>();
    let env = Env { client: kube::Client::new(svc, "default"), namespace: "ns".into() };
    let mut s = Session::new(&env, "crm", 5, 1).unwrap();
    s.secrets = vec!["tok-123456".into(), "abc".into()];
    let err = s.fail("bad tok-123456 and abc");
    assert_eq!(err.to_string(), "crm: bad [redacted] and abc", "values under 4 characters are left alone");
    assert_eq!(err.external_details().map(|d| d.system.as_str()), Some("crm"));
    assert!(!err.is_transient());
}
