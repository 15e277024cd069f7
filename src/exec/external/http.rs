//! A configured HTTP call that removes the user's account in another system.

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::{KeySource, Limits, Session};
use crate::crd::HttpCall;
use crate::exec::{Done, Effect, Env, ExecError};

/// Sends the call; the policy's success and absent codes decide the outcome.
pub async fn call(env: &Env, call: &HttpCall, key: &str) -> Result<Done, ExecError> {
    let limits = Limits {
        timeout_seconds: call.timeout_seconds,
        max_attempts: call.max_attempts,
        allow_link_local: call.allow_link_local_addresses,
        idempotent: call.is_idempotent(),
    };
    let mut session = Session::new(env, &call.system, &call.url, limits, key)?;
    for h in &call.headers {
        let value = match (&h.value, &h.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(r)) => session.read_key(r, KeySource::Secret).await?,
            (None, None) => return Err(session.fail(format_args!("header {} has no value", h.name))),
        };
        let (Ok(name), Ok(mut value)) = (HeaderName::try_from(h.name.as_str()), HeaderValue::from_str(&value)) else {
            return Err(session.fail(format_args!("header {} is not a valid HTTP header", h.name)));
        };
        value.set_sensitive(h.value_from.is_some());
        session.headers.insert(name, value);
    }
    let body: Option<Value> = match call.body.as_deref().map(serde_json::from_str).transpose() {
        Ok(b) => b,
        Err(e) => return Err(session.fail_with("body is not JSON", e)),
    };
    let Ok(method) = reqwest::Method::from_bytes(call.method.as_bytes()) else {
        return Err(session.fail(format_args!("{:?} is not an HTTP method", call.method)));
    };
    session.trust(call.ca_bundle.as_ref()).await?;
    let reply = session.send(method.clone(), &call.url, body.as_ref()).await?;
    let code = reply.status as i32;
    let success = if call.success_codes.is_empty() { reply.ok() } else { call.success_codes.contains(&code) };
    if success {
        session.done(Effect::Removed, format!("{method} replied {code}"))
    } else if call.absent_codes.contains(&code) {
        session.done(Effect::AlreadyAbsent, format!("{method} replied {code}: account already gone"))
    } else {
        let snippet = crate::text::clip_to(&reply.body, 200);
        Err(session.fail(format_args!("{method} replied {code}: {snippet}")))
    }
}
