//! The deprovisioning endpoint: refuses bad calls (401, 400, 415, 413, 408) before anything is
//! recorded, then hands the parsed request to `submit`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::answer::LumosAnswer;
use super::payload::{self, PayloadError};
use super::{Refused, WebhookState};
use crate::metrics::AnswerLabels;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct WebhookQuery {
    /// `?dryRun=true`: plan and record, change nothing (for Lumos's "Test Webhook").
    #[serde(default)]
    dry_run: bool,
}

type QueryResult = Result<Query<WebhookQuery>, axum::extract::rejection::QueryRejection>;

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// One call, in the `webhook` span: its trace id (from the caller's `traceparent`, or new), and
/// the record's name and UID once it is recorded.
#[tracing::instrument(name = "webhook", skip_all, fields(trace_id, request, uid))]
pub(super) async fn deprovision(
    State(s): State<Arc<WebhookState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    query: QueryResult,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let trace_id = crate::trace::of_call(headers.get(crate::trace::TRACEPARENT).and_then(|v| v.to_str().ok()));
    tracing::Span::current().record("trace_id", trace_id.as_str());
    let (status, answer) = match s.in_flight.try_acquire() {
        Ok(_permit) => {
            let handled = handle(&s, started, peer.map(|p| p.0.0.ip()), query, headers, body);
            crate::trace::scope(trace_id, handled).await
        }
        Err(_) => {
            tracing::warn!("too many webhook calls in flight; answering 503");
            (StatusCode::SERVICE_UNAVAILABLE, LumosAnswer::failure("too many calls in flight; nothing was recorded"))
        }
    };
    let labels = AnswerLabels { response: answer.response.as_str(), code: status.as_u16() };
    s.metrics.webhook_answers.get_or_create(&labels).inc();
    s.metrics.webhook_seconds.observe(started.elapsed().as_secs_f64());
    (status, Json(answer)).into_response()
}

/// Everything between receiving a call and answering it.
async fn handle(
    s: &WebhookState,
    started: Instant,
    peer: Option<IpAddr>,
    query: QueryResult,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, LumosAnswer) {
    if let Err(refusal) = authenticate(s, peer, &headers) {
        return refusal;
    }
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            let msg = format!("bad query string ({}): only dryRun=true|false is accepted", e.body_text());
            return (StatusCode::BAD_REQUEST, LumosAnswer::failure(msg));
        }
    };
    if !is_json(&headers) {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, LumosAnswer::failure("Content-Type must be application/json"));
    }
    let bytes = match read_body(s, started, body).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let spec = match payload::parse(&bytes, query.dry_run) {
        Ok(spec) => spec,
        Err(e) => {
            tracing::info!(error = %e, "bad webhook payload");
            return (StatusCode::BAD_REQUEST, LumosAnswer::failure(bad_payload_message(&e)));
        }
    };
    let answer = super::submit::submit_and_wait(s, spec, started).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(response = answer.response.as_str(), elapsed_ms, "answered Lumos");
    (StatusCode::OK, answer)
}

/// Checks the shared secret. A source that keeps failing is answered 429 for the rest of the
/// minute (a correct secret always passes).
fn authenticate(s: &WebhookState, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), (StatusCode, LumosAnswer)> {
    match s.check_secret(peer, headers) {
        Ok(()) => Ok(()),
        Err(Refused::Wrong) => {
            tracing::warn!(?peer, "webhook call with a wrong secret rejected");
            Err((StatusCode::UNAUTHORIZED, LumosAnswer::failure("wrong credentials")))
        }
        Err(Refused::Missing) => {
            tracing::info!(?peer, "webhook call without credentials rejected");
            let msg = format!("missing credentials: send the shared secret in the {} header", s.header.name());
            Err((StatusCode::UNAUTHORIZED, LumosAnswer::failure(msg)))
        }
        Err(Refused::TooMany) => {
            let msg = "too many calls with missing or wrong credentials from this address; try again in a minute";
            Err((StatusCode::TOO_MANY_REQUESTS, LumosAnswer::failure(msg)))
        }
    }
}

/// Reads the body within the deadline too: a caller trickling bytes cannot hold us past it.
async fn read_body(s: &WebhookState, started: Instant, body: Body) -> Result<Bytes, (StatusCode, LumosAnswer)> {
    let read =
        tokio::time::timeout(s.deadline.saturating_sub(started.elapsed()), axum::body::to_bytes(body, s.body_limit));
    match read.await {
        Ok(Ok(b)) => Ok(b),
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, LumosAnswer::failure("the request body did not arrive in time"))),
        Ok(Err(_)) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            LumosAnswer::failure(format!("body is larger than the {} byte limit", s.body_limit)),
        )),
    }
}

fn bad_payload_message(e: &PayloadError) -> String {
    match e {
        // serde's message may quote input; keep it, it is the caller's own data (clipped).
        PayloadError::Malformed(m) => format!("malformed JSON payload: {m}"),
        other => other.to_string(),
    }
}
