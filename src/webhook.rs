//! The HTTP side: `POST /webhooks/lumos/deprovision` turns a Lumos call into a
//! DeprovisionRequest, waits for it (bounded by the response deadline) and answers Lumos.
//! Also `GET /healthz` and `GET /readyz`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use crate::auth::{HeaderScheme, SecretFile};
use crate::crd::{DeprovisionRequest, DeprovisionRequestSpec};
use crate::metrics::{AnswerLabels, Metrics};
use crate::naming;
use crate::payload::{self, PayloadError};
use crate::report::{self, LumosAnswer};

/// The path Lumos is pointed at.
pub const DEPROVISION_PATH: &str = "/webhooks/lumos/deprovision";

/// What the endpoint needs.
pub struct WebhookState {
    /// Kubernetes client.
    pub client: Client,
    /// Accepted secrets.
    pub secret: SecretFile,
    /// Where the secret is sent.
    pub header: HeaderScheme,
    /// Answer Lumos by then (well under its 15 s limit).
    pub deadline: Duration,
    /// Largest accepted body, in bytes.
    pub body_limit: usize,
    /// Where answers are counted.
    pub metrics: Arc<Metrics>,
}

/// The router with every endpoint.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route(DEPROVISION_PATH, post(deprovision))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookQuery {
    /// `?dryRun=true`: plan and record, change nothing (for Lumos's "Test Webhook").
    #[serde(default)]
    dry_run: bool,
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

async fn deprovision(
    State(s): State<Arc<WebhookState>>,
    query: Result<Query<WebhookQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (status, answer) = handle(&s, started, query, headers, body).await;
    s.metrics.webhook_answers.get_or_create(&AnswerLabels { response: answer.response, code: status.as_u16() }).inc();
    s.metrics.webhook_seconds.observe(started.elapsed().as_secs_f64());
    (status, Json(answer)).into_response()
}

/// Everything between receiving a call and answering it.
async fn handle(
    s: &WebhookState,
    started: Instant,
    query: Result<Query<WebhookQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, LumosAnswer) {
    let Some(presented) = s.header.extract(&headers) else {
        tracing::info!("webhook call without credentials rejected");
        return (
            StatusCode::UNAUTHORIZED,
            LumosAnswer::failure(format!(
                "missing credentials: send the shared secret in the {} header",
                s.header.name()
            )),
        );
    };
    if !s.secret.verify(presented) {
        tracing::warn!("webhook call with a wrong secret rejected");
        return (StatusCode::UNAUTHORIZED, LumosAnswer::failure("wrong credentials"));
    }
    let Ok(Query(query)) = query else {
        return (StatusCode::BAD_REQUEST, LumosAnswer::failure("bad query string: only dryRun=true|false is accepted"));
    };
    if !is_json(&headers) {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, LumosAnswer::failure("Content-Type must be application/json"));
    }
    // The body is read within the deadline too: a caller trickling bytes cannot hold us past it.
    let read =
        tokio::time::timeout(s.deadline.saturating_sub(started.elapsed()), axum::body::to_bytes(body, s.body_limit));
    let bytes: Bytes = match read.await {
        Ok(Ok(b)) => b,
        Err(_) => {
            return (StatusCode::REQUEST_TIMEOUT, LumosAnswer::failure("the request body did not arrive in time"));
        }
        Ok(Err(_)) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                LumosAnswer::failure(format!("body is larger than the {} byte limit", s.body_limit)),
            );
        }
    };
    let spec = match payload::parse(&bytes, query.dry_run) {
        Ok(spec) => spec,
        Err(e) => {
            tracing::info!(error = %e, "bad webhook payload");
            return (StatusCode::BAD_REQUEST, LumosAnswer::failure(bad_payload_message(&e)));
        }
    };
    let answer = submit_and_wait(&s.client, spec, started + s.deadline).await;
    tracing::info!(response = answer.response, elapsed_ms = started.elapsed().as_millis() as u64, "answered Lumos");
    (StatusCode::OK, answer)
}

fn bad_payload_message(e: &PayloadError) -> String {
    match e {
        // serde's message may quote input; keep it, it is the caller's own data, but bound it.
        PayloadError::Malformed(m) => report::clip(format!("malformed JSON payload: {m}")),
        other => other.to_string(),
    }
}

/// Records the request (or finds the identical unfinished one), then waits until it is terminal
/// or the deadline passes.
async fn submit_and_wait(client: &Client, spec: DeprovisionRequestSpec, deadline: Instant) -> LumosAnswer {
    let api: Api<DeprovisionRequest> = Api::all(client.clone());
    let deadline = tokio::time::Instant::from_std(deadline);
    let (name, attached) = match tokio::time::timeout_at(deadline, submit(&api, spec)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not record the request");
            return LumosAnswer::failure(format!(
                "Could not record the request: the Kubernetes API server refused or is unavailable ({}); nothing was changed",
                short_error(&e)
            ));
        }
        Err(_) => {
            return LumosAnswer::failure(
                "The Kubernetes API server did not answer in time; the request may not have been recorded. Check `kubectl get dpr` before retrying",
            );
        }
    };
    tracing::info!(request = %name, attached, "request recorded; waiting for the result");
    let terminal =
        |o: Option<&DeprovisionRequest>| o.and_then(|o| o.status.as_ref()).is_some_and(|s| s.phase.is_terminal());
    match tokio::time::timeout_at(deadline, await_condition(api, &name, terminal)).await {
        Ok(Ok(Some(obj))) => report::answer(&name, obj.status.as_ref()),
        Ok(Ok(None)) => LumosAnswer::failure(format!("deprovisionrequest/{name} was deleted before it finished")),
        Ok(Err(e)) => {
            tracing::warn!(request = %name, error = %e, "lost the watch on the request");
            report::answer(&name, None)
        }
        // Recorded but unfinished: the controller finishes it; the record tells the outcome.
        Err(_) => report::answer(&name, None),
    }
}

fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    }
    .chars()
    .take(200)
    .collect()
}

/// Creates the request, or returns the name of an unfinished identical one (`attached = true`).
/// Names are `lumos-<fingerprint>-<seq>`: two concurrent identical calls race for the same name
/// and the API server lets exactly one create it.
async fn submit(api: &Api<DeprovisionRequest>, spec: DeprovisionRequestSpec) -> Result<(String, bool), kube::Error> {
    let fp = naming::fingerprint(&spec);
    let lp = ListParams::default().labels(&format!("{}={fp}", naming::LABEL_FINGERPRINT));
    let existing = api.list(&lp).await?.items;
    if let Some(active) = existing.iter().find(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_terminal())) {
        return Ok((active.name_any(), true));
    }
    let seq = existing.iter().filter_map(|r| naming::seq_of(&r.name_any())).max().map_or(1, |m| m + 1);
    let name = naming::request_name(&fp, seq);
    let obj = DeprovisionRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(naming::labels(&spec, &fp)),
            ..Default::default()
        },
        spec,
        status: None,
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok((name, false)),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok((name, true)),
        Err(e) => Err(e),
    }
}

async fn readyz(State(s): State<Arc<WebhookState>>) -> Response {
    let api: Api<DeprovisionRequest> = Api::all(s.client.clone());
    let check = tokio::time::timeout(Duration::from_secs(3), api.list_metadata(&ListParams::default().limit(1))).await;
    match check {
        Ok(Ok(_)) => (StatusCode::OK, "ok").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("API server: {}", short_error(&e))).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "API server did not answer within 3s").into_response(),
    }
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
