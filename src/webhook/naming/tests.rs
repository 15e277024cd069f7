use super::*;

fn spec(email: &str, perms: &[&str]) -> DeprovisionRequestSpec {
    crate::fixtures::request_spec("demo_app", email)
        .app_label("x")
        .permissions(perms.iter().copied())
        .comment("different comments do not matter")
        .build()
}

#[test]
fn fingerprint_ignores_order_and_comments_but_not_what_changes_the_plan() {
    let a = fingerprint(&spec("peter@lumos.com", &["b", "a"]));
    let mut s = spec("peter@lumos.com", &["a", "b", "a"]);
    s.request_comment = None;
    s.permissions[0].label = Some("a label".into());
    assert_eq!(a, fingerprint(&s));
    assert_ne!(a, fingerprint(&spec("peter@lumos.com", &["a"])));
    // A case-sensitive policy would resolve another subject; so would another username.
    assert_ne!(a, fingerprint(&spec("Peter@Lumos.com", &["a", "b"])));
    let mut other_user = spec("peter@lumos.com", &["a", "b"]);
    other_user.custom_fields.insert("username".into(), "someone-else".into());
    assert_ne!(a, fingerprint(&other_user));
    let mut dry = spec("peter@lumos.com", &["a", "b"]);
    dry.dry_run = true;
    assert_ne!(a, fingerprint(&dry));
    assert_eq!(a.len(), 20);
}

#[test]
fn names_are_dns_safe_whatever_the_input() {
    let hostile = spec("'; DROP TABLE--@../../etc", &["\u{0}", "Ünïcode*"]);
    let name = request_name(&fingerprint(&hostile), 12);
    assert!(name.len() <= 63);
    assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    assert_eq!(seq_of(&name), Some(12));
}

#[test]
fn label_values_are_valid() {
    assert_eq!(app_label_value("demo_app"), "demo_app");
    assert!(app_label_value("Demo App!").starts_with("h-"));
    assert!(app_label_value(&"x".repeat(64)).starts_with("h-"));
    assert!(app_label_value("_x").starts_with("h-"));
    assert_eq!(email_hash("Peter@Lumos.com "), email_hash("peter@lumos.com"));
    let l = labels(&spec("a@b.c", &[]), "f");
    assert_eq!(l[LABEL_APP], "demo_app");
    assert_eq!(l[LABEL_TARGET].len(), 16);
}
