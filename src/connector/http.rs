//! `POST /connectors/kubernetes/<capability>` on `deprovisioner run`: the same capabilities as
//! the CLI, behind the webhook's shared secret, its per-source limit on failed attempts, its
//! in-flight cap and its body limit. Answers are 200 with the capability's JSON (an
//! `ErrorResponse` included), as the SDK's own HTTP server answers; a refused call gets 401,
//! 408, 413, 429 or 503 with an `ErrorResponse`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json};

use super::capability::{self, Connector};
use super::wire::{ConnectorError, ErrorCode};
use crate::webhook::{Refused, WebhookState};

/// Where the capabilities are served: `POST {PATH}/<capability>` (the spec's
/// `/{connector_id}/<capability>` under `/connectors`).
pub const PATH: &str = "/connectors/kubernetes";

/// The longest a call may take before it is answered `request_timeout`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the endpoint needs: the webhook's guards and the connector.
pub struct ConnectorState {
    /// Secret, header scheme, limits (shared with the webhook).
    pub webhook: Arc<WebhookState>,
    /// The capabilities.
    pub connector: Connector,
}

/// The router serving every capability.
pub fn router(state: Arc<ConnectorState>) -> Router {
    Router::new().route(&format!("{PATH}/{{capability}}"), post(call)).with_state(state)
}

fn refusal(status: StatusCode, code: ErrorCode, capability: &str, message: &str) -> Response {
    (status, Json(ConnectorError::new(code, message).to_response(capability))).into_response()
}

async fn call(
    State(s): State<Arc<ConnectorState>>,
    Path(capability): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let w = &s.webhook;
    let peer = peer.map(|p| p.0.0.ip());
    if let Err(refused) = w.check_secret(peer, &headers) {
        tracing::warn!(?peer, ?refused, "connector call without the right secret rejected");
        if refused == Refused::TooMany {
            let m = "too many calls with missing or wrong credentials from this address; try again in a minute";
            return refusal(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimit, &capability, m);
        }
        let m = format!("missing or wrong credentials: send the shared secret in the {} header", w.header.name());
        return refusal(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, &capability, &m);
    }
    let Ok(_permit) = w.in_flight.try_acquire() else {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::RateLimit, &capability, "too many calls in flight");
    };
    let bytes = match tokio::time::timeout(w.deadline, axum::body::to_bytes(body, w.body_limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            let m = format!("body is larger than the {} byte limit", w.body_limit);
            return refusal(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BadRequest, &capability, &m);
        }
        Err(_) => {
            return refusal(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                &capability,
                "the body did not arrive in time",
            );
        }
    };
    let answer = match tokio::time::timeout(CALL_TIMEOUT, capability::answer(&s.connector, &capability, &bytes)).await {
        Ok(v) => v,
        Err(_) => {
            ConnectorError::new(ErrorCode::RequestTimeout, format!("not answered within {}s", CALL_TIMEOUT.as_secs()))
                .to_response(&capability)
        }
    };
    (StatusCode::OK, Json(answer)).into_response()
}
