//! External accounts: deactivate or delete a user through SCIM 2.0 (RFC 7644), or call a
//! configured HTTP endpoint. Credentials are read from Secrets in the operator's namespace at
//! action time (so rotation needs no restart) and never appear in results, events or logs.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::crd::{
    CaBundleRef, ExternalDetails, HttpTarget, Outcome, ScimMatchAttribute, ScimMode, ScimTarget, SecretKeyRef,
};
use crate::rbac::Transient;

/// Where external actions find their Secrets.
#[derive(Clone)]
pub struct Env {
    /// Kubernetes client.
    pub client: Client,
    /// The operator's own namespace: the only one Secrets are read from.
    pub namespace: String,
}

/// The result of an external action.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtDone {
    /// What happened.
    pub outcome: Outcome,
    /// Details fit to show a person (credentials redacted).
    pub message: String,
    /// System, account id, HTTP status, attempts.
    pub details: ExternalDetails,
}

const MAX_BODY: usize = 64 * 1024;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Credentials read for one action, kept only to redact them from messages.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn redact(&self, msg: impl Into<String>) -> String {
        let mut m: String = msg.into();
        for s in self.0.iter().filter(|s| s.len() >= 4) {
            m = m.replace(s.as_str(), "[redacted]");
        }
        crate::report::clip(m)
    }
}

async fn read_key(env: &Env, r: &SecretKeyRef, config_map: bool) -> Result<Result<String, String>, Transient> {
    let ns = &env.namespace;
    let (kind, found) = if config_map {
        let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
        let cm = match api.get_opt(&r.name).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.is_forbidden() => {
                return Ok(Err(format!("the operator may not read ConfigMap {ns}/{}: {}", r.name, s.message)));
            }
            Err(e) => return Err(Transient(format!("reading ConfigMap {ns}/{}: {e}", r.name))),
        };
        ("ConfigMap", cm.map(|c| c.data.unwrap_or_default().get(&r.key).cloned()))
    } else {
        let api: Api<Secret> = Api::namespaced(env.client.clone(), ns);
        let secret = match api.get_opt(&r.name).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.is_forbidden() => {
                return Ok(Err(format!("the operator may not read Secret {ns}/{}: {}", r.name, s.message)));
            }
            Err(e) => return Err(Transient(format!("reading Secret {ns}/{}: {e}", r.name))),
        };
        let value = secret
            .map(|s| s.data.unwrap_or_default().get(&r.key).map(|b| String::from_utf8_lossy(&b.0).trim().to_string()));
        ("Secret", value)
    };
    Ok(match found {
        None => Err(format!(
            "{kind} {ns}/{} not found (external credentials are read from the operator's namespace)",
            r.name
        )),
        Some(None) => Err(format!("{kind} {ns}/{} has no key {:?}", r.name, r.key)),
        Some(Some(v)) if v.is_empty() => Err(format!("{kind} {ns}/{} key {:?} is empty", r.name, r.key)),
        Some(Some(v)) => Ok(v),
    })
}

async fn http_client(
    env: &Env,
    ca: Option<&CaBundleRef>,
    timeout: i32,
) -> Result<Result<reqwest::Client, String>, Transient> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout.max(1) as u64))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("deprovisioner/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca {
        let (r, cm) = match (&ca.secret, &ca.config_map) {
            (Some(r), _) => (r, false),
            (None, Some(r)) => (r, true),
            (None, None) => {
                return Ok(Err("caBundle names neither a secret nor a configMap".into()));
            }
        };
        let pem = match read_key(env, r, cm).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let certs = match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
            Ok(c) if !c.is_empty() => c,
            _ => {
                return Ok(Err(format!("caBundle {}/{} holds no PEM certificate", r.name, r.key)));
            }
        };
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b.build().map_err(|e| format!("building the HTTP client: {e}")))
}

/// One HTTP exchange's outcome after retries.
struct Answer {
    status: u16,
    body: String,
}

