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
pub mod guard;
pub mod naming;
pub mod payload;
pub mod server;
pub mod submit;
pub mod wait;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Calls handled at once; past it, 503.
    pub in_flight: tokio::sync::Semaphore,
    /// Calls with missing or wrong credentials, per source address and minute (the webhook's and
    /// the connector's together); past it, 429.
    pub unauthenticated: guard::PerSource,
    /// Requests recorded per minute; past it, FAILURE and nothing recorded.
    pub recorded: guard::PerMinute,
    /// False once this replica's controller has died (`/healthz` then fails).
    pub controller_alive: AtomicBool,
    /// Tells calls when their record finishes.
    pub finished: Arc<crate::finished::Finished>,
    /// Hands created requests to the controller in this process, when it runs here.
    pub handoff: Arc<crate::controller::Handoff>,
    /// The view, when this process plans (the controller runs here): the replica is ready once
    /// every watch of it has listed.
    pub view: Option<Arc<crate::view::View>>,
}

/// Why a call's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No secret in the header.
    Missing,
    /// A secret that is none of the accepted ones.
    Wrong,
    /// Too many refused calls from this address this minute (answer 429).
    TooMany,
}

impl WebhookState {
    /// Checks the webhook's shared secret of a call ([`auth::check`]). A source that keeps
    /// failing is refused `TooMany` for the rest of the minute; a correct secret always passes.
    pub fn check_secret(&self, peer: Option<std::net::IpAddr>, headers: &axum::http::HeaderMap) -> Result<(), Refused> {
        auth::check(&self.header, &self.unauthenticated, peer, headers, |p| self.secret.verify(p).then_some(()))
    }
}

/// The router with every endpoint.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route(DEPROVISION_PATH, post(endpoint::deprovision))
        .route("/healthz", get(healthz))
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

async fn healthz(State(s): State<Arc<WebhookState>>) -> Response {
    if s.controller_alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the controller has stopped").into_response()
    }
}

async fn readyz(State(s): State<Arc<WebhookState>>) -> Response {
    // A new replica is not ready before its watches have listed (a rolling upgrade then keeps
    // the old one working meanwhile).
    if s.view.as_ref().is_some_and(|v| !v.is_ready()) {
        return (StatusCode::SERVICE_UNAVAILABLE, "the view of the cluster is still listing").into_response();
    }
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
