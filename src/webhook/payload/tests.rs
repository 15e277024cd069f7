use super::*;

use crate::fixtures::SEED_PAYLOAD as SEED;

#[test]
fn seed_payload_parses_fully() {
    let spec = parse(SEED.as_bytes(), false).unwrap();
    assert_eq!(spec.application.app_id.as_deref(), Some("demo_app"));
    assert_eq!(spec.application.instance_id.as_deref(), Some("0ob3ggjlhx892dc4abcde"));
    assert_eq!(spec.permissions.len(), 2);
    assert_eq!(spec.permissions[1].value, "Permission Two");
    assert_eq!(spec.permissions[0].type_.as_deref(), Some("PERMISSION"));
    assert_eq!(spec.target_user.email, "peterparker@lumos.com");
    assert_eq!(spec.target_user.given_name.as_deref(), Some("Peter"));
    assert_eq!(spec.custom_fields.get("username").map(String::as_str), Some("pparker"));
    assert_eq!(spec.request_comment.as_deref(), Some("Give me access!"));
    assert_eq!(spec.source, RequestSource::LumosWebhook);
    assert!(!spec.dry_run);
}

#[test]
fn custom_fields_null_is_fine() {
    let body = SEED.replace(
        r#"{
"username": "pparker"
}"#,
        "null",
    );
    let spec = parse(body.as_bytes(), false).unwrap();
    assert!(spec.custom_fields.is_empty());
}

#[test]
fn only_user_falls_back() {
    let body = r#"{"application":{"app_id":"a"},"user":{"email":"u@x.io"}}"#;
    let spec = parse(body.as_bytes(), false).unwrap();
    assert_eq!(spec.target_user.email, "u@x.io");
    assert!(spec.permissions.is_empty());
}

#[test]
fn unknown_fields_and_odd_custom_values_are_kept_or_ignored() {
    let body = r#"{"application":{"app_id":"a","extra":1},"target_user":{"email":"t@x.io","x":true},
        "access_length":3600,"request_task_url":"https://lumos/x",
        "custom_fields":{"n":5,"b":true,"z":null,"s":"v"}}"#;
    let spec = parse(body.as_bytes(), false).unwrap();
    assert_eq!(spec.custom_fields.get("n").map(String::as_str), Some("5"));
    assert_eq!(spec.custom_fields.get("b").map(String::as_str), Some("true"));
    assert_eq!(spec.custom_fields.get("s").map(String::as_str), Some("v"));
    assert!(!spec.custom_fields.contains_key("z"));
}

#[test]
fn bad_inputs_say_what_is_wrong() {
    let cases: &[(&str, PayloadError)] = &[
        ("not json", PayloadError::Malformed(String::new())),
        ("[1,2]", PayloadError::Malformed(String::new())),
        (r#"{"target_user":{"email":"t@x.io"}}"#, PayloadError::NoApplication),
        (r#"{"application":{"app_id":" "},"target_user":{"email":"t@x.io"}}"#, PayloadError::NoApplication),
        (r#"{"application":{"app_id":"a"}}"#, PayloadError::NoTargetEmail),
        (r#"{"application":{"app_id":"a"},"target_user":{"email":""}}"#, PayloadError::NoTargetEmail),
        (r#"{"application":{"app_id":"a"},"target_user":{"email":"no-at-sign"}}"#, PayloadError::NoTargetEmail),
        (
            r#"{"application":{"app_id":"a"},"target_user":{"given_name":"x"},"user":{"email":"u@x.io"}}"#,
            PayloadError::NoTargetEmail,
        ),
        (r#"{"application":{"app_id":"a"},"target_user":{"email":"a b@x.io"}}"#, PayloadError::NoTargetEmail),
        (
            r#"{"application":{"app_id":"a"},"target_user":{"email":"t@x.io"},"permissions":[{"label":"x"}]}"#,
            PayloadError::EmptyPermission(0),
        ),
        (
            r#"{"application":{"app_id":"a"},"target_user":{"email":"t@x.io"},"permissions":"all"}"#,
            PayloadError::Malformed(String::new()),
        ),
    ];
    for (body, want) in cases {
        let got = parse(body.as_bytes(), false).unwrap_err();
        match (want, &got) {
            (PayloadError::Malformed(_), PayloadError::Malformed(m)) => assert!(!m.is_empty()),
            _ => assert_eq!(&got, want, "body: {body}"),
        }
    }
}

#[test]
fn dry_run_flag_is_carried() {
    assert!(parse(SEED.as_bytes(), true).unwrap().dry_run);
}

#[test]
fn seed_payload_is_the_file_and_parses_as_the_webhook_parses_it() {
    let spec = parse(crate::fixtures::SEED_PAYLOAD.as_bytes(), false).unwrap();
    assert_eq!(spec.target_user.email, "peterparker@lumos.com");
    assert_eq!(crate::fixtures::seed_payload()["application"]["app_id"], "demo_app");
}