/// Sends with bounded retries on 429, 5xx and connection errors, honouring `Retry-After`.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
    max_attempts: i32,
    attempts: &mut i32,
) -> Result<Answer, String> {
    let max = max_attempts.max(1);
    loop {
        *attempts += 1;
        let mut req = client.request(method.clone(), url).headers(headers.clone());
        if let Some(b) = body {
            req = req.json(b);
        }
        let backoff = Duration::from_millis(250u64 << (*attempts - 1).min(5) as u32);
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retryable = status == 429 || status >= 500;
                if retryable && *attempts < max {
                    let wait = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(retry_after)
                        .unwrap_or(backoff)
                        .min(MAX_RETRY_AFTER);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                // Read at most MAX_BODY bytes, however much the server sends.
                let mut resp = resp;
                let mut bytes = Vec::new();
                while bytes.len() < MAX_BODY {
                    match resp.chunk().await {
                        Ok(Some(c)) => bytes.extend_from_slice(&c[..c.len().min(MAX_BODY - bytes.len())]),
                        _ => break,
                    }
                }
                let body = String::from_utf8_lossy(&bytes).to_string();
                return Ok(Answer { status, body });
            }
            Err(e) if *attempts < max && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                tokio::time::sleep(backoff).await;
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                return Err(format!("{method} {url} {what}: {}", error_chain(&e)));
            }
        }
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A short description of a SCIM error body (`detail`), or the status alone.
fn scim_detail(a: &Answer) -> String {
    let detail = serde_json::from_str::<Value>(&a.body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string));
    match (a.status, detail) {
        (401, _) => "401 Unauthorized: the SCIM service rejected the credentials".to_string(),
        (403, _) => "403 Forbidden: the credentials may not do this".to_string(),
        (s, Some(d)) => format!("{s}: {}", d.chars().take(200).collect::<String>()),
        (s, None) => format!("HTTP {s}"),
    }
}

