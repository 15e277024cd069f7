//! SCIM 2.0 (RFC 7644): find the one account the filter matches, remove it from the named
//! groups, then deactivate or delete it. Each step is a method of [`Scim`].

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};

use super::{KeySource, Limits, Reply, Session};
use crate::crd::{ScimDeprovision, ScimMatchAttribute, ScimMode};
use crate::exec::{Done, Effect, Env, ExecError};
use crate::plan::template::{scim_filter, url_escape};

/// Deactivates or deletes the one account the filter matches (after removing it from groups).
pub async fn deprovision(env: &Env, call: &ScimDeprovision, key: &str) -> Result<Done, ExecError> {
    let mut scim = Scim::connect(env, call, key).await?;
    let Some(user) = scim.find_account().await? else {
        return scim.session.done(Effect::AlreadyAbsent, format!("no account matches {}", call.filter()));
    };
    let id = user.get("id").and_then(Value::as_str).map(str::to_string);
    let Some(id) = id else {
        return Err(scim.session.fail("the matching account has no id"));
    };
    scim.session.details.account_id = Some(id.clone());
    let mut notes = Vec::new();
    for group in &call.remove_from_groups {
        notes.push(scim.leave_group(group, &id).await?);
    }
    let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
    scim.change_account(&user, &id, &notes).await
}

/// One SCIM deprovisioning: the session (client, credentials, attempts) and the call.
struct Scim<'a> {
    session: Session<'a>,
    call: &'a ScimDeprovision,
}

