//! Names and labels of DeprovisionRequests: derived from hashes, never from raw user text.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::crd::{DeprovisionRequestSpec, RequestSource};

/// Same app, target and permissions (and dry-run flag): the identity used to attach duplicates.
pub const LABEL_FINGERPRINT: &str = "access.deprovisioner.dev/fingerprint";
/// The Lumos app_id (as is when it is a valid label value, else `h-<hash>`).
pub const LABEL_APP: &str = "access.deprovisioner.dev/app";
/// SHA-256 of the lower-cased target email, first 16 hex digits (see [`email_hash`]).
pub const LABEL_TARGET: &str = "access.deprovisioner.dev/target";
/// `lumos-webhook`, `lumos-connector`, `manual` or `expiry`.
pub const LABEL_SOURCE: &str = "access.deprovisioner.dev/source";

/// The first `len` hex digits of the SHA-256 of `bytes`.
pub fn sha_hex(bytes: &[u8], len: usize) -> String {
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
/// comment, the permissions' order or their labels; and the source when it is not the webhook
/// (so the webhook's names stay what they were). 20 hex digits.
pub fn fingerprint(spec: &DeprovisionRequestSpec) -> String {
    let mut perms: Vec<&str> = spec.permissions.iter().map(|p| p.value.as_str()).collect();
    perms.sort_unstable();
    perms.dedup();
    let mut canonical = serde_json::json!({
        "app": spec.application.app_id,
        "instance": spec.application.instance_id,
        "target": spec.target_user,
        "user": spec.user,
        "customFields": spec.custom_fields,
        "permissions": perms,
        "dryRun": spec.dry_run,
    });
    if spec.source != RequestSource::LumosWebhook {
        canonical["source"] = serde_json::json!(source_label(spec.source));
    }
    sha_hex(canonical.to_string().as_bytes(), 20)
}

/// The value of [`LABEL_SOURCE`] for a source.
pub fn source_label(source: RequestSource) -> &'static str {
    match source {
        RequestSource::LumosWebhook => "lumos-webhook",
        RequestSource::LumosConnector => "lumos-connector",
        RequestSource::Manual => "manual",
        RequestSource::Expiry => "expiry",
        RequestSource::Fleet => "fleet",
    }
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
        (LABEL_SOURCE.to_string(), source_label(spec.source).to_string()),
    ]);
    if let Some(app) = &spec.application.app_id {
        l.insert(LABEL_APP.to_string(), app_label_value(app));
    }
    l
}

#[cfg(test)]
mod tests;
