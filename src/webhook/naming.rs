//! Names and labels of DeprovisionRequests: derived from hashes, never from raw user text.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::crd::DeprovisionRequestSpec;

/// Same app, target and permissions (and dry-run flag): the identity used to attach duplicates.
pub const LABEL_FINGERPRINT: &str = "access.deprovisioner.dev/fingerprint";
/// The Lumos app_id (as is when it is a valid label value, else `h-<hash>`).
pub const LABEL_APP: &str = "access.deprovisioner.dev/app";
/// SHA-256 of the lower-cased target email, first 16 hex digits (see [`email_hash`]).
pub const LABEL_TARGET: &str = "access.deprovisioner.dev/target";
/// `lumos-webhook` or `manual`.
pub const LABEL_SOURCE: &str = "access.deprovisioner.dev/source";

fn sha_hex(bytes: &[u8], len: usize) -> String {
    let mut s = hex::encode(Sha256::digest(bytes));
    s.truncate(len);
    s
}

/// Label value for a target email: `sha256(lowercase(email))[..16]`.
/// Find someone's requests with `-l access.deprovisioner.dev/target=$(printf %s EMAIL | tr A-Z a-z | sha256sum | cut -c1-16)`.
pub fn email_hash(email: &str) -> String {
    sha_hex(email.trim().to_lowercase().as_bytes(), 16)
}

/// A label value for the app id: itself when valid, otherwise a hash.
pub fn app_label_value(app_id: &str) -> String {
    let valid = !app_id.is_empty()
        && app_id.len() <= 63
        && app_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && app_id.as_bytes()[0].is_ascii_alphanumeric()
        && app_id.as_bytes()[app_id.len() - 1].is_ascii_alphanumeric();
    if valid { app_id.to_string() } else { format!("h-{}", sha_hex(app_id.as_bytes(), 16)) }
}

/// Identity of a request for de-duplication: everything that can change what is removed (app,
/// instance, both people, custom fields, sorted permission values, dry-run flag), but not the
/// comment, the permissions' order or their labels. 20 hex digits.
pub fn fingerprint(spec: &DeprovisionRequestSpec) -> String {
    let mut perms: Vec<&str> = spec.permissions.iter().map(|p| p.value.as_str()).collect();
    perms.sort_unstable();
    perms.dedup();
    let canonical = serde_json::json!({
        "app": spec.application.app_id,
        "instance": spec.application.instance_id,
        "target": spec.target_user,
        "user": spec.user,
        "customFields": spec.custom_fields,
        "permissions": perms,
        "dryRun": spec.dry_run,
    });
    sha_hex(canonical.to_string().as_bytes(), 20)
}

/// The name of the `seq`-th request with this fingerprint: `lumos-<fingerprint>-<seq>`.
pub fn request_name(fingerprint: &str, seq: u32) -> String {
    format!("lumos-{fingerprint}-{seq}")
}

/// The sequence number of a name made by [`request_name`].
pub fn seq_of(name: &str) -> Option<u32> {
    name.rsplit_once('-')?.1.parse().ok()
}

/// Labels for a new request.
pub fn labels(spec: &DeprovisionRequestSpec, fingerprint: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_FINGERPRINT.to_string(), fingerprint.to_string()),
        (LABEL_TARGET.to_string(), email_hash(&spec.target_user.email)),
        (LABEL_SOURCE.to_string(), "lumos-webhook".to_string()),
    ]);
    if let Some(app) = &spec.application.app_id {
        l.insert(LABEL_APP.to_string(), app_label_value(app));
    }
    l
}

#[cfg(test)]
mod tests {
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
}
