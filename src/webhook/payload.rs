//! The Lumos deprovisioning payload: lenient where Lumos is loose (unknown fields, `null`
//! custom fields, only `user`), strict where the operator needs a value (a target email).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::crd::{Application, DeprovisionRequestSpec, Permission, Person, RequestSource};

/// Why a payload cannot become a request. Each message names what was wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    /// The body is not valid JSON of the expected shape.
    #[error("body is not a valid Lumos payload: {0}")]
    Malformed(String),
    /// Neither `target_user.email` nor `user.email` holds an email address.
    #[error("payload has no usable target user email (target_user.email, or user.email when target_user is absent)")]
    NoTargetEmail,
    /// The application names neither app_id nor instance_id.
    #[error("payload has no application.app_id or application.instance_id")]
    NoApplication,
    /// A permission has an empty value.
    #[error("permissions[{0}].value is empty")]
    EmptyPermission(usize),
}

#[derive(Deserialize)]
struct Raw {
    application: Option<RawApplication>,
    #[serde(default)]
    permissions: Option<Vec<RawPermission>>,
    user: Option<RawPerson>,
    target_user: Option<RawPerson>,
    request_comment: Option<String>,
    custom_fields: Option<BTreeMap<String, Value>>,
}

#[derive(Deserialize)]
struct RawApplication {
    app_id: Option<String>,
    instance_id: Option<String>,
    user_friendly_label: Option<String>,
}

#[derive(Deserialize)]
struct RawPermission {
    value: Option<String>,
    label: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
    source: Option<String>,
}

#[derive(Deserialize)]
struct RawPerson {
    email: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl RawPerson {
    fn into_person(self) -> Option<Person> {
        let email = non_empty(self.email).filter(|e| is_plausible_email(e))?;
        Some(Person { email, given_name: non_empty(self.given_name), family_name: non_empty(self.family_name) })
    }
}

/// One `@`, something on each side, no whitespace or control characters.
fn is_plausible_email(e: &str) -> bool {
    let mut parts = e.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && !d.is_empty())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.len() <= 320
}

/// Parses a Lumos webhook body into a request spec.
pub fn parse(body: &[u8], dry_run: bool) -> Result<DeprovisionRequestSpec, PayloadError> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    let app = raw.application.ok_or(PayloadError::NoApplication)?;
    let application = Application {
        app_id: non_empty(app.app_id),
        instance_id: non_empty(app.instance_id),
        user_friendly_label: non_empty(app.user_friendly_label),
    };
    if application.app_id.is_none() && application.instance_id.is_none() {
        return Err(PayloadError::NoApplication);
    }
    let user = raw.user.and_then(RawPerson::into_person);
    let target_user = match raw.target_user {
        Some(t) => t.into_person().ok_or(PayloadError::NoTargetEmail)?,
        None => user.clone().ok_or(PayloadError::NoTargetEmail)?,
    };
    let mut permissions = Vec::new();
    for (i, p) in raw.permissions.unwrap_or_default().into_iter().enumerate() {
        let value = non_empty(p.value).ok_or(PayloadError::EmptyPermission(i))?;
        permissions.push(Permission { value, label: p.label, type_: p.type_, source: p.source });
    }
    let custom_fields = raw
        .custom_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    Ok(DeprovisionRequestSpec {
        application,
        permissions,
        user,
        target_user,
        request_comment: non_empty(raw.request_comment),
        custom_fields,
        source: RequestSource::LumosWebhook,
        dry_run,
        expiry: None,
        hub_source: None,
    })
}

#[cfg(test)]
mod tests;
