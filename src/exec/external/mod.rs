//! External accounts: deactivate or delete a user through SCIM 2.0 (RFC 7644) (`scim`), or call
//! a configured HTTP endpoint (`http`). Credentials are read from Secrets in the operator's
//! namespace at action time (so rotation needs no restart) and never appear in results, events
//! or logs: every failure message goes through [`Session::fail`], which redacts them.

pub mod http;
pub mod scim;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{Done, Effect, Env, ExecError};
use crate::crd::{CaBundleRef, ExternalDetails, SecretKeyRef};
use crate::egress::{Egress, GuardedResolver};

/// Largest reply body read from another system.
const MAX_BODY: usize = 64 * 1024;
/// Longest wait a `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// One external action in progress: the HTTP client, the credentials read so far (kept only to
/// redact them) and what the system replied (attempts, last status, account id).
struct Session<'a> {
    env: &'a Env,
    system: &'a str,
    client: reqwest::Client,
    headers: HeaderMap,
    secrets: Vec<String>,
    details: ExternalDetails,
    max_attempts: i32,
    timeout_seconds: i32,
    egress: Egress,
    idempotent: bool,
}

/// One HTTP exchange's reply after retries (body read up to [`MAX_BODY`]).
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A call's bounds, from the policy.
#[derive(Clone, Copy)]
struct Limits {
    timeout_seconds: i32,
    max_attempts: i32,
    allow_link_local: bool,
    /// Sending it twice is harmless: timeouts and 5xx may be retried.
    idempotent: bool,
}

/// The header carrying the action's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Where a key is read from.
#[derive(Clone, Copy)]
enum KeySource {
    Secret,
    ConfigMap,
}

impl<'a> Session<'a> {
    /// Starts an action against the system at `url` (checked again here, at call time, with the
    /// same rules as the policy: the plan holds it rendered).
    fn new(env: &'a Env, system: &'a str, url: &str, limits: Limits, key: &str) -> Result<Self, ExecError> {
        let details = ExternalDetails { system: system.to_string(), ..Default::default() };
        let refuse = |message: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| ExecError::External {
            message,
            details: details.clone(),
            source,
        };
        let (_, egress) = crate::egress::check_url(url, limits.allow_link_local)
            .map_err(|why| refuse(format!("{system}: {why}"), None))?;
        let client = build_client(limits.timeout_seconds, egress, Vec::new()).map_err(|e| {
            refuse(format!("{system}: building the HTTP client: {}", error_chain(&e)), Some(Box::new(e)))
        })?;
        let mut headers = HeaderMap::new();
        if let Ok(v) = reqwest::header::HeaderValue::from_str(key) {
            headers.insert(IDEMPOTENCY_KEY, v);
        }
        Ok(Session {
            env,
            system,
            client,
            headers,
            secrets: Vec::new(),
            details,
            max_attempts: limits.max_attempts,
            timeout_seconds: limits.timeout_seconds,
            egress,
            idempotent: limits.idempotent,
        })
    }

    /// A failure of this action, its message prefixed with the system and redacted.
    fn fail(&self, message: impl std::fmt::Display) -> ExecError {
        ExecError::External {
            message: self.redact(&format!("{}: {message}", self.system)),
            details: self.details.clone(),
            source: None,
        }
    }

    /// A failure caused by an underlying error (kept as the source).
    fn fail_with(&self, what: &str, e: impl std::error::Error + Send + Sync + 'static) -> ExecError {
        let message = self.redact(&format!("{}: {what}: {}", self.system, error_chain(&e)));
        ExecError::External { message, details: self.details.clone(), source: Some(Box::new(e)) }
    }

    /// A success.
    fn done(&self, outcome: Effect, message: String) -> Result<Done, ExecError> {
        Ok(Done {
            outcome,
            message: format!("{}: {message}", self.system),
            external: Some(self.details.clone()),
            subjects: None,
        })
    }

    /// Removes every credential read for this action from a message, in every form it could
    /// take, then clips it.
    fn redact(&self, msg: &str) -> String {
        use crate::plan::template::{json_escape, url_escape};
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let mut m = msg.to_string();
        for s in self.secrets.iter().filter(|s| s.len() >= 4) {
            let forms = [s.clone(), json_escape(s), url_escape(s), STANDARD.encode(s), URL_SAFE_NO_PAD.encode(s)];
            for form in forms {
                m = m.replace(&form, "[redacted]");
            }
        }
        crate::text::clip(m)
    }

