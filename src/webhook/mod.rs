//! The HTTP side: `POST /webhooks/lumos/deprovision` turns a Lumos call into a
//! DeprovisionRequest, waits for it (bounded by the response deadline) and answers Lumos.
//! Also `GET /healthz` and `GET /readyz`.
//!
//! `auth` checks the shared secret, `payload` parses Lumos's JSON, `endpoint` refuses bad calls,
//! `submit` records the request (`naming` gives it its name) and waits, `answer` is what Lumos
//! gets back.

pub mod answer;
pub mod auth;
mod endpoint;
pub mod naming;
pub mod payload;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kube::api::ListParams;
use kube::{Api, Client};

use crate::crd::DeprovisionRequest;
use crate::metrics::Metrics;
use auth::{HeaderScheme, SecretFile};

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
        .route(DEPROVISION_PATH, post(endpoint::deprovision))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// A kube error, short enough for a message.
fn short_error(e: &kube::Error) -> String {
    let text = match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    };
    crate::text::clip_to(&text, 200)
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
mod tests;