impl<'a> Scim<'a> {
    /// Reads the credentials and the CA bundle, and prepares the headers.
    async fn connect(env: &'a Env, call: &'a ScimDeprovision, key: &str) -> Result<Scim<'a>, ExecError> {
        let limits = Limits {
            timeout_seconds: call.timeout_seconds,
            max_attempts: call.max_attempts,
            allow_link_local: call.allow_link_local_addresses,
            // Every step searches before it changes anything, so a repeat finds the change done.
            idempotent: true,
        };
        let mut session = Session::new(env, &call.system, &call.base_url, limits, key)?;
        session.headers.insert(ACCEPT, HeaderValue::from_static("application/scim+json, application/json"));
        let c = &call.credentials;
        let auth = match (&c.bearer_token, &c.username, &c.password) {
            (Some(t), _, _) => format!("Bearer {}", session.read_key(t, KeySource::Secret).await?),
            (None, Some(u), Some(p)) => {
                use base64::Engine as _;
                let user = session.read_key(u, KeySource::Secret).await?;
                let password = session.read_key(p, KeySource::Secret).await?;
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                session.secrets.push(basic.clone());
                format!("Basic {basic}")
            }
            _ => return Err(session.fail("credentials need bearerToken, or username and password")),
        };
        let Ok(mut value) = HeaderValue::from_str(&auth) else {
            return Err(session.fail("the credential is not a valid header value"));
        };
        value.set_sensitive(true);
        session.headers.insert(AUTHORIZATION, value);
        session.trust(call.ca_bundle.as_ref()).await?;
        Ok(Scim { session, call })
    }

    /// The one account the filter matches, `None` when there is none. Never trusts the server's
    /// filtering alone: a server that ignores filters would otherwise have us deactivate whoever
    /// it lists first.
    async fn find_account(&mut self) -> Result<Option<Value>, ExecError> {
        let (base, filter) = (&self.call.base_url, self.call.filter());
        let url = format!("{base}/Users?filter={}", url_escape(&filter));
        let found = self.session.send(Method::GET, &url, None).await?;
        if !found.ok() {
            return Err(self
                .session
                .fail(format_args!("searching {filter}: the service replied {}", scim_detail(&found))));
        }
        let list: Value =
            serde_json::from_str(&found.body).map_err(|e| self.session.fail_with("search reply is not JSON", e))?;
        let resources = list.get("Resources").and_then(Value::as_array).cloned().unwrap_or_default();
        // A paging server may return fewer resources than match: totalResults is the authority.
        let total = list.get("totalResults").and_then(Value::as_u64).unwrap_or(0) as usize;
        if total > 1 && resources.len() <= 1 {
            return Err(self.session.fail(format_args!("{total} accounts match {filter}; nothing was changed")));
        }
        if let Some(stray) = resources.iter().find(|r| !matches_account(r, self.call)) {
            let id = stray.get("id").and_then(Value::as_str).unwrap_or("?");
            return Err(self.session.fail(format_args!(
                "the service replied to {filter} with account {id}, which does not match; nothing was changed"
            )));
        }
        match resources.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            many => Err(self.session.fail(format_args!("{} accounts match {filter}; nothing was changed", many.len()))),
        }
    }

    /// Removes account `id` from the group named `group`; returns a note for the message.
    async fn leave_group(&mut self, group: &str, id: &str) -> Result<String, ExecError> {
        let base = &self.call.base_url;
        let filter = scim_filter("displayName", group);
        let url = format!("{base}/Groups?filter={}", url_escape(&filter));
        let reply = self.session.send(Method::GET, &url, None).await?;
        if !reply.ok() {
            return Err(self.session.fail(format_args!("searching group {group:?} replied {}", scim_detail(&reply))));
        }
        let groups = serde_json::from_str::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("Resources").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        let [g] = groups.as_slice() else {
            let why = if groups.is_empty() { "not found" } else { "is ambiguous; not touched" };
            return Ok(format!("group {group:?} {why}"));
        };
        let gid = g.get("id").and_then(Value::as_str).unwrap_or_default();
        let member = g
            .get("members")
            .and_then(Value::as_array)
            .map(|m| m.iter().any(|m| m.get("value").and_then(Value::as_str) == Some(id)));
        if member == Some(false) {
            return Ok(format!("not in group {group:?}"));
        }
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": format!("members[value eq {}]", Value::String(id.to_string()))}]
        });
        let url = format!("{base}/Groups/{}", url_escape(gid));
        let reply = self.session.send(Method::PATCH, &url, Some(&body)).await?;
        if !reply.ok() {
            let detail = scim_detail(&reply);
            return Err(self.session.fail(format_args!("removing from group {group:?} replied {detail}")));
        }
        Ok(format!("removed from group {group:?}"))
    }

    /// Deactivates or deletes the account, as the policy says.
    async fn change_account(&mut self, user: &Value, id: &str, notes: &str) -> Result<Done, ExecError> {
        let url = format!("{}/Users/{}", self.call.base_url, url_escape(id));
        let (outcome, done, reply) = match self.call.action {
            ScimMode::Deactivate => {
                if user.get("active") == Some(&Value::Bool(false)) {
                    let msg = format!("account {id} was already deactivated{notes}");
                    return self.session.done(Effect::AlreadyAbsent, msg);
                }
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": false}]
                });
                let reply = self.session.send(Method::PATCH, &url, Some(&body)).await?;
                (Effect::Deactivated, format!("deactivated account {id}{notes}"), reply)
            }
            ScimMode::Delete => {
                let reply = self.session.send(Method::DELETE, &url, None).await?;
                (Effect::Deleted, format!("deleted account {id}{notes}"), reply)
            }
        };
        match reply.status {
            _ if reply.ok() => self.session.done(outcome, done),
            404 => {
                let msg = format!("account {id} disappeared before it could be changed{notes}");
                self.session.done(Effect::AlreadyAbsent, msg)
            }
            _ => Err(self.session.fail(format_args!("changing account {id} replied {}", scim_detail(&reply)))),
        }
    }
}

/// A short description of a SCIM error reply (`detail`), or the status alone.
fn scim_detail(r: &Reply) -> String {
    let detail = serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(|d| crate::text::clip_to(d, 200)));
    match (r.status, detail) {
        (401, _) => "401 Unauthorized: the SCIM service rejected the credentials".to_string(),
        (403, _) => "403 Forbidden: the credentials may not do this".to_string(),
        (s, Some(d)) => format!("{s}: {d}"),
        (s, None) => format!("HTTP {s}"),
    }
}

/// Whether a SCIM resource really has the attribute value the call looks for (compared ignoring
/// case, as RFC 7643 defines `userName` and `emails.value`).
fn matches_account(r: &Value, call: &ScimDeprovision) -> bool {
    let want = call.match_value.as_str();
    match call.match_attribute {
        ScimMatchAttribute::UserName => {
            r.get("userName").and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(want))
        }
        ScimMatchAttribute::Email => r.get("emails").and_then(Value::as_array).is_some_and(|e| {
            e.iter().any(|m| m.get("value").and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(want)))
        }),
    }
}