fn ok(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Whether a SCIM resource really has the attribute value the call looks for (compared ignoring
/// case, as RFC 7643 defines `userName` and `emails.value`).
fn matches_account(r: &Value, call: &ScimTarget) -> bool {
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

/// Deactivates or deletes the one account the filter matches (after removing it from groups).
pub async fn scim(env: &Env, call: &ScimTarget) -> Result<ExtDone, Transient> {
    let mut details = ExternalDetails { system: call.system.clone(), ..Default::default() };
    let mut secrets = Secrets::default();
    let fail = |details: ExternalDetails, secrets: &Secrets, msg: String| {
        Ok(ExtDone { outcome: Outcome::Failed, message: secrets.redact(format!("{}: {msg}", call.system)), details })
    };
    let mut headers = HeaderMap::new();
    headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("application/scim+json, application/json"));
    let c = &call.credentials;
    let auth = match (&c.bearer_token, &c.username, &c.password) {
        (Some(t), _, _) => read_key(env, t, false).await?.map(|t| {
            secrets.0.push(t.clone());
            format!("Bearer {t}")
        }),
        (None, Some(u), Some(p)) => match (read_key(env, u, false).await?, read_key(env, p, false).await?) {
            (Ok(u), Ok(p)) => {
                use base64::Engine as _;
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                secrets.0.extend([p, basic.clone()]);
                Ok(format!("Basic {basic}"))
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        _ => Err("credentials need bearerToken, or username and password".into()),
    };
    let auth = match auth {
        Ok(a) => a,
        Err(e) => return fail(details, &secrets, e),
    };
    let Ok(mut value) = HeaderValue::from_str(&auth) else {
        return fail(details, &secrets, "the credential is not a valid header value".into());
    };
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    let client = match http_client(env, call.ca_bundle.as_ref(), call.timeout_seconds).await? {
        Ok(c) => c,
        Err(e) => return fail(details, &secrets, e),
    };
    let base = &call.base_url;
    let filter = call.filter();
    let mut attempts = 0;
    let get = reqwest::Method::GET;

    // 1. Find the account.
    let search = format!("{base}/Users?filter={}", crate::template::url_escape(&filter));
    let found = send(&client, get.clone(), &search, &headers, None, call.max_attempts, &mut attempts).await;
    details.attempts = attempts;
    let found = match found {
        Ok(a) => a,
        Err(e) => return fail(details, &secrets, e),
    };
    details.http_status = Some(found.status as i32);
    if !ok(found.status) {
        return fail(details, &secrets, format!("searching {} answered {}", filter, scim_detail(&found)));
    }
    let list: Value = match serde_json::from_str(&found.body) {
        Ok(v) => v,
        Err(e) => return fail(details, &secrets, format!("search answer is not JSON: {e}")),
    };
    let resources = list.get("Resources").and_then(Value::as_array).cloned().unwrap_or_default();
    // A paging server may return fewer resources than match: totalResults is the authority.
    let total = list.get("totalResults").and_then(Value::as_u64).unwrap_or(0) as usize;
    if total > 1 && resources.len() <= 1 {
        let msg = format!("{total} accounts match {}; nothing was changed", filter);
        return fail(details, &secrets, msg);
    }
    // Never trust the server's filtering alone: a server that ignores filters would otherwise
    // have us deactivate whoever it lists first.
    if let Some(stray) = resources.iter().find(|r| !matches_account(r, call)) {
        let id = stray.get("id").and_then(Value::as_str).unwrap_or("?");
        let msg = format!("the service answered {filter} with account {id}, which does not match; nothing was changed");
        return fail(details, &secrets, msg);
    }
    let user = match resources.as_slice() {
        [] => {
            return Ok(ExtDone {
                outcome: Outcome::AlreadyAbsent,
                message: format!("{}: no account matches {filter}", call.system),
                details,
            });
        }
        [one] => one.clone(),
        many => {
            return fail(details, &secrets, format!("{} accounts match {filter}; nothing was changed", many.len()));
        }
    };
    let Some(id) = user.get("id").and_then(Value::as_str).map(str::to_string) else {
        return fail(details, &secrets, "the matching account has no id".into());
    };
    details.account_id = Some(id.clone());
    let patch = reqwest::Method::PATCH;
    let mut notes = Vec::new();

    // 2. Group memberships.
    for group in &call.remove_from_groups {
        let filter = crate::template::scim_filter("displayName", group);
        let url = format!("{base}/Groups?filter={}", crate::template::url_escape(&filter));
        let r = send(&client, get.clone(), &url, &headers, None, call.max_attempts, &mut attempts).await;
        details.attempts = attempts;
        let a = match r {
            Ok(a) => a,
            Err(e) => return fail(details, &secrets, e),
        };
        details.http_status = Some(a.status as i32);
        if !ok(a.status) {
            return fail(details, &secrets, format!("searching group {group:?} answered {}", scim_detail(&a)));
        }
        let groups = serde_json::from_str::<Value>(&a.body)
            .ok()
            .and_then(|v| v.get("Resources").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        let [g] = groups.as_slice() else {
            notes.push(format!(
                "group {group:?} {}",
                if groups.is_empty() { "not found" } else { "is ambiguous; not touched" }
            ));
            continue;
        };
        let gid = g.get("id").and_then(Value::as_str).unwrap_or_default();
        let member = g
            .get("members")
            .and_then(Value::as_array)
            .map(|m| m.iter().any(|m| m.get("value").and_then(Value::as_str) == Some(id.as_str())));
        if member == Some(false) {
            notes.push(format!("not in group {group:?}"));
            continue;
        }
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": format!("members[value eq {}]", Value::String(id.clone()))}]
        });
        let url = format!("{base}/Groups/{}", crate::template::url_escape(gid));
        let r = send(&client, patch.clone(), &url, &headers, Some(&body), call.max_attempts, &mut attempts).await;
        details.attempts = attempts;
        match r {
            Ok(a) if ok(a.status) => notes.push(format!("removed from group {group:?}")),
            Ok(a) => {
                return fail(details, &secrets, format!("removing from group {group:?} answered {}", scim_detail(&a)));
            }
            Err(e) => return fail(details, &secrets, e),
        }
    }

    // 3. The account itself.
    let url = format!("{base}/Users/{}", crate::template::url_escape(&id));
    let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
    let (outcome, message, r) = match call.action {
        ScimMode::Deactivate => {
            if user.get("active") == Some(&Value::Bool(false)) {
                let msg = format!("{}: account {id} was already deactivated{notes}", call.system);
                return Ok(ExtDone { outcome: Outcome::AlreadyAbsent, message: msg, details });
            }
            let body = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]
            });
            let r = send(&client, patch, &url, &headers, Some(&body), call.max_attempts, &mut attempts).await;
            (Outcome::Deactivated, format!("{}: deactivated account {id}{notes}", call.system), r)
        }
        ScimMode::Delete => {
            let r =
                send(&client, reqwest::Method::DELETE, &url, &headers, None, call.max_attempts, &mut attempts).await;
            (Outcome::Deleted, format!("{}: deleted account {id}{notes}", call.system), r)
        }
    };
    details.attempts = attempts;
    match r {
        Ok(a) if ok(a.status) => {
            details.http_status = Some(a.status as i32);
            Ok(ExtDone { outcome, message, details })
        }
        Ok(a) if a.status == 404 => {
            details.http_status = Some(404);
            let msg = format!("{}: account {id} disappeared before it could be changed{notes}", call.system);
            Ok(ExtDone { outcome: Outcome::AlreadyAbsent, message: msg, details })
        }
        Ok(a) => {
            details.http_status = Some(a.status as i32);
            fail(details, &secrets, format!("changing account {id} answered {}", scim_detail(&a)))
        }
        Err(e) => fail(details, &secrets, e),
    }
}

