//! The API server's audit events (`audit.k8s.io/v1`), read for who acted when and nothing else:
//! only the fields below are kept; request and response bodies, if an audit policy sends them,
//! are skipped by the parser and never stored.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use crate::connector::model::AccountId;
use crate::plan::subject::Principal;

/// The `user.extra` key naming the credential a request authenticated with (the JTI of a
/// ServiceAccount token, `X509SHA256=…` of a client certificate). It names a credential; it is
/// not one.
pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// The only API version of audit events the API server still writes.
pub const API_VERSION: &str = "audit.k8s.io/v1";

/// One audit event, the fields that say who did what, when.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `Event` when present (items of an `EventList` usually carry no kind).
    #[serde(default)]
    pub kind: Option<String>,
    /// `audit.k8s.io/v1` when present.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The request's unique id (the same for every stage of one request).
    #[serde(default, rename = "auditID")]
    pub audit_id: Option<String>,
    /// `RequestReceived`, `ResponseStarted`, `ResponseComplete` or `Panic`.
    #[serde(default)]
    pub stage: Option<String>,
    /// `get`, `list`, `watch`, `create`, ...
    #[serde(default)]
    pub verb: Option<String>,
    /// Who authenticated.
    #[serde(default)]
    pub user: Option<UserInfo>,
    /// Whom they impersonated, if anyone.
    #[serde(default)]
    pub impersonated_user: Option<UserInfo>,
    /// What was acted on.
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    /// When the request arrived.
    #[serde(default)]
    pub request_received_timestamp: Option<Timestamp>,
    /// When this stage was reached.
    #[serde(default)]
    pub stage_timestamp: Option<Timestamp>,
}

/// An authenticated identity as the audit event names it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct UserInfo {
    /// The user name (`system:serviceaccount:<ns>:<name>` for a ServiceAccount).
    #[serde(default)]
    pub username: Option<String>,
    /// Extra attributes; only [`CREDENTIAL_ID`] is read.
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The object a request was about.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// e.g. `pods`.
    #[serde(default)]
    pub resource: Option<String>,
    /// The namespace, for namespaced objects.
    #[serde(default)]
    pub namespace: Option<String>,
    /// e.g. `log`.
    #[serde(default)]
    pub subresource: Option<String>,
}

/// What was wrong with a body.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BatchError {
    /// Not JSON of any accepted shape.
    #[error("the body is not an audit.k8s.io/v1 Event, EventList or array of Events: {0}")]
    Malformed(String),
    /// Line `n` (from 1) of an NDJSON body.
    #[error("line {line} is not an audit.k8s.io/v1 Event: {reason}")]
    Line { line: usize, reason: String },
    /// A kind other than `Event` / `EventList`.
    #[error("kind {0:?} is not an audit Event or EventList")]
    Kind(String),
    /// An API version other than `audit.k8s.io/v1`.
    #[error("apiVersion {0:?} is not {API_VERSION}")]
    ApiVersion(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    items: Option<Vec<AuditEvent>>,
}

/// The events in a body: an `EventList` (the audit webhook's batches), a single `Event`, a JSON
/// array of Events, or with `ndjson` one Event per line (as `--audit-log-path` files are written
/// and log shippers forward them; blank lines are skipped).
pub fn parse_batch(body: &[u8], ndjson: bool) -> Result<Vec<AuditEvent>, BatchError> {
    if ndjson {
        let mut out = Vec::new();
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: AuditEvent =
                serde_json::from_slice(line).map_err(|e| BatchError::Line { line: i + 1, reason: e.to_string() })?;
            check(&event.kind, &event.api_version, "Event")
                .map_err(|e| BatchError::Line { line: i + 1, reason: e.to_string() })?;
            out.push(event);
        }
        return Ok(out);
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let events: Vec<AuditEvent> =
                serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
            for e in &events {
                check(&e.kind, &e.api_version, "Event")?;
            }
            Ok(events)
        }
        Some(b'{') => {
            let head: Head = serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
            if head.kind.as_deref() == Some("EventList") {
                check(&head.kind, &head.api_version, "EventList")?;
                return Ok(head.items.unwrap_or_default());
            }
            let event: AuditEvent = serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
            check(&event.kind, &event.api_version, "Event")?;
            Ok(vec![event])
        }
        _ => Err(BatchError::Malformed("expected a JSON object or array".into())),
    }
}

fn check(kind: &Option<String>, api_version: &Option<String>, expected: &str) -> Result<(), BatchError> {
    if let Some(k) = kind
        && k != expected
    {
        return Err(BatchError::Kind(k.clone()));
    }
    if let Some(v) = api_version
        && v != API_VERSION
    {
        return Err(BatchError::ApiVersion(v.clone()));
    }
    Ok(())
}

/// One account seen acting.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// Who (a user or a ServiceAccount).
    pub account: AccountId,
    /// When and how.
    pub entry: crate::activity::Entry,
}

impl AuditEvent {
    /// The accounts this event shows acting: the authenticated user (with the credential it
    /// used), and the impersonated user when there is one (a request made as them counts as their
    /// activity; the impersonator is named). Nothing for an event without a user name or time
    /// (a request that failed authentication names no one), nor for groups.
    pub fn sightings(&self) -> Vec<Sighting> {
        let Some(at) = self.stage_timestamp.or(self.request_received_timestamp) else { return Vec::new() };
        let Some(user) = self.user.as_ref().and_then(|u| u.username.as_deref()).filter(|n| !n.is_empty()) else {
            return Vec::new();
        };
        let what = self.what();
        let mut out = vec![Sighting {
            account: AccountId(Principal::user(user)),
            entry: crate::activity::Entry {
                at,
                credential: self
                    .user
                    .as_ref()
                    .and_then(|u| u.extra.get(CREDENTIAL_ID))
                    .and_then(|v| v.first())
                    .cloned(),
                impersonated_by: None,
                what: what.clone(),
            },
        }];
        if let Some(target) =
            self.impersonated_user.as_ref().and_then(|u| u.username.as_deref()).filter(|n| !n.is_empty())
        {
            out.push(Sighting {
                account: AccountId(Principal::user(target)),
                entry: crate::activity::Entry { at, credential: None, impersonated_by: Some(user.to_string()), what },
            });
        }
        out
    }

    /// `verb resource[/subresource] [in namespace]`, e.g. `list pods in default`.
    fn what(&self) -> Option<String> {
        let verb = self.verb.as_deref()?;
        let mut s = verb.to_string();
        if let Some(o) = &self.object_ref {
            if let Some(r) = &o.resource {
                s.push(' ');
                s.push_str(r);
                if let Some(sub) = &o.subresource {
                    s.push('/');
                    s.push_str(sub);
                }
            }
            if let Some(ns) = &o.namespace {
                s.push_str(" in ");
                s.push_str(ns);
            }
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests;
