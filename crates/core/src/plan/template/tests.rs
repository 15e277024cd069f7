use super::*;

fn spec() -> DeprovisionRequestSpec {
    crate::fixtures::request_spec("demo_app", "Peter.Parker@lumos.com")
        .given_name("Peter")
        .custom_field("username", "pparker")
        .build()
}

#[test]
fn renders_known_fields() {
    let s = spec();
    assert_eq!(render("{{target_user.email}}", &s).unwrap(), "Peter.Parker@lumos.com");
    assert_eq!(render("{{ target_user.email_local }}", &s).unwrap(), "Peter.Parker");
    assert_eq!(render("u-{{custom_fields.username}}-x", &s).unwrap(), "u-pparker-x");
    assert_eq!(render("plain", &s).unwrap(), "plain");
    assert_eq!(render("{{application.app_id}}", &s).unwrap(), "demo_app");
}

#[test]
fn escaping_keeps_hostile_values_inside_their_slot() {
    let mut s = spec();
    s.target_user.email = r#"a"b\c@x.io"#.into();
    assert_eq!(scim_filter("emails.value", &s.target_user.email), r#"emails.value eq "a\"b\\c@x.io""#);
    let body = render_escaped(r#"{"email": "{{target_user.email}}"}"#, &s, json_escape).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["email"], s.target_user.email.as_str());
    let url = render_escaped("https://h/u/{{target_user.email}}?x=1", &s, url_escape).unwrap();
    assert_eq!(url, "https://h/u/a%22b%5Cc%40x%2Eio?x=1");
}

#[test]
fn missing_unknown_and_malformed_are_errors() {
    let s = spec();
    assert!(matches!(render("{{target_user.family_name}}", &s), Err(TemplateError::Missing { .. })));
    assert!(matches!(render("{{user.email}}", &s), Err(TemplateError::Missing { .. })));
    assert!(matches!(render("{{custom_fields.nope}}", &s), Err(TemplateError::Missing { .. })));
    assert!(matches!(validate("{{target_user.password}}"), Err(TemplateError::UnknownField { .. })));
    assert!(matches!(validate("{{secret}}"), Err(TemplateError::UnknownField { .. })));
    assert!(matches!(validate("{{target_user.email"), Err(TemplateError::Malformed(_))));
    assert!(matches!(validate("{{}}"), Err(TemplateError::Malformed(_))));
    assert!(matches!(validate("a}}"), Err(TemplateError::Malformed(_))));
}