/// Calls the configured endpoint.
pub async fn http(env: &Env, call: &HttpTarget) -> Result<ExtDone, Transient> {
    let mut details = ExternalDetails { system: call.system.clone(), ..Default::default() };
    let mut secrets = Secrets::default();
    let fail = |details: ExternalDetails, secrets: &Secrets, msg: String| {
        Ok(ExtDone { outcome: Outcome::Failed, message: secrets.redact(format!("{}: {msg}", call.system)), details })
    };
    let mut headers = HeaderMap::new();
    for h in &call.headers {
        let value = match (&h.value, &h.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(r)) => match read_key(env, r, false).await? {
                Ok(v) => {
                    secrets.0.push(v.clone());
                    v
                }
                Err(e) => return fail(details, &secrets, e),
            },
            (None, None) => {
                return fail(details, &secrets, format!("header {} has no value", h.name));
            }
        };
        let (Ok(name), Ok(mut value)) = (HeaderName::try_from(h.name.as_str()), HeaderValue::from_str(&value)) else {
            return fail(details, &secrets, format!("header {} is not a valid HTTP header", h.name));
        };
        value.set_sensitive(h.value_from.is_some());
        headers.insert(name, value);
    }
    let body: Option<Value> = match call.body.as_deref().map(serde_json::from_str).transpose() {
        Ok(b) => b,
        Err(e) => return fail(details, &secrets, format!("body is not JSON: {e}")),
    };
    let Ok(method) = reqwest::Method::from_bytes(call.method.as_bytes()) else {
        return fail(details, &secrets, format!("{:?} is not an HTTP method", call.method));
    };
    let client = match http_client(env, call.ca_bundle.as_ref(), call.timeout_seconds).await? {
        Ok(c) => c,
        Err(e) => return fail(details, &secrets, e),
    };
    let mut attempts = 0;
    let r = send(&client, method.clone(), &call.url, &headers, body.as_ref(), call.max_attempts, &mut attempts).await;
    details.attempts = attempts;
    let a = match r {
        Ok(a) => a,
        Err(e) => return fail(details, &secrets, e),
    };
    details.http_status = Some(a.status as i32);
    let code = a.status as i32;
    let success = if call.success_codes.is_empty() { ok(a.status) } else { call.success_codes.contains(&code) };
    if success {
        let msg = format!("{}: {method} answered {code}", call.system);
        Ok(ExtDone { outcome: Outcome::Removed, message: msg, details })
    } else if call.absent_codes.contains(&code) {
        let msg = format!("{}: {method} answered {code}: account already gone", call.system);
        Ok(ExtDone { outcome: Outcome::AlreadyAbsent, message: msg, details })
    } else {
        let snippet: String = a.body.chars().take(200).collect();
        fail(details, &secrets, format!("{method} answered {code}: {snippet}"))
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn redaction_removes_every_secret_read() {
        let s = Secrets(vec!["tok-123456".into(), "abc".into()]);
        assert_eq!(
            s.redact("bad tok-123456 and abc"),
            "bad [redacted] and abc",
            "values under 4 characters are left alone"
        );
    }
}
