use super::*;

const LIMITS: Limits = Limits { timeout_seconds: 5, max_attempts: 1, allow_link_local: false, idempotent: true };

/// An environment whose API server is never called (no Secret is read in these tests).
fn env() -> Env {
    type Pair = tower_test::mock::Handle<::http::Request<kube::client::Body>, ::http::Response<kube::client::Body>>;
    let (svc, _handle): (_, Pair) = tower_test::mock::pair();
    Env { client: kube::Client::new(svc, "default"), namespace: "ns".into(), view: None }
}

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
    let env = env();
    let mut s = Session::new(&env, "crm", "https://crm.example/x", LIMITS, "uid-0").unwrap();
    s.secrets = vec!["tok-123456".into(), "abc".into()];
    let err = s.fail("bad tok-123456 and abc");
    assert_eq!(err.to_string(), "crm: bad [redacted] and abc", "values under 4 characters are left alone");
    assert_eq!(err.external_details().map(|d| d.system.as_str()), Some("crm"));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn secrets_are_redacted_in_their_escaped_and_encoded_forms_before_clipping() {
    let env = env();
    let mut s = Session::new(&env, "crm", "https://crm.example/x", LIMITS, "uid-0").unwrap();
    let secret = r#"pa"ss/w0rd+&x"#;
    s.secrets = vec![secret.into()];
    use base64::Engine as _;
    let forms = [
        secret.to_string(),
        crate::plan::template::json_escape(secret),
        crate::plan::template::url_escape(secret),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ];
    for form in &forms {
        let msg = s.fail(format_args!("the service echoed {form}")).to_string();
        assert!(msg.ends_with("echoed [redacted]"), "{form}: {msg}");
    }
    // A secret straddling the clipping point is redacted, not cut into a visible prefix.
    let long = format!("{}{secret}", "x".repeat(crate::text::MAX_MESSAGE - 8));
    let msg = s.fail(long).to_string();
    assert!(!msg.contains("pa\"ss") && !msg.contains(r#"pa"s"#), "{msg}");
}

#[tokio::test]
async fn a_rendered_url_is_checked_again_when_called() {
    let env = env();
    let err = Session::new(&env, "crm", "http://localhost:80@169.254.169.254/latest/meta-data/", LIMITS, "uid-0")
        .err()
        .unwrap();
    assert!(!err.is_transient());
    assert!(err.to_string().starts_with("crm: ") && err.to_string().contains("userinfo"), "{err}");
}