    /// Reads one key from a Secret or ConfigMap in the operator's namespace; a Secret's value is
    /// remembered for redaction.
    async fn read_key(&mut self, r: &SecretKeyRef, from: KeySource) -> Result<String, ExecError> {
        let ns = &self.env.namespace;
        let (kind, found) = match from {
            KeySource::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.env.client.clone(), ns);
                let cm = api.get_opt(&r.name).await.map_err(|e| self.read_error("ConfigMap", r, e))?;
                ("ConfigMap", cm.map(|c| c.data.unwrap_or_default().get(&r.key).cloned()))
            }
            KeySource::Secret => {
                let api: Api<Secret> = Api::namespaced(self.env.client.clone(), ns);
                let secret = api.get_opt(&r.name).await.map_err(|e| self.read_error("Secret", r, e))?;
                let value = secret.map(|s| {
                    s.data.unwrap_or_default().get(&r.key).map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
                });
                ("Secret", value)
            }
        };
        match found {
            None => Err(self.fail(format_args!(
                "{kind} {ns}/{} not found (external credentials are read from the operator's namespace)",
                r.name
            ))),
            Some(None) => Err(self.fail(format_args!("{kind} {ns}/{} has no key {:?}", r.name, r.key))),
            Some(Some(v)) if v.is_empty() => {
                Err(self.fail(format_args!("{kind} {ns}/{} key {:?} is empty", r.name, r.key)))
            }
            Some(Some(v)) => {
                if matches!(from, KeySource::Secret) {
                    self.secrets.push(v.clone());
                }
                Ok(v)
            }
        }
    }

    /// A forbidden read fails the action; any other API error is worth retrying later.
    fn read_error(&self, kind: &str, r: &SecretKeyRef, e: kube::Error) -> ExecError {
        let ns = &self.env.namespace;
        match &e {
            kube::Error::Api(s) if s.is_forbidden() => {
                self.fail(format_args!("the operator may not read {kind} {ns}/{}: {}", r.name, s.message))
            }
            _ => ExecError::Unavailable { context: format!("reading {kind} {ns}/{}", r.name), source: e },
        }
    }

    /// Trusts the CA certificates of `ca` in addition to the system's.
    async fn trust(&mut self, ca: Option<&CaBundleRef>) -> Result<(), ExecError> {
        let Some(ca) = ca else {
            return Ok(());
        };
        let (r, from) = match (&ca.secret, &ca.config_map) {
            (Some(r), _) => (r, KeySource::Secret),
            (None, Some(r)) => (r, KeySource::ConfigMap),
            (None, None) => return Err(self.fail("caBundle names neither a secret nor a configMap")),
        };
        let pem = self.read_key(r, from).await?;
        let certs = match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
            Ok(c) if !c.is_empty() => c,
            _ => return Err(self.fail(format_args!("caBundle {}/{} holds no PEM certificate", r.name, r.key))),
        };
        self.client = build_client(self.timeout_seconds, self.egress, certs)
            .map_err(|e| self.fail_with("building the HTTP client", e))?;
        Ok(())
    }

    /// Sends with bounded retries, honouring `Retry-After`: on 429 and on connection errors
    /// (the request was not processed) always; on 5xx and timeouts (it may have been) only for an
    /// idempotent call. Records attempts and the last status in the details.
    async fn send(&mut self, method: reqwest::Method, url: &str, body: Option<&Value>) -> Result<Reply, ExecError> {
        let max = self.max_attempts.max(1);
        loop {
            self.details.attempts += 1;
            let attempt = self.details.attempts;
            let mut req = self.client.request(method.clone(), url).headers(self.headers.clone());
            if let Some(b) = body {
                req = req.json(b);
            }
            let backoff = Duration::from_millis(250u64 << (attempt - 1).clamp(0, 5) as u32);
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if (status == 429 || (status >= 500 && self.idempotent)) && attempt < max {
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
                    self.details.http_status = Some(status as i32);
                    return Ok(Reply { status, body: read_capped(resp).await });
                }
                Err(e)
                    if attempt < max && (e.is_connect() || (self.idempotent && (e.is_timeout() || e.is_request()))) =>
                {
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
                    return Err(self.fail_with(&format!("{method} {url} {what}"), e));
                }
            }
        }
    }
}

/// An HTTP client that never follows redirects, resolves names through [`GuardedResolver`] and
/// trusts `extra_roots` besides the system's CAs.
fn build_client(
    timeout_seconds: i32,
    egress: Egress,
    extra_roots: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_seconds.max(1) as u64))
        .dns_resolver(GuardedResolver::shared(egress))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("deprovisioner/", env!("CARGO_PKG_VERSION")));
    for c in extra_roots {
        b = b.add_root_certificate(c);
    }
    b.build()
}

/// Reads at most [`MAX_BODY`] bytes, however much the server sends.
async fn read_capped(mut resp: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => bytes.extend_from_slice(&c[..c.len().min(MAX_BODY - bytes.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes).to_string()
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

/// An error and its sources, `: `-separated.
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

#[cfg(test)]
mod tests;
